// Host services end to end (--host-port, --publish): real curl and python http.server on both
// sides, as root and as the user agentbox-test. Every "cannot reach" is judged outside the box,
// by a listener of the test's own that must accept nothing, next to a positive control.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;
using namespace std::chrono_literals;

int listen_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

uint16_t port_of(int fd) {
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  return ntohs(sin.sin_port);
}

bool can_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0;
  ::close(fd);
  return ok;
}

// A listener on the host's 127.0.0.1 that counts whoever connects (the oracle of a block).
class Trap {
 public:
  Trap() : fd_(listen_loopback(0)) {
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) > 0) {
          int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (c >= 0) {
            ++accepted_;
            ::close(c);
          }
        }
      }
    });
  }
  ~Trap() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  [[nodiscard]] uint16_t port() const { return port_of(fd_); }
  [[nodiscard]] int accepted() const { return accepted_; }

 private:
  int fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// `python3 -m http.server` on the host's 127.0.0.1, serving `dir`; stopped by its pid.
class PyServer {
 public:
  explicit PyServer(const std::string& dir) {
    for (int attempt = 0; attempt < 5 && pid_ <= 0; ++attempt) {
      port_ = free_port();
      pid_ = ::fork();
      if (pid_ == 0) {
        int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);  // the dup2 copies stay open
        ::dup2(null, 1);
        ::dup2(null, 2);
        std::string p = std::to_string(port_);
        ::execl("/usr/bin/python3", "python3", "-m", "http.server", "--bind", "127.0.0.1",
                "--directory", dir.c_str(), p.c_str(), nullptr);
        ::_exit(127);
      }
      for (int i = 0; i < 200 && !can_connect(port_); ++i) {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {  // the port was taken meanwhile
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(50ms);
      }
    }
  }
  ~PyServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  [[nodiscard]] bool up() const { return pid_ > 0 && can_connect(port_); }
  [[nodiscard]] uint16_t port() const { return port_; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

class HostServicesTest : public BoxWorldTest {
 protected:
  void SetUp() override {
    BoxWorldTest::SetUp();
    if (!made_) {
      return;
    }
    site_ = w_.root + "/site";
    ::mkdir(site_.c_str(), 0755);
    write_file(site_ + "/hello.txt", "hello from the host\n");
  }
  Output box(const std::string& script, const Args& flags, RunOptions o = {}) {
    Args a = {"run"};
    a.insert(a.end(), flags.begin(), flags.end());
    a.insert(a.end(), {"--", "/bin/sh", "-c", script});
    o.timeout_ms = 120000;
    return run(w_, a, o);
  }
  // curl inside the box: one line "URL CODE" (000 when it could not connect).
  static std::string curl(const std::string& url) {
    return fmt::format(
        "printf '%s %s\\n' '{0}' \"$(curl -gsS --max-time 10 -o /dev/null -w "
        "'%{{http_code}}' '{0}' 2>/dev/null)\"; ",
        url);
  }
  std::string site_;
};

// The listed port is the box's localhost:PORT (127.0.0.1 and ::1); the host's other loopback
// ports stay unreachable in every spelling, the gateway too; each connection is audited and
// counted in the summary.
TEST_P(HostServicesTest, HostPortReachesTheListedLoopbackPortOnly) {
  PyServer web(site_);
  ASSERT_TRUE(web.up());
  Trap trap;
  std::string p = std::to_string(web.port());
  std::string t = std::to_string(trap.port());
  std::string script = "curl -sS --max-time 10 http://localhost:" + p + "/hello.txt; " +
                       curl("http://127.0.0.1:" + p + "/hello.txt") +
                       curl("http://[::1]:" + p + "/hello.txt");
  for (const char* host :
       {"127.0.0.1", "localhost", "0.0.0.0", "127.0.0.2", "[::1]", "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]", "2130706433", "0x7f000001", "10.0.2.2", "10.0.2.3", "[::]"}) {
    script += curl(fmt::format("http://{}:{}/", host, t));
  }
  Output r = box(script, {"--host-port", p});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("hello from the host")) << r.out << r.err;
  EXPECT_TRUE(r.has_line(fmt::format("http://127.0.0.1:{}/hello.txt 200", p))) << r.out;
  EXPECT_TRUE(r.has_line(fmt::format("http://[::1]:{}/hello.txt 200", p))) << r.out;
  EXPECT_TRUE(r.has_line(fmt::format("http://127.0.0.1:{}/ 000", t))) << r.out;
  EXPECT_EQ(trap.accepted(), 0) << r.out;
  std::string log = audit_log_of(r);
  EXPECT_NE(
      log.find(fmt::format(R"("type":"host.open","id":1,"service":"host_port","port":{})", p)),
      std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("type":"host.close")"), std::string::npos) << log;
  EXPECT_NE(r.err.find(fmt::format("network: 3 connections to the host's loopback port {}", p)),
            std::string::npos)
      << r.err;
}

// Without the flag the same port is refused by the box's own kernel: nothing listens there.
TEST_P(HostServicesTest, WithoutTheFlagTheHostPortIsRefused) {
  Trap trap;
  std::string t = std::to_string(trap.port());
  Output r = box(curl("http://localhost:" + t + "/") + curl("http://127.0.0.1:" + t + "/") +
                     curl("http://10.0.2.2:" + t + "/"),
                 {});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line(fmt::format("http://localhost:{}/ 000", t))) << r.out;
  EXPECT_EQ(trap.accepted(), 0);
  // The control: with the flag the same listener hears the box.
  Output ok = box(curl("http://localhost:" + t + "/"), {"--host-port", t});
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(trap.accepted(), 1) << ok.out << ok.err;
}

// PORT:HOSTPORT: the box's port maps onto another host port, and only that one.
TEST_P(HostServicesTest, HostPortMapsOntoAnotherPort) {
  PyServer web(site_);
  ASSERT_TRUE(web.up());
  Trap trap;
  Output r = box(curl("http://localhost:8123/hello.txt") +
                     curl(fmt::format("http://localhost:{}/", web.port())) +
                     curl(fmt::format("http://localhost:{}/", trap.port())),
                 {"--host-port", fmt::format("8123:{}", web.port())});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("http://localhost:8123/hello.txt 200")) << r.out << r.err;
  EXPECT_TRUE(r.has_line(fmt::format("http://localhost:{}/ 000", web.port()))) << r.out;
  EXPECT_EQ(trap.accepted(), 0);
}

