// Credential set: load, placeholders, request inspection and swapping (see credentials.hpp).
#include "agentbox/cred/credentials.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "agentbox/cred/placeholder.hpp"
#include "agentbox/cred/sigv4.hpp"
#include "agentbox/http/text.hpp"
#include "agentbox/policy/host.hpp"
#include "credential_entry.hpp"

namespace agentbox::cred {

using http::detail::replace_all;

namespace {

constexpr int kPlaceholderAttempts = 16;
constexpr size_t kMaxBasicForms = 16;

bool starts_with_basic(std::string_view v) {
  return v.size() > 6 && http::iequals(v.substr(0, 6), "basic ");
}

bool contains(std::string_view hay, std::string_view needle) {
  return !needle.empty() && hay.find(needle) != std::string_view::npos;
}

// The decoded user:pass of a Basic value, if it is one.
std::optional<std::string> basic_decoded(std::string_view value) {
  if (!starts_with_basic(value)) {
    return std::nullopt;
  }
  auto b64 = value.substr(6);
  while (!b64.empty() && b64.front() == ' ') {
    b64.remove_prefix(1);
  }
  auto d = base64_decode(b64);
  return d ? std::optional<std::string>(std::move(*d)) : std::nullopt;
}

}  // namespace

base::Status check_format(std::string_view format) {
  if (format.empty()) {
    return base::ok();
  }
  const size_t first = format.find("{}");
  if (first == std::string_view::npos || format.find("{}", first + 2) != std::string_view::npos) {
    return base::Error::msg("`format` must contain `{}` exactly once");
  }
  for (char ch : format) {
    const auto u = static_cast<unsigned char>(ch);
    if ((u < 0x20 && ch != '\t') || u == 0x7f) {
      return base::Error::msg(
          "`format` must not contain control characters (CR, LF, ...): it becomes a header value");
    }
  }
  return base::ok();
}

CredentialSet::CredentialSet(CredentialSet&&) noexcept = default;
CredentialSet& CredentialSet::operator=(CredentialSet&&) noexcept = default;
CredentialSet::~CredentialSet() = default;

base::Result<CredentialSet> CredentialSet::load(std::vector<CredentialSpec> specs,
                                                SecretSource source, audit::Sink* sink,
                                                std::string_view placeholder_key) {
  CredentialSet set;
  set.source_ = std::make_unique<SecretSource>(std::move(source));
  set.sink_ = sink;
  for (auto& spec : specs) {
    auto e = std::make_unique<Entry>();
    const std::string ctx = spec.origin.empty()
                                ? fmt::format("credential `{}`", spec.name)
                                : fmt::format("credential `{}` ({})", spec.name, spec.origin);
    e->inject = spec.inject;
    if (auto st = check_format(spec.format); !st) {
      return std::move(st).error().context(ctx);
    }
    if (!spec.format.empty() && e->inject.kind != InjectKind::kHeader) {
      return base::Error::msg("`format` needs inject = \"header:NAME\"").context(ctx);
    }
    if (spec.body && e->inject.kind == InjectKind::kSigV4) {
      return base::Error::msg("a SigV4 signing key is never sent, so `body` cannot apply")
          .context(ctx);
    }
    for (auto& h : spec.hosts) {
      auto pattern = policy::HostPattern::parse(h);
      if (!pattern) {
        return base::Error::msg("host pattern `" + h + "` is not a hostname").context(ctx);
      }
      h = pattern->to_string();
      e->scope.push_back(std::move(*pattern));
    }
    for (auto& rule : spec.capture) {
      std::vector<policy::HostPattern> hosts = e->scope;
      if (!rule.host.empty()) {
        auto pattern = policy::HostPattern::parse(rule.host);
        if (!pattern) {
          return base::Error::msg("capture host `" + rule.host + "` is not a hostname")
              .context(ctx);
        }
        rule.host = pattern->to_string();
        hosts = {std::move(*pattern)};
      }
      if (rule.json.empty() == rule.xml.empty()) {
        return base::Error::msg("a capture rule needs `json` or `xml`").context(ctx);
      }
      e->capture_hosts.push_back(std::move(hosts));
    }
    auto secret = set.source_->read(spec.from);
    if (!secret) {
      return std::move(secret).error().context(ctx).hint(
          "fix its `from` source, or remove the credential from the config that defines it");
    }
    e->secret = std::move(*secret);
    e->fetched = e->attempted = Clock::now();
    if (spec.expires_seconds) {  // from the session's start: load() runs before the box does
      e->expires_at = e->fetched + std::chrono::seconds(*spec.expires_seconds);
      e->expiry = fmt::format("{} s after the session started", *spec.expires_seconds);
    }
    e->spec = std::move(spec);
    set.entries_.push_back(std::move(e));
  }
  // Placeholders last, so each is checked against every secret and every other placeholder.
  for (auto& e : set.entries_) {
    if (auto st = set.make_placeholder_for(*e, placeholder_key); !st) {
      return std::move(st).error().context("credential `" + e->spec.name + "`");
    }
    if (sink != nullptr) {
      sink->emit(audit::Event("credential.load")
                     .str("credential", e->spec.name)
                     .str("source", e->spec.from.kind_name())
                     .str("shape", placeholder_shape(e->secret))
                     .strs("hosts", e->spec.hosts));
    }
  }
  return set;
}

base::Status CredentialSet::make_placeholder_for(Entry& e, std::string_view key) const {
  for (int attempt = 0; attempt < kPlaceholderAttempts; ++attempt) {
    const PlaceholderSeed seed{
        .key = key, .label = e.spec.name, .attempt = static_cast<unsigned>(attempt)};
    auto ph = make_placeholder(e.secret, e.spec.placeholder_prefix, &seed);
    if (!ph) {
      return std::move(ph).error();
    }
    const bool clash = std::any_of(entries_.begin(), entries_.end(), [&](const auto& o) {
      return contains(o->secret, *ph) || contains(*ph, o->secret) || contains(e.secret, *ph) ||
             contains(*ph, e.secret) ||
             (o.get() != &e && (contains(o->placeholder, *ph) || contains(*ph, o->placeholder)));
    });
    if (!clash) {
      e.placeholder = std::move(*ph);
      return base::ok();
    }
  }
  return base::Error::msg("could not make a distinct placeholder");
}

std::vector<std::pair<std::string, std::string>> CredentialSet::placeholder_env() const {
  std::vector<std::pair<std::string, std::string>> env;
  for (const auto& e : entries_) {
    if (!e->spec.env.empty()) {
      env.emplace_back(e->spec.env, e->placeholder);
    }
  }
  return env;
}

std::optional<std::string> CredentialSet::placeholder(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e->spec.name == name) {
      return e->placeholder;
    }
  }
  return std::nullopt;
}

