// Appending to the user's config file without rewriting it (`agentbox approve ... always`).
//
// The file is never rewritten: a comment line and one new `[[network.allow]]` table go at its
// end, in one O_APPEND write, so the user's comments, order and spacing stay as they were. The
// result is parsed (toml11) before anything is written; when it would not parse (the file
// already has `allow = [...]` as an inline array under [network], which TOML does not let a
// table extend, or the file is not TOML) nothing is written and the error says what to add by
// hand. A missing file (and its folder, 0700) is created 0600.
#pragma once

#include <string>

#include "agentbox/base/result.hpp"

namespace agentbox::config {

// The user's config file: $XDG_CONFIG_HOME/agentbox/config.toml, else ~/.config/agentbox/...
// from `xdg_config_home` / `home` (either may be empty). Empty when neither is absolute.
[[nodiscard]] std::string user_config_file(const std::string& xdg_config_home,
                                           const std::string& home);

// Appends `# COMMENT` and `[[network.allow]] host = "RULE"` to `path`.
[[nodiscard]] base::Status append_allow(const std::string& path, const std::string& rule,
                                        const std::string& comment);

}  // namespace agentbox::config
