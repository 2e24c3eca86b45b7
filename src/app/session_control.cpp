// The session's control verbs (session_control.hpp, docs/CONTROL.md).
#include "agentbox/app/session_control.hpp"

#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <ctime>

#include "agentbox/app/approvals.hpp"
#include "agentbox/app/desktop_notify.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/config/append.hpp"
#include "agentbox/config/units.hpp"
#include "agentbox/control/runtime_dir.hpp"
#include "agentbox/control/server.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using control::Peer;
using control::Request;
using nlohmann::json;

struct SessionControl::Impl {
  Impl(event::Loop& l, ControlInfo i, audit::JsonlSink& s, SessionNetwork* n, SessionProxy& p)
      : loop(l), info(std::move(i)), sink(s), network(n), proxy(p) {}
  event::Loop& loop;
  ControlInfo info;
  audit::JsonlSink& sink;
  SessionNetwork* network;  // null with `--network none`: no rules to show or change
  SessionProxy& proxy;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::time_t started_wall = std::time(nullptr);
  std::unique_ptr<control::Server> server;
  // Declared before approvals: it outlives the queue, whose end closes every notification.
  std::unique_ptr<DesktopNotify> notify;  // when there is a desktop (network.ask_desktop)
  std::unique_ptr<Approvals> approvals;   // when the network asks (network.ask)
  event::WatchId kill_timer = 0;

  void wire();
  void emit(const char* type, const Peer& peer, const std::function<void(audit::Event&)>& more) {
    audit::Event ev(type);
    ev.num("by_uid", peer.uid).num("by_pid", peer.pid);
    more(ev);
    sink.emit(ev);
  }
  json status() const;
  json policy() const;
  Result<json> stop(const Request& r, const Peer& peer);
  Result<json> allow(const Request& r, const Peer& peer, bool deny);
  Result<json> revoke(const Request& r, const Peer& peer);
  Result<json> rotate(const Request& r, const Peer& peer);
  Result<json> budget(const Request& r, const Peer& peer);
  json questions() const;
  Result<json> approve(const Request& r, const Peer& peer);
  std::string widen_host(const policy::Question& q, policy::Answer a, const Approvals::Who& w);
  void start_notify(const std::map<std::string, std::string>& env);
};

