// Builds the box's environment and its synthesized /etc files (pure).
#include "agentbox/sandbox/environment.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace agentbox::sandbox {

namespace {

bool is_locale_name(const std::string& name) {
  return name == "LANG" || name == "LANGUAGE" || name.rfind("LC_", 0) == 0;
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.find('=') != std::string::npos) {
    return false;
  }
  return name.find('\0') == std::string::npos;
}

}  // namespace

std::vector<std::string> build_environment(const EnvInputs& in) {
  std::map<std::string, std::string> env;
  auto from_caller = [&](const std::string& name) {
    auto it = in.caller.find(name);
    if (it != in.caller.end()) {
      env[name] = it->second;
    }
  };
  env["PATH"] = kDefaultPath;
  for (auto it = in.path_prepend.rbegin(); it != in.path_prepend.rend(); ++it) {
    if (!it->empty() && it->find(':') == std::string::npos) {
      env["PATH"] = fmt::format("{}:{}", *it, env["PATH"]);
    }
  }
  env["HOME"] = in.user.home;
  env["USER"] = in.user.name;
  env["LOGNAME"] = in.user.name;
  env["SHELL"] = in.user.shell.empty() ? "/bin/sh" : in.user.shell;
  auto term = in.caller.find("TERM");
  if (term != in.caller.end() && !term->second.empty()) {
    env["TERM"] = term->second;
  } else {
    env["TERM"] = in.tty ? "xterm-256color" : "dumb";
  }
  from_caller("COLORTERM");
  from_caller("TZ");
  for (const auto& [name, value] : in.caller) {
    if (is_locale_name(name)) {
      env[name] = value;
    }
  }
  for (const auto& name : in.pass) {
    if (valid_name(name)) {
      from_caller(name);
    }
  }
  for (const auto& [name, value] : in.set) {
    if (valid_name(name)) {
      env[name] = value;
    }
  }
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [name, value] : env) {
    out.push_back(fmt::format("{}={}", name, value));
  }
  return out;
}

std::map<std::string, std::string> parse_environ(char** envp) {
  std::map<std::string, std::string> out;
  for (char** e = envp; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq == nullptr || eq == *e) {
      continue;
    }
    out.emplace(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
  }
  return out;
}

std::string make_etc_passwd(const UserInfo& u) {
  std::string out = "root:x:0:0:root:/root:/bin/sh\n";
  if (u.uid != 0) {
    out += fmt::format("{}:x:{}:{}:{}:{}:{}\n", u.name, u.uid, u.gid, u.gecos, u.home,
                       u.shell.empty() ? "/bin/sh" : u.shell);
  }
  out += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
  return out;
}

std::string make_etc_group(const UserInfo& u) {
  std::string out = "root:x:0:\n";
  if (u.gid != 0) {
    out += fmt::format("{}:x:{}:\n", u.group, u.gid);
  }
  out += "nogroup:x:65534:\n";
  return out;
}

std::string make_etc_hosts(const std::string& hostname) {
  return fmt::format(
      "127.0.0.1\tlocalhost\n127.0.1.1\t{0}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
      hostname);
}

void add_git_config(EnvInputs& in, const std::string& key, const std::string& value) {
  int n = 0;
  auto passed = in.caller.find("GIT_CONFIG_COUNT");
  if (passed != in.caller.end() &&
      std::find(in.pass.begin(), in.pass.end(), "GIT_CONFIG_COUNT") != in.pass.end()) {
    n = std::atoi(passed->second.c_str());
  }
  for (const auto& [name, v] : in.set) {  // the last one set wins
    if (name == "GIT_CONFIG_COUNT") {
      n = std::atoi(v.c_str());
    }
  }
  n = std::max(n, 0);
  in.set.emplace_back(fmt::format("GIT_CONFIG_KEY_{}", n), key);
  in.set.emplace_back(fmt::format("GIT_CONFIG_VALUE_{}", n), value);
  in.set.emplace_back("GIT_CONFIG_COUNT", std::to_string(n + 1));
}

void add_box_env(EnvInputs& in, const std::vector<std::pair<std::string, std::string>>& env) {
  std::map<int, std::pair<std::string, std::string>> git;  // n -> key, value
  for (const auto& [name, value] : env) {
    if (name.starts_with("GIT_CONFIG_KEY_")) {
      git[std::atoi(name.c_str() + 15)].first = value;
    } else if (name.starts_with("GIT_CONFIG_VALUE_")) {
      git[std::atoi(name.c_str() + 17)].second = value;
    } else if (name != "GIT_CONFIG_COUNT") {
      in.set.emplace_back(name, value);
    }
  }
  for (const auto& [n, kv] : git) {
    add_git_config(in, kv.first, kv.second);
  }
}

}  // namespace agentbox::sandbox
