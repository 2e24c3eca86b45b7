// The session's L7 proxy: credentials, CA and trust material for the box, the ProxyHandler.
#include "agentbox/app/session_proxy.hpp"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <optional>

#include "agentbox/app/run.hpp"  // expand_home
#include "agentbox/app/session_trust.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/base/sys.hpp"
#include "agentbox/config/load.hpp"
#include "agentbox/cred/credentials.hpp"
#include "agentbox/cred/token_file.hpp"
#include "agentbox/http/http_rules.hpp"
#include "agentbox/policy/egress.hpp"
#include "agentbox/proxy/proxy_handler.hpp"
#include "agentbox/proxy/tls_ca.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;

const std::vector<std::string>& trust_store_files() {
  static const std::vector<std::string> files = {
      "/etc/ssl/certs/ca-certificates.crt",                 // Debian, Ubuntu, Arch, Gentoo
      "/etc/pki/tls/certs/ca-bundle.crt",                   // Fedora, RHEL, CentOS
      "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  // Fedora, RHEL (the real file)
      "/etc/ssl/cert.pem",                                  // Alpine, the OpenSSL default file
      "/etc/ssl/ca-bundle.pem",                             // openSUSE
      "/etc/ca-certificates/extracted/tls-ca-bundle.pem",   // Arch (the real file)
      "/usr/lib/ssl/cert.pem",                              // Debian's OPENSSLDIR default file
  };
  return files;
}

const std::vector<std::string>& trust_env_names() {
  static const std::vector<std::string> names = {
      "SSL_CERT_FILE",
      "CURL_CA_BUNDLE",
      "GIT_SSL_CAINFO",
      "REQUESTS_CA_BUNDLE",
      "PIP_CERT",
      "NODE_EXTRA_CA_CERTS",
      "NPM_CONFIG_CAFILE",
      "npm_config_cafile",
      "CARGO_HTTP_CAINFO",
      "AWS_CA_BUNDLE",
      "DENO_CERT",
      "HTTPLIB2_CA_CERTS",
      "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
  };
  return names;
}

namespace {

// The ProxyHandler belongs to SessionProxy (so it can be stopped before the loop goes away); the
// network holds this forwarder. The translator detaches itself (attach(nullptr)) when it goes,
// which may be after the handler is gone: that call reaches no handler then.
class Forward final : public net::FlowHandler {
 public:
  explicit Forward(std::unique_ptr<proxy::ProxyHandler>& to) : to_(to) {}
  [[nodiscard]] Result<net::OpenResult> on_open(const net::FlowInfo& info) override {
    if (!to_) {
      return Error::msg("the proxy has stopped");
    }
    return to_->on_open(info);
  }
  void on_close(const net::FlowInfo& info, const net::FlowStats& stats) override {
    if (to_) {
      to_->on_close(info, stats);
    }
  }
  void attach(net::FlowControl* control) override {
    if (to_) {
      to_->attach(control);
    }
  }