std::vector<std::string> CredentialSet::host_patterns() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    out.insert(out.end(), e->spec.hosts.begin(), e->spec.hosts.end());
    for (const auto& rule : e->spec.capture) {
      if (!rule.host.empty()) {
        out.push_back(rule.host);
      }
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool CredentialSet::revoke(std::string_view name) {
  for (auto& e : entries_) {
    if (e->spec.name == name) {
      e->revoked = true;
      if (sink_ != nullptr) {
        sink_->emit(audit::Event("credential.revoke").str("credential", name));
      }
      return true;
    }
  }
  return false;
}

bool CredentialSet::start_refresh(Entry& e, bool audit) {
  Entry* entry = &e;
  entry->refreshing = true;
  entry->attempted = Clock::now();
  const bool started =
      refresher_(entry->spec.from, [this, entry, audit](base::Result<std::string> r) {
        entry->refreshing = false;
        apply_refresh(*entry, std::move(r));
        if (audit && sink_ != nullptr) {
          audit::Event ev("credential.rotate");
          ev.str("credential", entry->spec.name);
          ev.str("outcome", entry->failure.empty() ? "ok" : entry->failure);
          sink_->emit(ev);
        }
        auto waiters = std::move(entry->waiters);
        entry->waiters.clear();
        for (auto& w : waiters) {
          w();
        }
      });
  if (!started) {
    entry->refreshing = false;
    entry->failure = "the refresh queue is full";
  }
  return started;
}

base::Status CredentialSet::rotate(std::string_view name) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const auto& e) { return !e->captured && e->spec.name == name; });
  if (it == entries_.end()) {
    return base::Error::msg(fmt::format("the session has no credential `{}`", name));
  }
  Entry& e = **it;
  if (e.spec.from.kind == policy::SourceKind::kEnv) {
    return base::Error::msg(
               fmt::format("credential `{}` comes from `{}`, which is read once when the session "
                           "starts",
                           name, e.spec.from.to_string()))
        .hint("give it a file: or cmd: source to rotate it while the session runs");
  }
  if (e.refreshing) {
    return base::ok();  // a re-read is already under way: its result is the rotation
  }
  if (!refresher_) {
    apply_refresh(e, source_->read(e.spec.from));
    if (sink_ != nullptr) {
      sink_->emit(audit::Event("credential.rotate")
                      .str("credential", name)
                      .str("outcome", e.failure.empty() ? "ok" : e.failure));
    }
    return base::ok();
  }
  if (!start_refresh(e, true)) {
    return base::Error::msg(fmt::format("credential `{}`: {}", name, e.failure));
  }
  return base::ok();
}

