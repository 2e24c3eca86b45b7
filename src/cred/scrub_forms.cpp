// The forms of a secret the scrubber knows (scrubber.hpp): fixed needles for raw, base64 at
// every alignment and hex, and a decoding matcher for percent and JSON escapes in any mix.
//
// Escaped text is matched on its decoded bytes: a span of units (a raw byte, %XX, \u00XX, or
// one of \/ \" \\) whose bytes are the secret. A span holds at least one escape (an all-raw
// span is the raw needle's), so only the bytes just before each '%' or '\' can start one: the
// scan finds those characters 64 bytes at a time (AVX2; SSE2 without it) and tries the
// starts in the window before each once, most failing at the first unit. Replacement writes the
// placeholder's byte into each unit in the same kind and hex case, so lengths hold.
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "agentbox/cred/placeholder.hpp"
#include "agentbox/cred/scrubber.hpp"
#include "agentbox/http/text.hpp"

namespace agentbox::cred {

namespace {

constexpr size_t kMaxUnit = 6;  // \u00XX

enum class UnitKind { kRaw, kPercent, kJsonU, kJsonShort };

struct Unit {
  uint8_t len = 0;  // 0: an escape cut off by the end of the buffer
  uint8_t byte = 0;
  UnitKind kind = UnitKind::kRaw;
};

using http::detail::hex_value;

bool all_hex(const char* p, size_t n) {
  return std::all_of(p, p + n, [](char c) { return hex_value(c) >= 0; });
}

Unit decode_unit(const char* p, size_t avail) {
  const Unit raw{1, static_cast<uint8_t>(p[0]), UnitKind::kRaw};
  if (p[0] == '%') {
    if (avail < 3) {
      return all_hex(p + 1, avail - 1) ? Unit{} : raw;
    }
    if (!all_hex(p + 1, 2)) {
      return raw;
    }
    return {3, static_cast<uint8_t>(hex_value(p[1]) * 16 + hex_value(p[2])), UnitKind::kPercent};
  }
  if (p[0] != '\\') {
    return raw;
  }
  if (avail < 2) {
    return Unit{};
  }
  if (p[1] == '/' || p[1] == '"' || p[1] == '\\') {
    return {2, static_cast<uint8_t>(p[1]), UnitKind::kJsonShort};
  }
  if (p[1] != 'u') {
    return raw;
  }
  if (avail < 6) {
    return all_hex(p + 2, avail - 2) ? Unit{} : raw;
  }
  if (!all_hex(p + 2, 4) || p[2] != '0' || p[3] != '0') {
    return raw;  // beyond U+00FF: not one byte of a secret
  }
  return {6, static_cast<uint8_t>(hex_value(p[4]) * 16 + hex_value(p[5])), UnitKind::kJsonU};
}

// An escape cut off at the end of the buffer that may still complete to `want`.
bool may_complete(const char* p, size_t avail, uint8_t want) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  const char hi = kHex[want >> 4];
  if (p[0] == '%') {
    return avail < 2 || hex_value(p[1]) == hex_value(hi);
  }
  // "\", "\u", "\u0", "\u00", "\u00X"
  const std::string_view want_u = "u00";
  for (size_t i = 1; i < avail && i < 4; ++i) {
    if (p[i] != want_u[i - 1]) {
      return false;
    }
  }
  return avail < 5 || hex_value(p[4]) == hex_value(hi);
}

enum class Match { kNo, kYes, kCut };

// One unit of a span being matched: where it ends, the unit before it (kNone: the first).
struct Node {
  static constexpr uint32_t kNone = UINT32_MAX;
  uint32_t next = 0;
  uint32_t parent = kNone;
  uint8_t len = 0;
  UnitKind kind = UnitKind::kRaw;
};

// The readings of the unit at `pos` that give `want`: the byte itself, and the escape it starts
// ("%25" is a '%' either way, and decides where the next unit starts). `cut`: an escape cut off
// by the end of the buffer may still complete to `want`.
template <class Add>
void readings(std::string_view buf, size_t pos, uint8_t want, bool& cut, Add add) {
  if (pos >= buf.size()) {
    cut = true;
    return;
  }
  const char c = buf[pos];
  if (static_cast<uint8_t>(c) == want) {
    add(1, UnitKind::kRaw);
  }
  if (c == '%' || c == '\\') {
    const Unit u = decode_unit(buf.data() + pos, buf.size() - pos);
    if (u.len == 0) {
      cut = cut || may_complete(buf.data() + pos, buf.size() - pos, want);
    } else if (u.len > 1 && u.byte == want) {
      add(u.len, u.kind);
    }
  }
}

// Whether the units from `s` decode to `secret`, reading each '%' or '\' both as itself and as
// an escape (a breadth-first walk; the layers stay one node wide but where the two readings
// both fit). On kYes the span's last unit is nodes[last].
Match match_at(std::string_view buf, size_t s, std::string_view secret, std::vector<Node>& nodes,
               size_t& last) {
  nodes.clear();
  bool cut = false;
  size_t layer_begin = 0;
  size_t layer_end = 0;
  for (size_t i = 0; i < secret.size(); ++i) {
    const size_t begin = nodes.size();
    const auto want = static_cast<uint8_t>(secret[i]);
    auto expand = [&](size_t pos, uint32_t parent) {
      readings(buf, pos, want, cut, [&](uint8_t len, UnitKind kind) {
        const auto next = static_cast<uint32_t>(pos + len);
        for (size_t j = begin; j < nodes.size(); ++j) {
          if (nodes[j].next == next) {
            return;  // another reading got here: either will do
          }
        }
        nodes.push_back(Node{next, parent, len, kind});
      });
    };
    if (i == 0) {
      expand(s, Node::kNone);
    } else {
      for (size_t j = layer_begin; j < layer_end; ++j) {
        expand(nodes[j].next, static_cast<uint32_t>(j));
      }
    }
    if (nodes.size() == begin) {
      return cut ? Match::kCut : Match::kNo;
    }
    layer_begin = begin;
    layer_end = nodes.size();
  }
  last = layer_begin;
  return Match::kYes;
}

bool lower_hex_at(const char* p, size_t n) {
  return std::any_of(p, p + n, [](char c) { return c >= 'a' && c <= 'f'; });
}

void put_hex(char* p, uint8_t b, bool lower) {
  const char* digits = lower ? "0123456789abcdef" : "0123456789ABCDEF";
  p[0] = digits[b >> 4];
  p[1] = digits[b & 15];
}

// match_at's walk, kept between calls (no allocation per candidate start; one event loop per
// thread).
std::vector<Node>& scratch_nodes() {
  thread_local std::vector<Node> nodes;
  return nodes;
}

// Rewrites the span matched from `s` (ending with nodes[last]) unit by unit with `repl`'s bytes,
// each in its unit's kind and hex case.
void replace_units(std::span<char> buf, size_t s, std::string_view repl,
                   const std::vector<Node>& nodes, size_t last) {
  auto start = [&](const Node& n) {
    return buf.data() + (n.parent == Node::kNone ? s : nodes[n.parent].next);
  };
  // One hex case for the span: an escape of a byte without letters ("%30") says nothing, so
  // the span's lowercase letters decide (an encoder uses one case throughout).
  bool lower = false;
  for (auto at = static_cast<uint32_t>(last); at != Node::kNone; at = nodes[at].parent) {
    const Node& n = nodes[at];
    lower = lower || (n.kind != UnitKind::kRaw && lower_hex_at(start(n) + 1, n.len - 1));
  }
  auto at = static_cast<uint32_t>(last);
  for (size_t i = repl.size(); i-- > 0;) {
    const Node& n = nodes[at];
    char* p = start(n);
    const char r = repl[i];
    const auto b = static_cast<uint8_t>(r);
    switch (n.kind) {
      case UnitKind::kRaw:
        p[0] = r;
        break;
      case UnitKind::kPercent:
        put_hex(p + 1, b, lower);
        break;
      case UnitKind::kJsonU:
        put_hex(p + 4, b, lower);
        break;
      case UnitKind::kJsonShort:
        // Two characters can only spell / " or \: any other replacement byte leaves a fixed
        // "\/" (the secret's own byte never stays: which of the three it was is not told).
        p[1] = r == '"' || r == '\\' ? r : '/';
        break;
    }
    at = n.parent;
  }
}

bool in_set(const std::array<uint64_t, 4>& set, uint8_t b) {
  return (set[b / 64] >> (b % 64) & 1) != 0;
}

// An escape at `pos` whose byte some secret has: where a span can be anchored.
inline void consider(const char* p, size_t n, size_t pos, const std::array<uint64_t, 4>& set,
                     std::vector<uint32_t>& out) {
  // Most '%' and '\' bytes in a body are not escapes: one look at the next byte says so.
  if (pos + 1 >= n) {
    return;  // cut off: escaped_hold looks at the end of the buffer itself
  }
  const char next = p[pos + 1];
  const bool plausible = p[pos] == '%' ? hex_value(next) >= 0
                                       : next == 'u' || next == '/' || next == '"' || next == '\\';
  if (!plausible) {
    return;
  }
  const Unit u = decode_unit(p + pos, n - pos);
  if (u.len > 1 && in_set(set, u.byte)) {
    out.push_back(static_cast<uint32_t>(pos));
  }
}

void collect_scalar(const char* p, size_t from, size_t n, const std::array<uint64_t, 4>& set,
                    std::vector<uint32_t>& out) {
  for (size_t i = from; i < n; ++i) {
    if (p[i] == '%' || p[i] == '\\') {
      consider(p, n, i, set, out);
    }
  }
}

#if defined(__x86_64__)
// 64 bytes per step: one bit per '%' or '\', visited lowest first. (A filter for plausible
// escapes in the vector code, "%" + two hex digits or "\" + u / " \, cost more than the
// mispredicted branches it saves on random bytes: 140 against 110 ms per GiB here.)
__attribute__((target("avx2"))) void collect_avx2(const char* p, size_t n,
                                                  const std::array<uint64_t, 4>& set,
                                                  std::vector<uint32_t>& out) {
  const __m256i pct = _mm256_set1_epi8('%');
  const __m256i bs = _mm256_set1_epi8('\\');
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32));
    const auto ma = static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(a, pct), _mm256_cmpeq_epi8(a, bs))));
    const auto mb = static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(b, pct), _mm256_cmpeq_epi8(b, bs))));
    for (uint64_t m = ma | uint64_t{mb} << 32; m != 0; m &= m - 1) {
      consider(p, n, i + static_cast<size_t>(__builtin_ctzll(m)), set, out);
    }
  }
  collect_scalar(p, i, n, set, out);
}

