// The box's network end to end: real programs (curl, python) inside the box, servers this test
// owns on loopback, the userspace stack in between; as root and as the user agentbox-test.
//
// When the harness is root, every case runs in a network namespace the test creates (loopback
// only, plus 169.254.169.254 on its `lo` so that a metadata listener exists): the supervisor and
// the test's servers share it, and nothing can reach a real network. Each block is proven by a
// listener of ours that receives nothing, next to a positive control that shows it would have.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;
using namespace std::chrono_literals;

// Bulk transfer size per direction and client (see docs/NETWORK.md "Tests" for the choice).
uint64_t bulk_bytes() {
  const char* v = std::getenv("AGENTBOX_NET_BULK_MIB");
  return (v != nullptr ? std::strtoull(v, nullptr, 10) : 1024) << 20;
}

std::string hex(const unsigned char* d, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += fmt::format("{:02x}", d[i]);
  }
  return s;
}

// ---- the test's network namespace ----------------------------------------------------------

class Netns {
 public:
  // Root: a fresh netns with lo up and 169.254.169.254/32 on lo. Otherwise the current one.
  bool create(std::string& why) {
    if (::geteuid() != 0) {
      return true;
    }
    std::thread t([&] {
      if (::unshare(CLONE_NEWNET) != 0) {
        why = fmt::format("unshare(CLONE_NEWNET): {}", std::strerror(errno));
        return;
      }
      if (std::system("ip link set lo up && ip addr add 169.254.169.254/32 dev lo") != 0) {
        why = "cannot configure lo in the test network namespace";
        return;
      }
      fd_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    });
    t.join();
    return fd_ >= 0;
  }
  ~Netns() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  [[nodiscard]] bool isolated() const { return fd_ >= 0; }
  [[nodiscard]] int fd() const { return fd_; }
  // Runs `f` in a thread inside the namespace (sockets made there belong to it for good).
  template <class F>
  auto in(F f) -> decltype(f()) {
    if (fd_ < 0) {
      return f();
    }
    decltype(f()) r{};
    std::thread t([&] {
      if (::setns(fd_, CLONE_NEWNET) == 0) {
        r = f();
      }
    });
    t.join();
    return r;
  }

 private:
  int fd_ = -1;
};

int listen_on(const char* addr, uint16_t port, int type = SOCK_STREAM) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  ::inet_pton(AF_INET, addr, &sin.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 ||
      (type == SOCK_STREAM && ::listen(fd, 512) != 0)) {
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

// Accepts on `fd` until stopped, one thread per connection running `serve`.
class Server {
 public:
  Server(int fd, std::function<void(int)> serve) : fd_(fd), serve_(std::move(serve)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~Server() {
    stop_ = true;
    thread_.join();
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& t : workers_) {
      t.join();
    }
    ::close(fd_);
  }
  [[nodiscard]] uint16_t port() const { return port_of(fd_); }
  [[nodiscard]] int accepted() const { return accepted_; }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        continue;
      }
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        continue;
      }
      ++accepted_;
      std::lock_guard<std::mutex> lk(mu_);
      workers_.emplace_back([this, c] {
        timeval tv{60, 0};
        ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        serve_(c);
        // A graceful end: closing with unread bytes (a chunked body's last CRLF) would be RST.
        ::shutdown(c, SHUT_WR);
        timeval brief{2, 0};
        ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &brief, sizeof brief);
        char sink[4096];
        while (::recv(c, sink, sizeof sink, 0) > 0) {
        }
        ::close(c);
      });
    }
  }
  int fd_;
  std::function<void(int)> serve_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::thread thread_;
};

bool write_all(int fd, const void* p, size_t n) {
  auto* b = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL);
    if (w <= 0) {
      return false;
    }
    b += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// HTTP/1.1, one request per connection: GET /blob/N sends N deterministic bytes (the digest of
// what was sent is kept); PUT /upload reads the body (Content-Length or chunked) and answers
// "<length> <sha256>"; with `pause`, the body is read only after that long.
class HttpServer {
 public:
  explicit HttpServer(int fd) : server_(fd, [this](int c) { serve(c); }) {}
  [[nodiscard]] uint16_t port() const { return server_.port(); }
  std::string sent_digest() {
    std::lock_guard<std::mutex> lk(mu_);
    return sent_;
  }
  std::atomic<uint64_t> sent_bytes{0};
  std::chrono::milliseconds pause{0};

 private:
  void serve(int c) {
    std::string head;
    char ch;
    while (head.size() < 65536 && head.find("\r\n\r\n") == std::string::npos) {
      if (::recv(c, &ch, 1, 0) != 1) {
        return;
      }
      head += ch;
    }
    std::istringstream in(head);
    std::string method, path;
    in >> method >> path;
    if (method == "GET" && path.rfind("/blob/", 0) == 0) {
      uint64_t n = std::stoull(path.substr(6));
      std::string h =
          fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", n);
      write_all(c, h.data(), h.size());
      std::mt19937_64 rng(n);
      std::vector<uint64_t> block((1 << 20) / 8);
      SHA256_CTX sha;
      SHA256_Init(&sha);
      for (uint64_t off = 0; off < n;) {
        for (auto& w : block) {
          w = rng();
        }
        size_t len = static_cast<size_t>(std::min<uint64_t>(n - off, 1 << 20));
        SHA256_Update(&sha, block.data(), len);
        if (!write_all(c, block.data(), len)) {
          return;
        }
        off += len;
        sent_bytes += len;
      }
      unsigned char d[32];
      SHA256_Final(d, &sha);
      std::lock_guard<std::mutex> lk(mu_);
      sent_ = hex(d, 32);
      return;
    }
    if (method == "PUT" || method == "POST") {
      std::this_thread::sleep_for(pause);
      std::string lower = head;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      if (lower.find("expect: 100-continue") != std::string::npos) {
        const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        write_all(c, cont, sizeof cont - 1);
      }
      bool chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
      auto cl = lower.find("content-length:");
      uint64_t left = cl == std::string::npos ? 0 : std::stoull(lower.substr(cl + 15));
      SHA256_CTX sha;
      SHA256_Init(&sha);
      uint64_t total = 0;
      std::vector<char> buf(1 << 20);
      auto body = [&](uint64_t n) {
        while (n > 0) {
          ssize_t r = ::recv(c, buf.data(), std::min<uint64_t>(n, buf.size()), 0);
          if (r <= 0) {
            return false;
          }
          SHA256_Update(&sha, buf.data(), static_cast<size_t>(r));
          total += static_cast<uint64_t>(r);
          n -= static_cast<uint64_t>(r);
        }
        return true;
      };
      auto line = [&] {
        std::string l;
        while (l.size() < 100 && ::recv(c, &ch, 1, 0) == 1) {
          if (ch == '\n') {
            break;
          }
          l += ch;
        }
        return l;
      };
      if (chunked) {
        while (true) {
          uint64_t n = std::stoull(line(), nullptr, 16);
          if (n == 0 || !body(n)) {
            break;
          }
          line();
        }
      } else {
        body(left);
      }
      unsigned char d[32];
      SHA256_Final(d, &sha);
      std::string reply = fmt::format("{} {}\n", total, hex(d, 32));
      std::string h =
          fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                      reply.size(), reply);
      write_all(c, h.data(), h.size());
    }
  }
  std::mutex mu_;
  std::string sent_;
  Server server_;
};

