// Approvals end to end (docs/CONTROL.md, "Approvals"): a program in a real box resolves names
// under `--ask`; each DNS answer waits while the test, from outside, answers with `agentbox
// approve`: once lets that connection through, a question left alone is denied when its wait
// ends, session admits the next connection without asking, always also appends the rule to the
// user's config file. The box's other traffic keeps flowing while a question waits. As root and
// as the user agentbox-test; the oracle is outside: the loopback servers, the audit log, the
// config file.
#include <sys/stat.h>

#include <sstream>

#include "control_fixture.hpp"

namespace agentbox::it {
namespace {

class ApproveTest : public ControlTest {
 protected:
  void SetUp() override {
    ControlTest::SetUp();
    if (!made_ || HasFatalFailure() || IsSkipped()) {
      return;
    }
    cfg_ = w_.root + "/cfg";
    ASSERT_EQ(::mkdir(cfg_.c_str(), 0700), 0);
    ASSERT_EQ(::mkdir((cfg_ + "/agentbox").c_str(), 0700), 0);
    // The user's own comment stays as it is; the timeout is short for the test.
    write_file(config(), "# my own comment\n[network]\nask_timeout = 12 # seconds\n", 0600);
    chown_tree(cfg_, w_.as.uid, w_.as.gid);
    extra_env_["XDG_CONFIG_HOME"] = cfg_;
  }
  std::string config() const { return cfg_ + "/agentbox/config.toml"; }
  // The id of the waiting question about `name` ("" when none came within the bound).
  std::string question(const std::string& id, const std::string& name) {
    return question_with(id, fmt::format("\"subject\": \"{}\"", name));
  }
  // The id of the first waiting question whose JSON holds `needle` (keys sorted: "id" first).
  std::string question_with(const std::string& id, const std::string& needle) {
    for (int i = 0; i < 600; ++i) {
      Output o = agentbox({"approve", id, "--json"});
      auto at = o.out.find(needle);
      if (at != std::string::npos) {
        auto q = o.out.rfind("\"id\": \"q", at);
        if (q != std::string::npos) {
          return o.out.substr(q + 7, o.out.find('"', q + 7) - (q + 7));
        }
      }
      std::this_thread::sleep_for(50ms);
    }
    return "";
  }
  bool box_said(const std::string& what) {
    for (int i = 0; i < 400; ++i) {
      if (box_out().find(what) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
  std::string cfg_;
};

// The script in the box: each step prints NAME=STATUS. glibc waits up to 30 s for a DNS answer.
std::string script(uint16_t port, uint16_t free_port) {
  auto get = [&](const std::string& name, uint16_t p) {
    return fmt::format(
        "RES_OPTIONS='timeout:30 attempts:1' curl -s --max-time 40 http://{}:{}/ >/dev/null", name,
        p);
  };
  return fmt::format(
      "({0}; echo once=$? >>/tmp/held) & "
      // while that one waits: an allowed host, three times
      "for i in 1 2 3; do {1} && echo free=ok; done; "
      "wait; cat /tmp/held; "
      "{2}; echo timeout=$?; "
      "{3}; echo session1=$?; {3}; echo session2=$?; "
      "{4}; echo always=$?",
      get("data.ex.test", port), get("free.test", free_port), get("gone.ex.test", port),
      get("sess.ex.test", port), get("alw.ex.test", port));
}

TEST_P(ApproveTest, OnceTimeoutSessionAlways) {
  Http http(false);
  Http free_http(false);
  uint16_t p = http.port();
  Args flags = {"--ask", fmt::format("*.ex.test:{}", p), "--allow",
                fmt::format("free.test:{}", free_http.port())};
  for (const char* name : {"data", "gone", "sess", "alw"}) {
    flags.push_back("--connect-to");
    flags.push_back(fmt::format("{}.ex.test:{}:127.0.0.1:{}", name, p, p));
  }
  flags.push_back("--connect-to");
  flags.push_back(fmt::format("free.test:{0}:127.0.0.1:{0}", free_http.port()));
  std::string id = start(flags, {"/bin/sh", "-c", script(p, free_http.port())});
  ASSERT_FALSE(id.empty()) << box_err();

  // once: the held name's connection goes through; meanwhile the box's other traffic flowed.
  std::string q = question(id, "data.ex.test");
  ASSERT_FALSE(q.empty()) << box_err();
  ASSERT_TRUE(box_said("free=ok\nfree=ok\nfree=ok")) << box_out() << box_err();
  EXPECT_EQ(http.accepted, 0);
  Output a = agentbox({"approve", id, q, "once"});
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_NE(a.out.find(q + " answered once"), std::string::npos) << a.out;
  ASSERT_TRUE(box_said("once=0")) << box_out() << box_err();
  EXPECT_EQ(http.accepted, 1);

  // A question nobody answers is denied when its wait (12 s here) ends.
  std::string gone = question(id, "gone.ex.test");
  ASSERT_FALSE(gone.empty()) << box_err();
  ASSERT_TRUE(box_said("timeout=6")) << box_out() << box_err();
  EXPECT_EQ(http.accepted, 1);
  Output late = agentbox({"approve", id, gone, "once"});
  EXPECT_EQ(late.status, 125);
  EXPECT_NE(late.err.find("no question"), std::string::npos) << late.err;

  // session: the second connection is not asked about.
  q = question(id, "sess.ex.test");
  ASSERT_FALSE(q.empty()) << box_err();
  ASSERT_EQ(agentbox({"approve", id, q, "session"}).status, 0);
  ASSERT_TRUE(box_said("session1=0\nsession2=0")) << box_out() << box_err();

  // always: allowed, and appended to the user's config under their own lines.
  q = question(id, "alw.ex.test");
  ASSERT_FALSE(q.empty()) << box_err();
  Output al = agentbox({"approve", id, q, "always"});
  ASSERT_EQ(al.status, 0) << al.err;
  EXPECT_NE(al.out.find("written to " + config()), std::string::npos) << al.out;
  ASSERT_EQ(finish(), 0) << box_err();
  EXPECT_NE(box_out().find("always=0"), std::string::npos) << box_out();
  EXPECT_EQ(http.accepted, 4);

  std::string file = slurp(config());
  EXPECT_EQ(file.rfind("# my own comment\n[network]\nask_timeout = 12 # seconds\n", 0), 0u) << file;
  EXPECT_NE(file.find(fmt::format("# added by agentbox approve on ")), std::string::npos) << file;
  EXPECT_NE(file.find(fmt::format("for session ")), std::string::npos) << file;
  EXPECT_NE(file.find(fmt::format("[[network.allow]]\nhost = \"alw.ex.test:{}\"\n", p)),
            std::string::npos)
      << file;
  // It still loads: explain shows the rule, with its origin in that file.
  Output ex = agentbox({"explain"});
  EXPECT_NE(ex.out.find(fmt::format("alw.ex.test:{}", p)), std::string::npos) << ex.out << ex.err;

  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find(fmt::format("\"answer\":\"once\",\"by_uid\":{}", w_.as.uid)),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("\"type\":\"approval.timeout\""), std::string::npos) << log;
  // One question for sess.ex.test: the second connection was not asked about.
  size_t asks = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    asks += line.find("\"type\":\"approval.ask\"") != std::string::npos &&
            line.find("\"subject\":\"sess.ex.test\"") != std::string::npos;
  }
  EXPECT_EQ(asks, 1u) << log;
}

// An exec rule with `ask`: `git push --force` to a bare repository in the workspace is held
// (the caller blocked in execve, the rest of the box running) until `agentbox approve` answers
// from outside; once lets it through, and a question left alone is denied when its wait ends.
// The oracle is the bare repository's ref, read on the host.
TEST_P(ApproveTest, ExecRuleHoldsForcePushUntilApprovedAndDeniesOnTimeout) {
  if (sh("git --version >/dev/null 2>&1") != 0) {
    skip("git is not installed");
    return;
  }
  write_file(config(),
             "[network]\nask_timeout = 8\n[[exec.rule]]\nprogram = \"git\"\n"
             "args = [\"push\", \"--force*|-f\"]\naction = \"ask\"\n",
             0600);
  chown_tree(cfg_, w_.as.uid, w_.as.gid);
  const std::string ws = w_.ws;
  std::string script = fmt::format(
      "set -u; G='git -c user.name=b -c user.email=b@example.com';"
      "git init -q --bare remote.git && git -C remote.git symbolic-ref HEAD refs/heads/main &&"
      " git init -q -b main repo && cd repo && $G commit -q --allow-empty -m one &&"
      " git push -q ../remote.git main || exit 10;"
      "git rev-parse HEAD > {0}/pushed;"
      "$G commit -q --amend --allow-empty -m rewritten && git rev-parse HEAD > {0}/amended;"
      // the agent keeps running while its push waits: this mark appears meanwhile
      "(sleep 1; echo yes > {0}/alive) &"
      "git push -q --force ../remote.git main 2>/dev/null; echo first=$?;"
      "$G commit -q --amend --allow-empty -m again && git push -qf ../remote.git main 2>/dev/null;"
      " echo second=$?",
      ws);
  std::string id = start({"--network", "none"}, {"/bin/sh", "-c", script});
  ASSERT_FALSE(id.empty()) << box_err();
  auto ref = [&](const std::string& name) {
    std::string s = slurp(fmt::format("{}/{}", ws, name));
    while (!s.empty() && s.back() == '\n') {
      s.pop_back();
    }
    return s;
  };

  std::string q = question_with(id, "\"kind\": \"exec\"");
  ASSERT_FALSE(q.empty()) << box_out() << box_err();
  for (int i = 0; i < 100 && ref("alive").empty(); ++i) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(ref("alive"), "yes") << "the box stopped while its push waited";
  std::string pushed = ref("pushed");
  ASSERT_EQ(pushed.size(), 40u) << box_out() << box_err();
  EXPECT_EQ(ref("remote.git/refs/heads/main"), pushed);  // held: nothing pushed yet
  EXPECT_EQ(box_out().find("first="), std::string::npos) << box_out();
  Output a = agentbox({"approve", id, q, "once"});
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_TRUE(box_said("first=0")) << box_out() << box_err();
  std::string amended = ref("amended");
  EXPECT_EQ(amended.size(), 40u);
  EXPECT_EQ(ref("remote.git/refs/heads/main"), amended);

  // The second force push (other arguments: asked anew) is left alone: denied after 8 s.
  std::string second = question_with(id, "\"kind\": \"exec\"");
  ASSERT_FALSE(second.empty()) << box_out() << box_err();
  EXPECT_NE(second, q);
  ASSERT_TRUE(box_said("second=")) << box_out() << box_err();
  EXPECT_EQ(box_out().find("second=0"), std::string::npos) << box_out();
  ASSERT_EQ(finish(), 0) << box_err();
  EXPECT_EQ(ref("remote.git/refs/heads/main"), amended);

  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find(R"("type":"approval.timeout")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("kind":"exec")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("answer":"once")"), std::string::npos) << log;
}

// The "empty replies" a smoke test of approvals saw after `once`: its server was not listening
// yet, and the proxy closed a plain-HTTP flow whose upstream refused the connection without a
// word (curl: "Empty reply from server", status 000; no audit line). An approved name whose
// server refuses must get a 502 naming the cause.
TEST_P(ApproveTest, AnUpstreamThatRefusesGetsA502NotAnEmptyReply) {
  uint16_t closed = 0;
  {
    Http probe(false);  // a port that was just free: nothing listens on it once this is gone
    closed = probe.port();
  }
  std::string id =
      start({"--ask", fmt::format("shut.ex.test:{}", closed), "--connect-to",
             fmt::format("shut.ex.test:{0}:127.0.0.1:{0}", closed)},
            {"/bin/sh", "-c",
             fmt::format("RES_OPTIONS='timeout:30 attempts:1' curl -s --max-time 40 -o /dev/null "
                         "-w 'code=%{{http_code}}\\n' http://shut.ex.test:{}/; echo rc=$?",
                         closed)});
  ASSERT_FALSE(id.empty()) << box_err();
  std::string q = question(id, "shut.ex.test");
  ASSERT_FALSE(q.empty()) << box_err();
  ASSERT_EQ(agentbox({"approve", id, q, "once"}).status, 0);
  ASSERT_EQ(finish(), 0) << box_err();
  EXPECT_NE(box_out().find("code=502\nrc=0"), std::string::npos) << box_out();
  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find("Connection refused"), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(Users, ApproveTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
