// A credential's `inject` grammar (inject.hpp): the one parser of it.
#include "agentbox/policy/inject.hpp"

#include <algorithm>
#include <optional>

namespace agentbox::policy {

bool is_header_token(std::string_view s) {
  static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    const auto u = static_cast<unsigned char>(ch);
    return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
           kExtra.find(ch) != std::string_view::npos;
  });
}

base::Result<InjectSpec> InjectSpec::parse(std::string_view s) {
  auto arg = [&](std::string_view prefix) -> std::optional<std::string> {
    if (s.substr(0, prefix.size()) != prefix || s.size() == prefix.size()) {
      return std::nullopt;
    }
    return std::string(s.substr(prefix.size()));
  };
  if (auto h = arg("header:")) {
    if (!is_header_token(*h)) {
      return base::Error::msg(
          "inject `" + std::string(s) +
          "`: the header name must be a token (letters, digits, !#$%&'*+-.^_`|~)");
    }
    return header(std::move(*h));
  }
  if (auto q = arg("query:")) {
    return query(std::move(*q));
  }
  if (s == "basic") {
    return basic();
  }
  if (s == "sigv4") {
    return sigv4();
  }
  return base::Error::msg("inject `" + std::string(s) +
                          "`: want header:NAME, basic, query:PARAM or sigv4");
}

std::string InjectSpec::to_string() const {
  switch (kind) {
    case InjectKind::kHeader:
      return "header:" + name;
    case InjectKind::kBasic:
      return "basic";
    case InjectKind::kQuery:
      return "query:" + name;
    case InjectKind::kSigV4:
      return "sigv4";
  }
  return {};
}

}  // namespace agentbox::policy
