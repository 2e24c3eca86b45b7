// Helpers shared by the credential and proxy unit tests: a secret source over a fixed map (the
// launching environment the app would pass) and a request parsed from text.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <span>
#include <string>

#include "agentbox/proxy/credentials.hpp"
#include "agentbox/proxy/http1.hpp"

namespace agentbox::proxy {

inline SecretSource fake_env(std::map<std::string, std::string> vars) {
  return SecretSource([vars = std::move(vars)](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  });
}

inline http1::Request parse(const std::string& s) {
  auto p = http1::parse_request(std::as_bytes(std::span(s.data(), s.size())));
  EXPECT_EQ(p.status, http1::ParseStatus::kOk) << p.reason;
  return p.message;
}

}  // namespace agentbox::proxy
