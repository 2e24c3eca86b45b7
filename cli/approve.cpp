// `agentbox approve [SESSION] [QID ANSWER] [--json]`: answer the questions a running session
// holds (docs/CONTROL.md, "Approvals"). Without QID ANSWER on a terminal: an interactive queue
// that polls the session (every 500 ms) and answers the oldest question with one key.
#include <fmt/core.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <memory>

#include "agentbox/base/error.hpp"
#include "agentbox/base/scope_exit.hpp"
#include "agentbox/control/runtime_dir.hpp"
#include "control_log.hpp"
#include "verbs.hpp"

namespace agentbox::cli {

using base::Error;
using base::Result;
using nlohmann::json;

namespace {

constexpr int kPollMs = 500;

struct ApproveArgs {
  std::string session;
  std::string qid;
  std::string answer;
  bool json = false;
};

// The one running session, when SESSION was left out.
Result<std::string> only_session() {
  AGENTBOX_ASSIGN_OR_RETURN(std::string dir, control::runtime_dir(caller_env(), false));
  auto ids = control::list_sessions(dir);
  if (ids.size() == 1) {
    return ids[0];
  }
  return Error::msg(ids.empty() ? std::string("no running session")
                                : fmt::format("{} sessions run; name one", ids.size()))
      .hint("`agentbox ps` lists the running sessions");
}

// A question on one line; what the box chose (names, argv) is printed as JSON strings.
std::string line_of(const json& q) {
  std::string detail = q.value("detail", "");
  return fmt::format("{} {} {}{}, denied in {}s", q.value("id", ""), q.value("kind", ""),
                     control::dump(json(q.value("subject", ""))),
                     detail.empty() ? "" : fmt::format(" ({})", control::dump(json(detail))),
                     q.value("waits_ms", 0) / 1000);
}

Result<json> send_answer(const std::string& session, const std::string& qid,
                         const std::string& answer) {
  return ask(session, {.verb = "approve", .args = {{"id", qid}, {"answer", answer}}});
}

void print_answered(const std::string& session, const json& r) {
  std::string note = r.value("note", "");
  fmt::print("session {}: {} answered {}{}\n", session, r.value("id", ""), r.value("answer", ""),
             note.empty() ? "" : "; " + note);
}

// Reads one key within kPollMs; 0 when none came, -1 at end of input.
int read_key() {
  pollfd p{.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
  if (::poll(&p, 1, kPollMs) <= 0) {
    return 0;
  }
  char c = 0;
  return ::read(STDIN_FILENO, &c, 1) == 1 ? static_cast<unsigned char>(c) : -1;
}

std::string answer_for_key(int key) {
  switch (key) {
    case 'o':
      return "once";
    case 's':
      return "session";
    case 'a':
      return "always";
    case 'd':
      return "deny";
    default:
      return {};
  }
}

// The interactive queue: shows the oldest question, answers it with one key, until `q`, end of
// input or the session's end.
int interactive(const std::string& session) {
  termios saved{};
  bool raw = ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (raw) {
    termios t = saved;
    t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    raw = ::tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
  }
  base::ScopeExit restore([&] {
    if (raw) {
      ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    }
  });
  fmt::print("session {}: waiting for questions; o once, s session, a always, d deny, q quit\n",
             session);
  std::string shown;
  for (;;) {
    auto r = ask(session, {.verb = "approvals", .args = {}});
    if (!r) {
      fmt::print("session {}: {}\n", session, r.error().message());
      return 0;
    }
    const json pending = r->value("pending", json::array());
    std::string head = pending.empty() ? "" : pending[0].value("id", "");
    if (head != shown) {
      shown = head;
      if (!head.empty()) {
        fmt::print("{} waiting. {}  [o/s/a/d]\n", pending.size(), line_of(pending[0]));
      }
      std::fflush(stdout);
    }
    int key = read_key();
    if (key < 0 || key == 'q' || key == 4) {
      return 0;
    }
    std::string word = answer_for_key(key);
    if (word.empty() || head.empty()) {
      continue;
    }
    auto a = send_answer(session, head, word);
    if (a) {
      print_answered(session, *a);
    } else {
      fmt::print("{}\n", a.error().message());
    }
    shown.clear();
  }
}

// A verb's answer: as JSON with --json, else as `human` prints it; 125 with the error.
template <typename Human>
int print_reply(Result<json> r, bool as_json, const Human& human) {
  if (!r) {
    fmt::print(stderr, "{}", std::move(r).error().context("approve").render());
    return 125;
  }
  if (as_json) {
    fmt::print("{}\n", control::dump(*r, 2));
  } else {
    human(*r);
  }
  return 0;
}

int run_approve(const ApproveArgs& a) {
  auto session = a.session.empty() ? only_session() : Result<std::string>(a.session);
  if (!session) {
    fmt::print(stderr, "{}", std::move(session).error().context("approve").render());
    return 125;
  }
  if (!a.qid.empty()) {
    return print_reply(send_answer(*session, a.qid, a.answer), a.json,
                       [&](const json& r) { print_answered(*session, r); });
  }
  if (a.json || ::isatty(STDIN_FILENO) == 0) {
    return print_reply(ask(*session, {.verb = "approvals", .args = {}}), a.json, [](const json& r) {
      for (const auto& q : r.value("pending", json::array())) {
        fmt::print("{}\n", line_of(q));
      }
    });
  }
  return interactive(*session);
}

}  // namespace

void register_approve(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ApproveArgs>();
  CLI::App* sub = app.add_subcommand(
      "approve", "Answer the questions a running session holds (network.ask, --ask)");
  sub->add_option("SESSION", a->session, "The session id (default: the only running session)");
  sub->add_option("QID", a->qid, "The question's id (q1, ...); without it, the interactive queue");
  sub->add_option("ANSWER", a->answer, "once, session, always or deny")
      ->check(CLI::IsMember({"once", "session", "always", "deny"}));
  sub->add_flag("--json", a->json, "List the waiting questions (or print the answer) as JSON");
  sub->callback([&exit_code, a] {
    if (!a->qid.empty() && a->answer.empty()) {
      fmt::print(stderr, "{}",
                 Error::msg("approve: QID needs an ANSWER")
                     .hint("answer once, session, always or deny")
                     .render());
      exit_code = 125;
      return;
    }
    exit_code = run_approve(*a);
  });
}

}  // namespace agentbox::cli
