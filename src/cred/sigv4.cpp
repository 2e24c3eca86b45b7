// AWS SigV4 verification with the placeholder key and re-signing with the real one.
#include "agentbox/cred/sigv4.hpp"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <utility>

#include "agentbox/http/text.hpp"

namespace agentbox::cred::sigv4 {

using base::Error;
using base::Result;

using http::iequals;
using http::detail::hex_value;

namespace {

constexpr std::string_view kHex = "0123456789abcdef";
constexpr std::string_view kHexUpper = "0123456789ABCDEF";

std::string hex(const unsigned char* p, size_t n) {
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kHex[p[i] >> 4];
    out += kHex[p[i] & 0xf];
  }
  return out;
}

using Mac = std::array<unsigned char, 32>;

Mac hmac(std::string_view key, std::string_view data) {
  Mac out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  return out;
}

std::string_view view(const Mac& m) {
  return {reinterpret_cast<const char*>(m.data()), m.size()};
}

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string encode(std::string_view s, bool keep_slash) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (unreserved(c) || (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHexUpper[c >> 4];
      out += kHexUpper[c & 0xf];
    }
  }
  return out;
}

std::string decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// RFC 3986 5.2.4 plus what AWS also requires: empty segments (consecutive slashes) dropped.
std::string remove_dot_segments(std::string_view path) {
  if (path.empty()) {
    return "/";
  }
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) {
      j = path.size();
    }
    std::string_view seg = path.substr(i, j - i);
    if (seg == "..") {
      if (!out.empty()) {
        out.pop_back();
      }
    } else if (!seg.empty() && seg != ".") {
      out.push_back(seg);
    }
    i = j + 1;
  }
  std::string result = path.front() == '/' ? "/" : "";
  result += fmt::format("{}", fmt::join(out, "/"));
  if (path.back() == '/' && !out.empty()) {
    result += '/';
  }
  return result.empty() ? "/" : result;
}

enum class QueryStyle { kReencoded, kAsSent };

std::string canonical_query(std::string_view query, QueryStyle style) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t i = 0;
  while (i <= query.size() && !query.empty()) {
    size_t j = query.find('&', i);
    if (j == std::string_view::npos) {
      j = query.size();
    }
    std::string_view part = query.substr(i, j - i);
    if (!part.empty()) {
      size_t eq = part.find('=');
      std::string_view k = part.substr(0, eq);
      std::string_view v = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
      if (style == QueryStyle::kReencoded) {
        pairs.emplace_back(encode(decode(k), false), encode(decode(v), false));
      } else {
        pairs.emplace_back(std::string(k), std::string(v));
      }
    }
    i = j + 1;
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [k, v] : pairs) {
    if (!out.empty()) {
      out += '&';
    }
    out += k;
    out += '=';
    out += v;
  }
  return out;
}

// Trimmed, with runs of spaces collapsed to one (the spec's "Trimall").
std::string trimall(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) {
      out += ' ';
      space = false;
    }
    out += c;
  }
  return out;
}

Result<std::string> canonical(const http::Request& req, const Authorization& auth,
                              std::string_view payload, UriStyle uri, QueryStyle query) {
  std::string_view target = req.target;
  if (target.empty() || target.front() != '/') {
    return Error::msg("sigv4: the request target is not a path");
  }
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view qs = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  std::string out = req.method;
  out += '\n';
  out += uri == UriStyle::kAsSent ? std::string(path) : encode(remove_dot_segments(path), true);
  out += '\n';
  out += canonical_query(qs, query);
  out += '\n';
  for (const auto& name : auth.signed_headers) {
    std::string joined;
    bool found = false;
    for (const auto& h : req.headers) {
      if (iequals(h.name, name)) {
        if (found) {
          joined += ',';
        }
        joined += trimall(h.value);
        found = true;
      }
    }
    if (!found) {
      return Error::msg(fmt::format("sigv4: signed header `{}` is missing", name));
    }
    out += name;
    out += ':';
    out += joined;
    out += '\n';
  }
  out += '\n';
  out += fmt::format("{}", fmt::join(auth.signed_headers, ";"));
  out += '\n';
  out += payload;
  return out;
}

