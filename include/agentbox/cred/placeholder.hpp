// Placeholders: random stand-ins for real secrets, shaped like them (prefix, length, alphabet).
//
// The box only ever sees placeholders. A placeholder keeps the provider's known prefix and the
// structure of the value (separator characters stay where they are), is exactly as long as the
// real secret (so a swap never changes Content-Length), and is drawn from a CSPRNG (OpenSSL
// RAND_bytes), so one box cannot predict another session's placeholders.
//
// Stable placeholders (a PlaceholderSeed): the same draws come from HMAC-SHA256 under a per-user
// key kept outside every box (0600 in the user's state dir), keyed by the credential's name, the
// secret and an attempt number. The same (credential, secret) then gets the same placeholder in
// every session, so an agent's remembered key approval survives; a rotated secret gets a new one.
// Without the key the output is a PRF's: it reveals nothing about the secret (no hash of the
// secret alone, which a box could test guesses against).
//
// Alphabets: known formats use the format's alphabet (ghp_ + base62, AKIA + base32, ...). For
// unknown formats every run of alphanumerics between separators draws from the union of the
// character classes (digits, lower, upper) that run uses; the class of each single position is
// NOT copied, because that would leak ~1.6 bits per character of the real secret into the box.
// JWTs become parseable JWTs: the real header segment (alg/typ/kid, not secret) is kept, the
// payload is {"exp":<real exp>,"agentbox":"<random>"} padded to the real length, and the
// signature is random base64url.
#pragma once

#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"

namespace agentbox::cred {

// Shortest secret a placeholder is made for: shorter ones would collide with ordinary text
// when requests are scanned for them.
inline constexpr size_t kMinSecretLength = 8;

// Which shape make_placeholder() recognised (for tests and `agentbox explain`).
[[nodiscard]] std::string_view placeholder_shape(std::string_view real);

// What makes a placeholder stable across sessions: the per-user key (>= 32 bytes; empty means
// random), a label (the credential's name) and the attempt (a clash with another value is
// retried with the next one).
struct PlaceholderSeed {
  std::string_view key;
  std::string_view label;
  unsigned attempt = 0;
};

// A placeholder for `real`: random, or derived from `seed` when it carries a key. `prefix`
// (optional) overrides the detected prefix and is kept verbatim. Fails if the secret is shorter
// than kMinSecretLength or the CSPRNG fails.
[[nodiscard]] base::Result<std::string> make_placeholder(std::string_view real,
                                                         std::string_view prefix = {},
                                                         const PlaceholderSeed* seed = nullptr);

// Strict base64 (RFC 4648 4, padded) and base64url (5, unpadded) codecs used for Basic auth and
// JWTs. decode returns nullopt-like error on any non-alphabet byte or bad padding.
[[nodiscard]] std::string base64_encode(std::string_view in, bool url = false);
[[nodiscard]] base::Result<std::string> base64_decode(std::string_view in, bool url = false);

}  // namespace agentbox::cred
