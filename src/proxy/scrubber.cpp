// Streaming same-length replacer for response scrubbing (scrubber.hpp).
#include "agentbox/proxy/scrubber.hpp"

#include <string.h>  // memmem (GNU)

#include <algorithm>
#include <cstring>

namespace agentbox::proxy {

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
  pairs_.emplace(pos, std::move(needle), std::move(replacement));
}

size_t Scrubber::scrub_in_place(std::span<char> buf, bool final) {
  // One memmem pass per needle: glibc's memmem skips ahead by up to the needle's length on a
  // mismatch (a Horspool-style shift table), so a pass costs a fraction of a byte-by-byte scan
  // (std::string::find stops at every byte equal to the needle's first one).
  char* const end = buf.data() + buf.size();
  for (const auto& [needle, repl] : pairs_) {
    char* p = buf.data();
    while (static_cast<size_t>(end - p) >= needle.size()) {
      void* hit = ::memmem(p, static_cast<size_t>(end - p), needle.data(), needle.size());
      if (hit == nullptr) {
        break;
      }
      std::memcpy(hit, repl.data(), repl.size());
      ++replaced_;
      p = static_cast<char*>(hit) + needle.size();
    }
  }
  return final ? buf.size() : buf.size() - hold_length(std::string_view(buf.data(), buf.size()));
}

size_t Scrubber::hold_length(std::string_view buf) const {
  // The longest tail of `buf` that is a proper prefix of some needle: only those bytes can
  // still become a secret when more data comes.
  size_t hold = 0;
  for (const auto& [needle, repl] : pairs_) {
    const size_t max_k = std::min(needle.size() - 1, buf.size());
    for (size_t k = max_k; k > hold; --k) {
      if (buf[buf.size() - k] == needle[0] && buf.substr(buf.size() - k) == needle.substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

std::string Scrubber::feed(std::string_view data) {
  if (pairs_.empty()) {
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

}  // namespace agentbox::proxy
