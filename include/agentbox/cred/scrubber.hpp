// Streaming same-length replacement of secrets in responses (CredentialSet::scrubber() loads
// one with every form of every secret it knows).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agentbox::cred {

// Replaces needles by replacements of the same length (so Content-Length and chunk sizes stay
// right), across buffer boundaries: only the longest tail that is a proper prefix of a needle is
// held back, so a secret split across two reads is still caught and everything else (an SSE
// event ending in "\n\n", any byte no needle starts with) streams through at once. Needles are
// applied longest first (the Basic form of user:secret contains the base64 of the secret's whole
// groups; replacing that part first would leave the longer form unmatched).
//
// The search (scrub_in_place) first asks, in one pass for all needles, whether any needle occurs
// at all; only then (rare: a secret echoed back) does it replace, with one memmem pass per needle
// in the order above. The one pass works when every needle has at least kMinAnchored bytes: with
// L the shortest needle's length, an occurrence of any needle spans the start positions of
// S = L - 3 grams of 4 bytes taken from its own first L bytes, and exactly one of those positions
// is a multiple of S. So the scan reads one gram every S bytes (a 93-byte secret: one load per
// 90 bytes, against one memmem pass per needle each stepping by up to the needle's length),
// tests its bit in a 64 Kibit filter of all those grams of all needles, and on a set bit checks
// the exact grams and confirms with memcmp. With a shorter needle it goes straight to memmem,
// and so does a buffer under `anchored_from` bytes: the filter is built on first use (about a
// microsecond), more than memmem needs for a response head or a small body, and the proxy makes
// a scrubber per response.
class Scrubber {
 public:
  static constexpr size_t kAnchoredFrom = 2048;
  Scrubber() = default;
  explicit Scrubber(size_t anchored_from) : anchored_from_(anchored_from) {}
  // Adds needle -> replacement; both must be non-empty and of equal length.
  void add(std::string needle, std::string replacement);
  // Adds `secret` -> `replacement` in escaped text: percent escapes (%XX, either case) and JSON
  // string escapes (\u00XX either case, \/ \" \\) in any mix with raw bytes (every byte
  // escaped, or only some, as each encoder chooses). Matched on the decoded bytes, replaced unit
  // by unit with the replacement's byte in the same unit kind and case (scrub_forms.cpp).
  void add_escaped(std::string secret, std::string replacement);

  // In place, no copy: replaces every needle inside `buf` and returns how many leading bytes are
  // final. The rest (none when `final`) may still start a needle: the caller keeps those bytes
  // and passes them again, at the front, with the data that follows.
  [[nodiscard]] size_t scrub_in_place(std::span<char> buf, bool final);

  // Copying form (heads, tunnels, chunked bodies): the scrubber keeps the held tail itself.
  [[nodiscard]] std::string feed(std::string_view data);
  [[nodiscard]] std::string finish();  // the held-back tail, scrubbed
  [[nodiscard]] bool empty() const { return pairs_.empty() && escaped_.empty(); }
  [[nodiscard]] uint64_t replaced() const { return replaced_; }
  [[nodiscard]] size_t held() const { return tail_.size(); }

 private:
  static constexpr size_t kMinAnchored = 8;
  [[nodiscard]] size_t hold_length(std::string_view buf) const;
  void scan_memmem(std::span<char> buf, size_t limit);
  [[nodiscard]] bool any_needle(std::string_view buf) const;
  void build_index();
  void find_escapes(std::string_view buf);
  [[nodiscard]] size_t escaped_hold(std::string_view buf) const;
  void scan_escaped(std::span<char> buf, size_t limit);
  std::vector<std::pair<std::string, std::string>> pairs_;
  std::array<uint64_t, 4> first_bytes_{};  // first bytes of the needles (hold_length)
  std::vector<std::pair<std::string, std::string>> escaped_;  // secret -> replacement
  size_t escaped_span_ = 0;  // the longest escaped span of any of them (6 bytes per byte)
  std::array<uint64_t, 4> escaped_bytes_{};  // bytes that occur in some escaped_ secret
  std::vector<uint32_t> escapes_;            // scan_escaped's anchors (kept: no allocation)
  // The anchored scan's index, built on the first buffer of at least anchored_from_ bytes
  // (stride_ stays 0 when some needle is shorter than kMinAnchored).
  size_t anchored_from_ = kAnchoredFrom;
  bool indexed_ = false;
  size_t stride_ = 0;
  std::vector<uint64_t> filter_;  // 65536 bits, by gram hash
  struct Anchor {
    uint32_t gram;
    uint16_t needle;  // index in pairs_
    uint16_t offset;  // of the gram within the needle (< stride_)
  };
  std::vector<Anchor> anchors_;  // sorted by gram
  std::string tail_;
  uint64_t replaced_ = 0;
};

// Loads `s` with every form of `secret` the proxy scrubs, each mapped to the same form of
// `placeholder` (same length): raw; base64 and base64url, padded or not, at the three alignments
// the secret can have inside a larger base64 text (only the characters the secret alone
// determines: the first and last character of an unaligned encoding also carry the neighbouring
// bytes' bits, so they stay, and carry at most 4 bits of the secret's first and last byte);
// hex in lower and upper case; and the escaped forms (add_escaped). Forms shorter than
// kMinForm characters are not added (they would match unrelated text).
void add_secret_forms(Scrubber& s, std::string_view secret, std::string_view placeholder);
inline constexpr size_t kMinForm = 8;

}  // namespace agentbox::cred
