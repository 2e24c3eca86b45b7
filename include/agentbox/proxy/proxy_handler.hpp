// ProxyHandler: the net::FlowHandler that serves every allowed box connection (the L7 proxy).
//
// Theory of operation, per flow (docs/PROXY.md has the long form):
//   1. on_open answers "accept first": one end of socketpair(AF_UNIX, SOCK_STREAM) goes to the
//      translator (the box gets SYN-ACK at once), the other end is the box side of a Conn here.
//      The upstream connect (net::ConnectHandler) starts at once; a name that cannot be
//      reached is refused (RST). A raw_tcp rule for name:port splices from the first byte
//      (protocols where the server speaks first, such as SSH, work; nothing is checked inside).
//   2. classify the first bytes: TLS ClientHello (SNI), an HTTP/1.x request line, or anything
//      else (dropped, audited). SNI = the flow's DNS name; ECH / no SNI refused.
//   3. TLS to a host no credential and no HTTP rule names: passthrough (the ClientHello bytes
//      are replayed upstream, then bytes are spliced; nothing is decrypted). Otherwise intercept:
//      a leaf from the SessionCa answers the box (ALPN http/1.1, or h2 when the box offered it
//      and the upstream picked it: h2_relay.hpp), the upstream is a verified TLS client (system
//      trust store + --upstream-ca files).
//   4. HTTP/1.1 on intercepted and plain connections (http_exchange.cpp): one request at a time
//      per connection, each checked (Host = SNI = flow name, CONNECT/TRACE/TRACK refused, HTTP
//      rules, credentials injected or blocked), its body streamed; the response scrubbed and
//      streamed (SSE unbuffered); after a 101, a tunnel in both directions. Every request is
//      one "http.request" audit event. HTTP/2 (h2_*.cpp): the same checks per stream.
//   4b. hand-back: once a flow is TLS passthrough (the ClientHello checked and written upstream,
//      nothing read from the upstream yet) or raw TCP (at open), the proxy has nothing left to
//      do with its bytes: it gives the upstream socket to the translator (net::FlowControl),
//      which carries the flow on it as it would a direct connection, and the Conn is released.
//   5. upstream sockets come from net::ConnectHandler (--connect-to, supervisor-side resolution,
//      rebinding guard), so the proxy and the plain path share one rule for where bytes may go.
//      Names are resolved by a net::AsyncResolver (worker threads, per-session cache): a flow
//      whose name is not cached waits "resolving" while every other flow moves; the box's
//      SYN-ACK (or RST, when the name resolves only to refused addresses) waits for it too.
// Event integration: the handler takes the session's event::Loop and registers each of its fds
// with a callback (level-triggered, interest recomputed from buffer state after every event),
// plus one periodic sweep timer for deadlines. All callbacks are noexcept; a connection that
// misbehaves is closed, never the loop. Every buffer is bounded (Options::buffer): a side is
// read only while the bytes it feeds have somewhere to go, so back-pressure reaches both peers
// through their socket windows.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/cred/credentials.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/http/http_rules.hpp"
#include "agentbox/net/connect.hpp"
#include "agentbox/net/flow.hpp"
#include "agentbox/policy/egress.hpp"
#include "agentbox/proxy/openssl_ptr.hpp"
#include "agentbox/proxy/session_budget.hpp"
#include "agentbox/proxy/tls_ca.hpp"

