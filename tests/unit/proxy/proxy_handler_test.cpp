// ProxyHandler end to end: real OpenSSL on both sides, real sockets, real upstream servers on
// loopback with their own test CA (reached through --connect-to overrides), and real clients
// (an in-process OpenSSL client on the on_open socketpair; curl and python through a loopback
// acceptor that hands accepted sockets to ProxyHandler::serve).
#include "agentbox/proxy/proxy_handler.hpp"

#include <gtest/gtest.h>

#include "agentbox/proxy/sigv4.hpp"
#include "proxy_test_util.hpp"

namespace agentbox::proxy {
namespace {

using namespace testing;  // NOLINT: the test rig

constexpr const char* kApi = "api.example.test";      // credential github (Authorization header)
constexpr const char* kGit = "git.example.test";      // credential gitpw (Basic password)
constexpr const char* kDocs = "docs.example.test";    // HTTP rules only
constexpr const char* kPass = "pass.example.test";    // nothing names it: passthrough
constexpr const char* kPlain = "plain.example.test";  // plain HTTP on port 80
constexpr const char* kSsh = "ssh.example.test";      // raw_tcp on port 22
constexpr const char* kRealGh = "ghp_realSECRETrealSECRETrealSECRET123456";
constexpr const char* kRealGit = "gitsecret-0123456789abcdef";
constexpr const char* kRealAws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

// A blocking client on the box's end of a flow: TLS (verifying against `ca_file`) or plain.
class BoxClient {
 public:
  BoxClient(UniqueFd fd, std::string sni = {}, std::string ca_file = {})
      : fd_(std::move(fd)), sni_(std::move(sni)), ca_file_(std::move(ca_file)) {
    const int flags = fcntl(fd_.get(), F_GETFL);
    fcntl(fd_.get(), F_SETFL, flags & ~O_NONBLOCK);
    timeval tv{.tv_sec = 15, .tv_usec = 0};
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  // TLS handshake; false (with error()) if it fails.
  bool handshake() {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_load_verify_file(ctx_.get(), ca_file_.c_str());
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    static const unsigned char kAlpn[] = "\x02h2\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx_.get(), kAlpn, 12);
    ssl_.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl_.get(), fd_.get());
    if (!sni_.empty()) {
      SSL_ctrl(ssl_.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(sni_.c_str()));
      SSL_set1_host(ssl_.get(), sni_.c_str());
    }
    if (SSL_connect(ssl_.get()) != 1) {
      error_ = ossl::drain_errors();
      return false;
    }
    const unsigned char* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(ssl_.get(), &p, &n);
    alpn_.assign(reinterpret_cast<const char*>(p), n);
    return true;
  }
  Stream stream() { return Stream(fd_.get(), ssl_.get()); }
  bool send(std::string_view s) { return stream().write(s); }
  // One response: head + decoded body (Content-Length, chunked or until close).
  std::string response(bool* complete = nullptr) {
    Stream s = stream();
    const size_t end = s.read_until(buf_, "\r\n\r\n");
    if (end == std::string::npos) {
      std::string rest = std::move(buf_);
      buf_.clear();
      return rest;
    }
    std::string head = buf_.substr(0, end);
    buf_.erase(0, end);
    std::string body;
    bool ok = true;
    const std::string cl = header_of(head, "content-length");
    if (head.rfind("HTTP/1.1 1", 0) == 0) {
      return head;  // interim or 101: no body
    }
    if (!cl.empty()) {
      ok = s.read_exact(buf_, std::stoull(cl));
      body = buf_.substr(0, std::min<size_t>(buf_.size(), std::stoull(cl)));
      buf_.erase(0, body.size());
    } else if (header_of(head, "transfer-encoding") == "chunked") {
      for (;;) {
        const size_t e = s.read_until(buf_, "\r\n");
        if (e == std::string::npos) {
          ok = false;
          break;
        }
        const size_t n = std::stoull(buf_.substr(0, e), nullptr, 16);
        buf_.erase(0, e);
        if (n == 0) {
          ok = s.read_until(buf_, "\r\n") != std::string::npos;
          buf_.erase(0, 2);
          break;
        }
        ok = s.read_exact(buf_, n + 2);
        body += buf_.substr(0, n);
        buf_.erase(0, n + 2);
      }
    } else {
      char tmp[16384];
      ssize_t n = 0;
      while ((n = s.read(tmp, sizeof tmp)) > 0) {
        body.append(tmp, static_cast<size_t>(n));
      }
    }
    if (complete != nullptr) {
      *complete = ok;
    }
    return head + body;
  }
  // True when the peer closed (EOF) within the receive timeout.
  bool closed() {
    char c = 0;
    return stream().read(&c, 1) <= 0;
  }
  std::string& buffered() { return buf_; }
  [[nodiscard]] const std::string& alpn() const { return alpn_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  UniqueFd fd_;
  std::string sni_;
  std::string ca_file_;
  ossl::SslCtxPtr ctx_;
  ossl::SslPtr ssl_;
  std::string buf_;
  std::string alpn_;
  std::string error_;
};

std::string get(std::string_view host, std::string_view path, std::string extra = {}) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + std::string(host) + "\r\n" + extra +
         "\r\n";
}

class ProxyHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    loop_.emplace(std::move(*event::Loop::create()));
    auto up_ca =
        SessionCa::create({.hosts = {"*.example.test"}, .common_name = "upstream test CA"});
    ASSERT_TRUE(up_ca.has_value());
    upstream_ca_.emplace(std::move(*up_ca));
    upstream_ca_file_ = temp_file(upstream_ca_->pem());
    for (const char* host : {kApi, kGit, kDocs, kPass}) {
      servers_[host] =
          std::make_unique<Upstream>(Upstream::Kind::kTls, *upstream_ca_->leaf_for(host));
    }
    plain_ = std::make_unique<Upstream>(Upstream::Kind::kPlain);
    banner_ = std::make_unique<Upstream>(Upstream::Kind::kBanner);

