// DNS responder: synthetic answers for allowed names, NXDOMAIN/REFUSED otherwise, audit events.
#include "agentbox/net/dns.hpp"

#include <fmt/core.h>
#include <gtest/gtest.h>

namespace agentbox::net {
namespace {

std::vector<std::byte> query(const std::vector<std::string>& labels, uint16_t qtype,
                             uint16_t id = 0xbeef, uint16_t flags = 0x0100) {
  std::vector<std::byte> m;
  auto u16 = [&](uint16_t v) {
    m.push_back(std::byte{static_cast<uint8_t>(v >> 8)});
    m.push_back(std::byte{static_cast<uint8_t>(v)});
  };
  u16(id);
  u16(flags);
  u16(1);
  u16(0);
  u16(0);
  u16(0);
  for (const auto& l : labels) {
    m.push_back(std::byte{static_cast<uint8_t>(l.size())});
    for (char c : l) {
      m.push_back(std::byte{static_cast<uint8_t>(c)});
    }
  }
  m.push_back(std::byte{0});
  u16(qtype);
  u16(1);
  return m;
}

struct Reply {
  uint16_t id;
  uint8_t rcode;
  uint16_t ancount;
  std::optional<Ip4> a;
};

Reply decode(const std::vector<std::byte>& r) {
  Reader rd(r);
  Reply out{};
  out.id = rd.u16();
  out.rcode = rd.u16() & 0xf;
  uint16_t qdcount = rd.u16();
  out.ancount = rd.u16();
  rd.skip(4);
  while (rd.ok() && qdcount == 1) {  // question name
    uint8_t len = rd.u8();
    if (len == 0) {
      break;
    }
    rd.skip(len);
  }
  rd.skip(qdcount == 1 ? 4 : 0);
  if (out.ancount == 1) {
    EXPECT_EQ(rd.u16(), 0xc00c);
    EXPECT_EQ(rd.u16(), dnstype::kA);
    rd.skip(2 + 4);
    EXPECT_EQ(rd.u16(), 4);
    out.a = rd.u32();
  }
  EXPECT_TRUE(rd.ok());
  return out;
}

class Dns : public ::testing::Test {
 protected:
  policy::EgressPolicy policy_ = *policy::EgressPolicy::parse({"api.github.com", "*.npmjs.org"});
  SyntheticPool pool_;
  audit::MemorySink audit_;
  DnsResponder dns_{policy_, pool_, audit_};
};

TEST_F(Dns, AllowedNameGetsStableSyntheticAddress) {
  auto r1 = decode(dns_.answer(query({"api", "github", "com"}, dnstype::kA)));
  EXPECT_EQ(r1.id, 0xbeef);
  EXPECT_EQ(r1.rcode, dnsrcode::kNoError);
  ASSERT_TRUE(r1.a);
  EXPECT_TRUE(pool_.contains(*r1.a));
  EXPECT_EQ(pool_.name_of(*r1.a), "api.github.com");
  auto r2 = decode(dns_.answer(query({"API", "GitHub", "com"}, dnstype::kA)));
  EXPECT_EQ(r2.a, r1.a);
  auto r3 = decode(dns_.answer(query({"registry", "npmjs", "org"}, dnstype::kA)));
  ASSERT_TRUE(r3.a);
  EXPECT_NE(*r3.a, *r1.a);
  EXPECT_NE(audit_.lines().find(R"("name":"api.github.com","qtype":"A")"), std::string::npos);
  EXPECT_NE(audit_.lines().find(R"("result":"allowed")"), std::string::npos);
}

TEST_F(Dns, DeniedAndInvalidNamesGetNxdomain) {
  EXPECT_EQ(decode(dns_.answer(query({"evil", "com"}, dnstype::kA))).rcode, dnsrcode::kNxDomain);
  EXPECT_EQ(decode(dns_.answer(query({"npmjs", "org"}, dnstype::kA))).rcode, dnsrcode::kNxDomain);
  EXPECT_EQ(decode(dns_.answer(query({"api.github", "com"}, dnstype::kA))).rcode,
            dnsrcode::kNxDomain);  // a '.' inside a label is never the name it spells
  EXPECT_EQ(
      decode(dns_.answer(query({std::string("api\0", 4), "github", "com"}, dnstype::kA))).rcode,
      dnsrcode::kNxDomain);
  EXPECT_EQ(decode(dns_.answer(query({"127", "0", "0", "1"}, dnstype::kA))).rcode,
            dnsrcode::kNxDomain);
  EXPECT_EQ(pool_.size(), 0u);
  EXPECT_EQ(audit_.tally().count("dns.query"), 5u);
  EXPECT_NE(audit_.lines().find(R"("result":"denied")"), std::string::npos);
}

TEST_F(Dns, AaaaIsEmptyAndTunnelTypesAreRefused) {
  auto aaaa = decode(dns_.answer(query({"api", "github", "com"}, dnstype::kAaaa)));
  EXPECT_EQ(aaaa.rcode, dnsrcode::kNoError);
  EXPECT_EQ(aaaa.ancount, 0);
  EXPECT_EQ(decode(dns_.answer(query({"api", "github", "com"}, dnstype::kAaaa))).rcode, 0);
  EXPECT_EQ(decode(dns_.answer(query({"evil", "com"}, dnstype::kAaaa))).rcode, dnsrcode::kNxDomain);
  for (uint16_t t : {dnstype::kTxt, dnstype::kSvcb, dnstype::kHttps, dnstype::kAny, dnstype::kNull,
                     dnstype::kAxfr}) {
    EXPECT_EQ(decode(dns_.answer(query({"api", "github", "com"}, t))).rcode, dnsrcode::kRefused)
        << t;
  }
}

TEST_F(Dns, MalformedQueriesGetNoAnswerOrFormerr) {
  auto q = query({"api", "github", "com"}, dnstype::kA);
  for (size_t n = 0; n < q.size(); ++n) {
    EXPECT_TRUE(dns_.answer(Bytes(q.data(), n)).empty()) << n;
  }
  EXPECT_TRUE(dns_.answer(query({"a", "com"}, dnstype::kA, 1, 0x8180)).empty());  // a response
  auto two = q;
  two[5] = std::byte{2};  // qdcount 2
  EXPECT_EQ(decode(dns_.answer(two)).rcode, dnsrcode::kFormErr);
  auto notify = query({"a", "com"}, dnstype::kA, 1, 0x2000);  // opcode 4
  auto reply = dns_.answer(notify);
  Reader r(reply);
  r.u16();
  EXPECT_EQ(r.u16() & 0xf, dnsrcode::kNotImp);
}

TEST_F(Dns, CompressionLoopsAreRejected) {
  std::vector<std::byte> m = query({"x"}, dnstype::kA);
  // Replace the name with a pointer to itself (offset 12).
  m.resize(12);
  for (uint8_t b : {0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01}) {
    m.push_back(std::byte{b});
  }
  EXPECT_TRUE(dns_.answer(m).empty());
}

// An Approver that keeps the callbacks for the test to answer.
struct HeldApprover final : policy::Approver {
  void ask(policy::Question q, policy::AnswerCallback answer) override {
    questions.push_back(std::move(q));
    answers.push_back(std::move(answer));
  }
  std::vector<policy::Question> questions;
  std::vector<policy::AnswerCallback> answers;
};

class DnsAsk : public Dns {
 protected:
  void SetUp() override {
    policy_.add_ask(*policy::EgressRule::parse("*.ask.test:8443"));
    dns_.use_approver(&approver_, &once_, [this](const ReplyTo& to, Bytes reply) {
      sent_.push_back({to.port, decode(std::vector<std::byte>(reply.begin(), reply.end()))});
    });
  }
  std::vector<std::byte> ask(const std::string& label, uint16_t qtype, uint16_t sport = 5353) {
    ReplyTo to{.mac = {}, .ip = ip4(10, 0, 2, 100), .port = sport};
    return dns_.answer(query({label, "ask", "test"}, qtype), &to);
  }
  HeldApprover approver_;
  OnceGrants once_;
  std::vector<std::pair<uint16_t, Reply>> sent_;
};

TEST_F(DnsAsk, HeldUntilAnsweredOneQuestionPerName) {
  EXPECT_TRUE(ask("a", dnstype::kA, 1).empty());
  EXPECT_TRUE(ask("a", dnstype::kAaaa, 2).empty());  // joins the same question
  ASSERT_EQ(approver_.questions.size(), 1u);
  EXPECT_EQ(approver_.questions[0].subject, "a.ask.test");
  EXPECT_EQ(approver_.questions[0].detail, "a.ask.test:8443");  // what "session" would allow
  EXPECT_EQ(dns_.held(), 2u);
  // Not asked: allowed names, names no ask rule matches, and without a ReplyTo.
  EXPECT_EQ(decode(dns_.answer(query({"api", "github", "com"}, dnstype::kA))).rcode, 0);
  EXPECT_EQ(decode(dns_.answer(query({"evil", "com"}, dnstype::kA))).rcode, dnsrcode::kNxDomain);
  EXPECT_EQ(decode(dns_.answer(query({"b", "ask", "test"}, dnstype::kA))).rcode,
            dnsrcode::kNxDomain);
  EXPECT_TRUE(sent_.empty());
  approver_.answers[0](policy::Answer::allow_once);
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[0].first, 1);
  ASSERT_TRUE(sent_[0].second.a);
  EXPECT_EQ(pool_.name_of(*sent_[0].second.a), "a.ask.test");
  EXPECT_EQ(sent_[1].second.ancount, 0);  // AAAA: empty
  EXPECT_EQ(dns_.held(), 0u);
  // Once: one connection's grant, used up by the first that takes it.
  EXPECT_TRUE(once_.take("a.ask.test"));
  EXPECT_FALSE(once_.take("a.ask.test"));
  // The next query asks again.
  EXPECT_TRUE(ask("a", dnstype::kA).empty());
  EXPECT_EQ(approver_.questions.size(), 2u);
}

TEST_F(DnsAsk, DeniedGetsNxdomainAndNoGrant) {
  EXPECT_TRUE(ask("a", dnstype::kA).empty());
  approver_.answers[0](policy::Answer::deny);
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].second.rcode, dnsrcode::kNxDomain);
  EXPECT_FALSE(once_.take("a.ask.test"));
  EXPECT_NE(audit_.lines().find(R"("approval":"deny")"), std::string::npos);
}

