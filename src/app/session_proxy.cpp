// The session's L7 proxy: credentials, CA and trust material for the box, the ProxyHandler.
#include "agentbox/app/session_proxy.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <optional>

#include "agentbox/base/log.hpp"
#include "agentbox/base/sys.hpp"
#include "agentbox/config/load.hpp"
#include "agentbox/proxy/credentials.hpp"
#include "agentbox/proxy/http_rules.hpp"
#include "agentbox/proxy/proxy_handler.hpp"
#include "agentbox/proxy/tls_ca.hpp"
#include "agentbox/proxy/token_file.hpp"

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

std::string expand_home(const std::string& path, const std::string& home) {
  if (path == "~") {
    return home;
  }
  if (path.rfind("~/", 0) == 0) {
    return home + path.substr(1);
  }
  return path;
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

base::Status write_file(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    return Error::sys(errno, "open", path);
  }
  base::UniqueFd f(fd);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Error::sys(errno, "write", path);
    }
    off += static_cast<size_t>(n);
  }
  return base::ok();
}

}  // namespace

struct SessionProxy::Impl {
  audit::Sink* sink = nullptr;
  std::optional<proxy::CredentialSet> credentials;
  std::optional<proxy::SessionCa> ca;
  proxy::ProxyOptions options;
  std::string bundle_path;  // host path of the merged bundle (session folder)
  std::string cert_dir;     // host path of the hashed CA directory
  std::vector<std::pair<std::string, std::string>> env;
  std::set<std::string> secret_sources;
  std::vector<sandbox::Overlay> token_overlays;  // masked token files
  std::unique_ptr<proxy::ProxyHandler> handler;
  proxy::ProxyCounters last;  // counters kept after the handler is gone
};

SessionProxy::SessionProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SessionProxy::~SessionProxy() = default;

