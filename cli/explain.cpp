// `agentbox explain`: print the effective policy, each line with the file:line or flag it came
// from.
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <memory>

#include "agentbox/app/run.hpp"
#include "agentbox/config/load.hpp"
#include "policy_flags.hpp"
#include "verbs.hpp"

namespace agentbox::cli {

void register_explain(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<config::LoadOptions>();
  auto list = std::make_shared<bool>(false);
  auto command = std::make_shared<std::vector<std::string>>();
  CLI::App* sub = app.add_subcommand(
      "explain", "Print the effective policy and where each line of it came from");
  add_policy_flags(sub, *options);
  sub->add_flag("--list-profiles", *list, "List the profiles that --profile can name");
  sub->add_option("command", *command,
                  "A command (after --): also say where it resolves and what of its installation "
                  "the box would show");
  sub->callback([&exit_code, options, list, command] {
    if (*list) {
      fmt::print("{}\n",
                 fmt::join(config::available_profiles(config::default_profile_dirs()), "\n"));
      exit_code = 0;
      return;
    }
    auto loaded = load_policy(*options);
    if (!loaded) {
      exit_code = 125;
      return;
    }
    fmt::print("{}", config::explain(*loaded));
    if (!command->empty()) {
      // What `run` adds for the program (app/program_install.hpp): it depends on the caller's
      // PATH and files, not on the configuration.
      fmt::print("\n[program]\n");
      for (const auto& line : app::explain_program(loaded->policy, command->front())) {
        fmt::print("  # {}\n", line);
      }
    }
    exit_code = 0;
  });
}

}  // namespace agentbox::cli