void collect_sse2(const char* p, size_t n, const std::array<uint64_t, 4>& set,
                  std::vector<uint32_t>& out) {
  const __m128i pct = _mm_set1_epi8('%');
  const __m128i bs = _mm_set1_epi8('\\');
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    auto m = static_cast<uint32_t>(
        _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(a, pct), _mm_cmpeq_epi8(a, bs))));
    for (; m != 0; m &= m - 1) {
      consider(p, n, i + static_cast<size_t>(__builtin_ctz(m)), set, out);
    }
  }
  collect_scalar(p, i, n, set, out);
}
#endif

// The escapes of `p` that may anchor a span, in order.
void collect_escapes(const char* p, size_t n, const std::array<uint64_t, 4>& set,
                     std::vector<uint32_t>& out) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2") != 0;
  if (avx2) {
    collect_avx2(p, n, set, out);
  } else {
    collect_sse2(p, n, set, out);
  }
#else
  collect_scalar(p, 0, n, set, out);
#endif
}

}  // namespace

void Scrubber::find_escapes(std::string_view buf) {
  escapes_.clear();
  if (!escaped_.empty()) {
    collect_escapes(buf.data(), buf.size(), escaped_bytes_, escapes_);
  }
}

void Scrubber::add_escaped(std::string secret, std::string replacement) {
  if (secret.empty() || secret.size() != replacement.size() || secret == replacement) {
    return;
  }
  for (const auto& e : escaped_) {
    if (e.first == secret) {
      return;
    }
  }
  for (char c : secret) {
    const auto b = static_cast<uint8_t>(c);
    escaped_bytes_[b / 64] |= uint64_t{1} << (b % 64);
  }
  escaped_span_ = std::max(escaped_span_, secret.size() * kMaxUnit);
  escaped_.emplace_back(std::move(secret), std::move(replacement));
}