bool CredentialSet::due(const Entry& e) const {
  const auto now = Clock::now();
  if (e.captured || e.spec.from.kind == policy::SourceKind::kEnv || e.refreshing ||
      now - e.attempted < std::chrono::seconds(1)) {
    return false;
  }
  return !e.failure.empty() || now - e.fetched >= std::chrono::seconds(e.spec.ttl_seconds);
}

void CredentialSet::apply_refresh(Entry& e, base::Result<std::string> fresh) {
  e.attempted = Clock::now();
  if (!fresh) {
    e.failure = fresh.error().message();
    return;
  }
  if (fresh->size() != e.placeholder.size()) {
    // The box holds a placeholder of the old length; a swap must never change lengths.
    e.failure = "the refreshed secret changed length; restart the session";
    return;
  }
  e.secret = std::move(*fresh);
  e.fetched = e.attempted;
  e.failure.clear();
  e.basic_forms.clear();
}

base::Status CredentialSet::refresh_if_due(Entry& e) {
  // With a refresher the re-read already ran off the loop (await_fresh); never block here.
  if (!refresher_ && due(e)) {
    apply_refresh(e, source_->read(e.spec.from));
  }
  if (!e.failure.empty()) {
    return base::Error::msg(e.failure);
  }
  return base::ok();
}

bool CredentialSet::await_fresh(const http::Request& req, std::string_view host, bool cleartext,
                                const std::function<void()>& wake) {
  bool wait = false;
  for (auto& e : entries_) {
    if (e->revoked || !std::any_of(e->scope.begin(), e->scope.end(),
                                   [&](const auto& p) { return p.matches(host); })) {
      continue;
    }
    bool needed = !cleartext && (!e->spec.format.empty() || e->spec.body);
    needed = needed || contains(req.target, e->placeholder);
    for (const auto& h : req.headers) {
      needed = needed || contains(h.value, e->placeholder) ||
               contains(basic_decoded(h.value).value_or(""), e->placeholder);
    }
    if (!needed) {
      continue;
    }
    // On plain HTTP the placeholder is blocked, never swapped: nothing to ask about.
    if (!cleartext && await_consent(*e, req, host, wake)) {
      wait = true;
    }
    if (!refresher_ || e->captured || e->spec.from.kind == policy::SourceKind::kEnv) {
      continue;
    }
    if (!e->refreshing && due(*e) && !start_refresh(*e, false)) {
      continue;
    }
    if (e->refreshing) {
      e->waiters.push_back(wake);
      wait = true;
    }
  }
  return wait;
}

