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
//      TLS >= 1.2, ALPN http/1.1 only (the MITM path speaks HTTP/1.1; h2 stays passthrough);
//   4. moves bytes: fd -> feed() -> read() plaintext -> http1 -> write() -> drain() -> fd.
// A channel never blocks and never touches an fd itself; pull()/push() adapt it to non-blocking
// fds for the event loop.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/proxy/http1.hpp"
#include "agentbox/proxy/openssl_ptr.hpp"
#include "agentbox/proxy/sni.hpp"
#include "agentbox/proxy/tls_ca.hpp"

namespace agentbox::proxy {

// Server context for the box side: TLS 1.2+, ALPN answered with http/1.1 only (a hello that
// offers only h2 gets no ALPN and then fails or falls back on the client's side).
[[nodiscard]] base::Result<ossl::SslCtxPtr> make_box_ctx();
// Client context for upstream: verifies against `system_bundle` (PEM file) plus every PEM file
// in `extra_ca_files` (--upstream-ca). A missing or unreadable file is an error.
[[nodiscard]] base::Result<ossl::SslCtxPtr> make_upstream_ctx(
    const std::string& system_bundle, const std::vector<std::string>& extra_ca_files);

// Flow name = SNI (both canonical); no ECH/ESNI; an HTTP request's Host (if given) = SNI.
// The error text is for the audit log and the agent (it names hosts, nothing else).
[[nodiscard]] base::Status names_agree(std::string_view flow_name, const ClientHello& hello,
                                       const http1::Request* request = nullptr);

class TlsChannel {
 public:
  enum class Status { kWant, kDone, kClosed, kError };

  // Box side: presents `leaf` (and its CA chain is the box's trust anchor).
  [[nodiscard]] static base::Result<TlsChannel> accept(SSL_CTX* ctx, const Leaf& leaf);
  // Upstream side: SNI and hostname verification for `host`.
  [[nodiscard]] static base::Result<TlsChannel> connect(SSL_CTX* ctx, const std::string& host);

  // Ciphertext from the peer; feed_eof() when its fd reached EOF.
  void feed(std::span<const std::byte> data);
  void feed_eof();
  // Ciphertext for the peer (empties the buffer).
  [[nodiscard]] std::string drain();
  void drain_into(std::string& out);  // appends, saving a copy on the data path

  Status handshake();
  // Appends the plaintext available now; kClosed after close_notify or EOF.
  Status read(std::string& out);
  // Encrypts all of `data` (memory BIOs never block); drain() afterwards.
  Status write(std::string_view data);
  void close();  // queues close_notify

  [[nodiscard]] bool handshake_done() const;
  [[nodiscard]] std::string alpn() const;
  [[nodiscard]] long verify_result() const;  // X509_V_OK when the peer verified
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  TlsChannel() = default;
  Status fail(int ret);
  ossl::SslPtr ssl_;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;
  std::string error_;
};

// Event-loop adapters for non-blocking fds. pull() reads what `fd` has (bounded per call) and
// feeds it, calling feed_eof() on EOF; returns true at EOF. push() writes `pending` plus newly
// drained ciphertext, keeping what the socket did not take in `pending`.
[[nodiscard]] base::Result<bool> pull(int fd, TlsChannel& channel,
                                      size_t max_bytes = size_t{256} * 1024);
[[nodiscard]] base::Status push(int fd, TlsChannel& channel, std::string& pending);

}  // namespace agentbox::proxy
