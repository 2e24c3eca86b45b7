// The stack on a real tap: a network namespace created by the test with tap0 configured like the
// box (10.0.2.100/24, gateway 10.0.2.2, MTU 65520), net::Stack + FdTap + EpollPoller +
// ConnectHandler in this process, python3 inside the namespace against a python3 server on host
// loopback: 64 MiB down and up with SHA-256 checksums, 500 short connections in a row and 200
// concurrent ones, then no flow and no fd left behind. No box is involved (the namespace is the
// test's own), so it lives with the unit tests; it needs root to create the namespace.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "agentbox/audit/audit.hpp"
#include "agentbox/net/connect.hpp"
#include "agentbox/net/epoll_poller.hpp"
#include "agentbox/net/stack.hpp"
#include "agentbox/policy/egress.hpp"
#include "testkit/skip.hpp"

namespace agentbox::net {
namespace {

using namespace std::chrono_literals;

// Server (host loopback) and client (inside the netns) in one script.
//   server: prints its port; per connection one command line:
//     "down N SEED" -> N bytes of random.Random(SEED).randbytes; "up N" -> reads N bytes, answers
//     the SHA-256 hex; "ping" -> "pong".
//   client ADDR PORT down|up|short|concurrent
constexpr const char* kScript = R"PY(
import hashlib, random, socket, socketserver, sys, threading
CHUNK = 1 << 20
def gen(n, seed):
    r = random.Random(seed)
    while n > 0:
        k = min(n, CHUNK)
        yield r.randbytes(k)
        n -= k
class H(socketserver.BaseRequestHandler):
    def handle(self):
        f = self.request.makefile("rb")
        cmd = f.readline().split()
        if not cmd:
            return
        if cmd[0] == b"down":
            for c in gen(int(cmd[1]), int(cmd[2])):
                self.request.sendall(c)
        elif cmd[0] == b"up":
            n, h = int(cmd[1]), hashlib.sha256()
            while n > 0:
                c = f.read(min(n, CHUNK))
                if not c:
                    break
                h.update(c)
                n -= len(c)
            self.request.sendall(h.hexdigest().encode() + b"\n")
        elif cmd[0] == b"ping":
            self.request.sendall(b"pong\n")
class S(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512
def recv_all(s):
    out = []
    while True:
        c = s.recv(CHUNK)
        if not c:
            return b"".join(out)
        out.append(c)
def main():
    if sys.argv[1] == "server":
        srv = S(("127.0.0.1", 0), H)
        print(srv.server_address[1], flush=True)
        srv.serve_forever()
    addr, port, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    n = 64 << 20
    if mode == "down":
        s = socket.create_connection((addr, port), timeout=30)
        s.sendall(b"down %d 7\n" % n)
        h, got = hashlib.sha256(), 0
        while True:
            c = s.recv(CHUNK)
            if not c:
                break
            h.update(c)
            got += len(c)
        want = hashlib.sha256()
        for c in gen(n, 7):
            want.update(c)
        assert got == n, ("short download", got)
        assert h.hexdigest() == want.hexdigest(), "download checksum mismatch"
        print("down ok", got, h.hexdigest())
    elif mode == "up":
        s = socket.create_connection((addr, port), timeout=30)
        s.sendall(b"up %d\n" % n)
        want = hashlib.sha256()
        for c in gen(n, 11):
            want.update(c)
            s.sendall(c)
        got = recv_all(s).strip().decode()
        assert got == want.hexdigest(), ("upload checksum mismatch", got)
        print("up ok", n, got)
    elif mode == "short":
        for i in range(500):
            s = socket.create_connection((addr, port), timeout=10)
            s.sendall(b"ping\n")
            assert recv_all(s) == b"pong\n", ("short", i)
            s.close()
        print("short ok 500")
    elif mode == "concurrent":
        socks = [socket.create_connection((addr, port), timeout=10) for _ in range(200)]
        for s in socks:
            s.sendall(b"ping\n")
        for i, s in enumerate(socks):
            assert recv_all(s) == b"pong\n", ("concurrent", i)
            s.close()
        print("concurrent ok 200")
main()
)PY";

std::string python() {
  for (const char* p : {"/usr/bin/python3", "/usr/local/bin/python3"}) {
    if (access(p, X_OK) == 0) {
      return p;
    }
  }
  return {};
}

size_t open_fds() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) {
      ++n;
    }
    closedir(d);
  }
  return n;
}