// A name the supervisor resolves to 127.0.0.1 (a private /etc/hosts for it) stays refused for
// an unlisted port while --host-port lists another: the flag opens one port, not loopback.
TEST_P(HostServicesTest, NameResolvingToLoopbackStaysRefused) {
  if (::geteuid() != 0) {
    skip("needs root: the supervisor's /etc/hosts is replaced in a private mount namespace");
    return;
  }
  PyServer web(site_);
  ASSERT_TRUE(web.up());
  Trap trap;
  std::string hosts = w_.root + "/hosts";
  write_file(hosts, "127.0.0.1 localhost\n127.0.0.1 rebind.test\n");
  RunOptions o;
  o.before_exec = [hosts] {
    return ::unshare(CLONE_NEWNS) == 0 &&
           ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
           ::mount(hosts.c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) == 0;
  };
  std::string t = std::to_string(trap.port());
  Output r = box(curl("http://rebind.test:" + t + "/") +
                     curl(fmt::format("http://rebind.test:{}/hello.txt", web.port())),
                 {"--host-port", std::to_string(web.port()), "--allow", "rebind.test"}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(r.has_line(fmt::format("http://rebind.test:{}/ 200", t))) << r.out;
  EXPECT_FALSE(r.has_line(fmt::format("http://rebind.test:{}/hello.txt 200", web.port()))) << r.out;
  EXPECT_EQ(trap.accepted(), 0);
}

// --publish: python's http.server on the box's 127.0.0.1 answers curl on the host.
TEST_P(HostServicesTest, PublishReachesAServerInTheBox) {
  uint16_t hp = free_port();
  ASSERT_NE(hp, 0);
  std::string done = w_.ws + "/done";
  std::string script =
      "mkdir -p /tmp/site && echo 'hello from the box' > /tmp/site/index.html && "
      "python3 -m http.server --bind 127.0.0.1 --directory /tmp/site 8000 >/dev/null 2>&1 & "
      "for i in $(seq 600); do [ -e " +
      done + " ] && break; sleep 0.1; done; kill $!";
  RunOptions o;
  int out_fd = -1;
  int err_fd = -1;
  pid_t pid =
      spawn(w_, {"run", "--publish", fmt::format("{}:8000", hp), "--", "/bin/sh", "-c", script}, o,
            &out_fd, &err_fd);
  ASSERT_GT(pid, 0);
  std::string body;
  std::string cmd =
      fmt::format("curl -sS --max-time 5 http://127.0.0.1:{}/ > {}/got 2>/dev/null", hp, w_.root);
  for (int i = 0; i < 300; ++i) {  // the box's server starts after the box: poll for it
    if (sh(cmd) == 0 && (body = slurp(w_.root + "/got")).find("hello") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  write_file(done, "");
  EXPECT_EQ(wait_for(pid, 60000), 0);
  std::string err;
  char buf[4096];
  for (ssize_t n; (n = ::read(err_fd, buf, sizeof buf)) > 0;) {
    err.append(buf, static_cast<size_t>(n));
  }
  ::close(out_fd);
  ::close(err_fd);
  EXPECT_EQ(body, "hello from the box\n") << err;
  EXPECT_NE(all_audit_logs(w_).find(R"("service":"publish","port":)" + std::to_string(hp)),
            std::string::npos);
  EXPECT_NE(err.find(fmt::format("from the host to published port {}", hp)), std::string::npos)
      << err;
}

TEST_P(HostServicesTest, PublishFailsWhenTheHostPortIsTaken) {
  Trap taken;
  std::string t = std::to_string(taken.port());
  Output r = box("echo ran", {"--publish", t});
  EXPECT_EQ(r.status, 125) << r.err;
  EXPECT_FALSE(r.has_line("ran"));
  EXPECT_NE(r.err.find("--publish"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("127.0.0.1:" + t), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("EADDRINUSE"), std::string::npos) << r.err;
}

TEST_P(HostServicesTest, BadValuesAreOneLineErrorsNamingTheFlag) {
  for (const auto& [flag, value] :
       std::vector<std::pair<std::string, std::string>>{{"--host-port", "0"},
                                                        {"--host-port", "70000"},
                                                        {"--host-port", "web"},
                                                        {"--host-port", "80:"},
                                                        {"--host-port", "1:2:3"},
                                                        {"--host-port", "127.0.0.1:80"},
                                                        {"--publish", "-1"},
                                                        {"--publish", "8000:0"}}) {
    Output r = box("echo ran", {flag, value});
    EXPECT_EQ(r.status, 125) << flag << " " << value << ": " << r.err;
    EXPECT_FALSE(r.has_line("ran"));
    EXPECT_NE(r.err.find("error: " + flag), std::string::npos) << r.err;
  }
  Output dup = box("echo ran", {"--host-port", "3000", "--host-port", "3000:4000"});
  EXPECT_EQ(dup.status, 125) << dup.err;
  EXPECT_NE(dup.err.find("listed twice"), std::string::npos) << dup.err;
}

TEST_P(HostServicesTest, ExplainAndVerboseShowTheMapping) {
  Output e = run(w_, {"explain", "--host-port", "3000:4000", "--publish", "8080:80"});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_NE(e.out.find("box localhost:3000 -> host loopback :4000"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("host 127.0.0.1:8080 -> box localhost:80"), std::string::npos) << e.out;
  uint16_t hp = free_port();
  Output v = box("true", {"-v", "--host-port", "3000:4000", "--publish", std::to_string(hp)});
  ASSERT_EQ(v.status, 0) << v.err;
  EXPECT_NE(v.err.find("host port: the box's localhost:3000 -> the host's loopback port 4000"),
            std::string::npos)
      << v.err;
  EXPECT_NE(
      v.err.find(fmt::format("publish: the host's 127.0.0.1:{} -> the box's localhost:{}", hp, hp)),
      std::string::npos)
      << v.err;
}

// The listeners and the socket factory live in the supervisor (and init): the program holds
// nothing but its standard streams.
TEST_P(HostServicesTest, TheProgramHoldsNoneOfTheirSockets) {
  uint16_t hp = free_port();
  Output r = box("ls /proc/self/fd | tr '\\n' ' '",
                 {"-q", "--host-port", "3000", "--publish", std::to_string(hp)});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "0 1 2 3 ") << r.err;  // 3: ls's own directory fd
}

INSTANTIATE_TEST_SUITE_P(As, HostServicesTest, ::testing::Values("root", "user"),
                         [](const auto& param) { return param.param; });

}  // namespace
}  // namespace agentbox::it