bool lower_hex(std::string_view s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

std::string Authorization::scope() const {
  return fmt::format("{}/{}/{}/aws4_request", date, region, service);
}

std::string Authorization::render() const {
  return fmt::format("{} Credential={}/{}, SignedHeaders={}, Signature={}", kAlgorithm, access_key,
                     scope(), fmt::join(signed_headers, ";"), signature);
}

bool is_sigv4(std::string_view authorization) {
  return authorization.substr(0, kAlgorithm.size()) == kAlgorithm;
}

Result<Authorization> parse_authorization(std::string_view value) {
  if (!is_sigv4(value) || value.size() == kAlgorithm.size() || value[kAlgorithm.size()] != ' ') {
    return Error::msg("sigv4: not an AWS4-HMAC-SHA256 authorization");
  }
  std::string_view rest = value.substr(kAlgorithm.size() + 1);
  Authorization a;
  bool cred = false;
  bool signed_headers = false;
  bool sig = false;
  size_t i = 0;
  while (i <= rest.size()) {
    size_t j = rest.find(',', i);
    if (j == std::string_view::npos) {
      j = rest.size();
    }
    std::string_view part = http::detail::trim_ows(rest.substr(i, j - i));
    i = j + 1;
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      return Error::msg("sigv4: malformed authorization (a part without `=`)");
    }
    std::string_view k = part.substr(0, eq);
    std::string_view v = part.substr(eq + 1);
    if (k == "Credential" && !cred) {
      // AKID/DATE/REGION/SERVICE/aws4_request; the key id itself has no '/'.
      std::vector<std::string_view> f;
      size_t a0 = 0;
      while (a0 <= v.size() && f.size() < 6) {
        size_t b = v.find('/', a0);
        if (b == std::string_view::npos) {
          b = v.size();
        }
        f.push_back(v.substr(a0, b - a0));
        a0 = b + 1;
      }
      if (f.size() != 5 || f[4] != "aws4_request" || f[0].empty() || f[1].size() != 8 ||
          f[2].empty() || f[3].empty()) {
        return Error::msg("sigv4: malformed Credential scope");
      }
      a.access_key = f[0];
      a.date = f[1];
      a.region = f[2];
      a.service = f[3];
      cred = true;
    } else if (k == "SignedHeaders" && !signed_headers) {
      size_t a0 = 0;
      while (a0 <= v.size()) {
        size_t b = v.find(';', a0);
        if (b == std::string_view::npos) {
          b = v.size();
        }
        std::string_view h = v.substr(a0, b - a0);
        if (h.empty() || std::any_of(h.begin(), h.end(), [](char c) {
              return (c >= 'A' && c <= 'Z') || c == ' ' || c == ':';
            })) {
          return Error::msg("sigv4: malformed SignedHeaders");
        }
        a.signed_headers.emplace_back(h);
        a0 = b + 1;
      }
      signed_headers = true;
    } else if (k == "Signature" && !sig) {
      if (!lower_hex(v, 64)) {
        return Error::msg("sigv4: malformed Signature");
      }
      a.signature = v;
      sig = true;
    } else {
      return Error::msg("sigv4: malformed authorization (unknown or repeated part)");
    }
    if (j == rest.size()) {
      break;
    }
  }
  if (!cred || !signed_headers || !sig) {
    return Error::msg("sigv4: authorization lacks Credential, SignedHeaders or Signature");
  }
  return a;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return hex(md, len);
}

Result<std::string> canonical_request(const http::Request& req, const Authorization& auth,
                                      std::string_view payload_hash, UriStyle style) {
  return canonical(req, auth, payload_hash, style, QueryStyle::kReencoded);
}

std::string signature(std::string_view secret, const Authorization& auth, std::string_view amz_date,
                      std::string_view canonical) {
  std::string to_sign =
      fmt::format("{}\n{}\n{}\n{}", kAlgorithm, amz_date, auth.scope(), sha256_hex(canonical));
  std::string k = "AWS4";
  k += secret;
  Mac k_date = hmac(k, auth.date);
  OPENSSL_cleanse(k.data(), k.size());
  Mac k_region = hmac(view(k_date), auth.region);
  Mac k_service = hmac(view(k_region), auth.service);
  Mac k_signing = hmac(view(k_service), "aws4_request");
  Mac sig = hmac(view(k_signing), to_sign);
  OPENSSL_cleanse(k_signing.data(), k_signing.size());
  return hex(sig.data(), sig.size());
}

Result<std::string> payload_hash(const http::Request& req, std::string_view body_sha256) {
  if (auto h = req.header("x-amz-content-sha256")) {
    if (h->rfind("STREAMING-AWS4-HMAC-SHA256", 0) == 0 ||
        h->rfind("STREAMING-AWS4-ECDSA", 0) == 0) {
      return Error::msg("sigv4: chunk-signed streaming payloads cannot be re-signed");
    }
    return std::string(*h);
  }
  if (body_sha256.empty()) {
    return Error::msg("sigv4: the payload hash is not in the request and the body was not hashed");
  }
  return std::string(body_sha256);
}

Result<Verified> verify(const http::Request& req, std::string_view box_secret,
                        std::string_view body_sha256) {
  auto value = req.header("authorization");
  if (!value) {
    return Error::msg("sigv4: no Authorization header");
  }
  if (req.count("authorization") != 1) {
    return Error::msg("sigv4: more than one Authorization header");
  }
  AGENTBOX_ASSIGN_OR_RETURN(Authorization auth, parse_authorization(*value));
  if (req.target.find("X-Amz-Signature=") != std::string::npos) {
    return Error::msg("sigv4: presigned URLs cannot be re-signed");
  }
  auto date = req.header("x-amz-date");
  if (!date || date->size() != 16 || date->substr(0, 8) != auth.date) {
    return Error::msg("sigv4: X-Amz-Date is missing or does not match the credential scope");
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string payload, payload_hash(req, body_sha256));
  for (UriStyle uri : {UriStyle::kNormalized, UriStyle::kAsSent}) {
    for (QueryStyle query : {QueryStyle::kReencoded, QueryStyle::kAsSent}) {
      AGENTBOX_ASSIGN_OR_RETURN(std::string cr, canonical(req, auth, payload, uri, query));
      std::string sig = signature(box_secret, auth, *date, cr);
      if (CRYPTO_memcmp(sig.data(), auth.signature.data(), sig.size()) == 0) {
        return Verified{.auth = std::move(auth),
                        .style = uri,
                        .amz_date = std::string(*date),
                        .payload_hash = std::move(payload),
                        .query_as_sent = query == QueryStyle::kAsSent};
      }
    }
  }
  return Error::msg("sigv4: the signature does not verify with the box's key");
}

Result<std::string> sign(const http::Request& req, const Verified& verified,
                         std::string_view secret, std::string_view access_key) {
  AGENTBOX_ASSIGN_OR_RETURN(
      std::string cr,
      canonical(req, verified.auth, verified.payload_hash, verified.style,
                verified.query_as_sent ? QueryStyle::kAsSent : QueryStyle::kReencoded));
  Authorization out = verified.auth;
  if (!access_key.empty()) {
    out.access_key = access_key;
  }
  out.signature = signature(secret, out, verified.amz_date, cr);
  return out.render();
}

}  // namespace agentbox::cred::sigv4