void set_addr(sockaddr& sa, const char* addr) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, addr, &sin.sin_addr);
  std::memcpy(&sa, &sin, sizeof sin);
}

// In the calling thread's (new) netns: tap0 like the box's, lo up. Returns the tap fd or -1.
int make_tap(bool offload, std::string& why) {
  int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (tun < 0) {
    why = std::string("open /dev/net/tun: ") + std::strerror(errno);
    return -1;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "tap0", IFNAMSIZ - 1);
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0));
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  auto fail = [&](const char* op) {
    why = std::string(op) + ": " + std::strerror(errno);
    close(s);
    close(tun);
    return -1;
  };
  if (ioctl(tun, TUNSETIFF, &ifr) != 0) {
    return fail("TUNSETIFF");
  }
  if (offload && ioctl(tun, TUNSETOFFLOAD, TUN_F_CSUM) != 0) {
    return fail("TUNSETOFFLOAD");
  }
  for (const char* name : {"lo", "tap0"}) {
    ifreq f{};
    std::strncpy(f.ifr_name, name, IFNAMSIZ - 1);
    if (std::string(name) == "tap0") {
      set_addr(f.ifr_addr, "10.0.2.100");
      if (ioctl(s, SIOCSIFADDR, &f) != 0) {
        return fail("SIOCSIFADDR");
      }
      set_addr(f.ifr_netmask, "255.255.255.0");
      if (ioctl(s, SIOCSIFNETMASK, &f) != 0) {
        return fail("SIOCSIFNETMASK");
      }
      f.ifr_mtu = 65520;
      if (ioctl(s, SIOCSIFMTU, &f) != 0) {
        return fail("SIOCSIFMTU");
      }
    }
    if (ioctl(s, SIOCGIFFLAGS, &f) != 0) {
      return fail("SIOCGIFFLAGS");
    }
    f.ifr_flags = static_cast<short>(f.ifr_flags | IFF_UP);
    if (ioctl(s, SIOCSIFFLAGS, &f) != 0) {
      return fail("SIOCSIFFLAGS");
    }
  }
  rtentry rt{};
  set_addr(rt.rt_dst, "0.0.0.0");
  set_addr(rt.rt_genmask, "0.0.0.0");
  set_addr(rt.rt_gateway, "10.0.2.2");
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  char dev[] = "tap0";
  rt.rt_dev = dev;
  if (ioctl(s, SIOCADDRT, &rt) != 0) {
    return fail("SIOCADDRT");
  }
  close(s);
  return tun;
}

struct Proc {
  int status = -1;  // exit status, -1 if killed on timeout
  std::string out;
};

// Runs python3 SCRIPT ARGS (inside netns `ns_fd` when >= 0), bounded by `timeout`.
Proc run_python(const std::string& py, const std::string& script,
                const std::vector<std::string>& args, int ns_fd, std::chrono::seconds timeout) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return {};
  }
  pid_t pid = fork();
  if (pid == 0) {
    if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET) != 0) {
      _exit(120);
    }
    dup2(p[1], 1);
    std::vector<const char*> argv = {py.c_str(), script.c_str()};
    for (const auto& a : args) {
      argv.push_back(a.c_str());
    }
    argv.push_back(nullptr);
    execv(py.c_str(), const_cast<char* const*>(argv.data()));
    _exit(121);
  }
  close(p[1]);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  Proc r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int st = 0;
  for (;;) {
    char buf[4096];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) {
      r.out.append(buf, static_cast<size_t>(n));
    }
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      while ((n = read(p[0], buf, sizeof buf)) > 0) {
        r.out.append(buf, static_cast<size_t>(n));
      }
      r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  close(p[0]);
  return r;
}

struct NullAudit final : audit::Sink {
  void emit(const audit::Event&) noexcept override {}
};

// Parameter: checksum offload (IFF_VNET_HDR + TUN_F_CSUM, FdTap vnet_hdr, partial checksums
// both ways) or plain frames with full checksums.
class TapEndToEnd : public ::testing::TestWithParam<bool> {};

