// `agentbox run [options] -- CMD ARGS...`: flags -> config::load -> app::run -> its report
// printed (without -q) -> exit code.
#include "agentbox/app/run.hpp"

#include <fmt/core.h>

#include "agentbox/base/log.hpp"
#include "agentbox/config/load.hpp"
#include "policy_flags.hpp"
#include "verbs.hpp"

namespace agentbox::cli {

namespace {

struct RunOptions {
  config::LoadOptions load;
  std::vector<std::string> command;
  int verbose = 0;
  bool quiet = false;
};

int run_verb(const RunOptions& o) {
  using base::log::Level;
  base::log::set_level(o.quiet          ? Level::kQuiet
                       : o.verbose >= 2 ? Level::kTrace
                       : o.verbose == 1 ? Level::kVerbose
                                        : Level::kNormal);
  const config::LoadOptions& lo = o.load;
  auto loaded = load_policy(lo);
  if (!loaded) {
    return 125;
  }
  for (const auto& note : loaded->notes) {
    base::log::info("{}", note);  // one line per dropped credential, and why
  }
  app::RunRequest req{.policy = std::move(loaded->policy),
                      .command = o.command,
                      .config_files = loaded->files_read,
                      .quiet = o.quiet};
  const app::SessionReport report = app::run(req);
  if (!o.quiet) {
    for (const auto& line : app::render(report)) {
      base::log::info("{}", line);
    }
  }
  return report.code;
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
      "command's own (128+N for signal N); 124 means --timeout stopped it, 125 agentbox\n"
      "failed, 126 the command could not be executed, 127 it was not found.\n\n"
      "Examples:\n"
      "  agentbox run -- claude\n"
      "  agentbox run --profile codex --ro ~/.gitconfig -- codex\n"
      "  agentbox run --rw ~/.cache/pip --env GITHUB_TOKEN --timeout 2h -- ./ci.sh");
  add_policy_flags(sub, opts->load);
  sub->add_flag("-v,--verbose", opts->verbose, "Say what agentbox does (twice: more)");
  sub->add_flag("-q,--quiet", opts->quiet, "No summary at exit, no warnings");
  sub->add_option("command", opts->command, "The command and its arguments, after --")->required();
  sub->callback([opts, &exit_code] { exit_code = run_verb(*opts); });
}

}  // namespace agentbox::cli
