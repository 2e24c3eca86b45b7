// TLS termination + origination: a box client, the proxy's two channels, and a loopback upstream
// with its own test CA; a credential is swapped on the way out and scrubbed on the way back.
#include "agentbox/proxy/tls_session.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "agentbox/base/unique_fd.hpp"
#include "agentbox/cred/credentials.hpp"

namespace agentbox::proxy {
namespace {

using base::UniqueFd;
const std::string kHost = "upstream.test";
const std::string kSecret = "ghp_UpstreamRealSecret0123456789abcdefgh";

std::span<const std::byte> B(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string write_temp(const std::string& content) {
  char path[] = "/tmp/agentbox-ca-XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << content;
  return path;
}

// A loopback TLS server (blocking, in a thread) with a certificate from its own test CA. It
// answers one request with a body echoing the Authorization header it received.
class Upstream {
 public:
  Upstream() {
    auto ca = SessionCa::create({.hosts = {kHost}});
    EXPECT_TRUE(ca.has_value());
    ca_.emplace(std::move(*ca));
    ca_file_ = write_temp(ca_->pem());
    leaf_ = *ca_->leaf_for(kHost);
    listen_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listen_.get(), 4), 0);
    socklen_t len = sizeof a;
    getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~Upstream() {
    shutdown(listen_.get(), SHUT_RDWR);
    thread_.join();
    unlink(ca_file_.c_str());
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] const std::string& ca_file() const { return ca_file_; }
  std::string received;  // the request head the server saw (read after join)

 private:
  void serve() {
    UniqueFd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) {
      return;
    }
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ossl::SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_use_certificate(ctx.get(), leaf_->cert.get());
    SSL_CTX_use_PrivateKey(ctx.get(), leaf_->key.get());
    ossl::SslPtr ssl(SSL_new(ctx.get()));
    SSL_set_fd(ssl.get(), c.get());
    if (SSL_accept(ssl.get()) != 1) {
      return;
    }
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      const int n = SSL_read(ssl.get(), buf, sizeof buf);
      if (n <= 0) {
        return;
      }
      head.append(buf, static_cast<size_t>(n));
    }
    received = head;
    const size_t a = head.find("Authorization: ");
    const std::string auth =
        a == std::string::npos ? "" : head.substr(a + 15, head.find("\r\n", a) - a - 15);
    const std::string body = "you sent: " + auth;
    const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                             "\r\nX-Echo: " + auth + "\r\n\r\n" + body;
    SSL_write(ssl.get(), resp.data(), static_cast<int>(resp.size()));
    SSL_shutdown(ssl.get());
  }

  std::optional<SessionCa> ca_;
  std::string ca_file_;
  std::shared_ptr<const Leaf> leaf_;
  UniqueFd listen_;
  uint16_t port_ = 0;
  std::thread thread_;
};

UniqueFd connect_loopback(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  fcntl(fd.get(), F_SETFL, O_NONBLOCK);
  return fd;
}

// Runs a client channel's handshake over a non-blocking fd, bounded.
TlsChannel::Status drive_handshake(int fd, TlsChannel& ch) {
  std::string pending;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto st = ch.handshake();
    EXPECT_TRUE(push(fd, ch, pending).has_value());
    if (st != TlsChannel::Status::kWant) {
      return st;
    }
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    poll(&p, 1, 100);
    auto eof = pull(fd, ch);
    if (!eof || *eof) {
      return ch.handshake();
    }
  }
  return TlsChannel::Status::kError;
}

// The test's blocking OpenSSL peers write with write(2); a peer that hung up after a failed
// verification must not kill the test with SIGPIPE (the proxy itself uses MSG_NOSIGNAL).
class IgnoreSigpipe : public ::testing::Environment {
 public:
  void SetUp() override { signal(SIGPIPE, SIG_IGN); }
};
const auto* const kIgnoreSigpipe = ::testing::AddGlobalTestEnvironment(new IgnoreSigpipe);

