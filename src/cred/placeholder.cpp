// Placeholder generation (see placeholder.hpp for the rules and why).
#include "agentbox/cred/placeholder.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace agentbox::cred {

namespace {

constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kLower = "abcdefghijklmnopqrstuvwxyz";
constexpr std::string_view kUpper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr std::string_view kBase32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr std::string_view kBase64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

bool is_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Uniform characters from `alphabet` via rejection sampling over a byte stream: RAND_bytes, or
// with a seed HMAC-SHA256(key, label || secret || attempt || block counter), a PRF whose output
// says nothing about the secret to whoever lacks the key.
class Rng {
 public:
  Rng() = default;
  Rng(const PlaceholderSeed& seed, std::string_view secret) : key_(seed.key) {
    msg_ = fmt::format("agentbox placeholder v1\n{}\n{}\n", seed.label.size(), seed.label);
    msg_.append(secret);
    msg_.append(fmt::format("\n{}\n", seed.attempt));
  }

  base::Result<char> pick(std::string_view alphabet) {
    const unsigned n = static_cast<unsigned>(alphabet.size());
    const unsigned limit = 256 - (256 % n);
    for (;;) {
      if (pos_ == buf_.size()) {
        AGENTBOX_TRY(refill());
      }
      const unsigned v = buf_[pos_++];
      if (v < limit) {
        return alphabet[v % n];
      }
    }
  }

 private:
  base::Status refill() {
    pos_ = 0;
    if (key_.empty()) {
      if (RAND_bytes(buf_.data(), static_cast<int>(buf_.size())) != 1) {
        return base::Error::msg("RAND_bytes failed: the CSPRNG is not available");
      }
      return base::ok();
    }
    const std::string block = fmt::format("{}{}", msg_, block_++);
    unsigned len = 0;
    if (HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
             reinterpret_cast<const unsigned char*>(block.data()), block.size(), buf_.data(),
             &len) == nullptr ||
        len != buf_.size()) {
      return base::Error::msg("HMAC-SHA256 failed");
    }
    return base::ok();
  }

  std::array<unsigned char, 32> buf_{};
  size_t pos_ = buf_.size();
  std::string_view key_;
  std::string msg_;
  uint64_t block_ = 0;
};

// Appends `n` random characters of `alphabet`.
base::Status fill(Rng& rng, std::string& out, size_t n, std::string_view alphabet) {
  for (size_t i = 0; i < n; ++i) {
    AGENTBOX_ASSIGN_OR_RETURN(const char c, rng.pick(alphabet));
    out.push_back(c);
  }
  return base::ok();
}

// Every alphanumeric run draws from the union of the classes it uses; other bytes stay put.
base::Status fill_runs(Rng& rng, std::string& out, std::string_view tail) {
  size_t i = 0;
  while (i < tail.size()) {
    if (!is_alnum(tail[i])) {
      out.push_back(tail[i++]);
      continue;
    }
    size_t j = i;
    bool d = false, l = false, u = false;
    for (; j < tail.size() && is_alnum(tail[j]); ++j) {
      d = d || (tail[j] >= '0' && tail[j] <= '9');
      l = l || (tail[j] >= 'a' && tail[j] <= 'z');
      u = u || (tail[j] >= 'A' && tail[j] <= 'Z');
    }
    std::string alphabet;
    if (d) {
      alphabet += kDigits;
    }
    if (l) {
      alphabet += kLower;
    }
    if (u) {
      alphabet += kUpper;
    }
    // A run of hex digits stays hex (e.g. UUID-like keys).
    const auto run = tail.substr(i, j - i);
    if (d && run.find_first_not_of("0123456789abcdef") == std::string_view::npos && l) {
      alphabet = "0123456789abcdef";
    }
    AGENTBOX_TRY(fill(rng, out, j - i, alphabet));
    i = j;
  }
  return base::ok();
}

struct Known {
  std::string_view prefix;
  std::string_view alphabet;  // empty: structure-preserving runs
  std::string_view shape;
};