size_t Scrubber::escaped_hold(std::string_view buf) const {
  if (escaped_.empty() || buf.empty()) {
    return 0;
  }
  // A held tail that may become a secret holds an escape of one of its bytes (escapes_, from
  // collect_escapes on this buffer) or ends in a cut-off one; without either it is raw, and a
  // prefix of the raw needle is held by hold_length.
  const size_t from = buf.size() - std::min(buf.size(), escaped_span_ - 1);
  size_t first = buf.size();
  auto it = std::lower_bound(escapes_.begin(), escapes_.end(), from);
  if (it != escapes_.end()) {
    first = *it;
  }
  for (size_t pos = buf.size() - std::min<size_t>(buf.size(), kMaxUnit - 1);
       pos < buf.size() && first == buf.size(); ++pos) {
    if ((buf[pos] == '%' || buf[pos] == '\\') &&
        decode_unit(buf.data() + pos, buf.size() - pos).len == 0) {
      first = pos;
    }
  }
  if (first == buf.size()) {
    return 0;
  }
  for (size_t s = std::max(from, first + 1 > escaped_span_ ? first + 1 - escaped_span_ : 0);
       s < buf.size(); ++s) {
    for (const auto& [secret, repl] : escaped_) {
      size_t last = 0;
      if (match_at(buf, s, secret, scratch_nodes(), last) == Match::kCut) {
        return buf.size() - s;  // the earliest start: the longest hold
      }
    }
  }
  return 0;
}

