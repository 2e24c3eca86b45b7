// The grant flags shared by `run` and `explain`, so both read the command line the same way.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>

#include "agentbox/config/load.hpp"

namespace agentbox::cli {

void add_policy_flags(CLI::App* sub, config::LoadOptions& options);

// config::load, then the workspace's own .agentbox.toml, which may only narrow (so `run` and
// `explain` agree on the policy). Problems are printed; nullopt means exit 125.
[[nodiscard]] std::optional<config::Loaded> load_policy(const config::LoadOptions& options);

}  // namespace agentbox::cli
