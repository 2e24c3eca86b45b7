// `agentbox run --learn` end to end: a box reaches two hosts no rule allows (both answered by the
// loopback upstream, the oracle; not intercepted, so the box trusts its CA with --trust-ca);
// `agentbox profile suggest` of its log gives a profile; a second box, without --learn and with
// only that profile, reaches both, and a third host it never needed stays refused. As root and as
// the user agentbox-test.
#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

class LearnTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override {
    return {"a.learn.test", "b.learn.test", "c.learn.test"};
  }
  std::vector<std::string> secrets() const override { return {}; }
  std::map<std::string, std::string> env() const override { return {}; }
  std::string config() const override { return "[network]\nallow = []\n"; }
  static std::string fetch(const std::string& host) {
    return fmt::format(
        "echo {0}=$(curl -sS -o /dev/null -w '%{{http_code}}' https://{0}/echo/learn-{0});", host);
  }
};

TEST_P(LearnTest, ALearnedProfileAdmitsWhatTheRunNeededAndNothingElse) {
  const std::string both = fetch("a.learn.test") + fetch("b.learn.test");
  Output learned = box(both, 90000, {"--learn", "--trust-ca", up_ + "/ca.pem"}, false);
  ASSERT_EQ(learned.status, 0) << learned.out << learned.err;
  EXPECT_TRUE(learned.has_line("a.learn.test=200")) << learned.out << learned.err;
  EXPECT_TRUE(learned.has_line("b.learn.test=200")) << learned.out;
  // The upstream, outside the box, saw both.
  EXPECT_NE(seen().find("/echo/learn-a.learn.test"), std::string::npos) << seen();
  EXPECT_NE(seen().find("/echo/learn-b.learn.test"), std::string::npos) << seen();
  const auto at = learned.err.find("audit log: ");
  ASSERT_NE(at, std::string::npos) << learned.err;
  std::string log = learned.err.substr(at + 11);
  log = log.substr(0, log.find('\n'));
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = cfg_;
  Output suggest = run(w_, {"profile", "suggest", log}, o);
  ASSERT_EQ(suggest.status, 0) << suggest.err;
  EXPECT_NE(suggest.out.find("\"a.learn.test:443\",  # "), std::string::npos) << suggest.out;
  EXPECT_NE(suggest.out.find("admitted by --learn"), std::string::npos) << suggest.out;
  EXPECT_EQ(suggest.out.find("c.learn.test"), std::string::npos) << suggest.out;
  ASSERT_EQ(::mkdir((cfg_ + "/agentbox/profiles").c_str(), 0755), 0);
  write_file(cfg_ + "/agentbox/profiles/learned.toml", suggest.out);
  chown_tree(cfg_, w_.as.uid, w_.as.gid);
  // Without --learn, the profile alone admits both; an unlisted third host stays refused.
  Output again = box(both + fetch("c.learn.test"), 90000,
                     {"--profile", "learned", "--trust-ca", up_ + "/ca.pem"});
  ASSERT_EQ(again.status, 0) << again.out << again.err;
  EXPECT_TRUE(again.has_line("a.learn.test=200")) << again.out << again.err;
  EXPECT_TRUE(again.has_line("b.learn.test=200")) << again.out;
  EXPECT_TRUE(again.has_line("c.learn.test=000")) << again.out;
  EXPECT_EQ(seen().find("/echo/learn-c.learn.test"), std::string::npos) << seen();
  const std::string audit_log = audit();
  EXPECT_NE(
      audit_log.find(R"("type":"learn.allow","id":"","kind":"host","subject":"a.learn.test")"),
      std::string::npos)
      << audit_log;
}

// Methods, paths and ports: the learning run uses GET /v1/items/123 and POST /v1/items on 443 and
// GET /v1/items/9 on 8443; the suggested profile alone then lets those (and GET of another id)
// through, and refuses DELETE /v1/items/1, GET /admin, POST /v1/items/5 and port 9443 (never
// used). The upstream's own log decides what left the box.
class LearnHttpTest : public LearnTest {
 protected:
  static std::string call(const std::string& tag, const std::string& method,
                          const std::string& url) {
    return fmt::format("echo {0}=$(curl -sS -o /dev/null -w '%{{http_code}}' -X {1} https://{2});",
                       tag, method, url);
  }
  Args ports() const {
    Args a;
    for (int p : {8443, 9443}) {
      a.insert(a.end(), {"--connect-to", fmt::format("a.learn.test:{}:127.0.0.1:{}", p, port_)});
    }
    return a;
  }
  size_t count(const std::string& what) {
    const std::string s = seen();
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) {
      ++n;
    }
    return n;
  }
};

