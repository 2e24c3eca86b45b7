// HTTP rules: method/path allow-lists per host, path globs and audit paths (http_rules.hpp).
#include "agentbox/proxy/http_rules.hpp"

#include <algorithm>

#include "agentbox/proxy/http1.hpp"

namespace agentbox::proxy {

namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool icontains(std::string_view hay, std::string_view needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                     [](char a, char b) { return lower(a) == lower(b); }) != hay.end();
}

// A path the upstream may resolve differently from the glob: dot segments (raw or %2e), an
// encoded slash or backslash, a raw backslash.
bool ambiguous_path(std::string_view path) {
  if (icontains(path, "%2e") || icontains(path, "%2f") || icontains(path, "%5c") ||
      path.find('\\') != std::string_view::npos) {
    return true;
  }
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    end = end == std::string_view::npos ? path.size() : end;
    const auto seg = path.substr(pos, end - pos);
    if (seg == "." || seg == "..") {
      return true;
    }
    pos = end + 1;
  }
  return false;
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
    if (!path_ok && ambiguous_path(path)) {
      v.why = "path with dot segments or encoded separators";
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

}  // namespace agentbox::proxy
