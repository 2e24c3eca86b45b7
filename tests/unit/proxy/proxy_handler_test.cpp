// ProxyHandler end to end, policy side: passthrough, injection and scrubbing, Basic and SigV4,
// placeholders off scope, plain HTTP, HTTP rules, fronting, CONNECT, unknown bytes, raw TCP,
// slowloris. Real OpenSSL on both sides, real sockets, loopback upstreams with their own test CA
// reached through --connect-to overrides (the rig: proxy_rig.hpp, proxy_test_util.hpp).
#include "agentbox/proxy/proxy_handler.hpp"

#include <gtest/gtest.h>

#include "proxy_test_util.hpp"

namespace agentbox::proxy {
namespace {

using namespace testing;  // NOLINT: the test rig

TEST_F(ProxyHandlerTest, PassthroughIsNotDecrypted) {
  UniqueFd fd = open_flow(kPass);
  // The client verifies against the upstream's own CA: only the real server can answer.
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kPass, upstream_ca_file_);
    if (!c.handshake()) {
      return "handshake failed: " + c.error();
    }
    c.send(get(kPass, "/hello"));
    return c.response();
  });
  EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(handler_->counters().passthrough, 1u);
  EXPECT_EQ(handler_->counters().intercepted, 0u);
  EXPECT_NE(audit().find(R"("mode":"passthrough")"), std::string::npos);
  EXPECT_EQ(audit().find("http.request"), std::string::npos);  // nothing seen inside
}

TEST_F(ProxyHandlerTest, InterceptionInjectsAndScrubs) {
  const auto r =
      request(kApi, get(kApi, "/echo?token=x&page=2", "Authorization: Bearer " + gh_ph_ + "\r\n"));
  ASSERT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  // The upstream saw the real token; the box only ever saw the placeholder (the echo in the
  // body and in the X-Echo-Auth header were scrubbed).
  const auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(header_of(seen[0].head, "authorization"), std::string("Bearer ") + kRealGh);
  EXPECT_EQ(header_of(seen[0].head, "accept-encoding"), "identity");
  EXPECT_EQ(servers_[kApi]->last_alpn(), "http/1.1");
  EXPECT_EQ(r.find(kRealGh), std::string::npos) << r;
  EXPECT_NE(r.find("X-Echo-Auth: Bearer " + gh_ph_), std::string::npos) << r;
  EXPECT_NE(r.find("Authorization: Bearer " + gh_ph_), std::string::npos) << r;
  const auto a = audit();
  EXPECT_NE(a.find(R"("type":"http.request")"), std::string::npos) << a;
  EXPECT_NE(a.find(R"("path":"/echo?token=&page=")"), std::string::npos) << a;
  EXPECT_NE(a.find(R"("credentials":["github"])"), std::string::npos) << a;
  EXPECT_NE(a.find(R"("status":200)"), std::string::npos) << a;
  EXPECT_EQ(a.find(kRealGh), std::string::npos);
}

// A session's TLS contexts are made on its first interception, not with the handler: a program
// that never reaches an intercepted host costs no SSL_CTX (start-up, issue 15). The upstream's CA
// is the system bundle here, so no extra CA file makes them early.
TEST_F(ProxyHandlerTest, TlsContextsWaitForTheFirstInterception) {
  options_.system_bundle = upstream_ca_file_;
  options_.upstream_ca.clear();
  make_handler();
  EXPECT_FALSE(handler_->tls_contexts_made());
  const auto plain = request(kPlain, get(kPlain, "/hello"), 80);
  ASSERT_EQ(plain.substr(0, 15), "HTTP/1.1 200 OK") << plain;
  EXPECT_FALSE(handler_->tls_contexts_made());
  for (int i = 0; i < 2; ++i) {  // the second one reuses them
    const auto r = request(kApi, get(kApi, "/echo", "Authorization: Bearer " + gh_ph_ + "\r\n"));
    ASSERT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
    EXPECT_TRUE(handler_->tls_contexts_made());
  }
  EXPECT_EQ(handler_->counters().intercepted, 2u);
  EXPECT_EQ(header_of(servers_[kApi]->seen().back().head, "authorization"),
            std::string("Bearer ") + kRealGh);
}