 private:
  std::unique_ptr<proxy::ProxyHandler>& to_;
};

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string env_value(const std::map<std::string, std::string>& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

// upstream_ca is for the proxy's own TLS client, which only talks to intercepted hosts; a
// --connect-to host that is passed through is verified by the client in the box, which never
// sees that CA. Says so, once per such host (a local HTTPS test server is the usual case).
void warn_unused_upstream_ca(const config::Policy& policy, const proxy::SessionCa* ca) {
  if (policy.upstream_ca.empty() || !policy.trust_ca.empty()) {
    return;
  }
  std::set<std::string> said;
  for (const auto& c : policy.connect_to) {
    const std::string host = c.value.substr(0, c.value.find(':'));
    if ((ca != nullptr && ca->permits(host)) || !said.insert(host).second) {
      continue;
    }
    base::log::warn(
        "upstream_ca ({}) does not apply to `{}`: it is passed through, not intercepted (no "
        "credential or HTTP rule names it), so the program in the box verifies it with the box's "
        "trust store; add a private CA to that with --trust-ca FILE (trust_ca)",
        policy.upstream_ca.front().origin.describe(), host);
  }
}

}  // namespace

namespace {

// Whether a setting comes from a profile shipped with agentbox (not the user's own config).
bool shipped(const config::Origin& origin) {
  for (const auto& dir : config::default_profile_dirs()) {
    if (origin.source.rfind(dir + "/", 0) == 0) {
      return true;
    }
  }
  return false;
}

std::vector<cred::CaptureSpec> capture_specs(const std::vector<config::CaptureRule>& rules) {
  std::vector<cred::CaptureSpec> out;
  out.reserve(rules.size());
  for (const auto& r : rules) {
    out.push_back({.host = r.host,
                   .method = r.method,
                   .path = r.path,
                   .json = r.json,
                   .xml = r.xml,
                   .inject = r.inject,
                   .body = r.body,
                   .field = r.field});
  }
  return out;
}

proxy::BudgetLimits budget_limits(const config::Budget& b) {
  proxy::BudgetLimits out;  // "unlimited" (config::kUnlimited) is no budget
  if (b.egress && b.egress->value != config::kUnlimited) {
    out.egress = b.egress->value;
  }
  if (b.requests_per_host && b.requests_per_host->value != config::kUnlimited) {
    out.requests_per_host = b.requests_per_host->value;
  }
  if (b.spend) {
    out.spend = b.spend->value;
  }
  if (b.connections_per_minute && b.connections_per_minute->value != config::kUnlimited) {
    out.connections_per_minute = b.connections_per_minute->value;
  }
  return out;
}

// The prices, read when the proxy meters its first model response: parsing the shipped table was
// 2.5 ms of every start, and most sessions meter nothing. A table that does not parse prices
// nothing: the spend is "unknown" and a spend cap refuses the next model request (fail closed).
std::function<proxy::PriceTable()> price_loader(const config::Policy& policy) {
  return [files = policy.pricing_files, user = policy.pricing] {
    auto pricing = config::resolve_pricing(files, user);
    proxy::PriceTable out;
    if (!pricing) {
      base::log::warn("model prices: {}; no model is priced this session",
                      pricing.error().render());
      return out;
    }
    for (const auto& [model, p] : *pricing) {
      out[model] = {.input = p.input.value_or(0),
                    .output = p.output.value_or(0),
                    .cached = p.cached.value_or(0)};
    }
    return out;
  };
}

}  // namespace

struct SessionProxy::Impl {
  audit::Sink* sink = nullptr;
  std::optional<cred::CredentialSet> credentials;
  std::vector<std::string> names;  // the credentials', for `agentbox policy`
  std::optional<proxy::SessionCa> ca;
  proxy::ProxyOptions options;
  std::vector<sandbox::Overlay> trust_overlays;  // bundle, CA directory, Java store
  std::vector<std::string> trust_files;          // their files, removed by finish()
  std::vector<std::pair<std::string, std::string>> env;
  std::set<std::string> secret_sources;
  std::vector<sandbox::Overlay> token_overlays;  // masked token files
  std::unique_ptr<proxy::ProxyHandler> handler;
  proxy::ProxyCounters last;                   // counters kept after the handler is gone
  std::optional<proxy::SessionBudget> budget;  // [budget] and the model usage ledger
};

SessionProxy::SessionProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SessionProxy::~SessionProxy() {
  remove_box_trust(impl_->trust_files);  // a start that failed before finish()
}

namespace {

// The config's credentials as the proxy's specs. A shipped profile's `env:` credential whose
// variable is unset is left out (said at info level); the user's own is an error.
base::Status add_credential_specs(SessionProxy::Impl& impl, const config::Policy& policy,
                                  const std::map<std::string, std::string>& caller_env,
                                  const std::string& home,
                                  std::vector<cred::CredentialSpec>& specs) {
  for (const auto& [name, c] : policy.credentials) {
    const bool from_env = c.from.kind == policy::SourceKind::kEnv;
    if (from_env && caller_env.count(c.from.arg) == 0) {
      // A profile shipped with agentbox names the usual variables (ANTHROPIC_API_KEY), which
      // many users do not set (OAuth logins): the box simply has no such variable, said at info
      // level. A credential of the user's own config is an error, like a `file:` or `cmd:`
      // source that fails: every source failure stops the start with the file:line to fix.
      if (!shipped(c.origin)) {
        return base::Error::msg(fmt::format("credential `{}` ({}): variable `{}` is not set", name,
                                            c.origin.describe(), c.from.arg))
            .hint(fmt::format("export {} before `agentbox run`, or remove the credential",
                              c.from.arg));
      }
      base::log::info("credential `{}` ({}): {} is not set; the box gets no {}", name,
                      c.origin.describe(), c.from.arg, c.env);
      impl.secret_sources.insert(c.from.arg);
      continue;
    }
    impl.names.push_back(c.name);
    specs.push_back({.name = c.name,
                     .env = c.env,
                     .from = expand_home(c.from, home),
                     .hosts = c.hosts,
                     .inject = c.inject,
                     .placeholder_prefix = c.placeholder_prefix,
                     .ttl_seconds = c.ttl_seconds,
                     .format = c.format,
                     .body = c.body,
                     .capture = capture_specs(c.capture),
                     .allow_mint = c.allow_mint,
                     .max_requests = c.max_requests,
                     .max_bytes = c.max_bytes,
                     .methods = c.methods,
                     .expires_seconds = c.expires_seconds,
                     .origin = c.origin.describe(),
                     .ask = c.ask});
    if (from_env) {
      impl.secret_sources.insert(c.from.arg);
    }
  }
  return base::ok();
}

// A token file whose secrets the box sees masked: its text and, per value, the credential name.
struct MaskedFile {
  std::string target;
  std::string text;
  std::vector<std::string> names;
  std::vector<std::string> values;
};

// Token files: each value to mask becomes a credential scoped to the file's hosts, read
// through a private name (`values`) that no environment variable can have.
Result<std::vector<MaskedFile>> add_token_file_specs(const config::Policy& policy,
                                                     const std::string& home,
                                                     const std::string& session_dir,
                                                     std::vector<cred::CredentialSpec>& specs,
                                                     std::map<std::string, std::string>& values) {
  std::vector<MaskedFile> masked;
  for (size_t i = 0; i < policy.token_files.size(); ++i) {
    const config::TokenFile& tf = policy.token_files[i];
    std::string path = expand_home(tf.path, home);
    auto text = base::read_file(path, size_t{1} << 20);
    if (!text) {
      // Profiles name the usual login files, which API-key users do not have; a token file of
      // the user's own config that cannot be read stops the start, like any credential source.
      if (!shipped(tf.origin)) {
        return std::move(text)
            .error()
            .context(fmt::format("token file `{}` ({})", tf.path, tf.origin.describe()))
            .hint("fix the path, or remove the token file from the config that names it");
      }
      base::log::debug("token file `{}` ({}): {}: not shown", tf.path, tf.origin.describe(),
                       text.error().message());
      continue;
    }
    auto found =
        cred::find_token_secrets(*text, {.json_fields = tf.json_fields, .regexes = tf.regexes});
    if (!found) {
      return std::move(found).error().context(
          fmt::format("token file `{}` ({})", tf.path, tf.origin.describe()));
    }
    MaskedFile m{.target = path, .text = std::move(*text)};
    for (size_t j = 0; j < found->size(); ++j) {
      std::string key = fmt::format("@token_file/{}/{}", i, j);
      std::string name = fmt::format("{}#{}", tf.path, j + 1);
      values[key] = (*found)[j];
      specs.push_back({.name = name,
                       .from = policy::SourceSpec::env(key),
                       .hosts = tf.hosts,
                       .inject = tf.inject});
      if (j == 0) {
        // The file's capture rules ride on its first value: scoped like it, written back here.
        specs.back().capture = capture_specs(tf.capture);
        specs.back().token_file = path;
        specs.back().token_copy = fmt::format("{}/token-file-{}", session_dir, masked.size());
      }
      m.names.push_back(name);
      m.values.push_back((*found)[j]);
    }
    masked.push_back(std::move(m));
  }
  return masked;
}

// Every secret read once (the token files' values first, then the caller's variables), the
// placeholders made and given to the box under the credentials' variable names.
base::Status load_credentials(SessionProxy::Impl& impl, std::vector<cred::CredentialSpec> specs,
                              const std::map<std::string, std::string>& caller_env,
                              const std::map<std::string, std::string>& token_values,
                              std::string_view placeholder_key) {
  if (specs.empty()) {
    return base::ok();
  }
  cred::SecretSource source(
      [&caller_env, &token_values](const std::string& k) -> std::optional<std::string> {
        if (auto t = token_values.find(k); t != token_values.end()) {
          return t->second;
        }
        auto it = caller_env.find(k);
        return it == caller_env.end() ? std::nullopt : std::optional<std::string>(it->second);
      });
  auto set =
      cred::CredentialSet::load(std::move(specs), std::move(source), impl.sink, placeholder_key);
  if (!set) {
    return std::move(set).error().context("loading the credentials");
  }
  impl.credentials.emplace(std::move(*set));
  for (auto& [var, placeholder] : impl.credentials->placeholder_env()) {
    impl.env.emplace_back(var, placeholder);
  }
  return base::ok();
}

// Each token file's text with its secrets swapped for their placeholders, in the session folder,
// shown over the real file.
base::Status write_masked_token_files(SessionProxy::Impl& impl, std::vector<MaskedFile> masked,
                                      const std::string& session_dir) {
  for (size_t i = 0; i < masked.size(); ++i) {
    std::vector<std::pair<std::string, std::string>> swaps;
    for (size_t j = 0; j < masked[i].names.size(); ++j) {
      swaps.emplace_back(masked[i].values[j], *impl.credentials->placeholder(masked[i].names[j]));
    }
    std::string file = fmt::format("{}/token-file-{}", session_dir, i);
    AGENTBOX_TRY(
        base::write_file(file, cred::mask_token_text(std::move(masked[i].text), swaps), 0600));
    impl.token_overlays.push_back({.target = masked[i].target, .source = file});
  }
  return base::ok();
}

// The ProxyHandler's options from the policy (rules, inspected hosts, raw TCP, upstream CAs,
// limits, the budget) and the inputs of the box's trust material.
TrustInputs set_proxy_options(SessionProxy::Impl& impl, const config::Policy& policy,
                              const std::map<std::string, std::string>& caller_env,
                              const std::string& home, const std::string& session_dir) {
  proxy::ProxyOptions& o = impl.options;
  for (const auto& r : policy.http_rules) {
    o.http_rules.push_back({.origin = r.origin.describe(),
                            .host = r.host,
                            .methods = r.methods,
                            .paths = r.paths,
                            .max_body = r.max_body});
  }
  // Passthrough hosts to intercept only for the checks (Host = SNI, placeholders): the allow
  // rules marked `inspect = true`, or every allowed name with --inspect-all.
  for (const auto& r : policy.inspect_all.value ? policy.net_allow : policy.inspect) {
    auto rule = policy::EgressRule::parse(r.value);
    if (const auto* host = rule ? std::get_if<policy::HostPattern>(&rule->target) : nullptr) {
      o.inspect.push_back(host->to_string());
    }
  }
  for (const auto& r : policy.raw_tcp) {
    o.raw_tcp.push_back(r.value);
  }
  for (const auto& ca : policy.upstream_ca) {
    o.upstream_ca.push_back(expand_home(ca.value, home));
  }
  TrustInputs trust{.java_home = env_value(caller_env, "JAVA_HOME"),
                    .path = env_value(caller_env, "PATH"),
                    .runtime_dir = env_value(caller_env, "XDG_RUNTIME_DIR"),
                    .session_dir = session_dir};
  for (const auto& ca : policy.trust_ca) {
    // The box trusts it, so the proxy does too when one of its hosts is intercepted.
    o.upstream_ca.push_back(expand_home(ca.value, home));
    trust.trust_ca.emplace_back(expand_home(ca.value, home), ca.origin.describe());
  }
  o.max_connections = policy.max_flows.value;
  o.max_intercepted = policy.max_intercepted.value;
  // A learning run intercepts every name to record methods and paths: its CA permits any name.
  o.inspect_every = policy.learn.value;
  impl.budget.emplace(budget_limits(policy.budget), proxy::PriceTable{}, impl.sink);
  impl.budget->price_lazily(price_loader(policy));
  o.budget = &*impl.budget;
  for (const auto& f : trust_store_files()) {
    if (is_file(f)) {
      o.system_bundle = f;
      break;
    }
  }
  trust.system_bundle = o.system_bundle;
  return trust;
}

// A CA only when something must be intercepted: a session without credentials or HTTP rules
// decrypts nothing and the box's trust stores stay as they are (unless trust_ca adds to them).
base::Status make_session_ca(SessionProxy::Impl& impl) {
  const proxy::ProxyOptions& o = impl.options;
  auto hosts = proxy::ProxyHandler::intercept_hosts(
      o.http_rules, impl.credentials ? &*impl.credentials : nullptr, o.inspect);
  if (hosts.empty() && !o.inspect_every) {
    return base::ok();
  }
  auto ca = proxy::SessionCa::create({.hosts = hosts, .any_name = o.inspect_every});
  if (!ca) {
    return std::move(ca).error().context("making the session CA");
  }
  impl.ca.emplace(std::move(*ca));
  impl.sink->emit(audit::Event("proxy.ca")
                      .str("hosts", o.inspect_every ? std::string("* (--learn)")
                                                    : fmt::format("{}", fmt::join(hosts, " ")))
                      .str("bundle", kBoxBundle));
  return base::ok();
}

// git asks a credential helper for https passwords: hand it the placeholder of each basic-auth
// credential for its hosts (the proxy swaps it on the way out).
void add_git_credential_helpers(SessionProxy::Impl& impl, const config::Policy& policy) {
  int n = 0;
  for (const auto& [name, c] : policy.credentials) {
    if (c.inject.kind != policy::InjectKind::kBasic || c.env.empty()) {
      continue;
    }
    for (const auto& h : c.hosts) {
      impl.env.emplace_back(fmt::format("GIT_CONFIG_KEY_{}", n),
                            fmt::format("credential.https://{}.helper", h));
      impl.env.emplace_back(
          fmt::format("GIT_CONFIG_VALUE_{}", n),
          fmt::format("!f() {{ test \"$1\" = get || exit 0; echo username=x-access-token; "
                      "echo \"password=${}\"; }}; f",
                      c.env));
      ++n;
    }
  }
  if (n > 0) {
    impl.env.emplace_back("GIT_CONFIG_COUNT", std::to_string(n));
  }
}

}  // namespace

Result<std::unique_ptr<SessionProxy>> SessionProxy::create(
    const config::Policy& policy, const std::map<std::string, std::string>& caller_env,
    const std::string& home, const std::string& session_dir, audit::Sink& sink,
    std::string_view placeholder_key) {
  auto impl = std::make_unique<Impl>();
  impl->sink = &sink;
  std::vector<cred::CredentialSpec> specs;
  AGENTBOX_TRY(add_credential_specs(*impl, policy, caller_env, home, specs));
  std::map<std::string, std::string> token_values;
  AGENTBOX_ASSIGN_OR_RETURN(auto masked,
                            add_token_file_specs(policy, home, session_dir, specs, token_values));
  AGENTBOX_TRY(
      load_credentials(*impl, std::move(specs), caller_env, token_values, placeholder_key));
  AGENTBOX_TRY(write_masked_token_files(*impl, std::move(masked), session_dir));
  TrustInputs trust = set_proxy_options(*impl, policy, caller_env, home, session_dir);
  AGENTBOX_TRY(make_session_ca(*impl));
  trust.session_ca = impl->ca ? impl->ca->cert() : nullptr;
  warn_unused_upstream_ca(policy, impl->ca ? &*impl->ca : nullptr);
  AGENTBOX_ASSIGN_OR_RETURN(BoxTrust box_trust, make_box_trust(trust));
  impl->trust_overlays = std::move(box_trust.overlays);
  impl->trust_files = std::move(box_trust.written);
  impl->env.insert(impl->env.end(), box_trust.env.begin(), box_trust.env.end());
  add_git_credential_helpers(*impl, policy);
  return std::unique_ptr<SessionProxy>(new SessionProxy(std::move(impl)));
}

std::vector<std::pair<std::string, std::string>> SessionProxy::box_env() const {
  return impl_->env;
}

std::vector<sandbox::Overlay> SessionProxy::overlays() const {
  std::vector<sandbox::Overlay> out = impl_->token_overlays;
  out.insert(out.end(), impl_->trust_overlays.begin(), impl_->trust_overlays.end());
  return out;
}

const std::set<std::string>& SessionProxy::secret_env_sources() const {
  return impl_->secret_sources;
}

Result<std::unique_ptr<net::FlowHandler>> SessionProxy::make_handler(
    event::Loop& loop, const policy::EgressPolicy& policy,
    const std::vector<net::ConnectTo>& overrides) {
  proxy::ProxyOptions options = impl_->options;
  options.connect_to = overrides;
  auto h = proxy::ProxyHandler::create(loop, policy, std::move(options),
                                       impl_->credentials ? &*impl_->credentials : nullptr,
                                       impl_->ca ? &*impl_->ca : nullptr, *impl_->sink);
  if (!h) {
    return std::move(h).error().context("starting the proxy");
  }
  impl_->handler = std::move(*h);
  return std::unique_ptr<net::FlowHandler>(new Forward(impl_->handler));
}

namespace {

// One line for the connections whose client refused the session CA (TLS alert unknown_ca,
// bad_certificate, certificate_unknown...): the host and the likely fix. Host names come from
// the box: the log's escaping keeps control bytes off the terminal, and only a few are named.
std::string ca_refused_line(const proxy::ProxyCounters& c) {
  std::string hosts = fmt::format("{}", fmt::join(c.ca_refused_hosts, ", "));
  if (c.ca_refused_hosts.size() >= proxy::ProxyCounters::kMaxRefusedHosts) {
    hosts += ", ...";
  }
  return fmt::format(
      "proxy: a client in the box rejected the session CA for {} ({} TLS connection{}): the "
      "program does not read the box's trust store (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, "
      "REQUESTS_CA_BUNDLE and the other variables the box sets, /etc/ssl/certs, the JVM's "
      "cacerts); point it at {} (or a JVM at {}), or stop intercepting that host (no `inspect` "
      "rule, credential or HTTP rule for it)",
      hosts, c.ca_refused, c.ca_refused == 1 ? "" : "s", kBoxBundle, kBoxJavaStore);
}

}  // namespace

std::vector<std::string> SessionProxy::finish() {
  if (impl_->handler) {
    impl_->last = impl_->handler->counters();
    impl_->handler.reset();
  }
  // The box is gone: its trust files have no reader left, and the session folder is kept.
  remove_box_trust(impl_->trust_files);
  impl_->trust_files.clear();
  const proxy::ProxyCounters& c = impl_->last;
  std::vector<std::string> lines;
  for (auto& line : impl_->budget->summary()) {
    lines.push_back("proxy: " + std::move(line));
  }
  if (impl_->credentials) {
    for (auto& line : impl_->credentials->budget_summary()) {
      lines.push_back("proxy: " + std::move(line));
    }
  }
  if (c.requests > 0 || c.intercepted > 0) {
    lines.push_back(
        fmt::format("proxy: {} HTTP request{} ({} answered by agentbox: denied or "
                    "failed), {} TLS connection{} intercepted",
                    c.requests, c.requests == 1 ? "" : "s", c.denied, c.intercepted,
                    c.intercepted == 1 ? "" : "s"));
  }
  if (c.ca_refused > 0) {
    lines.push_back(ca_refused_line(c));
  }
  if (const uint64_t other = c.dropped - c.ca_refused; other > 0) {
    lines.push_back(
        fmt::format("proxy: {} connection{} dropped (not TLS or HTTP, a failed TLS "
                    "handshake, names that disagree, CONNECT: the audit log says which)",
                    other, other == 1 ? "" : "s"));
  }
  return lines;
}

bool SessionProxy::revoke(const std::string& name) {
  if (!impl_->credentials || !impl_->credentials->revoke(name)) {
    return false;
  }
  return true;
}

bool SessionProxy::asks() const {
  return impl_->credentials && impl_->credentials->asks();
}

void SessionProxy::use_approver(policy::Approver* approver) {
  if (impl_->credentials) {
    impl_->credentials->set_approver(approver);
  }
}

base::Status SessionProxy::rotate(const std::string& name) {
  if (!impl_->credentials) {
    return base::Error::msg(fmt::format("the session has no credential `{}` (it has: none)", name));
  }
  return impl_->credentials->rotate(name);
}

base::Status SessionProxy::set_credential_budget(const std::string& name,
                                                 const cred::CredentialSet::BudgetSetting& s) {
  if (!impl_->credentials) {
    return base::Error::msg(fmt::format("the session has no credential `{}` (it has: none)", name));
  }
  return impl_->credentials->set_budget(name, s);
}

proxy::SessionBudget& SessionProxy::budget() {
  return *impl_->budget;
}

std::vector<cred::CredentialSet::State> SessionProxy::credentials() const {
  if (impl_->credentials) {
    return impl_->credentials->state();
  }
  std::vector<cred::CredentialSet::State> out;
  for (const auto& name : impl_->names) {
    out.push_back({.name = name});
  }
  return out;
}

}  // namespace agentbox::app
