// Streaming same-length replacer for response scrubbing (see credentials.hpp).
#include <algorithm>

#include "agentbox/proxy/credentials.hpp"

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
  // Longest needle first: the Basic form of user:secret contains the base64 of the secret's
  // whole groups, and replacing that part first would leave the full form unmatched (and the
  // secret's last bytes visible).
  auto pos = std::find_if(pairs_.begin(), pairs_.end(),
                          [&](const auto& p) { return p.first.size() < needle.size(); });
  pairs_.emplace(pos, std::move(needle), std::move(replacement));
}

void Scrubber::scrub(std::string& buf) {
  for (const auto& [needle, repl] : pairs_) {
    for (size_t pos = buf.find(needle); pos != std::string::npos;
         pos = buf.find(needle, pos + needle.size())) {
      buf.replace(pos, needle.size(), repl);
      ++replaced_;
    }
  }
}

size_t Scrubber::hold_length(std::string_view buf) const {
  // The longest tail of `buf` that is a proper prefix of some needle: only those bytes can
  // still become a secret when more data comes, so a stream that ends an event with "\n\n"
  // (SSE) or any byte no needle starts with goes out at once.
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
  scrub(buf);
  const size_t hold = hold_length(buf);
  tail_ = buf.substr(buf.size() - hold);
  buf.resize(buf.size() - hold);
  return buf;
}

std::string Scrubber::finish() {
  std::string out = std::move(tail_);
  tail_.clear();
  scrub(out);
  return out;
}

}  // namespace agentbox::proxy
