// One register_<verb> per file in cli/: each adds its subcommand and sets `exit_code` when run.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace agentbox::cli {

void register_completion(CLI::App& app, int& exit_code);
void register_doctor(CLI::App& app, int& exit_code);
void register_explain(CLI::App& app, int& exit_code);
void register_run(CLI::App& app, int& exit_code);
void register_state(CLI::App& app, int& exit_code);
void register_control(CLI::App& app, int& exit_code);
void register_approve(CLI::App& app, int& exit_code);
void register_review(CLI::App& app, int& exit_code);

// STATE/agentbox as `agentbox run` computes it: from $XDG_STATE_HOME, else $HOME, else passwd
// (state.cpp).
[[nodiscard]] std::string user_state_dir();

}  // namespace agentbox::cli
