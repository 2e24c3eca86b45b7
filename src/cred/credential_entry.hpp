// One credential of a CredentialSet as it lives in the supervisor (internal to src/proxy).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "agentbox/cred/credentials.hpp"
#include "agentbox/policy/host.hpp"

namespace agentbox::cred {

struct CredentialSet::Entry {
  CredentialSpec spec;
  InjectSpec inject;
  std::string secret;
  std::string placeholder;
  std::vector<policy::HostPattern> scope;
  // Capture rules, with their hosts parsed (a rule without a host: the owner's scope).
  std::vector<std::vector<policy::HostPattern>> capture_hosts;
  bool captured = false;  // taken from a response: never re-read from a source
  bool revoked = false;
  std::string failure;  // non-empty: unavailable (refresh failed)
  Clock::time_point fetched;
  Clock::time_point attempted;  // last refresh started (re-reads at most once a second)
  bool refreshing = false;      // a background re-read is running
  std::vector<std::function<void()>> waiters;                    // woken when it finishes
  std::vector<std::pair<std::string, std::string>> basic_forms;  // b64(real) -> b64(placeholder)
  // Budgets (credential_budget.cpp): what was spent, and what was refused.
  Clock::time_point expires_at = Clock::time_point::max();
  std::string
      expiry;  // when it expires, as the refusal says it ("300 s after the session started")
  uint64_t requests = 0;
  uint64_t bytes = 0;
  uint64_t refused = 0;
  Budget last_hit = Budget::kNone;
  // `ask` (credential_consent.cpp): no answer yet, a question waiting, or allowed for the
  // session; the requests a `once` or `deny` answer was for, not yet decided; who waits.
  enum class Consent : uint8_t { kNone, kAsking, kSession };
  Consent consent = Consent::kNone;
  size_t once = 0;
  size_t denied = 0;
  std::vector<std::function<void()>> consent_waiters;

  [[nodiscard]] bool in_scope(std::string_view host) const {
    for (const auto& p : scope) {
      if (p.matches(host)) {
        return true;
      }
    }
    return false;
  }
};

}  // namespace agentbox::cred
