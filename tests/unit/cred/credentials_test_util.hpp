// Helpers shared by the credential and proxy unit tests: a secret source over a fixed map (the
// launching environment the app would pass) and a request parsed from text.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <span>
#include <string>

#include "agentbox/cred/credentials.hpp"
#include "agentbox/http/http1.hpp"

namespace agentbox::cred {

inline SecretSource fake_env(std::map<std::string, std::string> vars) {
  return SecretSource([vars = std::move(vars)](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  });
}

inline http::Request parse(const std::string& s) {
  auto p = http::parse_request(std::as_bytes(std::span(s.data(), s.size())));
  EXPECT_EQ(p.status, http::ParseStatus::kOk) << p.reason;
  return p.message;
}

}  // namespace agentbox::cred
