// `agentbox explain`: the effective policy, one grant per line, each with where it came from.
#include <fmt/core.h>
#include <fmt/ranges.h>

#include "agentbox/config/load.hpp"
#include "agentbox/config/units.hpp"

namespace agentbox::config {

namespace {

class Printer {
 public:
  void section(std::string_view name) {
    out_ += fmt::format("{}[{}]\n", out_.empty() ? "" : "\n", name);
  }
  void line(std::string_view key, std::string_view value, const Origin& origin) {
    out_ += fmt::format("  {:<12} {:<40} # {}\n", key, value, origin.describe());
  }
  template <class T>
  void list(std::string_view key, const std::vector<Sourced<T>>& items) {
    if (items.empty()) {
      out_ += fmt::format("  {:<12} (none)\n", key);
    }
    for (const auto& i : items) {
      line(key, i.value, i.origin);
    }
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

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
  show("memory", l.memory_bytes, [](uint64_t b) { return format_size(b); });
  show("pids", l.pids, [](uint64_t n) { return fmt::format("{}", n); });
  show("cpus", l.cpus, [](double d) { return fmt::format("{}", d); });
  show("nofile", l.nofile, [](uint64_t n) { return fmt::format("{}", n); });
  show("file_size", l.file_size_bytes, [](uint64_t b) { return format_size(b); });
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
  pr.line("home_size", format_size(p.home_size.value), p.home_size.origin);
  pr.line("tmp_size", format_size(p.tmp_size.value), p.tmp_size.origin);
  pr.line("sys", p.mount_sys.value ? "true" : "false", p.mount_sys.origin);
  pr.line("hostname", p.hostname.value, p.hostname.origin);
  explain_limits(pr, p.limits);
  pr.section("audit");
  const auto& a = p.audit;
  pr.line("required", a.required.value ? "true" : "false", a.required.origin);
  pr.line("max_size", format_size(a.max_size.value), a.max_size.origin);
  pr.line("keep_sessions", fmt::format("{}", a.keep_sessions.value), a.keep_sessions.origin);
  pr.line("max_age", format_duration(a.max_age_seconds.value), a.max_age_seconds.origin);
  pr.section("seccomp");
  pr.list("allow", p.seccomp_allow);
  pr.section("network");
  pr.list("allow", p.net_allow);
  pr.list("raw_tcp", p.raw_tcp);
  pr.list("connect_to", p.connect_to);
  pr.list("upstream_ca", p.upstream_ca);
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
  pr.section("credentials");
  if (p.credentials.empty()) {
    pr.line("(none)", "", {"built-in"});
  }
  for (const auto& [name, c] : p.credentials) {
    pr.line(name,
            fmt::format("${} <- {} -> {} via {}{}{}", c.env, c.from, fmt::join(c.hosts, ","),
                        c.inject, c.format.empty() ? "" : " (added as \"" + c.format + "\")",
                        c.body ? " +body" : ""),
            c.origin);
  }
  for (const auto& t : p.token_files) {
    pr.line("token_file", t.path, t.origin);
  }
  return head + pr.take();
}

}  // namespace agentbox::config
