// Sizes ("256M", "1G") and durations ("90s", "1h30m") as written in config files and flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace agentbox::config {

// Bytes. A number with an optional binary suffix K, M, G, T (optionally followed by "i" and/or
// "B": "4G", "4GiB", "512k"). nullopt when malformed or overflowing.
[[nodiscard]] std::optional<uint64_t> parse_size(std::string_view s);
// Seconds. A sequence of <number><unit> with units d, h, m, s ("1h30m", "90s"), or a bare number
// of seconds. nullopt when malformed, empty, zero or overflowing.
[[nodiscard]] std::optional<uint64_t> parse_duration(std::string_view s);
[[nodiscard]] std::string format_size(uint64_t bytes);
[[nodiscard]] std::string format_duration(uint64_t seconds);

// Levenshtein distance, for "did you mean".
[[nodiscard]] size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace agentbox::config