TEST_P(LearnHttpTest, ALearnedProfileAllowsTheMethodsPathsAndPortsUsedAndRefusesTheRest) {
  Args flags = ports();
  flags.insert(flags.end(), {"--learn"});
  const std::string used = call("get", "GET", "a.learn.test/v1/items/123") +
                           call("post", "POST", "a.learn.test/v1/items") +
                           call("port", "GET", "a.learn.test:8443/v1/items/9");
  Output learned = box(used, 90000, flags, false);
  ASSERT_EQ(learned.status, 0) << learned.out << learned.err;
  // Through to the upstream (it answers 404 to these paths), on both ports.
  EXPECT_TRUE(learned.has_line("get=404")) << learned.out << learned.err;
  EXPECT_TRUE(learned.has_line("post=404")) << learned.out;
  EXPECT_TRUE(learned.has_line("port=404")) << learned.out;
  ASSERT_EQ(count("GET /v1/items/123 "), 1u) << seen();
  ASSERT_EQ(count("POST /v1/items "), 1u) << seen();
  ASSERT_EQ(count("GET /v1/items/9 "), 1u) << seen();
  const auto at = learned.err.find("audit log: ");
  ASSERT_NE(at, std::string::npos) << learned.err;
  std::string log = learned.err.substr(at + 11);
  log = log.substr(0, log.find('\n'));
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = cfg_;
  Output suggest = run(w_, {"profile", "suggest", log}, o);
  ASSERT_EQ(suggest.status, 0) << suggest.err;
  EXPECT_NE(suggest.out.find("\"a.learn.test:443\","), std::string::npos) << suggest.out;
  EXPECT_NE(suggest.out.find("\"a.learn.test:8443\","), std::string::npos) << suggest.out;
  EXPECT_NE(suggest.out.find("methods = [\"GET\"]\npaths = [\"/v1/items/*\"]"), std::string::npos)
      << suggest.out;
  EXPECT_NE(suggest.out.find("methods = [\"POST\"]\npaths = [\"/v1/items\"]"), std::string::npos)
      << suggest.out;
  ASSERT_EQ(::mkdir((cfg_ + "/agentbox/profiles").c_str(), 0755), 0);
  write_file(cfg_ + "/agentbox/profiles/learned.toml", suggest.out);
  chown_tree(cfg_, w_.as.uid, w_.as.gid);

  flags = ports();
  flags.insert(flags.end(), {"--profile", "learned"});
  Output again = box(used + call("other", "GET", "a.learn.test/v1/items/456") +
                         call("delete", "DELETE", "a.learn.test/v1/items/1") +
                         call("admin", "GET", "a.learn.test/admin") +
                         call("postid", "POST", "a.learn.test/v1/items/5") +
                         call("unused", "GET", "a.learn.test:9443/v1/items/7"),
                     90000, flags);
  ASSERT_EQ(again.status, 0) << again.out << again.err;
  EXPECT_TRUE(again.has_line("get=404")) << again.out << again.err;
  EXPECT_TRUE(again.has_line("post=404")) << again.out;
  EXPECT_TRUE(again.has_line("port=404")) << again.out;
  EXPECT_TRUE(again.has_line("other=404")) << again.out;
  EXPECT_TRUE(again.has_line("delete=403")) << again.out;
  EXPECT_TRUE(again.has_line("admin=403")) << again.out;
  EXPECT_TRUE(again.has_line("postid=403")) << again.out;
  EXPECT_TRUE(again.has_line("unused=000")) << again.out;
  // The oracle: what reached the upstream.
  EXPECT_EQ(count("GET /v1/items/123 "), 2u) << seen();
  EXPECT_EQ(count("POST /v1/items "), 2u) << seen();
  EXPECT_EQ(count("GET /v1/items/9 "), 2u) << seen();
  EXPECT_EQ(count("GET /v1/items/456 "), 1u) << seen();
  EXPECT_EQ(count("DELETE "), 0u) << seen();
  EXPECT_EQ(count("GET /admin"), 0u) << seen();
  EXPECT_EQ(count("POST /v1/items/5"), 0u) << seen();
  EXPECT_EQ(count("/v1/items/7 "), 0u) << seen();
}

INSTANTIATE_TEST_SUITE_P(Users, LearnHttpTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

INSTANTIATE_TEST_SUITE_P(Users, LearnTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
