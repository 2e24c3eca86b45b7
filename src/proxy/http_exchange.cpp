// HTTP/1.1 through the proxy: per-request policy, credential swap, streamed and scrubbed bodies.
//
// Stages of one exchange (Exchange in proxy_conn.hpp), each resumable when bytes are missing:
//   request head  parse (strict) -> CONNECT/TRACE/TRACK refused -> Host = flow name (= SNI) ->
//                 HTTP rules -> max_body against Content-Length -> CredentialSet::inspect
//                 (headers: swap or block) -> head forwarded (Expect: 100-continue included;
//                 the upstream's 100 comes back like any interim response)
//   request body  BodyReader validates the framing; the raw bytes go on unchanged, the decoded
//                 bytes are counted (max_body) and scanned for placeholders (first 1 MiB)
//   response head parse (framing from the request) -> guard_response (codings, 206) ->
//                 scrubbed -> to the box; 1xx loop; 101 (websocket only) -> kTunnel
//                 (proxy_classify.cpp splice, frames read both ways: websocket.cpp)
//   response body BodyReader -> Scrubber (same length) -> as is (Content-Length, until close)
//                 or re-chunked (chunked; trailers dropped) -> the box, as it arrives
// A request denied by the proxy is answered with a one-line 403/4xx body and the connection
// is closed (no body to drain, no state to resynchronize).
#include <fmt/core.h>

#include <algorithm>
#include <cstdint>

#include "agentbox/cred/sigv4.hpp"
#include "agentbox/policy/ip.hpp"
#include "h2_relay.hpp"
#include "proxy_conn.hpp"

