// Streaming same-length replacer for response scrubbing (scrubber.hpp).
#include "agentbox/cred/scrubber.hpp"

#include <string.h>  // memmem (GNU)

#include <algorithm>
#include <cstring>

namespace agentbox::cred {

void Scrubber::add(std::string needle, std::string replacement) {
  if (needle.empty() || needle.size() != replacement.size() || needle == replacement) {
    return;  // a different length would change Content-Length: never done
  }
  for (const auto& p : pairs_) {
    if (p.first == needle) {
      return;
    }
  }
  auto pos = std::find_if(pairs_.begin(), pairs_.end(),
                          [&](const auto& p) { return p.first.size() < needle.size(); });
  const auto first = static_cast<uint8_t>(needle[0]);
  first_bytes_[first / 64] |= uint64_t{1} << (first % 64);
  pairs_.emplace(pos, std::move(needle), std::move(replacement));
  indexed_ = false;
}

namespace {

constexpr size_t kGram = 4;

uint32_t load_gram(const char* p) {
  uint32_t g = 0;
  std::memcpy(&g, p, sizeof g);
  return g;
}

uint32_t gram_hash(uint32_t g) {
  return (g * 0x9E3779B1u) >> 16;  // 16 bits
}

}  // namespace

void Scrubber::build_index() {
  stride_ = 0;
  filter_.clear();
  anchors_.clear();
  if (pairs_.empty() || pairs_.size() > 0xffff) {
    return;
  }
  const size_t shortest = pairs_.back().first.size();  // sorted longest first
  if (shortest < kMinAnchored) {
    return;
  }
  stride_ = std::min<size_t>(shortest - kGram + 1, 0xffff);
  filter_.assign(size_t{65536} / 64, 0);
  for (size_t i = 0; i < pairs_.size(); ++i) {
    const std::string& needle = pairs_[i].first;
    for (size_t j = 0; j < stride_; ++j) {
      const uint32_t g = load_gram(needle.data() + j);
      const uint32_t h = gram_hash(g);
      filter_[h / 64] |= uint64_t{1} << (h % 64);
      anchors_.push_back({g, static_cast<uint16_t>(i), static_cast<uint16_t>(j)});
    }
  }
  std::sort(anchors_.begin(), anchors_.end(),
            [](const Anchor& a, const Anchor& b) { return a.gram < b.gram; });
}

bool Scrubber::any_needle(std::string_view buf) const {
  const char* const base = buf.data();
  const size_t n = buf.size();
  if (n < pairs_.back().first.size()) {
    return false;
  }
  // Window starts t = 0, S, 2S, ... while a gram at t can still be inside a whole occurrence.
  const size_t last = n - kGram;
  for (size_t t = 0; t <= last; t += stride_) {
    const uint32_t g = load_gram(base + t);
    const uint32_t h = gram_hash(g);
    if ((filter_[h / 64] >> (h % 64) & 1) == 0) {
      continue;
    }
    auto it = std::lower_bound(anchors_.begin(), anchors_.end(), g,
                               [](const Anchor& a, uint32_t v) { return a.gram < v; });
    for (; it != anchors_.end() && it->gram == g; ++it) {
      const std::string& needle = pairs_[it->needle].first;
      if (it->offset > t) {
        continue;
      }
      const size_t p = t - it->offset;
      if (p + needle.size() <= n && std::memcmp(base + p, needle.data(), needle.size()) == 0) {
        return true;
      }
    }
  }
  return false;
}

size_t Scrubber::scrub_in_place(std::span<char> buf, bool final) {
  // The held tail is measured before anything is replaced, and occurrences that start inside it
  // wait with it: such a tail may be the start of a longer needle that contains them (the Basic
  // form of user:secret contains the base64 of the secret), and replacing the shorter one first
  // would break the longer one, leaving the secret's last bytes in it unreplaced.
  const std::string_view view(buf.data(), buf.size());
  find_escapes(view);  // for escaped_hold and scan_escaped
  const size_t limit =
      final ? buf.size() : buf.size() - std::max(hold_length(view), escaped_hold(view));
  // The anchored scan only says whether any needle occurs; when one does (rare: a secret
  // echoed back), the memmem passes replace, with their exact order and overlap rules.
  bool anchored = false;
  if (buf.size() >= anchored_from_ && !pairs_.empty()) {
    if (!indexed_) {
      build_index();
      indexed_ = true;
    }
    anchored = stride_ != 0;
  }
  if (!pairs_.empty() && (!anchored || any_needle(view))) {
    scan_memmem(buf, limit);
  }
  if (!escaped_.empty()) {
    scan_escaped(buf, limit);
  }
  return limit;
}

void Scrubber::scan_memmem(std::span<char> buf, size_t limit) {
  // One memmem pass per needle: glibc's memmem skips ahead by up to the needle's length on a
  // mismatch (a Horspool-style shift table), so a pass costs a fraction of a byte-by-byte scan
  // (std::string::find stops at every byte equal to the needle's first one).
  char* const end = buf.data() + buf.size();
  char* const stop = buf.data() + limit;  // occurrences starting here or later wait
  for (const auto& [needle, repl] : pairs_) {
    char* p = buf.data();
    while (static_cast<size_t>(end - p) >= needle.size()) {
      void* hit = ::memmem(p, static_cast<size_t>(end - p), needle.data(), needle.size());
      if (hit == nullptr || static_cast<char*>(hit) >= stop) {
        break;
      }
      std::memcpy(hit, repl.data(), repl.size());
      ++replaced_;
      p = static_cast<char*>(hit) + needle.size();
    }
  }
}

size_t Scrubber::hold_length(std::string_view buf) const {
  // The longest tail of `buf` that is a proper prefix of some needle: only those bytes can
  // still become a secret when more data comes. Tail starts are tried earliest first, and only
  // at a byte some needle starts with (one look each, then the needles that start with it).
  const size_t longest = pairs_.empty() ? 0 : pairs_.front().first.size();  // sorted longest first
  const size_t from = buf.size() - std::min(buf.size(), longest > 0 ? longest - 1 : 0);
  for (size_t i = from; i < buf.size(); ++i) {
    const auto c = static_cast<uint8_t>(buf[i]);
    if ((first_bytes_[c / 64] >> (c % 64) & 1) == 0) {
      continue;
    }
    const auto tail = buf.substr(i);
    for (const auto& [needle, repl] : pairs_) {
      if (needle.size() > tail.size() && needle.compare(0, tail.size(), tail) == 0) {
        return tail.size();
      }
    }
  }
  return 0;
}

std::string Scrubber::feed(std::string_view data) {
  if (empty()) {
    return std::string(data);
  }
  std::string buf = std::move(tail_);
  tail_.clear();
  buf.append(data);
  const size_t keep = scrub_in_place(buf, false);
  tail_.assign(buf, keep);
  buf.resize(keep);
  return buf;
}

std::string Scrubber::finish() {
  std::string out = std::move(tail_);
  tail_.clear();
  (void)scrub_in_place(out, true);
  return out;
}

}  // namespace agentbox::cred