namespace {

// Swaps the placeholder in a header value: raw, or inside a Basic user:pass. Returns the
// Basic pair (b64 real, b64 placeholder) through `basic` when that form was used.
bool swap_value(std::string& value, std::string_view ph, std::string_view secret,
                std::pair<std::string, std::string>* basic) {
  if (auto decoded = basic_decoded(value); decoded && contains(*decoded, ph)) {
    const std::string before = base64_encode(*decoded);
    replace_all(*decoded, ph, secret);
    const std::string after = base64_encode(*decoded);
    value = std::string(value.substr(0, 6)) + after;
    *basic = {after, before};
    return true;
  }
  return replace_all(value, ph, secret) > 0;
}

// Swaps the placeholder inside the value of query parameter `param` of `target`.
bool swap_query(std::string& target, std::string_view param, std::string_view ph,
                std::string_view secret) {
  const size_t q = target.find('?');
  if (q == std::string::npos) {
    return false;
  }
  bool swapped = false;
  size_t pos = q + 1;
  while (pos <= target.size()) {
    size_t end = target.find('&', pos);
    end = end == std::string::npos ? target.find('#', pos) : end;
    end = end == std::string::npos ? target.size() : end;
    const size_t eq = target.find('=', pos);
    if (eq != std::string::npos && eq < end &&
        std::string_view(target).substr(pos, eq - pos) == param) {
      std::string v = target.substr(eq + 1, end - eq - 1);
      if (replace_all(v, ph, secret) > 0) {
        target.replace(eq + 1, end - eq - 1, v);
        end = eq + 1 + v.size();
        swapped = true;
      }
    }
    if (end >= target.size() || target[end] == '#') {
      break;
    }
    pos = end + 1;
  }
  return swapped;
}

}  // namespace

// Pass 3 of inspect: `format` credentials scoped to this host add their header when the box did
// not send it. A box that sent its own value keeps it (its choice, audited); the placeholder case
// was swapped in pass 2 (`added_or_swapped`). False when the request must be blocked (v says why).
bool CredentialSet::add_formatted(http::Request& req, std::string_view host, bool cleartext,
                                  const std::vector<Entry*>& added_or_swapped, Verdict& v) {
  for (auto& e : entries_) {
    if (e->spec.format.empty() || cleartext ||
        std::find(added_or_swapped.begin(), added_or_swapped.end(), e.get()) !=
            added_or_swapped.end() ||
        !std::any_of(e->scope.begin(), e->scope.end(),
                     [&](const policy::HostPattern& p) { return p.matches(host); })) {
      continue;
    }
    if (req.header(e->inject.name)) {
      if (sink_ != nullptr) {
        sink_->emit(audit::Event("credential.skip")
                        .str("credential", e->spec.name)
                        .str("host", host)
                        .str("header", e->inject.name)
                        .str("reason", "the box sent its own value"));
      }
      continue;
    }
    std::string why;
    if (e->revoked) {
      why = "credential " + e->spec.name + " was revoked";
    } else if (std::string no = consent_refusal(*e); !no.empty()) {
      why = std::move(no);
    } else if (auto st = refresh_if_due(*e); !st) {
      why = "credential " + e->spec.name + " is unavailable: " + st.error().message();
    } else if (std::any_of(e->secret.begin(), e->secret.end(), [](char ch) {
                 const auto u = static_cast<unsigned char>(ch);
                 return (u < 0x20 && ch != '\t') || u == 0x7f;
               })) {
      why = "credential " + e->spec.name + " holds control characters; not sent as a header";
    }
    if (!why.empty()) {
      if (sink_ != nullptr) {
        sink_->emit(audit::Event("credential.blocked")
                        .str("credential", e->spec.name)
                        .str("host", host)
                        .str("where", "header " + e->inject.name + " (added)")
                        .str("reason", why));
      }
      v.blocked = true;
      v.reason = std::move(why);
      v.used.clear();
      return false;
    }
    if (refuse_over_budget(*e, req, host, v)) {
      v.used.clear();
      return false;
    }
    std::string value = e->spec.format;
    value.replace(value.find("{}"), 2, e->secret);
    consumed(*e);
    req.headers.push_back({e->inject.name, std::move(value)});
    v.used.push_back(e->spec.name);
    if (sink_ != nullptr) {
      sink_->emit(audit::Event("credential.use")
                      .str("credential", e->spec.name)
                      .str("host", host)
                      .str("how", "added"));
    }
  }
  return true;
}