    std::map<std::string, std::string> env = {
        {"REAL_GH", kRealGh}, {"REAL_GIT", kRealGit}, {"REAL_AWS", kRealAws}};
    auto creds =
        CredentialSet::load({{.name = "github",
                              .env = "GITHUB_TOKEN",
                              .from = "env:REAL_GH",
                              .hosts = {kApi, kPlain},
                              .inject = "header:Authorization"},
                             {.name = "gitpw",
                              .env = "GIT_TOKEN",
                              .from = "env:REAL_GIT",
                              .hosts = {kGit},
                              .inject = "basic"},
                             {.name = "aws",
                              .env = "AWS_SECRET_ACCESS_KEY",
                              .from = "env:REAL_AWS",
                              .hosts = {kApi},
                              .inject = "sigv4"}},
                            SecretSource([env](const std::string& k) -> std::optional<std::string> {
                              auto it = env.find(k);
                              return it == env.end() ? std::nullopt : std::optional(it->second);
                            }),
                            &audit_);
    ASSERT_TRUE(creds.has_value()) << creds.error().message();
    creds_.emplace(std::move(*creds));
    gh_ph_ = *creds_->placeholder("github");
    git_ph_ = *creds_->placeholder("gitpw");

    options_.http_rules = {
        {.origin = "test.toml:3:1", .host = kDocs, .methods = {"GET"}, .paths = {"/docs/**"}},
        {.origin = "test.toml:8:1",
         .host = kDocs,
         .methods = {"POST"},
         .paths = {"/upload"},
         .max_body = 1024},
    };
    auto ca =
        SessionCa::create({.hosts = ProxyHandler::intercept_hosts(options_.http_rules, &*creds_)});
    ASSERT_TRUE(ca.has_value());
    session_ca_.emplace(std::move(*ca));
    session_ca_file_ = temp_file(session_ca_->pem());

    for (const auto& [host, server] : servers_) {
      options_.connect_to.push_back(
          *net::parse_connect_to(host + ":443:127.0.0.1:" + std::to_string(server->port())));
    }
    options_.connect_to.push_back(*net::parse_connect_to(
        std::string(kPlain) + ":80:127.0.0.1:" + std::to_string(plain_->port())));
    options_.connect_to.push_back(*net::parse_connect_to(
        std::string(kSsh) + ":22:127.0.0.1:" + std::to_string(banner_->port())));
    options_.raw_tcp = {std::string(kSsh) + ":22"};
    options_.upstream_ca = {upstream_ca_file_};
    options_.head_timeout = 400ms;
    options_.first_bytes_timeout = 400ms;
    options_.sweep_interval = 50ms;
    make_handler();
  }