TEST_P(TapEndToEnd, BulkBothWaysShortAndConcurrentConnections) {
  const bool offload = GetParam();
  if (geteuid() != 0) {
    testkit::skip("needs root to create a netns");
    return;
  }
  std::string py = python();
  if (py.empty()) {
    testkit::skip("no python3");
    return;
  }
  // The namespace: this thread enters a new one, makes the tap, keeps a handle, comes back.
  int self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(self_ns, 0);
  ASSERT_EQ(unshare(CLONE_NEWNET), 0) << std::strerror(errno);
  std::string why;
  int tun = make_tap(offload, why);
  int box_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  ASSERT_EQ(setns(self_ns, CLONE_NEWNET), 0) << std::strerror(errno);
  close(self_ns);
  ASSERT_GE(tun, 0) << why;
  ASSERT_GE(box_ns, 0);

  std::string script = "/tmp/agentbox-tap-test-" + std::to_string(getpid()) + ".py";
  std::ofstream(script) << kScript;
  // The server runs for the whole test; its first line is its port.
  int sp[2];
  ASSERT_EQ(pipe2(sp, O_CLOEXEC), 0);
  pid_t server = fork();
  if (server == 0) {
    dup2(sp[1], 1);
    execl(py.c_str(), py.c_str(), script.c_str(), "server", nullptr);
    _exit(121);
  }
  close(sp[1]);
  std::string port;
  char c;
  while (read(sp[0], &c, 1) == 1 && c != '\n') {
    port += c;
  }
  ASSERT_FALSE(port.empty()) << "the loopback server did not start";

  auto policy = policy::EgressPolicy::parse({"bench.test:80"});
  ASSERT_TRUE(policy) << policy.error().message();
  auto overrides = parse_connect_to(std::vector<std::string>{"bench.test:80:127.0.0.1:" + port});
  ASSERT_TRUE(overrides);
  NullAudit audit;
  FdTap tap{base::UniqueFd(tun), offload};
  auto poller = EpollPoller::create();
  ASSERT_TRUE(poller);
  ConnectHandler handler(*policy, std::move(*overrides));
  StackConfig config;
  config.tap_offload = offload;
  Stack stack(config, *policy, handler, *poller, tap, audit);
  auto addr = stack.pool().assign("bench.test");
  ASSERT_TRUE(addr);
  std::string box_addr = ip4_to_string(*addr);
  constexpr uint64_t kTapToken = ~uint64_t{0};
  poller->watch(tap.fd(), EPOLLIN, kTapToken);
  size_t fds_before = open_fds();

  std::atomic<bool> stop{false};
  std::atomic<size_t> flows{0};
  std::thread loop([&] {
    while (!stop.load()) {
      auto events = poller->wait(20);
      auto now = Clock::now();
      for (auto [token, ev] : events) {
        if (token == kTapToken) {
          (void)stack.drain(tap, now);
        } else {
          stack.tcp().on_socket(token, ev, now);
        }
      }
      if (auto dl = stack.tcp().next_deadline(); dl && *dl <= now) {
        stack.tcp().on_timer(now);
      }
      flows.store(stack.tcp().flow_count());
    }
  });

  for (const char* mode : {"down", "up", "short", "concurrent"}) {
    Proc r = run_python(py, script, {"client", box_addr, "80", mode}, box_ns, 120s);
    EXPECT_EQ(r.status, 0) << mode << ": " << r.out;
    EXPECT_NE(r.out.find(std::string(mode) + " ok"), std::string::npos) << r.out;
  }
  // Every flow ends (both FINs acknowledged) and its socket is closed: nothing lingers.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (flows.load() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  stop.store(true);
  loop.join();
  EXPECT_EQ(stack.tcp().flow_count(), 0u);
  EXPECT_EQ(open_fds(), fds_before);
  const auto& t = stack.tcp().counters();
  EXPECT_EQ(t.flows_opened, 702u);  // down, up, 500 short, 200 concurrent
  EXPECT_EQ(t.flows_closed, 702u);
  EXPECT_EQ(t.flows_failed, 0u);
  EXPECT_EQ(stack.counters().malformed, 0u);

  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
  close(sp[0]);
  close(box_ns);
  unlink(script.c_str());
}

INSTANTIATE_TEST_SUITE_P(Tap, TapEndToEnd, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "Offload" : "Plain"; });

}  // namespace
}  // namespace agentbox::net