namespace {

// Pass 1's question for one placeholder: where in the request it appears ("" when nowhere). A
// SigV4 key (`sigv4_key`: the request is SigV4-signed and the credential signs) appears when the
// box's signature verifies under it; `verified` then holds what re-signing needs.
std::string placeholder_place(const http::Request& req, std::string_view body,
                              std::string_view placeholder, bool sigv4_key,
                              const std::string& body_sha,
                              std::optional<sigv4::Verified>& verified) {
  std::string where;
  if (sigv4_key) {
    if (auto r = sigv4::verify(req, placeholder, body_sha)) {
      verified = std::move(*r);
      where = "SigV4 signature";
    }
  }
  if (contains(req.target, placeholder)) {
    where = "request target";
  }
  for (const auto& h : req.headers) {
    if (where.empty() && (contains(h.value, placeholder) ||
                          contains(basic_decoded(h.value).value_or(""), placeholder))) {
      where = "header " + h.name;
    }
  }
  if (where.empty() && contains(body, placeholder)) {
    where = "body";
  }
  return where;
}

}  // namespace

// The credentials a request carries, sorted by pass 1 of inspect: swapped in place (pass 2) or
// re-signed (SigV4, last).
struct CredentialSet::Carried {
  std::vector<Entry*> present;
  std::vector<std::pair<Entry*, sigv4::Verified>> resign;
};

// Why the placeholder of `e`, found in the request, may not go to `host` ("" when it may). A
// stale file:/cmd: value is re-read here (its failure makes the credential unavailable).
std::string CredentialSet::presence_refusal(Entry& e, const http::Request& req,
                                            std::string_view host, bool cleartext, bool verified) {
  const bool in_scope = std::any_of(e.scope.begin(), e.scope.end(),
                                    [&](const policy::HostPattern& p) { return p.matches(host); });
  std::string why;
  if (!in_scope) {
    why = "credential " + e.spec.name + " sent to " + std::string(host);
  } else if (cleartext) {
    why = "credential " + e.spec.name + " would be sent unencrypted to " + std::string(host);
  } else if (e.revoked) {
    why = "credential " + e.spec.name + " was revoked";
  } else if (std::string no = req.method.empty() ? "" : consent_refusal(e); !no.empty()) {
    why = std::move(no);
  } else if (e.inject.kind == InjectKind::kSigV4 && !verified) {
    why = "credential " + e.spec.name + " is a SigV4 signing key: it only signs, it is never sent";
  } else if (auto st = refresh_if_due(e); !st) {
    e.failure = st.error().message();
  } else {
    e.failure.clear();
  }
  if (why.empty() && !e.failure.empty()) {
    why = "credential " + e.spec.name + " is unavailable: " + e.failure;
  }
  return why;
}