Result<std::unique_ptr<SessionProxy>> SessionProxy::create(
    const config::Policy& policy, const std::map<std::string, std::string>& caller_env,
    const std::string& home, const std::string& session_dir, audit::Sink& sink) {
  auto impl = std::make_unique<Impl>();
  impl->sink = &sink;

  std::vector<proxy::CredentialSpec> specs;
  for (const auto& [name, c] : policy.credentials) {
    if (c.from.rfind("env:", 0) == 0 && caller_env.count(c.from.substr(4)) == 0) {
      // Nothing to protect and nothing to give: the box simply has no such variable. Profiles
      // name the usual variables (ANTHROPIC_API_KEY) that many users do not set (OAuth logins),
      // so only a credential of the user's own config says so out loud.
      bool shipped = false;
      for (const auto& dir : config::default_profile_dirs()) {
        shipped = shipped || c.origin.source.rfind(dir + "/", 0) == 0;
      }
      if (shipped) {
        base::log::debug("credential `{}`: {} is not set; the box gets no {}", name,
                         c.from.substr(4), c.env);
      } else {
        base::log::warn("credential `{}` ({}): {} is not set; the box gets no {}", name,
                        c.origin.describe(), c.from.substr(4), c.env);
      }
      impl->secret_sources.insert(c.from.substr(4));
      continue;
    }
    specs.push_back({.name = c.name,
                     .env = c.env,
                     .from = c.from.rfind("file:", 0) == 0
                                 ? "file:" + expand_home(c.from.substr(5), home)
                                 : c.from,
                     .hosts = c.hosts,
                     .inject = c.inject,
                     .placeholder_prefix = c.placeholder_prefix,
                     .ttl_seconds = c.ttl_seconds,
                     .format = c.format,
                     .body = c.body});
    if (c.from.rfind("env:", 0) == 0) {
      impl->secret_sources.insert(c.from.substr(4));
    }
  }
  // Token files: each value to mask becomes a credential scoped to the file's hosts, read
  // through a private name that no environment variable can have.
  std::map<std::string, std::string> token_values;
  struct Masked {
    std::string target;
    std::string text;
    std::vector<std::string> names;
    std::vector<std::string> values;
  };
  std::vector<Masked> masked;
  for (size_t i = 0; i < policy.token_files.size(); ++i) {
    const config::TokenFile& tf = policy.token_files[i];
    std::string path = expand_home(tf.path, home);
    auto text = base::read_file(path, size_t{1} << 20);
    if (!text) {
      base::log::warn("token file `{}` ({}): {}: not shown", tf.path, tf.origin.describe(),
                      text.error().message());
      continue;
    }
    auto values =
        proxy::find_token_secrets(*text, {.json_fields = tf.json_fields, .regexes = tf.regexes});
    if (!values) {
      return std::move(values).error().context(
          fmt::format("token file `{}` ({})", tf.path, tf.origin.describe()));
    }
    Masked m{.target = path, .text = std::move(*text)};
    for (size_t j = 0; j < values->size(); ++j) {
      std::string key = fmt::format("@token_file/{}/{}", i, j);
      std::string name = fmt::format("{}#{}", tf.path, j + 1);
      token_values[key] = (*values)[j];
      specs.push_back({.name = name, .from = "env:" + key, .hosts = tf.hosts, .inject = tf.inject});
      m.names.push_back(name);
      m.values.push_back((*values)[j]);
    }
    masked.push_back(std::move(m));
  }
  if (!specs.empty()) {
    proxy::SecretSource source(
        [&caller_env, &token_values](const std::string& k) -> std::optional<std::string> {
          if (auto t = token_values.find(k); t != token_values.end()) {
            return t->second;
          }
          auto it = caller_env.find(k);
          return it == caller_env.end() ? std::nullopt : std::optional<std::string>(it->second);
        });
    auto set = proxy::CredentialSet::load(std::move(specs), std::move(source), &sink);
    if (!set) {
      return std::move(set).error().context("loading the credentials");
    }
    impl->credentials.emplace(std::move(*set));
    for (auto& [var, placeholder] : impl->credentials->placeholder_env()) {
      impl->env.emplace_back(var, placeholder);
    }
  }
  for (size_t i = 0; i < masked.size(); ++i) {
    std::vector<std::pair<std::string, std::string>> swaps;
    for (size_t j = 0; j < masked[i].names.size(); ++j) {
      swaps.emplace_back(masked[i].values[j], *impl->credentials->placeholder(masked[i].names[j]));
    }
    std::string file = fmt::format("{}/token-file-{}", session_dir, i);
    AGENTBOX_TRY(write_file(file, proxy::mask_token_text(std::move(masked[i].text), swaps), 0600));
    impl->token_overlays.push_back({.target = masked[i].target, .source = file});
  }

  for (const auto& r : policy.http_rules) {
    impl->options.http_rules.push_back({.origin = r.origin.describe(),
                                        .host = r.host,
                                        .methods = r.methods,
                                        .paths = r.paths,
                                        .max_body = r.max_body});
  }
  for (const auto& r : policy.raw_tcp) {
    impl->options.raw_tcp.push_back(r.value);
  }
  for (const auto& ca : policy.upstream_ca) {
    impl->options.upstream_ca.push_back(expand_home(ca.value, home));
  }
  impl->options.max_connections = policy.max_flows.value;
  for (const auto& f : trust_store_files()) {
    if (is_file(f)) {
      impl->options.system_bundle = f;
      break;
    }
  }

  // A CA only when something must be intercepted: a session without credentials or HTTP rules
  // decrypts nothing and the box's trust stores stay as they are.
  auto hosts = proxy::ProxyHandler::intercept_hosts(
      impl->options.http_rules, impl->credentials ? &*impl->credentials : nullptr);
  if (!hosts.empty()) {
    auto ca = proxy::SessionCa::create({.hosts = hosts});
    if (!ca) {
      return std::move(ca).error().context("making the session CA");
    }
    impl->ca.emplace(std::move(*ca));
    AGENTBOX_ASSIGN_OR_RETURN(std::string bundle,
                              proxy::merged_trust_bundle(impl->options.system_bundle, *impl->ca));
    impl->bundle_path = session_dir + "/ca-bundle.pem";
    AGENTBOX_TRY(write_file(impl->bundle_path, bundle, 0644));
    // The hashed directory form (`openssl rehash`), for clients that look up by subject hash.
    impl->cert_dir = session_dir + "/certs";
    if (::mkdir(impl->cert_dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Error::sys(errno, "mkdir", impl->cert_dir);
    }
    AGENTBOX_TRY(write_file(
        fmt::format("{}/{:08x}.0", impl->cert_dir, X509_subject_name_hash(impl->ca->cert())),
        impl->ca->pem(), 0644));
    for (const auto& name : trust_env_names()) {
      impl->env.emplace_back(name, kBoxBundle);
    }
    impl->env.emplace_back("SSL_CERT_DIR", fmt::format("{}:/etc/ssl/certs", kBoxCertDir));
    sink.emit(audit::Event("proxy.ca")
                  .str("hosts", fmt::format("{}", fmt::join(hosts, " ")))
                  .str("bundle", impl->bundle_path));
  }

  // git asks a credential helper for https passwords: hand it the placeholder of each basic-auth
  // credential for its hosts (the proxy swaps it on the way out).
  int n = 0;
  for (const auto& [name, c] : policy.credentials) {
    if (c.inject != "basic" || c.env.empty()) {
      continue;
    }
    for (const auto& h : c.hosts) {
      impl->env.emplace_back(fmt::format("GIT_CONFIG_KEY_{}", n),
                             fmt::format("credential.https://{}.helper", h));
      impl->env.emplace_back(
          fmt::format("GIT_CONFIG_VALUE_{}", n),
          fmt::format("!f() {{ test \"$1\" = get || exit 0; echo username=x-access-token; "
                      "echo \"password=${}\"; }}; f",
                      c.env));
      ++n;
    }
  }
  if (n > 0) {
    impl->env.emplace_back("GIT_CONFIG_COUNT", std::to_string(n));
  }
  return std::unique_ptr<SessionProxy>(new SessionProxy(std::move(impl)));
}

std::vector<std::pair<std::string, std::string>> SessionProxy::box_env() const {
  return impl_->env;
}

std::vector<sandbox::Overlay> SessionProxy::overlays() const {
  std::vector<sandbox::Overlay> out = impl_->token_overlays;
  if (impl_->bundle_path.empty()) {
    return out;
  }
  out.push_back({.target = kBoxBundle, .source = impl_->bundle_path});
  out.push_back({.target = kBoxCertDir, .source = impl_->cert_dir, .dir = true});
  // Links (Debian's /usr/lib/ssl/cert.pem, Fedora's ca-bundle.crt) are resolved: a bind lands
  // on the file they lead to, once.
  std::set<std::string> seen;
  for (const auto& f : trust_store_files()) {
    char buf[PATH_MAX];
    if (is_file(f) && ::realpath(f.c_str(), buf) != nullptr && seen.insert(buf).second) {
      out.push_back({.target = buf, .source = impl_->bundle_path});
    }
  }
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

std::vector<std::string> SessionProxy::finish() {
  if (impl_->handler) {
    impl_->last = impl_->handler->counters();
    impl_->handler.reset();
  }
  const proxy::ProxyCounters& c = impl_->last;
  std::vector<std::string> lines;
  if (c.requests > 0 || c.intercepted > 0) {
    lines.push_back(
        fmt::format("proxy: {} HTTP request{} ({} answered by agentbox: denied or "
                    "failed), {} TLS connection{} intercepted",
                    c.requests, c.requests == 1 ? "" : "s", c.denied, c.intercepted,
                    c.intercepted == 1 ? "" : "s"));
  }
  if (c.dropped > 0) {
    lines.push_back(fmt::format(
        "proxy: {} connection{} dropped (not TLS or HTTP, names that disagree, CONNECT)", c.dropped,
        c.dropped == 1 ? "" : "s"));
  }
  return lines;
}

}  // namespace agentbox::app
