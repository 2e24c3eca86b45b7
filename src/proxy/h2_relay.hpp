// HTTP/2 on an intercepted connection: an nghttp2 server session toward the box and a client
// session toward the upstream, one upstream stream per box stream (docs/PROXY.md, "HTTP/2").
//
// Theory of operation:
//   1. ALPN (proxy_classify.cpp): a box hello that offers h2, to a host where h2 can be checked,
//      is not answered at once. The upstream is connected offering what the box offered
//      (h2 and/or http/1.1, in the box's order); the box's handshake starts only once the
//      upstream picked (Mode::kAlpn, alpn_step), and it is answered with that protocol. h2 is
//      spoken only when both sides speak it; otherwise the connection is the HTTP/1.1 exchange.
//   2. Box stream headers (HPACK-decoded by nghttp2, which also enforces RFC 9113's message
//      rules: pseudo-headers, no connection-specific fields, content-length vs DATA) become an
//      HTTP/1.1 head that http::parse_request reads with all its strictness; then the same
//      checks as an HTTP/1.1 request: refused methods, Host/:authority = SNI and port, HTTP rules
//      (path spellings), guard_request, max_body, the session budget, credential refresh and
//      CredentialSet::inspect (swap or block). Then the request goes up as a new stream.
//   3. Request DATA: counted (max_body), scanned for placeholders (first 1 MiB, with an overlap
//      across frames) and queued for the upstream stream; trailers are scanned too.
//   4. Response headers are guarded (codings) and scrubbed; DATA goes through a per-stream
//      Scrubber (held bytes across frames, released by the hold timer); trailers scrubbed.
//   5. A refused stream is answered by the proxy (its status and one-line body) or reset; the
//      other streams go on. One http.request audit line per stream.
// Memory: each stream's queues are bounded by the HTTP/2 windows we advertise (a window is
// given back only when its bytes were handed to the other session), so a stream holds at most
// its window per direction and a connection its connection window.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "proxy_conn.hpp"

namespace agentbox::proxy {

// Whether a box hello offering `alpn` to c.sni may be answered with h2 (the box offered h2 and
// nothing on that host needs HTTP/1.1: see h2_relay.cpp). Returns the ALPN list to offer the
// upstream (wire format), empty for "speak HTTP/1.1 as before".
[[nodiscard]] std::string h2_upstream_alpn(ProxyHandler::Internals& in, const Conn& c,
                                           const std::vector<std::string>& alpn);
// Mode::kAlpn: keeps the box's TLS channel until the upstream picked its protocol.
void h2_defer_box(ProxyHandler::Internals& in, Conn& c, TlsChannel box);
// Mode::kAlpn step: once the upstream handshake ended (or failed), the box's handshake starts
// and the flow goes on as kH2 or kHttp. Returns true on progress.
bool alpn_step(ProxyHandler::Internals& in, Conn& c);
// Mode::kH2 step. Returns true on progress.
bool h2_step(ProxyHandler::Internals& in, Conn& c);
// Scrubber holds (hold timer), release of expired ones, and the audit of streams still open
// when the flow is destroyed.
[[nodiscard]] bool h2_holds(const Conn& c);
void h2_release_expired(ProxyHandler::Internals& in, Conn& c,
                        std::chrono::steady_clock::time_point now);
void h2_abort(ProxyHandler::Internals& in, Conn& c);

}  // namespace agentbox::proxy
