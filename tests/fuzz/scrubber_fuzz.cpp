// Fuzz target: the response scrubber (the last line between a real secret the upstream echoes
// and the box) on arbitrary text, needles and read boundaries. Needles are cut from the input
// itself, so they occur; replacements use bytes no needle contains, so any needle left in the
// output is one the scrubber missed (a replacement can neither form nor hide one). Checked for
// the in-place form (held bytes at the front of the next read, as http_exchange.cpp does) and
// the copying form (feed/finish), both scan modes (anchored on every buffer, and as the proxy
// runs it): the output has the input's length and holds no needle.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/proxy/scrubber.hpp"

namespace {

using agentbox::proxy::Scrubber;

// Needle bytes: anything but 0xF0-0xFF, which replacements use.
char needle_byte(uint8_t b) {
  return static_cast<char>(b >= 0xF0 ? b - 0x80 : b);
}

void check(std::string_view text, const std::vector<std::pair<std::string, std::string>>& pairs,
           std::span<const uint8_t> cuts, size_t anchored_from) {
  // In place, held bytes carried to the front of the next read.
  Scrubber a(anchored_from);
  Scrubber b(anchored_from);
  for (const auto& [n, r] : pairs) {
    a.add(n, r);
    b.add(n, r);
  }
  std::string out_a;
  std::string out_b;
  std::string buf;
  size_t off = 0;
  size_t k = 0;
  while (off < text.size()) {
    const size_t step = cuts.empty() ? text.size() : 1 + cuts[k++ % cuts.size()] * 37 % 4099;
    const size_t n = std::min(step, text.size() - off);
    buf.append(text.substr(off, n));
    out_b += b.feed(text.substr(off, n));
    off += n;
    const bool final = off == text.size();
    const size_t keep = a.scrub_in_place(buf, final);
    if (keep > buf.size() || (final && keep != buf.size())) {
      std::abort();
    }
    out_a.append(buf, 0, keep);
    buf.erase(0, keep);
  }
  out_b += b.finish();
  for (const std::string* out : {&out_a, &out_b}) {
    if (out->size() != text.size()) {
      std::abort();
    }
    for (const auto& [n, r] : pairs) {
      if (out->find(n) != std::string::npos) {
        std::abort();  // a secret reached the box
      }
    }
  }
}

}  // namespace

// Layout: [count 1-4] then per needle [offset hi, offset lo, length 1-96], then a cut table of
// 8 bytes, then the text. Needles are taken from the text (mapped off the replacement bytes).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const size_t count = 1 + data[0] % 4;
  const size_t header = 1 + count * 3 + 8;
  if (size <= header) {
    return 0;
  }
  std::string text;
  text.reserve(size - header);
  for (size_t i = header; i < size; ++i) {
    text += needle_byte(data[i]);
  }
  std::vector<std::pair<std::string, std::string>> pairs;
  for (size_t i = 0; i < count; ++i) {
    const uint8_t* d = data + 1 + i * 3;
    const size_t len = 1 + d[2] % 96;
    if (len > text.size()) {
      continue;
    }
    const size_t at = ((size_t{d[0]} << 8) | d[1]) % (text.size() - len + 1);
    std::string needle = text.substr(at, len);
    std::string repl(len, '\xF0');
    for (size_t j = 0; j < len; ++j) {
      repl[j] = static_cast<char>(0xF0 + (j + i) % 16);
    }
    if (std::none_of(pairs.begin(), pairs.end(),
                     [&](const auto& p) { return p.first == needle; })) {
      pairs.emplace_back(std::move(needle), std::move(repl));
    }
  }
  if (pairs.empty()) {
    return 0;
  }
  const std::span<const uint8_t> cuts(data + 1 + count * 3, 8);
  check(text, pairs, cuts, 0);
  check(text, pairs, cuts, Scrubber::kAnchoredFrom);
  check(text, pairs, {}, 0);  // one read
  return 0;
}
