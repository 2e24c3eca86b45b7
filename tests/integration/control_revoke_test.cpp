// `agentbox revoke` and `agentbox rotate` end to end: a box keeps sending requests with the same
// placeholder through the proxy to a loopback TLS upstream. After a revoke from outside, the next
// one is answered 403 with the reason and never reaches the upstream; after a rotate, the next
// one carries the new value of the credential's file, long before its ttl. As root and as the
// user agentbox-test. Also `ask = true`: a credential's first use waits for `agentbox approve`.
#include <fcntl.h>

#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

// `agentbox run` of `sh -c script` with the upstream reached as api.example.test.
Args box_args(const std::string& up, uint16_t port, const std::string& script) {
  return {"run",          "-q",           "--upstream-ca",
          up + "/ca.pem", "--connect-to", fmt::format("api.example.test:443:127.0.0.1:{}", port),
          "--",           "sh",           "-c",
          script};
}

const std::string kReal = "ghp_RealRevokeTokenAAA0123456789abcdefWXYZ";

// The runtime folder for the sessions' control sockets, the test user's own.
std::string make_runtime(const World& w) {
  std::string runtime = w.root + "/run";
  EXPECT_EQ(::mkdir(runtime.c_str(), 0700), 0);
  EXPECT_EQ(::chown(runtime.c_str(), w.as.uid, w.as.gid), 0);
  return runtime;
}

// `agentbox run` started with its stdout and stderr in `out_path` (the fd, to close, in `out`).
pid_t spawn_logged(const World& w, const Args& a, RunOptions o, const std::string& out_path,
                   int& out) {
  out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  o.stdout_fd = out;
  o.stderr_fd = out;
  int unused_out = -1;
  int unused_err = -1;  // spawn writes them; -1 when not captured
  return spawn(w, a, o, &unused_out, &unused_err);
}