  void make_handler() {
    handler_.reset();
    auto h = ProxyHandler::create(*loop_, policy_, options_, &*creds_, &*session_ca_, audit_);
    ASSERT_TRUE(h.has_value()) << h.error().message();
    handler_ = std::move(*h);
  }

  void TearDown() override {
    handler_.reset();
    unlink(upstream_ca_file_.c_str());
    unlink(session_ca_file_.c_str());
  }

  // The translator's end of a new flow to `name`:`port`, as on_open hands it out.
  UniqueFd open_flow(const std::string& name, uint16_t port = 443) {
    net::FlowInfo info{.id = ++flow_id_, .name = name, .orig_port = port, .rule = name};
    auto r = handler_->on_open(info);
    EXPECT_TRUE(r.has_value());
    EXPECT_TRUE(r->connected);
    return std::move(r->fd);
  }

  // Runs a request over a fresh intercepted (or plain) flow; returns the response.
  std::string request(const std::string& name, const std::string& req, uint16_t port = 443,
                      const std::string& sni = {}) {
    UniqueFd fd = open_flow(name, port);
    return while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
      BoxClient c(std::move(fd), sni.empty() ? name : sni, session_ca_file_);
      if (port == 443 && !c.handshake()) {
        return "handshake failed: " + c.error();
      }
      c.send(req);
      return c.response();
    });
  }

  [[nodiscard]] std::string audit() const { return audit_.lines(); }

  std::optional<event::Loop> loop_;
  audit::MemorySink audit_;
  policy::EgressPolicy policy_;
  std::optional<SessionCa> upstream_ca_;
  std::string upstream_ca_file_;
  std::map<std::string, std::unique_ptr<Upstream>> servers_;
  std::unique_ptr<Upstream> plain_;
  std::unique_ptr<Upstream> banner_;
  std::optional<CredentialSet> creds_;
  std::string gh_ph_;
  std::string git_ph_;
  ProxyOptions options_;
  std::optional<SessionCa> session_ca_;
  std::string session_ca_file_;
  std::unique_ptr<ProxyHandler> handler_;
  uint64_t flow_id_ = 0;
};

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

TEST_F(ProxyHandlerTest, EchoSplitAcrossChunksIsScrubbed) {
  const auto r = request(
      kApi, get(kApi, "/echo-chunked",
                "X-Pad: " + std::string(7, 'p') + "\r\nAuthorization: token " + gh_ph_ + "\r\n"));
  ASSERT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  EXPECT_EQ(r.find(kRealGh), std::string::npos) << r;
  EXPECT_NE(r.find("token " + gh_ph_), std::string::npos) << r;
}

TEST_F(ProxyHandlerTest, BasicAuthPasswordSwapped) {
  const std::string basic = base64_encode("x-access-token:" + git_ph_);
  const auto r = request(kGit, get(kGit, "/echo", "Authorization: Basic " + basic + "\r\n"));
  ASSERT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  const auto seen = servers_[kGit]->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(header_of(seen[0].head, "authorization"),
            "Basic " + base64_encode(std::string("x-access-token:") + kRealGit));
  EXPECT_NE(r.find("X-Echo-Auth: Basic " + basic), std::string::npos) << r;  // scrubbed back
  EXPECT_NE(r.find("Authorization: Basic " + basic), std::string::npos) << r;
  EXPECT_EQ(r.find(base64_encode(std::string("x-access-token:") + kRealGit)), std::string::npos);
}