// A single-threaded epoll echo server (many connections, back-pressure respected): echoes
// everything, and answers the client's FIN with its own once the echo is out.
class EchoServer {
 public:
  explicit EchoServer(int fd) : fd_(fd) {
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
    thread_ = std::thread([this] { loop(); });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    for (auto& [c, conn] : conns_) {
      ::close(c);
    }
    ::close(fd_);
  }
  [[nodiscard]] uint16_t port() const { return port_of(fd_); }
  [[nodiscard]] int accepted() const { return accepted_; }

 private:
  struct Conn {
    std::string pending;
    bool eof = false;
  };
  void loop() {
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{EPOLLIN, {.fd = fd_}};
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd_, &ev);
    std::vector<char> buf(1 << 16);
    epoll_event evs[64];
    while (!stop_) {
      int n = ::epoll_wait(ep, evs, 64, 50);
      for (int i = 0; i < n; ++i) {
        int c = evs[i].data.fd;
        if (c == fd_) {
          int a;
          while ((a = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
            ++accepted_;
            conns_[a] = Conn{};
            epoll_event e{EPOLLIN, {.fd = a}};
            ::epoll_ctl(ep, EPOLL_CTL_ADD, a, &e);
          }
          continue;
        }
        Conn& k = conns_[c];
        if (k.pending.empty() && !k.eof) {
          ssize_t r = ::recv(c, buf.data(), buf.size(), 0);
          if (r > 0) {
            k.pending.append(buf.data(), static_cast<size_t>(r));
          } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            k.eof = true;
          }
        }
        while (!k.pending.empty()) {
          ssize_t w = ::send(c, k.pending.data(), k.pending.size(), MSG_NOSIGNAL);
          if (w <= 0) {
            break;
          }
          k.pending.erase(0, static_cast<size_t>(w));
        }
        if (k.eof && k.pending.empty()) {
          ::shutdown(c, SHUT_WR);
          ::epoll_ctl(ep, EPOLL_CTL_DEL, c, nullptr);
          ::close(c);
          conns_.erase(c);
          continue;
        }
        epoll_event e{k.pending.empty() ? uint32_t{EPOLLIN} : uint32_t{EPOLLOUT}, {.fd = c}};
        ::epoll_ctl(ep, EPOLL_CTL_MOD, c, &e);
      }
    }
    ::close(ep);
  }
  int fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::map<int, Conn> conns_;
  std::thread thread_;
};

// Counts what arrives: TCP connections and bytes, UDP datagrams, ICMP echo requests carrying
// our marker (a raw socket sees every ICMP packet of the namespace).
class Trap {
 public:
  void add_tcp(int fd) {
    tcp_.push_back(std::make_unique<Server>(fd, [this](int c) {
      char b[256];
      ssize_t n;
      while ((n = ::recv(c, b, sizeof b, 0)) > 0) {
        bytes_ += static_cast<uint64_t>(n);
      }
    }));
  }
  void add_udp(int fd) { udp_.push_back(fd); }
  void add_icmp(int fd) { icmp_ = fd; }
  // Reads what the datagram sockets hold (non-blocking) and returns the totals.
  int tcp_accepted() const {
    int n = 0;
    for (const auto& s : tcp_) {
      n += s->accepted();
    }
    return n;
  }
  int datagrams() {
    char b[2048];
    for (int fd : udp_) {
      while (::recv(fd, b, sizeof b, MSG_DONTWAIT) > 0) {
        ++udp_count_;
      }
    }
    return udp_count_;
  }
  int echoes() {
    char b[2048];
    ssize_t n;
    while (icmp_ >= 0 && (n = ::recv(icmp_, b, sizeof b, MSG_DONTWAIT)) > 0) {
      std::string_view pkt(b, static_cast<size_t>(n));
      if (pkt.size() > 28 && static_cast<uint8_t>(pkt[20]) == ICMP_ECHO &&
          pkt.find("agentbox-exfil") != std::string_view::npos) {
        ++echo_count_;
      }
    }
    return echo_count_;
  }
  ~Trap() {
    for (int fd : udp_) {
      ::close(fd);
    }
    if (icmp_ >= 0) {
      ::close(icmp_);
    }
  }
  std::atomic<uint64_t> bytes_{0};

 private:
  std::vector<std::unique_ptr<Server>> tcp_;
  std::vector<int> udp_;
  int icmp_ = -1;
  int udp_count_ = 0;
  int echo_count_ = 0;
};

// A run whose output is read line by line while it goes (for measurements during the run).
class Live {
 public:
  Live(const World& w, const Args& args, RunOptions o) {
    int in[2];
    if (::pipe2(in, O_CLOEXEC) != 0) {
      return;
    }
    o.stdin_fd = in[0];
    pid_ = spawn(w, args, o, &out_, &err_);
    ::close(in[0]);
    in_ = in[1];
  }
  ~Live() {
    if (in_ >= 0) {
      ::close(in_);
    }
    if (pid_ > 0 && status_ == -2) {
      ::kill(pid_, SIGKILL);
      wait_for(pid_, 5000);
    }
    ::close(out_);
    ::close(err_);
  }
  [[nodiscard]] pid_t pid() const { return pid_; }
  // The next stdout line starting with `prefix`, waiting at most `timeout`.
  std::string line(const std::string& prefix, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      size_t nl;
      while ((nl = buf_.find('\n')) != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (l.rfind(prefix, 0) == 0) {
          return l;
        }
      }
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) {
        char b[4096];
        ssize_t n = ::read(out_, b, sizeof b);
        if (n <= 0) {
          break;
        }
        buf_.append(b, static_cast<size_t>(n));
      }
    }
    return {};
  }
  void say(const std::string& s) { [[maybe_unused]] ssize_t n = ::write(in_, s.data(), s.size()); }
  int finish(int timeout_ms) {
    ::close(in_);
    in_ = -1;
    status_ = wait_for(pid_, timeout_ms);
    char b[4096];
    ssize_t n;
    while ((n = ::read(err_, b, sizeof b)) > 0) {
      err.append(b, static_cast<size_t>(n));
    }
    return status_;
  }
  std::string err;

 private:
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  int err_ = -1;
  int status_ = -2;
  std::string buf_;
};

size_t fd_count(pid_t pid) {
  size_t n = 0;
  DIR* d = ::opendir(fmt::format("/proc/{}/fd", pid).c_str());
  if (d == nullptr) {
    return 0;
  }
  while (dirent* e = ::readdir(d)) {
    n += e->d_name[0] != '.';
  }
  ::closedir(d);
  return n;
}