// The short id of the running session ("" when `ps` shows none within `tries` polls).
std::string session_id(const World& w, const RunOptions& co, int tries) {
  for (int i = 0; i < tries; ++i) {
    Output ps = run(w, {"ps", "--json"}, co);
    if (auto pos = ps.out.find("\"id\": \""); pos != std::string::npos) {
      return ps.out.substr(pos + 7, 6);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "";
}

class ControlRevokeTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override { return {"api.example.test"}; }
  std::vector<std::string> secrets() const override { return {kReal}; }
  std::map<std::string, std::string> env() const override { return {{"REAL_GH", kReal}}; }
  std::string config() const override {
    return "[network]\n"
           "allow = [\"api.example.test\"]\n"
           "[credentials.gh]\n"
           "env = \"GH_TOKEN\"\n"
           "from = \"env:REAL_GH\"\n"
           "hosts = [\"api.example.test\"]\n"
           "inject = \"header:Authorization\"\n";
  }
};

TEST_P(ControlRevokeTest, RevokeBlocksTheNextInjectedRequest) {
  std::string runtime = make_runtime(w_);
  // Requests until one is refused (bounded), each with the placeholder the box was given.
  std::string script =
      "echo \"token=$GH_TOKEN\"; for i in $(seq 1 1200); do "
      "code=$(curl -sS -o /tmp/body -w '%{http_code}' https://api.example.test/echo/r "
      "-H \"Authorization: Bearer $GH_TOKEN\"); echo \"code=$code\"; "
      "if [ \"$code\" = 403 ]; then cat /tmp/body; echo; echo \"token=$GH_TOKEN\"; exit 0; fi; "
      "sleep 0.05; done; exit 3";
  Args a = box_args(up_, port_, script);
  RunOptions o;
  o.env = env();
  o.env["XDG_CONFIG_HOME"] = cfg_;
  o.env["XDG_RUNTIME_DIR"] = runtime;
  std::string out_path = w_.root + "/box.out";
  int out = -1;
  pid_t pid = spawn_logged(w_, a, o, out_path, out);
  ASSERT_GT(pid, 0);
  // The first injected request arrived upstream with the real value.
  for (int i = 0; i < 600 && seen().find(kReal) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  RunOptions co;
  co.env["XDG_RUNTIME_DIR"] = runtime;
  std::string id = session_id(w_, co, 1);
  Output r = run(w_, {"revoke", id, "gh"}, co);
  Output unknown = run(w_, {"revoke", id, "nope"}, co);
  int st = wait_for(pid, 60000);
  if (st == -1) {
    ::kill(pid, SIGKILL);
    wait_for(pid, 5000);
  }
  ::close(out);
  std::string box = slurp(out_path);
  ASSERT_FALSE(id.empty()) << box;
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(st, 0) << box;
  EXPECT_NE(box.find("code=200"), std::string::npos) << box;
  EXPECT_NE(box.find("code=403"), std::string::npos) << box;
  EXPECT_NE(box.find("credential gh was revoked"), std::string::npos) << box;
  // The same placeholder before and after.
  auto first = box.find("token=");
  auto last = box.rfind("token=");
  ASSERT_NE(first, last) << box;
  EXPECT_EQ(box.substr(first, box.find('\n', first) - first),
            box.substr(last, box.find('\n', last) - last));
  // Every request that reached the upstream was answered 200: the refused one never left.
  size_t upstream = 0;
  for (size_t p = seen().find(kReal); p != std::string::npos; p = seen().find(kReal, p + 1)) {
    ++upstream;
  }
  size_t ok = 0;
  for (size_t p = box.find("code=200"); p != std::string::npos; p = box.find("code=200", p + 1)) {
    ++ok;
  }
  EXPECT_EQ(upstream, ok) << seen();
  EXPECT_EQ(unknown.status, 125);
  EXPECT_NE(unknown.err.find("the session has no credential `nope` (it has: gh)"),
            std::string::npos)
      << unknown.err;
  const std::string log = audit();
  EXPECT_NE(log.find(fmt::format(R"("type":"control.revoke","by_uid":{})", w_.as.uid)),
            std::string::npos)
      << log;
}

INSTANTIATE_TEST_SUITE_P(Users, ControlRevokeTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

const std::string kFirst = "ghp_RotateFirstValueAAAA0123456789abcdefWXYZ";
const std::string kSecond = "ghp_RotateSecondValueBBB0123456789abcdefWXYZ";

class ControlRotateTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override { return {"api.example.test"}; }
  std::vector<std::string> secrets() const override { return {kFirst, kSecond}; }
  std::map<std::string, std::string> env() const override { return {}; }
  void prepare() override {
    token_ = w_.root + "/token";
    put_token(kFirst);
  }
  std::string config() const override {
    return "[network]\n"
           "allow = [\"api.example.test\"]\n"
           "[credentials.gh]\n"
           "env = \"GH_TOKEN\"\n"
           "from = \"file:" +
           token_ +
           "\"\n"
           "hosts = [\"api.example.test\"]\n"
           "inject = \"header:Authorization\"\n";
  }
  // As a user's tool rotates a token: a new file renamed over the old one.
  void put_token(const std::string& value) {
    const std::string tmp = token_ + ".new";
    write_file(tmp, value + "\n");
    ASSERT_EQ(::chmod(tmp.c_str(), 0600), 0);
    ASSERT_EQ(::chown(tmp.c_str(), w_.as.uid, w_.as.gid), 0);
    ASSERT_EQ(::rename(tmp.c_str(), token_.c_str()), 0);
  }
  static size_t count(const std::string& hay, const std::string& needle) {
    size_t n = 0;
    for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) {
      ++n;
    }
    return n;
  }
  std::string token_;
};

TEST_P(ControlRotateTest, RotateMakesTheNextRequestCarryTheNewValue) {
  std::string runtime = make_runtime(w_);
  const std::string stop = w_.ws + "/stop-now";
  std::string script =
      "for i in $(seq 1 2400); do "
      "curl -sS -o /dev/null https://api.example.test/echo/r "
      "-H \"Authorization: Bearer $GH_TOKEN\"; "
      "if [ -e stop-now ]; then exit 0; fi; sleep 0.02; done; exit 3";
  Args a = box_args(up_, port_, script);
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = cfg_;
  o.env["XDG_RUNTIME_DIR"] = runtime;
  int unused_out = -1;
  int unused_err = -1;
  pid_t pid = spawn(w_, a, o, &unused_out, &unused_err);
  ASSERT_GT(pid, 0);
  auto wait_until = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 600 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done();
  };
  const bool first = wait_until([&] { return seen().find(kFirst) != std::string::npos; });
  // The file changes; within the ttl (300 s) the proxy keeps the value it read: five more
  // requests go up with the first value, none with the second.
  put_token(kSecond);
  const size_t before = count(seen(), kFirst);
  const bool cached = wait_until([&] { return count(seen(), kFirst) >= before + 5; });
  const bool second_early = seen().find(kSecond) != std::string::npos;
  RunOptions co;
  co.env["XDG_RUNTIME_DIR"] = runtime;
  std::string id = session_id(w_, co, 1);
  Output r = run(w_, {"rotate", id, "gh"}, co);
  const bool second = wait_until([&] { return seen().find(kSecond) != std::string::npos; });
  const size_t first_total = count(seen(), kFirst);
  // A value of another length cannot stand behind the placeholder the box holds: refused, and
  // the credential is unavailable until a good value is read (the first is never used again).
  put_token(kSecond + "X");
  Output bad = run(w_, {"rotate", id, "gh"}, co);
  Output unknown = run(w_, {"rotate", id, "nope"}, co);
  write_file(stop, "");
  int st = wait_for(pid, 60000);
  if (st == -1) {
    ::kill(pid, SIGKILL);
    wait_for(pid, 5000);
  }
  ASSERT_TRUE(first) << seen();
  ASSERT_TRUE(cached) << seen();
  EXPECT_FALSE(second_early) << "the new value went up before the rotation";
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("re-read from its source"), std::string::npos) << r.out;
  EXPECT_TRUE(second) << seen();
  EXPECT_EQ(count(seen(), kFirst), first_total) << "the old value went up after the rotation";
  EXPECT_EQ(bad.status, 125) << bad.out;
  EXPECT_NE(bad.err.find("changed length"), std::string::npos) << bad.err;
  EXPECT_EQ(unknown.status, 125);
  EXPECT_NE(unknown.err.find("the session has no credential `nope` (it has: gh)"),
            std::string::npos)
      << unknown.err;
  EXPECT_EQ(st, 0);
  const std::string log = audit();
  EXPECT_NE(log.find(fmt::format(R"("type":"control.rotate","by_uid":{})", w_.as.uid)),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("type":"credential.rotate","credential":"gh","outcome":"ok")"),
            std::string::npos)
      << log;
}

