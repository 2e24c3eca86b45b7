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

}  // namespace

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
  } else if (type == "dns.query" && text(j, "result") == "denied" && text(j, "qtype") != "AAAA" &&
             text(j, "reason") == "no rule allows this name" && plain_name(text(j, "name"))) {
    need(hosts_, text(j, "name"), ts, "its DNS answer was refused");
  } else if (type == "learn.allow" && text(j, "kind") == "host" && !text(j, "detail").empty()) {
    need(hosts_, text(j, "detail"), ts, "admitted by --learn");
  } else if (type == "learn.allow" && text(j, "kind") == "exec") {
    need(notes_, "exec " + text(j, "subject"), ts, "an ask rule's exec, admitted by --learn");
  } else if (type == "net.deny") {
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

bool ProfileSuggestion::empty() const {
  return hosts_.empty() && groups_.empty() && http_.empty() && notes_.empty();
}

std::string ProfileSuggestion::render() const {
  std::string out = fmt::format(
      "# Suggested by `agentbox profile suggest` from the audit log of session {}\n"
      "# (program {}, workspace {}).\n"
      "# Each line allows something the session was refused. Read every line before you use\n"
      "# it: a prompt-injected agent asks for what it should not get, too.\n",
      quote(session_), quote(program_), quote(workspace_));
  if (hosts_.empty() && groups_.empty() && http_.empty()) {
    out += "# The session was refused nothing a rule can grant.\n";
  }
  if (!hosts_.empty()) {
    out += "\n[network]\nallow = [\n";
    for (const auto& [rule, n] : hosts_) {
      out += fmt::format("  {},  # {}, first at {}: {}\n", quote(rule), plural(n.count, "refusal"),
                         quote(n.first), joined(n.why));
    }
    out += "]\n";
  }
  for (const auto& [host, h] : http_) {
    out += fmt::format(
        "\n# {} refused by {}: merge with that rule, or narrow the paths to globs.\n"
        "[[network.rule]]\nhost = {}\nmethods = {}\npaths = {}\n",
        plural(h.count, "request"), joined(h.rules), quote(host), list(h.methods), list(h.paths));
  }
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