constexpr std::array<Known, 17> kKnown = {{
    {"github_pat_", "", "github-fine-grained"},
    {"ghp_", "", "github"},
    {"gho_", "", "github"},
    {"ghu_", "", "github"},
    {"ghs_", "", "github"},
    {"ghr_", "", "github"},
    {"sk-ant-", "", "anthropic"},
    {"sk-proj-", "", "openai-project"},
    {"sk-", "", "openai"},
    {"AKIA", kBase32, "aws-access-key-id"},
    {"ASIA", kBase32, "aws-access-key-id"},
    {"xoxb-", "", "slack"},
    {"xoxp-", "", "slack"},
    {"glpat-", "", "gitlab"},
    {"npm_", "", "npm"},
    {"xapp-", "", "slack"},
    {"AIza", kBase64Url, "google-api-key"},  // Gemini and other Google API keys
}};

const Known* known_prefix(std::string_view real) {
  for (const auto& k : kKnown) {
    if (real.size() > k.prefix.size() && real.substr(0, k.prefix.size()) == k.prefix) {
      return &k;
    }
  }
  return nullptr;
}

// Anthropic keys read sk-ant-<kind>NN-<body>: the whole <kind>NN- stays.
size_t anthropic_prefix_length(std::string_view real) {
  const size_t dash = real.find('-', 7);
  return dash != std::string_view::npos && dash < 16 ? dash + 1 : 7;
}

bool is_aws_secret(std::string_view real) {
  return real.size() == 40 && real.find_first_not_of(kBase64) == std::string_view::npos;
}

bool in_alphabet(std::string_view s, std::string_view alphabet) {
  return s.find_first_not_of(alphabet) == std::string_view::npos;
}

// header.payload.signature, each non-empty base64url, header and payload JSON objects.
bool is_jwt(std::string_view real) {
  const size_t d1 = real.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : real.find('.', d1 + 1);
  if (d2 == std::string_view::npos || real.find('.', d2 + 1) != std::string_view::npos || d1 == 0 ||
      d2 == d1 + 1 || d2 + 1 == real.size()) {
    return false;
  }
  const auto header = base64_decode(real.substr(0, d1), true);
  const auto payload = base64_decode(real.substr(d1 + 1, d2 - d1 - 1), true);
  return header && payload && !header->empty() && header->front() == '{' && !payload->empty() &&
         payload->front() == '{' && in_alphabet(real.substr(d2 + 1), kBase64Url);
}

// The numeric "exp" claim of a JWT payload, as its digits (no JSON parser needed for one
// integer field; anything odd just drops the claim).
std::string jwt_exp(std::string_view payload_json) {
  const size_t k = payload_json.find("\"exp\"");
  if (k == std::string_view::npos) {
    return {};
  }
  size_t i = payload_json.find(':', k);
  if (i == std::string_view::npos) {
    return {};
  }
  ++i;
  while (i < payload_json.size() && payload_json[i] == ' ') {
    ++i;
  }
  size_t j = i;
  while (j < payload_json.size() && j - i < 12 && payload_json[j] >= '0' &&
         payload_json[j] <= '9') {
    ++j;
  }
  return std::string(payload_json.substr(i, j - i));
}

base::Result<std::string> jwt_placeholder(Rng& rng, std::string_view real) {
  const size_t d1 = real.find('.');
  const size_t d2 = real.find('.', d1 + 1);
  const auto payload_seg = real.substr(d1 + 1, d2 - d1 - 1);
  const size_t payload_bytes = payload_seg.size() * 3 / 4;  // base64url, unpadded
  const std::string exp = jwt_exp(*base64_decode(payload_seg, true));
  std::string json = exp.empty() ? R"({"agentbox":")" : R"({"exp":)" + exp + R"(,"agentbox":")";
  if (json.size() + 2 > payload_bytes) {
    json = R"({"a":")";
  }
  std::string out(real.substr(0, d1 + 1));
  if (json.size() + 2 <= payload_bytes) {
    AGENTBOX_TRY(fill(rng, json, payload_bytes - json.size() - 2, kBase64Url));
    json += "\"}";
    out += base64_encode(json, true);
  } else {
    AGENTBOX_TRY(fill(rng, out, payload_seg.size(), kBase64Url));  // too short for JSON
  }
  out.push_back('.');
  AGENTBOX_TRY(fill(rng, out, real.size() - d2 - 1, kBase64Url));
  return out;
}

}  // namespace