// Pass 1 of inspect: where does each placeholder appear, and may it go? Any block decides
// before anything is swapped (false: v says why).
bool CredentialSet::find_present(const http::Request& req, std::string_view host,
                                 std::string_view body, bool cleartext, Carried& found,
                                 Verdict& v) {
  // SigV4: the placeholder secret never travels, it only keyed the box's signature, so "present"
  // means "the signature verifies under it". The body is hashed only when the SDK did not send
  // x-amz-content-sha256 and the caller passed the whole body.
  const auto authz = req.header("authorization");
  const bool signed_v4 = authz && sigv4::is_sigv4(*authz);
  std::string body_sha;
  if (signed_v4 && !req.header("x-amz-content-sha256") && body.size() < kMaxBodyScan) {
    body_sha = sigv4::sha256_hex(body);
  }
  for (auto& e : entries_) {
    std::optional<sigv4::Verified> verified;
    const std::string where =
        placeholder_place(req, body, e->placeholder,
                          signed_v4 && e->inject.kind == InjectKind::kSigV4, body_sha, verified);
    if (where.empty()) {
      continue;
    }
    if (std::string why = presence_refusal(*e, req, host, cleartext, verified.has_value());
        !why.empty()) {
      if (sink_ != nullptr) {
        sink_->emit(audit::Event("credential.blocked")
                        .str("credential", e->spec.name)
                        .str("host", host)
                        .str("where", where)
                        .str("reason", why));
      }
      v.blocked = true;
      v.reason = std::move(why);
      return false;
    }
    // Budgets, before anything is swapped. Not on a body window (no method: nothing swaps there).
    if (!req.method.empty() && refuse_over_budget(*e, req, host, v)) {
      return false;
    }
    if (verified) {
      found.resign.emplace_back(e.get(), std::move(*verified));
    } else {
      found.present.push_back(e.get());
    }
  }
  return true;
}

// Pass 2 of inspect: swap in the configured place only; elsewhere the placeholder goes on
// unchanged (it is worthless to the scoped host). Returns the credentials swapped.
std::vector<CredentialSet::Entry*> CredentialSet::swap_present(http::Request& req,
                                                               std::string_view host,
                                                               const std::vector<Entry*>& present,
                                                               Verdict& v) {
  std::vector<Entry*> swapped_entries;
  for (Entry* e : present) {
    bool swapped = false;
    std::pair<std::string, std::string> basic;
    for (auto& h : req.headers) {
      const bool target_header =
          (e->inject.kind == InjectKind::kHeader && http::iequals(h.name, e->inject.name)) ||
          (e->inject.kind == InjectKind::kBasic && (http::iequals(h.name, "authorization") ||
                                                    http::iequals(h.name, "proxy-authorization")));
      if (target_header && swap_value(h.value, e->placeholder, e->secret, &basic)) {
        swapped = true;
        if (!basic.first.empty() && e->basic_forms.size() < kMaxBasicForms) {
          e->basic_forms.push_back(basic);
        }
      }
    }
    if (e->inject.kind == InjectKind::kQuery) {
      swapped = swap_query(req.target, e->inject.name, e->placeholder, e->secret) || swapped;
    }
    if (swapped) {
      consumed(*e);
      swapped_entries.push_back(e);
      v.used.push_back(e->spec.name);
      if (sink_ != nullptr) {
        sink_->emit(
            audit::Event("credential.use").str("credential", e->spec.name).str("host", host));
      }
    }
  }
  return swapped_entries;
}

// The last pass of inspect: re-signing comes last, since the signature must cover the request as
// it leaves, including the swaps before it (a session token header, the access key id in
// Credential=). False when a signature cannot be made (v says why).
bool CredentialSet::resign_all(http::Request& req, std::string_view host, Carried& found,
                               Verdict& v) {
  for (auto& [e, verified] : found.resign) {
    std::string key_id;
    if (auto now = req.header("authorization")) {
      if (auto parsed = sigv4::parse_authorization(*now)) {
        key_id = parsed->access_key;
      }
    }
    auto signed_value = sigv4::sign(req, verified, e->secret, key_id);
    if (!signed_value) {
      v.blocked = true;
      v.reason = "credential " + e->spec.name + ": " + signed_value.error().message();
      if (sink_ != nullptr) {
        sink_->emit(audit::Event("credential.blocked")
                        .str("credential", e->spec.name)
                        .str("host", host)
                        .str("where", "SigV4 signature")
                        .str("reason", v.reason));
      }
      return false;
    }
    req.set_header("Authorization", std::move(*signed_value));
    consumed(*e);
    v.used.push_back(e->spec.name);
    if (sink_ != nullptr) {
      sink_->emit(audit::Event("credential.use")
                      .str("credential", e->spec.name)
                      .str("host", host)
                      .str("how", "sigv4"));
    }
  }
  return true;
}