// Extra upstream CA files are loaded with the handler: one that does not parse stops the start.
TEST_F(ProxyHandlerTest, AnUnreadableUpstreamCaStopsTheStart) {
  options_.upstream_ca = {"/nonexistent/agentbox-upstream-ca.pem"};
  auto h = ProxyHandler::create(*loop_, policy_, options_, &*creds_, &*session_ca_, audit_);
  ASSERT_FALSE(h.has_value());
  EXPECT_NE(h.error().message().find("agentbox-upstream-ca.pem"), std::string::npos);
}

TEST_F(ProxyHandlerTest, EchoSplitAcrossChunksIsScrubbed) {
  const auto r = request(
      kApi, get(kApi, "/echo-chunked",
                "X-Pad: " + std::string(7, 'p') + "\r\nAuthorization: token " + gh_ph_ + "\r\n"));
  ASSERT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(r.find(kRealGh), std::string::npos) << r;
  EXPECT_NE(r.find("token " + gh_ph_), std::string::npos) << r;
}

TEST_F(ProxyHandlerTest, BasicAuthPasswordSwapped) {
  const std::string basic = cred::base64_encode("x-access-token:" + git_ph_);
  const auto r = request(kGit, get(kGit, "/echo", "Authorization: Basic " + basic + "\r\n"));
  ASSERT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  const auto seen = servers_[kGit]->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(header_of(seen[0].head, "authorization"),
            "Basic " + cred::base64_encode(std::string("x-access-token:") + kRealGit));
  EXPECT_NE(r.find("X-Echo-Auth: Basic " + basic), std::string::npos) << r;  // scrubbed back
  EXPECT_NE(r.find("Authorization: Basic " + basic), std::string::npos) << r;
  EXPECT_EQ(r.find(cred::base64_encode(std::string("x-access-token:") + kRealGit)),
            std::string::npos);
}

// A SigV4 request signed with the placeholder key and no x-amz-content-sha256: the proxy reads
// the body, verifies the box's signature and re-signs with the real key before forwarding.
TEST_F(ProxyHandlerTest, SigV4BodyHeldAndResigned) {
  const std::string body = "Action=GetCallerIdentity&Version=2011-06-15";
  auto signed_by = [&](const std::string& key) {
    http::Request r;
    r.method = "POST";
    r.target = "/echo";
    r.headers = {{"Host", kApi},
                 {"Content-Type", "application/x-www-form-urlencoded"},
                 {"X-Amz-Date", "20261127T053000Z"},
                 {"Content-Length", std::to_string(body.size())}};
    cred::sigv4::Authorization a{.access_key = "AKIAEXAMPLE",
                                 .date = "20261127",
                                 .region = "us-east-1",
                                 .service = "sts",
                                 .signed_headers = {"content-type", "host", "x-amz-date"}};
    auto cr = cred::sigv4::canonical_request(r, a, cred::sigv4::sha256_hex(body),
                                             cred::sigv4::UriStyle::kNormalized);
    a.signature = cred::sigv4::signature(key, a, "20261127T053000Z", *cr);
    r.headers.push_back({"Authorization", a.render()});
    return r;
  };
  const auto box_key = creds_->placeholder("aws");
  ASSERT_TRUE(box_key.has_value());
  const auto box_req = signed_by(*box_key);
  const auto r = request(kApi, http::serialize_head(box_req) + body);
  ASSERT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  const auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(header_of(seen[0].head, "authorization"), *signed_by(kRealAws).header("authorization"));
  EXPECT_EQ(seen[0].body, body);
  EXPECT_EQ(r.find(kRealAws), std::string::npos);
}

TEST_F(ProxyHandlerTest, PlaceholderToWrongHostBlocked) {
  const auto r = request(kDocs, get(kDocs, "/docs/a", "Authorization: Bearer " + gh_ph_ + "\r\n"));
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 403") << r;
  EXPECT_NE(r.find("agentbox: request blocked: credential github sent to docs.example.test\n"),
            std::string::npos)
      << r;
  EXPECT_TRUE(servers_[kDocs]->seen().empty());
  const auto a = audit();
  EXPECT_NE(a.find(R"("type":"credential.blocked")"), std::string::npos) << a;
  EXPECT_NE(a.find(R"("decision":"denied")"), std::string::npos) << a;
}

