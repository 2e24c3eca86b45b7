// A credential's `inject` grammar, parsed once: config turns what the user wrote into an
// InjectSpec and hands it on; the proxy (credentials, capture rules, token files) only reads it.
//   "header:NAME"  the header NAME carries the value (NAME an RFC 9110 token)
//   "basic"        HTTP Basic authentication's password
//   "query:PARAM"  the query parameter PARAM
//   "sigv4"        an AWS SigV4 signing key: requests are signed, the key is never sent
#pragma once

#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"

namespace agentbox::policy {

enum class InjectKind { kHeader, kBasic, kQuery, kSigV4 };

struct InjectSpec {
  InjectKind kind = InjectKind::kHeader;
  std::string name = "Authorization";  // header name (kHeader) or query parameter (kQuery)

  [[nodiscard]] static base::Result<InjectSpec> parse(std::string_view s);
  [[nodiscard]] static InjectSpec header(std::string name) {
    return {InjectKind::kHeader, std::move(name)};
  }
  [[nodiscard]] static InjectSpec query(std::string param) {
    return {InjectKind::kQuery, std::move(param)};
  }
  [[nodiscard]] static InjectSpec basic() { return {InjectKind::kBasic, {}}; }
  [[nodiscard]] static InjectSpec sigv4() { return {InjectKind::kSigV4, {}}; }
  // As written: "header:NAME", "basic", "query:PARAM", "sigv4".
  [[nodiscard]] std::string to_string() const;
  bool operator==(const InjectSpec&) const = default;
};

// RFC 9110 token characters (a header name).
[[nodiscard]] bool is_header_token(std::string_view s);

}  // namespace agentbox::policy
