// `agentbox ps|log|stop|kill|allow|deny|revoke|rotate|policy|budget`: steer running sessions
// through their control sockets (docs/CONTROL.md). Thin: each verb is one request and a rendering
// of its answer.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <thread>

#include "agentbox/base/error.hpp"
#include "agentbox/control/client.hpp"
#include "agentbox/control/runtime_dir.hpp"
#include "control_log.hpp"
#include "verbs.hpp"

extern char** environ;

namespace agentbox::cli {

using base::Error;
using base::Result;
using nlohmann::json;

std::map<std::string, std::string> caller_env() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    if (auto eq = kv.find('='); eq != std::string::npos) {
      env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
    }
  }
  return env;
}

Result<std::string> session_socket(const std::string& session) {
  auto id = control::short_id(session);
  if (!id) {
    return Error::msg(fmt::format("`{}` is not a session id", session))
        .hint("a session id is 6 hex digits (or the full id); `agentbox ps` lists them");
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string dir, control::runtime_dir(caller_env(), false));
  return control::socket_path(dir, *id);
}

Result<json> ask(const std::string& session, const control::Request& req) {
  AGENTBOX_ASSIGN_OR_RETURN(std::string path, session_socket(session));
  auto client = control::Client::connect(path);
  if (!client) {
    int e = client.error().err();
    if (e == ENOENT || e == ECONNREFUSED) {
      return Error::msg(fmt::format("no running session `{}`", session))
          .hint("`agentbox ps` lists the running sessions");
    }
    return std::move(client).error();
  }
  return client->call(req);
}

