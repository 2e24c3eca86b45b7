// HTTP rules: method/path allow-lists per host, path globs and audit paths (http_rules.hpp).
#include "agentbox/http/http_rules.hpp"

#include <algorithm>

#include "agentbox/http/http1.hpp"

namespace agentbox::http {

namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  c = lower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// The byte a "%XX" at `i` encodes, or -1 when there is none there.
int escaped_byte(std::string_view s, size_t i) {
  if (i + 2 >= s.size() || s[i] != '%') {
    return -1;
  }
  const int hi = hex_digit(s[i + 1]);
  const int lo = hex_digit(s[i + 2]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// A segment an upstream may take for "." or "..": after one percent-decoding and with its
// ";parameters" dropped (Tomcat, Jetty, Spring), only dots, maybe with trailing spaces (Windows
// servers strip those and trailing dots).
bool dot_segment(std::string_view seg) {
  std::string d;
  for (size_t i = 0; i < seg.size(); ++i) {
    const int b = escaped_byte(seg, i);
    d += b >= 0 ? static_cast<char>(b) : seg[i];
    i += b >= 0 ? 2 : 0;
  }
  d.resize(std::min(d.size(), d.find(';')));
  while (!d.empty() && d.back() == ' ') {
    d.pop_back();
  }
  return !d.empty() && d.find_first_not_of('.') == std::string::npos;
}

// Why the upstream may resolve `path` differently from the glob, or empty. The list (in
// docs/PROXY.md, "Path spellings refused under a glob") is what common servers and frameworks
// normalise: dot segments in any spelling, encoded separators, backslashes, double encoding,
// encoded control bytes, overlong UTF-8 and %u escapes, empty segments.
std::string_view ambiguous_path(std::string_view path) {
  if (path.find('\\') != std::string_view::npos) {
    return "backslash in the path";
  }
  if (path.find("//") != std::string_view::npos) {
    return "empty path segment";
  }
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') {
      continue;
    }
    if (i + 1 < path.size() && lower(path[i + 1]) == 'u') {
      return "%u escape in the path";
    }
    const int b = escaped_byte(path, i);
    if (b < 0) {
      return "stray % in the path";
    }
    if (b == '/' || b == '\\') {
      return "encoded separator in the path";
    }
    if (b == '%' && i + 4 < path.size() && hex_digit(path[i + 3]) >= 0 &&
        hex_digit(path[i + 4]) >= 0) {
      return "double percent-encoding in the path";
    }
    if (b < 0x20 || b == 0x7f) {
      return "encoded control byte in the path";
    }
    const int next = escaped_byte(path, i + 3);
    if (b == 0xc0 || b == 0xc1 || (b == 0xe0 && next >= 0x80 && next < 0xa0) ||
        (b == 0xf0 && next >= 0x80 && next < 0x90)) {
      return "overlong UTF-8 in the path";
    }
  }
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    end = end == std::string_view::npos ? path.size() : end;
    if (dot_segment(path.substr(pos, end - pos))) {
      return "dot segment in the path";
    }
    pos = end + 1;
  }
  return {};
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view path) {
  // Iterative matcher with backtracking to the last star; `**` may cross '/', `*` may not.
  size_t p = 0;
  size_t s = 0;
  size_t star_p = std::string_view::npos;
  size_t star_s = 0;
  bool star_deep = false;
  // Each backtrack advances star_s, so the loop runs at most |pattern| * |path| steps.
  while (s < path.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_deep = p + 1 < pattern.size() && pattern[p + 1] == '*';
      p += star_deep ? 2 : 1;
      star_p = p;
      star_s = s;
      continue;
    }
    if (p < pattern.size() && pattern[p] == path[s]) {
      ++p;
      ++s;
      continue;
    }
    if (star_p != std::string_view::npos && (star_deep || path[star_s] != '/')) {
      ++star_s;
      s = star_s;
      p = star_p;
      continue;
    }
    return false;
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

std::string_view target_path(std::string_view target) {
  if (target == "*") {
    return target;
  }
  if (!target.empty() && target.front() != '/') {
    // absolute-form: scheme "://" authority path
    const size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) {
      return {};
    }
    const size_t slash = target.find_first_of("/?#", scheme + 3);
    if (slash == std::string_view::npos || target[slash] != '/') {
      return "/";
    }
    target.remove_prefix(slash);
  }
  return target.substr(0, target.find_first_of("?#"));
}

std::string audit_path(std::string_view target) {
  constexpr size_t kMax = 512;
  std::string out(target_path(target));
  const size_t q = target.find('?');
  if (q != std::string_view::npos) {
    auto query = target.substr(q + 1);
    query = query.substr(0, query.find('#'));
    out += '?';
    bool first = true;
    while (!query.empty() && out.size() < kMax) {
      const size_t amp = query.find('&');
      auto param = query.substr(0, amp);
      const size_t eq = param.find('=');
      if (!first) {
        out += '&';
      }
      first = false;
      out += param.substr(0, eq);
      if (eq != std::string_view::npos) {
        out += '=';
      }
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
  }
  if (out.size() > kMax) {
    out.resize(kMax);
  }
  return out;
}

base::Result<HttpRules> HttpRules::create(std::vector<HttpRuleSpec> specs) {
  HttpRules rules;
  for (auto& spec : specs) {
    auto pattern = policy::HostPattern::parse(spec.host);
    if (!pattern) {
      return base::Error::msg("HTTP rule host `" + spec.host + "` is not a host pattern")
          .context("rule " + spec.origin);
    }
    for (auto& m : spec.methods) {
      std::transform(m.begin(), m.end(), m.begin(), [](char c) {
        return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
      });
    }
    rules.rules_.push_back(Rule{std::move(spec), std::move(*pattern)});
  }
  return rules;
}

bool HttpRules::names(std::string_view host) const {
  return std::any_of(rules_.begin(), rules_.end(),
                     [&](const Rule& r) { return r.pattern.matches(host); });
}

std::vector<std::string> HttpRules::host_patterns() const {
  std::vector<std::string> out;
  for (const auto& r : rules_) {
    out.push_back(r.pattern.to_string());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

RuleVerdict HttpRules::check(std::string_view host, std::string_view method,
                             std::string_view target) const {
  RuleVerdict v;
  const auto path = target_path(target);
  std::string denied_by;
  for (const auto& r : rules_) {
    if (!r.pattern.matches(host)) {
      continue;
    }
    v.named = true;
    const bool method_ok =
        r.spec.methods.empty() ||
        std::find(r.spec.methods.begin(), r.spec.methods.end(), method) != r.spec.methods.end();
    bool path_ok = r.spec.paths.empty();
    if (!path_ok && target.find('#') != std::string_view::npos) {
      v.why = "fragment (#) in the request target";
    } else if (auto why = path_ok ? std::string_view() : ambiguous_path(path); !why.empty()) {
      v.why = why;
    } else if (!path_ok) {
      path_ok = std::any_of(r.spec.paths.begin(), r.spec.paths.end(),
                            [&](const std::string& g) { return glob_match(g, path); });
    }
    if (method_ok && path_ok) {
      v.allowed = true;
      v.rule = r.spec.origin;
      v.max_body = r.spec.max_body;
      v.why.clear();
      return v;
    }
    if (!denied_by.empty()) {
      denied_by += ", ";
    }
    denied_by += r.spec.origin;
  }
  v.allowed = !v.named;
  v.rule = std::move(denied_by);
  return v;
}

}  // namespace agentbox::http