void Scrubber::scan_escaped(std::span<char> buf, size_t limit) {
  const std::string_view view(buf.data(), buf.size());
  size_t tried = 0;  // every start before this one was tried (or lies inside a replaced span)
  for (const size_t e : escapes_) {
    if (e < tried) {
      continue;
    }
    size_t s = std::max(tried, e + 1 > escaped_span_ ? e + 1 - escaped_span_ : size_t{0});
    for (bool hit = false; !hit && s <= e && s < limit; ++s) {
      for (const auto& [secret, repl] : escaped_) {
        size_t last = 0;
        auto& nodes = scratch_nodes();
        if (match_at(view, s, secret, nodes, last) == Match::kYes) {
          replace_units(buf, s, repl, nodes, last);
          ++replaced_;
          tried = nodes[last].next;
          hit = true;
          break;
        }
      }
    }
    tried = std::max(tried, std::min(e + 1, limit));
    if (tried >= limit) {
      return;
    }
  }
}

void add_secret_forms(Scrubber& s, std::string_view secret, std::string_view placeholder) {
  s.add(std::string(secret), std::string(placeholder));
  for (const bool url : {false, true}) {
    for (size_t a = 0; a < 3; ++a) {
      // The secret after `a` bytes of a larger text: the first character its bytes alone
      // determine is the 3rd (a = 1) or 4th (a = 2) of the encoding; at the end, the
      // characters of the last partial group but its last one.
      const std::string pre(a, '\0');
      const size_t total = a + secret.size();
      const size_t start = a == 0 ? 0 : a + 1;
      const size_t end = total / 3 * 4 + total % 3;
      if (end < start + kMinForm) {
        continue;
      }
      const std::string es = base64_encode(pre + std::string(secret), url);
      const std::string ep = base64_encode(pre + std::string(placeholder), url);
      s.add(es.substr(start, end - start), ep.substr(start, end - start));
      if (a == 0 && total % 3 != 0 && total / 3 * 4 >= kMinForm) {
        // Its whole groups too: an upstream that pauses right after them (longer than the
        // scrubber's hold) must not get them out before the last characters arrive.
        s.add(es.substr(0, total / 3 * 4), ep.substr(0, total / 3 * 4));
      }
    }
  }
  for (const bool lower : {true, false}) {
    std::string hs(secret.size() * 2, '0');
    std::string hp(secret.size() * 2, '0');
    for (size_t i = 0; i < secret.size(); ++i) {
      put_hex(hs.data() + 2 * i, static_cast<uint8_t>(secret[i]), lower);
      put_hex(hp.data() + 2 * i, static_cast<uint8_t>(placeholder[i]), lower);
    }
    s.add(std::move(hs), std::move(hp));
  }
  s.add_escaped(std::string(secret), std::string(placeholder));
}

}  // namespace agentbox::cred