TEST_F(ProxyHandlerTest, PlaceholderInBodyToWrongHostBlocked) {
  const std::string body = R"({"note":"x","key":")" + gh_ph_ + "\"}";
  const auto r = request(kDocs,
                         "POST /upload HTTP/1.1\r\nHost: docs.example.test\r\n"
                         "Content-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 403") << r;
  EXPECT_NE(r.find("credential github sent to docs.example.test"), std::string::npos) << r;
  // The wrong host saw nothing: not the request, not the placeholder, not the real secret.
  const auto seen = servers_[kDocs]->seen();
  EXPECT_TRUE(seen.empty()) << seen.size() << " request(s) reached " << kDocs;
  for (const auto& req : seen) {
    EXPECT_EQ((req.head + req.body).find(kRealGh), std::string::npos) << req.head << req.body;
  }
  EXPECT_EQ(r.find(kRealGh), std::string::npos) << r;
}

TEST_F(ProxyHandlerTest, PlainHttpNeverCarriesASecret) {
  const auto r =
      request(kPlain, get(kPlain, "/echo", "Authorization: Bearer " + gh_ph_ + "\r\n"), 80);
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 403") << r;
  EXPECT_NE(r.find("would be sent unencrypted"), std::string::npos) << r;
  EXPECT_TRUE(plain_->seen().empty());
  // Without a placeholder, plain HTTP goes through (with the Host check).
  const auto ok = request(kPlain, get(kPlain, "/x"), 80);
  EXPECT_EQ(ok.substr(0, 15), "HTTP/1.1 200 OK") << ok;
  EXPECT_EQ(handler_->counters().plain_http, 2u);
}

TEST_F(ProxyHandlerTest, MethodAndPathRulesDeny) {
  auto r = request(kDocs,
                   "POST /docs/x HTTP/1.1\r\nHost: docs.example.test\r\nContent-Length: "
                   "2\r\n\r\nhi");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 403") << r;
  EXPECT_NE(r.find("\r\n\r\nagentbox: POST https://docs.example.test/docs/x denied by rule "
                   "test.toml:3:1, test.toml:8:1\n"),
            std::string::npos)
      << r;
  r = request(kDocs, get(kDocs, "/admin?x=1"));
  EXPECT_NE(r.find("agentbox: GET https://docs.example.test/admin denied by rule"),
            std::string::npos)
      << r;
  r = request(kDocs, get(kDocs, "/docs/../admin"));
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 403") << r;
  r = request(kDocs, get(kDocs, "/docs/guide/intro"));
  EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  // max_body: a declared length over the cap is refused before any byte goes upstream.
  r = request(kDocs,
              "POST /upload HTTP/1.1\r\nHost: docs.example.test\r\nContent-Length: "
              "2000\r\n\r\n" +
                  std::string(2000, 'x'));
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 413") << r;
  EXPECT_EQ(servers_[kDocs]->seen().size(), 1u);
  const auto a = audit();
  EXPECT_NE(a.find(R"("rule":"test.toml:3:1")"), std::string::npos) << a;
}

TEST_F(ProxyHandlerTest, ChunkedUploadOverMaxBodyIsCut) {
  std::string req =
      "POST /upload HTTP/1.1\r\nHost: docs.example.test\r\nTransfer-Encoding: "
      "chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) {
    req += "200\r\n" + std::string(512, 'a') + "\r\n";
  }
  req += "0\r\n\r\n";
  const auto r = request(kDocs, req);
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 413") << r;
}

TEST_F(ProxyHandlerTest, FrontingRefused) {
  // SNI differs from the name the box resolved: dropped before any handshake.
  UniqueFd fd = open_flow(kApi);
  const bool handshake = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kDocs, session_ca_file_);
    return c.handshake();
  });
  EXPECT_FALSE(handshake);
  EXPECT_NE(audit().find("does not match the connection's name"), std::string::npos) << audit();
  // No SNI at all: nothing to check the name against, refused the same way.
  UniqueFd no_sni = open_flow(kApi);
  EXPECT_FALSE(while_pumping(*loop_, [&, fd = std::move(no_sni)]() mutable {
    BoxClient c(std::move(fd), "", session_ca_file_);
    return c.handshake();
  }));
  EXPECT_NE(audit().find("TLS without SNI"), std::string::npos) << audit();
  // Host differs from SNI (= flow name): 403, never forwarded.
  const auto r = request(kApi, get(kDocs, "/docs/a"));
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 403") << r;
  EXPECT_NE(r.find("domain fronting"), std::string::npos) << r;
  EXPECT_TRUE(servers_[kApi]->seen().empty());
  EXPECT_TRUE(servers_[kDocs]->seen().empty());
  // Plain HTTP: Host must be the flow's name too.
  const auto p = request(kPlain, get(kApi, "/x"), 80);
  EXPECT_EQ(p.substr(0, 12), "HTTP/1.1 403") << p;
}

