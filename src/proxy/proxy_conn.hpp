// Internals of the ProxyHandler: one side of a connection (fd, optional TLS, bounded buffers),
// the per-connection state, and the HTTP exchange state machine (proxy_handler.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/http/sni.hpp"
#include "agentbox/net/resolver.hpp"
#include "agentbox/policy/ip.hpp"
#include "agentbox/proxy/byte_buffer.hpp"
#include "agentbox/proxy/proxy_handler.hpp"
#include "agentbox/proxy/tls_session.hpp"
#include "websocket.hpp"

namespace agentbox::proxy {

using Clock = std::chrono::steady_clock;

// An intercepted connection speaking HTTP/2 (h2_relay.hpp); freed where it is defined.
struct H2Relay;
struct H2RelayDeleter {
  void operator()(H2Relay* r) const;
};

// Upstream TLS sessions for resumption, per host:port. A session comes only from a verified
// handshake with that host (the new-session callback fires after verification), and is used
// once: taken out of the cache when a new connection resumes it (the server's next ticket
// replaces it). Bounded; the oldest key goes when full.
class UpstreamSessions {
 public:
  struct Tag {
    UpstreamSessions* cache = nullptr;
    std::string key;
  };
  // Client-side cache mode and the new-session callback on `ctx`.
  static void attach(SSL_CTX* ctx);
  // Takes the session stored under `key` (null if none).
  [[nodiscard]] ossl::SessionPtr take(const std::string& key);
  // Tickets that `ssl` receives are stored under tag->key (tag must outlive ssl's reads).
  static void tag(SSL* ssl, Tag* tag);
  [[nodiscard]] size_t size() const { return sessions_.size(); }

 private:
  static int on_new_session(SSL* ssl, SSL_SESSION* session);
  std::map<std::string, ossl::SessionPtr> sessions_;
};

// One end of a proxied connection. Bytes from the fd land in `rx` (decrypted first when `tls`:
// read(2) writes into the channel's input buffer, SSL_read_ex into rx); send() queues bytes for
// the peer (plain in `tx`, or encrypted into the channel's output buffer; held in `out` until
// the handshake is done); flush() writes what the socket takes. The owner reads a side only while
// rx is below its cap and the consumer of rx has room: that is the whole back-pressure scheme.
class Side {
 public:
  base::UniqueFd fd;
  event::WatchId watch = 0;
  uint32_t interest = 0;
  bool connecting = false;        // non-blocking connect(2) in progress
  std::optional<TlsChannel> tls;  // set when this side speaks TLS through the proxy
  ByteBuffer rx;                  // plaintext from the peer, not consumed yet
  std::string out;                // plaintext waiting for the TLS handshake
  ByteBuffer tx;                  // bytes for the fd sent before TLS (if any): go first
  bool fd_eof = false;            // read(2) returned 0
  bool eof = false;               // the peer sends no more (fd EOF or close_notify)
  bool want_shut = false;         // send FIN (after close_notify) once everything is written
  bool shut = false;              // FIN sent
  bool notified = false;          // close_notify queued
  std::string error;              // non-empty: the side failed (reset, TLS error, ...)
  bool connect_failed = false;    // ... because connect(2) failed: nothing was ever exchanged
  uint64_t bytes_in = 0;          // from the fd
  uint64_t bytes_out = 0;         // to the fd

  [[nodiscard]] bool open() const { return fd.valid(); }
  [[nodiscard]] bool failed() const { return !error.empty(); }
  // Bytes waiting for the fd (plain, or ciphertext made by the TLS channel).
  [[nodiscard]] size_t unsent() const { return tx.size() + (tls ? tls->output().size() : 0); }
  [[nodiscard]] size_t pending() const { return unsent() + out.size(); }
  [[nodiscard]] bool handshake_done() const { return !tls || tls->handshake_done(); }
  // Reads up to `budget` bytes. Returns true when anything changed (bytes, EOF, error).
  bool fill(size_t budget);
  // Drives a TLS handshake that needs no input (the client's first flight).
  void start_tls();
  // Continues as TLS from the bytes already in rx (the ClientHello that was classified).
  void adopt_tls(TlsChannel channel);
  void send(std::string_view plain);
  // Drops everything queued for the fd.
  void discard_output();
  // Frees empty buffers larger than `keep` (after a download, a kept-alive connection waits
  // with little; an idle flow, swept, keeps none).
  void trim(size_t keep = size_t{64} * 1024);
  // An idle flow (nothing moved for a sweep): every buffer shrinks to the bytes it holds (none
  // when empty). Returns the bytes of memory freed.
  size_t release();
  // Bytes held and memory taken by this side's buffers.
  [[nodiscard]] BufferUse use() const;
  // Writes queued bytes; sends FIN when asked and all is written. Returns true on progress.
  bool flush();
  // connect(2) finished (EPOLLOUT): clears `connecting` or sets `error`.
  void finish_connect();
  // Drops the fd (its watch must be removed first).
  void close_fd() { fd.reset(); }

