// Fuzz target: the response scrubber (the last line between a real secret the upstream echoes
// and the box) on arbitrary text, needles and read boundaries. Needles are cut from the input
// itself, so they occur; replacements use bytes no needle contains, so any needle left in the
// output is one the scrubber missed (a replacement can neither form nor hide one). Checked for
// the in-place form (held bytes at the front of the next read, as http_exchange.cpp does) and
// the copying form (feed/finish), both scan modes (anchored on every buffer, and as the proxy
// runs it): the output has the input's length and holds no needle. A first byte of 0xC0 or more
// selects the forms mode (check_forms): a secret echoed raw, in base64 at any alignment, hex,
// or percent/JSON escapes in any mix must not survive add_secret_forms.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/cred/placeholder.hpp"
#include "agentbox/cred/scrubber.hpp"

namespace {

using agentbox::cred::Scrubber;

// Needle bytes: anything but 0xF0-0xFF, which replacements use.
char needle_byte(uint8_t b) {
  return static_cast<char>(b >= 0xF0 ? b - 0x80 : b);
}

// Runs `text` through a (in place, held bytes carried to the front of the next read) and b
// (feed/finish) with reads cut by `cuts`; returns both outputs.
std::pair<std::string, std::string> run(Scrubber& a, Scrubber& b, std::string_view text,
                                        std::span<const uint8_t> cuts) {
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
  return {std::move(out_a), std::move(out_b)};
}

void check(std::string_view text, const std::vector<std::pair<std::string, std::string>>& pairs,
           std::span<const uint8_t> cuts, size_t anchored_from) {
  Scrubber a(anchored_from);
  Scrubber b(anchored_from);
  for (const auto& [n, r] : pairs) {
    a.add(n, r);
    b.add(n, r);
  }
  const auto [out_a, out_b] = run(a, b, text, cuts);
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

constexpr std::string_view kLower = "0123456789abcdef";
constexpr std::string_view kUpper = "0123456789ABCDEF";

// The form a secret is echoed in: the encoded text and where the secret's part of it is.
struct Echo {
  std::string text;  // context + form + context
  size_t at = 0;     // where the form starts in text
  size_t len = 0;    // its length
  // Every byte of the secret is one of / " \ written as a 2-character JSON escape: a same-length
  // replacement can only write one of those three back (docs/PROXY.md, "What the scrubber
  // cannot see"), so the box learns which of them each was not, and no more; an all-'/'
  // secret then reads back as itself. The limit is written down, not counted as a miss.
  bool only_short_escapes = false;
};

// Escapes byte i of `s` as %XX (percent) or \u00XX (json) when bit i of `mask` is set; a JSON
// '/' left raw is written "\/" as PHP does.
std::string escape(std::string_view s, uint64_t mask, bool json, bool lower) {
  const std::string_view d = lower ? kLower : kUpper;
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    if ((mask >> (i % 64) & 1) != 0) {
      out += json ? std::string("\\u00") : std::string("%");
      out += {d[b >> 4], d[b & 15]};
    } else if (json && (s[i] == '/' || s[i] == '"' || s[i] == '\\')) {
      out += {'\\', s[i]};
    } else {
      out += s[i];
    }
  }
  return out;
}

// Decodes what escape() writes, and hex (the oracle: apart from the scrubber's decoder).
std::string unescape(std::string_view s) {
  auto hex = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(s[i + 1]) && std::isxdigit(s[i + 2])) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (s.substr(i, 2) == "\\u" && i + 5 < s.size()) {
      out += static_cast<char>(hex(s[i + 4]) * 16 + hex(s[i + 5]));
      i += 5;
    } else if (s[i] == '\\' && i + 1 < s.size()) {
      out += s[++i];
    } else {
      out += s[i];
    }
  }
  return out;
}

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  return c == '+' || c == '-' ? 62 : c == '/' || c == '_' ? 63 : -1;
}

// Byte j of what base64 text `t` encodes, read from the two characters that carry its bits;
// none when one of them is not in the alphabet. Byte by byte, not the whole region at once: a
// replacement elsewhere in the region (the raw needle "//////////" is also the base64 of 0xFF
// bytes, and is rightly replaced there) must not make the secret's own bytes unreadable.
std::optional<uint8_t> b64_byte(std::string_view t, size_t j) {
  const size_t c = j / 3 * 4 + j % 3;
  if (c + 1 >= t.size()) {
    return std::nullopt;
  }
  const int hi = b64_value(t[c]);
  const int lo = b64_value(t[c + 1]);
  if (hi < 0 || lo < 0) {
    return std::nullopt;
  }
  const size_t k = j % 3;
  return static_cast<uint8_t>(hi << (2 + 2 * k) | lo >> (4 - 2 * k));
}

