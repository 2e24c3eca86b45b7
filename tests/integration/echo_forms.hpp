// Every form an upstream may echo a secret in (as data/hostile.py makes them for HTTP/1.1), and
// the decoder the oracle reads a box's output with: the h2 hostile upstream
// (h2_hostile_upstream.cpp) encodes with the first, proxy_h2_echo_test.cpp judges with the second.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agentbox::it {

inline std::string_view base64_alphabet(bool url) {
  return url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

inline std::string base64(std::string_view in, bool url, bool pad) {
  const std::string_view a = base64_alphabet(url);
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    const size_t n = std::min<size_t>(3, in.size() - i);
    if (n > 1) {
      v |= static_cast<uint8_t>(in[i + 1]) << 8;
    }
    if (n > 2) {
      v |= static_cast<uint8_t>(in[i + 2]);
    }
    for (size_t k = 0; k < 4; ++k) {
      if (k <= n) {
        out += a[(v >> (18 - 6 * k)) & 63];
      } else if (pad) {
        out += '=';
      }
    }
  }
  return out;
}

// NAME -> the secret in that form. Base64 of the secret preceded by k = 0..5 bytes inside the
// encoded run (so every alignment, twice) and followed by k % 3, padded and not, both alphabets.
inline std::vector<std::pair<std::string, std::string>> echo_forms(const std::string& t) {
  static const std::string kPrefix("\x00\xff\x10\x7e\x3c\x81", 6);
  std::vector<std::pair<std::string, std::string>> out = {{"raw", t}};
  for (const bool url : {false, true}) {
    for (size_t k = 0; k < 6; ++k) {
      for (const bool pad : {true, false}) {
        const std::string run = kPrefix.substr(0, k) + t + kPrefix.substr(0, k % 3);
        out.emplace_back(std::string("b64-") + (url ? "url-" : "std-") + std::to_string(k) +
                             (pad ? "-pad" : "-nopad"),
                         base64(run, url, pad));
      }
    }
  }
  out.emplace_back("basic", base64("x-access-token:" + t, false, true));
  std::string hex, hex_upper, pct_upper, pct_lower, pct_mixed, json, json_upper, json_mixed;
  for (size_t i = 0; i < t.size(); ++i) {
    const auto b = static_cast<uint8_t>(t[i]);
    const auto hx = [b](bool upper) {
      const char* d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
      return std::string{d[b >> 4], d[b & 15]};
    };
    hex += hx(false);
    hex_upper += hx(true);
    pct_upper += "%" + hx(true);
    pct_lower += "%" + hx(false);
    pct_mixed += i % 3 != 0 ? "%" + hx(true) : std::string(1, t[i]);
    json += "\\u00" + hx(false);
    json_upper += "\\u00" + hx(true);
    json_mixed += i % 2 != 0 ? "\\u00" + hx(false) : std::string(1, t[i]);
  }
  out.insert(out.end(), {{"hex-lower", hex},
                         {"hex-upper", hex_upper},
                         {"pct-all-upper", pct_upper},
                         {"pct-all-lower", pct_lower},
                         {"pct-mixed", pct_mixed},
                         {"json-u-all", json},
                         {"json-u-upper", json_upper},
                         {"json-u-mixed", json_mixed}});
  return out;
}

// `text` read every way an echo may be encoded: as it is, %XX and \uXXXX unescaped, and every
// run of hex digits and of either base64 alphabet decoded from each of its first 2 (hex) or 4
// (base64) offsets. A secret in any form of echo_forms is in one of these, whole.
inline std::vector<std::string> decodings(std::string_view text) {
  const auto hexval = [](char ch) {
    return std::isdigit(static_cast<unsigned char>(ch)) != 0
               ? ch - '0'
               : std::tolower(static_cast<unsigned char>(ch)) - 'a' + 10;
  };
  const auto is_hex = [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)) != 0; };
  std::vector<std::string> out = {std::string(text)};
  std::string pct, json;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && is_hex(text[i + 1]) && is_hex(text[i + 2])) {
      pct += static_cast<char>(hexval(text[i + 1]) * 16 + hexval(text[i + 2]));
      i += 2;
    } else {
      pct += text[i];
    }
  }
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.substr(i, 4) == "\\u00" && i + 5 < text.size() && is_hex(text[i + 4]) &&
        is_hex(text[i + 5])) {
      json += static_cast<char>(hexval(text[i + 4]) * 16 + hexval(text[i + 5]));
      i += 5;
    } else {
      json += text[i];
    }
  }
  out.push_back(std::move(pct));
  out.push_back(std::move(json));
  // Runs of one alphabet, decoded from each offset.
  const auto runs = [&](auto in_alphabet, auto decode_from) {
    for (size_t i = 0; i < text.size();) {
      size_t j = i;
      while (j < text.size() && in_alphabet(text[j])) {
        ++j;
      }
      if (j - i >= 8) {
        decode_from(text.substr(i, j - i));
      }
      i = j + 1;
    }
  };
  runs(is_hex, [&](std::string_view run) {
    for (size_t o = 0; o < 2; ++o) {
      std::string d;
      for (size_t i = o; i + 1 < run.size(); i += 2) {
        d += static_cast<char>(hexval(run[i]) * 16 + hexval(run[i + 1]));
      }
      out.push_back(std::move(d));
    }
  });
  for (const bool url : {false, true}) {
    const std::string_view a = base64_alphabet(url);
    const auto in = [a](char ch) { return a.find(ch) != std::string_view::npos; };
    runs(in, [&](std::string_view run) {
      for (size_t o = 0; o < 4; ++o) {
        std::string d;
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = o; i < run.size(); ++i) {
          acc = (acc << 6) | static_cast<uint32_t>(a.find(run[i]));
          bits += 6;
          if (bits >= 8) {
            bits -= 8;
            d += static_cast<char>((acc >> bits) & 0xff);
          }
        }
        out.push_back(std::move(d));
      }
    });
  }
  return out;
}

// Whether any decoding of `text` holds `secret`'s middle (all but its first and last byte: an
// unaligned base64 form shares those with its neighbours' bits).
inline bool holds_secret(std::string_view text, const std::string& secret) {
  const std::string middle = secret.substr(1, secret.size() - 2);
  for (const auto& d : decodings(text)) {
    if (d.find(middle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace agentbox::it
