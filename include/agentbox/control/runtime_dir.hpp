// Where control sockets live: one private folder per user, outside every box.
//
// $XDG_RUNTIME_DIR/agentbox when XDG_RUNTIME_DIR is an absolute directory of ours, else
// /run/user/UID/agentbox when that exists and is ours, else /tmp/agentbox-UID. The last folder
// is created 0700 and then checked (lstat: a directory, not a link, owned by the effective uid,
// no group or other bits), so a folder another user planted in /tmp is refused, not used.
// The box never sees any of these: it has its own /tmp and no /run (mount_plan.cpp).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::control {

// The folder, created when `create` and missing; an error when it is not private to us.
[[nodiscard]] base::Result<std::string> runtime_dir(const std::map<std::string, std::string>& env,
                                                    bool create);

// The short id of a session: the random tail of its full id (20260101T120000Z-a1b2c3 ->
// a1b2c3), or the argument itself when it already is one. nullopt when `s` is neither.
[[nodiscard]] std::optional<std::string> short_id(const std::string& s);

// DIR/SHORT.sock.
[[nodiscard]] std::string socket_path(const std::string& dir, const std::string& short_id);

// The short ids of the sockets in `dir`, sorted.
[[nodiscard]] std::vector<std::string> list_sessions(const std::string& dir);

}  // namespace agentbox::control