 private:
  void after_tls_input();
};

// The HTTP/1.1 exchange on one connection: at most one request in flight; the next is parsed
// only when the previous response is complete (pipelined bytes wait in box.rx, bounded).
struct Exchange {
  // kHold: a SigV4 request without x-amz-content-sha256 whose body must be read whole before
  // the head can be re-signed (the signature covers the body's hash).
  // kFresh: a file:/cmd: credential the request needs is being re-read off the loop.
  enum class Req { kHead, kFresh, kHold, kBody, kDone };
  // kCapture: a capture rule covers the response: its body is read whole (capped), the new
  // secrets taken out (CredentialSet::capture), then head and scrubbed body go to the box.
  enum class Resp { kIdle, kHead, kBody, kCapture, kDone };
  Req req = Req::kHead;
  Resp resp = Resp::kIdle;
  http::Request request;
  http::RequestContext ctx;
  std::optional<http::BodyReader> req_body;
  std::optional<http::BodyReader> resp_body;
  bool resp_chunked = false;  // re-chunk the scrubbed body
  bool resp_started = false;  // bytes of this response went to the box
  bool close_after = false;   // Connection: close on either message (or an early response)
  std::optional<cred::Scrubber> scrubber;
  size_t held = 0;                 // verbatim body: bytes the scrubber held, at the front of up.rx
  Clock::time_point held_since{};  // scrubber holds bytes since (for the flush timer)
  // The injector holds a request body tail that may start a placeholder since (flush timer).
  Clock::time_point req_held_since{};
  std::optional<uint64_t> max_body;
  uint64_t body_up = 0;    // request body bytes (decoded)
  uint64_t body_down = 0;  // response body bytes (decoded)
  std::string held_body;   // kHold: the body so far (<= CredentialSet::kMaxBodyScan)
  uint64_t scanned = 0;    // request body bytes scanned for placeholders
  std::string scan_tail;   // last bytes of the previous body piece (a placeholder split in two)
  // `body = true` credentials scoped to the host: the decoded body goes through it (first
  // CredentialSet::kMaxBodyScan bytes) and a chunked body is re-chunked.
  std::optional<cred::BodyInjector> injector;
  bool rechunk = false;
  bool woken = false;                      // kFresh: a refresh it waited for finished
  bool capture = false;                    // a capture rule covers this request's response
  std::optional<http::Response> captured;  // kCapture: the head, held until the body is read
  // A model response: its token usage, read as it goes. Behind a pointer, as `ws` below: most
  // flows never have one, and every open flow would carry its ~450 bytes.
  std::unique_ptr<UsageMeter> usage;
  std::string captured_body;  // kCapture: the decoded body so far
  // For the audit event.
  std::string method;
  std::string path;
  std::string rule;
  std::vector<std::string> credentials;
  int status = 0;
  Clock::time_point head_started{};  // first byte of a request head (slowloris deadline)
};

enum class Mode {
  kClassify,  // waiting for the first bytes
  kSplice,    // passthrough TLS / raw TCP: bytes both ways, unchanged
  kHttp,      // HTTP/1.1 exchanges (intercepted TLS or plain)
  kTunnel,    // after 101 (websocket only) on an HTTP connection: frames read both ways
  kAlpn,      // the box offered h2: its handshake waits for the upstream's ALPN (h2_relay.hpp)
  kH2,        // HTTP/2 both sides of an intercepted connection (h2_relay.hpp)
  kClosing,   // flushing the last bytes to the box, then closed
};

struct Conn {
  uint64_t id = 0;
  net::FlowInfo info;
  // Bytes of flow data buffered per direction before reading stops: ProxyOptions::buffer, or
  // less when the session's buffer budget gave the flow small socket buffers (many flows open).
  // Request and response heads may still grow to ProxyOptions::buffer (their size limit).
  size_t cap = 0;
  Mode mode = Mode::kClassify;
  Side box;
  Side up;
  bool tls = false;        // the box speaks TLS
  bool intercept = false;  // ... and the proxy terminates it
  std::string sni;
  Exchange http;
  // kTunnel: the upgraded WebSocket's frames, read both ways. A pointer: ~1.2 KiB inline would
  // be paid by every open flow (an idle intercepted flow's budget is 32 KiB; docs/PROXY.md).
  std::unique_ptr<WsRelay> ws;
  std::unique_ptr<H2Relay, H2RelayDeleter> h2;  // kAlpn, kH2
  UpstreamSessions::Tag session_tag;            // where the upstream's tickets are kept
  // Set while an idle intercepted flow's upstream connection is closed (ProxyOptions::
  // upstream_idle): the address it was connected to, reconnected on the next request.
  struct Parked {
    policy::IpAddr addr;
    uint16_t port = 0;
  };
  std::optional<Parked> parked;
  Clock::time_point opened{};
  Clock::time_point last_activity{};
  uint64_t lingered = 0;  // bytes discarded while closing
  // Upstream name resolution on the worker (0: none running). While it runs the box side is not
  // read; `plug` keeps the translator's end unwritable so the box gets its SYN-ACK (or RST) only
  // once the upstream is known (ProxyHandler::on_open).
  uint64_t resolving = 0;
  struct Plug {
    base::UniqueFd peer;  // a dup of the translator's end
    size_t junk = 0;      // bytes written into our end to fill it
    int sndbuf = 0;       // the translator end's SO_SNDBUF before
  };
  std::optional<Plug> plug;
  bool raw = false;     // a raw_tcp rule allowed it (spliced from the first byte)
  std::string refused;  // over the connections_per_minute budget: why (no upstream opened)
  // The box side is the translator's socketpair and the flow may still be handed back to it
  // (cleared for good once a byte came from the upstream or went to the box, or either FIN).
  bool handback = false;
  // Interception slots (ProxyOptions::max_intercepted): `slot` holds one (from the decision to
  // intercept until destroyed); `slot_wait` queues for one, the box side not read meanwhile.
  bool slot = false;
  bool slot_wait = false;
  bool done = false;     // destroy after the current callback
  bool yielded = false;  // run() stopped at its round limit with work left
};

// What the connection code needs from the handler.
struct ProxyHandler::Internals {
  event::Loop& loop;
  const policy::EgressPolicy& policy;
  ProxyOptions options;
  http::HttpRules rules;
  policy::EgressPolicy raw_tcp;
  net::ConnectHandler connector;
  ossl::SslCtxPtr box_ctx;       // null until the first interception (make_tls_contexts)
  ossl::SslCtxPtr upstream_ctx;  // null until the first interception (make_tls_contexts)
  cred::CredentialSet* credentials;
  SessionCa* ca;
  audit::Sink& audit;
  std::vector<policy::HostPattern> intercept;  // credential scopes + rule hosts
  UpstreamSessions sessions;
  ProxyCounters& counters;
  // Runs a connection's state machine again (a background job it waited for finished).
  std::function<void(uint64_t conn_id)> wake;
  std::unique_ptr<net::AsyncResolver> resolver;  // upstream names, off the loop
  std::unique_ptr<net::Worker> refresher;        // file:/cmd: credential re-reads, off the loop
  net::FlowControl* control = nullptr;           // the translator, for hand-backs
  size_t slots_taken = 0;                        // Conn::slot set
  std::deque<uint64_t> slot_waiters;             // Conn::slot_wait set, first come first
};

// The most `s` may hold in rx: its head size limit while a head is parsed, else c.cap.
[[nodiscard]] size_t rx_limit(const ProxyOptions& o, const Conn& c, const Side& s);

// proxy_handler.cpp: makes in.box_ctx and in.upstream_ctx if they are not there yet.
[[nodiscard]] base::Status make_tls_contexts(ProxyHandler::Internals& in);

// proxy_classify.cpp: first bytes -> mode. Returns true on progress.
bool classify(ProxyHandler::Internals& in, Conn& c);
// Takes the upstream socket (connecting) for the flow; false (c.up.error set, audited) on error.
bool adopt_upstream(ProxyHandler::Internals& in, Conn& c, base::Result<net::OpenResult> r);
// Whether the flow has its upstream socket (opened when the flow was, or once resolved).
bool open_upstream(ProxyHandler::Internals& in, Conn& c);
// upstream_park.cpp: an idle intercepted HTTP/1.1 flow (nothing in flight, nothing held, idle
// for ProxyOptions::upstream_idle at `now`) gives up its upstream connection and its `SSL`:
// returns the bytes of heap it is estimated to free (0: not parked). reopen_upstream connects
// to the same address again and starts TLS, resuming the session the connection left; false
// (c.up.error set, audited) when the connect cannot start.
size_t park_upstream(ProxyHandler::Internals& in, Conn& c, Clock::time_point now);
bool reopen_upstream(ProxyHandler::Internals& in, Conn& c);
// Gives a kSplice flow's upstream socket to the translator when nothing is between the two:
// the box side drained and written upstream, nothing read from the upstream or written to the
// box. `connecting_ok`: the translator has not answered the box yet (a raw flow whose name just
// resolved), so an upstream still connecting is fine. Returns true when handed back (c.done).
bool try_hand_back(ProxyHandler::Internals& in, Conn& c, bool connecting_ok);
// proxy_classify.cpp: kSplice / kTunnel step. Returns true on progress.
bool splice(ProxyHandler::Internals& in, Conn& c);
// http_exchange.cpp: kHttp step. Returns true on progress.
bool http_step(ProxyHandler::Internals& in, Conn& c);
// Flushes the held bytes whose hold has run out at `now`: a response scrubber's (scrub_hold)
// and the request body injector's (inject_hold), each on its own clock.
void release_expired(ProxyHandler::Internals& in, Conn& c, Clock::time_point now);
// Whether a scrubber or the body injector holds bytes for this connection.
[[nodiscard]] bool holds_bytes(const Conn& c);

// http_guards.cpp: what keeps an exchange scannable. A status of 0 lets it go on.
struct Refusal {
  int status = 0;
  std::string reason;
};
// Upgrade (websocket only), fragments, Range where bodies carry secrets; forces identity.
[[nodiscard]] Refusal guard_request(ProxyHandler::Internals& in, Conn& c, http::Request& r);
// Content or transfer codings the scrubber cannot read, 206 where bodies carry secrets.
[[nodiscard]] Refusal guard_response(ProxyHandler::Internals& in, const Conn& c,
                                     const http::Response& r);

// websocket.cpp, kTunnel: bytes from the box checked (placeholders off-scope, masking) before
// they go up; bytes from the upstream scrubbed into frames for the box; held bytes released.
// ws_up/ws_down return false when they ended the connection.
[[nodiscard]] bool ws_up(ProxyHandler::Internals& in, Conn& c, std::string_view bytes);
[[nodiscard]] bool ws_down(ProxyHandler::Internals& in, Conn& c, std::string_view bytes);
void ws_release(Conn& c);

// http_exchange.cpp: the response's token usage (read so far) goes to the session's ledger.
void settle_usage(ProxyHandler::Internals& in, Conn& c);

// Unwatches and closes a side; it counts as finished both ways.
void close_side(ProxyHandler::Internals& in, Side& s);
// Ends the flow: an audit "proxy.drop" (when `why` is set), the box side flushed, then closed.
void drop(ProxyHandler::Internals& in, Conn& c, std::string_view why);
// Sends a complete response made by the proxy and closes after it.
void answer(ProxyHandler::Internals& in, Conn& c, int status, std::string_view line);
// Audits how a flow is served as one "proxy.open" event (mode: raw, passthrough, intercept, http).
void audit_open(ProxyHandler::Internals& in, const net::FlowInfo& info, std::string_view mode,
                std::string_view sni = {});
// Audits the exchange as one "http.request" event.
void audit_request(ProxyHandler::Internals& in, Conn& c, std::string_view decision,
                   std::string_view reason = {});
// The same for an exchange other than c.http (an HTTP/2 stream's).
void audit_exchange(ProxyHandler::Internals& in, const Conn& c, const Exchange& x,
                    std::string_view decision, std::string_view reason = {});
// http_exchange.cpp: why the request's Host does not name the connection's host and port
// (empty when it does).
[[nodiscard]] std::string host_mismatch(const Conn& c, const http::Request& r);

}  // namespace agentbox::proxy
