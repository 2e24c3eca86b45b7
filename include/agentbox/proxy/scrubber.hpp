// Streaming same-length replacement of secrets in responses (CredentialSet::scrubber() loads
// one with every form of every secret it knows).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agentbox::proxy {

// Replaces needles by replacements of the same length (so Content-Length and chunk sizes stay
// right), across buffer boundaries: only the longest tail that is a proper prefix of a needle is
// held back, so a secret split across two reads is still caught and everything else (an SSE
// event ending in "\n\n", any byte no needle starts with) streams through at once. Needles are
// applied longest first (the Basic form of user:secret contains the base64 of the secret's whole
// groups; replacing that part first would leave the longer form unmatched).
class Scrubber {
 public:
  Scrubber() = default;
  // Adds needle -> replacement; both must be non-empty and of equal length.
  void add(std::string needle, std::string replacement);

  // In place, no copy: replaces every needle inside `buf` and returns how many leading bytes are
  // final. The rest (none when `final`) may still start a needle: the caller keeps those bytes
  // and passes them again, at the front, with the data that follows.
  [[nodiscard]] size_t scrub_in_place(std::span<char> buf, bool final);

  // Copying form (heads, tunnels, chunked bodies): the scrubber keeps the held tail itself.
  [[nodiscard]] std::string feed(std::string_view data);
  [[nodiscard]] std::string finish();  // the held-back tail, scrubbed
  [[nodiscard]] bool empty() const { return pairs_.empty(); }
  [[nodiscard]] uint64_t replaced() const { return replaced_; }
  [[nodiscard]] size_t held() const { return tail_.size(); }

 private:
  [[nodiscard]] size_t hold_length(std::string_view buf) const;
  std::vector<std::pair<std::string, std::string>> pairs_;
  std::string tail_;
  uint64_t replaced_ = 0;
};

}  // namespace agentbox::proxy
