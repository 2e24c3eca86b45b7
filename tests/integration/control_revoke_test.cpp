// `agentbox revoke` end to end: a box keeps sending requests with the same placeholder through
// the proxy to a loopback TLS upstream; after the revoke from outside, the next one is answered
// 403 with the reason and never reaches the upstream. As root and as the user agentbox-test.
#include <fcntl.h>

#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kReal = "ghp_RealRevokeTokenAAA0123456789abcdefWXYZ";

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
  std::string runtime = w_.root + "/run";
  ASSERT_EQ(::mkdir(runtime.c_str(), 0700), 0);
  ASSERT_EQ(::chown(runtime.c_str(), w_.as.uid, w_.as.gid), 0);
  // Requests until one is refused (bounded), each with the placeholder the box was given.
  std::string script =
      "echo \"token=$GH_TOKEN\"; for i in $(seq 1 1200); do "
      "code=$(curl -sS -o /tmp/body -w '%{http_code}' https://api.example.test/echo/r "
      "-H \"Authorization: Bearer $GH_TOKEN\"); echo \"code=$code\"; "
      "if [ \"$code\" = 403 ]; then cat /tmp/body; echo; echo \"token=$GH_TOKEN\"; exit 0; fi; "
      "sleep 0.05; done; exit 3";
  Args a = {"run",
            "-q",
            "--upstream-ca",
            up_ + "/ca.pem",
            "--connect-to",
            fmt::format("api.example.test:443:127.0.0.1:{}", port_),
            "--",
            "sh",
            "-c",
            script};
  RunOptions o;
  o.env = env();
  o.env["XDG_CONFIG_HOME"] = cfg_;
  o.env["XDG_RUNTIME_DIR"] = runtime;
  std::string out_path = w_.root + "/box.out";
  int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  o.stdout_fd = out;
  o.stderr_fd = out;
  int unused_out = -1;
  int unused_err = -1;  // spawn writes them; -1 when not captured
  pid_t pid = spawn(w_, a, o, &unused_out, &unused_err);
  ASSERT_GT(pid, 0);
  // The first injected request arrived upstream with the real value.
  for (int i = 0; i < 600 && seen().find(kReal) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string id;
  RunOptions co;
  co.env["XDG_RUNTIME_DIR"] = runtime;
  Output ps = run(w_, {"ps", "--json"}, co);
  if (auto pos = ps.out.find("\"id\": \""); pos != std::string::npos) {
    id = ps.out.substr(pos + 7, 6);
  }
  Output r = run(w_, {"revoke", id, "gh"}, co);
  Output unknown = run(w_, {"revoke", id, "nope"}, co);
  int st = wait_for(pid, 60000);
  if (st == -1) {
    ::kill(pid, SIGKILL);
    wait_for(pid, 5000);
  }
  ::close(out);
  std::string box = slurp(out_path);
  ASSERT_FALSE(id.empty()) << ps.out << ps.err << box;
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

}  // namespace
}  // namespace agentbox::it
