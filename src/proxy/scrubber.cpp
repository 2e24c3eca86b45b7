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
  keep_ = std::max(keep_, needle.size() - 1);
  pairs_.emplace_back(std::move(needle), std::move(replacement));
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

std::string Scrubber::feed(std::string_view data) {
  if (pairs_.empty()) {
    return std::string(data);
  }
  std::string buf = std::move(tail_);
  buf.append(data);
  scrub(buf);
  if (buf.size() <= keep_) {
    tail_ = std::move(buf);
    return {};
  }
  tail_ = buf.substr(buf.size() - keep_);
  buf.resize(buf.size() - keep_);
  return buf;
}

std::string Scrubber::finish() {
  std::string out = std::move(tail_);
  tail_.clear();
  scrub(out);
  return out;
}

}  // namespace agentbox::proxy
