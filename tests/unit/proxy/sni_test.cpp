// ClientHello reader: real OpenSSL hellos, every prefix, and crafted edge cases.
#include "agentbox/http/sni.hpp"

#include <gtest/gtest.h>

#include "agentbox/policy/host.hpp"
#include "tls_test_util.hpp"

namespace agentbox::proxy {
namespace {

using testing::Bytes;

// The grammar is policy::normalize_name (tested in unit_policy); these pin what SNI relies on.
TEST(Hostname, AcceptsAndNormalizes) {
  EXPECT_EQ(policy::normalize_name("API.GitHub.com."), "api.github.com");
  EXPECT_EQ(policy::normalize_name("a-b.c0"), "a-b.c0");
  EXPECT_EQ(policy::normalize_name("localhost"), "localhost");
  EXPECT_EQ(policy::normalize_name("a."), "a");
  EXPECT_EQ(policy::normalize_name(std::string(63, 'a') + ".com"), std::string(63, 'a') + ".com");
}

TEST(Hostname, RejectsBadGrammar) {
  for (std::string_view bad :
       {"", ".", "..", "a..b", ".a", "-a.com", "a-.com", "a b.com", "a%2e.com", "1.2.3.4",
        "1.2.3.4.", "x.123", "é.com", "a.com..", "a:443", "a/b"}) {
    EXPECT_FALSE(policy::normalize_name(bad).has_value()) << bad;
  }
  EXPECT_FALSE(policy::normalize_name(std::string("evil.com\0.github.com", 20)).has_value());
  EXPECT_FALSE(policy::normalize_name(std::string(64, 'a') + ".com").has_value());
  std::string long_name;
  for (int i = 0; i < 64; ++i) {
    long_name += "abc.";
  }
  EXPECT_FALSE(policy::normalize_name(long_name + "com").has_value());
}

TEST(Sni, ParsesOpenSslHelloTls13) {
  const Bytes b = testing::openssl_client_hello("API.github.com", {"h2", "http/1.1"});
  const auto r = http::parse_client_hello(b);
  ASSERT_EQ(r.status, http::HelloStatus::kOk) << r.reason;
  EXPECT_TRUE(r.hello.has_sni);
  EXPECT_EQ(r.hello.sni, "api.github.com");
  EXPECT_EQ(r.hello.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_TRUE(r.hello.offers_tls13);
  EXPECT_FALSE(r.hello.has_ech);
  EXPECT_EQ(r.hello.record_bytes, b.size());
}

TEST(Sni, ParsesOpenSslHelloTls12NoAlpn) {
  const Bytes b = testing::openssl_client_hello("example.org", {}, TLS1_2_VERSION);
  const auto r = http::parse_client_hello(b);
  ASSERT_EQ(r.status, http::HelloStatus::kOk) << r.reason;
  EXPECT_EQ(r.hello.sni, "example.org");
  EXPECT_TRUE(r.hello.alpn.empty());
  EXPECT_FALSE(r.hello.offers_tls13);
}

TEST(Sni, NoSniIsOkButFlagged) {
  const auto r = http::parse_client_hello(testing::openssl_client_hello("", {"http/1.1"}));
  ASSERT_EQ(r.status, http::HelloStatus::kOk);
  EXPECT_FALSE(r.hello.has_sni);
}

TEST(Sni, EveryPrefixNeedsMore) {
  const Bytes b = testing::openssl_client_hello("a.example", {"http/1.1"});
  for (size_t n = 0; n < b.size(); ++n) {
    const auto r = http::parse_client_hello(std::span(b).first(n));
    ASSERT_EQ(r.status, http::HelloStatus::kNeedMore) << "prefix " << n << ": " << r.reason;
  }
}

TEST(Sni, TrailingApplicationBytesAreNotPartOfTheHello) {
  Bytes b = testing::openssl_client_hello("a.example", {});
  const size_t n = b.size();
  testing::put_str(b, "GET / HTTP/1.1\r\n");
  const auto r = http::parse_client_hello(b);
  ASSERT_EQ(r.status, http::HelloStatus::kOk);
  EXPECT_EQ(r.hello.record_bytes, n);
}

TEST(Sni, NotTls) {
  const std::string get = "GET / HTTP/1.1\r\n";
  EXPECT_EQ(http::parse_client_hello(std::as_bytes(std::span(get))).status,
            http::HelloStatus::kNotTls);
  const Bytes sslv2{std::byte{0x80}, std::byte{0x2e}, std::byte{0x01}};
  EXPECT_EQ(http::parse_client_hello(sslv2).status, http::HelloStatus::kNotTls);
  const Bytes bad_version{std::byte{22}, std::byte{2}};
  EXPECT_EQ(http::parse_client_hello(bad_version).status, http::HelloStatus::kNotTls);
  EXPECT_EQ(http::parse_client_hello(Bytes{std::byte{22}}).status, http::HelloStatus::kNeedMore);
}

TEST(Sni, SplitAcrossRecords) {
  const Bytes body = testing::hello_body({testing::sni_ext("split.example")});
  const auto r = http::parse_client_hello(testing::records(body, 7));
  // 7-byte records: more than the record cap.
  EXPECT_EQ(r.status, http::HelloStatus::kMalformed);
  const auto r2 = http::parse_client_hello(testing::records(body, 40));
  ASSERT_EQ(r2.status, http::HelloStatus::kOk) << r2.reason;
  EXPECT_EQ(r2.hello.sni, "split.example");
}

TEST(Sni, LargeHelloOver16KiBSpansRecords) {
  testing::Ext pad{21, Bytes(20000, std::byte{0})};  // padding extension
  const Bytes body = testing::hello_body({testing::sni_ext("big.example"), pad});
  const Bytes wire = testing::records(body);
  const auto r = http::parse_client_hello(wire);
  ASSERT_EQ(r.status, http::HelloStatus::kOk) << r.reason;
  EXPECT_EQ(r.hello.sni, "big.example");
  EXPECT_EQ(r.hello.record_bytes, wire.size());
  // Over the cap: refused before the whole message has arrived.
  EXPECT_EQ(http::parse_client_hello(std::span(wire).first(100), 1024).status,
            http::HelloStatus::kMalformed);
}

TEST(Sni, OversizedRecordIsMalformed) {
  Bytes b;
  testing::put8(b, 22);
  testing::put16(b, 0x0301);
  testing::put16(b, 16385);
  EXPECT_EQ(http::parse_client_hello(b).status, http::HelloStatus::kMalformed);
}

TEST(Sni, RejectsBadNames) {
  for (const std::string& name :
       {std::string("evil.com\0.github.com", 20), std::string("a..b"), std::string("x%y.com"),
        std::string(""), std::string("10.0.0.1")}) {
    const auto r =
        http::parse_client_hello(testing::records(testing::hello_body({testing::sni_ext(name)})));
    EXPECT_EQ(r.status, http::HelloStatus::kMalformed) << name;
  }
  const auto ok = http::parse_client_hello(
      testing::records(testing::hello_body({testing::sni_ext("Trail.Dot.")})));
  ASSERT_EQ(ok.status, http::HelloStatus::kOk);
  EXPECT_EQ(ok.hello.sni, "trail.dot");
}

TEST(Sni, TwoHostNamesOrDuplicateExtensionsAreMalformed) {
  testing::Ext two{0, {}};
  Bytes list;
  for (const std::string n : {"a.example", "b.example"}) {
    testing::put8(list, 0);
    testing::put16(list, static_cast<unsigned>(n.size()));
    testing::put_str(list, n);
  }
  testing::put16(two.data, static_cast<unsigned>(list.size()));
  two.data.insert(two.data.end(), list.begin(), list.end());
  EXPECT_EQ(http::parse_client_hello(testing::records(testing::hello_body({two}))).status,
            http::HelloStatus::kMalformed);
  EXPECT_EQ(
      http::parse_client_hello(testing::records(testing::hello_body(
                                   {testing::sni_ext("a.example"), testing::sni_ext("a.example")})))
          .status,
      http::HelloStatus::kMalformed);
}

TEST(Sni, FlagsEchAndEsni) {
  const auto r = http::parse_client_hello(testing::records(
      testing::hello_body({testing::sni_ext("public.example"), {0xfe0d, Bytes(8, std::byte{1})}})));
  ASSERT_EQ(r.status, http::HelloStatus::kOk);
  EXPECT_TRUE(r.hello.has_ech);
  EXPECT_FALSE(r.hello.has_esni);
  EXPECT_EQ(r.hello.sni, "public.example");
  const auto r2 = http::parse_client_hello(
      testing::records(testing::hello_body({{0xffce, Bytes(4, std::byte{0})}})));
  ASSERT_EQ(r2.status, http::HelloStatus::kOk);
  EXPECT_TRUE(r2.hello.has_esni);
}

TEST(Sni, BadAlpnAndTrailingBytes) {
  Bytes alpn;
  testing::put16(alpn, 3);
  testing::put8(alpn, 0);  // empty protocol name
  testing::put16(alpn, 0);
  EXPECT_EQ(http::parse_client_hello(testing::records(testing::hello_body({{16, alpn}}))).status,
            http::HelloStatus::kMalformed);
  Bytes body = testing::hello_body({testing::sni_ext("a.example")});
  body.push_back(std::byte{0});
  EXPECT_EQ(http::parse_client_hello(testing::records(body)).status, http::HelloStatus::kMalformed);
}

TEST(Sni, NotAClientHelloMessage) {
  Bytes b;
  testing::put8(b, 22);
  testing::put16(b, 0x0303);
  testing::put16(b, 4);
  testing::put8(b, 2);  // server_hello
  testing::put24(b, 0);
  EXPECT_EQ(http::parse_client_hello(b).status, http::HelloStatus::kMalformed);
}

}  // namespace
}  // namespace agentbox::proxy
