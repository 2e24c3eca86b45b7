// `agentbox explain`: the effective policy, one grant per line, each with where it came from.
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <tuple>

#include "agentbox/config/defaults.hpp"
#include "agentbox/config/load.hpp"
#include "agentbox/config/units.hpp"
#include "agentbox/policy/connect_to.hpp"

namespace agentbox::config {

namespace {

class Printer {
 public:
  void section(std::string_view name) {
    out_ += fmt::format("{}[{}]\n", out_.empty() ? "" : "\n", name);
  }
  void line(std::string_view key, std::string_view value, const Origin& origin) {
    out_ += fmt::format("  {:<17} {:<40} # {}\n", key, value, origin.describe());
  }
  template <class T>
  void list(std::string_view key, const std::vector<Sourced<T>>& items) {
    if (items.empty()) {
      out_ += fmt::format("  {:<17} (none)\n", key);
    }
    for (const auto& i : items) {
      line(key, i.value, i.origin);
    }
  }
  void note(std::string_view text) { out_ += fmt::format("  # {}\n", text); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string size_or_unlimited(uint64_t b) {
  return b == kUnlimited ? "unlimited" : format_size(b);
}

std::string count_or_unlimited(uint64_t n) {
  return n == kUnlimited ? "unlimited" : fmt::format("{}", n);
}

void explain_limits(Printer& pr, const Limits& l) {
  pr.section("limits");
  auto show = [&](std::string_view key, const auto& v, auto fmt_value) {
    if (v) {
      pr.line(key, fmt_value(v->value), v->origin);
    } else {
      pr.line(key, "unlimited", {"built-in"});
    }
  };
  show("timeout", l.timeout_seconds, [](uint64_t s) { return format_duration(s); });
  show("memory", l.memory_bytes, size_or_unlimited);
  show("pids", l.pids, count_or_unlimited);
  show("cpus", l.cpus, [](double d) { return fmt::format("{}", d); });
  show("nofile", l.nofile, count_or_unlimited);
  show("file_size", l.file_size_bytes, size_or_unlimited);
  show("inotify_instances", l.inotify_instances, count_or_unlimited);
  show("inotify_watches", l.inotify_watches, count_or_unlimited);
  pr.line("cpu_priority", l.cpu_background.value ? "background" : "normal",
          l.cpu_background.origin);
  // Whether a cgroup can be made is only known at `run` (it says so at start; `doctor` checks).
  pr.note(
      "without a session cgroup: pids -> RLIMIT_NPROC (per box; not for root), memory -> "
      "RLIMIT_DATA per process (RLIMIT_AS when set explicitly), cpus not enforced, the CPU bounded "
      "by cpu_priority only (nice 10; a process that calls setsid() leaves its autogroup)");
}

// A tmpfs's size and inode cap on one line.
void explain_tmpfs(Printer& pr, std::string_view key, const Sourced<uint64_t>& size,
                   const std::optional<Sourced<uint64_t>>& inodes) {
  pr.line(key, size_or_unlimited(size.value), size.origin);
  std::string ikey = std::string(key.substr(0, key.find('_'))) + "_inodes";
  if (inodes) {
    pr.line(ikey, count_or_unlimited(inodes->value), inodes->origin);
  } else {
    pr.line(ikey, count_or_unlimited(default_inodes(size.value)), {"built-in: one per 4 KiB"});
  }
}

}  // namespace

std::string explain(const Loaded& loaded) {
  const Policy& p = loaded.policy;
  Printer pr;
  std::string head = fmt::format(
      "# effective agentbox policy\n# files read, lowest layer first: {}\n",
      loaded.files_read.empty() ? "(none)" : fmt::format("{}", fmt::join(loaded.files_read, ", ")));
  pr.section("sandbox");
  if (p.workspace) {
    pr.line("workspace", p.workspace->value, p.workspace->origin);
  } else {
    pr.line("workspace", "the enclosing git repository, else .", {"built-in"});
  }
  pr.list("ro", p.ro);
  pr.list("rw", p.rw);
  pr.list("env", p.env);
  for (const auto& [name, v] : p.setenv) {
    pr.line("setenv", fmt::format("{}={}", name, v.value), v.origin);
  }
  // Git's metadata is protected by the sandbox itself (not a config entry; see CONFINEMENT.md).
  pr.line("protected", ".git/hooks .git/config (+ includes) .git/commondir", {"built-in, always"});
  pr.line("protected", ".git/modules .git/worktrees .git/objects/info/alternates .gitmodules",
          {"built-in, always"});
  pr.list("protected", p.protected_paths);
  explain_tmpfs(pr, "home_size", p.home_size, p.home_inodes);
  explain_tmpfs(pr, "tmp_size", p.tmp_size, p.tmp_inodes);
  explain_tmpfs(pr, "shm_size", p.shm_size, p.shm_inodes);
  pr.line("sys", p.mount_sys.value ? "true" : "false", p.mount_sys.origin);
  pr.line("hostname", p.hostname.value, p.hostname.origin);
  pr.line("review", p.review.value ? "true" : "false", p.review.origin);
  pr.line("die_with_parent", p.die_with_parent.value ? "true" : "false", p.die_with_parent.origin);
  explain_limits(pr, p.limits);
  pr.section("audit");
  const auto& a = p.audit;
  pr.line("required", a.required.value ? "true" : "false", a.required.origin);
  pr.line("max_size", format_size(a.max_size.value), a.max_size.origin);
  pr.line("keep_sessions", fmt::format("{}", a.keep_sessions.value), a.keep_sessions.origin);
  pr.line("max_age", format_duration(a.max_age_seconds.value), a.max_age_seconds.origin);
  pr.section("seccomp");
  pr.list("allow", p.seccomp_allow);
  pr.section("exec");
  pr.line("log", p.exec_log.value ? "true" : "false", p.exec_log.origin);
  for (const auto& r : p.exec_rules) {  // in the order they are checked
    pr.line("rule", fmt::format("{} -> {}", r.describe(), policy::to_string(r.action)), {r.origin});
  }
  pr.section("network");
  pr.line("mode", p.network_none.value ? "none (only lo; the rules below are unused)" : "filtered",
          p.network_none.origin);
  pr.list("allow", p.net_allow);
  pr.list("raw_tcp", p.raw_tcp);
  pr.list("ask", p.ask);
  pr.line("unlisted",
          p.learn.value          ? "learn"
          : p.unlisted_ask.value ? "ask"
                                 : "deny",
          p.unlisted_ask.origin);
  pr.line("ask_timeout", fmt::format("{}s", p.ask_timeout.value), p.ask_timeout.origin);
  pr.line("ask_desktop",
          p.ask_desktop.value ? "true (desktop notifications when there is a desktop)" : "false",
          p.ask_desktop.origin);
  pr.list("connect_to", p.connect_to);
  // Host services as the mapping they make (docs/NETWORK.md, "Host services").
  for (const auto& [key, items, fmt_line] :
       {std::tuple{"host_ports", &p.host_ports, "box localhost:{} -> host loopback :{}"},
        std::tuple{"publish", &p.publish, "host 127.0.0.1:{} -> box localhost:{}"}}) {
    if (items->empty()) {
      pr.list(key, *items);
    }
    for (const auto& i : *items) {
      auto m = policy::parse_port_map(i.value);
      pr.line(key, m ? fmt::format(fmt::runtime(fmt_line), m->port, m->to_port) : i.value,
              i.origin);
    }
  }
  pr.list("upstream_ca", p.upstream_ca);
  pr.list("trust_ca", p.trust_ca);
  pr.line("buffer_budget", format_size(p.buffer_budget.value), p.buffer_budget.origin);
  pr.line("max_flows", fmt::format("{}", p.max_flows.value), p.max_flows.origin);
  pr.line("max_intercepted", fmt::format("{}", p.max_intercepted.value), p.max_intercepted.origin);
  for (const auto& r : p.http_rules) {
    pr.line("rule",
            fmt::format("{} methods={} paths={}{}", r.host,
                        r.methods.empty() ? "any" : fmt::format("{}", fmt::join(r.methods, ",")),
                        r.paths.empty() ? "any" : fmt::format("{}", fmt::join(r.paths, ",")),
                        r.max_body ? " max_body=" + format_size(*r.max_body) : ""),
            r.origin);
  }
  pr.section("terminal");
  pr.line("filter", p.terminal_filter.value ? "true" : "false", p.terminal_filter.origin);
  pr.list("allow", p.terminal_allow);
  pr.section("persist");
  pr.list("paths", p.persist);
  pr.list("drop", p.persist_drop);
  for (const auto& [file, answer] : p.persist_answers) {
    pr.line("answers", fmt::format("{} <- {} (read-only in the box)", file, answer.value),
            answer.origin);
  }
  pr.section("credentials");
  if (p.credentials.empty()) {
    pr.line("(none)", "", {"built-in"});
  }
  for (const auto& [name, c] : p.credentials) {
    pr.line(name,
            fmt::format("${} <- {} -> {} via {}{}{}", c.env, c.from.to_string(),
                        fmt::join(c.hosts, ","), c.inject.to_string(),
                        c.format.empty() ? "" : " (added as \"" + c.format + "\")",
                        c.body ? " +body" : ""),
            c.origin);
  }
  for (const auto& t : p.token_files) {
    pr.line("token_file", t.path, t.origin);
  }
  for (const auto& n : loaded.notes) {
    pr.note(n);
  }
  return head + pr.take();
}

}  // namespace agentbox::config