// A SigV4 request signed with the placeholder key and no x-amz-content-sha256: the proxy reads
// the body, verifies the box's signature and re-signs with the real key before forwarding.
TEST_F(ProxyHandlerTest, SigV4BodyHeldAndResigned) {
  const std::string body = "Action=GetCallerIdentity&Version=2011-06-15";
  auto signed_by = [&](const std::string& key) {
    http1::Request r;
    r.method = "POST";
    r.target = "/echo";
    r.headers = {{"Host", kApi},
                 {"Content-Type", "application/x-www-form-urlencoded"},
                 {"X-Amz-Date", "20261127T053000Z"},
                 {"Content-Length", std::to_string(body.size())}};
    sigv4::Authorization a{.access_key = "AKIAEXAMPLE",
                           .date = "20261127",
                           .region = "us-east-1",
                           .service = "sts",
                           .signed_headers = {"content-type", "host", "x-amz-date"}};
    auto cr = sigv4::canonical_request(r, a, sigv4::sha256_hex(body), sigv4::UriStyle::kNormalized);
    a.signature = sigv4::signature(key, a, "20261127T053000Z", *cr);
    r.headers.push_back({"Authorization", a.render()});
    return r;
  };
  const auto box_key = creds_->placeholder("aws");
  ASSERT_TRUE(box_key.has_value());
  const auto box_req = signed_by(*box_key);
  const auto r = request(kApi, http1::serialize_head(box_req) + body);
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

TEST_F(ProxyHandlerTest, KeepAliveSeveralRequestsOneUpstreamConnection) {
  UniqueFd fd = open_flow(kApi);
  const auto bodies = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::vector<std::string> out;
    if (!c.handshake()) {
      return out;
    }
    for (int i = 0; i < 5; ++i) {
      c.send(get(kApi, "/r" + std::to_string(i), "Authorization: Bearer " + gh_ph_ + "\r\n"));
      out.push_back(c.response());
    }
    return out;
  });
  ASSERT_EQ(bodies.size(), 5u);
  for (const auto& b : bodies) {
    EXPECT_EQ(b.substr(0, 15), "HTTP/1.1 200 OK") << b;
  }
  const auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 5u);
  for (const auto& s : seen) {
    EXPECT_EQ(header_of(s.head, "authorization"), std::string("Bearer ") + kRealGh);
  }
  EXPECT_EQ(servers_[kApi]->connections(), 1);
  EXPECT_EQ(handler_->counters().requests, 5u);
}

TEST_F(ProxyHandlerTest, ServerSentEventsArriveIncrementally) {
  UniqueFd fd = open_flow(kApi);
  Upstream& server = *servers_[kApi];
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::string got;
    if (!c.handshake()) {
      return got;
    }
    c.send(get(kApi, "/sse"));
    Stream s = c.stream();
    // The server sends the second event only once the client has the first: a proxy that
    // buffered the stream would never deliver it, and this read would time out.
    if (s.read_until(got, "data: one\n\n") == std::string::npos) {
      return "first event not delivered: " + got;
    }
    server.open_sse_gate();
    s.read_until(got, "0\r\n\r\n");
    return got;
  });
  EXPECT_NE(r.find("data: one\n\n"), std::string::npos) << r;
  EXPECT_NE(r.find("data: two\n\n"), std::string::npos) << r;
}

TEST_F(ProxyHandlerTest, HeldPrefixOfASecretIsReleasedAfterTheHold) {
  UniqueFd fd = open_flow(kApi);
  Upstream& server = *servers_[kApi];
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::string got;
    if (!c.handshake()) {
      return got;
    }
    c.send(get(kApi, "/sse-g"));
    Stream s = c.stream();
    // "g" arrives, as its own chunk once released (or in the first chunk if never held).
    const bool arrived = s.read_until(got, "g\r\n") != std::string::npos;
    server.open_sse_gate();
    s.read_until(got, "0\r\n\r\n");
    return arrived ? got : "held forever: " + got;
  });
  EXPECT_NE(r.find("0\r\n\r\n"), std::string::npos) << r;
  EXPECT_EQ(r.find("held forever"), std::string::npos) << r;
}

