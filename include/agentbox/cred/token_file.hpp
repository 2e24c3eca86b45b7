// Token files: a file that holds tokens (an agent's auth JSON, a .netrc) shown inside the box
// with each real value replaced by its placeholder.
//
// Theory of operation: find_secrets() reads the values to mask out of the file's text — string
// values at dotted JSON paths ("oauth.access_token"; array elements by index, "keys.0") and the
// first group of each regular expression, every match — then the app registers each distinct
// value as a credential scoped to the file's hosts (so the proxy swaps the placeholder back on the
// way out and scrubs the value from responses) and mask() writes the text with every occurrence
// of each value, raw or JSON-escaped, replaced by its placeholder. The file keeps its formatting;
// the box sees it read-only. Nothing here throws (nlohmann::json is used without exceptions).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::cred {

struct TokenFileSpec {
  std::vector<std::string> json_fields;
  std::vector<std::string> regexes;
};

// The distinct values to mask, in order of first appearance. A JSON path that is missing or not a
// string is skipped (tokens come and go); text that is not JSON while json_fields are asked for,
// or a value shorter than 8 characters (its placeholder would collide with ordinary text), is an
// error.
[[nodiscard]] base::Result<std::vector<std::string>> find_token_secrets(std::string_view text,
                                                                        const TokenFileSpec& spec);

// `text` with every (secret, placeholder) pair replaced, raw and in JSON-escaped form.
[[nodiscard]] std::string mask_token_text(
    std::string text, const std::vector<std::pair<std::string, std::string>>& replacements);

}  // namespace agentbox::cred
