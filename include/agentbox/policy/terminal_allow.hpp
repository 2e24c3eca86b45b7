// `[terminal] allow`: the OSC kinds a user lets through the terminal filter (app/terminal_filter).
// One grammar for config validation and for the filter: "osc8" (hyperlinks), "osc52" (clipboard
// writes; a clipboard read never passes), or "oscN" for another OSC number N (0-65535).
#pragma once

#include <cstdint>
#include <string_view>

#include "agentbox/base/result.hpp"

namespace agentbox::policy {

// The OSC number an entry names. The error says briefly what is wrong; callers add where.
[[nodiscard]] base::Result<uint32_t> parse_terminal_allow(std::string_view entry);

}  // namespace agentbox::policy
