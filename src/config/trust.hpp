// Reading a configuration file agentbox will obey: its bytes come from one fd that passed the
// ownership checks, so the file checked is the file parsed.
#pragma once

#include <optional>
#include <string>

namespace agentbox::config {

struct TrustedText {
  std::string text;
  std::string refused;  // non-empty: why the file is not obeyed (one line), and `text` is empty
};

// nullopt when `path` does not exist. A configuration or profile file grants the box what it may
// reach, so someone else able to write it could widen every later session: the file and the
// directory it is in must be owned by root or by the caller, and writable by nobody else (a
// sticky directory is fine for the directory check; its files still need the right owner).
// Symbolic links are followed (dotfile managers link config files), and the checks apply to what
// they lead to.
[[nodiscard]] std::optional<TrustedText> read_trusted(const std::string& path);

}  // namespace agentbox::config
