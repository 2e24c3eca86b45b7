// `agentbox log [-f] SESSION`: a session's audit log, one readable line per event, following it
// while the session runs. A running session names its log over the control socket; a finished
// one is found in the state folder by its id.
#include "control_log.hpp"

#include <dirent.h>
#include <fmt/core.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <thread>

#include "agentbox/app/run.hpp"
#include "agentbox/audit/chain.hpp"
#include "agentbox/audit/summary.hpp"
#include "agentbox/base/error.hpp"
#include "agentbox/control/runtime_dir.hpp"

namespace agentbox::cli {

using base::Error;
using base::Result;
using nlohmann::json;

namespace {

// A finished session's log: STATE/agentbox/sessions/<full id ending in -SHORT>/audit.jsonl.
Result<std::string> finished_log(const std::string& session) {
  auto env = caller_env();
  auto id = control::short_id(session);
  if (!id) {
    return Error::msg(fmt::format("`{}` is not a session id", session))
        .hint("a session id is 6 hex digits (or the full id); `agentbox ps` lists them");
  }
  std::string root = app::sessions_dir(env, env.count("HOME") != 0 ? env["HOME"] : "/");
  DIR* d = ::opendir(root.c_str());
  std::string found;
  while (d != nullptr) {
    const struct dirent* e = ::readdir(d);
    if (e == nullptr) {
      break;
    }
    std::string name = e->d_name;
    if (name.size() == 23 && name.ends_with("-" + *id)) {
      found = name;
    }
  }
  if (d != nullptr) {
    ::closedir(d);
  }
  if (found.empty()) {
    return Error::msg(fmt::format("no session `{}`, running or finished", session))
        .hint(fmt::format("finished sessions are kept under {}", root));
  }
  return fmt::format("{}/{}/audit.jsonl", root, found);
}

// A value as it may reach a terminal: JSON-escaped, ASCII only (no escape or C1 control byte
// of a hostile name from the box reaches the terminal).
std::string safe(const json& v) {
  std::string s = v.dump(-1, ' ', true, json::error_handler_t::replace);
  if (v.is_string() && s.size() >= 2 && s.find(' ') == std::string::npos &&
      s.find("\\\"") == std::string::npos) {
    return s.substr(1, s.size() - 2);
  }
  return s;
}

void print_line(const std::string& line, bool raw) {
  if (raw) {
    fmt::print("{}\n", line);
    return;
  }
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    fmt::print("{}\n", safe(json(line)));
    return;
  }
  std::string ts = j.value("ts", "");
  std::string out = fmt::format("{} {}", ts.size() >= 23 ? ts.substr(11, 12) : safe(json(ts)),
                                safe(json(j.value("type", "?"))));
  for (const auto& [k, v] : j.items()) {
    // The chain's links are for --verify (and --json), not for reading.
    if (k != "v" && k != "ts" && k != "session" && k != "type" && k != "prev" && k != "nonce") {
      out += fmt::format(" {}={}", safe(json(k)), safe(v));
    }
  }
  fmt::print("{}\n", out);
}

int show(const std::string& path, bool follow, bool raw, const std::string& session) {
  std::ifstream in(path);
  if (!in) {
    fmt::print(stderr, "{}", Error::sys(errno, "open", path).context("log").render());
    return 125;
  }
  std::string line;
  bool ended = false;
  while (true) {
    while (std::getline(in, line)) {
      print_line(line, raw);
      ended = ended || line.find("\"type\":\"session.end\"") != std::string::npos;
    }
    std::fflush(stdout);
    if (!follow || ended) {
      return 0;
    }
    in.clear();  // at EOF: wait for more, while the session runs
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!ask(session, {.verb = "status", .args = {}})) {
      follow = false;  // gone: print what it wrote last, then stop
    }
  }
}

