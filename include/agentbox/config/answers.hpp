// A profile's `persist.answers`: keys merged into the user's own agent settings file, the result
// shown read-only in the box, so the agent starts without asking again.
//
// Why a merged, read-only file: an agent records some answers (claude's bypass-mode consent,
// codex's folder trust) only in a settings file that can also start programs outside any box
// session's control (hooks, notify commands, MCP servers). Such a file is never kept from inside
// (`persist.drop`); the profile says the answer instead, agentbox writes the file outside the box
// (the user's own file with the profile's keys on top) and the box can only read it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"

namespace agentbox::config {

enum class AnswerFormat { kJson, kToml };

// By the file's extension (".json", ".toml"); nullopt for any other name.
[[nodiscard]] std::optional<AnswerFormat> answer_format(std::string_view path);

// `existing` (the user's file, empty when there is none) with the JSON object `answers` merged
// on top (objects merged key by key, anything else replaced), `{workspace}` in keys and string
// values replaced by `workspace`; in the file's own format.
[[nodiscard]] base::Result<std::string> merge_answers(AnswerFormat format,
                                                      const std::string& existing,
                                                      const std::string& answers,
                                                      const std::string& workspace);

}  // namespace agentbox::config
