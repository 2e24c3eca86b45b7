// HTTP/1.1 heads, framing and chunked decoding (see http1.hpp for the rules and why).
#include "agentbox/http/http1.hpp"

#include <algorithm>
#include <charconv>

#include "agentbox/http/text.hpp"
#include "agentbox/policy/host.hpp"
#include "byte_reader.hpp"

namespace agentbox::http {

namespace {

// RFC 9110 5.6.2: tchar.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// field-vchar / SP / HTAB / obs-text: everything but CTLs (incl. NUL, CR, LF) and DEL.
bool is_field_text(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u == '\t' || (u >= 0x20 && u != 0x7f);
  });
}

// Calls f(token) for each element of a comma-separated list across every field `name`.
template <class F>
void for_each_list_item(const Message& m, std::string_view name, F&& f) {
  for (const auto& h : m.headers) {
    if (!iequals(h.name, name)) {
      continue;
    }
    std::string_view v = h.value;
    while (!v.empty()) {
      const size_t comma = v.find(',');
      const auto item = detail::trim_ows(v.substr(0, comma));
      f(item);
      if (comma == std::string_view::npos) {
        break;
      }
      v.remove_prefix(comma + 1);
    }
  }
}

bool list_has(const Message& m, std::string_view name, std::string_view token) {
  bool found = false;
  for_each_list_item(m, name,
                     [&](std::string_view item) { found = found || iequals(item, token); });
  return found;
}

struct HeadError {
  int status = 0;
  std::string reason;
};

// Parses one field line into `out`; returns an error reason or empty.
std::string parse_field(std::string_view line, std::vector<Header>& out) {
  if (line.front() == ' ' || line.front() == '\t') {
    return "obsolete line folding";
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return "field line without a colon";
  }
  const auto name = line.substr(0, colon);
  if (!is_token(name)) {
    return "invalid field name (whitespace before the colon?)";
  }
  const auto value = detail::trim_ows(line.substr(colon + 1));
  if (!is_field_text(value)) {
    return "control character in a field value";
  }
  out.push_back({std::string(name), std::string(value)});
  return {};
}

// Splits the head: start line and fields. kNeedMore until the empty line has arrived.
ParseStatus split_head(std::string_view buf, const Limits& limits, std::string_view& start,
                       std::vector<Header>& fields, size_t& head_bytes, HeadError& err,
                       int too_large_status) {
  const size_t scan = std::min(buf.size(), limits.max_head);
  const size_t end = buf.substr(0, scan).find("\r\n\r\n");
  const size_t checked = end == std::string_view::npos ? scan : end + 4;
  // CRLF only: any LF without CR before it, or CR without LF after it, is refused.
  for (size_t i = 0; i < checked; ++i) {
    if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) {
      err = {400, "bare LF in the head"};
      return ParseStatus::kError;
    }
    if (buf[i] == '\r' && i + 1 < checked && buf[i + 1] != '\n') {
      err = {400, "bare CR in the head"};
      return ParseStatus::kError;
    }
  }
  const size_t first_eol = buf.substr(0, checked).find("\r\n");
  if ((first_eol == std::string_view::npos ? checked : first_eol) > limits.max_line) {
    err = {too_large_status == 431 ? 414 : too_large_status, "start line too long"};
    return ParseStatus::kError;
  }
  if (end == std::string_view::npos) {
    if (buf.size() >= limits.max_head) {
      err = {too_large_status, "head larger than the limit"};
      return ParseStatus::kError;
    }
    return ParseStatus::kNeedMore;
  }
  head_bytes = end + 4;
  start = buf.substr(0, first_eol);
  size_t pos = first_eol + 2;
  while (pos < end + 2) {
    const size_t eol = buf.find("\r\n", pos);
    if (fields.size() >= limits.max_headers) {
      err = {too_large_status, "too many header fields"};
      return ParseStatus::kError;
    }
    if (auto why = parse_field(buf.substr(pos, eol - pos), fields); !why.empty()) {
      err = {400, std::move(why)};
      return ParseStatus::kError;
    }
    pos = eol + 2;
  }
  return ParseStatus::kOk;
}

