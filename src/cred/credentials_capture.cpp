// Credential set: capturing minted secrets from responses, and refusing to sign requests that
// mint secrets nobody captures (see capture.hpp for the whole story).
#include <fmt/core.h>

#include <algorithm>

#include "agentbox/base/sys.hpp"
#include "agentbox/cred/capture.hpp"
#include "agentbox/cred/credentials.hpp"
#include "agentbox/cred/placeholder.hpp"
#include "agentbox/http/http_rules.hpp"
#include "credential_entry.hpp"

namespace agentbox::cred {

namespace {

bool rule_matches(const CaptureSpec& rule, const std::vector<policy::HostPattern>& hosts,
                  std::string_view host, std::string_view method, std::string_view path) {
  return std::any_of(hosts.begin(), hosts.end(),
                     [&](const policy::HostPattern& p) { return p.matches(host); }) &&
         (rule.method.empty() || http::iequals(rule.method, method)) &&
         (rule.path.empty() || http::glob_match(rule.path, path));
}

}  // namespace

bool CredentialSet::captures(std::string_view host, std::string_view method,
                             std::string_view target) const {
  const std::string_view path = http::target_path(target);
  for (const auto& e : entries_) {
    for (size_t i = 0; i < e->spec.capture.size(); ++i) {
      if (rule_matches(e->spec.capture[i], e->capture_hosts[i], host, method, path)) {
        return true;
      }
    }
  }
  return false;
}

base::Status CredentialSet::capture(std::string_view host, std::string_view method,
                                    std::string_view target, int status, std::string_view body) {
  struct Found {
    Entry* owner;
    const CaptureSpec* rule;
    std::string value;
  };
  std::vector<Found> found;
  if (body.empty()) {
    return base::ok();  // HEAD, 204, 304: nothing was minted
  }
  const std::string_view path = http::target_path(target);
  const bool success = status >= 200 && status < 300;
  for (auto& e : entries_) {
    for (size_t i = 0; i < e->spec.capture.size(); ++i) {
      const CaptureSpec& rule = e->spec.capture[i];
      if (!rule_matches(rule, e->capture_hosts[i], host, method, path)) {
        continue;
      }
      auto v = rule.json.empty() ? xml_element(body, rule.xml) : json_field(body, rule.json);
      const std::string ctx = fmt::format("capture rule of credential {} ({})", e->spec.name,
                                          rule.json.empty() ? "<" + rule.xml + ">" : rule.json);
      if (!v) {
        // An error answer need not be JSON; a success that the rule cannot read might hold a
        // secret in a form the rule does not know, so it never reaches the box.
        if (success) {
          return std::move(v).error().context(ctx);
        }
        continue;
      }
      if (!*v) {
        continue;
      }
      if ((*v)->size() < kMinSecretLength) {
        return base::Error::msg(
                   fmt::format("a captured value is shorter than {} characters", kMinSecretLength))
            .context(ctx);
      }
      found.push_back({e.get(), &rule, std::move(**v)});
    }
  }
  for (auto& f : found) {
    const bool known = std::any_of(entries_.begin(), entries_.end(),
                                   [&](const auto& o) { return o->secret == f.value; });
    if (known) {
      continue;  // the scrubber already turns it into its placeholder
    }
    const size_t captured = static_cast<size_t>(
        std::count_if(entries_.begin(), entries_.end(), [](const auto& o) { return o->captured; }));
    if (captured >= kMaxCaptured) {
      return base::Error::msg(
          fmt::format("the session already holds {} captured credentials", kMaxCaptured));
    }
    const Entry& owner = *f.owner;
    auto e = std::make_unique<Entry>();
    const std::string what = f.rule->json.empty() ? f.rule->xml : f.rule->json;
    // Field by field into the fresh spec: g++ 12 -O3 takes a braced temporary's defaulted
    // SourceSpec for uninitialized (-Wmaybe-uninitialized).
    e->spec.name = fmt::format("{}:{}#{}", owner.spec.name, what, captured + 1);
    e->spec.hosts = owner.spec.hosts;
    e->spec.inject = f.rule->inject;
    e->spec.body = f.rule->body;
    e->spec.allow_mint = owner.spec.allow_mint;
    e->spec.methods = owner.spec.methods;  // and its expiry (below): a refresh is no way out
    e->spec.expires_seconds = owner.spec.expires_seconds;
    e->inject = f.rule->inject;
    e->scope = owner.scope;
    e->expires_at = owner.expires_at;
    e->expiry = owner.expiry;
    e->captured = true;
    e->secret = std::move(f.value);
    e->fetched = e->attempted = Clock::now();
    if (auto st = make_placeholder_for(*e); !st) {
      return std::move(st).error().context(e->spec.name);
    }
    if (sink_ != nullptr) {
      sink_->emit(audit::Event("credential.capture")
                      .str("credential", e->spec.name)
                      .str("host", host)
                      .str("shape", placeholder_shape(e->secret))
                      .strs("hosts", e->spec.hosts));
    }
    entries_.push_back(std::move(e));
    if (!f.rule->field.empty() && !owner.spec.token_file.empty()) {
      write_back(owner, *f.rule, *entries_.back());
    }
  }
  return base::ok();
}

// The user's token file gets the new value (atomically, mode and owner kept); the box's masked
// copy gets the new placeholder in place (it is bind-mounted: a rename would not show).
// Failures are audited and the session goes on: the value works through the proxy regardless.
void CredentialSet::write_back(const Entry& owner, const CaptureSpec& rule, const Entry& captured) {
  auto update = [&](const std::string& path, const std::string& value, bool atomic) {
    auto text = base::read_file(path, size_t{1} << 20);
    if (!text) {
      return base::Status(std::move(text).error());
    }
    auto edited = set_json_field_text(*text, rule.field, value);
    if (!edited) {
      return base::Status(std::move(edited).error().context(path));
    }
    return atomic ? replace_file_atomically(path, *edited) : rewrite_in_place(path, *edited);
  };
  base::Status st = update(owner.spec.token_file, captured.secret, true);
  if (st && !owner.spec.token_copy.empty()) {
    st = update(owner.spec.token_copy, captured.placeholder, false);
  }
  if (sink_ != nullptr) {
    audit::Event ev("credential.write_back");
    ev.str("credential", captured.spec.name)
        .str("file", owner.spec.token_file)
        .str("field", rule.field);
    if (!st) {
      ev.str("error", st.error().message());
    }
    sink_->emit(ev);
  }
}

std::string CredentialSet::minting_denial(const http::Request& req, std::string_view host,
                                          std::string_view body,
                                          const std::vector<Entry*>& signers) const {
  const auto action = minting_action(req.target, req.header("content-type").value_or(""), body);
  if (!action) {
    return {};
  }
  for (const Entry* e : signers) {
    const auto& allowed = e->spec.allow_mint;
    if (std::find(allowed.begin(), allowed.end(), *action) != allowed.end()) {
      return {};
    }
  }
  const std::string name = signers.front()->spec.name;
  std::string why = fmt::format(
      "credential {} would sign {} on {}: it mints credentials the box would hold (a capture "
      "rule or allow_mint allows it)",
      name, *action, host);
  if (sink_ != nullptr) {
    sink_->emit(audit::Event("credential.blocked")
                    .str("credential", name)
                    .str("host", host)
                    .str("where", "SigV4 signature")
                    .str("reason", why));
  }
  return why;
}

}  // namespace agentbox::cred