// Does the secret survive in `out` (the scrubbed echo.text)?
bool survives(const Echo& e, const std::string& out, std::string_view secret, uint8_t form,
              size_t before) {
  const std::string_view region = std::string_view(out).substr(e.at, e.len);
  switch (form % 5) {
    case 0:
      return region == secret;
    case 1:
      // The bytes the secret alone encodes (all but its first and last) all read back.
      for (size_t i = 1; i + 1 < secret.size(); ++i) {
        const auto b = b64_byte(region, before + i);
        if (!b || *b != static_cast<uint8_t>(secret[i])) {
          return false;
        }
      }
      return true;
    case 2: {
      std::string dec;
      for (size_t i = 0; i + 1 < region.size(); i += 2) {
        dec += unescape("%" + std::string(region.substr(i, 2)));
      }
      return dec == secret;
    }
    default:
      return !e.only_short_escapes && unescape(region) == secret;
  }
}

// Forms mode: a printable secret echoed in one form between arbitrary context bytes, every
// form of it loaded with add_secret_forms; it must not survive.
// Layout: [0xC0-0xFF][form][secret length][mask 8][cuts 8][prefix length] then the bytes.
void check_forms(const uint8_t* data, size_t size) {
  constexpr size_t kHead = 20;
  if (size < kHead + 8) {
    return;
  }
  const uint8_t form = data[1];
  uint64_t mask = 0;
  for (size_t i = 0; i < 8; ++i) {
    mask = mask << 8 | data[3 + i];
  }
  const std::span<const uint8_t> cuts(data + 11, 8);
  const std::string_view rest(reinterpret_cast<const char*>(data + kHead), size - kHead);
  const size_t len = std::min<size_t>(8 + data[2] % 57, rest.size());
  std::string secret;
  std::string place;
  for (size_t i = 0; i < len; ++i) {
    const auto c = static_cast<uint8_t>(rest[i]);
    secret += static_cast<char>(33 + c % 94);
    place += static_cast<char>(33 + (c % 94 + 47) % 94);  // differs at every byte
  }
  const std::string_view ctx = rest.substr(len);
  const size_t before = std::min<size_t>(data[19] % 8, ctx.size());
  const std::string_view pre = ctx.substr(0, before);
  const std::string_view post = ctx.substr(before);
  Echo e;
  std::string form_text;
  switch (form % 5) {
    case 0:
      form_text = secret;
      break;
    case 1:
      form_text = agentbox::cred::base64_encode(std::string(pre) + secret + std::string(post),
                                                (form & 8) != 0);
      break;
    case 2:
      for (char c : secret) {
        const std::string_view d = (form & 8) != 0 ? kLower : kUpper;
        form_text += {d[static_cast<uint8_t>(c) >> 4], d[c & 15]};
      }
      break;
    default:
      form_text = escape(secret, mask, form % 5 == 4, (form & 8) != 0);
      break;
  }
  const std::string_view around = form % 5 == 1 ? std::string_view() : post;
  e.text = std::string(form % 5 == 1 ? "" : pre) + form_text + std::string(around);
  e.at = form % 5 == 1 ? 0 : pre.size();
  e.len = form_text.size();
  e.only_short_escapes = form % 5 == 4;
  for (size_t i = 0; i < secret.size(); ++i) {
    const char c = secret[i];
    const bool short_escape = (mask >> (i % 64) & 1) == 0 && (c == '/' || c == '"' || c == '\\');
    e.only_short_escapes = e.only_short_escapes && short_escape;
  }
  for (const size_t anchored_from : {size_t{0}, Scrubber::kAnchoredFrom}) {
    Scrubber a(anchored_from);
    Scrubber b(anchored_from);
    agentbox::cred::add_secret_forms(a, secret, place);
    agentbox::cred::add_secret_forms(b, secret, place);
    const auto [out_a, out_b] = run(a, b, e.text, cuts);
    for (const std::string* out : {&out_a, &out_b}) {
      if (out->size() != e.text.size() || survives(e, *out, secret, form, before)) {
        std::abort();  // a secret form reached the box
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
  if (data[0] >= 0xC0) {
    check_forms(data, size);
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
