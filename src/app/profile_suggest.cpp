// A profile suggested from what a session was refused (profile_suggest.hpp).
//
// Every name, path and program in an audit log may come from the box, so each one reaches the
// text only as a TOML basic string with every byte outside printable ASCII escaped: a name with a
// newline cannot start a line of its own (say `[credentials.x]`) in a file the user will load.
#include "agentbox/app/profile_suggest.hpp"

#include <fmt/core.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "agentbox/sandbox/seccomp.hpp"

namespace agentbox::app {

namespace {

using nlohmann::json;

std::string text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A TOML basic string: printable ASCII as is, `"` and `\` escaped, every other byte \u00XX.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20 || ch >= 0x7f) {
      out += fmt::format("\\u{:04X}", ch);
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

// A host name as the policy normalised it (letters, digits, `-`, `_`, dots): anything else
// cannot become a rule.
bool plain_name(std::string_view s) {
  return !s.empty() && s.size() <= 253 &&
         s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") == std::string_view::npos;
}

std::string plural(uint64_t n, std::string_view one) {
  return fmt::format("{} {}{}", n, one, n == 1 ? "" : "s");
}

std::string joined(const std::set<std::string>& items) {
  std::string out;
  for (const auto& i : items) {
    out += (out.empty() ? "" : ", ") + quote(i);
  }
  return out;
}

std::string list(const std::set<std::string>& items) {
  return "[" + joined(items) + "]";
}

bool made_of(std::string_view s, std::string_view set) {
  return !s.empty() && s.find_first_not_of(set) == std::string_view::npos;
}

constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kHex = "0123456789abcdefABCDEF";

bool uuid(std::string_view s) {
  if (s.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : kHex.find(s[i]) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

// A segment that names one object (an id, a hash, a token) rather than a kind of object.
bool object_segment(std::string_view seg) {
  const bool digit = seg.find_first_of(kDigits) != std::string_view::npos;
  const bool letter = seg.find_first_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") !=
                      std::string_view::npos;
  return made_of(seg, kDigits) || uuid(seg) || (seg.size() >= 8 && digit && made_of(seg, kHex)) ||
         (seg.size() >= 20 && digit && letter &&
          made_of(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")) ||
         seg.find('*') != std::string_view::npos;
}

}  // namespace

std::string learned_path_glob(std::string_view path) {
  path = path.substr(0, path.find_first_of("?#"));
  if (path.empty()) {
    return "/";
  }
  std::string out;
  size_t pos = 0;
  while (pos <= path.size()) {
    const size_t end = std::min(path.find('/', pos), path.size());
    const std::string_view seg = path.substr(pos, end - pos);
    out += object_segment(seg) ? std::string_view("*") : seg;
    if (end < path.size()) {
      out += '/';
    }
    pos = end + 1;
  }
  return out;
}

void ProfileSuggestion::need(std::map<std::string, Need>& in, const std::string& key,
                             const std::string& ts, const std::string& why) {
  Need& n = in[key];
  if (n.count++ == 0) {
    n.first = ts;
  }
  if (!why.empty() && n.why.size() < 4) {
    n.why.insert(why);
  }
}

void ProfileSuggestion::feed(std::string_view line) {
  json j = json::parse(line, nullptr, false);
  if (!j.is_object()) {
    return;
  }
  const std::string type = text(j, "type");
  const std::string ts = text(j, "ts");
  if (type == "session.start") {
    session_ = text(j, "session");
    workspace_ = text(j, "workspace");
    if (auto a = j.find("argv");
        a != j.end() && a->is_array() && !a->empty() && a->front().is_string()) {
      program_ = a->front().get<std::string>();
    }
    auto l = j.find("learn");
    learning_ = l != j.end() && l->is_boolean() && l->get<bool>();
  } else if (type == "dns.query" && text(j, "result") == "denied" && text(j, "qtype") != "AAAA" &&
             text(j, "reason") == "no rule allows this name" && plain_name(text(j, "name"))) {
    need(hosts_, text(j, "name"), ts, "its DNS answer was refused");
  } else if (type == "learn.allow" || type == "net.connect" ||
             (type == "http.request" && text(j, "decision") == "allowed")) {
    feed_learning(type, ts, j);
  } else if (type == "net.deny") {
    feed_net_deny(ts, j);
  } else if (type == "http.request" && text(j, "decision") == "denied" &&
             text(j, "reason").find(" denied by rule ") != std::string::npos) {
    HttpNeed& h = http_[text(j, "host")];
    ++h.count;
    h.methods.insert(text(j, "method"));
    if (h.paths.size() < 32) {
      h.paths.insert(text(j, "path"));
    }
    h.rules.insert(text(j, "rule"));
  } else if (type == "seccomp.deny") {
    const std::string call = text(j, "syscall");
    const std::string_view group = sandbox::seccomp_group_of(call);
    const std::string who = fmt::format("{} by {}", call, text(j, "exe"));
    need(group.empty() ? notes_ : groups_, group.empty() ? "syscall " + call : std::string(group),
         ts, who);
  } else if (type == "exec" && text(j, "verdict") == "deny") {
    need(notes_, "exec " + text(j, "path"), ts, text(j, "rule"));
  } else if (type == "credential.blocked") {
    need(notes_, fmt::format("credential {} to {}", text(j, "credential"), text(j, "host")), ts,
         text(j, "reason"));
  }
}

void ProfileSuggestion::feed_net_deny(const std::string& ts, const json& j) {
  const std::string name = text(j, "name");
  const std::string dst = text(j, "dst");
  const std::string reason = text(j, "reason");
  const uint64_t port = j.value("port", uint64_t{0});
  const std::string why = fmt::format("connections to port {} were refused ({})", port, reason);
  if (reason.starts_with("denied at run time")) {
    need(notes_, fmt::format("{}:{}", name, port), ts, reason);
  } else if (reason.starts_with("no rule allows") ||
             reason.find("needs a CIDR rule") != std::string::npos) {
    if (name != dst && plain_name(name)) {
      need(hosts_, port == 443 || port == 80 ? name : fmt::format("{}:{}", name, port), ts, why);
    } else if (dst.find(':') != std::string::npos) {
      need(hosts_, fmt::format("[{}/128]:{}", dst, port), ts, why);
    } else if (!dst.empty()) {
      need(hosts_, fmt::format("{}/32:{}", dst, port), ts, why);
    }
  }
}

// A request no HTTP rule named carries its connection's egress rule (net.connect's `rule`); one an
// HTTP rule allowed carries that rule's origin instead.
bool ProfileSuggestion::egress_only(const json& j) const {
  auto it = flow_rules_.find(j.value("id", uint64_t{0}));
  return it != flow_rules_.end() && it->second == text(j, "rule");
}

// What a learning run admitted and used: names, their ports, and (where no HTTP rule named the
// host) each request's method and path. Outside a learning run only `learn.allow` counts here.
void ProfileSuggestion::feed_learning(const std::string& type, const std::string& ts,
                                      const json& j) {
  const std::string kind = text(j, "kind");
  if (type == "learn.allow" && kind == "exec") {
    need(notes_, "exec " + text(j, "subject"), ts, "an ask rule's exec, admitted by --learn");
  } else if (type == "learn.allow" && kind == "host" && !text(j, "detail").empty()) {
    const std::string detail = text(j, "detail");
    // An ask rule's port rides in the detail ("name:8443"): that rule as it is.
    need(detail.find(':') == std::string::npos ? learned_ : hosts_, detail, ts,
         "admitted by --learn");
  } else if (type == "learn.allow" && kind == "port" && plain_name(text(j, "subject"))) {
    need(learned_, text(j, "subject"), ts, "admitted by --learn");
  } else if (type == "net.connect" && learning_) {
    ++ports_[text(j, "name")][j.value("port", uint64_t{0})];
    flow_rules_[j.value("id", uint64_t{0})] = text(j, "rule");
  } else if (type == "http.request" && learning_ && egress_only(j) && plain_name(text(j, "host")) &&
             made_of(text(j, "method"), "ABCDEFGHIJKLMNOPQRSTUVWXYZ")) {
    Calls& c = calls_[text(j, "host")][text(j, "method")];
    if (c.count++ == 0) {
      c.first = ts;
    }
    std::string glob = learned_path_glob(text(j, "path"));
    if (c.paths.size() < kMaxPaths || c.paths.count(glob) != 0) {
      c.paths.insert(std::move(glob));
    } else {
      ++c.unlisted;
    }
  }
}

bool ProfileSuggestion::empty() const {
  return hosts_.empty() && groups_.empty() && http_.empty() && notes_.empty() && learned_.empty() &&
         calls_.empty();
}

std::string ProfileSuggestion::render_allow() const {
  if (hosts_.empty() && learned_.empty()) {
    return {};
  }
  std::string out = "\n[network]\nallow = [\n";
  for (const auto& [rule, n] : hosts_) {
    out += fmt::format("  {},  # {}, first at {}: {}\n", quote(rule), plural(n.count, "refusal"),
                       quote(n.first), joined(n.why));
  }
  for (const auto& [name, n] : learned_) {
    auto it = ports_.find(name);
    if (it == ports_.end() || it->second.empty()) {
      out += fmt::format("  {},  # admitted by --learn at {}; no connection seen (ports 443, 80)\n",
                         quote(name), quote(n.first));
      continue;
    }
    for (const auto& [port, count] : it->second) {
      out += fmt::format("  {},  # admitted by --learn at {}; {} on port {}\n",
                         quote(fmt::format("{}:{}", name, port)), quote(n.first),
                         plural(count, "connection"), port);
    }
  }
  return out + "]\n";
}

// One rule per host and method, so a method is allowed only on the paths it used.
std::string ProfileSuggestion::render_learned_rules() const {
  std::string out;
  for (const auto& [host, methods] : calls_) {
    for (const auto& [method, c] : methods) {
      out += fmt::format("\n# {} {} by the learning run, first at {}.\n",
                         plural(c.count, "request"), quote(method), quote(c.first));
      if (c.unlisted > 0) {
        out += fmt::format("# {} more not listed (at most {} paths a rule): add globs for them.\n",
                           plural(c.unlisted, "path"), kMaxPaths);
      }
      out += fmt::format("[[network.rule]]\nhost = {}\nmethods = [{}]\npaths = {}\n", quote(host),
                         quote(method), list(c.paths));
    }
  }
  return out;
}

std::string ProfileSuggestion::render() const {
  std::string out = fmt::format(
      "# Suggested by `agentbox profile suggest` from the audit log of session {}\n"
      "# (program {}, workspace {}).\n"
      "# Each line allows something the session was refused. Read every line before you use\n"
      "# it: a prompt-injected agent asks for what it should not get, too.\n",
      quote(session_), quote(program_), quote(workspace_));
  if (learning_) {
    out +=
        "# A learning run: its names on the ports they used, and for each host no HTTP rule\n"
        "# named, one rule per method with the paths it used (ids, hashes and tokens as `*`);\n"
        "# every other method and path on those hosts is then refused.\n";
  }
  if (hosts_.empty() && groups_.empty() && http_.empty() && learned_.empty() && calls_.empty()) {
    out += "# The session was refused nothing a rule can grant.\n";
  }
  out += render_allow();
  for (const auto& [host, h] : http_) {
    out += fmt::format(
        "\n# {} refused by {}: merge with that rule, or narrow the paths to globs.\n"
        "[[network.rule]]\nhost = {}\nmethods = {}\npaths = {}\n",
        plural(h.count, "request"), joined(h.rules), quote(host), list(h.methods), list(h.paths));
  }
  out += render_learned_rules();
  if (!groups_.empty()) {
    std::set<std::string> names;
    for (const auto& [group, n] : groups_) {
      names.insert(group);
    }
    out += "\n[seccomp]\n";
    for (const auto& [group, n] : groups_) {
      out += fmt::format("# {}: {}, first at {}: {}\n", quote(group), plural(n.count, "refusal"),
                         quote(n.first), joined(n.why));
    }
    out += fmt::format("allow = {}\n", list(names));
  }
  if (!notes_.empty()) {
    out += "\n# Also refused, and no profile line grants it:\n";
    for (const auto& [what, n] : notes_) {
      out += fmt::format("#   {}: {}, first at {}: {}\n", quote(what), plural(n.count, "time"),
                         quote(n.first), joined(n.why));
    }
  }
  return out;
}

base::Result<ProfileSuggestion> suggest_from_log(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return base::Error::sys(errno, "open", path);
  }
  ProfileSuggestion s;
  std::string line;
  while (std::getline(in, line)) {
    s.feed(line);
  }
  return s;
}

}  // namespace agentbox::app
