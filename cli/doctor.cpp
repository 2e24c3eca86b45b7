// `agentbox doctor`: one line per kernel facility, ok/warn/fail, with the fix.
#include "agentbox/app/doctor.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "verbs.hpp"

namespace agentbox::cli {

void register_doctor(CLI::App& app, int& exit_code) {
  CLI::App* sub = app.add_subcommand(
      "doctor",
      "Check that this machine can run a box: namespaces, Landlock, seccomp, tun, cgroups");
  sub->callback([&exit_code] {
    auto checks = app::run_doctor();
    fmt::print("{}", app::render_checks(checks));
    bool failed = std::any_of(checks.begin(), checks.end(), [](const app::Check& c) {
      return c.state == app::CheckState::kFail;
    });
    exit_code = failed ? 1 : 0;
  });
}

}  // namespace agentbox::cli
