// One HTTP/2 stream through the relay (h2_relay.hpp): the request checked with the HTTP/1.1
// exchange's own pieces (parser, rules, guards, credentials), the response scrubbed.
#include "h2_stream.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "agentbox/cred/sigv4.hpp"

namespace agentbox::proxy {

namespace {

constexpr size_t kH2ScanOverlap = 4096;  // longer than any placeholder (as http_exchange.cpp)

std::string url(const H2Relay& h, const H2Stream& s) {
  return "https://" + h.c.info.name + std::string(http::target_path(s.x.request.target));
}

// The request head as HTTP/1.1, read back by http::parse_request: the one strict parser (Host
// grammar, Content-Length, field syntax, limits) judges both protocols. Empty with `why` set when
// the pseudo-headers cannot make a request line.
std::string as_http1(H2Stream& s, int& status, std::string& why) {
  std::string method, path, host_field;
  std::string fields;
  for (const auto& f : s.fields) {
    if (f.name == ":method") {
      method = f.value;
    } else if (f.name == ":path") {
      path = f.value;
    } else if (f.name == ":authority") {
      s.authority = f.value;
    } else if (f.name == "host") {
      host_field = f.value;
    } else if (!f.name.empty() && f.name.front() != ':') {
      fields += f.name + ": " + f.value + "\r\n";
    }
  }
  s.x.method = method;  // for the audit line, also of a stream refused here
  s.x.path = http::audit_path(path);
  if (method == "CONNECT") {
    status = 405;
    why = "CONNECT refused: agentbox does not relay CONNECT (no tunnels past the name checks)";
    return {};
  }
  if (!s.authority.empty() && !host_field.empty() && s.authority != host_field) {
    status = 400;
    why = "request blocked: :authority and Host differ";
    return {};
  }
  if (s.authority.empty()) {
    s.authority = host_field;
  }
  return method + " " + path + " HTTP/1.1\r\nhost: " + s.authority + "\r\n" + fields + "\r\n";
}

// The checked request as HTTP/2 fields: pseudo-headers, then the fields in their order.
std::vector<http::Header> up_fields(const H2Stream& s) {
  const auto& r = s.x.request;
  std::vector<http::Header> out = {{":method", r.method},
                                   {":scheme", "https"},
                                   {":authority", s.authority},
                                   {":path", r.target}};
  for (const auto& f : r.headers) {
    std::string name = f.name;
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (name != "host") {
      out.push_back({std::move(name), f.value});
    }
  }
  return out;
}

// Policy checks before credentials (as begin_request in http_exchange.cpp). False: refused.
bool check_policy(H2Relay& h, H2Stream& s, bool had_te) {
  auto& in = h.in;
  auto& x = s.x;
  auto& r = x.request;
  if (r.refused_method()) {
    h2_refuse(h, s, 405,
              r.method + " " + url(h, s) + " refused: agentbox does not relay " + r.method +
                  " (no tunnels past the name checks, no TRACE echoes)");
    return false;
  }
  if (auto why = host_mismatch(h.c, r); !why.empty()) {
    h2_refuse(h, s, 403, "request blocked: " + why);
    return false;
  }
  const auto rv = in.rules.check(h.c.info.name, r.method, r.target);
  x.rule = rv.named ? rv.rule : h.c.info.rule;
  if (!rv.allowed) {
    x.rule = rv.rule;
    h2_refuse(h, s, 403,
              r.method + " " + url(h, s) + " denied by rule " + rv.rule +
                  (rv.why.empty() ? "" : " (" + rv.why + ")"));
    return false;
  }
  x.max_body = rv.max_body;
  if (auto g = guard_request(in, h.c, r); g.status != 0) {
    h2_refuse(h, s, g.status, r.method + " " + url(h, s) + " refused: " + g.reason);
    return false;
  }
  if (had_te) {
    r.set_header("te", "trailers");  // the only TE HTTP/2 allows; gRPC servers require it
  }
  if (x.max_body && r.framing == http::Framing::kContentLength && r.content_length > *x.max_body) {
    h2_refuse(h, s, 413,
              fmt::format("{} {} denied by rule {} (body of {} bytes exceeds max_body {})",
                          r.method, url(h, s), rv.rule, r.content_length, *x.max_body));
    return false;
  }
  if (!h.c.refused.empty()) {
    h2_refuse(h, s, 429, "request blocked: " + h.c.refused);
    return false;
  }
  if (in.options.budget != nullptr) {
    if (auto b = in.options.budget->admit(h.c.info.name); b.limit != SessionLimit::kNone) {
      h2_refuse(h, s, 429, "request blocked: " + b.why);
      return false;
    }
  }
  return true;
}

// Credentials: swap or block (as forward_request), then the request goes up.
void forward(H2Relay& h, H2Stream& s) {
  auto& in = h.in;
  auto& x = s.x;
  auto& r = x.request;
  if (in.credentials != nullptr) {
    if (cred::sigv4::is_sigv4(r.header("authorization").value_or(""))) {
      h2_refuse(h, s, 403,
                "request blocked: SigV4 requests are relayed over HTTP/1.1 only (the signature "
                "may cover the body)");
      return;
    }
    const auto v = in.credentials->inspect(r, h.c.info.name, {}, /*cleartext=*/false);
    if (v.blocked) {  // as forward_request: a budget reached 429, other refusals 403
      h2_refuse(h, s, cred::refusal_status(v.budget), "request blocked: " + v.reason);
      return;
    }
    if (v.capture) {
      h2_refuse(h, s, 403,
                "request blocked: a capture rule covers this request; agentbox reads such "
                "responses over HTTP/1.1 only");
      return;
    }
    x.credentials = v.used;
  }
  const auto fields = up_fields(s);
  const auto nv = h2_nv(fields);
  nghttp2_data_provider body = h2_up_body(s);
  // Bytes (or trailers) that came while the request waited for a credential still go up.
  const bool has_body = !s.up_end || !s.up.empty() || !s.up_trailers.empty();
  const int32_t id =
      nghttp2_submit_request(h.up, nullptr, nv.data(), nv.size(), has_body ? &body : nullptr, &s);
  if (id < 0) {
    h2_refuse(h, s, 502,
              fmt::format("request blocked: {}: {}", h.c.info.name, nghttp2_strerror(id)));
    return;
  }
  s.up_id = id;
  s.phase = H2Stream::Phase::kOpen;
  if (in.options.budget != nullptr) {
    in.options.budget->count_request(h.c.info.name);
  }
  ++in.counters.requests;
}

// Placeholders in request DATA (first kMaxBodyScan bytes, with an overlap across frames).
bool scan_body(H2Relay& h, H2Stream& s, std::string_view data) {
  auto& x = s.x;
  if (h.in.credentials == nullptr || x.scanned >= cred::CredentialSet::kMaxBodyScan ||
      data.empty()) {
    return true;
  }
  std::string window = x.scan_tail;
  window.append(data.substr(0, cred::CredentialSet::kMaxBodyScan));
  http::Request none;
  const auto v = h.in.credentials->inspect(none, h.c.info.name, window, false);
  if (v.blocked) {
    h2_refuse(h, s, 403, "request blocked: " + v.reason);
    return false;
  }
  x.scanned += data.size();
  x.scan_tail = window.substr(window.size() - std::min(window.size(), kH2ScanOverlap));
  return true;
}

// Every field name and value through the stream's scrubber (it holds every secret form the set
// knows: building one costs more than scrubbing a head, so a stream builds one, for its head,
// DATA and trailers; finish() leaves it empty for the next part). Scrubbing keeps lengths, so
// the fields are cut back out of the joined text at their offsets.
void scrub_fields(cred::Scrubber& sc, std::vector<http::Header>& fields) {
  if (fields.empty()) {
    return;
  }
  std::string joined;
  for (const auto& f : fields) {
    joined.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  std::string out = sc.feed(joined);  // two statements: feed runs before finish
  out += sc.finish();
  size_t at = 0;
  for (auto& f : fields) {
    f.name.assign(out, at, f.name.size());
    at += f.name.size() + 2;
    f.value.assign(out, at, f.value.size());
    at += f.value.size() + 2;
  }
}

void settle(H2Relay& h, H2Stream& s) {
  auto& x = s.x;
  if (!x.usage) {
    return;
  }
  const auto reading = x.usage->finish();
  x.usage.reset();
  if (h.in.options.budget != nullptr) {
    h.in.options.budget->record(h.c.info.name, x.credentials, reading);
  }
}

bool grpc_call(const H2Stream& s) {
  return std::any_of(s.fields.begin(), s.fields.end(), [](const http::Header& f) {
    return f.name == "content-type" && f.value.rfind("application/grpc", 0) == 0;
  });
}

// A gRPC client reads a refusal from grpc-status (a trailers-only response), not from the HTTP
// status: the proxy's line goes in grpc-message, percent-encoded (the gRPC spec's encoding).
void refuse_grpc(H2Relay& h, H2Stream& s, int status, const std::string& line) {
  const char* code = "7";  // PERMISSION_DENIED
  if (status == 429 || status == 413) {
    code = "8";  // RESOURCE_EXHAUSTED
  } else if (status == 502) {
    code = "14";  // UNAVAILABLE
  } else if (status == 400 || status == 405) {
    code = "12";  // UNIMPLEMENTED
  }
  std::string message;
  for (const char ch : "agentbox: " + line) {
    const auto u = static_cast<unsigned char>(ch);
    message += u >= 0x20 && u < 0x7f && u != '%' ? std::string(1, ch) : fmt::format("%{:02X}", u);
  }
  const std::vector<http::Header> fields = {{":status", "200"},
                                            {"content-type", "application/grpc"},
                                            {"grpc-status", code},
                                            {"grpc-message", message},
                                            {"x-agentbox-denied", "1"}};
  const auto nv = h2_nv(fields);
  s.down_end = true;
  (void)nghttp2_submit_response(h.box, s.box_id, nv.data(), nv.size(), nullptr);
  s.headers_sent = true;
}

}  // namespace

void h2_request_head(H2Relay& h, H2Stream& s) {
  auto& x = s.x;
  std::string why;
  int status = 0;
  const std::string head = as_http1(s, status, why);
  if (head.empty()) {
    h2_refuse(h, s, status, why);
    return;
  }
  if (s.phase == H2Stream::Phase::kHeaders) {
    auto p = http::parse_request(std::as_bytes(std::span(head.data(), head.size())));
    if (p.status != http::ParseStatus::kOk) {
      h2_refuse(h, s, p.status == http::ParseStatus::kError ? p.http_status : 400,
                "request blocked: malformed request: " + p.reason);
      return;
    }
    x.request = std::move(p.message);
    x.method = x.request.method;
    x.path = http::audit_path(x.request.target);
    const bool had_te = x.request.count("te") > 0;
    if (!check_policy(h, s, had_te)) {
      return;
    }
  }
  if (h.in.credentials != nullptr) {
    const uint64_t id = h.c.id;
    auto wake = h.in.wake;
    if (h.in.credentials->await_fresh(x.request, h.c.info.name, false, [wake, id] { wake(id); })) {
      s.phase = H2Stream::Phase::kFresh;
      return;
    }
  }
  forward(h, s);
}

void h2_request_data(H2Relay& h, H2Stream& s, std::string_view data) {
  auto& x = s.x;
  x.body_up += data.size();
  if (x.max_body && x.body_up > *x.max_body) {
    h2_refuse(h, s, 413,
              fmt::format("{} {} denied by rule {} (body exceeds max_body {})", x.method, url(h, s),
                          x.rule, *x.max_body));
    (void)nghttp2_session_consume(h.box, s.box_id, data.size());
    return;
  }
  if (!scan_body(h, s, data)) {
    (void)nghttp2_session_consume(h.box, s.box_id, data.size());
    return;
  }
  s.up.append(data);  // its window comes back when the upstream session takes it
  if (s.up_id != 0) {
    (void)nghttp2_session_resume_data(h.up, s.up_id);
  }
}

void h2_request_trailers(H2Relay& h, H2Stream& s) {
  s.up_end = true;
  if (h.in.credentials != nullptr && s.phase != H2Stream::Phase::kAnswered) {
    http::Request t;
    t.headers = s.up_trailers;
    const auto v = h.in.credentials->inspect(t, h.c.info.name, {}, false);
    if (v.blocked) {
      h2_refuse(h, s, 403, "request blocked: " + v.reason + " (in trailers)");
      return;
    }
    s.up_trailers = std::move(t.headers);
  }
  if (s.up_id != 0) {
    (void)nghttp2_session_resume_data(h.up, s.up_id);
  }
}

void h2_response_head(H2Relay& h, H2Stream& s, bool end_stream) {
  auto& x = s.x;
  http::Response r;
  for (auto& f : s.resp_fields) {
    if (f.name == ":status") {
      r.status = std::atoi(f.value.c_str());
    } else {
      r.headers.push_back(f);
    }
  }
  if (r.status >= 100 && r.status < 200) {
    s.resp_fields.clear();  // interim (100, 103): not relayed; the final head follows
    return;
  }
  s.final_seen = true;
  r.framing = end_stream                   ? http::Framing::kNone
              : r.header("content-length") ? http::Framing::kContentLength
                                           : http::Framing::kChunked;
  if (auto g = guard_response(h.in, h.c, r); g.status != 0) {
    ++h.in.counters.upstream_failures;
    h2_refuse(h, s, g.status, "request blocked: " + g.reason);
    return;
  }
  x.status = r.status;
  if (h.in.credentials != nullptr) {
    x.scrubber = h.in.credentials->scrubber();
    scrub_fields(*x.scrubber, s.resp_fields);
  }
  SessionBudget* b = h.in.options.budget;
  if (b != nullptr && r.status >= 200 && r.status < 300 &&
      (!x.credentials.empty() || b->model_host(h.c.info.name))) {
    if (auto f = UsageMeter::format_for(r.header("content-type").value_or(""))) {
      x.usage = std::make_unique<UsageMeter>(*f);
    }
  }
  const auto nv = h2_nv(s.resp_fields);
  nghttp2_data_provider body = h2_down_body(s);
  (void)nghttp2_submit_response(h.box, s.box_id, nv.data(), nv.size(),
                                end_stream ? nullptr : &body);
  s.headers_sent = true;
  if (end_stream) {
    s.down_end = true;
    h2_audit(h, s, "allowed");
  }
}

void h2_response_data(H2Relay& h, H2Stream& s, std::string_view data) {
  auto& x = s.x;
  x.body_down += data.size();
  if (x.usage) {
    x.usage->feed(data);
  }
  if (x.scrubber) {
    s.down.append(x.scrubber->feed(data));
    x.held_since = x.scrubber->held() > 0 ? Clock::now() : Clock::time_point{};
  } else {
    s.down.append(data);
  }
  (void)nghttp2_session_resume_data(h.box, s.box_id);
}

void h2_response_end(H2Relay& h, H2Stream& s) {
  auto& x = s.x;
  if (h.in.credentials != nullptr && !x.scrubber) {
    x.scrubber = h.in.credentials->scrubber();  // no head came through h2_response_head
  }
  if (x.scrubber) {
    s.down.append(x.scrubber->finish());
    scrub_fields(*x.scrubber, s.down_trailers);
  }
  s.down_end = true;
  settle(h, s);
  h2_audit(h, s, "allowed");
  (void)nghttp2_session_resume_data(h.box, s.box_id);
}

void h2_refuse(H2Relay& h, H2Stream& s, int status, const std::string& line) {
  ++h.in.counters.denied;
  s.x.status = status;
  s.phase = H2Stream::Phase::kAnswered;
  if (s.up_id != 0 && !s.up_closed) {
    (void)nghttp2_submit_rst_stream(h.up, NGHTTP2_FLAG_NONE, s.up_id, NGHTTP2_CANCEL);
  }
  const size_t unsent = s.up.size();
  s.up.clear();
  (void)nghttp2_session_consume(h.box, s.box_id, unsent);
  h2_audit(h, s, "denied", line);
  if (s.headers_sent) {
    (void)nghttp2_submit_rst_stream(h.box, NGHTTP2_FLAG_NONE, s.box_id, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if (grpc_call(s)) {
    refuse_grpc(h, s, status, line);
    return;
  }
  std::string body = "agentbox: " + line + "\n";
  std::replace_if(
      body.begin(), body.end() - 1, [](char ch) { return static_cast<unsigned char>(ch) < 0x20; },
      ' ');
  s.down.clear();
  s.down.append(body);
  s.down_end = true;
  s.down_trailers.clear();
  const std::vector<http::Header> fields = {{":status", std::to_string(status)},
                                            {"content-type", "text/plain; charset=utf-8"},
                                            {"content-length", std::to_string(body.size())},
                                            {"x-agentbox-denied", "1"}};
  const auto nv = h2_nv(fields);
  nghttp2_data_provider p = h2_down_body(s);
  (void)nghttp2_submit_response(h.box, s.box_id, nv.data(), nv.size(), &p);
  s.headers_sent = true;
}

void h2_audit(H2Relay& h, H2Stream& s, std::string_view decision, std::string_view reason) {
  if (s.audited) {
    return;
  }
  s.audited = true;
  settle(h, s);
  audit_exchange(h.in, h.c, s.x, decision, reason);
}

}  // namespace agentbox::proxy