namespace {

// Now in UTC: the date alone, or date and time (ISO 8601).
std::string utc_now(bool date_only) {
  std::time_t now = std::time(nullptr);
  struct tm tm {};
  ::gmtime_r(&now, &tm);
  char ts[32];
  if (date_only) {
    std::strftime(ts, sizeof ts, "%Y-%m-%d", &tm);
  } else {
    std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  }
  return ts;
}

std::string who(const Peer& p) {
  return fmt::format("uid {} pid {} at {}", p.uid, p.pid, utc_now(false));
}

Result<std::string> required(const Request& r, const std::string& key) {
  std::string v = r.arg(key);
  if (v.empty()) {
    return Error::msg(fmt::format("`{}` needs the argument `{}`", r.verb, key));
  }
  return v;
}

template <typename T>
json maybe(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

// One credential's state and budgets (`ps --json`, `policy`, `budget --credential`).
json credential_json(const cred::CredentialSet::State& c) {
  json one = {{"name", c.name},
              {"revoked", c.revoked},
              {"refreshing", c.refreshing},
              {"requests", c.requests},
              {"bytes", c.bytes},
              {"refused", c.refused},
              {"limits",
               {{"max_requests", maybe(c.max_requests)},
                {"max_bytes", maybe(c.max_bytes)},
                {"methods", c.methods.empty() ? json(nullptr) : json(c.methods)},
                {"expires_in_s", maybe(c.expires_in_s)}}}};
  if (!c.failure.empty()) {
    one["failure"] = c.failure;
  }
  return one;
}

json credentials_json(const SessionProxy& proxy) {
  json creds = json::array();
  for (const auto& c : proxy.credentials()) {
    creds.push_back(credential_json(c));
  }
  return creds;
}

std::optional<uint64_t> count(const std::string& v) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  return ec == std::errc() && end == v.data() + v.size() ? std::optional(n) : std::nullopt;
}

// `KEY=VALUE` of `agentbox budget SESSION --credential NAME`: the config's keys and units
// (max_bytes "2M", expires "10m" from now or "now"); KEY=none removes the budget.
Result<cred::CredentialSet::BudgetSetting> credential_setting(const std::string& key,
                                                              const std::string& value) {
  using cred::Budget;
  cred::CredentialSet::BudgetSetting s{.key = cred::budget_named(key), .value = {}, .methods = {}};
  const bool none = value == "none";
  auto bad = [&](const char* what) {
    return Error::msg(
        fmt::format("credential budget {} = `{}`: not {} (or `none`)", key, value, what));
  };
  if (s.key == Budget::kNone) {
    return Error::msg(fmt::format(
        "no credential budget `{}` (there are: max_requests, max_bytes, methods, expires)", key));
  }
  if (s.key == Budget::kMethods) {
    for (size_t at = 0; !none && at <= value.size();) {
      const size_t comma = std::min(value.find(',', at), value.size());
      std::string m = value.substr(at, comma - at);
      if (m.empty() || !std::all_of(m.begin(), m.end(), [](char ch) {
            return (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_';  // as the config's check
          })) {
        return bad("HTTP methods in upper case, comma-separated (e.g. GET,HEAD)");
      }
      s.methods.push_back(std::move(m));
      at = comma + 1;
    }
  } else if (!none) {
    s.value = s.key == Budget::kRequests ? count(value)
              : s.key == Budget::kBytes  ? config::parse_size(value)
              : value == "now"           ? std::optional<uint64_t>(0)
                                         : config::parse_duration(value);
    if (!s.value) {
      return bad(s.key == Budget::kRequests ? "a number of requests"
                 : s.key == Budget::kBytes  ? "a size (e.g. 2M)"
                                            : "a duration from now (e.g. 10m) or `now`");
    }
  }
  return s;
}

Error no_credential(const SessionProxy& proxy, const std::string& name) {
  std::string names;
  for (const auto& c : proxy.credentials()) {
    names += fmt::format("{}{}", names.empty() ? "" : ", ", c.name);
  }
  return Error::msg(fmt::format("the session has no credential `{}` (it has: {})", name,
                                names.empty() ? "none" : names));
}

}  // namespace

json use_json(const proxy::SessionBudget::Use& u) {
  return {{"responses", u.responses},
          {"input_tokens", u.tokens.input},
          {"output_tokens", u.tokens.output},
          {"cached_tokens", u.tokens.cached},
          {"cost", u.dollars ? json(*u.dollars) : json(nullptr)}};
}

// The session's budgets and model usage (`ps --json`, `agentbox budget`).
json budget_json(const proxy::SessionBudget& b) {
  const auto& l = b.limits();
  json limits = {
      {"egress", l.egress ? json(*l.egress) : json(nullptr)},
      {"requests_per_host", l.requests_per_host ? json(*l.requests_per_host) : json(nullptr)},
      {"spend", l.spend ? json(*l.spend) : json(nullptr)},
      {"connections_per_minute",
       l.connections_per_minute ? json(*l.connections_per_minute) : json(nullptr)}};
  json refused = json::object();
  for (const auto& [limit, n] : b.refused()) {
    refused[std::string(proxy::limit_key(limit))] = n;
  }
  json models = json::object();
  for (const auto& [model, u] : b.models()) {
    models[model] = use_json(u);
  }
  json creds = json::object();
  for (const auto& [name, u] : b.credentials()) {
    creds[name] = use_json(u);
  }
  return {{"limits", limits},
          {"egress", b.egress()},
          {"spent", b.spent()},
          {"unpriced", b.unpriced()},
          {"refused", refused},
          {"models", models},
          {"credentials", creds},
          {"connections_last_minute", b.connections_last_minute(std::chrono::steady_clock::now())}};
}

std::string short_id(const std::string& id) {
  return control::short_id(id).value_or(id);
}

json SessionControl::Impl::status() const {
  SessionNetwork::Counts c = network != nullptr ? network->counts() : SessionNetwork::Counts{};
  auto tally = sink.tally().snapshot();
  uint64_t denials = c.denied;
  for (const auto& [type, n] : tally) {
    if (type != "net.deny" && type != "dns.query" && type.find("deny") != std::string::npos) {
      denials += n;  // proxy and seccomp denials (net's are counted by the network)
    }
  }
  json creds = credentials_json(proxy);
  auto up =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
  json labels = json::object();
  for (const auto& [k, v] : info.labels) {
    labels[k] = v;
  }
  return {{"id", short_id(info.id)},
          {"session", info.id},
          {"pid", info.pid},
          {"program", info.argv.empty() ? "" : info.argv[0]},
          {"argv", info.argv},
          {"workspace", info.workspace},
          {"config", info.config_files},
          {"profile", info.profile},
          {"labels", labels},
          {"audit", info.session_dir + "/audit.jsonl"},
          {"started", started_wall},
          {"uptime_s", up.count()},
          {"flows", {{"allowed", c.allowed}, {"open", c.open}, {"failed", c.failed}}},
          {"bytes", {{"up", c.bytes_up}, {"down", c.bytes_down}}},
          {"denials", denials},
          {"credentials", creds},
          {"budget", budget_json(proxy.budget())},
          {"events", tally}};
}

json SessionControl::Impl::policy() const {
  json rules = json::array();
  auto lines = network != nullptr ? network->rules() : std::vector<SessionNetwork::RuleLine>{};
  for (const auto& r : lines) {
    rules.push_back({{"verdict", r.verdict}, {"rule", r.rule}, {"origin", r.origin}});
  }
  json creds = credentials_json(proxy);
  return {{"rules", rules}, {"credentials", creds}};
}

Result<json> SessionControl::Impl::stop(const Request& r, const Peer& peer) {
  std::string g = r.arg("grace", "5");
  unsigned grace = 0;
  auto [end, ec] = std::from_chars(g.data(), g.data() + g.size(), grace);
  if (ec != std::errc() || end != g.data() + g.size() || grace > 3600) {
    return Error::msg(fmt::format("grace `{}` is not a number of seconds from 0 to 3600", g));
  }
  emit("control.stop", peer, [&](audit::Event& ev) { ev.num("grace_s", grace); });
  AGENTBOX_TRY(info.signal(grace == 0 ? SIGKILL : SIGTERM));
  if (grace != 0 && kill_timer == 0) {
    auto t =
        loop.add_timer(std::chrono::seconds(grace), std::chrono::milliseconds(0), [this](uint64_t) {
          kill_timer = 0;
          [[maybe_unused]] auto k = info.signal(SIGKILL);
        });
    kill_timer = t ? *t : 0;
  }
  return json{{"signalled", grace == 0 ? "KILL" : "TERM"}, {"grace_s", grace}};
}

Result<json> SessionControl::Impl::allow(const Request& r, const Peer& peer, bool deny) {
  if (network == nullptr) {
    return base::Error::msg(
        "this session has no network (`--network none`): nothing to allow or deny");
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string text, required(r, "rule"));
  // `deny HOST` without a port denies every port (and the DNS answer): HOST:*.
  auto rule = policy::EgressRule::parse(deny ? text + ":*" : text);
  if (deny && !rule) {
    rule = policy::EgressRule::parse(text);  // it named a port
  }
  if (!rule) {
    return std::move(rule).error().context(fmt::format("rule `{}`", text));
  }
  std::string written = rule->text;
  config::Origin origin{.source =
                            fmt::format("agentbox {} by {}", deny ? "deny" : "allow", who(peer))};
  size_t cut = 0;
  if (deny) {
    cut = network->deny(std::move(*rule), std::move(origin));
  } else {
    network->allow(std::move(*rule), std::move(origin));
  }
  emit(deny ? "control.deny" : "control.allow", peer, [&](audit::Event& ev) {
    ev.str("rule", written);
    if (deny) {
      ev.num("flows_reset", static_cast<int64_t>(cut));
    }
  });
  base::log::debug("control: {} `{}` ({})", deny ? "deny" : "allow", written, who(peer));
  return json{{"rule", written}, {"flows_reset", cut}};
}

Result<json> SessionControl::Impl::revoke(const Request& r, const Peer& peer) {
  AGENTBOX_ASSIGN_OR_RETURN(std::string name, required(r, "credential"));
  if (!proxy.revoke(name)) {
    return no_credential(proxy, name);
  }
  emit("control.revoke", peer, [&](audit::Event& ev) { ev.str("credential", name); });
  return json{{"credential", name}, {"revoked", true}};
}

// `agentbox rotate SESSION CREDENTIAL`: the re-read starts now; the client polls `policy` for
// its outcome (a cmd: source may take its whole timeout, and the loop never waits for it).
Result<json> SessionControl::Impl::rotate(const Request& r, const Peer& peer) {
  AGENTBOX_ASSIGN_OR_RETURN(std::string name, required(r, "credential"));
  const auto creds = proxy.credentials();
  if (std::none_of(creds.begin(), creds.end(), [&](const auto& c) { return c.name == name; })) {
    return no_credential(proxy, name);
  }
  AGENTBOX_TRY(proxy.rotate(name));
  emit("control.rotate", peer, [&](audit::Event& ev) { ev.str("credential", name); });
  base::log::debug("control: rotate {} ({})", name, who(peer));
  return json{{"credential", name}, {"rotating", true}};
}

// `agentbox budget SESSION [--credential NAME] KEY=VALUE`: a session budget, or a credential's,
// changed live (none removes it); audited with who changed it.
Result<json> SessionControl::Impl::budget(const Request& r, const Peer& peer) {
  AGENTBOX_ASSIGN_OR_RETURN(std::string setting, required(r, "set"));
  const std::string name = r.arg("credential");
  const auto eq = setting.find('=');
  if (eq == std::string::npos) {
    return Error::msg(fmt::format(
        "`{}` is not KEY=VALUE (e.g. {}, or KEY=none)", setting,
        name.empty() ? "spend=10, egress=500000000, requests_per_host=100, "
                       "connections_per_minute=600"
                     : "max_requests=100, max_bytes=10M, methods=GET,HEAD, expires=10m"));
  }
  const std::string key = setting.substr(0, eq);
  const std::string value = setting.substr(eq + 1);
  if (name.empty()) {
    if (auto err = proxy.budget().set(key, value); !err.empty()) {
      return Error::msg(err);
    }
  } else {
    AGENTBOX_ASSIGN_OR_RETURN(auto s, credential_setting(key, value));
    if (auto st = proxy.set_credential_budget(name, s); !st) {
      return no_credential(proxy, name);
    }
  }
  emit("control.budget", peer, [&](audit::Event& ev) {
    if (!name.empty()) {
      ev.str("credential", name);
    }
    ev.str("budget", key).str("value", value);
  });
  base::log::debug("control: budget {}{} = {} ({})", name.empty() ? "" : name + ".", key, value,
                   who(peer));
  if (!name.empty()) {
    for (const auto& c : proxy.credentials()) {
      if (c.name == name) {
        return json{{"credential", credential_json(c)}};
      }
    }
  }
  return budget_json(proxy.budget());
}

json SessionControl::Impl::questions() const {
  json list = json::array();
  if (approvals) {
    for (const auto& p : approvals->pending()) {
      list.push_back({{"id", p.id},
                      {"kind", policy::to_string(p.question.kind)},
                      {"subject", p.question.subject},
                      {"detail", p.question.detail},
                      {"asked", p.asked},
                      {"waits_ms", p.waits_ms}});
    }
  }
  return {{"asking", approvals != nullptr},
          {"timeout_ms", approvals ? approvals->timeout().count() : 0},
          {"pending", list}};
}

Result<json> SessionControl::Impl::approve(const Request& r, const Peer& peer) {
  if (!approvals) {
    return Error::msg(
        "this session asks nothing (no network.ask, network.unlisted = \"deny\", no exec rule "
        "or credential with ask)");
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string id, required(r, "id"));
  AGENTBOX_ASSIGN_OR_RETURN(std::string word, required(r, "answer"));
  AGENTBOX_ASSIGN_OR_RETURN(policy::Answer a, parse_answer(word));
  Approvals::Who by{.uid = peer.uid, .pid = peer.pid};
  AGENTBOX_ASSIGN_OR_RETURN(std::string note, approvals->answer(id, a, by));
  return json{{"id", id}, {"answer", policy::to_string(a)}, {"note", note}};
}

// "session" and "always" for a host: the rule the question named (the name, with the ask
// rule's port) is allowed as `agentbox allow` would; "always" also goes to the user's config.
std::string SessionControl::Impl::widen_host(const policy::Question& q, policy::Answer a,
                                             const Approvals::Who& w) {
  if (q.kind == policy::ApprovalKind::exec) {
    // The exec guard keeps the exact call allowed for the session. Not written: exec rules
    // are first-match, so an allow appended under the user's own `ask` rule would never win.
    return a == policy::Answer::allow_always
               ? "exec rules are not written to the config (an appended allow rule would come "
                 "after your ask rule); allowed for this session only"
               : "";
  }
  if (q.kind == policy::ApprovalKind::credential) {
    // The proxy keeps the credential allowed for the session. Not written: the config says
    // `ask = true` on purpose; remove it there to stop asking.
    return a == policy::Answer::allow_always
               ? "credential approvals are not written to the config (remove `ask` from the "
                 "credential to stop asking); allowed for this session only"
               : "";
  }
  if (q.kind != policy::ApprovalKind::host || network == nullptr) {
    return {};
  }
  auto rule = policy::EgressRule::parse(q.detail);
  if (!rule) {
    return fmt::format("not allowed for the session: {}", rule.error().message());
  }
  Peer peer{.uid = w.uid, .pid = w.pid};
  std::string source =
      !w.via.empty() ? fmt::format("agentbox approve {} by {} at {}", policy::to_string(a), w.via,
                                   utc_now(false))
      : w.pid == 0   ? fmt::format("agentbox run --learn at {}", utc_now(false))
                     : fmt::format("agentbox approve {} by {}", policy::to_string(a), who(peer));
  network->allow(std::move(*rule), {.source = std::move(source)});
  if (a != policy::Answer::allow_always) {
    return {};
  }
  if (info.user_config.empty()) {
    return "not written: no config folder (neither XDG_CONFIG_HOME nor HOME is set); allowed "
           "for this session only";
  }
  auto st = config::append_allow(
      info.user_config, q.detail,
      fmt::format("added by agentbox approve on {} for session {}", utc_now(true), info.id));
  if (!st) {
    base::log::warn("approve always: {}", st.error().message());
    return fmt::format("not written to {}: {}; allowed for this session only", info.user_config,
                       st.error().message());
  }
  return fmt::format("written to {}", info.user_config);
}

// Desktop notifications for the queue (desktop_notify.hpp): the supervisor's environment, never
// the box's; an action answers as `agentbox approve` would, audited "by desktop notification".
void SessionControl::Impl::start_notify(const std::map<std::string, std::string>& env) {
  std::vector<std::string> hidden;
  const auto& trust = trust_env_names();
  for (auto& [name, value] : proxy.box_env()) {
    if (std::find(trust.begin(), trust.end(), name) == trust.end()) {
      hidden.push_back(value);  // a placeholder, or a path: never worth showing either way
    }
  }
  notify = DesktopNotify::start(
      loop, sink, env,
      {.session = short_id(info.id),
       .program = info.argv.empty() ? "the box" : info.argv[0],
       .hidden = std::move(hidden),
       .answer = [this](const std::string& id, policy::Answer a) {
         auto r =
             approvals->answer(id, a, {.uid = ::getuid(), .pid = 0, .via = "desktop notification"});
         if (!r) {
           base::log::debug("desktop notification for {}: {}", id, r.error().message());
         }
       }});
  if (notify) {
    approvals->set_observer(notify.get());
  }
}

void SessionControl::Impl::wire() {
  server->on("approvals",
             [this](const Request&, const Peer&) -> Result<json> { return questions(); });
  server->on("approve", [this](const Request& r, const Peer& p) { return approve(r, p); });
  server->on("status", [this](const Request&, const Peer&) -> Result<json> { return status(); });
  server->on("policy", [this](const Request&, const Peer&) -> Result<json> { return policy(); });
  server->on("stop", [this](const Request& r, const Peer& p) { return stop(r, p); });
  server->on("kill", [this](const Request&, const Peer& p) -> Result<json> {
    emit("control.kill", p, [](audit::Event&) {});
    AGENTBOX_TRY(info.signal(SIGKILL));
    return json{{"signalled", "KILL"}};
  });
  server->on("allow", [this](const Request& r, const Peer& p) { return allow(r, p, false); });
  server->on("deny", [this](const Request& r, const Peer& p) { return allow(r, p, true); });
  server->on("revoke", [this](const Request& r, const Peer& p) { return revoke(r, p); });
  server->on("rotate", [this](const Request& r, const Peer& p) { return rotate(r, p); });
  server->on("budget", [this](const Request& r, const Peer& p) { return budget(r, p); });
  server->on_refused([this](const Peer& p, const std::string& why) {
    emit("control.refused", p, [&](audit::Event& ev) { ev.str("why", why); });
  });
}

Result<std::unique_ptr<SessionControl>> SessionControl::start(
    event::Loop& loop, ControlInfo info, const std::map<std::string, std::string>& env,
    audit::JsonlSink& sink, SessionNetwork* network, SessionProxy& proxy) {
  auto short_id = control::short_id(info.id);
  if (!short_id) {
    return Error::msg(fmt::format("session id `{}` has no short form", info.id));
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string dir, control::runtime_dir(env, true));
  auto impl = std::make_unique<Impl>(loop, std::move(info), sink, network, proxy);
  AGENTBOX_ASSIGN_OR_RETURN(impl->server,
                            control::Server::listen(loop, control::socket_path(dir, *short_id)));
  const bool net_asks = network != nullptr && network->asks();
  if (net_asks || impl->info.exec_asks || proxy.asks()) {
    if (impl->info.user_config.empty()) {
      auto get = [&](const char* k) {
        auto it = env.find(k);
        return it != env.end() ? it->second : std::string();
      };
      impl->info.user_config = config::user_config_file(get("XDG_CONFIG_HOME"), get("HOME"));
    }
    Impl* raw = impl.get();
    impl->approvals = std::make_unique<Approvals>(
        loop, sink, impl->info.ask_timeout,
        [raw](const policy::Question& q, policy::Answer a, const Approvals::Who& w) {
          return raw->widen_host(q, a, w);
        });
    impl->approvals->set_learning(impl->info.learn);
    if (impl->info.ask_desktop && !impl->info.learn) {
      impl->start_notify(env);
    }
    if (net_asks) {
      network->use_approver(impl->approvals.get());
    }
    proxy.use_approver(impl->approvals.get());
  }
  impl->wire();
  sink.emit(audit::Event("control.listen").str("socket", impl->server->path()));
  return std::unique_ptr<SessionControl>(new SessionControl(std::move(impl)));
}

SessionControl::SessionControl(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SessionControl::~SessionControl() {
  impl_->loop.unwatch(impl_->kill_timer);
  if (impl_->approvals && impl_->network != nullptr) {
    impl_->network->use_approver(nullptr);
  }
  // Before the queue goes: a request its denials wake must not ask a queue being destroyed.
  impl_->proxy.use_approver(nullptr);
  impl_->approvals.reset();  // every question still waiting is denied
}

policy::Approver* SessionControl::approver() const {
  return impl_->approvals.get();
}

const std::string& SessionControl::socket_path() const {
  return impl_->server->path();
}

}  // namespace agentbox::app
