// The audit log's hash chain (docs/ARCHITECTURE.md, "Audit log"): each line ends with the SHA-256
// of the line before it, the first with a random nonce, so an edit, a removed or moved line or a
// cut in the middle shows at the first line after it.
//
// Line 1:  {..., "nonce":"<64 hex: 32 random bytes>"}\n
// Line k:  {..., "prev":"<64 hex: SHA-256 of line k-1, its newline included>"}\n
// The head is the SHA-256 of the last line; the exit summary prints it, `agentbox log --verify`
// recomputes it (a log cut at its end verifies, but to a different head).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"

namespace agentbox::audit {

inline constexpr size_t kDigestBytes = 32;
using Digest = std::array<unsigned char, kDigestBytes>;

// Lower-case hex of a digest (64 characters).
[[nodiscard]] std::string hex(const Digest& d);

// SHA-256 with a context fetched once (OpenSSL 3's one-shot SHA256() fetches on every call).
class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  [[nodiscard]] bool digest(std::string_view data, Digest& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The writer's side: seal() ends each line with its link and moves the head. Not thread-safe
// (the sink calls it under its lock, in the order the lines reach the file).
class Chain {
 public:
  [[nodiscard]] static base::Result<Chain> start();  // a nonce from getrandom(2)
  explicit Chain(const Digest& nonce);
  static constexpr size_t kGrowth = 75;  // bytes seal() adds to a line, at most
  // `line` is a rendered line, `{...}\n`; it becomes `{...,"prev":"..."}\n`. May throw
  // std::bad_alloc (the line is then unchanged and the head too).
  void seal(std::string& line);
  [[nodiscard]] std::string head() const { return hex(head_); }  // the nonce before any line
  [[nodiscard]] uint64_t lines() const { return lines_; }

 private:
  Hasher hasher_;
  Digest head_{};
  uint64_t lines_ = 0;
};

// Where a log stops verifying: the 1-based line and why, in one sentence.
struct ChainBreak {
  uint64_t line = 0;
  std::string reason;
};

// The reader's side, one line at a time (a 64 MiB log never sits in memory whole).
class ChainVerifier {
 public:
  // `line` with its newline when it has one; false from the first break on.
  bool feed(std::string_view line);
  // After the last line: the break, if any (an empty log is one).
  [[nodiscard]] std::optional<ChainBreak> finish() const;
  [[nodiscard]] uint64_t lines() const { return lines_; }
  [[nodiscard]] std::string head() const { return hex(head_); }
  [[nodiscard]] std::string nonce() const { return nonce_; }

 private:
  bool fail(std::string reason);
  Hasher hasher_;
  Digest head_{};
  uint64_t lines_ = 0;
  std::string nonce_;
  std::optional<ChainBreak> broken_;
};

}  // namespace agentbox::audit
