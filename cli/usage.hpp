// Command-line mistakes reported in agentbox's own format, with the nearest correct word.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>

namespace agentbox::cli {

// `agentbox help [VERB]` and a first word that is no verb, before CLI11 sees them; nullopt when
// the command line is for CLI11 to parse.
[[nodiscard]] std::optional<int> handle_verb_word(const CLI::App& app, int argc, char** argv);

// A CLI11 parse error as `agentbox: error: VERB: ...` and a hint; returns the exit status.
[[nodiscard]] int report_parse_error(const CLI::App& app, const CLI::ParseError& e, int argc,
                                     char** argv);

}  // namespace agentbox::cli
