// Every form of a secret the scrubber knows (add_secret_forms), at every alignment and every
// read boundary: base64 and base64url (padded or not) inside a larger document, hex in both
// cases, percent and JSON escapes (every byte, or any mix). The oracle decodes the output.
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "agentbox/cred/placeholder.hpp"
#include "agentbox/cred/scrubber.hpp"

namespace agentbox::cred {
namespace {

// '/', '+' and '=' make base64url, percent and JSON forms differ from the raw one.
const std::string kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EXAMPLEKEY";
const std::string kPlace = "Qz8dLm2aVbR0/x9TfGhJ+kLmNpQrStUv=WxYz0123";

Scrubber loaded(size_t anchored_from) {
  Scrubber s(anchored_from);
  add_secret_forms(s, kSecret, kPlace);
  return s;
}

// The text in two reads cut at `cut`, held bytes carried to the front (as http_exchange.cpp).
std::string scrub_two_reads(const std::string& text, size_t cut, size_t anchored_from) {
  Scrubber s = loaded(anchored_from);
  std::string out;
  std::string buf = text.substr(0, cut);
  size_t keep = s.scrub_in_place(buf, false);
  out += buf.substr(0, keep);
  buf.erase(0, keep);
  buf += text.substr(cut);
  keep = s.scrub_in_place(buf, true);
  EXPECT_EQ(keep, buf.size());
  return out + buf;
}

// The copying form (chunked bodies, tunnels), one byte per read.
std::string scrub_bytewise(const std::string& text) {
  Scrubber s = loaded(0);
  std::string out;
  for (char c : text) {
    out += s.feed(std::string(1, c));
  }
  return out + s.finish();
}

std::optional<std::string> b64_decode(std::string text) {
  for (char& c : text) {
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  while (text.size() % 4 != 0) {
    text += '=';
  }
  auto d = base64_decode(text);
  if (!d) {
    return std::nullopt;
  }
  return *d;
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string out(n, '\0');
  for (char& c : out) {
    c = static_cast<char>(rng() & 0xff);
  }
  return out;
}

TEST(ScrubForms, Base64AtEveryAlignmentAndCut) {
  std::mt19937 rng(7);
  for (const bool url : {false, true}) {
    for (size_t before = 0; before < 6; ++before) {
      for (size_t after = 0; after < 4; ++after) {
        const std::string pre = random_bytes(rng, before);
        const std::string post = random_bytes(rng, after);
        std::string text = base64_encode(pre + kSecret + post, url);
        if (after % 2 == 1 && !url) {
          while (!text.empty() && text.back() == '=') {
            text.pop_back();  // unpadded standard alphabet too
          }
        }
        for (size_t cut = 0; cut <= text.size(); ++cut) {
          const std::string out =
              cut % 3 == 0 ? scrub_bytewise(text) : scrub_two_reads(text, cut, cut % 2 ? 0 : 2048);
          ASSERT_EQ(out.size(), text.size());
          const auto decoded = b64_decode(out);
          ASSERT_TRUE(decoded) << out;
          // The bytes the secret alone encoded are the placeholder's; its first and last byte
          // keep at most the bits that share a character with the neighbours.
          const std::string mid = decoded->substr(before + 1, kSecret.size() - 2);
          EXPECT_EQ(mid, kPlace.substr(1, kSecret.size() - 2))
              << "url " << url << " before " << before << " after " << after << " cut " << cut;
          EXPECT_EQ(decoded->find(kSecret), std::string::npos);
          EXPECT_EQ(decoded->substr(0, before), pre);
        }
      }
    }
  }
}

TEST(ScrubForms, HexInBothCases) {
  for (const bool lower : {true, false}) {
    std::string hs;
    std::string hp;
    const char* digits = lower ? "0123456789abcdef" : "0123456789ABCDEF";
    for (size_t i = 0; i < kSecret.size(); ++i) {
      hs += {digits[static_cast<uint8_t>(kSecret[i]) >> 4], digits[kSecret[i] & 15]};
      hp += {digits[static_cast<uint8_t>(kPlace[i]) >> 4], digits[kPlace[i] & 15]};
    }
    const std::string text = "sha: 0" + hs + "ff\n";
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      EXPECT_EQ(scrub_two_reads(text, cut, 0), "sha: 0" + hp + "ff\n") << cut;
    }
  }
}

// An encoding of `s` where byte i is escaped when mask(i) says so.
std::string percent(const std::string& s, const std::vector<bool>& esc, bool lower) {
  const char* digits = lower ? "0123456789abcdef" : "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    out += esc[i] ? std::string{'%', digits[b >> 4], digits[b & 15]} : std::string(1, s[i]);
  }
  return out;
}

std::string json_u(const std::string& s, const std::vector<bool>& esc, bool lower) {
  const char* digits = lower ? "0123456789abcdef" : "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (esc[i]) {
      out += std::string("\\u00") + digits[b >> 4] + digits[b & 15];
    } else if (s[i] == '/') {
      out += "\\/";  // PHP's json_encode
    } else {
      out += s[i];
    }
  }
  return out;
}