Verdict CredentialSet::inspect(http::Request& req, std::string_view host, std::string_view body,
                               bool cleartext) {
  Verdict v;
  body = body.substr(0, std::min(body.size(), kMaxBodyScan));
  Carried found;
  if (!find_present(req, host, body, cleartext, found, v)) {
    return v;
  }
  v.capture = captures(host, req.method, req.target);
  if (!found.resign.empty() && !v.capture) {
    std::vector<Entry*> signers;
    signers.reserve(found.resign.size());
    for (auto& [e, verified] : found.resign) {
      signers.push_back(e);
    }
    if (auto why = minting_denial(req, host, body, signers); !why.empty()) {
      v.blocked = true;
      v.reason = std::move(why);
      return v;
    }
  }
  // Which headers the box sent itself, before any swap (for `format`: never add a second one).
  const std::vector<Entry*> added_or_swapped = swap_present(req, host, found.present, v);
  if (!add_formatted(req, host, cleartext, added_or_swapped, v)) {
    return v;
  }
  if (!v.used.empty() || !found.resign.empty()) {
    // So the response can be scrubbed (the proxy forces it on every intercepted request too:
    // guard_request, http_guards.cpp; here for callers of inspect alone).
    req.set_header("Accept-Encoding", "identity");
  }
  if (!resign_all(req, host, found, v)) {
    return v;
  }
  account(req, v);
  return v;
}

BodyInjector CredentialSet::body_injector(std::string_view host, bool cleartext,
                                          bool capture) const {
  BodyInjector inj;
  if (cleartext) {
    return inj;
  }
  for (const auto& e : entries_) {
    if (!(e->spec.body || (capture && e->inject.kind != InjectKind::kSigV4)) || e->revoked ||
        !e->failure.empty() || (e->spec.ask && e->consent != Entry::Consent::kSession) ||
        !std::any_of(e->scope.begin(), e->scope.end(),
                     [&](const policy::HostPattern& p) { return p.matches(host); })) {
      continue;
    }
    BodyInjector::Stage st{.name = e->spec.name, .swap = {}, .reported = false};
    st.swap.add(e->placeholder, e->secret);
    inj.stages_.push_back(std::move(st));
  }
  return inj;
}

std::string BodyInjector::feed(std::string_view data) {
  std::string buf(data);
  for (auto& st : stages_) {
    buf = st.swap.feed(buf);
  }
  return buf;
}

std::string BodyInjector::finish() {
  // Each stage's held tail is final now; it still passes the later stages.
  std::string buf;
  for (auto& st : stages_) {
    buf = st.swap.feed(buf);
    buf += st.swap.finish();
  }
  return buf;
}

std::vector<std::string> BodyInjector::take_new_uses() {
  std::vector<std::string> out;
  for (auto& st : stages_) {
    if (!st.reported && st.swap.replaced() > 0) {
      st.reported = true;
      out.push_back(st.name);
    }
  }
  return out;
}

size_t BodyInjector::held() const {
  size_t n = 0;
  for (const auto& st : stages_) {
    n += st.swap.held();
  }
  return n;
}

Scrubber CredentialSet::scrubber() const {
  Scrubber s;
  for (const auto& e : entries_) {
    add_secret_forms(s, e->secret, e->placeholder);
    for (const auto& [b64_real, b64_ph] : e->basic_forms) {
      s.add(b64_real, b64_ph);  // whole, with the user name's bits in its first characters
    }
  }
  return s;
}

}  // namespace agentbox::cred
