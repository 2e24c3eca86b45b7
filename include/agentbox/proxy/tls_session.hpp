// TLS termination (box side, with a minted leaf) and origination (upstream side, verified).
//
// Theory of operation: the proxy has already read the box's ClientHello bytes (sni.hpp) and
// decided to intercept. It then
//   1. checks the names agree: flow name (from the synthetic address) = SNI, later = Host
//      (names_agree), refusing ECH/ESNI hellos it cannot read;
//   2. makes a server TlsChannel with the leaf for that name and feeds it the bytes already read
//      (nothing is lost: channels run on memory BIOs, so the proxy owns every byte and every fd);
//   3. makes a client TlsChannel to the upstream: SNI = the name, certificate verified against the
//      system trust store plus any --upstream-ca files, hostname checked (no partial wildcards),
//      TLS >= 1.2, ALPN http/1.1, or what the box offered when it offered h2 (offer_alpn); the
//      box is then answered with the protocol the upstream picked (answer_h2, h2_relay.hpp);
//   4. moves bytes: fd -> input() -> read_into() plaintext -> http1 -> write() -> output() -> fd.
// A channel never blocks and never touches an fd itself; pull()/push() adapt it to non-blocking
// fds for the event loop. Its BIOs are two ByteBuffers (not OpenSSL memory BIOs): the caller
// reads ciphertext from the socket straight into input() and sends straight from output(), and
// plaintext lands straight in the caller's buffer, so a byte is copied by user space once on its
// way in (into OpenSSL's record buffer; decryption is in place) and once on its way out (from
// OpenSSL's record buffer, where encryption wrote it, into output()).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/http/http1.hpp"
#include "agentbox/http/sni.hpp"
#include "agentbox/proxy/byte_buffer.hpp"
#include "agentbox/proxy/openssl_ptr.hpp"
#include "agentbox/proxy/tls_ca.hpp"

namespace agentbox::proxy {

// Server context for the box side: TLS 1.2+, ALPN answered with http/1.1, or h2 on a channel
// told so (answer_h2: the upstream picked h2); a hello offering neither gets no ALPN.
[[nodiscard]] base::Result<ossl::SslCtxPtr> make_box_ctx();
// Whether `path` is a regular file (the system bundle is read on the first verification).
[[nodiscard]] base::Status check_system_bundle(const std::string& path);
// Client context for upstream: verifies against `system_bundle` (PEM file) plus every PEM file
// in `extra_ca_files` (--upstream-ca, trust_ca). A missing or unreadable file is an error. The
// extra files are read now; the system bundle (~140 roots, ~50 ms to parse) on the context's
// first certificate verification, so a session that intercepts nothing never reads it.
[[nodiscard]] base::Result<ossl::SslCtxPtr> make_upstream_ctx(
    const std::string& system_bundle, const std::vector<std::string>& extra_ca_files);

// Flow name = SNI (both canonical); no ECH/ESNI; an HTTP request's Host (if given) = SNI.
// The error text is for the audit log and the agent (it names hosts, nothing else).
[[nodiscard]] base::Status names_agree(std::string_view flow_name, const http::ClientHello& hello,
                                       const http::Request* request = nullptr);

class TlsChannel {
 public:
  enum class Status { kWant, kDone, kClosed, kError };
  // What the channel's BIO reads from and writes to.
  struct Wire {
    ByteBuffer in;     // ciphertext from the peer, not yet taken by OpenSSL
    ByteBuffer out;    // ciphertext for the peer
    bool eof = false;  // the peer's fd reached EOF: empty `in` is the end, not "more later"
    // Bytes of the record OpenSSL is reading that are still to hand over (0: at a boundary).
    // The BIO hands OpenSSL whole records only, so a partial record waits in `in`, sized to
    // what arrived, instead of in a full-sized OpenSSL record buffer (docs/PROXY.md, "Memory").
    size_t record_left = 0;
  };