// Decodes percent and JSON escapes (the oracle, written apart from the scrubber's decoder).
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && isxdigit(s[i + 1]) && isxdigit(s[i + 2])) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else if (s.compare(i, 2, "\\u") == 0 && i + 5 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 2, 4), nullptr, 16));
      i += 5;
    } else if (s[i] == '\\' && i + 1 < s.size()) {
      out += s[++i];
    } else {
      out += s[i];
    }
  }
  return out;
}

TEST(ScrubForms, PercentAndJsonEscapesEveryByteOrMixed) {
  std::mt19937 rng(11);
  std::vector<std::vector<bool>> masks = {std::vector<bool>(kSecret.size(), true)};
  std::vector<bool> reserved;  // what encodeURIComponent escapes
  for (char c : kSecret) {
    reserved.push_back(c == '/' || c == '+' || c == '=');
  }
  masks.push_back(reserved);
  for (int k = 0; k < 6; ++k) {
    std::vector<bool> m;
    for (size_t i = 0; i < kSecret.size(); ++i) {
      m.push_back((rng() & 1) != 0);
    }
    masks.push_back(m);
  }
  for (const auto& m : masks) {
    for (const bool lower : {true, false}) {
      for (const bool json : {false, true}) {
        const std::string enc = json ? json_u(kSecret, m, lower) : percent(kSecret, m, lower);
        const std::string text = "{\"q\":\"a=b%20&k=" + enc + "&z\"}";
        for (size_t cut = 0; cut <= text.size(); cut += 1) {
          const std::string out =
              cut % 7 == 0 ? scrub_bytewise(text) : scrub_two_reads(text, cut, 0);
          ASSERT_EQ(out.size(), text.size());
          const std::string plain = unescape(out);
          EXPECT_EQ(plain.find(kSecret), std::string::npos) << text << " cut " << cut;
          // The placeholder comes out whole where the unit kinds allow it ("\/" stays "\/").
          if (!json) {
            EXPECT_NE(plain.find(kPlace), std::string::npos) << out;
            EXPECT_EQ(out, "{\"q\":\"a=b%20&k=" + percent(kPlace, m, lower) + "&z\"}");
          }
        }
      }
    }
  }
}

TEST(ScrubForms, UnrelatedEscapesAndBase64PassUnchanged) {
  std::mt19937 rng(3);
  std::string text = base64_encode(random_bytes(rng, 3000)) + "%41%2F\\u0041\\/\\\\%";
  text += random_bytes(rng, 5000);
  for (size_t cut : {size_t{0}, size_t{1}, text.size() / 2, text.size() - 1}) {
    EXPECT_EQ(scrub_two_reads(text, cut, 0), text);
    EXPECT_EQ(scrub_two_reads(text, cut, 2048), text);
  }
}

}  // namespace
}  // namespace agentbox::cred
