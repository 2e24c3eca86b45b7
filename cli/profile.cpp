// `agentbox profile suggest SESSION`: a reviewable profile that would have allowed what the
// session was refused (app/profile_suggest.hpp). It prints; it never writes a config.
#include <fmt/core.h>

#include <memory>

#include "agentbox/app/profile_suggest.hpp"
#include "agentbox/base/error.hpp"
#include "control_log.hpp"

namespace agentbox::cli {

void register_profile(CLI::App& app, int& exit_code) {
  CLI::App* profile = app.add_subcommand("profile", "Profiles made from what sessions did");
  profile->require_subcommand(1);
  auto session = std::make_shared<std::string>();
  CLI::App* suggest = profile->add_subcommand(
      "suggest", "Print a TOML profile that would have allowed what a session was refused");
  suggest
      ->add_option("SESSION", *session,
                   "The session id (`agentbox ps`, or a finished one), or the path of a log")
      ->required();
  suggest->callback([&exit_code, session] {
    auto path = session_log(*session);
    auto s =
        path ? app::suggest_from_log(*path) : base::Result<app::ProfileSuggestion>(path.error());
    if (!s) {
      fmt::print(stderr, "{}", std::move(s).error().context("profile suggest").render());
      exit_code = 125;
      return;
    }
    fmt::print("{}", s->render());
    exit_code = 0;
  });
}

}  // namespace agentbox::cli
