// AWS Signature Version 4: re-signing a request the box signed with a placeholder secret key.
//
// Theory of operation: the box holds a placeholder AWS secret access key, so the signature its SDK
// computes is worthless upstream. The proxy, which knows both the placeholder and the real key:
//   1. parses `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
//      SignedHeaders=a;b;c, Signature=HEX`;
//   2. rebuilds the canonical request from what it received (method, URI, query, the signed
//      headers, the payload hash) and checks that the placeholder key reproduces the box's
//      signature. SDKs disagree on URI canonicalization (S3 signs the path as sent, the other
//      services the re-encoded, dot-segment-free path), so both forms are tried and the one that
//      verifies is kept. No match means the proxy and the client would disagree about what is
//      signed: the request is refused instead of being signed blindly;
//   3. signs the (possibly rewritten) request again with the real key, same scope and date.
// The proxy never signs anything the box did not sign itself with a key the proxy gave it.
// Not supported (refused, documented): chunk-signed streaming payloads
// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) and presigned URLs (X-Amz-Signature in the query).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/http/http1.hpp"

namespace agentbox::cred::sigv4 {

inline constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

struct Authorization {
  std::string access_key;
  std::string date;  // YYYYMMDD
  std::string region;
  std::string service;
  std::vector<std::string> signed_headers;  // lowercase, in the order given (sorted by SDKs)
  std::string signature;                    // 64 lowercase hex digits
  [[nodiscard]] std::string scope() const;  // DATE/REGION/SERVICE/aws4_request
  [[nodiscard]] std::string render() const;
};

// True when an Authorization value claims SigV4 (starts with the algorithm name).
[[nodiscard]] bool is_sigv4(std::string_view authorization);
[[nodiscard]] base::Result<Authorization> parse_authorization(std::string_view value);

// How the path enters the canonical request.
enum class UriStyle {
  kNormalized,  // dot segments removed, then each byte outside [A-Za-z0-9-._~/] percent-encoded
  kAsSent,      // the path exactly as sent (S3)
};

// Lowercase hex SHA-256 of `data` (the payload hash when x-amz-content-sha256 is absent).
[[nodiscard]] std::string sha256_hex(std::string_view data);

// The canonical request for `req` as signed by `auth` with `payload_hash`. Errors when a signed
// header is missing or the target is not origin-form.
[[nodiscard]] base::Result<std::string> canonical_request(const http::Request& req,
                                                          const Authorization& auth,
                                                          std::string_view payload_hash,
                                                          UriStyle style);

// The signature (lowercase hex) of `canonical` under `secret` for `auth`'s scope at `amz_date`.
[[nodiscard]] std::string signature(std::string_view secret, const Authorization& auth,
                                    std::string_view amz_date, std::string_view canonical);

// The payload hash that was signed: x-amz-content-sha256 when present (refusing chunk-signed
// streaming payloads), else `body_sha256` when the caller hashed the body, else an error.
[[nodiscard]] base::Result<std::string> payload_hash(const http::Request& req,
                                                     std::string_view body_sha256);

struct Verified {
  Authorization auth;
  UriStyle style = UriStyle::kNormalized;
  std::string amz_date;
  std::string payload_hash;
  bool query_as_sent = false;  // the query was signed as sent rather than re-encoded
};

// Step 2: `req` carries a SigV4 signature made with `box_secret`. Errors say why not (for the
// audit log; never containing a key).
[[nodiscard]] base::Result<Verified> verify(const http::Request& req, std::string_view box_secret,
                                            std::string_view body_sha256 = {});

// Step 3: the Authorization value for `req` (after any other rewrites) signed with `secret`
// and `access_key` (empty: keep the box's), in the scope and style `verified` found.
[[nodiscard]] base::Result<std::string> sign(const http::Request& req, const Verified& verified,
                                             std::string_view secret,
                                             std::string_view access_key = {});

}  // namespace agentbox::cred::sigv4