std::string_view placeholder_shape(std::string_view real) {
  if (const auto* k = known_prefix(real)) {
    return k->shape;
  }
  if (is_jwt(real)) {
    return "jwt";
  }
  if (is_aws_secret(real)) {
    return "aws-secret-key";
  }
  return "generic";
}

base::Result<std::string> make_placeholder(std::string_view real, std::string_view prefix,
                                           const PlaceholderSeed* seed) {
  if (real.size() < kMinSecretLength) {
    return base::Error::msg("secret is " + std::to_string(real.size()) +
                            " characters long; a placeholder needs at least " +
                            std::to_string(kMinSecretLength));
  }
  Rng rng = seed != nullptr && !seed->key.empty() ? Rng(*seed, real) : Rng();
  std::string out;
  if (!prefix.empty()) {
    if (prefix.size() >= real.size()) {
      return base::Error::msg("placeholder prefix is not shorter than the secret");
    }
    out = prefix;
    AGENTBOX_TRY(fill_runs(rng, out, real.substr(prefix.size())));
    return out;
  }
  if (const auto* k = known_prefix(real)) {
    size_t keep = k->prefix.size();
    if (k->shape == "anthropic") {
      keep = anthropic_prefix_length(real);
    }
    out = real.substr(0, keep);
    if (!k->alphabet.empty() && in_alphabet(real.substr(keep), k->alphabet)) {
      AGENTBOX_TRY(fill(rng, out, real.size() - keep, k->alphabet));
    } else {
      AGENTBOX_TRY(fill_runs(rng, out, real.substr(keep)));
    }
    return out;
  }
  if (is_jwt(real)) {
    return jwt_placeholder(rng, real);
  }
  if (is_aws_secret(real)) {
    AGENTBOX_TRY(fill(rng, out, real.size(), kBase64));
    return out;
  }
  AGENTBOX_TRY(fill_runs(rng, out, real));
  return out;
}

std::string base64_encode(std::string_view in, bool url) {
  const std::string_view a = url ? kBase64Url : kBase64;
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) |
                       (static_cast<uint8_t>(in[i + 1]) << 8) | static_cast<uint8_t>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) {
      out.push_back(a[(v >> s) & 63]);
    }
  }
  const size_t rest = in.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << 16;
    if (rest == 2) {
      v |= static_cast<uint32_t>(static_cast<uint8_t>(in[i + 1])) << 8;
    }
    out.push_back(a[(v >> 18) & 63]);
    out.push_back(a[(v >> 12) & 63]);
    if (rest == 2) {
      out.push_back(a[(v >> 6) & 63]);
    }
    if (!url) {
      out.append(3 - rest, '=');
    }
  }
  return out;
}

base::Result<std::string> base64_decode(std::string_view in, bool url) {
  const std::string_view a = url ? kBase64Url : kBase64;
  if (!url) {
    if (in.size() % 4 != 0) {
      return base::Error::msg("base64: length is not a multiple of 4");
    }
    size_t pad = 0;
    while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') {
      ++pad;
    }
    in.remove_suffix(pad);
  }
  if (in.size() % 4 == 1) {
    return base::Error::msg("base64: impossible length");
  }
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const size_t v = a.find(c);
    if (v == std::string_view::npos) {
      return base::Error::msg("base64: byte outside the alphabet");
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return base::Error::msg("base64: non-zero padding bits");  // non-canonical encoding
  }
  return out;
}

}  // namespace agentbox::cred
