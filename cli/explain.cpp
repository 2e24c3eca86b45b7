// `agentbox explain`: print the effective policy, each line with the file:line or flag it came
// from.
#include <fmt/core.h>
#include <fmt/ranges.h>

#include <memory>

#include "agentbox/config/load.hpp"
#include "policy_flags.hpp"
#include "verbs.hpp"

namespace agentbox::cli {

void register_explain(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<config::LoadOptions>();
  auto list = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand(
      "explain", "Print the effective policy and where each line of it came from");
  add_policy_flags(sub, *options);
  sub->add_flag("--list-profiles", *list, "List the profiles that --profile can name");
  sub->callback([&exit_code, options, list] {
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
    exit_code = 0;
  });
}

}  // namespace agentbox::cli