TEST_F(DnsAsk, BoundedHeldQueries) {
  for (size_t i = 0; i < DnsResponder::kMaxHeld; ++i) {
    EXPECT_TRUE(ask(fmt::format("n{}", i), dnstype::kA).empty());
  }
  EXPECT_EQ(decode(ask("over", dnstype::kA)).rcode, dnsrcode::kServFail);
  EXPECT_EQ(approver_.questions.size(), DnsResponder::kMaxHeld);
  approver_.answers[0](policy::Answer::deny);
  EXPECT_TRUE(ask("over", dnstype::kA).empty());  // room again
}

TEST_F(DnsAsk, AnAnswerAfterTheResponderIsGoneIsIgnored) {
  std::vector<policy::AnswerCallback> late;
  {
    DnsResponder other{policy_, pool_, audit_};
    other.use_approver(&approver_, &once_, [this](const ReplyTo&, Bytes) { sent_.push_back({}); });
    ReplyTo to{};
    EXPECT_TRUE(other.answer(query({"z", "ask", "test"}, dnstype::kA), &to).empty());
  }
  approver_.answers.back()(policy::Answer::allow_once);
  EXPECT_TRUE(sent_.empty());
  EXPECT_FALSE(once_.take("z.ask.test"));
}

TEST(OnceGrants, BoundedAndSingleUse) {
  OnceGrants g;
  for (size_t i = 0; i < OnceGrants::kMax + 10; ++i) {
    g.grant(fmt::format("h{}", i));
  }
  EXPECT_EQ(g.size(), OnceGrants::kMax);
  EXPECT_TRUE(g.take(fmt::format("h{}", OnceGrants::kMax + 9)));
  EXPECT_FALSE(g.take(fmt::format("h{}", OnceGrants::kMax + 9)));
  EXPECT_FALSE(g.take("never"));
}

TEST(SyntheticPool, BoundedAndBidirectional) {
  SyntheticPool pool(ip4(198, 18, 0, 0), 15, 3);
  auto a = pool.assign("a.com");
  auto b = pool.assign("b.com");
  auto c = pool.assign("c.com");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(*a, ip4(198, 18, 0, 1));
  EXPECT_FALSE(pool.assign("d.com"));
  EXPECT_EQ(pool.assign("a.com"), a);
  EXPECT_EQ(pool.name_of(*c), "c.com");
  EXPECT_FALSE(pool.name_of(ip4(198, 18, 0, 99)));
  EXPECT_TRUE(pool.contains(ip4(198, 19, 255, 1)));
  EXPECT_FALSE(pool.contains(ip4(198, 20, 0, 1)));
}

}  // namespace
}  // namespace agentbox::net