TEST_F(ProxyHandlerTest, PipelinedRequestsAnsweredInOrder) {
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::vector<std::string> out;
    if (!c.handshake()) {
      return out;
    }
    out.push_back(c.alpn());
    c.send(get(kApi, "/echo") + get(kApi, "/second") +
           get(kApi, "/third", "Connection: close\r\n"));
    for (int i = 0; i < 3; ++i) {
      out.push_back(c.response());
    }
    out.push_back(c.closed() ? "closed" : "open");
    return out;
  });
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "http/1.1");  // offered h2 and http/1.1: the proxy speaks HTTP/1.1
  EXPECT_NE(r[1].find("GET /echo HTTP/1.1"), std::string::npos) << r[1];
  EXPECT_EQ(r[2].substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_EQ(r[3].substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_EQ(r[4], "closed");
  EXPECT_EQ(servers_[kApi]->seen().size(), 3u);
}

TEST_F(ProxyHandlerTest, WebSocketEchoAfterUpgrade) {
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::string got;
    if (!c.handshake()) {
      return got;
    }
    c.send(get(kApi, "/ws",
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
               "13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    const std::string head = c.response();
    if (head.rfind("HTTP/1.1 101", 0) != 0) {
      return "no 101: " + head;
    }
    got = c.buffered();
    const std::string msg = "hello websocket";
    std::string frame = {static_cast<char>(0x81), static_cast<char>(0x80 | msg.size()), 1, 2, 3, 4};
    for (size_t i = 0; i < msg.size(); ++i) {
      frame += static_cast<char>(msg[i] ^ "\x01\x02\x03\x04"[i % 4]);
    }
    c.send(frame);
    Stream s = c.stream();
    if (!s.read_exact(got, 2 + msg.size())) {
      return "short echo: " + got;
    }
    return got.substr(2);
  });
  EXPECT_EQ(r, "hello websocket");
  EXPECT_NE(audit().find("switching protocols"), std::string::npos);
}

TEST_F(ProxyHandlerTest, LargeTransfersBothWaysWithChecksums) {
  constexpr uint64_t kSize = 48ull << 20;
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(
      *loop_,
      [&, fd = std::move(fd)]() mutable {
        BoxClient c(std::move(fd), kApi, session_ca_file_);
        std::pair<std::string, std::string> out;
        if (!c.handshake()) {
          return out;
        }
        c.send(get(kApi, "/big/" + std::to_string(kSize)));
        const std::string resp = c.response();
        const size_t body = resp.find("\r\n\r\n") + 4;
        out.first = sha256_hex(std::string_view(resp).substr(body));
        c.send("POST /upload HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: " +
               std::to_string(kSize) + "\r\n\r\n");
        std::string piece;
        for (uint64_t off = 0; off < kSize; off += piece.size()) {
          pattern(piece, off, static_cast<size_t>(std::min<uint64_t>(1 << 20, kSize - off)));
          c.send(piece);
        }
        out.second = c.response();
        return out;
      },
      120s);
  std::string all;
  pattern(all, 0, kSize);
  const std::string want = sha256_hex(all);
  EXPECT_EQ(r.first, want);
  EXPECT_NE(r.second.find(want + " " + std::to_string(kSize)), std::string::npos) << r.second;
}

TEST_F(ProxyHandlerTest, ExpectContinueAndChunkedUpload) {
  UniqueFd fd = open_flow(kApi);
  const auto r = while_pumping(*loop_, [&, fd = std::move(fd)]() mutable {
    BoxClient c(std::move(fd), kApi, session_ca_file_);
    std::vector<std::string> out;
    if (!c.handshake()) {
      return out;
    }
    c.send(
        "POST /upload HTTP/1.1\r\nHost: api.example.test\r\nExpect: 100-continue\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    out.push_back(c.response());  // 100 Continue, relayed from the upstream
    c.send("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    out.push_back(c.response());
    return out;
  });
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].substr(0, 12), "HTTP/1.1 100") << r[0];
  EXPECT_NE(r[1].find(sha256_hex("hello world") + " 11"), std::string::npos) << r[1];
}

TEST_F(ProxyHandlerTest, UntrustedUpstreamAnswered502) {
  options_.upstream_ca.clear();  // the upstream's test CA is not trusted now
  make_handler();
  const auto r = request(kApi, get(kApi, "/"));
  EXPECT_EQ(r.substr(0, 12), "HTTP/1.1 502") << r;
  EXPECT_NE(r.find("certificate verif"), std::string::npos) << r;
}

TEST_F(ProxyHandlerTest, CurlThroughInterception) {
  if (!have_tool("curl")) {
    GTEST_SKIP() << "skipped: curl not installed";
  }
  Acceptor acc(*loop_, *handler_, kApi);
  const std::string connect_to = std::string(kApi) + ":443:127.0.0.1:" + std::to_string(acc.port());
  const auto r = while_pumping(*loop_, [&] {
    // Three URLs in one curl run: one connection, kept alive.
    return run_cmd("curl -sS --noproxy '*' --cacert " + session_ca_file_ + " --connect-to " +
                   connect_to + " -H 'Authorization: Bearer " + gh_ph_ +
                   "' https://api.example.test/echo https://api.example.test/a "
                   "https://api.example.test/b");
  });
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_NE(r.second.find("Authorization: Bearer " + gh_ph_), std::string::npos) << r.second;
  EXPECT_EQ(r.second.find(kRealGh), std::string::npos) << r.second;
  EXPECT_EQ(acc.accepted(), 1);
  EXPECT_EQ(servers_[kApi]->connections(), 1);
  const auto seen = servers_[kApi]->seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(header_of(seen[2].head, "authorization"), std::string("Bearer ") + kRealGh);
}

TEST_F(ProxyHandlerTest, PythonThroughInterception) {
  if (!have_tool("python3")) {
    GTEST_SKIP() << "skipped: python3 not installed";
  }
  Acceptor acc(*loop_, *handler_, kGit);
  // urllib with the session CA; the connection goes to the acceptor, SNI and Host stay the name.
  const std::string py =
      "import ssl,socket,http.client,base64\n"
      "ctx=ssl.create_default_context(cafile='" +
      session_ca_file_ +
      "')\n"
      "class C(http.client.HTTPSConnection):\n"
      "  def connect(self):\n"
      "    s=socket.create_connection(('127.0.0.1'," +
      std::to_string(acc.port()) +
      "))\n"
      "    self.sock=ctx.wrap_socket(s,server_hostname='git.example.test')\n"
      "c=C('git.example.test')\n"
      "tok=base64.b64encode(b'x-access-token:" +
      git_ph_ +
      "').decode()\n"
      "c.request('GET','/echo',headers={'Authorization':'Basic '+tok})\n"
      "r=c.getresponse();print(r.status);print(r.read().decode())\n";
  const std::string file = temp_file(py);
  const auto r = while_pumping(*loop_, [&] { return run_cmd("python3 " + file); });
  unlink(file.c_str());
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_EQ(r.second.substr(0, 4), "200\n") << r.second;
  EXPECT_EQ(r.second.find(kRealGit), std::string::npos);
  const auto seen = servers_[kGit]->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(header_of(seen[0].head, "authorization"),
            "Basic " + base64_encode(std::string("x-access-token:") + kRealGit));
}

TEST_F(ProxyHandlerTest, HostileBytesNeverStopOtherFlows) {
  // Many flows of junk, half-closes and resets in parallel with one good request.
  std::vector<UniqueFd> junk;
  for (int i = 0; i < 40; ++i) {
    UniqueFd fd = open_flow(i % 2 == 0 ? kApi : kPlain, i % 2 == 0 ? 443 : 80);
    std::string bytes;
    pattern(bytes, static_cast<uint64_t>(i) * 977, 64 + static_cast<size_t>(i) * 37);
    if (i % 3 == 0) {
      bytes = "\x16\x03\x01\xff\xff" + bytes;  // a huge announced record
    } else if (i % 3 == 1) {
      bytes = "GET / HTTP/1.1\r\nHost: " + bytes;
    }
    (void)::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (i % 4 == 0) {
      (void)::shutdown(fd.get(), SHUT_WR);
    }
    if (i % 5 == 0) {
      fd.reset();
    }
    junk.push_back(std::move(fd));
  }
  const auto r = request(kApi, get(kApi, "/fine"));
  EXPECT_EQ(r.substr(0, 15), "HTTP/1.1 200 OK") << r;
  junk.clear();
  EXPECT_TRUE(pump_until(
      *loop_, [&] { return handler_->connection_count() == 0; }, 5s))
      << handler_->connection_count();
  EXPECT_EQ(handler_->counters().internal_errors, 0u);
}

}  // namespace
}  // namespace agentbox::proxy
