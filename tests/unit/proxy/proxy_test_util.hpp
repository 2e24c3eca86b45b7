// gtest helpers over the proxy rig (proxy_rig.hpp) and the ProxyHandler tests' fixture.
#pragma once

#include <gtest/gtest.h>

#include "../cred/credentials_test_util.hpp"
#include "agentbox/cred/sigv4.hpp"
#include "proxy_rig.hpp"

namespace agentbox::proxy::testing {

// Runs `f` on a thread while the loop is pumped; returns f's result.
template <class F>
auto while_pumping(event::Loop& loop, F f, std::chrono::milliseconds max = 30s) {
  using R = decltype(f());
  std::optional<R> result;
  std::atomic<bool> done{false};
  std::thread t([&] {
    result.emplace(f());
    done = true;
  });
  const bool ok = pump_until(
      loop, [&] { return done.load(); }, max);
  t.join();
  EXPECT_TRUE(ok) << "timed out";
  return std::move(*result);
}

// The world of the ProxyHandler tests: TLS upstreams for api/git/docs/pass (their own test CA),
// a plain HTTP upstream, a server-first raw upstream, three credentials (a header token, a Basic
// password, a SigV4 key), HTTP rules for docs, the session CA, and the handler on a real loop.

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

inline std::string get(std::string_view host, std::string_view path,
                       const std::string& extra = {}) {
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
    auto creds = cred::CredentialSet::load(
        {{.name = "github",
          .env = "GITHUB_TOKEN",
          .from = policy::SourceSpec::env("REAL_GH"),
          .hosts = {kApi, kPlain},
          .inject = agentbox::policy::InjectSpec::header("Authorization")},
         {.name = "gitpw",
          .env = "GIT_TOKEN",
          .from = policy::SourceSpec::env("REAL_GIT"),
          .hosts = {kGit},
          .inject = agentbox::policy::InjectSpec::basic()},
         {.name = "aws",
          .env = "AWS_SECRET_ACCESS_KEY",
          .from = policy::SourceSpec::env("REAL_AWS"),
          .hosts = {kApi},
          .inject = agentbox::policy::InjectSpec::sigv4()}},
        cred::fake_env(env), &audit_);
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
    // The TLS handshake with the box shares head_timeout: a first interception (its contexts,
    // the leaves' key, a certificate) on a loaded 2-core CI machine under ASan can take a few
    // hundred ms, so the fixture's deadline is long; the slowloris test shortens it for itself.
    options_.head_timeout = 5s;
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
  std::optional<cred::CredentialSet> creds_;
  std::string gh_ph_;
  std::string git_ph_;
  ProxyOptions options_;
  std::optional<SessionCa> session_ca_;
  std::string session_ca_file_;
  std::unique_ptr<ProxyHandler> handler_;
  uint64_t flow_id_ = 0;
};

}  // namespace agentbox::proxy::testing
