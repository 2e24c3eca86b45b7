// Per-credential budgets (docs/CONFIG.md): `max_requests`, `max_bytes`, `methods`, `expires`.
// Checked where a request is decided (CredentialSet::inspect), before the placeholder is
// swapped or a `format` header added: a request over a budget never reaches the upstream. The
// refusal names the credential and the budget, never a placeholder or a secret; it is audited
// ("credential.budget") and counted for the exit summary.
#include <fmt/core.h>

#include <algorithm>

#include "agentbox/cred/credentials.hpp"
#include "credential_entry.hpp"

namespace agentbox::cred {

namespace {

// The request bytes a credential is charged: the head as it leaves, and the body it declares.
uint64_t request_cost(const http::Request& req) {
  uint64_t n = req.method.size() + req.target.size() + 12;  // " " + " HTTP/1.1\r\n"
  for (const auto& h : req.headers) {
    n += h.name.size() + h.value.size() + 4;
  }
  n += 2;
  if (req.framing == http::Framing::kContentLength) {
    n += req.content_length;
  }
  return n;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    out += out.empty() ? "" : ", ";
    out += s;
  }
  return out;
}

// What a credential has spent (CredentialSet::Entry is private to the set).
struct Spent {
  CredentialSet::Clock::time_point expires_at;
  const std::string& expiry;
  uint64_t requests = 0;
  uint64_t bytes = 0;
};

// The budget of `s` that `req` would pass, and why (one line for the agent).
Budget over(const CredentialSpec& s, const Spent& e, const http::Request& req, std::string& why) {
  if (!s.methods.empty() &&
      std::find(s.methods.begin(), s.methods.end(), req.method) == s.methods.end()) {
    why = fmt::format("credential {} may not be used with {} (its `methods`: {})", s.name,
                      req.method, join(s.methods));
    return Budget::kMethods;
  }
  if (CredentialSet::Clock::now() >= e.expires_at) {
    why = fmt::format("credential {} reached its budget expires ({})", s.name, e.expiry);
    return Budget::kExpired;
  }
  if (s.max_requests && e.requests >= *s.max_requests) {
    why =
        fmt::format("credential {} reached its budget max_requests = {}", s.name, *s.max_requests);
    return Budget::kRequests;
  }
  if (s.max_bytes) {
    if (req.framing == http::Framing::kChunked) {
      why = fmt::format(
          "credential {} has a budget max_bytes = {}: a chunked request body, whose size is "
          "unknown, cannot carry it",
          s.name, *s.max_bytes);
      return Budget::kBytes;
    }
    if (e.bytes + request_cost(req) > *s.max_bytes) {
      why = fmt::format(
          "credential {} reached its budget max_bytes = {} ({} bytes sent, this request {})",
          s.name, *s.max_bytes, e.bytes, request_cost(req));
      return Budget::kBytes;
    }
  }
  return Budget::kNone;
}

}  // namespace

std::string_view budget_key(Budget b) {
  switch (b) {
    case Budget::kNone:
      return "";
    case Budget::kRequests:
      return "max_requests";
    case Budget::kBytes:
      return "max_bytes";
    case Budget::kMethods:
      return "methods";
    case Budget::kExpired:
      return "expires";
  }
  return "";
}

int refusal_status(Budget b) {
  return b == Budget::kNone || b == Budget::kMethods ? 403 : 429;
}

Budget budget_named(std::string_view key) {
  for (Budget b : {Budget::kRequests, Budget::kBytes, Budget::kMethods, Budget::kExpired}) {
    if (budget_key(b) == key) {
      return b;
    }
  }
  return Budget::kNone;
}

bool CredentialSet::refuse_over_budget(Entry& e, const http::Request& req, std::string_view host,
                                       Verdict& v) {
  std::string why;
  const Budget b = over(e.spec, {e.expires_at, e.expiry, e.requests, e.bytes}, req, why);
  if (b == Budget::kNone) {
    return false;
  }
  ++e.refused;
  e.last_hit = b;
  if (sink_ != nullptr) {
    sink_->emit(audit::Event("credential.budget")
                    .str("credential", e.spec.name)
                    .str("host", host)
                    .str("method", req.method)
                    .str("budget", budget_key(b))
                    .num("requests", static_cast<int64_t>(e.requests))
                    .num("bytes", static_cast<int64_t>(e.bytes))
                    .str("reason", why));
  }
  v.blocked = true;
  v.budget = b;
  v.reason = std::move(why);
  return true;
}

void CredentialSet::account(const http::Request& req, const Verdict& v) {
  if (v.blocked || v.used.empty() || req.method.empty()) {
    return;
  }
  const uint64_t cost = request_cost(req);
  for (auto& e : entries_) {
    if (std::find(v.used.begin(), v.used.end(), e->spec.name) != v.used.end()) {
      ++e->requests;
      e->bytes += cost;
    }
  }
}

std::vector<CredentialSet::State> CredentialSet::state() const {
  std::vector<State> out;
  const auto now = Clock::now();
  for (const auto& e : entries_) {
    if (e->captured) {
      continue;
    }
    State st{.name = e->spec.name,
             .revoked = e->revoked,
             .refreshing = e->refreshing,
             .failure = e->failure,
             .requests = e->requests,
             .bytes = e->bytes,
             .refused = e->refused,
             .max_requests = e->spec.max_requests,
             .max_bytes = e->spec.max_bytes,
             .methods = e->spec.methods};
    if (e->expires_at != Clock::time_point::max()) {
      st.expires_in_s = std::chrono::ceil<std::chrono::seconds>(e->expires_at - now).count();
    }
    out.push_back(std::move(st));
  }
  return out;
}

base::Status CredentialSet::set_budget(std::string_view name, const BudgetSetting& s) {
  const std::string prefix = fmt::format("{}:", name);
  Entry* owner = nullptr;
  for (auto& e : entries_) {
    const bool own = !e->captured && e->spec.name == name;
    if (!own && !(e->captured && e->spec.name.starts_with(prefix))) {
      continue;  // a captured value follows its owner's methods and expiry (as at capture)
    }
    owner = own ? e.get() : owner;
    if (s.key == Budget::kMethods) {
      e->spec.methods = s.methods;
    } else if (s.key == Budget::kExpired) {
      e->expires_at =
          s.value ? Clock::now() + std::chrono::seconds(*s.value) : Clock::time_point::max();
      e->expiry = s.value ? fmt::format("{} s after `agentbox budget` set it", *s.value) : "";
    } else if (own && s.key == Budget::kRequests) {
      e->spec.max_requests = s.value;
    } else if (own && s.key == Budget::kBytes) {
      e->spec.max_bytes = s.value;
    }
  }
  if (owner == nullptr) {
    return base::Error::msg(fmt::format("the session has no credential `{}`", name));
  }
  return base::ok();
}

std::vector<std::string> CredentialSet::budget_summary() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    if (e->refused != 0) {
      out.push_back(fmt::format(
          "credential {}: {} request{} refused over its budget (last: {}); {} request{}, {} "
          "bytes sent with it",
          e->spec.name, e->refused, e->refused == 1 ? "" : "s", budget_key(e->last_hit),
          e->requests, e->requests == 1 ? "" : "s", e->bytes));
    }
  }
  return out;
}

}  // namespace agentbox::cred
