// The session's approval queue (app/approvals.hpp) on a real event loop: bounded, each callback
// exactly once (answer, timeout, overflow or the session's end), never from inside ask().
#include "agentbox/app/approvals.hpp"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <chrono>

namespace agentbox::app {
namespace {

using namespace std::chrono_literals;
using policy::Answer;

class ApprovalsTest : public ::testing::Test {
 protected:
  event::Loop loop_ = *event::Loop::create();
  audit::MemorySink audit_;
  // Runs the loop until `done` or 5 s (bounded).
  template <typename F>
  void run_until(F done) {
    auto end = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < end) {
      ASSERT_TRUE(loop_.run_once(50ms));
    }
  }
  static policy::Question host(const std::string& name) {
    return {.kind = policy::ApprovalKind::host, .subject = name, .detail = name};
  }
};

TEST_F(ApprovalsTest, AnsweredOnceWithWhoAnswered) {
  Approvals a(loop_, audit_, 60s);
  std::vector<Answer> got;
  a.ask(host("a.test"), [&](Answer x) { got.push_back(x); });
  ASSERT_EQ(a.pending().size(), 1u);
  std::string id = a.pending()[0].id;
  EXPECT_EQ(id, "q1");
  EXPECT_GT(a.pending()[0].waits_ms, 50000);
  ASSERT_TRUE(a.answer(id, Answer::allow_once, {.uid = 1000, .pid = 42}));
  EXPECT_EQ(got, std::vector<Answer>{Answer::allow_once});
  EXPECT_FALSE(a.answer(id, Answer::deny, {}));  // answered already: no second callback
  EXPECT_EQ(got.size(), 1u);
  EXPECT_TRUE(a.pending().empty());
  EXPECT_NE(audit_.lines().find(R"("type":"approval.ask","id":"q1","kind":"host")"),
            std::string::npos)
      << audit_.lines();
  EXPECT_NE(audit_.lines().find(R"("answer":"once","by_uid":1000,"by_pid":42)"), std::string::npos)
      << audit_.lines();
}

TEST_F(ApprovalsTest, TimeoutDeniesExactlyOnce) {
  Approvals a(loop_, audit_, 50ms);
  std::vector<Answer> got;
  a.ask(host("slow.test"), [&](Answer x) { got.push_back(x); });
  std::string id = a.pending()[0].id;
  run_until([&] { return !got.empty(); });
  EXPECT_EQ(got, std::vector<Answer>{Answer::deny});
  EXPECT_FALSE(a.answer(id, Answer::allow_once, {}));
  EXPECT_EQ(got.size(), 1u);
  EXPECT_NE(audit_.lines().find(R"("type":"approval.timeout")"), std::string::npos);
}

TEST_F(ApprovalsTest, BoundedOverflowIsDeniedLaterNotInsideAsk) {
  size_t answered = 0;  // before `a`: its destructor denies the 64 still waiting, counting here
  Approvals a(loop_, audit_, 60s);
  for (size_t i = 0; i < Approvals::kMaxPending; ++i) {
    a.ask(host("h.test"), [&](Answer) { ++answered; });
  }
  Answer over = Answer::allow_once;
  bool called = false;
  a.ask(host("over.test"), [&](Answer x) {
    over = x;
    called = true;
  });
  EXPECT_FALSE(called);  // never from inside ask()
  EXPECT_EQ(a.pending().size(), Approvals::kMaxPending);
  run_until([&] { return called; });
  EXPECT_TRUE(called);
  EXPECT_EQ(over, Answer::deny);
  EXPECT_EQ(answered, 0u);
  EXPECT_NE(audit_.lines().find(R"("type":"approval.overflow")"), std::string::npos);
}

TEST_F(ApprovalsTest, SessionEndDeniesWhatWaits) {
  std::vector<Answer> got;
  size_t widened = 0;
  {
    Approvals a(loop_, audit_, 60s, [&](const policy::Question&, Answer, const Approvals::Who&) {
      ++widened;
      return std::string("noted");
    });
    a.ask(host("a.test"), [&](Answer x) { got.push_back(x); });
    a.ask(host("b.test"), [&](Answer x) { got.push_back(x); });
    auto r = a.answer("q2", Answer::allow_session, {});
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, "noted");
  }
  EXPECT_EQ(widened, 1u);
  EXPECT_EQ(got, (std::vector<Answer>{Answer::allow_session, Answer::deny}));
  EXPECT_NE(audit_.lines().find(R"("type":"approval.end","id":"q1")"), std::string::npos);
}

// The observer (the desktop notifications) hears each question start and stop waiting, however
// it ends: answered (with who, when not a control client), timed out, or the session's end.
TEST_F(ApprovalsTest, ObserverSeesEveryQuestionStartAndSettle) {
  struct Log final : Approvals::Observer {
    std::vector<std::string> seen;
    void waiting(const std::string& id, const policy::Question& q,
                 std::chrono::milliseconds t) override {
      seen.push_back(fmt::format("wait {} {} {}", id, q.subject, t.count()));
    }
    void settled(const std::string& id) override { seen.push_back("settle " + id); }
  } log;
  {
    Approvals a(loop_, audit_, 200ms);
    a.set_observer(&log);
    std::vector<Answer> got;
    a.ask(host("a.test"), [&](Answer x) { got.push_back(x); });
    a.ask(host("b.test"), [&](Answer x) { got.push_back(x); });
    a.ask(host("c.test"), [&](Answer x) { got.push_back(x); });
    ASSERT_TRUE(a.answer("q1", Answer::deny, {.uid = 7, .via = "desktop notification"}));
    run_until([&] { return got.size() == 3; });
    EXPECT_EQ(got.size(), 3u);
    a.ask(host("d.test"), [](Answer) {});
  }
  EXPECT_EQ(log.seen, (std::vector<std::string>{"wait q1 a.test 200", "wait q2 b.test 200",
                                                "wait q3 c.test 200", "settle q1", "settle q2",
                                                "settle q3", "wait q4 d.test 200", "settle q4"}));
  EXPECT_NE(audit_.lines().find(R"("by_pid":0,"by":"desktop notification")"), std::string::npos)
      << audit_.lines();
}

TEST(ParseAnswer, Words) {
  EXPECT_EQ(*parse_answer("once"), Answer::allow_once);
  EXPECT_EQ(*parse_answer("always"), Answer::allow_always);
  EXPECT_FALSE(parse_answer("yes"));
}

}  // namespace
}  // namespace agentbox::app
