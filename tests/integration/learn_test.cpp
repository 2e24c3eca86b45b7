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
  EXPECT_NE(suggest.out.find("\"a.learn.test\",  # "), std::string::npos) << suggest.out;
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

INSTANTIATE_TEST_SUITE_P(Users, LearnTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