uint64_t status_kib(pid_t pid, const std::string& key) {
  std::ifstream f(fmt::format("/proc/{}/status", pid));
  std::string l;
  while (std::getline(f, l)) {
    if (l.rfind(key + ":", 0) == 0) {
      return std::strtoull(l.c_str() + key.size() + 1, nullptr, 10);
    }
  }
  return 0;
}

class NetTest : public WorldTest {
 protected:
  void SetUp() override {
    std::string why;
    if (!enter_world()) {
      return;
    }
    if (!ns_.create(why)) {
      skip(why);
      return;
    }
    client_ = w_.bin + "/net_client.py";
    std::ifstream src(AGENTBOX_NET_CLIENT);
    write_file(client_, std::string(std::istreambuf_iterator<char>(src), {}), 0755);
    chown_tree(w_.bin, w_.as.uid, w_.as.gid);
    if (std::string no = cannot_box(w_, box({"true"})); !no.empty()) {
      skip(no);
    }
  }
  void TearDown() override {
    if (made_) {
      destroy_world(w_);
    }
  }
  RunOptions opts(RunOptions o = {}) {
    if (ns_.isolated()) {
      int fd = ns_.fd();
      auto outer = o.before_exec;
      o.before_exec = [fd, outer] { return ::setns(fd, CLONE_NEWNET) == 0 && (!outer || outer()); };
    }
    return o;
  }
  Args run_args(const Args& flags, const Args& cmd) {
    Args a = {"run", "--ro", w_.bin};
    a.insert(a.end(), flags.begin(), flags.end());
    a.push_back("--");
    a.insert(a.end(), cmd.begin(), cmd.end());
    return a;
  }
  // `agentbox run [flags] -- CMD...` in the test's namespace.
  Output box(const Args& cmd, const Args& flags = {}, RunOptions o = {}) {
    o.timeout_ms = o.timeout_ms == 30000 ? 120000 : o.timeout_ms;
    return run(w_, run_args(flags, cmd), opts(o));
  }
  Output py(const Args& args, const Args& flags = {}, RunOptions o = {}) {
    Args cmd = {"/usr/bin/python3", client_};
    cmd.insert(cmd.end(), args.begin(), args.end());
    return box(cmd, flags, o);
  }
  // --allow NAME:PORT --connect-to NAME:PORT:127.0.0.1:PORT
  static Args reach(const std::string& name, uint16_t port) {
    return {"--allow", fmt::format("{}:{}", name, port), "--connect-to",
            fmt::format("{}:{}:127.0.0.1:{}", name, port, port)};
  }
  // --raw-tcp NAME:PORT --connect-to NAME:PORT:127.0.0.1:PORT: a byte stream that is neither
  // TLS nor HTTP (the echo protocols here), spliced by the proxy as a raw_tcp rule allows.
  static Args reach_raw(const std::string& name, uint16_t port) {
    return {"--raw-tcp", fmt::format("{}:{}", name, port), "--connect-to",
            fmt::format("{}:{}:127.0.0.1:{}", name, port, port)};
  }
  // Every audit log of this world's sessions, concatenated (names sort by second only).
  std::string audit_log() { return all_audit_logs(w_); }
  Netns ns_;
  std::string client_;
};

TEST_P(NetTest, TheBoxHasOneTapLinkAndOurResolver) {
  Output r = box({"/bin/sh", "-c",
                  "cat /etc/resolv.conf; ip -4 -o addr show dev eth0; ip -o link show dev eth0; "
                  "ip route show default; cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6; "
                  "/usr/bin/python3 -c \"import socket; s=socket.socket(socket.AF_INET6); "
                  "s.settimeout(5); s.connect(('2001:db8::1', 80))\" 2>&1 | tail -1"},
                 {"-q"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("nameserver 10.0.2.3")) << r.out;
  EXPECT_NE(r.out.find("inet 10.0.2.100/24"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mtu 65520"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("default via 10.0.2.2 dev eth0"), std::string::npos) << r.out;
  EXPECT_TRUE(r.has_line("1")) << "IPv6 is on for eth0:\n" << r.out;
  // No IPv6 route at all: fails at once instead of timing out.
  EXPECT_NE(r.out.find("Network is unreachable"), std::string::npos) << r.out;
}

// --network none: the box's own network namespace with only lo; even a name that an allow rule
// and --connect-to would admit is unreachable (the control: the same flags without it reach the
// server), and the session made no tap (no network summary, no net.* audit line).
TEST_P(NetTest, NetworkNoneLeavesOnlyLoopback) {
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  HttpServer http(lfd);
  Args cmd = {"/bin/sh", "-c",
              fmt::format("awk -F: 'NR > 2 {{ print \"if:\" $1 }}' /proc/net/dev | tr -d ' '; "
                          "curl -sS --max-time 10 -o /dev/null -w 'http:%{{http_code}}\\n' "
                          "http://data.test:{}/blob/16 2>&1 || echo unreachable",
                          http.port())};
  Args flags = reach("data.test", http.port());
  Output control = box(cmd, flags);
  ASSERT_EQ(control.status, 0) << control.err;
  EXPECT_TRUE(control.has_line("http:200")) << control.out;
  EXPECT_TRUE(control.has_line("if:eth0")) << control.out;

  flags.insert(flags.begin(), {"--network", "none"});
  Output r = box(cmd, flags);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("if:lo")) << r.out;
  EXPECT_FALSE(r.has_line("if:eth0")) << r.out;
  EXPECT_TRUE(r.has_line("unreachable")) << r.out;
  EXPECT_FALSE(r.has_line("http:200")) << r.out;
}

TEST_P(NetTest, CurlDownloadsAndUploadsWithChecksums) {
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  HttpServer http(lfd);
  uint16_t port = http.port();
  uint64_t n = bulk_bytes();
  std::string url = fmt::format("http://data.test:{}/", port);
  Args cmd = {"/bin/bash", "-c",
              fmt::format("set -o pipefail; curl -sS --fail {0}blob/{1} | sha256sum; "
                          "mkfifo /tmp/up; sha256sum </tmp/up >&2 & "
                          "head -c {1} /dev/urandom | tee /tmp/up | "
                          "curl -sS --fail -T - {0}upload; wait",
                          url, n)};
  Args flags = reach("data.test", port);
  flags.push_back("-q");
  auto t0 = std::chrono::steady_clock::now();
  Output r = box(cmd, flags);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line(http.sent_digest() + "  -")) << r.out;
  // The upload: what the box hashed (stderr, via tee) is what the server received.
  std::string up = r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
  auto sp = up.find(' ');
  ASSERT_NE(sp, std::string::npos) << r.out;
  EXPECT_EQ(up.substr(0, sp), std::to_string(n)) << r.out;
  std::string digest = up.substr(sp + 1, 64);
  EXPECT_NE(r.err.find(digest + "  -"), std::string::npos) << r.err << "\nserver: " << up;
  std::cerr << fmt::format("[ curl {} MiB down + up: {:.1f}s ]\n", n >> 20, secs);
}

TEST_P(NetTest, PythonDownloadsAndUploadsWithChecksums) {
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  HttpServer http(lfd);
  uint16_t port = http.port();
  uint64_t n = bulk_bytes();
  Args flags = reach("data.test", port);
  flags.push_back("-q");
  auto t0 = std::chrono::steady_clock::now();
  Output d = py({"download", fmt::format("http://data.test:{}/blob/{}", port, n)}, flags);
  auto t1 = std::chrono::steady_clock::now();
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_TRUE(d.has_line(fmt::format("download {} {}", http.sent_digest(), n))) << d.out;
  Output u = py({"upload", "data.test", std::to_string(port), std::to_string(n)}, flags);
  auto t2 = std::chrono::steady_clock::now();
  std::cerr << fmt::format("[ python {} MiB down {:.1f}s, up {:.1f}s ]\n", n >> 20,
                           std::chrono::duration<double>(t1 - t0).count(),
                           std::chrono::duration<double>(t2 - t1).count());
  ASSERT_EQ(u.status, 0) << u.err;
  std::string line = u.line_starting("upload ");
  std::istringstream in(line);
  std::string tag, box_digest, box_len, server, srv_len, srv_digest;
  in >> tag >> box_digest >> box_len >> server >> srv_len >> srv_digest;
  EXPECT_EQ(srv_len, std::to_string(n)) << line;
  EXPECT_EQ(srv_digest, box_digest) << line;
}

TEST_P(NetTest, TwoHundredConcurrentConnections) {
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  EchoServer echo(lfd);
  Args flags = reach_raw("echo.test", echo.port());
  flags.push_back("-q");
  Output r = py({"concurrent", "echo.test", std::to_string(echo.port()), "200"}, flags);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("open 200")) << r.out;
  EXPECT_TRUE(r.has_line("concurrent 200")) << r.out;
  EXPECT_EQ(echo.accepted(), 200);
}

