// Real clients against the session CA: openssl verify, curl and Node trust a minted leaf for a
// permitted name, and all three refuse a leaf force-minted outside the name constraints.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "agentbox/base/unique_fd.hpp"
#include "agentbox/proxy/tls_ca.hpp"
#include "testkit/skip.hpp"

namespace agentbox::proxy {
namespace {

using base::UniqueFd;

std::string temp_file(const std::string& content) {
  char path[] = "/tmp/agentbox-tls-XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << content;
  return path;
}

std::string cert_pem(X509* x) {
  ossl::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), x);
  char* data = nullptr;
  const long n = BIO_ctrl(bio.get(), BIO_CTRL_INFO, 0, &data);
  return std::string(data, static_cast<size_t>(n));
}

// Runs a shell command (bounded by `timeout`), returns exit status and output.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(("timeout 20 " + cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    return {-1, ""};
  }
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr) {
    out += buf;
  }
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

bool have(const char* tool) {
  return run(std::string("sh -c 'command -v ") + tool + "'").first == 0;
}

// Loopback TLS server answering every connection with a fixed 200, until stopped.
class Server {
 public:
  explicit Server(std::shared_ptr<const Leaf> leaf) : leaf_(std::move(leaf)) {
    fd_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_.get(), 8), 0);
    socklen_t len = sizeof a;
    getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_use_certificate(ctx_.get(), leaf_->cert.get());
    SSL_CTX_use_PrivateKey(ctx_.get(), leaf_->key.get());
    thread_ = std::thread([this] { loop(); });
  }
  ~Server() {
    stop_ = true;
    shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  [[nodiscard]] uint16_t port() const { return port_; }

 private:
  void loop() {
    while (!stop_) {
      UniqueFd c(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) {
        return;
      }
      timeval tv{.tv_sec = 5, .tv_usec = 0};
      setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ossl::SslPtr ssl(SSL_new(ctx_.get()));
      SSL_set_fd(ssl.get(), c.get());
      if (SSL_accept(ssl.get()) != 1) {
        continue;
      }
      char buf[2048];
      (void)SSL_read(ssl.get(), buf, sizeof buf);
      const std::string resp =
          "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
      SSL_write(ssl.get(), resp.data(), static_cast<int>(resp.size()));
      SSL_shutdown(ssl.get());
    }
  }
  std::shared_ptr<const Leaf> leaf_;
  UniqueFd fd_;
  ossl::SslCtxPtr ctx_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class RealClients : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    auto ca = SessionCa::create({.hosts = {"api.agentbox.test"}});
    ASSERT_TRUE(ca.has_value());
    ca_.emplace(std::move(*ca));
    ca_file_ = temp_file(ca_->pem());
  }
  void TearDown() override { unlink(ca_file_.c_str()); }
  std::optional<SessionCa> ca_;
  std::string ca_file_;
};

TEST_F(RealClients, OpensslVerify) {
  if (!have("openssl")) {
    testkit::skip("openssl(1) not installed");
    return;
  }
  const std::string good = temp_file(cert_pem((*ca_->leaf_for("api.agentbox.test"))->cert.get()));
  const std::string bad = temp_file(cert_pem((*ca_->mint_unchecked("evil.example"))->cert.get()));
  const auto ok = run("openssl verify -CAfile " + ca_file_ +
                      " -verify_hostname api.agentbox.test -purpose sslserver " + good);
  EXPECT_EQ(ok.first, 0) << ok.second;
  const auto refused = run("openssl verify -CAfile " + ca_file_ + " " + bad);
  EXPECT_NE(refused.first, 0);
  EXPECT_NE(refused.second.find("permitted subtree violation"), std::string::npos)
      << refused.second;
  unlink(good.c_str());
  unlink(bad.c_str());
}

TEST_F(RealClients, Curl) {
  if (!have("curl")) {
    testkit::skip("curl not installed");
    return;
  }
  for (const auto& [host, expect_ok] : std::vector<std::pair<std::string, bool>>{
           {"api.agentbox.test", true}, {"evil.example", false}}) {
    auto leaf = host == "api.agentbox.test" ? *ca_->leaf_for(host) : *ca_->mint_unchecked(host);
    Server server(leaf);
    const std::string port = std::to_string(server.port());
    const auto r = run("curl -sS --noproxy '*' --cacert " + ca_file_ + " --resolve " + host + ":" +
                       port + ":127.0.0.1 https://" + host + ":" + port + "/");
    if (expect_ok) {
      EXPECT_EQ(r.first, 0) << r.second;
      EXPECT_EQ(r.second, "ok\n");
    } else {
      EXPECT_EQ(r.first, 60) << r.second;  // CURLE_PEER_FAILED_VERIFICATION
    }
  }
}

TEST_F(RealClients, Node) {
  if (!have("node")) {
    testkit::skip("node not installed");
    return;
  }
  for (const auto& [host, expect_ok] : std::vector<std::pair<std::string, bool>>{
           {"api.agentbox.test", true}, {"evil.example", false}}) {
    auto leaf = host == "api.agentbox.test" ? *ca_->leaf_for(host) : *ca_->mint_unchecked(host);
    Server server(leaf);
    // NODE_EXTRA_CA_CERTS is how the box's Node programs will learn the CA.
    const std::string js = "const tls=require('tls');const s=tls.connect({host:'127.0.0.1',port:" +
                           std::to_string(server.port()) + ",servername:'" + host +
                           "'},()=>{console.log('verified');s.end();});s.on('error',e=>{console."
                           "log(e.code+' '+e.message);"
                           "process.exit(3);});";
    const auto r = run("env NODE_EXTRA_CA_CERTS=" + ca_file_ + " node -e \"" + js + "\"");
    if (expect_ok) {
      EXPECT_EQ(r.first, 0) << r.second;
      EXPECT_NE(r.second.find("verified"), std::string::npos) << r.second;
    } else {
      EXPECT_EQ(r.first, 3) << r.second;
      EXPECT_NE(r.second.find("permitted subtree violation"), std::string::npos) << r.second;
    }
  }
}

}  // namespace
}  // namespace agentbox::proxy