// "HTTP/1.0" / "HTTP/1.1" -> minor; other HTTP versions -> 505; anything else -> 400.
int parse_version(std::string_view v, int& minor) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
      v[7] < '0' || v[7] > '9') {
    return 400;
  }
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
    return 505;
  }
  minor = v[7] - '0';
  return 0;
}

// Content-Length: every value (across fields and comma lists) 1*DIGIT and all equal.
std::string content_length(const Message& m, std::optional<uint64_t>& out) {
  std::string err;
  for_each_list_item(m, "content-length", [&](std::string_view item) {
    uint64_t v = 0;
    const auto* last = item.data() + item.size();
    const auto [p, ec] = std::from_chars(item.data(), last, v);
    if (item.empty() || item.size() > 18 || ec != std::errc() || p != last || item[0] == '+' ||
        item[0] == '-') {
      err = "invalid Content-Length";
    } else if (out && *out != v) {
      err = "conflicting Content-Length values";
    } else {
      out = v;
    }
  });
  if (err.empty() && !out && m.count("content-length") > 0) {
    err = "empty Content-Length";
  }
  return err;
}

std::vector<std::string_view> transfer_codings(const Message& m) {
  std::vector<std::string_view> codings;
  for_each_list_item(m, "transfer-encoding",
                     [&](std::string_view item) { codings.push_back(item); });
  return codings;
}

void set_keep_alive(Message& m) {
  if (m.version_minor == 0) {
    m.keep_alive = list_has(m, "connection", "keep-alive");
  } else {
    m.keep_alive = !list_has(m, "connection", "close");
  }
}