TEST(NamesAgree, Rules) {
  http::ClientHello h;
  h.has_sni = true;
  h.sni = "api.github.com";
  EXPECT_TRUE(names_agree("api.github.com", h).has_value());
  EXPECT_FALSE(names_agree("github.com", h).has_value());
  http::Request r;
  r.host = "api.github.com";
  EXPECT_TRUE(names_agree("api.github.com", h, &r).has_value());
  r.host = "evil.example";
  r.headers = {{"Host", "evil.example"}};
  const auto fronted = names_agree("api.github.com", h, &r);
  ASSERT_FALSE(fronted.has_value());
  EXPECT_NE(fronted.error().message().find("domain fronting"), std::string::npos);
  h.has_ech = true;
  EXPECT_FALSE(names_agree("api.github.com", h).has_value());
  http::ClientHello none;
  EXPECT_FALSE(names_agree("api.github.com", none).has_value());
}

TEST(Upstream, VerifiesAgainstExtraCaAndRefusesOtherwise) {
  {
    Upstream up;
    auto ctx = make_upstream_ctx(kSystemBundle, {up.ca_file()});
    ASSERT_TRUE(ctx.has_value()) << ctx.error().message();
    auto ch = TlsChannel::connect(ctx->get(), kHost);
    ASSERT_TRUE(ch.has_value());
    auto fd = connect_loopback(up.port());
    EXPECT_EQ(drive_handshake(fd.get(), *ch), TlsChannel::Status::kDone) << ch->error();
    EXPECT_EQ(ch->verify_result(), X509_V_OK);
  }
  {
    Upstream up;  // the system store alone does not know the test CA
    auto ctx = make_upstream_ctx(kSystemBundle, {});
    ASSERT_TRUE(ctx.has_value());
    auto ch = TlsChannel::connect(ctx->get(), kHost);
    auto fd = connect_loopback(up.port());
    EXPECT_EQ(drive_handshake(fd.get(), *ch), TlsChannel::Status::kError);
    EXPECT_NE(ch->error().find("certificate verification failed"), std::string::npos)
        << ch->error();
  }
  {
    Upstream up;  // trusted CA, wrong name
    auto ctx = make_upstream_ctx(kSystemBundle, {up.ca_file()});
    auto ch = TlsChannel::connect(ctx->get(), "other.test");
    auto fd = connect_loopback(up.port());
    EXPECT_EQ(drive_handshake(fd.get(), *ch), TlsChannel::Status::kError);
    EXPECT_EQ(ch->verify_result(), X509_V_ERR_HOSTNAME_MISMATCH);
  }
  EXPECT_FALSE(make_upstream_ctx(kSystemBundle, {"/nonexistent.pem"}).has_value());
  ERR_clear_error();
}

size_t store_size(SSL_CTX* ctx) {
  return static_cast<size_t>(
      sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx))));
}

// The system bundle is read on the first verification, not when the context is made (issue 15:
// ~50 ms of start-up), and what it holds is then trusted as before.
TEST(Upstream, SystemRootsAreReadOnFirstVerification) {
  Upstream up;
  char dir[] = "/tmp/agentbox-roots-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string bundle = std::string(dir) + "/bundle.pem";
  std::ifstream in(up.ca_file());
  std::ofstream(bundle) << in.rdbuf();
  auto ctx = make_upstream_ctx(bundle, {});
  ASSERT_TRUE(ctx.has_value()) << ctx.error().message();
  EXPECT_EQ(store_size(ctx->get()), 0u);  // nothing parsed yet
  auto ch = TlsChannel::connect(ctx->get(), kHost);
  ASSERT_TRUE(ch.has_value());
  auto fd = connect_loopback(up.port());
  EXPECT_EQ(drive_handshake(fd.get(), *ch), TlsChannel::Status::kDone) << ch->error();
  EXPECT_EQ(ch->verify_result(), X509_V_OK);
  EXPECT_EQ(store_size(ctx->get()), 1u);
  // Read once: the file going away after the first verification changes nothing.
  ::unlink(bundle.c_str());
  ::rmdir(dir);
  Upstream again;
  auto ch2 = TlsChannel::connect(ctx->get(), kHost);
  auto fd2 = connect_loopback(again.port());
  EXPECT_EQ(drive_handshake(fd2.get(), *ch2), TlsChannel::Status::kError);  // another CA
  EXPECT_NE(ch2->error().find("certificate verification failed"), std::string::npos);
  // A missing bundle is still an error when the context is made.
  EXPECT_FALSE(make_upstream_ctx(bundle, {}).has_value());
  ERR_clear_error();
}