TEST_F(ProxyHandlerTest, ConnectAndTraceRefused) {
  auto r =
      request(kPlain, "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 80);
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 405") << r;
  r = request(kApi, "TRACE / HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 405") << r;
  EXPECT_TRUE(plain_->seen().empty());
  EXPECT_TRUE(servers_[kApi]->seen().empty());
}

TEST_F(ProxyHandlerTest, NeitherTlsNorHttpDropped) {
  for (const std::string& bytes :
       {std::string("SSH-2.0-OpenSSH_9.2\r\n"), std::string("\x16\x01garbage-not-tls", 17),
        std::string("\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", 10)}) {
    UniqueFd fd = open_flow(kApi);
    const bool closed = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
      BoxClient c(std::move(fd));
      c.send(bytes);
      return c.closed();
    });
    EXPECT_TRUE(closed);
  }
  EXPECT_EQ(handler_->counters().dropped, 3u);
  // The upstream is connected when the flow opens (so a refused name is a RST, and the connect
  // overlaps the box's handshake): one connection per flow, closed without a byte of the box's.
  // The server's thread counts each when it accepts it, which may come after the drop here.
  EXPECT_TRUE(pump_until(
      *loop_, [&] { return servers_[kApi]->connections() >= 3; }, 5s));
  EXPECT_EQ(servers_[kApi]->connections(), 3);
  EXPECT_NE(audit().find("neither TLS nor HTTP to api.example.test:443"), std::string::npos);
  EXPECT_NE(audit().find("malformed TLS ClientHello"), std::string::npos) << audit();
}

TEST_F(ProxyHandlerTest, RawTcpRuleSplicesServerFirstProtocol) {
  UniqueFd fd = open_flow(kSsh, 22);
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd));
    std::string got;
    Stream s = c.stream();
    s.read_until(got, "\r\n");  // the server speaks first
    s.write("hello\n");
    s.read_until(got, "echo: hello\n");
    return got;
  });
  EXPECT_EQ(r, "SSH-2.0-agentbox-test\r\necho: hello\n");
  EXPECT_EQ(handler_->counters().raw, 1u);
}

TEST_F(ProxyHandlerTest, SlowlorisAndHugeHeadsAnswered) {
  options_.head_timeout = 400ms;
  make_handler();
  UniqueFd fd = open_flow(kPlain, 80);
  const auto slow = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd));
    c.send("GET / HTTP/1.1\r\nHost: plain.example.test\r\nX-Slow: ");
    return c.response();
  });
  EXPECT_EQ(slow.substr(0, 12), "HTTP/1.1 408") << slow;
  const auto huge =
      request(kPlain, get(kPlain, "/", "X-Big: " + std::string(200000, 'a') + "\r\n"), 80);
  EXPECT_EQ(huge.substr(0, 12), "HTTP/1.1 431") << huge;
  const auto bad = request(kPlain, "GET / HTTP/1.1\nHost: plain.example.test\n\n", 80);
  EXPECT_EQ(bad.substr(0, 12), "HTTP/1.1 400") << bad;
  // A flow that never sends anything is closed after the first-bytes timeout.
  UniqueFd idle = open_flow(kApi);
  const bool closed = while_pumping(*loop_, [&, fd = std::move(idle)]() mutable {
    BoxClient c(std::move(fd));
    return c.closed();
  });
  EXPECT_TRUE(closed);
  EXPECT_GE(handler_->counters().timeouts, 2u);
  EXPECT_TRUE(pump_until(
      *loop_, [&] { return handler_->connection_count() == 0; }, 5s));
}

}  // namespace
}  // namespace agentbox::proxy