// Host (or the authority of an absolute-form target): hostname[:port]. An IP literal leaves
// host empty; anything else that is not a strict hostname is an error.
bool parse_authority(std::string_view a, Request& r) {
  if (a.empty() || a.find('@') != std::string_view::npos) {
    return false;
  }
  std::string_view host = a;
  if (a.front() == '[') {
    const size_t close = a.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    host = a.substr(0, close + 1);
    a.remove_prefix(close + 1);
  } else {
    const size_t colon = a.rfind(':');
    host = a.substr(0, colon);
    a = colon == std::string_view::npos ? std::string_view() : a.substr(colon);
  }
  if (!a.empty()) {
    uint16_t port = 0;
    const auto digits = a.substr(1);
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (a.front() != ':' || digits.empty() || ec != std::errc() ||
        p != digits.data() + digits.size() || port == 0) {
      return false;
    }
    r.port = port;
  }
  if (host.front() == '[') {
    return host.size() > 2;  // IPv6 literal: no name to bind
  }
  if (auto canon = policy::normalize_name(host)) {
    r.host = std::move(*canon);
    return true;
  }
  return !host.empty() && std::all_of(host.begin(), host.end(),
                                      [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

HeadError request_semantics(Request& r) {
  const size_t hosts = r.count("host");
  if (hosts > 1 || (hosts == 0 && r.version_minor == 1)) {
    return {400, "a request needs exactly one Host field"};
  }
  std::string_view authority;
  const std::string_view t = r.target;
  if (r.method == "CONNECT") {
    authority = t;
  } else if (t == "*") {
    if (r.method != "OPTIONS") {
      return {400, "asterisk-form target outside OPTIONS"};
    }
  } else if (t.substr(0, 7) == "http://" || t.substr(0, 8) == "https://") {
    const auto rest = t.substr(t.find("//") + 2);
    authority = rest.substr(0, rest.find_first_of("/?#"));
  } else if (t.empty() || t.front() != '/') {
    return {400, "request target is not origin-form"};
  }
  if (hosts == 1) {
    const auto host_field = *r.header("host");
    if (host_field.empty()) {
      return {400, "empty Host"};  // no name to bind the request to
    }
    if (!authority.empty() && !iequals(host_field, authority)) {
      return {400, "Host does not match the request target's authority"};
    }
    authority = host_field;
  }
  if (!authority.empty() && !parse_authority(authority, r)) {
    return {400, "invalid Host"};
  }
  std::optional<uint64_t> cl;
  if (auto err = content_length(r, cl); !err.empty()) {
    return {400, std::move(err)};
  }
  const auto codings = transfer_codings(r);
  if (r.count("transfer-encoding") > 0) {
    if (r.version_minor == 0) {
      return {400, "Transfer-Encoding in an HTTP/1.0 request"};
    }
    if (cl) {
      return {400, "both Content-Length and Transfer-Encoding"};
    }
    if (codings.size() != 1 || !iequals(codings[0], "chunked")) {
      return {501, "Transfer-Encoding other than chunked"};
    }
    r.framing = Framing::kChunked;
  } else if (cl) {
    r.framing = *cl > 0 ? Framing::kContentLength : Framing::kNone;
    r.content_length = *cl;
  }
  set_keep_alive(r);
  r.expect_continue = r.count("expect") > 0 && iequals(*r.header("expect"), "100-continue");
  r.wants_upgrade = list_has(r, "connection", "upgrade") && r.count("upgrade") > 0;
  return {};
}

HeadError response_semantics(Response& r, const RequestContext& ctx) {
  std::optional<uint64_t> cl;
  if (auto err = content_length(r, cl); !err.empty()) {
    return {502, std::move(err)};
  }
  set_keep_alive(r);
  if (r.status == 101) {
    if (!ctx.asked_upgrade) {
      return {502, "101 Switching Protocols without an Upgrade request"};
    }
    r.framing = Framing::kTunnel;
    return {};
  }
  if (ctx.head || r.interim() || r.status == 204 || r.status == 304) {
    r.framing = Framing::kNone;
    return {};
  }
  if (r.count("transfer-encoding") > 0) {
    const auto codings = transfer_codings(r);
    if (cl) {
      return {502, "both Content-Length and Transfer-Encoding"};
    }
    if (r.version_minor == 1 && !codings.empty() && iequals(codings.back(), "chunked")) {
      r.framing = Framing::kChunked;
      return {};
    }
    r.framing = Framing::kUntilClose;  // RFC 9112 6.3 (4): chunked not final -> read to close
  } else if (cl) {
    r.framing = *cl > 0 ? Framing::kContentLength : Framing::kNone;
    r.content_length = *cl;
    return {};
  } else {
    r.framing = Framing::kUntilClose;
  }
  r.keep_alive = false;
  return {};
}

template <class T>
Parsed<T> error(int status, std::string_view reason) {
  Parsed<T> p;
  p.status = ParseStatus::kError;
  p.http_status = status;
  p.reason = reason;
  return p;
}

void append_fields(std::string& out, const std::vector<Header>& headers) {
  for (const auto& h : headers) {
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  out += "\r\n";
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

StreamKind classify_stream(std::span<const std::byte> first) {
  const auto s = detail::as_chars(first);
  if (s.empty()) {
    return StreamKind::kNeedMore;
  }
  if (s[0] == 0x16) {
    if (s.size() < 2) {
      return StreamKind::kNeedMore;
    }
    return s[1] == 0x03 ? StreamKind::kTls : StreamKind::kOther;
  }
  // An HTTP/1.x request line starts with a method token then SP. Methods seen in practice are
  // upper-case letters (and '-'); 24 characters bounds the wait.
  constexpr size_t kMaxMethod = 24;
  for (size_t i = 0; i < s.size() && i <= kMaxMethod; ++i) {
    const char c = s[i];
    if (c == ' ') {
      return i > 0 ? StreamKind::kHttp1 : StreamKind::kOther;
    }
    if (!((c >= 'A' && c <= 'Z') || c == '-')) {
      return StreamKind::kOther;
    }
  }
  return s.size() > kMaxMethod ? StreamKind::kOther : StreamKind::kNeedMore;
}

std::optional<std::string_view> Message::header(std::string_view name) const {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) {
      return std::string_view(h.value);
    }
  }
  return std::nullopt;
}

size_t Message::count(std::string_view name) const {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(),
                                           [&](const Header& h) { return iequals(h.name, name); }));
}

void Message::set_header(std::string_view name, std::string value) {
  auto it = std::find_if(headers.begin(), headers.end(),
                         [&](const Header& h) { return iequals(h.name, name); });
  if (it == headers.end()) {
    headers.push_back({std::string(name), std::move(value)});
    return;
  }
  it->value = std::move(value);
  headers.erase(std::remove_if(std::next(it), headers.end(),
                               [&](const Header& h) { return iequals(h.name, name); }),
                headers.end());
}

size_t Message::remove_header(std::string_view name) {
  const size_t before = headers.size();
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [&](const Header& h) { return iequals(h.name, name); }),
                headers.end());
  return before - headers.size();
}