// The box: a blocking OpenSSL client on its end of the socketpair, trusting only the session CA.
struct BoxClient {
  std::string response;
  std::string alpn;
  long verify = -1;
  void run(int fd, X509* session_ca, const std::string& request) {
    ossl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), session_ca);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    const unsigned char protos[] = "\x02h2\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx.get(), protos, sizeof protos - 1);
    ossl::SslPtr ssl(SSL_new(ctx.get()));
    SSL_set_fd(ssl.get(), fd);
    SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(kHost.c_str()));
    SSL_set1_host(ssl.get(), kHost.c_str());
    if (SSL_connect(ssl.get()) != 1) {
      return;
    }
    verify = SSL_get_verify_result(ssl.get());
    const unsigned char* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(ssl.get(), &p, &n);
    alpn.assign(reinterpret_cast<const char*>(p), n);
    SSL_write(ssl.get(), request.data(), static_cast<int>(request.size()));
    char buf[4096];
    for (;;) {
      const int r = SSL_read(ssl.get(), buf, sizeof buf);
      if (r <= 0) {
        break;
      }
      response.append(buf, static_cast<size_t>(r));
    }
  }
};

TEST(Mitm, EndToEndSwapAndScrub) {
  Upstream up;
  auto session_ca = SessionCa::create({.hosts = {kHost}});
  ASSERT_TRUE(session_ca.has_value());
  audit::MemorySink sink;
  auto creds = cred::CredentialSet::load(
      {{.name = "gh",
        .env = "GH_TOKEN",
        .from = policy::SourceSpec::env("GH"),
        .hosts = {kHost},
        .inject = agentbox::policy::InjectSpec::header("Authorization")}},
      cred::SecretSource([](const std::string&) { return std::optional<std::string>(kSecret); }),
      &sink);
  ASSERT_TRUE(creds.has_value());
  const std::string ph = *creds->placeholder("gh");

  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd box_end(sv[0]), proxy_end(sv[1]);
  struct timeval tv {
    .tv_sec = 5, .tv_usec = 0
  };
  setsockopt(box_end.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  BoxClient box;
  std::thread box_thread([&] {
    box.run(
        box_end.get(), session_ca->cert(),
        "GET /user HTTP/1.1\r\nHost: upstream.test\r\nAuthorization: Bearer " + ph + "\r\n\r\n");
    shutdown(box_end.get(), SHUT_RDWR);
  });

  // 1. The first bytes: a ClientHello, its name checked.
  std::string first;
  http::HelloResult hello;
  for (int i = 0; i < 50 && hello.status == http::HelloStatus::kNeedMore; ++i) {
    char buf[4096];
    pollfd p{.fd = proxy_end.get(), .events = POLLIN, .revents = 0};
    poll(&p, 1, 100);
    const ssize_t n = recv(proxy_end.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      first.append(buf, static_cast<size_t>(n));
    }
    hello = http::parse_client_hello(B(first));
  }
  ASSERT_EQ(hello.status, http::HelloStatus::kOk);
  ASSERT_TRUE(names_agree(kHost, hello.hello).has_value());
  fcntl(proxy_end.get(), F_SETFL, O_NONBLOCK);

  // 2. Both channels.
  auto box_ctx = make_box_ctx();
  auto up_ctx = make_upstream_ctx(kSystemBundle, {up.ca_file()});
  ASSERT_TRUE(box_ctx && up_ctx);
  auto leaf = session_ca->leaf_for(kHost);
  auto down = TlsChannel::accept(box_ctx->get(), **leaf);
  auto upch = TlsChannel::connect(up_ctx->get(), kHost);
  ASSERT_TRUE(down && upch);
  down->feed(B(first));
  auto up_fd = connect_loopback(up.port());

  // 3. Relay one request and its response, bounded.
  std::string down_pending, up_pending, req_buf, resp_buf;
  bool request_sent = false;
  auto scrub = creds->scrubber();
  cred::Verdict verdict;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool box_eof = false, up_closed = false;
  while (std::chrono::steady_clock::now() < deadline && !up_closed) {
    if (!down->handshake_done()) {
      ASSERT_NE(down->handshake(), TlsChannel::Status::kError) << down->error();
    }
    if (!upch->handshake_done()) {
      ASSERT_NE(upch->handshake(), TlsChannel::Status::kError) << upch->error();
    }
    if (down->handshake_done()) {
      (void)down->read(req_buf);
    }
    if (!request_sent && upch->handshake_done()) {
      auto req = http::parse_request(B(req_buf));
      if (req.status == http::ParseStatus::kOk) {
        ASSERT_TRUE(names_agree(kHost, hello.hello, &req.message).has_value());
        verdict = creds->inspect(req.message, kHost);
        ASSERT_FALSE(verdict.blocked) << verdict.reason;
        ASSERT_EQ(upch->write(http::serialize_head(req.message)), TlsChannel::Status::kDone);
        request_sent = true;
      }
    }
    if (upch->handshake_done()) {
      std::string plain;
      const auto st = upch->read(plain);
      if (!plain.empty()) {
        const std::string clean = scrub.feed(plain);
        resp_buf += clean;
        down->write(clean);
      }
      if (st == TlsChannel::Status::kClosed) {
        const std::string tail = scrub.finish();
        resp_buf += tail;
        down->write(tail);
        down->close();
        up_closed = true;
      }
    }
    ASSERT_TRUE(push(proxy_end.get(), *down, down_pending).has_value());
    ASSERT_TRUE(push(up_fd.get(), *upch, up_pending).has_value());
    pollfd p[2] = {{.fd = proxy_end.get(), .events = POLLIN, .revents = 0},
                   {.fd = up_fd.get(), .events = POLLIN, .revents = 0}};
    poll(p, 2, 50);
    if (!box_eof) {
      auto e = pull(proxy_end.get(), *down);
      box_eof = e && *e;
    }
    (void)pull(up_fd.get(), *upch);
  }
  ASSERT_TRUE(push(proxy_end.get(), *down, down_pending).has_value());
  box_thread.join();

  EXPECT_EQ(box.verify, X509_V_OK);
  EXPECT_EQ(box.alpn, "http/1.1");
  EXPECT_EQ(upch->alpn(), "");  // the test server does not do ALPN
  EXPECT_EQ(verdict.used, std::vector<std::string>{"gh"});
  // The upstream got the real secret; the box got only its placeholder back.
  EXPECT_NE(up.received.find("Authorization: Bearer " + kSecret), std::string::npos);
  EXPECT_NE(box.response.find("you sent: Bearer " + ph), std::string::npos) << box.response;
  EXPECT_NE(box.response.find("X-Echo: Bearer " + ph), std::string::npos);
  EXPECT_EQ(box.response.find(kSecret), std::string::npos);
  EXPECT_EQ(sink.lines().find(kSecret), std::string::npos);
}

}  // namespace
}  // namespace agentbox::proxy