INSTANTIATE_TEST_SUITE_P(Users, ControlRotateTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// `ask = true` on a credential (docs/CONTROL.md, "Approvals"): the box's first request that would
// carry the real value waits for `agentbox approve`; deny answers it 403 and nothing reaches the
// upstream; the next request asks again, and `session` lets it and every later one through. The
// oracle is the upstream's own log of what arrived.
const std::string kAsked = "ghp_RealAskTokenAAAAAAA0123456789abcdefWXYZ";

class CredentialAskTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override { return {"api.example.test"}; }
  std::vector<std::string> secrets() const override { return {kAsked}; }
  std::map<std::string, std::string> env() const override { return {{"REAL_GH", kAsked}}; }
  std::string config() const override {
    return "[network]\n"
           "allow = [\"api.example.test\"]\n"
           "[credentials.gh]\n"
           "env = \"GH_TOKEN\"\n"
           "from = \"env:REAL_GH\"\n"
           "hosts = [\"api.example.test\"]\n"
           "inject = \"header:Authorization\"\n"
           "ask = true\n";
  }
  // The id of the waiting question about credential gh after `after` ("" when none came).
  std::string question(const std::string& id, const RunOptions& co, const std::string& after) {
    for (int i = 0; i < 600; ++i) {
      Output o = run(w_, {"approve", id, "--json"}, co);
      auto at = o.out.find("\"subject\": \"gh\"");
      auto q = at == std::string::npos ? std::string::npos : o.out.rfind("\"id\": \"q", at);
      if (q != std::string::npos) {
        std::string qid = o.out.substr(q + 7, o.out.find('"', q + 7) - (q + 7));
        if (qid != after) {
          return qid;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "";
  }
  size_t arrived() {
    size_t n = 0;
    for (size_t p = seen().find(kAsked); p != std::string::npos; p = seen().find(kAsked, p + 1)) {
      ++n;
    }
    return n;
  }
};

TEST_P(CredentialAskTest, FirstUseWaitsForApprovalDenyIs403SessionLetsThrough) {
  std::string runtime = make_runtime(w_);
  std::string script =
      "for step in denied session later; do "
      "code=$(curl -sS --max-time 90 -o /tmp/body -w '%{http_code}' "
      "https://api.example.test/echo/r -H \"Authorization: Bearer $GH_TOKEN\"); "
      "echo \"$step=$code\"; cat /tmp/body; echo; done";
  Args a = box_args(up_, port_, script);
  RunOptions o;
  o.env = env();
  o.env["XDG_CONFIG_HOME"] = cfg_;
  o.env["XDG_RUNTIME_DIR"] = runtime;
  std::string out_path = w_.root + "/box.out";
  int out = -1;
  pid_t pid = spawn_logged(w_, a, o, out_path, out);
  ASSERT_GT(pid, 0);
  RunOptions co;
  co.env["XDG_RUNTIME_DIR"] = runtime;
  std::string id = session_id(w_, co, 600);
  std::string q1 = id.empty() ? "" : question(id, co, "");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const size_t before_deny = arrived();
  Output deny = run(w_, {"approve", id, q1, "deny"}, co);
  std::string q2 = q1.empty() ? "" : question(id, co, q1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const size_t before_session = arrived();
  Output session = run(w_, {"approve", id, q2, "session"}, co);
  int st = wait_for(pid, 120000);
  if (st == -1) {
    ::kill(pid, SIGKILL);
    wait_for(pid, 5000);
  }
  ::close(out);
  std::string box = slurp(out_path);
  ASSERT_FALSE(id.empty()) << box;
  ASSERT_FALSE(q1.empty()) << box;
  ASSERT_FALSE(q2.empty()) << box;
  EXPECT_EQ(deny.status, 0) << deny.err;
  EXPECT_EQ(session.status, 0) << session.err;
  EXPECT_EQ(st, 0) << box;
  // Nothing with the real value arrived before `session`; after it, two requests did.
  EXPECT_EQ(before_deny, 0u) << seen();
  EXPECT_EQ(before_session, 0u) << seen();
  EXPECT_EQ(arrived(), 2u) << seen();
  EXPECT_NE(box.find("denied=403"), std::string::npos) << box;
  EXPECT_NE(box.find("credential gh was not approved"), std::string::npos) << box;
  EXPECT_NE(box.find("session=200"), std::string::npos) << box;
  EXPECT_NE(box.find("later=200"), std::string::npos) << box;
  EXPECT_EQ(box.find(kAsked), std::string::npos) << box;
  const std::string log = audit();
  size_t asks = 0;
  for (size_t p = log.find(R"("type":"approval.ask")"); p != std::string::npos;
       p = log.find(R"("type":"approval.ask")", p + 1)) {
    ++asks;
  }
  EXPECT_EQ(asks, 2u) << log;
  EXPECT_NE(log.find(R"("kind":"credential","subject":"gh")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("answer":"deny")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("answer":"session")"), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(Users, CredentialAskTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