namespace {

// Waits (bounded) until the session's socket is gone: the box ended and was reaped.
bool wait_gone(const std::string& session, std::chrono::seconds limit) {
  auto path = session_socket(session);
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (path && std::chrono::steady_clock::now() < deadline) {
    if (!control::Client::connect(*path)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "K", "M", "G", "T"};
  double v = static_cast<double>(n);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{}B", n) : fmt::format("{:.1f}{}", v, units[u]);
}

std::string human_secs(int64_t s) {
  return s < 60     ? fmt::format("{}s", s)
         : s < 3600 ? fmt::format("{}m{:02}s", s / 60, s % 60)
                    : fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
}

std::string limit_text(const json& v) {
  return v.is_null() ? "none" : control::dump(v);
}

std::string cost_text(const json& v) {
  return v.is_number() ? fmt::format("${:.4f}", v.get<double>()) : "unknown (no price)";
}

// A session's budgets and its model usage (`agentbox budget`, `agentbox ps`).
void print_budget(const json& b, const char* indent = "") {
  const json l = b.value("limits", json::object());
  fmt::print(
      "{}budget: egress {} ({} sent), requests_per_host {}, spend {} (${:.4f} spent), "
      "connections_per_minute {} ({} in the last minute)\n",
      indent, limit_text(l.value("egress", json())), b.value("egress", 0ull),
      limit_text(l.value("requests_per_host", json())), limit_text(l.value("spend", json())),
      b.value("spent", 0.0), limit_text(l.value("connections_per_minute", json())),
      b.value("connections_last_minute", 0ull));
  const json models = b.value("models", json::object());
  for (const auto& [model, u] : models.items()) {
    fmt::print("{}model {}: {} input tokens ({} cached), {} output tokens, {}\n", indent,
               control::dump(json(model)), u.value("input_tokens", 0ull),
               u.value("cached_tokens", 0ull), u.value("output_tokens", 0ull),
               cost_text(u.value("cost", json())));
  }
}

// A credential's budgets, used/limit (`agentbox ps`, `agentbox budget --credential`).
void print_credential_budget(const json& c, const char* indent = "") {
  const json l = c.value("limits", json::object());
  std::string methods = "any";
  if (const json m = l.value("methods", json()); m.is_array()) {
    methods.clear();
    for (const auto& one : m) {
      methods += fmt::format("{}{}", methods.empty() ? "" : ",", one.get<std::string>());
    }
  }
  std::string expires = "never";
  if (const json e = l.value("expires_in_s", json()); e.is_number()) {
    const int64_t left = e.get<int64_t>();
    expires = left > 0 ? fmt::format("in {}", human_secs(left)) : "expired";
  }
  fmt::print("{}credential {}: requests {}/{}, bytes {}/{}, methods {}, expires {}, {} refused\n",
             indent, control::dump(json(c.value("name", ""))), c.value("requests", 0ull),
             limit_text(l.value("max_requests", json())), c.value("bytes", 0ull),
             limit_text(l.value("max_bytes", json())), methods, expires, c.value("refused", 0ull));
}

int ps(bool as_json) {
  auto dir = control::runtime_dir(caller_env(), false);
  json all = json::array();
  if (dir) {
    for (const auto& id : control::list_sessions(*dir)) {
      auto c = control::Client::connect(control::socket_path(*dir, id));
      auto st = c ? c->call({.verb = "status", .args = {}}) : Result<json>(c.error());
      if (st) {
        all.push_back(*st);
      }
    }
  }
  if (as_json) {
    fmt::print("{}\n", control::dump(all, 2));
    return 0;
  }
  fmt::print("{:<7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>15}  {:<12} {}  {}\n", "ID", "PID", "UPTIME",
             "FLOWS", "OPEN", "DENIED", "BYTES UP/DOWN", "PROGRAM", "WORKSPACE", "LABELS");
  for (const auto& s : all) {
    std::string labels;
    const json given =
        s.contains("labels") && s["labels"].is_object() ? s["labels"] : json::object();
    for (const auto& [k, v] : given.items()) {  // a named value: items() of a temporary dangles
      labels += fmt::format("{}{}={}", labels.empty() ? "" : ",", k,
                            control::dump(json(v.is_string() ? v.get<std::string>() : "")));
    }
    fmt::print("{:<7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>15}  {:<12} {}  {}\n", s.value("id", ""),
               s.value("pid", 0), human_secs(s.value("uptime_s", 0)),
               s.value("flows", json::object()).value("allowed", 0),
               s.value("flows", json::object()).value("open", 0), s.value("denials", 0),
               fmt::format("{}/{}", human_bytes(s.value("bytes", json::object()).value("up", 0ull)),
                           human_bytes(s.value("bytes", json::object()).value("down", 0ull))),
               control::dump(json(s.value("program", ""))),
               control::dump(json(s.value("workspace", ""))), labels);
    if (const json b = s.value("budget", json::object());
        !b.value("models", json::object()).empty()) {
      print_budget(b, "  ");
    }
    for (const auto& c : s.value("credentials", json::array())) {
      print_credential_budget(c, "  ");
    }
  }
  return 0;
}

void print_policy(const json& p) {
  for (const auto& r : p.value("rules", json::array())) {
    fmt::print("{:<6} {:<40} # {}\n", r.value("verdict", ""),
               control::dump(json(r.value("rule", ""))), r.value("origin", ""));
  }
  for (const auto& c : p.value("credentials", json::array())) {
    std::string state = c.value("revoked", false) ? " (revoked)" : "";
    if (c.value("refreshing", false)) {
      state += " (being re-read)";
    }
    if (c.contains("failure")) {
      state += fmt::format(" (unavailable: {})", c.value("failure", ""));
    }
    fmt::print("credential {}{}\n", control::dump(json(c.value("name", ""))), state);
  }
}

// `rotate` answers once the re-read has started; its outcome is read from `policy` (a cmd:
// source runs for up to its 10 s timeout). Returns the credential's state when the read is done.
Result<json> await_rotation(const std::string& session, const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    AGENTBOX_ASSIGN_OR_RETURN(json p, ask(session, control::Request{.verb = "policy", .args = {}}));
    for (const auto& c : p.value("credentials", json::array())) {
      if (c.value("name", "") == name && !c.value("refreshing", false)) {
        return c;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Error::msg(fmt::format("credential `{}` is still being re-read after 15s", name));
}

// One verb that sends a request and prints its answer.
struct Simple {
  const char* name;
  const char* about;
  const char* arg;  // the positional after SESSION, or nullptr
  const char* arg_about;
  const char* key;  // its request key
};

void render(const std::string& verb, const std::string& session, const json& r) {
  std::string head = fmt::format("session {}", session);
  if (verb == "stop") {
    fmt::print("{}: sent TERM; KILL after {}s if it still runs\n", head, r.value("grace_s", 0));
  } else if (verb == "kill") {
    fmt::print("{}: sent KILL\n", head);
  } else if (verb == "allow") {
    fmt::print("{}: allowed `{}` from the next DNS answer and connection\n", head,
               r.value("rule", ""));
  } else if (verb == "deny") {
    fmt::print("{}: denied `{}`; {} live connection(s) reset\n", head, r.value("rule", ""),
               r.value("flows_reset", 0));
  } else if (verb == "revoke") {
    fmt::print("{}: credential `{}` revoked; its next request is answered 403\n", head,
               r.value("credential", ""));
  } else if (verb == "rotate") {
    fmt::print(
        "{}: credential `{}` re-read from its source; the next request carries the new "
        "value\n",
        head, r.value("credential", ""));
  } else if (verb == "policy") {
    print_policy(r);
  } else if (verb == "budget" && r.contains("credential")) {
    print_credential_budget(r["credential"]);
  } else if (verb == "budget") {
    print_budget(r);
  }
}

void register_simple(CLI::App& app, int& exit_code, const Simple& v) {
  struct Args {
    std::string session;
    std::string value;
    std::string credential;  // budget --credential
    bool json = false;
    unsigned grace = 5;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(v.name, v.about);
  sub->add_option("SESSION", a->session, "The session id (`agentbox ps`)")->required();
  if (v.arg != nullptr) {
    sub->add_option(v.arg, a->value, v.arg_about)->required();
  }
  if (std::string(v.name) == "stop") {
    sub->add_option("--grace", a->grace, "Seconds between TERM and KILL (default 5)")
        ->type_name("SECONDS");
  }
  if (std::string(v.name) == "budget") {
    sub->add_option("--credential", a->credential,
                    "Change this credential's budget (KEY=VALUE: max_requests, max_bytes, "
                    "methods, expires)")
        ->type_name("NAME");
  }
  sub->add_flag("--json", a->json, "Print the answer as JSON");
  std::string verb = v.name;
  std::string key = v.key != nullptr ? v.key : "";
  sub->callback([&exit_code, a, verb, key] {
    control::Request req{.verb = verb, .args = {}};
    if (!key.empty()) {
      req.args[key] = a->value;
    }
    if (verb == "stop") {
      req.args["grace"] = std::to_string(a->grace);
    }
    if (!a->credential.empty()) {
      req.args["credential"] = a->credential;
    }
    auto r = ask(a->session, req);
    if (!r) {
      fmt::print(stderr, "{}", std::move(r).error().context(verb).render());
      exit_code = 125;
      return;
    }
    if (verb == "rotate") {
      auto done = await_rotation(a->session, a->value);
      if (done && done->contains("failure")) {
        done = Error::msg(fmt::format("credential `{}` could not be re-read: {}", a->value,
                                      done->value("failure", "")))
                   .hint(
                       "requests that need it are refused until a re-read succeeds: fix its source "
                       "and "
                       "rotate again");
      }
      if (!done) {
        fmt::print(stderr, "{}", std::move(done).error().context(verb).render());
        exit_code = 125;
        return;
      }
      (*r)["outcome"] = "ok";
    }
    if (a->json) {
      fmt::print("{}\n", control::dump(*r, 2));
    } else {
      render(verb, a->session, *r);
    }
    if (verb == "kill" || verb == "stop") {
      auto limit = std::chrono::seconds(verb == "kill" ? 10 : a->grace + 10);
      if (!wait_gone(a->session, limit)) {
        fmt::print(stderr, "{}",
                   Error::msg(fmt::format("{}: session {} still runs after {}s", verb, a->session,
                                          limit.count()))
                       .render());
        exit_code = 125;
        return;
      }
    }
    exit_code = 0;
  });
}

}  // namespace

void register_control(CLI::App& app, int& exit_code) {
  auto ps_json = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand("ps", "List the running sessions of this user");
  sub->add_flag("--json", *ps_json, "Print the sessions as JSON");
  sub->callback([&exit_code, ps_json] { exit_code = ps(*ps_json); });
  register_log(app, exit_code);
  register_profile(app, exit_code);
  const Simple verbs[] = {
      {"stop", "Stop a session: TERM, then KILL after a grace period", nullptr, nullptr, nullptr},
      {"kill", "Kill the box of a session at once", nullptr, nullptr, nullptr},
      {"allow", "Allow HOST[:PORT] (or CIDR[:PORT]) in a running session", "RULE",
       "An egress rule, as --allow takes", "rule"},
      {"deny", "Deny HOST[:PORT] in a running session and reset its live connections", "RULE",
       "An egress rule; without a port, every port", "rule"},
      {"revoke", "Revoke a credential: its next request is answered 403", "CREDENTIAL",
       "The name of the credential", "credential"},
      {"rotate", "Re-read a credential from its file: or cmd: source now", "CREDENTIAL",
       "The name of the credential", "credential"},
      {"policy", "Print the live policy of a running session and where each line came from",
       nullptr, nullptr, nullptr},
      {"budget",
       "Change a session budget live (KEY=VALUE: egress, requests_per_host, spend, "
       "connections_per_minute), or with --credential a credential's",
       "SETTING", "KEY=VALUE, e.g. spend=10; KEY=none removes the budget", "set"},
  };
  for (const auto& v : verbs) {
    register_simple(app, exit_code, v);
  }
}

}  // namespace agentbox::cli