// A box that does not read: the host keeps sending, the supervisor must not buffer it.
TEST_P(NetTest, SlowReaderInsideIsBackPressureNotMemory) {
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  HttpServer http(lfd);
  uint64_t n = 64ull << 20;
  Args flags = reach("data.test", http.port());
  flags.push_back("-q");
  Args cmd = {"/bin/sh", "-c",
              fmt::format("echo started; exec /usr/bin/python3 -c \"import sys,time,urllib.request,"
                          "hashlib; r=urllib.request.urlopen('http://data.test:{}/blob/{}'); "
                          "h=hashlib.sha256(r.read(65536)); print('paused', flush=True); "
                          "sys.stdin.readline(); "
                          "[h.update(b) for b in iter(lambda: r.read(1<<20), "
                          "b'')]; print('done', h.hexdigest(), flush=True)\"",
                          http.port(), n)};
  Live live(w_, run_args(flags, cmd), opts());
  ASSERT_FALSE(live.line("started", 20s).empty());
  uint64_t base_rss = status_kib(live.pid(), "VmRSS");
  ASSERT_FALSE(live.line("paused", 20s).empty());
  std::this_thread::sleep_for(1500ms);
  uint64_t sent_while_paused = http.sent_bytes;
  uint64_t rss_paused = status_kib(live.pid(), "VmRSS");
  live.say("go\n");
  std::string done = live.line("done", 60s);
  EXPECT_EQ(live.finish(30000), 0);
  EXPECT_EQ(done, "done " + http.sent_digest());
  std::cerr << fmt::format("[ paused box: host sent {} KiB, supervisor RSS {} -> {} KiB ]\n",
                           sent_while_paused >> 10, base_rss, rss_paused);
  // The 4 MiB in flight towards the box plus kernel socket buffers: 4-6 MiB measured here
  // (docs/NETWORK.md says so); 16 MiB leaves room for other buffer sizes, far from the 64 MiB.
  EXPECT_LT(sent_while_paused, 16ull << 20);
  EXPECT_LT(rss_paused, base_rss + 16 * 1024) << "supervisor RSS grew while the box did not read";
}

// A host peer that does not read: the box's upload stalls (window closed), memory stays flat.
TEST_P(NetTest, SlowReaderOutsideIsBackPressureNotMemory) {
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  HttpServer http(lfd);
  http.pause = 2000ms;
  uint64_t n = 64ull << 20;
  Args flags = reach("data.test", http.port());
  flags.push_back("-q");
  Args cmd = {"/bin/sh", "-c",
              fmt::format("echo started; exec /usr/bin/python3 {} upload data.test {} {}", client_,
                          http.port(), n)};
  Live live(w_, run_args(flags, cmd), opts());
  ASSERT_FALSE(live.line("started", 20s).empty());
  uint64_t base_rss = status_kib(live.pid(), "VmRSS");
  std::this_thread::sleep_for(1500ms);
  uint64_t rss_paused = status_kib(live.pid(), "VmRSS");
  std::string line = live.line("upload ", 60s);
  EXPECT_EQ(live.finish(30000), 0);
  std::istringstream in(line);
  std::string tag, box_digest, box_len, server, srv_len, srv_digest;
  in >> tag >> box_digest >> box_len >> server >> srv_len >> srv_digest;
  EXPECT_EQ(srv_len, std::to_string(n)) << line;
  EXPECT_EQ(srv_digest, box_digest) << line;
  std::cerr << fmt::format("[ paused host: supervisor RSS {} -> {} KiB ]\n", base_rss, rss_paused);
  EXPECT_LT(rss_paused, base_rss + 16 * 1024) << "supervisor RSS grew while the host did not read";
}

TEST_P(NetTest, HalfClosedStreamsBothWays) {
  int efd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  int pfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(efd, 0);
  ASSERT_GE(pfd, 0);
  EchoServer echo(efd);
  std::atomic<uint64_t> peer_got{0};
  std::string peer_digest;
  std::mutex mu;
  std::atomic<int> peer_conns{0};
  Server peer(pfd, [&](int c) {
    if (peer_conns++ > 0) {
      // The box's question on a second connection: has the first one's data all arrived? (Its
      // read side is at EOF, and exiting would end the session with bytes still on their way.)
      for (int i = 0; i < 200 && peer_got < (2u << 20); ++i) {
        std::this_thread::sleep_for(50ms);
      }
      std::string a = fmt::format("{}\n", peer_got.load());
      write_all(c, a.data(), a.size());
      return;
    }
    std::string part(1 << 20, 'p');
    write_all(c, part.data(), part.size());
    ::shutdown(c, SHUT_WR);  // our FIN first; the box keeps sending
    SHA256_CTX sha;
    SHA256_Init(&sha);
    char b[65536];
    ssize_t n;
    while ((n = ::recv(c, b, sizeof b, 0)) > 0) {
      SHA256_Update(&sha, b, static_cast<size_t>(n));
      peer_got += static_cast<uint64_t>(n);
    }
    unsigned char d[32];
    SHA256_Final(d, &sha);
    std::lock_guard<std::mutex> lk(mu);
    peer_digest = hex(d, 32);
  });
  Args flags = reach_raw("echo.test", echo.port());
  Args more = reach_raw("peer.test", peer.port());
  flags.insert(flags.end(), more.begin(), more.end());
  flags.push_back("-q");
  Output r = box({"/bin/sh", "-c",
                  fmt::format("/usr/bin/python3 {0} halfclose echo.test {1} && "
                              "/usr/bin/python3 {0} peerfin peer.test {2}",
                              client_, echo.port(), peer.port())},
                 flags);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("box-fin-first ok")) << r.out;
  std::string line = r.line_starting("peer-fin-first ");
  ASSERT_FALSE(line.empty()) << r.out;
  std::lock_guard<std::mutex> lk(mu);
  EXPECT_EQ(line, fmt::format("peer-fin-first {} {} {}", 1 << 20, peer_digest, 2 << 20));
  EXPECT_EQ(peer_got, 2u << 20);
}