namespace agentbox::proxy {

namespace {

using Req = Exchange::Req;
using Resp = Exchange::Resp;

constexpr size_t kScanOverlap = 4096;  // longer than any placeholder

std::string scheme(const Conn& c) {
  return c.tls ? "https" : "http";
}

// Box bytes read off an HTTP connection count against the session's egress as they come.
void count_egress(ProxyHandler::Internals& in, const Conn& c, size_t n) {
  if (in.options.budget != nullptr && n > 0) {
    in.options.budget->count_egress(c.info.id, n);
  }
}

// A response whose token usage is read: a model host's (or one a credential went to) answer
// in JSON or SSE. Content-Encoding needs no case: guard_request asks for identity on every
// credential host and guard_response refuses any other coding there.
void start_usage(ProxyHandler::Internals& in, Conn& c, const http::Response& resp) {
  auto& x = c.http;
  SessionBudget* b = in.options.budget;
  if (b == nullptr || resp.status < 200 || resp.status >= 300 ||
      (x.credentials.empty() && !b->model_host(c.info.name))) {
    return;
  }
  if (auto f = UsageMeter::format_for(resp.header("content-type").value_or(""))) {
    x.usage = std::make_unique<UsageMeter>(*f);
  }
}

// Denies the request in flight: answered by the proxy, audited, connection closed.
bool deny(ProxyHandler::Internals& in, Conn& c, int status, const std::string& line) {
  answer(in, c, status, line);
  audit_request(in, c, "denied", line);
  return true;
}

// Credentials (with the body when a SigV4 signature needs it), then the head goes upstream.
bool forward_request(ProxyHandler::Internals& in, Conn& c, std::string_view body) {
  auto& x = c.http;
  auto& r = x.request;
  if (!c.refused.empty()) {  // the connection budget refused the flow as it opened
    return deny(in, c, 429, "request blocked: " + c.refused);
  }
  if (in.options.budget != nullptr) {
    if (auto b = in.options.budget->admit(c.info.name); b.limit != SessionLimit::kNone) {
      return deny(in, c, 429, "request blocked: " + b.why);
    }
  }
  if (in.credentials != nullptr) {
    const auto v = in.credentials->inspect(r, c.info.name, body, /*cleartext=*/!c.tls);
    if (v.blocked) {  // a budget reached is 429, a method or any other credential refusal 403
      return deny(in, c, cred::refusal_status(v.budget), "request blocked: " + v.reason);
    }
    x.credentials = v.used;
    x.capture = v.capture;
  }
  if (c.parked) {
    (void)reopen_upstream(in, c);  // a failure is in c.up.error: answered 502 just below
  }
  if (!c.up.open()) {
    return deny(in, c, 502,
                "request blocked: cannot reach " + c.info.name + ": " +
                    (c.up.error.empty() ? "no upstream connection" : c.up.error));
  }
  x.ctx.head = r.method == "HEAD";
  x.ctx.asked_upgrade = r.wants_upgrade;
  x.close_after = !r.keep_alive;
  if (in.credentials != nullptr && r.framing != http::Framing::kNone) {
    auto inj = in.credentials->body_injector(c.info.name, /*cleartext=*/!c.tls, x.capture);
    if (!inj.empty()) {
      x.injector.emplace(std::move(inj));
      // Trailers are dropped with the re-chunking (as on responses).
      x.rechunk = r.framing == http::Framing::kChunked;
    }
  }
  c.up.send(http::serialize_head(r));
  if (in.options.budget != nullptr) {
    in.options.budget->count_request(c.info.name);
  }
  x.req_body.emplace(r.framing, r.content_length);  // max_body is counted in request_body
  x.req = x.req_body->done() ? Req::kDone : Req::kBody;
  x.resp = Resp::kHead;
  ++in.counters.requests;
  return true;
}

bool await_credentials(ProxyHandler::Internals& in, Conn& c);
bool continue_request(ProxyHandler::Internals& in, Conn& c);

bool begin_request(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  auto& r = x.request;
  x.method = r.method;
  x.path = http::audit_path(r.target);
  const std::string url =
      scheme(c) + "://" + c.info.name + std::string(http::target_path(r.target));
  if (r.refused_method()) {
    return deny(in, c, 405,
                r.method + " " + url + " refused: agentbox does not relay " + r.method +
                    " (no tunnels past the name checks, no TRACE echoes)");
  }
  if (auto why = host_mismatch(c, r); !why.empty()) {
    return deny(in, c, 403, "request blocked: " + why);
  }
  const auto rv = in.rules.check(c.info.name, r.method, r.target);
  if (!rv.allowed) {
    x.rule = rv.rule;
    return deny(in, c, 403,
                r.method + " " + url + " denied by rule " + rv.rule +
                    (rv.why.empty() ? "" : " (" + rv.why + ")"));
  }
  x.rule = rv.named ? rv.rule : c.info.rule;
  x.max_body = rv.max_body;
  if (auto g = guard_request(in, c, r); g.status != 0) {
    return deny(in, c, g.status, r.method + " " + url + " refused: " + g.reason);
  }
  if (x.max_body && r.framing == http::Framing::kContentLength && r.content_length > *x.max_body) {
    return deny(in, c, 413,
                r.method + " " + url + " denied by rule " + rv.rule + " (body of " +
                    std::to_string(r.content_length) + " bytes exceeds max_body " +
                    std::to_string(*x.max_body) + ")");
  }
  return await_credentials(in, c);
}

// A file:/cmd: credential this request needs is stale: its re-read runs on the worker and the
// request waits (kFresh); other connections go on. Then the request continues.
bool await_credentials(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  if (in.credentials != nullptr) {
    const uint64_t id = c.id;
    auto wake = in.wake;
    x.woken = false;
    if (in.credentials->await_fresh(x.request, c.info.name, /*cleartext=*/!c.tls,
                                    [wake, id] { wake(id); })) {
      x.req = Req::kFresh;
      return true;
    }
  }
  return continue_request(in, c);
}

bool continue_request(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  auto& r = x.request;
  x.req = Req::kHead;
  const bool form = http::iequals(r.header("content-type").value_or("").substr(0, 33),
                                  "application/x-www-form-urlencoded");
  if (in.credentials != nullptr && r.framing != http::Framing::kNone &&
      cred::sigv4::is_sigv4(r.header("authorization").value_or("")) &&
      (!r.header("x-amz-content-sha256") || form)) {
    // The signature covers the body's hash and the request does not state it: the body must be
    // read whole before the head can be checked and re-signed. A form body is read whole
    // anyway: an AWS query action in it may mint credentials (minting_action).
    if (r.framing != http::Framing::kContentLength ||
        r.content_length >= cred::CredentialSet::kMaxBodyScan) {
      return deny(in, c, 413,
                  "request blocked: a SigV4 request without x-amz-content-sha256 can be re-signed "
                  "only with a Content-Length body under 1 MiB");
    }
    x.req = Req::kHold;
    return true;
  }
  return forward_request(in, c, {});
}

bool hold_body(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  const uint64_t want = x.request.content_length - x.held_body.size();
  const size_t n = static_cast<size_t>(std::min<uint64_t>(want, c.box.rx.size()));
  x.held_body.append(c.box.rx.view().substr(0, n));
  c.box.rx.consume(n);
  if (x.held_body.size() == x.request.content_length) {
    std::string body = std::move(x.held_body);
    x.held_body.clear();
    (void)forward_request(in, c, body);
    if (c.mode == Mode::kHttp) {
      c.box.rx.prepend(body);  // the ordinary body path forwards (and scans) it
    }
    return true;
  }
  if (c.box.eof) {
    audit_request(in, c, "aborted", "the box closed in the middle of the request body");
    x = Exchange{};
    drop(in, c, {});
    return true;
  }
  return n > 0;
}

bool request_head(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  if (c.box.rx.empty()) {
    if (c.box.eof) {
      drop(in, c, {});  // the box is done: a clean end of the connection
      return true;
    }
    return false;
  }
  if (x.head_started == Clock::time_point{}) {
    x.head_started = Clock::now();
  }
  auto p = http::parse_request(c.box.rx.bytes());
  if (p.status == http::ParseStatus::kNeedMore) {
    if (c.box.eof) {
      drop(in, c, "request head cut short");
      return true;
    }
    if (c.box.rx.size() >= in.options.buffer) {
      return deny(in, c, 431, "request blocked: request head too large");
    }
    return false;
  }
  if (p.status == http::ParseStatus::kError) {
    return deny(in, c, p.http_status, "request blocked: malformed request: " + p.reason);
  }
  c.box.rx.consume(p.head_bytes);
  count_egress(in, c, p.head_bytes);
  x.request = std::move(p.message);
  return begin_request(in, c);
}

// Request body bytes (decoded) to the upstream, re-chunked when the injector changed framing.
void send_up(Conn& c, std::string_view data) {
  if (data.empty()) {
    return;
  }
  if (c.http.rechunk) {
    c.up.send(http::encode_chunk(data));
  } else {
    c.up.send(data);
  }
}

void note_body_uses(ProxyHandler::Internals& in, Conn& c) {
  for (auto& name : c.http.injector->take_new_uses()) {
    in.audit.emit(audit::Event("credential.use")
                      .str("credential", name)
                      .str("host", c.info.name)
                      .str("how", "body"));
    if (std::find(c.http.credentials.begin(), c.http.credentials.end(), name) ==
        c.http.credentials.end()) {
      c.http.credentials.push_back(std::move(name));
    }
  }
}

// Body injection: the decoded bytes go through the swapper (same length: Content-Length holds)
// for the first kMaxBodyScan bytes, then as they are; the held tail is released at the bound.
void inject_body(ProxyHandler::Internals& in, Conn& c, std::string_view decoded) {
  auto& x = c.http;
  const uint64_t before = x.body_up - decoded.size();
  const size_t swap_part = before >= cred::CredentialSet::kMaxBodyScan
                               ? 0
                               : static_cast<size_t>(std::min<uint64_t>(
                                     decoded.size(), cred::CredentialSet::kMaxBodyScan - before));
  if (swap_part > 0) {
    send_up(c, x.injector->feed(decoded.substr(0, swap_part)));
    if (before + swap_part >= cred::CredentialSet::kMaxBodyScan) {
      send_up(c, x.injector->finish());
    }
    note_body_uses(in, c);
    // A tail that may start a placeholder waits for the next piece, but only for the hold: a
    // client that pauses there (a streamed upload waiting on the server) must not stall.
    x.req_held_since = x.injector->held() > 0 ? Clock::now() : Clock::time_point{};
  }
  send_up(c, decoded.substr(swap_part));
}

bool request_body(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  const size_t cap = c.cap;
  if (c.box.rx.empty() || c.up.pending() >= cap) {
    if (c.box.eof && c.box.rx.empty()) {
      audit_request(in, c, "aborted", "the box closed in the middle of the request body");
      x = Exchange{};
      drop(in, c, {});
      return true;
    }
    return false;
  }
  const size_t room = std::min(c.box.rx.size(), cap - c.up.pending());
  // The raw bytes go upstream as they are; the decoded ones are counted and scanned. A
  // Content-Length body is its raw bytes (no decoded copy).
  std::string decoded_copy;
  std::string_view decoded;
  size_t used = 0;
  if (x.req_body->verbatim()) {
    used = x.req_body->verbatim_limit(room);
    x.req_body->skip(used);
    decoded = c.box.rx.view().substr(0, used);
  } else {
    used = x.req_body->feed(c.box.rx.bytes().first(room), decoded_copy);
    decoded = decoded_copy;
  }
  x.body_up += decoded.size();
  const std::string url =
      scheme(c) + "://" + c.info.name + std::string(http::target_path(x.request.target));
  if (x.max_body && x.body_up > *x.max_body) {
    return deny(in, c, 413,
                x.method + " " + url + " denied by rule " + x.rule + " (body exceeds max_body " +
                    std::to_string(*x.max_body) + ")");
  }
  if (x.req_body->failed()) {
    return deny(in, c, 400, "request blocked: malformed request body: " + x.req_body->error());
  }
  if (in.credentials != nullptr && x.scanned < cred::CredentialSet::kMaxBodyScan &&
      !decoded.empty()) {
    std::string window = x.scan_tail;
    window.append(decoded.substr(0, cred::CredentialSet::kMaxBodyScan));
    http::Request none;
    const auto v = in.credentials->inspect(none, c.info.name, window, !c.tls);
    if (v.blocked) {
      return deny(in, c, 403, "request blocked: " + v.reason);
    }
    x.scanned += decoded.size();
    x.scan_tail = window.substr(window.size() - std::min(window.size(), kScanOverlap));
  }
  if (x.injector) {
    inject_body(in, c, decoded);
  } else {
    c.up.send(c.box.rx.view().substr(0, used));
  }
  c.box.rx.consume(used);
  count_egress(in, c, used);
  if (x.req_body->done()) {
    if (x.injector) {
      send_up(c, x.injector->finish());
      note_body_uses(in, c);
      x.injector.reset();
    }
    if (x.rechunk) {
      c.up.send(http::kLastChunk);
    }
    x.req = Req::kDone;
  }
  return used > 0;
}

void send_body(Conn& c, std::string_view data) {
  if (c.http.usage) {
    c.http.usage->feed(data);
  }
  if (!data.empty()) {
    if (c.http.resp_chunked) {
      c.box.send(http::encode_chunk(data));
    } else {
      c.box.send(data);
    }
  }
}

void finish_response(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  if (x.scrubber) {
    send_body(c, x.scrubber->finish());
  }
  if (x.resp_chunked) {
    c.box.send(http::kLastChunk);
  }
  x.resp = Resp::kDone;
  settle_usage(in, c);
  audit_request(in, c, "allowed");
  const bool until_close = x.resp_body && !x.resp_body->done();
  if (x.close_after || x.req != Req::kDone || until_close || c.up.eof) {
    x = Exchange{};
    drop(in, c, {});
    return;
  }
  x = Exchange{};
  c.box.trim();
  c.up.trim();
}

bool response_head(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  if (c.box.pending() >= c.cap) {
    return false;
  }
  auto p = http::parse_response(c.up.rx.bytes(), x.ctx);
  if (p.status == http::ParseStatus::kNeedMore) {
    if (c.up.eof || c.up.failed() || c.up.rx.size() >= in.options.buffer) {
      std::string why = "the upstream closed without answering";
      if (c.up.failed()) {
        why = c.up.error;
      } else if (!c.up.eof) {
        why = "response head too large";
      }
      ++in.counters.upstream_failures;
      if (x.resp_started) {
        audit_request(in, c, "aborted", why);
        x = Exchange{};
        drop(in, c, {});
        return true;
      }
      return deny(in, c, 502, "request blocked: " + c.info.name + ": " + why);
    }
    return false;
  }
  if (p.status == http::ParseStatus::kError) {
    ++in.counters.upstream_failures;
    return deny(in, c, 502, "request blocked: bad response from " + c.info.name + ": " + p.reason);
  }
  auto& resp = p.message;
  if (auto g = guard_response(in, c, resp); g.status != 0) {
    ++in.counters.upstream_failures;
    return deny(in, c, g.status, "request blocked: " + g.reason);
  }
  c.up.rx.consume(p.head_bytes);
  if (x.capture && !resp.interim() && resp.framing != http::Framing::kTunnel) {
    x.status = resp.status;
    x.close_after = x.close_after || !resp.keep_alive;
    x.resp_body.emplace(resp.framing, resp.content_length);
    x.captured = std::move(resp);
    x.resp = Resp::kCapture;
    return true;
  }
  std::string head = http::serialize_head(resp);
  if (in.credentials != nullptr) {
    cred::Scrubber s = in.credentials->scrubber();
    head = s.feed(head);  // two statements: feed must run before finish takes its tail
    head += s.finish();
  }
  c.box.send(head);
  x.resp_started = true;
  x.status = resp.status;
  if (resp.interim()) {
    return true;
  }
  if (resp.framing == http::Framing::kTunnel) {
    audit_request(in, c, "allowed", "switching protocols");
    c.ws = std::make_unique<WsRelay>();
    c.ws->meter = in.options.budget != nullptr &&
                  (!x.credentials.empty() || in.options.budget->model_host(c.info.name));
    c.ws->credentials = x.credentials;
    if (in.credentials != nullptr) {
      c.ws->scrubber = in.credentials->scrubber();
      c.ws->fresh = c.ws->scrubber;
    }
    x = Exchange{};
    c.mode = Mode::kTunnel;
    return true;
  }
  x.close_after = x.close_after || !resp.keep_alive;
  x.resp_chunked = resp.framing == http::Framing::kChunked;
  x.resp_body.emplace(resp.framing, resp.content_length);
  if (in.credentials != nullptr) {
    x.scrubber = in.credentials->scrubber();
  }
  start_usage(in, c, resp);
  x.resp = Resp::kBody;
  if (x.resp_body->done()) {
    finish_response(in, c);
  }
  return true;
}

// Sends `n` bytes from the front of up.rx, already scrubbed, as response body bytes.
void send_verbatim(Conn& c, size_t n) {
  auto& x = c.http;
  if (n == 0) {
    return;
  }
  x.resp_body->skip(n);
  x.body_down += n;
  if (x.usage) {
    x.usage->feed(c.up.rx.view().substr(0, n));
  }
  c.box.send(c.up.rx.view().substr(0, n));
  c.up.rx.consume(n);
}

// Content-Length and until-close bodies: scrubbed in place in up.rx and encrypted for the box
// straight from there (no copy). Bytes the scrubber holds back (a possible start of a secret)
// stay at the front of up.rx (`held`) and are scanned again with what follows, until the body
// ends or the hold expires (release_held).
bool response_body_verbatim(Conn& c) {
  auto& x = c.http;
  const size_t room = c.cap - c.box.pending();
  const size_t avail = x.resp_body->verbatim_limit(c.up.rx.size());
  const size_t n = std::min(avail, room);
  const bool no_more = c.up.eof || c.up.failed();
  // The last bytes of the body (or of the stream) are final: nothing can complete a secret.
  const bool body_ends = x.resp_body->verbatim_limit(SIZE_MAX) == avail;  // Content-Length
  const bool final = n == avail && (body_ends || (no_more && n == c.up.rx.size()));
  size_t keep = n;
  if (x.scrubber && n > 0) {
    keep = x.scrubber->scrub_in_place(std::span(c.up.rx.data(), n), final);
  }
  send_verbatim(c, keep);
  const bool fresh = n > x.held;  // bytes not scanned before: the hold starts again
  x.held = n - keep;
  if (x.held == 0) {
    x.held_since = Clock::time_point{};
  } else if (fresh) {
    x.held_since = Clock::now();
  }
  bool progress = keep > 0;
  if (!x.resp_body->done() && c.up.rx.empty() && no_more) {
    x.resp_body->finish_eof();
    progress = true;
  }
  return progress;
}

bool response_body(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  const size_t cap = c.cap;
  if (c.box.pending() >= cap) {
    return false;
  }
  bool progress = false;
  if (x.resp_body->verbatim()) {
    progress = response_body_verbatim(c);
  } else {
    const size_t room = std::min(c.up.rx.size(), cap - c.box.pending());
    std::string decoded;
    const size_t used = x.resp_body->feed(c.up.rx.bytes().first(room), decoded);
    c.up.rx.consume(used);
    progress = used > 0;
    if (!x.resp_body->done() && c.up.rx.empty() && (c.up.eof || c.up.failed())) {
      x.resp_body->finish_eof();
      progress = true;
    }
    x.body_down += decoded.size();
    if (x.scrubber) {
      decoded = x.scrubber->feed(decoded);
      x.held_since = x.scrubber->held() > 0 ? Clock::now() : Clock::time_point{};
    }
    send_body(c, decoded);
  }
  if (x.resp_body->failed()) {
    ++in.counters.upstream_failures;
    settle_usage(in, c);  // what was streamed before the cut is billed all the same
    audit_request(in, c, "aborted", "response body: " + x.resp_body->error());
    x = Exchange{};
    drop(in, c, {});  // the box sees the body cut short, never a made-up end
    return true;
  }
  if (x.resp_body->done()) {
    x.resp_body.reset();  // done: no until-close pending
    finish_response(in, c);
    return true;
  }
  return progress;
}

// kCapture: the whole body is read (at most CredentialSet::kMaxCaptureBody), the new secrets
// are taken out of it, then the head (framed by Content-Length) and the body, scrubbed with a
// scrubber that knows the new secrets, go to the box at once.
bool capture_body(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  const size_t used = x.resp_body->feed(c.up.rx.bytes(), x.captured_body);
  c.up.rx.consume(used);
  if (!x.resp_body->done() && c.up.rx.empty() && (c.up.eof || c.up.failed())) {
    x.resp_body->finish_eof();
  }
  if (x.resp_body->failed()) {
    ++in.counters.upstream_failures;
    return deny(in, c, 502, "request blocked: response body: " + x.resp_body->error());
  }
  if (x.captured_body.size() > cred::CredentialSet::kMaxCaptureBody) {
    return deny(in, c, 502,
                fmt::format("request blocked: a response that mints credentials is larger than "
                            "{} bytes",
                            cred::CredentialSet::kMaxCaptureBody));
  }
  if (!x.resp_body->done()) {
    return used > 0;
  }
  x.resp_body.reset();
  if (auto st = in.credentials->capture(c.info.name, x.method, x.request.target, x.status,
                                        x.captured_body);
      !st) {
    return deny(in, c, 502, "request blocked: " + st.error().message());
  }
  http::Response& resp = *x.captured;
  cred::Scrubber s = in.credentials->scrubber();
  std::string head;
  std::string body;
  if (resp.framing != http::Framing::kNone) {
    resp.remove_header("Transfer-Encoding");
    resp.set_header("Content-Length", std::to_string(x.captured_body.size()));
    body = s.feed(x.captured_body);
    body += s.finish();
  }
  cred::Scrubber hs = in.credentials->scrubber();
  head = hs.feed(http::serialize_head(resp));
  head += hs.finish();
  c.box.send(head);
  c.box.send(body);
  x.resp_started = true;
  x.body_down = body.size();
  x.captured_body.clear();
  x.resp = Resp::kDone;
  audit_request(in, c, "allowed");
  if (x.close_after || x.req != Req::kDone || c.up.eof ||
      resp.framing == http::Framing::kUntilClose) {
    x = Exchange{};
    drop(in, c, {});
    return true;
  }
  x = Exchange{};
  return true;
}

}  // namespace

namespace {

bool response_holds(const Conn& c) {
  return c.http.held > 0 || (c.http.scrubber && c.http.scrubber->held() > 0) ||
         (c.ws && c.ws->scrubber.held() > 0);
}

bool request_holds(const Conn& c) {
  return c.mode == Mode::kHttp && c.http.req == Req::kBody && c.http.injector &&
         c.http.injector->held() > 0;
}

void release_held(Conn& c) {
  if (c.mode == Mode::kHttp && c.http.resp == Resp::kBody && c.http.held > 0) {
    // The held bytes are scanned once more as final: a whole secret form inside them waited
    // for a longer one that may contain it (Scrubber::scrub_in_place) and is replaced now.
    if (c.http.scrubber) {
      (void)c.http.scrubber->scrub_in_place(std::span(c.up.rx.data(), c.http.held), true);
    }
    send_verbatim(c, c.http.held);
    c.http.held = 0;
  } else if (c.mode == Mode::kHttp && c.http.scrubber && c.http.resp == Resp::kBody) {
    send_body(c, c.http.scrubber->finish());
  } else if (c.mode == Mode::kTunnel && c.ws) {
    ws_release(c);
  }
  c.http.held_since = Clock::time_point{};
}

}  // namespace

// The Host field names the connection's host (and port), so no request reaches a host other
// than the one the name checks were made for.
std::string host_mismatch(const Conn& c, const http::Request& r) {
  const std::string sent(r.header("host").value_or(""));
  if (c.info.literal) {
    auto host = std::string_view(sent);
    if (!host.empty() && host.front() == '[') {
      host = host.substr(1, host.find(']') == std::string_view::npos ? 0 : host.find(']') - 1);
    } else {
      host = host.substr(0, host.rfind(':'));
    }
    const auto a = policy::parse_ip(host);
    const auto b = policy::parse_ip(c.info.name);
    if (!a || !b || !(*a == *b)) {
      return "Host `" + sent + "` does not match the connection's address " + c.info.name;
    }
  } else if (r.host != c.info.name) {
    return "Host `" + sent + "` does not match the connection's name `" + c.info.name +
           "` (domain fronting)";
  }
  if (r.port && *r.port != c.info.orig_port) {
    return "Host `" + sent + "` names port " + std::to_string(*r.port) + ", the connection is to " +
           std::to_string(c.info.orig_port);
  }
  return {};
}

void settle_usage(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  if (!x.usage) {
    return;
  }
  const auto reading = x.usage->finish();
  x.usage.reset();
  if (in.options.budget != nullptr) {
    in.options.budget->record(c.info.name, x.credentials, reading);
  }
}

bool holds_bytes(const Conn& c) {
  return response_holds(c) || request_holds(c) || (c.h2 && h2_holds(c));
}

void release_expired(ProxyHandler::Internals& in, Conn& c, Clock::time_point now) {
  if (c.h2) {
    h2_release_expired(in, c, now);
  }
  if (response_holds(c) && now - c.http.held_since >= in.options.scrub_hold) {
    release_held(c);
  }
  if (request_holds(c) && now - c.http.req_held_since >= in.options.inject_hold) {
    // The held tail goes on as it is: a placeholder split by a pause longer than the hold
    // reaches its own (scoped) host unswapped, which fails there and leaks nothing.
    send_up(c, c.http.injector->finish());
    note_body_uses(in, c);
    c.http.req_held_since = Clock::time_point{};
  }
}

bool http_step(ProxyHandler::Internals& in, Conn& c) {
  auto& x = c.http;
  if (c.box.failed() && !c.box.handshake_done()) {
    if (c.box.tls && c.box.tls->peer_refused_certificate()) {
      ++in.counters.ca_refused;
      auto& hosts = in.counters.ca_refused_hosts;
      if (hosts.size() < ProxyCounters::kMaxRefusedHosts &&
          std::find(hosts.begin(), hosts.end(), c.sni) == hosts.end()) {
        hosts.push_back(c.sni);
      }
      drop(in, c, "the client rejected the session CA: " + c.box.error);
    } else {
      drop(in, c, "TLS with the box failed: " + c.box.error);
    }
    return true;
  }
  if (c.box.failed()) {
    if (x.req != Req::kHead || x.resp != Resp::kIdle) {
      audit_request(in, c, "aborted", "box side: " + c.box.error);
      x = Exchange{};
    }
    c.done = true;
    return true;
  }
  if (!c.box.handshake_done()) {
    return false;  // the box's TLS handshake is still running (fill/flush drive it)
  }
  bool progress = false;
  for (int i = 0; i < 8 && c.mode == Mode::kHttp; ++i) {
    bool step = false;
    if (x.req == Req::kHead && x.resp == Resp::kIdle) {
      // An upstream that refused the connection (closed before the box's first request came)
      // is not a closed keep-alive connection: the request is answered 502 naming the cause
      // (begin_request), never an empty reply.
      const bool never_connected = c.up.failed() && c.up.connect_failed;
      if ((!c.up.rx.empty() || c.up.eof) && !never_connected) {
        // Bytes (or a close) from the upstream with no request in flight: end the connection;
        // a client retries a closed keep-alive connection.
        drop(in, c, {});
        return true;
      }
      step = request_head(in, c);
    } else if (x.req == Req::kFresh) {
      step = x.woken && await_credentials(in, c);
    } else if (x.req == Req::kHold) {
      step = hold_body(in, c);
    } else if (x.req == Req::kBody) {
      step = request_body(in, c);
    }
    if (c.mode != Mode::kHttp) {
      return true;
    }
    if (x.resp == Resp::kHead) {
      step = response_head(in, c) || step;
    } else if (x.resp == Resp::kBody) {
      step = response_body(in, c) || step;
    } else if (x.resp == Resp::kCapture) {
      step = capture_body(in, c) || step;
    }
    if (!step) {
      break;
    }
    progress = true;
  }
  return progress;
}

}  // namespace agentbox::proxy
