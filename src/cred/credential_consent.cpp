// `ask` credentials: the first request that would carry the real value waits for a person
// (credentials.hpp, step 3c; the questions go through policy::Approver, approval.hpp).
//
// One question per credential at a time: every request that needs it while it waits joins it.
// The answer is kept as counts rather than per request, since the proxy re-runs await_fresh()
// for each woken request: `once` and `deny` are for as many requests as were waiting, each
// taken by the next request to need the credential; `session` holds until the session ends.
#include <fmt/core.h>

#include "agentbox/cred/credentials.hpp"
#include "credential_entry.hpp"

namespace agentbox::cred {

bool CredentialSet::asks() const {
  for (const auto& e : entries_) {
    if (e->spec.ask && !e->captured) {
      return true;
    }
  }
  return false;
}

bool CredentialSet::await_consent(Entry& e, const http::Request& req, std::string_view host,
                                  const std::function<void()>& wake) {
  if (!e.spec.ask || e.captured || e.consent == Entry::Consent::kSession || e.once > 0 ||
      e.denied > 0 || approver_ == nullptr) {
    return false;  // decided now, by consent_refusal()
  }
  e.consent_waiters.push_back(wake);
  if (e.consent == Entry::Consent::kAsking) {
    return true;  // joins the question that waits
  }
  e.consent = Entry::Consent::kAsking;
  Entry* entry = &e;
  // The request line it would go with, what a person needs to decide: without the query, which
  // may hold the placeholder itself (inject = "query:...") or other tokens.
  std::string detail = fmt::format("{} https://{}{}", req.method, host,
                                   std::string_view(req.target).substr(0, req.target.find('?')));
  if (detail.size() > 300) {
    detail.resize(300);
  }
  approver_->ask({.kind = policy::ApprovalKind::credential,
                  .subject = e.spec.name,
                  .detail = std::move(detail)},
                 [entry](policy::Answer a) {
                   const size_t waiting = entry->consent_waiters.size();
                   switch (a) {
                     case policy::Answer::allow_once:
                       entry->consent = Entry::Consent::kNone;
                       entry->once += waiting;
                       break;
                     case policy::Answer::allow_session:
                     case policy::Answer::allow_always:
                       entry->consent = Entry::Consent::kSession;
                       break;
                     case policy::Answer::deny:
                       entry->consent = Entry::Consent::kNone;
                       entry->denied += waiting;
                       break;
                   }
                   auto waiters = std::move(entry->consent_waiters);
                   entry->consent_waiters.clear();
                   for (auto& w : waiters) {
                     w();
                   }
                 });
  return true;
}

std::string CredentialSet::consent_refusal(Entry& e) {
  if (!e.spec.ask || e.captured || e.consent == Entry::Consent::kSession || e.once > 0) {
    return {};
  }
  if (e.denied > 0) {
    --e.denied;
    return fmt::format(
        "credential {} was not approved (`agentbox approve` denied it or nobody answered in "
        "time)",
        e.spec.name);
  }
  if (e.consent == Entry::Consent::kAsking) {
    return fmt::format("credential {} waits for approval (`agentbox approve`)", e.spec.name);
  }
  return fmt::format("credential {} needs approval and nobody can be asked", e.spec.name);
}

void CredentialSet::consumed(Entry& e) {
  if (e.spec.ask && e.consent != Entry::Consent::kSession && e.once > 0) {
    --e.once;
  }
}

}  // namespace agentbox::cred