bool Request::refused_method() const {
  return method == "CONNECT" || method == "TRACE" || method == "TRACK";
}

Parsed<Request> parse_request(std::span<const std::byte> bytes, const Limits& limits) {
  const auto buf = detail::as_chars(bytes);
  Parsed<Request> p;
  std::string_view start;
  HeadError err;
  p.status = split_head(buf, limits, start, p.message.headers, p.head_bytes, err, 431);
  if (p.status == ParseStatus::kError) {
    return error<Request>(err.status, std::move(err.reason));
  }
  if (p.status == ParseStatus::kNeedMore) {
    return p;
  }
  const size_t sp1 = start.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : start.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || start.find(' ', sp2 + 1) != std::string_view::npos) {
    return error<Request>(400, "malformed request line");
  }
  Request& r = p.message;
  r.method = start.substr(0, sp1);
  r.target = start.substr(sp1 + 1, sp2 - sp1 - 1);
  const bool target_ok =
      !r.target.empty() &&
      std::all_of(r.target.begin(), r.target.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  if (!is_token(r.method) || !target_ok) {
    return error<Request>(400, "malformed request line");
  }
  if (int st = parse_version(start.substr(sp2 + 1), r.version_minor); st != 0) {
    return error<Request>(st, "unsupported HTTP version");
  }
  if (auto e = request_semantics(r); e.status != 0) {
    return error<Request>(e.status, std::move(e.reason));
  }
  return p;
}

Parsed<Response> parse_response(std::span<const std::byte> bytes, const RequestContext& ctx,
                                const Limits& limits) {
  const auto buf = detail::as_chars(bytes);
  Parsed<Response> p;
  std::string_view start;
  HeadError err;
  p.status = split_head(buf, limits, start, p.message.headers, p.head_bytes, err, 502);
  if (p.status == ParseStatus::kError) {
    return error<Response>(502, std::move(err.reason));
  }
  if (p.status == ParseStatus::kNeedMore) {
    return p;
  }
  Response& r = p.message;
  if (start.size() < 12 || start[8] != ' ' || (start.size() > 12 && start[12] != ' ') ||
      parse_version(start.substr(0, 8), r.version_minor) != 0) {
    return error<Response>(502, "malformed status line");
  }
  const auto code = start.substr(9, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      code[0] < '1' || code[0] > '5') {
    return error<Response>(502, "malformed status code");
  }
  r.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  r.reason = start.size() > 13 ? start.substr(13) : std::string_view();
  if (!is_field_text(r.reason)) {
    return error<Response>(502, "control character in the reason phrase");
  }
  if (auto e = response_semantics(r, ctx); e.status != 0) {
    return error<Response>(e.status, std::move(e.reason));
  }
  return p;
}

std::string serialize_head(const Request& r) {
  std::string out =
      r.method + " " + r.target + (r.version_minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  append_fields(out, r.headers);
  return out;
}

std::string serialize_head(const Response& r) {
  std::string out = r.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += r.reason;
  out += "\r\n";
  append_fields(out, r.headers);
  return out;
}

std::vector<std::string_view> list_items(const Message& m, std::string_view name) {
  std::vector<std::string_view> out;
  for_each_list_item(m, name, [&](std::string_view item) {
    if (!item.empty()) {
      out.push_back(item);
    }
  });
  return out;
}

}  // namespace agentbox::http
