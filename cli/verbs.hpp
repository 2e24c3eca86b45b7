// One register_<verb> per file in cli/: each adds its subcommand and sets `exit_code` when run.
#pragma once

#include <CLI/CLI.hpp>

namespace agentbox::cli {

void register_completion(CLI::App& app, int& exit_code);
void register_doctor(CLI::App& app, int& exit_code);
void register_explain(CLI::App& app, int& exit_code);
void register_run(CLI::App& app, int& exit_code);
void register_state(CLI::App& app, int& exit_code);
void register_control(CLI::App& app, int& exit_code);

}  // namespace agentbox::cli