namespace agentbox::proxy {

struct ProxyOptions {
  std::vector<http::HttpRuleSpec> http_rules;
  std::vector<std::string> raw_tcp;  // egress rule grammar: "git.example.com:22", "CIDR:port"
  // Host patterns intercepted although no credential or HTTP rule names them: only to check
  // Host = SNI and to block placeholders (`inspect = true`, --inspect-all).
  std::vector<std::string> inspect;
  // A learning run (--learn): every TLS flow with an SNI is intercepted the same way, so the
  // audit log records each request's method and path for `agentbox profile suggest`. Needs a
  // session CA made with CaOptions::any_name.
  bool inspect_every = false;
  std::vector<net::ConnectTo> connect_to;
  // Runs on the resolver's worker threads, never on the loop (net::AsyncResolver).
  net::Resolver resolver = net::system_resolve;
  size_t resolver_threads = 2;
  std::chrono::milliseconds resolve_timeout{5'000};
  std::chrono::milliseconds dns_ttl{30'000};  // answers cached per session
  std::chrono::milliseconds dns_negative_ttl{5'000};
  std::string system_bundle = kSystemBundle;  // upstream trust
  std::vector<std::string> upstream_ca;       // extra PEM files trusted upstream
  // Bytes buffered per direction and side before reading stops (back-pressure).
  size_t buffer = size_t{128} * 1024;
  size_t max_connections = 4096;
  // Intercepted TLS flows at once (each holds two OpenSSL connections, ~34 KiB that cannot be
  // released while a request is in flight or the flow is stalled; upstream_idle below). A flow past
  // it waits before its handshake, its ClientHello read and the box side no longer read (TCP
  // back-pressure), until one ends; a waiting flow ends a holder stalled for slot_stall
  // (docs/PROXY.md, "Interception slots").
  size_t max_intercepted = 256;
  std::chrono::milliseconds slot_stall{10'000};
  std::chrono::milliseconds first_bytes_timeout{10'000};  // classification
  std::chrono::milliseconds head_timeout{30'000};         // a started request head (slowloris)
  std::chrono::milliseconds idle_timeout{600'000};        // no byte either way
  std::chrono::milliseconds sweep_interval{1'000};
  // An intercepted HTTP/1.1 flow with no request in flight for this long closes its upstream
  // connection (its OpenSSL `SSL`, ~20 KiB) and reconnects, resuming the TLS session, on its
  // next request: an idle flow costs ~16 KiB instead of ~36 (docs/PROXY.md, "Memory").
  std::chrono::milliseconds upstream_idle{10'000};
  // A response body byte held back by the scrubber (it may start a secret) goes out after this
  // long without more data from the upstream.
  std::chrono::milliseconds scrub_hold{50};
  // A request body tail held back by a `body = true` credential's injector (it may start the
  // placeholder) goes upstream after this long without more data from the box. Longer than
  // scrub_hold: a placeholder split by a pause is sent unswapped once this passes, and clients
  // write a body in bursts, rarely pausing inside one.
  std::chrono::milliseconds inject_hold{1'000};
  // The session's budgets and model usage ledger (session_budget.hpp); null: none kept. Must
  // outlive the handler.
  SessionBudget* budget = nullptr;
};

struct ProxyCounters {
  uint64_t opened = 0;
  uint64_t passthrough = 0;
  uint64_t intercepted = 0;
  uint64_t plain_http = 0;
  uint64_t raw = 0;
  uint64_t handed_back = 0;     // passthrough / raw flows the translator carries on by itself
  uint64_t dropped = 0;         // classification or name check failed (ca_refused included)
  uint64_t slot_waits = 0;      // intercepted flows that waited for a slot (max_intercepted)
  uint64_t slot_evictions = 0;  // slot holders ended, stalled, for a waiting flow
  uint64_t ca_refused = 0;      // the box's client refused the session CA's certificate
  // The hosts of those connections, the first kMaxRefusedHosts (the box chooses the names).
  std::vector<std::string> ca_refused_hosts;
  static constexpr size_t kMaxRefusedHosts = 4;
  uint64_t requests = 0;
  uint64_t denied = 0;  // requests answered by the proxy itself (403, 413, 400, 502, ...)
  uint64_t upstream_failures = 0;
  uint64_t upstream_resumed = 0;   // intercepted connections whose upstream TLS was resumed
  uint64_t upstream_parked = 0;    // idle upstream connections closed (upstream_idle)
  uint64_t upstream_reopened = 0;  // ... and connected again for a next request
  uint64_t timeouts = 0;
  uint64_t internal_errors = 0;  // an exception in a callback: connection closed
  uint64_t released = 0;         // bytes of buffer memory idle flows gave back (sweeps)
  uint64_t heap_trims = 0;       // times freed heap went back to the system (malloc_trim)
};

// What the flows' buffers hold and the memory they take (OpenSSL's own not counted).
struct BufferUse {
  size_t bytes = 0;
  size_t capacity = 0;
};

struct Conn;

class ProxyHandler final : public net::FlowHandler {
 public:
  // `credentials` and `ca` may be null (nothing is then intercepted for credentials; a host
  // named by an HTTP rule without a CA is refused, never passed through unchecked). Every
  // reference must outlive the handler.
  [[nodiscard]] static base::Result<std::unique_ptr<ProxyHandler>> create(
      event::Loop& loop, const policy::EgressPolicy& policy, ProxyOptions options,
      cred::CredentialSet* credentials, SessionCa* ca, audit::Sink& audit);
  ~ProxyHandler() override;
  ProxyHandler(const ProxyHandler&) = delete;
  ProxyHandler& operator=(const ProxyHandler&) = delete;

  [[nodiscard]] base::Result<net::OpenResult> on_open(const net::FlowInfo& info) override;
  void on_close(const net::FlowInfo& info, const net::FlowStats& stats) override;
  void attach(net::FlowControl* control) override;

  // Serves `box` (any connected stream socket; made non-blocking here) as the box's end of the
  // flow. on_open calls it with its socketpair end; tests and benchmarks hand it accepted TCP
  // sockets so that real clients can connect.
  [[nodiscard]] base::Status serve(const net::FlowInfo& info, base::UniqueFd box);

  [[nodiscard]] const ProxyCounters& counters() const { return counters_; }
  [[nodiscard]] size_t connection_count() const { return conns_.size(); }
  [[nodiscard]] BufferUse buffer_use() const;
  // Whether the TLS contexts exist: made on the first interception (or at create() when
  // ProxyOptions::upstream_ca names files), never for a session that intercepts nothing.
  [[nodiscard]] bool tls_contexts_made() const;
  // Hosts the session CA must be able to sign for: the credentials' scopes, the HTTP rules'
  // hosts and the inspected ones (what the app passes as CaOptions::hosts).
  [[nodiscard]] static std::vector<std::string> intercept_hosts(
      const std::vector<http::HttpRuleSpec>& rules, const cred::CredentialSet* credentials,
      const std::vector<std::string>& inspect = {});

  // Internal API for the connection code (http_exchange.cpp, proxy_conn.cpp).
  struct Internals;
  [[nodiscard]] Internals& internals() { return *in_; }

 private:
  ProxyHandler() = default;
  // A raw_tcp flow whose upstream can be connected at once: that socket is the flow's.
  [[nodiscard]] std::optional<base::Result<net::OpenResult>> open_raw(const net::FlowInfo& info);
  void on_fd(uint64_t id, bool box_side, uint32_t events) noexcept;
  void on_wake(uint64_t id) noexcept;
  void on_resolved(uint64_t id, const base::Result<std::vector<policy::IpAddr>>& addrs) noexcept;
  void handle_resolved(uint64_t id, const base::Result<std::vector<policy::IpAddr>>& addrs);
  // `refused` (not empty): the connection budget refused the flow; no upstream is opened and
  // its first request is answered 429 (a passthrough flow is dropped).
  base::Status serve_flow(const net::FlowInfo& info, base::UniqueFd box, int translator_end,
                          bool& plugged, const std::string& refused);
  void on_sweep() noexcept;
  void on_flush_timer() noexcept;
  void handle_fd(uint64_t id, bool box_side, uint32_t events);
  void handle_sweep();
  void handle_flush_timer();
  void arm_flush_timer();
  void run(Conn& c) noexcept;
  void update_interest(Conn& c);
  void destroy(uint64_t id);
  // Gives free interception slots to waiting flows, first come first; each runs on its next
  // loop iteration (an EPOLLOUT), not inside the caller.
  void grant_slots();
  // Ends slot holders stalled for ProxyOptions::slot_stall while flows wait (handle_sweep).
  void evict_stalled(std::chrono::steady_clock::time_point now);
  void read_refusal(Conn& c);
  base::Status watch(Conn& c);

  std::unique_ptr<Internals> in_;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::unordered_map<uint64_t, uint64_t> by_flow_;  // FlowInfo::id -> conn id
  uint64_t next_id_ = 1;
  event::WatchId sweep_ = 0;
  event::WatchId flush_timer_ = 0;
  ProxyCounters counters_;
  size_t freed_since_trim_ = 0;  // heap freed since the last malloc_trim (estimate)
};

}  // namespace agentbox::proxy