TEST_P(NetTest, DnsAnswersAllowedNamesOnly) {
  Args cmd = {"/bin/sh", "-c",
              fmt::format("getent hosts allowed.test; getent hosts denied.test || echo nx; "
                          "for q in 'allowed.test A' 'denied.test A' 'allowed.test AAAA' "
                          "'allowed.test TXT' 'allowed.test ANY' 'allowed.test HTTPS' "
                          "'denied.test TXT' '2130706433 A' '0x7f000001 A'; do "
                          "/usr/bin/python3 {} dns $q; done",
                          client_)};
  Output r = box(cmd, {"-q", "--allow", "allowed.test"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("198.18.", 0), 0u) << r.out;
  EXPECT_TRUE(r.has_line("nx")) << r.out;
  for (const char* want :
       {"dns allowed.test A rcode 0 answers 1", "dns denied.test A rcode 3 answers 0",
        "dns allowed.test AAAA rcode 0 answers 0", "dns allowed.test TXT rcode 5 answers 0",
        "dns allowed.test ANY rcode 5 answers 0", "dns allowed.test HTTPS rcode 5 answers 0",
        "dns denied.test TXT rcode 5 answers 0", "dns 2130706433 A rcode 3 answers 0",
        "dns 0x7f000001 A rcode 3 answers 0"}) {
    EXPECT_TRUE(r.has_line(want)) << want << "\n" << r.out;
  }
  std::string log = audit_log();
  EXPECT_NE(log.find(R"("type":"dns.query","name":"denied.test","qtype":"A")"), std::string::npos)
      << log;
}

// 169.254.169.254 in every spelling is refused without a rule naming it; with one it is reached
// (so the listener is real and only the policy stood in the way).
TEST_P(NetTest, MetadataAddressIsBlockedInEverySpelling) {
  if (!ns_.isolated()) {
    skip("needs root: 169.254.169.254 must be a loopback address of a test-owned namespace");
    return;
  }
  Trap trap;
  int mfd = ns_.in([] { return listen_on("169.254.169.254", 80); });
  ASSERT_GE(mfd, 0);
  trap.add_tcp(mfd);
  Args cmd = {"/bin/sh", "-c",
              fmt::format("for a in 169.254.169.254 2852039166 0xa9fea9fe 0251.0376.0251.0376; do "
                          "/usr/bin/python3 {} connect $a 80; done; "
                          "curl -sS -m 5 http://2852039166/ || echo curl-failed",
                          client_)};
  Output r = box(cmd, {"-q", "--allow", "0.0.0.0/0:*"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* a : {"169.254.169.254", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376"}) {
    EXPECT_NE(r.out.find(fmt::format("connect {} 80 error", a)), std::string::npos) << r.out;
  }
  EXPECT_TRUE(r.has_line("curl-failed")) << r.out;
  EXPECT_EQ(trap.tcp_accepted(), 0);
  std::string log = audit_log();
  EXPECT_NE(log.find(R"("type":"net.deny","proto":"tcp","name":"169.254.169.254")"),
            std::string::npos)
      << log;
  Output ok = py({"connect", "169.254.169.254", "80"}, {"-q", "--allow", "169.254.169.254/32:80"});
  EXPECT_TRUE(ok.has_line("connect 169.254.169.254 80 ok")) << ok.out << ok.err;
  // The listener's thread accepts on its own schedule: the box can be gone before it has.
  for (int i = 0; i < 300 && trap.tcp_accepted() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(trap.tcp_accepted(), 1);
}

// An allowed name that resolves (in the supervisor) to 127.0.0.1: the rebinding guard refuses
// the address unless a CIDR rule names loopback.
TEST_P(NetTest, NameResolvingToLoopbackIsRefused) {
  if (!ns_.isolated()) {
    skip("needs root: the supervisor's /etc/hosts is replaced in a private mount namespace");
    return;
  }
  Trap trap;
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  uint16_t port = port_of(lfd);
  trap.add_tcp(lfd);
  std::string hosts = w_.root + "/hosts";
  write_file(hosts, "127.0.0.1 localhost\n127.0.0.1 rebind.test\n");
  RunOptions o;
  o.before_exec = [hosts] {
    return ::unshare(CLONE_NEWNS) == 0 &&
           ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
           ::mount(hosts.c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) == 0;
  };
  std::string p = std::to_string(port);
  Output r = py({"connect", "rebind.test", p}, {"-q", "--allow", "rebind.test:" + p}, o);
  EXPECT_TRUE(r.has_line("connect rebind.test " + p + " error ConnectionResetError") ||
              r.has_line("connect rebind.test " + p + " error ConnectionRefusedError"))
      << r.out << r.err;
  EXPECT_EQ(trap.tcp_accepted(), 0);
  EXPECT_NE(audit_log().find("resolved only to refused addresses"), std::string::npos);
  Output ok = py({"connect", "rebind.test", p},
                 {"-q", "--allow", "rebind.test:" + p, "--allow", "127.0.0.1/32:" + p}, o);
  EXPECT_TRUE(ok.has_line("connect rebind.test " + p + " ok")) << ok.out << ok.err;
  for (int i = 0; i < 300 && trap.tcp_accepted() < 1; ++i) {  // the listener's own schedule
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(trap.tcp_accepted(), 1);
}

// Issue 14 item 7: an allowed name that resolves to one of the host's own public addresses
// would reach every service bound to 0.0.0.0. The supervisor's namespace gets 93.184.215.7 on
// `lo` (public by range: nothing special-cases it; the namespace is the test's own, so nothing
// leaves the machine), a listener on 0.0.0.0 hears whoever reaches it. Refused by name and as a
// literal under 0.0.0.0/0; reached with a CIDR rule naming it; an address added while the box
// runs is refused too (the supervisor follows netlink).
TEST_P(NetTest, HostsOwnAddressesAreRefused) {
  if (!ns_.isolated()) {
    skip("needs root: the test adds addresses to the interfaces of its own network namespace");
    return;
  }
  ASSERT_EQ(ns_.in([] { return std::system("ip addr add 93.184.215.7/32 dev lo"); }), 0);
  Trap trap;
  int lfd = ns_.in([] { return listen_on("0.0.0.0", 0); });
  ASSERT_GE(lfd, 0);
  const std::string p = std::to_string(port_of(lfd));
  trap.add_tcp(lfd);
  std::string hosts = w_.root + "/hosts";
  write_file(hosts, "127.0.0.1 localhost\n93.184.215.7 own.test\n93.184.215.9 late.test\n");
  RunOptions o;
  o.before_exec = [hosts] {
    return ::unshare(CLONE_NEWNS) == 0 &&
           ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
           ::mount(hosts.c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) == 0;
  };
  Output r = box({"/bin/sh", "-c",
                  fmt::format("/usr/bin/python3 {0} connect own.test {1}; "
                              "/usr/bin/python3 {0} connect 93.184.215.7 {1}",
                              client_, p)},
                 {"-q", "--allow", "own.test:" + p, "--allow", "0.0.0.0/0:" + p}, o);
  EXPECT_EQ(r.out.find(" ok"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(r.has_line("connect own.test " + p + " error ConnectionResetError") ||
              r.has_line("connect own.test " + p + " error ConnectionRefusedError"))
      << r.out << r.err;
  std::string log = audit_log();
  EXPECT_NE(log.find("host's own address 93.184.215.7 needs a CIDR rule naming it"),
            std::string::npos)
      << log;
  // An address that appears while the box runs: the box waits for the test to add it.
  std::atomic<bool> added{false};
  std::thread adder([&] {
    for (int i = 0; i < 1200 && ::access((w_.ws + "/.ready").c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(50ms);
    }
    added = ns_.in([] { return std::system("ip addr add 93.184.215.9/32 dev lo"); }) == 0;
    write_file(w_.ws + "/.go", "");
  });
  Output late = box({"/bin/sh", "-c",
                     fmt::format(": > .ready; i=0; while [ ! -e .go ] && [ $i -lt 600 ]; do "
                                 "sleep 0.1; i=$((i+1)); done; /usr/bin/python3 {} connect "
                                 "late.test {}",
                                 client_, p)},
                    {"-q", "--allow", "late.test:" + p}, o);
  adder.join();
  ASSERT_TRUE(added);
  EXPECT_FALSE(late.has_line("connect late.test " + p + " ok")) << late.out << late.err;
  EXPECT_NE(late.out.find("connect late.test " + p + " error"), std::string::npos) << late.out;
  EXPECT_EQ(trap.tcp_accepted(), 0);
  // Positive control: a CIDR rule naming the address reaches the listener, by name and literal.
  Output ok = box({"/bin/sh", "-c",
                   fmt::format("/usr/bin/python3 {0} connect own.test {1}; "
                               "/usr/bin/python3 {0} connect late.test {1}",
                               client_, p)},
                  {"-q", "--allow", "own.test:" + p, "--allow", "late.test:" + p, "--allow",
                   "93.184.215.7/32:" + p, "--allow", "93.184.215.9/32:" + p},
                  o);
  EXPECT_TRUE(ok.has_line("connect own.test " + p + " ok")) << ok.out << ok.err;
  EXPECT_TRUE(ok.has_line("connect late.test " + p + " ok")) << ok.out << ok.err;
  for (int i = 0; i < 300 && trap.tcp_accepted() < 2; ++i) {  // the listener's own schedule
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(trap.tcp_accepted(), 2);
}

TEST_P(NetTest, UdpAndIcmpNeverLeaveTheBox) {
  Trap trap;
  int u1 = ns_.in([] { return listen_on("127.0.0.1", 0, SOCK_DGRAM); });
  ASSERT_GE(u1, 0);
  uint16_t port = port_of(u1);
  trap.add_udp(u1);
  std::vector<std::string> targets = {"10.0.2.2", "10.0.2.3", "allowed.test", "8.8.8.8"};
  if (ns_.isolated()) {
    trap.add_udp(ns_.in([port] { return listen_on("169.254.169.254", port, SOCK_DGRAM); }));
    trap.add_icmp(ns_.in([] { return ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP); }));
    targets.push_back("169.254.169.254");
  }
  std::string list;
  for (const auto& t : targets) {
    list += " " + t;
  }
  Output r = box({"/bin/sh", "-c",
                  fmt::format("/usr/bin/python3 {0} udp {1}{2}; /usr/bin/python3 {0} icmp "
                              "10.0.2.2{2}",
                              client_, port, list)},
                 {"-q", "--allow", "allowed.test:*"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("udp sent")) << r.out;
  EXPECT_TRUE(r.has_line("icmp 10.0.2.2 reply")) << r.out;  // the gateway answers ping
  for (const auto& t : targets) {
    if (t != "10.0.2.2" && t != "10.0.2.3") {  // the stack answers echo to both
      EXPECT_NE(r.out.find("icmp " + t + " no-reply"), std::string::npos) << r.out;
    }
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(trap.datagrams(), 0);
  EXPECT_EQ(trap.echoes(), 0);
  // Every datagram was sent (no socket error in the box) and each target has its own drop in the
  // audit log (one per kind: proto, address, port), so no target slipped past the stack.
  EXPECT_EQ(r.out.find(" error "), std::string::npos) << r.out;
  std::string log = audit_log();
  for (const auto& t : targets) {
    std::string dst = t == "allowed.test" ? "198.18." : t + "\"";  // its synthetic address
    EXPECT_NE(log.find(fmt::format(R"("type":"net.drop","proto":"udp","dst":"{})", dst)),
              std::string::npos)
        << "no udp drop for " << t << "\n"
        << log;
    if (t != "10.0.2.2" && t != "10.0.2.3") {
      EXPECT_NE(log.find(fmt::format(R"("type":"net.drop","proto":"icmp","dst":"{})", dst)),
                std::string::npos)
          << "no icmp drop for " << t << "\n"
          << log;
    }
  }
  // Positive controls: the listeners do hear what reaches them.
  ns_.in([port] {
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    ::sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
    if (::geteuid() == 0) {
      int raw = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
      char pkt[8 + 14] = {ICMP_ECHO};
      std::memcpy(pkt + 8, "agentbox-exfil", 14);
      sin.sin_port = 0;
      ::sendto(raw, pkt, sizeof pkt, 0, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
      ::close(raw);
    }
    ::close(s);
    return 0;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(trap.datagrams(), 1);
  if (ns_.isolated()) {
    EXPECT_GE(trap.echoes(), 1);
  }
}

TEST_P(NetTest, TenThousandShortConnectionsLeaveNoFdBehind) {
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  EchoServer echo(lfd);
  Args flags = reach_raw("echo.test", echo.port());
  flags.push_back("-q");
  Args cmd = {"/usr/bin/python3",          client_, "phases", "echo.test",
              std::to_string(echo.port()), "10000"};
  Live live(w_, run_args(flags, cmd), opts());
  ASSERT_EQ(live.line("warm", 30s), "warm 10");
  // The last flows may still be closing: wait for a steady count (bounded).
  size_t before = fd_count(live.pid());
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(100ms);
    size_t now = fd_count(live.pid());
    if (now == before) {
      break;
    }
    before = now;
  }
  live.say("\n");
  EXPECT_EQ(live.line("short", 120s), "short 10000");
  size_t after = fd_count(live.pid());
  for (int i = 0; i < 30 && after > before; ++i) {
    std::this_thread::sleep_for(100ms);
    after = fd_count(live.pid());
  }
  live.say("\n");
  EXPECT_EQ(live.finish(30000), 0);
  EXPECT_GT(before, 0u);
  EXPECT_EQ(after, before) << "supervisor fds before " << before << ", after " << after;
  EXPECT_EQ(echo.accepted(), 10010);
}

TEST_P(NetTest, VerboseShowsConnectionsAndTheSummaryCountsHosts) {
  int lfd = ns_.in([] { return listen_on("127.0.0.1", 0); });
  ASSERT_GE(lfd, 0);
  HttpServer http(lfd);
  std::string p = std::to_string(http.port());
  Output r = box({"/bin/sh", "-c",
                  fmt::format("curl -sS -o /dev/null http://data.test:{0}/blob/1000; "
                              "curl -sS -o /dev/null http://data.test:{0}/blob/10; "
                              "curl -sS http://denied.test/ 2>/dev/null; "
                              "curl -sS -m 3 http://10.9.9.9:{0}/ 2>/dev/null; true",
                              p)},
                 [&] {
                   Args f = reach("data.test", http.port());
                   f.insert(f.end(), {"-v", "--connect-to", "nope.test:80:127.0.0.1:9"});
                   return f;
                 }());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("tcp #1 data.test:" + p + " allowed by `data.test:" + p + "`"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("tcp #1 data.test:" + p + " closed: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dns denied.test A: denied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("network: 2 connections allowed: data.test 2\n"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("network: 2 denied (DNS queries and connections): "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("denied.test 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("10.9.9.9 1"), std::string::npos) << r.err;
  // A mapping grants nothing; saying so beats a silent RST later.
  EXPECT_NE(r.err.find("warning: --connect-to `nope.test:80:127.0.0.1:9`: no rule allows "
                       "nope.test:80"),
            std::string::npos)
      << r.err;
}

TEST_P(NetTest, BadRulesAreOneLineErrorsAndNothingRuns) {
  std::string marker = w_.ws + "/ran";
  Args touch = {"/bin/sh", "-c", "touch " + marker};
  Output a = box(touch, {"--allow", "bad host"});
  EXPECT_EQ(a.status, 125);
  EXPECT_EQ(a.err.rfind("agentbox: error: ", 0), 0u) << a.err;
  EXPECT_NE(a.err.find("--allow"), std::string::npos) << a.err;
  Output c = box(touch, {"--connect-to", "api.test:443:not-an-ip:8443"});
  EXPECT_EQ(c.status, 125);
  EXPECT_NE(c.err.find("--connect-to: `api.test:443:not-an-ip:8443`"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("ADDR must be an IP address"), std::string::npos) << c.err;
  std::string cfg = w_.root + "/config";
  ::mkdir(cfg.c_str(), 0755);
  ::mkdir((cfg + "/agentbox").c_str(), 0755);
  write_file(cfg + "/agentbox/config.toml", "[network]\nallow = [\"ok.test\", \"no pe\"]\n");
  chown_tree(cfg, w_.as.uid, w_.as.gid);
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = cfg;
  Output f = box(touch, {}, o);
  EXPECT_EQ(f.status, 125);
  EXPECT_NE(f.err.find("config.toml:2:"), std::string::npos) << f.err;
  struct stat st {};
  EXPECT_NE(::stat(marker.c_str(), &st), 0) << "the command ran";
}

TEST_P(NetTest, MissingTunFailsWithTheDoctorHint) {
  if (::geteuid() != 0) {
    skip("needs root to hide /dev/net/tun in a private mount namespace");
    return;
  }
  RunOptions o;
  o.before_exec = [] {
    return ::unshare(CLONE_NEWNS) == 0 &&
           ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
           ::mount("tmpfs", "/dev/net", "tmpfs", 0, "size=4k") == 0;
  };
  Output r = box({"true"}, {}, o);
  EXPECT_EQ(r.status, 125) << r.err;
  EXPECT_NE(r.err.find("opening `/dev/net/tun`: No such file or directory (ENOENT)"),
            std::string::npos)
      << r.err;
  // Inside a container (this test's machine may be one) the fix is that engine's setting.
  bool container = ::access("/.dockerenv", F_OK) == 0 ||
                   ::access("/run/.containerenv", F_OK) == 0 ||
                   std::getenv("KUBERNETES_SERVICE_HOST") != nullptr;
  EXPECT_NE(r.err.find(container ? "--device /dev/net/tun" : "hint: sudo modprobe tun"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("agentbox doctor"), std::string::npos) << r.err;
}

// ---- what a box can make the supervisor hold (docs/NETWORK.md, "Memory") ----------------------

// bench/net/stall.py serve DIR, in the test's network namespace: a plain and a TLS upstream
// (certificate for stall.test in DIR) that accept every connection and never read a byte; each
// accepted socket has a 4 KiB receive buffer, so what the host's TCP holds is the client side.
class StallServer {
 public:
  StallServer(const std::string& dir, int netns_fd) {
    int in[2];
    if (::pipe2(in, O_CLOEXEC) != 0) {
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) {
        ::_exit(120);
      }
      ::execl("/usr/bin/python3", "python3", AGENTBOX_STALL_PY, "serve", dir.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(in[0]);
    stop_ = in[1];
    for (int i = 0; i < 400 && ::access((dir + "/ports").c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(50ms);
    }
    std::istringstream ports(slurp(dir + "/ports"));
    ports >> plain >> tls >> ok;
  }
  ~StallServer() {
    if (stop_ >= 0) {
      ::close(stop_);
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait_for(pid_, 5000);
    }
  }
  uint16_t plain = 0;
  uint16_t tls = 0;
  uint16_t ok = 0;  // TLS, answers every request with 200

 private:
  pid_t pid_ = -1;
  int stop_ = -1;
};

// Kernel memory held by the sockets of `pid` (TCP and unix), from ss's skmem in the process's
// network namespace: receive queue + send queue (w, queued, for TCP; t, in use, for unix) +
// forward allocation.
uint64_t socket_bytes(pid_t pid) {
  std::string ns = ::geteuid() == 0 ? fmt::format("nsenter --net=/proc/{}/ns/net ", pid) : "";
  FILE* f = ::popen(fmt::format("{0}ss -tmnpHO; {0}ss -xmnpHO", ns).c_str(), "r");
  if (f == nullptr) {
    return 0;
  }
  const std::string mine = fmt::format("pid={},", pid);
  uint64_t total = 0;
  char line[4096];
  while (::fgets(line, sizeof line, f) != nullptr) {
    std::string l(line);
    const auto at = l.find("skmem:(");
    if (l.find(mine) == std::string::npos || at == std::string::npos) {
      continue;
    }
    std::map<std::string, uint64_t> m;
    std::istringstream in(l.substr(at + 7, l.find(')', at) - at - 7));
    std::string field;
    while (std::getline(in, field, ',')) {
      size_t d = field.find_first_of("0123456789");
      if (d != std::string::npos) {
        m[field.substr(0, d)] = std::strtoull(field.c_str() + d, nullptr, 10);
      }
    }
    total += m["r"] + std::max(m["w"], m["t"]) + m["f"];
  }
  ::pclose(f);
  return total;
}

class StallTest : public NetTest {
 protected:
  // 800 connections from the box (bench/net/stall.py post), all open at once, into an upstream
  // that never reads or answers: plain, each a POST with a huge Content-Length and body bytes
  // until none moves for 3 s; `tls` (intercepted: an HTTP rule names the host), each a whole
  // POST and then bytes of a next request, pipelined: past network.max_intercepted (256) the
  // others wait before their handshake, and a holder awaiting its answer is never ended for
  // them, so all 800 stay open. Once the box says they are stalled, the supervisor's RSS and its
  // sockets' memory are read from here, and then the box counts its connections still open:
  // all 800 (a flow the proxy ended would make the reading dishonest).
  void stall(bool tls, uint64_t rss_limit) {
    constexpr int kFlows = 800;
    constexpr int kSlots = 256;  // network.max_intercepted's default
    const std::string dir = w_.root + "/stall";
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    ASSERT_EQ(
        sh(fmt::format("cd {} && openssl req -x509 -newkey ec -pkeyopt "
                       "ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.pem -days 2 "
                       "-subj /CN=stall.test -addext subjectAltName=DNS:stall.test,DNS:ok.test "
                       ">/dev/null 2>&1 && chmod 644 srv.pem",
                       dir)),
        0);
    const std::string cfg = w_.root + "/stallcfg";
    ASSERT_EQ(::mkdir(cfg.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((cfg + "/agentbox").c_str(), 0755), 0);
    write_file(cfg + "/agentbox/config.toml",
               "[[network.rule]]\nhost = \"stall.test\"\nmethods = [\"POST\"]\n"
               "[[network.rule]]\nhost = \"ok.test\"\nmethods = [\"GET\"]\n");
    chown_tree(cfg, w_.as.uid, w_.as.gid);
    const std::string client = w_.bin + "/stall.py";
    std::ifstream src(AGENTBOX_STALL_PY);
    write_file(client, std::string(std::istreambuf_iterator<char>(src), {}), 0755);
    StallServer up(dir, ns_.isolated() ? ns_.fd() : -1);
    ASSERT_NE(up.plain, 0) << "the stalled upstream did not start";
    const uint16_t port = tls ? up.tls : up.plain;
    Args flags = reach("stall.test", port);
    const Args ok = reach("ok.test", up.ok);
    flags.insert(flags.end(), ok.begin(), ok.end());
    flags.insert(flags.end(), {"-q", "--upstream-ca", dir + "/srv.pem"});
    Args cmd = {"/usr/bin/python3",     client,       "post",
                std::to_string(kFlows), "stall.test", std::to_string(port),
                tls ? "tls" : "plain"};
    RunOptions o;
    o.env["XDG_CONFIG_HOME"] = cfg;
    Live live(w_, run_args(flags, cmd), opts(o));
    ASSERT_FALSE(live.line("open ", 180s).empty()) << "the box could not start";
    const std::string stalled = live.line("stalled", 400s);
    ASSERT_FALSE(stalled.empty()) << "the box's connections did not stall";
    const uint64_t rss = status_kib(live.pid(), "VmRSS") << 10;
    const uint64_t sock = socket_bytes(live.pid());
    live.say("count\n");
    const std::string count = live.line("count", 60s);
    // A legitimate intercepted GET during the stall. Plain flows hold no interception slot; with
    // every slot held by a flow awaiting its answer, a new intercepted flow waits until one ends
    // (docs/PROXY.md, "Interception slots"), so it is asked for in the plain case only.
    std::string legit = "-";
    if (!tls) {
      live.say(fmt::format("legit ok.test {}\n", up.ok));
      legit = live.line("legit", 120s);
    }
    live.say("done\n");
    live.finish(60000);
    std::cerr << fmt::format(
        "[ {} stalled {} uploads ({}; {}): supervisor RSS {} KiB, sockets {} KiB; {} ]\n", kFlows,
        tls ? "intercepted" : "plain", stalled, count, rss >> 10, sock >> 10, legit);
    EXPECT_EQ(count, fmt::format("count open {0} of {0}", kFlows))
        << "flows the proxy ended before the reading";
    // "stalled BYTES open N connecting C handshaking H replaced R": with TLS, exactly the first
    // 256 got through their handshake (slot holders), the other 544 wait before it.
    EXPECT_NE(stalled.find(fmt::format(" open {} connecting 0 handshaking {} ", kFlows,
                                       tls ? kFlows - kSlots : 0)),
              std::string::npos)
        << stalled;
    if (!tls) {
      EXPECT_EQ(legit, "legit 200") << "a legitimate flow during the stall";
    }
    EXPECT_GT(sock, 0u) << "ss saw no socket of the supervisor";
    EXPECT_LE(sock, 128ull << 20) << "socket memory past network.buffer_budget";
    EXPECT_LE(rss, rss_limit) << "supervisor RSS";
  }
};

// Plain HTTP: 800 flows used to take 170 MB of RSS and 475 MB of socket memory (autotuned send
// buffers towards an upstream that does not read). Defaults: buffer_budget = 128M, 4096 flows.
TEST_P(StallTest, StalledUploadsStayWithinTheBufferBudget) {
  stall(false, 64ull << 20);
}

// Intercepted TLS: about 460-550 KB of supervisor memory per flow at first (430 MiB for 800),
// then ~130 KiB (104 MiB for 800), then ~44 KiB: two SSL objects (~34 KiB, OpenSSL's own) and
// a TLS record (~48 MiB for 800 with every flow holding that). Now at most
// network.max_intercepted (256) flows hold that; the other 544 wait before their handshake,
// unread, at about a plain flow's cost. 40 MiB fails without the cap.
TEST_P(StallTest, StalledInterceptedUploadsStayWithinTheBufferBudget) {
  stall(true, 40ull << 20);
}

INSTANTIATE_TEST_SUITE_P(As, StallTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

INSTANTIATE_TEST_SUITE_P(As, NetTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
