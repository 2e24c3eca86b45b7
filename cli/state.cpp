// `agentbox state [list | rm PROFILE | rm --all]`: the agent state kept per profile and
// workspace (app/agent_state.hpp).
#include <fmt/core.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "agentbox/app/agent_state.hpp"
#include "agentbox/base/error.hpp"
#include "verbs.hpp"

namespace agentbox::cli {
namespace {

// Agentbox's error format; 125 as for every other command-line mistake.
int state_fail(const std::string& what, const std::string& hint) {
  fmt::print(stderr, "{}", base::Error::msg(what).hint(hint).render());
  return 125;
}

struct StateArgs {
  std::string action = "list";
  std::string profile;
  bool all = false;
};

std::string human(uint64_t bytes) {
  if (bytes >= (1u << 20)) {
    return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1u << 20));
  }
  return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / 1024);
}

int list_kept(const std::string& dir) {
  auto entries = app::list_state(dir);
  if (!entries) {
    return state_fail(entries.error().message(), {});
  }
  if (entries->empty()) {
    fmt::print("no agent state kept under {}/state\n", dir);
    return 0;
  }
  fmt::print("{:<16} {:>10}  {}\n", "PROFILE", "SIZE", "WORKSPACE");
  for (const auto& e : *entries) {
    fmt::print("{:<16} {:>10}  {}\n", e.scope, human(e.bytes),
               e.workspace.empty() ? "(" + e.key + ")" : e.workspace);
  }
  return 0;
}

int remove(const std::string& dir, const StateArgs& a) {
  if (a.all == !a.profile.empty()) {
    return state_fail("state rm: name one profile or pass --all",
                      "agentbox state rm PROFILE | agentbox state rm --all");
  }
  auto n = app::remove_state(dir, a.profile);
  if (!n) {
    return state_fail(fmt::format("state rm: {}", n.error().message()), {});
  }
  if (*n == 0 && !a.all) {
    return state_fail(fmt::format("state rm: no state kept for profile `{}`", a.profile),
                      "`agentbox state list` shows what is kept");
  }
  fmt::print("removed the state of {} workspace{}{}\n", *n, *n == 1 ? "" : "s",
             a.all ? "" : fmt::format(" of profile `{}`", a.profile));
  return 0;
}

}  // namespace

std::string user_state_dir() {
  std::map<std::string, std::string> env;
  for (const char* name : {"XDG_STATE_HOME", "HOME"}) {
    if (const char* v = std::getenv(name)) {
      env[name] = v;
    }
  }
  std::string home = env.count("HOME") != 0 ? env["HOME"] : std::string();
  if (home.empty() || home[0] != '/') {
    const passwd* pw = ::getpwuid(::getuid());
    home = pw != nullptr && pw->pw_dir != nullptr ? pw->pw_dir : "/";
  }
  return app::agentbox_state_dir(env, home);
}

void register_state(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<StateArgs>();
  CLI::App* sub = app.add_subcommand(
      "state", "List or remove the agent state kept per profile and workspace ([persist])");
  sub->add_option("action", args->action, "list (the default) or rm")
      ->check(CLI::IsMember({"list", "rm"}));
  sub->add_option("profile", args->profile, "rm: the profile whose state goes");
  sub->add_flag("--all", args->all, "rm: remove the state of every profile");
  sub->callback([&exit_code, args] {
    const std::string dir = user_state_dir();
    if (args->action == "list" && (args->all || !args->profile.empty())) {
      exit_code =
          state_fail("state list takes no profile or --all", "agentbox state rm PROFILE|--all");
      return;
    }
    exit_code = args->action == "list" ? list_kept(dir) : remove(dir, *args);
  });
}

}  // namespace agentbox::cli
