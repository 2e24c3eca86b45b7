// `agentbox log [-f] SESSION`: a session's audit log, one readable line per event, following it
// while the session runs. A running session names its log over the control socket; a finished
// one is found in the state folder by its id.
#include "control_log.hpp"

#include <dirent.h>
#include <fmt/core.h>
#include <poll.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <thread>

#include "agentbox/app/run.hpp"
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
    if (k != "v" && k != "ts" && k != "session" && k != "type") {
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

}  // namespace

void register_log(CLI::App& app, int& exit_code) {
  struct Args {
    std::string session;
    bool follow = false;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("log", "Print the audit log of a session, readable; -f follows it");
  sub->add_option("SESSION", a->session, "The session id (`agentbox ps`)")->required();
  sub->add_flag("-f,--follow", a->follow, "Keep printing new events while the session runs");
  sub->add_flag("--json", a->json, "Print the JSON lines of the log as they are");
  sub->callback([&exit_code, a] {
    auto st = ask(a->session, {.verb = "status", .args = {}});
    Result<std::string> path =
        st ? Result<std::string>(st->value("audit", "")) : finished_log(a->session);
    if (!path) {
      fmt::print(stderr, "{}", std::move(path).error().context("log").render());
      exit_code = 125;
      return;
    }
    exit_code = show(*path, a->follow && st.has_value(), a->json, a->session);
  });
}

}  // namespace agentbox::cli
