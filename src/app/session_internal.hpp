// Helpers shared by the files of app::Session (session*.cpp); not part of app's interface.
#pragma once

#include <string>

#include "agentbox/config/model.hpp"

namespace agentbox::app::detail {

// Where a setting came from, for messages ("--rw", "profile.toml:3:1"). Local, so that the app
// does not depend on the config library's implementation for one string.
[[nodiscard]] std::string origin_text(const config::Origin& o);
// " (from profile.toml:3:1)" for grants out of a file; nothing for command-line flags.
[[nodiscard]] std::string from_text(const config::Origin& o);

}  // namespace agentbox::app::detail