// `--verify`: the hash chain of the log at `path`, line by line (docs/ARCHITECTURE.md, "Audit
// log"). 0 when intact (and ending at `head`, when given), 1 at the first break, 125 unreadable.
int verify(const std::string& path, const std::string& head) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fmt::print(stderr, "{}", Error::sys(errno, "open", path).context("log --verify").render());
    return 125;
  }
  audit::ChainVerifier v;
  std::string line;
  while (std::getline(in, line)) {
    if (!in.eof()) {
      line += '\n';  // getline took it; the chain hashes it
    }
    if (!v.feed(line)) {
      break;
    }
  }
  if (in.bad()) {
    fmt::print(stderr, "{}", Error::sys(errno, "read", path).context("log --verify").render());
    return 125;
  }
  if (auto broken = v.finish()) {
    fmt::print(
        stderr, "{}",
        Error::msg(broken->line == 0 ? broken->reason
                                     : fmt::format("line {}: {}", broken->line, broken->reason))
            .context(fmt::format("log --verify: `{}`", path))
            .render());
    return 1;
  }
  if (!head.empty() && head != v.head()) {
    fmt::print(stderr, "{}",
               Error::msg(fmt::format("the chain ends at head {}, not at {}: lines were removed "
                                      "from its end, or the log was rewritten from its nonce",
                                      v.head(), head))
                   .context(fmt::format("log --verify: `{}`", path))
                   .render());
    return 1;
  }
  fmt::print("{}: intact, {} lines, chain head {}{}\n", path, v.lines(), v.head(),
             head.empty() ? "" : " (as given)");
  return 0;
}

// `--summary`: per host, credential and model: requests, bytes, denials, tokens, spend.
int summary(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    fmt::print(stderr, "{}", Error::sys(errno, "open", path).context("log --summary").render());
    return 125;
  }
  in.close();
  std::vector<std::string> lines = audit::summarize_log(path).render();
  for (const auto& l : lines) {
    fmt::print("{}\n", l);
  }
  if (lines.empty()) {
    fmt::print("{}: no connections, requests or denials\n", path);
  }
  return 0;
}

bool is_head(const std::string& h) {
  return h.size() == 64 && std::all_of(h.begin(), h.end(), [](char ch) {
           return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
         });
}

}  // namespace

Result<std::string> session_log(const std::string& session) {
  if (session.find('/') != std::string::npos) {
    return session;
  }
  auto st = ask(session, {.verb = "status", .args = {}});
  return st ? Result<std::string>(st->value("audit", "")) : finished_log(session);
}

void register_log(CLI::App& app, int& exit_code) {
  struct Args {
    std::string session;
    bool follow = false;
    bool json = false;
    bool verify = false;
    bool summary = false;
    std::string head;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("log", "Print the audit log of a session, readable; -f follows it");
  sub->add_option("SESSION", a->session,
                  "The session id (`agentbox ps`), or the path of a log (with a `/`)")
      ->required();
  sub->add_flag("-f,--follow", a->follow, "Keep printing new events while the session runs");
  sub->add_flag("--json", a->json, "Print the JSON lines of the log as they are");
  sub->add_flag("--verify", a->verify,
                "Check the log's hash chain: status 0 when intact, else the first bad line");
  sub->add_option("--head", a->head,
                  "The chain head the exit summary printed (implies --verify); a log cut at its "
                  "end fails");
  sub->add_flag("--summary", a->summary,
                "Per host, credential and model: requests, bytes, denials, tokens, spend");
  sub->callback([&exit_code, a] {
    // --head only means something to the check: it implies --verify rather than being ignored.
    if (!a->head.empty() && !is_head(a->head)) {
      fmt::print(stderr, "{}",
                 Error::msg(fmt::format("--head `{}` is not a chain head", a->head))
                     .context("log")
                     .hint("a chain head is 64 lower-case hex digits, as the exit summary prints")
                     .render());
      exit_code = 125;
      return;
    }
    a->verify = a->verify || !a->head.empty();
    if (a->summary && (a->verify || a->follow || a->json)) {
      fmt::print(
          stderr, "{}",
          Error::msg("--summary cannot be combined with --verify, --head, --follow or --json")
              .context("log")
              .render());
      exit_code = 125;
      return;
    }
    if (a->session.find('/') != std::string::npos) {  // a path: a copy, or another machine's log
      exit_code = a->summary  ? summary(a->session)
                  : a->verify ? verify(a->session, a->head)
                              : show(a->session, false, a->json, "");
      return;
    }
    auto st = ask(a->session, {.verb = "status", .args = {}});
    Result<std::string> path =
        st ? Result<std::string>(st->value("audit", "")) : finished_log(a->session);
    if (!path) {
      fmt::print(stderr, "{}", std::move(path).error().context("log").render());
      exit_code = 125;
      return;
    }
    exit_code = a->summary  ? summary(*path)
                : a->verify ? verify(*path, a->head)
                            : show(*path, a->follow && st.has_value(), a->json, a->session);
  });
}

}  // namespace agentbox::cli
