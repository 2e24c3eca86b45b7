// Fuzz target: the terminal filter (what the box prints, on its way to your terminal) on
// arbitrary bytes and read boundaries. Invariants: the output is a subsequence of the input
// (only whole sequences are removed); every split of the input gives the output of one read;
// and an independent, simpler reading of the output as a terminal would parse it (every ESC or
// C1 introducer, raw or UTF-8 encoded) finds no control string but allowed OSCs, no OSC 52 read
// (and no OSC 52 at all unless allowed), no title report, DECRQCRA or media copy.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "agentbox/app/terminal_filter.hpp"

namespace {

using agentbox::app::TerminalFilter;
using agentbox::app::TerminalFilterOptions;

[[noreturn]] void fail() {
  std::abort();
}

bool is_subsequence(std::string_view out, std::string_view in) {
  size_t j = 0;
  for (char c : out) {
    while (j < in.size() && in[j] != c) {
      ++j;
    }
    if (j == in.size()) {
      return false;
    }
    ++j;
  }
  return true;
}

// How many bytes at `i` a UTF-8 decoder takes as one character or the start of one: a lead and
// the continuation bytes it admits (0 when `i` is not a lead followed by one). A byte in such a
// prefix is never a C1 control, even when the character is cut short later.
size_t utf8_len(std::string_view s, size_t i) {
  const auto b = static_cast<uint8_t>(s[i]);
  const size_t n = b >= 0xC2 && b <= 0xDF   ? 2
                   : b >= 0xE0 && b <= 0xEF ? 3
                   : b >= 0xF0 && b <= 0xF4 ? 4
                                            : 0;
  if (n == 0 || i + 1 >= s.size()) {
    return 0;
  }
  const auto b1 = static_cast<uint8_t>(s[i + 1]);
  const uint8_t lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
  const uint8_t hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
  if (b1 < lo || b1 > hi) {
    return 0;
  }
  size_t k = 2;
  while (k < n && i + k < s.size() && static_cast<uint8_t>(s[i + k]) >= 0x80 &&
         static_cast<uint8_t>(s[i + k]) <= 0xBF) {
    ++k;
  }
  return k;
}

// The introducer a C1 control is ('[' CSI, ']' OSC, 'P' DCS, '_' APC, '^' PM, 'X' SOS), or 0.
char c1_kind(uint8_t c1) {
  switch (c1) {
    case 0x9B:
      return '[';
    case 0x9D:
      return ']';
    case 0x90:
      return 'P';
    case 0x9F:
      return '_';
    case 0x9E:
      return '^';
    case 0x98:
      return 'X';
    default:
      return 0;
  }
}

// The OSC number right after an introducer ending at `i` (-1 when not a number).
long osc_number(std::string_view s, size_t i) {
  long n = 0;
  size_t digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9' && n < 1000000) {
    n = n * 10 + (s[i++] - '0');
    ++digits;
  }
  return digits > 0 ? n : -1;
}

// Checks what follows an introducer ('[' CSI, ']' OSC, 'P' DCS, ...) at `i`.
void check_sequence(std::string_view s, char kind, size_t i, const TerminalFilterOptions& o,
                    bool eight_bit) {
  if (kind == 'P' || kind == '_' || kind == '^' || kind == 'X') {
    fail();  // no DCS, APC, PM or SOS ever reaches the terminal
  }
  if (kind == ']') {
    if (eight_bit) {
      fail();
    }
    const long n = osc_number(s, i);
    const bool default_ok = n >= 0 && (n <= 2 || n == 4 || n == 5 || (n >= 10 && n <= 19) ||
                                       n == 104 || n == 105 || (n >= 110 && n <= 119));
    if (!default_ok && (n < 0 || o.osc.count(static_cast<uint32_t>(n)) == 0)) {
      fail();
    }
    if (n == 52) {  // allowed: never a read
      size_t a = s.find(';', i);
      size_t b = a == std::string_view::npos ? a : s.find(';', a + 1);
      if (b == std::string_view::npos || (b + 1 < s.size() && s[b + 1] == '?')) {
        fail();
      }
    }
    return;
  }
  if (kind == '[') {  // CSI: parameters, intermediates, final (C0 in between skipped)
    long first = 0;
    bool in_first = true;
    bool priv = false;
    bool star = false;
    bool inter = false;
    for (; i < s.size(); ++i) {
      const auto c = static_cast<uint8_t>(s[i]);
      if (c < 0x20 || c == 0x7F) {
        continue;
      }
      if (c >= 0x40 && c <= 0x7E) {
        if ((c == 't' && !priv && !inter && (first == 20 || first == 21)) || (c == 'y' && star) ||
            (c == 'i' && !inter)) {
          fail();
        }
        return;
      }
      if (c >= 0x80) {
        return;
      }
      if (c >= '<' && c <= '?' && first == 0 && in_first) {
        priv = true;
      } else if (c >= '0' && c <= '9' && in_first) {
        first = first > 100000 ? first : first * 10 + (c - '0');
      } else if (c == ';' || c == ':') {
        in_first = false;
      } else if (c < 0x30) {
        inter = true;
        star = star || c == '*';
      }
    }
  }
}

void check_output(std::string_view s, const TerminalFilterOptions& o) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b == 0x1B) {
      size_t j = i + 1;
      while (j < s.size() && static_cast<uint8_t>(s[j]) < 0x20 && s[j] != 0x1B) {
        ++j;  // C0 controls are executed in the middle of a sequence
      }
      if (j < s.size()) {
        check_sequence(s, s[j], j + 1, o, false);
      }
      continue;
    }
    if (size_t n = utf8_len(s, i); n > 0) {
      if (b == 0xC2 && static_cast<uint8_t>(s[i + 1]) <= 0x9F) {
        if (char kind = c1_kind(static_cast<uint8_t>(s[i + 1])); kind != 0) {
          check_sequence(s, kind, i + 2, o, true);
        }
      }
      i += n - 1;
      continue;
    }
    if (char kind = c1_kind(b); kind != 0) {
      check_sequence(s, kind, i + 1, o, true);
    }
  }
}

std::string filtered(std::string_view text, const TerminalFilterOptions& o,
                     std::span<const uint8_t> cuts) {
  TerminalFilter f(o);
  std::string out;
  size_t off = 0;
  size_t k = 0;
  while (off < text.size()) {
    const size_t step = cuts.empty() ? text.size() : 1 + cuts[k++ % cuts.size()] % 97;
    const size_t n = std::min(step, text.size() - off);
    f.feed(text.substr(off, n), out);
    off += n;
  }
  f.finish();
  return out;
}

}  // namespace

// Layout: [options: bit 0 allows osc52, bit 1 osc8] [8 bytes of read sizes] then the output.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9) {
    return 0;
  }
  TerminalFilterOptions o;
  if ((data[0] & 1) != 0) {
    o.osc.insert(52);
  }
  if ((data[0] & 2) != 0) {
    o.osc.insert(8);
  }
  const std::span<const uint8_t> cuts(data + 1, 8);
  const std::string_view text(reinterpret_cast<const char*>(data + 9), size - 9);
  const std::string whole = filtered(text, o, {});
  if (!is_subsequence(whole, text)) {
    fail();
  }
  check_output(whole, o);
  if (filtered(text, o, cuts) != whole) {
    fail();  // a split across reads changed the result
  }
  const uint8_t ones[1] = {0};
  if (text.size() <= 4096 && filtered(text, o, std::span<const uint8_t>(ones, 1)) != whole) {
    fail();  // byte by byte
  }
  return 0;
}
