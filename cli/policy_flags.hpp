// The grant flags shared by `run` and `explain`, so both read the command line the same way.
#pragma once

#include <CLI/CLI.hpp>

#include "agentbox/config/load.hpp"

namespace agentbox::cli {

void add_policy_flags(CLI::App* sub, config::LoadOptions& options);

}  // namespace agentbox::cli
