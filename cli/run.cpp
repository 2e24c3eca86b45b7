// `agentbox run [options] -- CMD ARGS...`: flags -> config::load -> app::run -> exit code.
#include "agentbox/app/run.hpp"

#include <fmt/core.h>

#include "agentbox/base/log.hpp"
#include "agentbox/config/load.hpp"
#include "verbs.hpp"

namespace agentbox::cli {

namespace {

struct RunOptions {
  config::Flags flags;
  std::vector<std::string> command;
  int verbose = 0;
  bool quiet = false;
  bool no_config = false;
};

#ifndef AGENTBOX_HAVE_CONFIG_LOAD
// Interim until the config module lands: the flags alone, as the loader would layer them last.
base::Result<config::Loaded> load_flags_only(const config::LoadOptions& o) {
  config::Loaded out;
  auto not_yet = [](bool given, const char* flag) {
    if (given) {
      base::log::warn("{} is accepted but not applied by this build yet", flag);
    }
  };
  not_yet(o.flags.profile.has_value(), "--profile");
  not_yet(!o.flags.allow.empty(), "--allow");
  not_yet(!o.flags.connect_to.empty(), "--connect-to");
  not_yet(o.flags.memory.has_value(), "--memory");
  not_yet(o.flags.pids.has_value(), "--pids");
  if (o.flags.workspace) {
    out.policy.workspace = config::Sourced<std::string>{*o.flags.workspace, {"--workspace"}};
  }
  for (const auto& p : o.flags.ro) {
    out.policy.ro.push_back({p, {"--ro"}});
  }
  for (const auto& p : o.flags.rw) {
    out.policy.rw.push_back({p, {"--rw"}});
  }
  for (const auto& e : o.flags.env) {
    auto eq = e.find('=');
    if (eq == std::string::npos) {
      out.policy.env.push_back({e, {"--env"}});
    } else {
      out.policy.setenv[e.substr(0, eq)] = {e.substr(eq + 1), {"--env"}};
    }
  }
  if (o.flags.timeout) {
    try {
      std::string t = *o.flags.timeout;
      uint64_t mult = 1;
      if (!t.empty() && (t.back() == 's' || t.back() == 'm' || t.back() == 'h')) {
        mult = t.back() == 'h' ? 3600 : t.back() == 'm' ? 60 : 1;
        t.pop_back();
      }
      out.policy.limits.timeout_seconds =
          config::Sourced<uint64_t>{std::stoull(t) * mult, {"--timeout"}};
    } catch (const std::exception&) {
      return base::Error::msg(
          fmt::format("--timeout `{}`: expected e.g. 90s, 5m, 2h", *o.flags.timeout));
    }
  }
  return out;
}
#endif

int run_verb(const RunOptions& o) {
  using base::log::Level;
  base::log::set_level(o.quiet          ? Level::kQuiet
                       : o.verbose >= 2 ? Level::kTrace
                       : o.verbose == 1 ? Level::kVerbose
                                        : Level::kNormal);
  config::LoadOptions lo;
  lo.flags = o.flags;
  lo.no_user_config = o.no_config;
#ifdef AGENTBOX_HAVE_CONFIG_LOAD
  auto loaded = config::load(lo);
#else
  auto loaded = load_flags_only(lo);
#endif
  if (!loaded) {
    fmt::print(stderr, "{}", loaded.error().render());
    return 125;
  }
  app::RunRequest req{.policy = std::move(loaded->policy),
                      .command = o.command,
                      .config_files = loaded->files_read,
                      .quiet = o.quiet};
  return app::run(req);
}

}  // namespace

void register_run(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* sub = app.add_subcommand(
      "run", "Run a command inside a box (agentbox run [OPTIONS] -- CMD ARGS...)");
  sub->footer(
      "\nThe box sees the workspace (the git repository around the current directory, or\n"
      "--workspace) read-write at its real path, system directories read-only, an empty\n"
      "private HOME and /tmp, and an environment built from scratch. .git/hooks, .git/config,\n"
      ".gitmodules, .envrc, .vscode and .idea stay read-only. The exit status is the\n"
      "command's own (128+N for signal N); 125 means agentbox failed, 126 the command could\n"
      "not be executed, 127 it was not found.\n\n"
      "Examples:\n"
      "  agentbox run -- claude\n"
      "  agentbox run --profile codex --ro ~/.gitconfig -- codex\n"
      "  agentbox run --rw ~/.cache/pip --env GITHUB_TOKEN --timeout 2h -- ./ci.sh");
  auto& f = opts->flags;
  sub->add_option("--profile", f.profile, "Named profile to apply (e.g. claude, codex)");
  sub->add_option("--workspace", f.workspace,
                  "Directory shown read-write (default: the enclosing git repository, else .)");
  sub->add_option("--ro", f.ro, "Also show PATH read-only (repeatable, ~ is your home)")
      ->allow_extra_args(false);
  sub->add_option("--rw", f.rw, "Also show PATH read-write (repeatable)")->allow_extra_args(false);
  sub->add_option("--env", f.env, "Pass NAME from your environment, or set NAME=VALUE")
      ->allow_extra_args(false);
  sub->add_option("--allow", f.allow, "Allow connections to HOST[:PORT] (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--connect-to", f.connect_to, "Route HOST:PORT to ADDR:PORT")
      ->allow_extra_args(false);
  sub->add_option("--timeout", f.timeout, "Stop the box after this long (90s, 5m, 2h)");
  sub->add_option("--memory", f.memory, "Memory limit (e.g. 4G)");
  sub->add_option("--pids", f.pids, "Maximum number of processes");
  sub->add_flag("-v,--verbose", opts->verbose, "Say what agentbox does (twice: more)");
  sub->add_flag("-q,--quiet", opts->quiet, "No summary at exit, no warnings");
  sub->add_flag("--no-config", opts->no_config,
                "Ignore the system and user config files (built-ins, profile and flags only)");
  sub->add_option("command", opts->command, "The command and its arguments, after --")->required();
  sub->callback([opts, &exit_code] { exit_code = run_verb(*opts); });
}

}  // namespace agentbox::cli