  // Box side: presents `leaf` (and its CA chain is the box's trust anchor).
  [[nodiscard]] static base::Result<TlsChannel> accept(SSL_CTX* ctx, const Leaf& leaf);
  // Upstream side: SNI and hostname verification for `host`; `resume`, when given, is a session
  // from an earlier verified handshake with the same host (abbreviated handshake).
  [[nodiscard]] static base::Result<TlsChannel> connect(SSL_CTX* ctx, const std::string& host,
                                                        SSL_SESSION* resume = nullptr);

  // Ciphertext from the peer (a copy; input() avoids it); feed_eof() when its fd reached EOF.
  void feed(std::span<const std::byte> data);
  void feed_eof();
  // Ciphertext from the peer not yet taken by OpenSSL: read(2) may write into it directly.
  [[nodiscard]] ByteBuffer& input() { return io_->in; }
  [[nodiscard]] const ByteBuffer& input() const { return io_->in; }
  // Ciphertext for the peer: send(2) from it directly, then consume() what was sent.
  [[nodiscard]] ByteBuffer& output() { return io_->out; }
  [[nodiscard]] const ByteBuffer& output() const { return io_->out; }
  // Ciphertext for the peer as a string (empties the buffer).
  [[nodiscard]] std::string drain();
  void drain_into(std::string& out);

  Status handshake();
  // Appends the plaintext available now; kClosed after close_notify or EOF.
  Status read(std::string& out);
  Status read_into(ByteBuffer& out);  // the same, decrypted straight into `out`
  // Encrypts all of `data` (memory BIOs never block); drain() afterwards.
  Status write(std::string_view data);
  void close();  // queues close_notify
  // Frees OpenSSL's record buffers when they hold nothing (SSL_free_buffers). Needed besides
  // SSL_MODE_RELEASE_BUFFERS: that frees the write buffer only after a write, and a channel
  // that last read (the upstream's session tickets, after the handshake) keeps ~17 KiB.
  // Returns true when freed (or there was nothing to free).
  bool release_buffers();

  [[nodiscard]] bool handshake_done() const;
  [[nodiscard]] std::string alpn() const;
  // Upstream side, before the handshake: the ALPN list to offer (wire format), instead of the
  // context's http/1.1; the proxy offers what the box offered (h2_relay.hpp).
  void offer_alpn(std::string_view wire);
  // Box side, before the ClientHello is fed: answer h2 when offered (the upstream picked it).
  void answer_h2(bool h2);
  [[nodiscard]] long verify_result() const;  // X509_V_OK when the peer verified
  [[nodiscard]] bool resumed() const;        // the handshake resumed an earlier session
  [[nodiscard]] SSL* native() const { return ssl_.get(); }
  [[nodiscard]] const std::string& error() const { return error_; }
  // The peer ended the handshake with an alert about our certificate (unknown_ca,
  // bad_certificate, certificate_unknown, ...): on the box side, its client does not trust the
  // session CA (a trust store of its own).
  [[nodiscard]] bool peer_refused_certificate() const { return refused_certificate_; }

 private:
  TlsChannel() = default;
  static base::Result<TlsChannel> make(SSL_CTX* ctx);
  Status fail(int ret);
  std::unique_ptr<Wire> io_;  // on the heap: the BIO points at it and the channel moves
  ossl::SslPtr ssl_;          // declared after io_: freed first
  std::string error_;
  bool refused_certificate_ = false;
};

// Event-loop adapters for non-blocking fds. pull() reads what `fd` has (bounded per call) and
// feeds it, calling feed_eof() on EOF; returns true at EOF. push() writes `pending` plus newly
// drained ciphertext, keeping what the socket did not take in `pending`.
[[nodiscard]] base::Result<bool> pull(int fd, TlsChannel& channel,
                                      size_t max_bytes = size_t{256} * 1024);
[[nodiscard]] base::Status push(int fd, TlsChannel& channel, std::string& pending);

}  // namespace agentbox::proxy
