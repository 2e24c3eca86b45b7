// The grant flags shared by `run` and `explain`.
#include "policy_flags.hpp"

#include <fmt/core.h>

#include "agentbox/app/run.hpp"

namespace agentbox::cli {

// Repeatable options take one value per occurrence (allow_extra_args(false)): otherwise CLI11
// lets `--ro X -- cmd -x` swallow the `--` into --ro's list and parse `-x` as an option of ours.
void add_policy_flags(CLI::App* sub, config::LoadOptions& o) {
  auto& f = o.flags;
  sub->add_option("-p,--profile", f.profiles,
                  "Apply the named profile (claude, codex, node, ...; repeatable: later ones "
                  "layer over earlier ones)")
      ->type_name("PROFILE")
      ->allow_extra_args(false);
  sub->add_option("-w,--workspace", f.workspace,
                  "The read-write directory (default: the enclosing git repository, else .)")
      ->type_name("PATH");
  sub->add_option("--ro", f.ro, "Also show PATH read-only (repeatable; ~ is your home)")
      ->type_name("PATH")
      ->allow_extra_args(false);
  sub->add_option("--rw", f.rw, "Also show PATH read-write (repeatable)")
      ->type_name("PATH")
      ->allow_extra_args(false);
  sub->add_option("-e,--env", f.env, "Pass NAME from your environment, or set NAME=VALUE")
      ->allow_extra_args(false);
  sub->add_option("--allow", f.allow, "Allow connections to HOST[:PORT] or CIDR[:PORT]")
      ->allow_extra_args(false);
  sub->add_option(
         "--raw-tcp", f.raw_tcp,
         "Allow HOST:PORT for bytes that are neither TLS nor HTTP (e.g. ssh to a git host)")
      ->allow_extra_args(false);
  sub->add_option("--ask", f.ask,
                  "Hold HOST[:PORT]'s DNS answer until `agentbox approve` answers (repeatable)")
      ->allow_extra_args(false);
  sub->add_flag("--ask-unlisted", f.ask_unlisted,
                "Ask (`agentbox approve`) for every name no rule allows, rather than deny it");
  sub->add_flag("--learn", f.learn,
                "Admit every name no rule allows and record it, for `agentbox profile suggest`");
  sub->add_option("--connect-to", f.connect_to,
                  "Send connections for HOST:PORT to ADDR:PORT (as curl's --connect-to)")
      ->allow_extra_args(false);
  sub->add_option("--host-port", f.host_ports,
                  "Let the box's localhost:PORT reach the host's loopback port HOSTPORT "
                  "(default PORT; TCP, repeatable)")
      ->type_name("PORT[:HOSTPORT]")
      ->allow_extra_args(false);
  sub->add_option("--publish", f.publish,
                  "Serve the host's 127.0.0.1:PORT from the box's localhost:BOXPORT "
                  "(default PORT; TCP, repeatable)")
      ->type_name("PORT[:BOXPORT]")
      ->allow_extra_args(false);
  sub->add_option("--network", f.network,
                  "none: the box has only lo (no /dev/net/tun needed); filtered: the default")
      ->type_name("MODE");
  sub->add_option("--upstream-ca", f.upstream_ca,
                  "Also trust this PEM file for upstream TLS (intercepted hosts only)")
      ->type_name("PATH")
      ->allow_extra_args(false);
  sub->add_option("--trust-ca", f.trust_ca,
                  "Make the box trust this PEM file's CAs too (e.g. a test server's private CA)")
      ->type_name("PATH")
      ->allow_extra_args(false);
  sub->add_option("--allow-syscalls", f.seccomp_allow,
                  "Loosen a named seccomp group (e.g. ptrace for debuggers)")
      ->allow_extra_args(false);
  sub->add_option("--timeout", f.timeout, "Kill the box after this long (90s, 5m, 1h30m)");
  sub->add_option("--memory", f.memory,
                  "Memory limit for the whole box (e.g. 4G; default half the RAM; unlimited)");
  sub->add_option("--pids", f.pids, "Maximum number of tasks in the box (default 4096; unlimited)");
  sub->add_option("--cpus", f.cpus, "CPU limit (e.g. 1.5; needs a cgroup, else not enforced)");
  sub->add_option("--cpu-priority", f.cpu_priority,
                  "background (default: the box at nice 10, its session and cgroup too) or normal")
      ->type_name("PRIORITY");
  sub->add_option("--budget-egress", f.budget_egress,
                  "Session budget: bytes the box may send (e.g. 500M); then requests get 429")
      ->type_name("SIZE");
  sub->add_option("--budget-requests-per-host", f.budget_requests_per_host,
                  "Session budget: HTTP requests per host the proxy reads; then 429")
      ->type_name("N");
  sub->add_option("--budget-connections-per-minute", f.budget_connections_per_minute,
                  "Session budget: new connections the box may open in any minute; then 429 "
                  "(a reset where there is no request)")
      ->type_name("N");
  sub->add_option("--budget-spend", f.budget_spend,
                  "Session budget: dollars of model usage (e.g. 5); then model requests get 429")
      ->type_name("DOLLARS");
  sub->add_flag("--audit-required", f.audit_required,
                "End the session (status 125) when an audit line cannot be written");
  sub->add_option("--label", f.labels,
                  "KEY=VALUE recorded with the session (audit, telemetry, `agentbox ps`), "
                  "repeatable; e.g. a CI pipeline id")
      ->type_name("KEY=VALUE");
  sub->add_flag("--inspect-all", f.inspect_all,
                "Intercept every allowed TLS host to check Host = SNI and block placeholders");
  sub->add_flag("--review", f.review,
                "Show the workspace through an overlay: writes land only on `agentbox apply`");
  sub->add_flag("--no-config", o.no_user_config,
                "Ignore /etc/agentbox and your user config (built-ins, profile and flags only)");
}

std::optional<config::Loaded> load_policy(const config::LoadOptions& options) {
  auto loaded = config::load(options);
  if (!loaded) {
    fmt::print(stderr, "{}", loaded.error().render());
    return std::nullopt;
  }
  // A workspace that cannot be used is reported by `run` itself, with its hint; `explain` then
  // shows the policy without a workspace file.
  if (auto ws = app::resolve_workspace(loaded->policy)) {
    if (auto st = config::narrow_with_workspace_file(*loaded, *ws + "/.agentbox.toml"); !st) {
      fmt::print(stderr, "{}", st.error().render());
      return std::nullopt;
    }
  }
  return std::move(*loaded);
}

}  // namespace agentbox::cli
