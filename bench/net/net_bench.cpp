// net_bench: the pieces bench/net/net.sh needs to measure the box network (src/net) against host
// loopback, slirp4netns and pasta. Runs as root. Subcommands:
//
//   stack --netns PATH [--allow RULE]... [--connect-to H:P:A:P]... [--name NAME] [--ready FILE]
//         [--no-offload]
//       Creates tap0 inside the network namespace PATH (configured like the box: 10.0.2.100/24,
//       gateway 10.0.2.2, MTU 65520, lo up; IFF_VNET_HDR + TUN_F_CSUM checksum offload unless
//       --no-offload), then serves it in-process with net::Stack + FdTap +
//       EpollPoller + ConnectHandler until SIGTERM/SIGINT. Writes the synthetic address of NAME
//       (what the box's DNS would answer) to FILE once ready. Counters go to stderr at exit.
//   serve --port P
//       Loopback server for the connection tests: answers the first byte of each connection
//       with one byte; after 'x' it closes at once (short connections: the server closes first,
//       so no client port sits in TIME_WAIT), after 'h' it keeps the connection until EOF.
//   relay --port P --to Q
//       The floor for any user-space relay: listens on 127.0.0.1:P and relays every accepted
//       connection to 127.0.0.1:Q. One thread, one epoll set, level-triggered; accept4, a
//       non-blocking connect, read/write, close. No tap, no second TCP stack, no policy, no audit.
//       Upstream EOF closes both sockets once its bytes are written (the server closing first is
//       passed on as a close, as the server itself would); a client EOF is passed on as
//       shutdown(SHUT_WR). CPU used (rusage) goes to stderr at SIGTERM/SIGINT.
//   connrate --addr A --port P --count N       (A: an IPv4 address or a name, resolved once)
//       N short connections in a row (connect, 'x', read the answer and EOF, close); prints
//       "conns=N ok=K failed=F seconds=S rate=R cpu_us=C" (C: this client's own CPU per
//       connection, user+sys; first failure's error on stderr).
//   hold --addr A --port P --count N
//       Opens N connections (1 byte each way) and keeps them until stdin closes; prints "held N".
//   attach --rounds N [--peers]
//       Network attach time: in a fresh netns, create + configure the tap (what the box adds to
//       its start): "agentbox" with the product's net::TapSetup (libnl), "agentbox-ioctl" with
//       this file's ioctl version. With --peers, also slirp4netns and pasta (spawn -> ready).
//       Prints the samples per method in milliseconds, one "name ms" per line.
//
// The bench configures the tap with ioctl(2) (SIOCSIF*, SIOCADDRT); the product uses libnl. Both
// are a handful of kernel calls; the difference is far below the 2 ms budget being measured.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <net/route.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/net/connect.hpp"
#include "agentbox/net/epoll_poller.hpp"
#include "agentbox/net/stack.hpp"
#include "agentbox/net/tap_setup.hpp"
#include "agentbox/policy/egress.hpp"

extern char** environ;

namespace {

using namespace agentbox;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "net_bench: {}\n", what);
  std::exit(1);
}

[[noreturn]] void die_errno(const std::string& what) {
  die(fmt::format("{}: {}", what, std::strerror(errno)));
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Args {
  std::vector<std::string> rest;
  std::unordered_map<std::string, std::vector<std::string>> opts;
  [[nodiscard]] std::string get(const std::string& k, std::string def = {}) const {
    auto it = opts.find(k);
    return it == opts.end() || it->second.empty() ? def : it->second.back();
  }
  [[nodiscard]] std::vector<std::string> all(const std::string& k) const {
    auto it = opts.find(k);
    return it == opts.end() ? std::vector<std::string>{} : it->second;
  }
  [[nodiscard]] bool has(const std::string& k) const { return opts.count(k) != 0; }
};

Args parse_args(int argc, char** argv, int from) {
  Args a;
  for (int i = from; i < argc; ++i) {
    std::string_view s = argv[i];
    if (s.starts_with("--")) {
      std::string key(s.substr(2));
      if (i + 1 < argc && !std::string_view(argv[i + 1]).starts_with("--")) {
        a.opts[key].push_back(argv[++i]);
      } else {
        a.opts[key];
      }
    } else {
      a.rest.emplace_back(s);
    }
  }
  return a;
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// ---- tap creation and configuration (inside the current network namespace) ----

void ifreq_name(ifreq& ifr, const char* name) {
  std::memset(&ifr, 0, sizeof ifr);
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
}

void set_addr(sockaddr& sa, const char* addr) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, addr, &sin.sin_addr);
  std::memcpy(&sa, &sin, sizeof sin);
}

void if_up(int s, const char* name) {
  ifreq ifr;
  ifreq_name(ifr, name);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
    die_errno(fmt::format("SIOCGIFFLAGS {}", name));
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) {
    die_errno(fmt::format("SIOCSIFFLAGS {}", name));
  }
}

// tap0 as the box sees it: 10.0.2.100/24, default route via 10.0.2.2, MTU 65520, lo up.
int create_tap(bool offload) {
  int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (tun < 0) {
    die_errno("open /dev/net/tun");
  }
  ifreq ifr;
  ifreq_name(ifr, "tap0");
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0));
  if (ioctl(tun, TUNSETIFF, &ifr) != 0) {
    die_errno("TUNSETIFF tap0");
  }
  if (offload && ioctl(tun, TUNSETOFFLOAD, TUN_F_CSUM) != 0) {
    die_errno("TUNSETOFFLOAD TUN_F_CSUM");
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    die_errno("socket");
  }
  if_up(s, "lo");
  ifreq_name(ifr, "tap0");
  set_addr(ifr.ifr_addr, "10.0.2.100");
  if (ioctl(s, SIOCSIFADDR, &ifr) != 0) {
    die_errno("SIOCSIFADDR");
  }
  ifreq_name(ifr, "tap0");
  set_addr(ifr.ifr_netmask, "255.255.255.0");
  if (ioctl(s, SIOCSIFNETMASK, &ifr) != 0) {
    die_errno("SIOCSIFNETMASK");
  }
  ifreq_name(ifr, "tap0");
  ifr.ifr_mtu = 65520;
  if (ioctl(s, SIOCSIFMTU, &ifr) != 0) {
    die_errno("SIOCSIFMTU");
  }
  if_up(s, "tap0");
  rtentry rt{};
  set_addr(rt.rt_dst, "0.0.0.0");
  set_addr(rt.rt_genmask, "0.0.0.0");
  set_addr(rt.rt_gateway, "10.0.2.2");
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  char dev[] = "tap0";
  rt.rt_dev = dev;
  if (ioctl(s, SIOCADDRT, &rt) != 0) {
    die_errno("SIOCADDRT default via 10.0.2.2");
  }
  close(s);
  return tun;
}

int tap_in_netns(const std::string& path, bool offload) {
  int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (self < 0 || target < 0) {
    die_errno(fmt::format("open netns {}", path));
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    die_errno("setns target");
  }
  int tun = create_tap(offload);
  if (setns(self, CLONE_NEWNET) != 0) {
    die_errno("setns back");
  }
  close(self);
  close(target);
  return tun;
}

// ---- stack ----

volatile sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

struct NullAudit final : audit::Sink {
  void emit(const audit::Event&) noexcept override {}
};

int cmd_stack(const Args& a) {
  raise_nofile();
  std::string netns = a.get("netns");
  if (netns.empty()) {
    die("stack: --netns PATH is required");
  }
  auto policy = policy::EgressPolicy::parse(a.all("allow"));
  if (!policy) {
    die(policy.error().message());
  }
  auto overrides = net::parse_connect_to(a.all("connect-to"));
  if (!overrides) {
    die(overrides.error().message());
  }
  // Audit to a real JSONL file (or /dev/null): the per-flow events are part of the cost.
  std::string audit_path = a.get("audit", "/dev/null");
  auto jsonl = audit::JsonlSink::open(audit_path, "bench");
  if (!jsonl) {
    die(jsonl.error().message());
  }
  bool offload = !a.has("no-offload");
  net::FdTap tap{base::UniqueFd(tap_in_netns(netns, offload)), offload};
  auto poller = net::EpollPoller::create();
  if (!poller) {
    die(poller.error().message());
  }
  net::ConnectHandler handler(*policy, std::move(*overrides));
  net::StackConfig config;
  config.tap_offload = offload;
  net::Stack stack(config, *policy, handler, *poller, tap, *jsonl);
  std::string addr;
  if (a.has("name")) {
    auto ip = stack.pool().assign(a.get("name"));
    if (!ip) {
      die("pool full");
    }
    addr = net::ip4_to_string(*ip);
  }
  constexpr uint64_t kTapToken = ~uint64_t{0};
  poller->watch(tap.fd(), EPOLLIN, kTapToken);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  if (a.has("ready")) {
    std::string tmp = a.get("ready") + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) {
      die_errno("write ready file");
    }
    fmt::print(f, "{}\n", addr);
    std::fclose(f);
    std::rename(tmp.c_str(), a.get("ready").c_str());
  }
  while (g_stop == 0) {
    int timeout = 1000;
    if (auto dl = stack.tcp().next_deadline()) {
      auto d = std::chrono::duration_cast<std::chrono::milliseconds>(*dl - Clock::now()).count();
      timeout = static_cast<int>(std::clamp<int64_t>(d + 1, 0, 1000));
    }
    auto events = poller->wait(timeout);
    auto now = Clock::now();
    for (auto [token, ev] : events) {
      if (token == kTapToken) {
        auto n = stack.drain(tap, now);
        if (!n) {
          die(n.error().message());
        }
      } else {
        stack.tcp().on_socket(token, ev, now);
      }
    }
    if (auto dl = stack.tcp().next_deadline(); dl && *dl <= now) {
      stack.tcp().on_timer(now);
    }
  }
  const auto& c = stack.counters();
  const auto& t = stack.tcp().counters();
  fmt::print(
      stderr,
      "stack: frames_in={} malformed={} dropped={} tap_write_errors={} flows_opened={} "
      "flows_closed={} flows_failed={} resets={} retransmits={} out_of_order={} short_writes={} "
      "segments_in={} segments_out={} acks_coalesced={}\n",
      c.frames_in, c.malformed, c.dropped, tap.write_errors(), t.flows_opened, t.flows_closed,
      t.flows_failed, t.resets_sent, t.retransmits, t.out_of_order, t.short_writes, t.segments_in,
      t.segments_out, t.acks_coalesced);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](timeval tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  fmt::print(stderr, "stack: cpu user={:.3f}s sys={:.3f}s maxrss={}KiB\n", secs(ru.ru_utime),
             secs(ru.ru_stime), ru.ru_maxrss);
  return 0;
}

// ---- loopback server and clients ----

// A non-blocking listener on 127.0.0.1:port (dies on failure); `sin` gets its address.
int listen_loopback(int port, sockaddr_in& sin) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sin = sockaddr_in{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 || listen(ls, 4096) != 0) {
    die_errno(fmt::format("listen 127.0.0.1:{}", port));
  }
  return ls;
}

int cmd_serve(const Args& a) {
  raise_nofile();
  int port = std::atoi(a.get("port", "0").c_str());
  sockaddr_in sin{};
  int ls = listen_loopback(port, sin);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = ls;
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::vector<bool> answered(1 << 20);
  epoll_event evs[256];
  char buf[4096];
  while (g_stop == 0) {
    int n = epoll_wait(ep, evs, 256, 1000);
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        for (;;) {
          int c = accept4(ls, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            break;
          }
          answered[static_cast<size_t>(c)] = false;
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLRDHUP;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        if (!answered[static_cast<size_t>(fd)]) {
          answered[static_cast<size_t>(fd)] = true;
          (void)!write(fd, "y", 1);
          if (buf[0] == 'x') {
            close(fd);  // a short connection: the server closes first, as HTTP/1.0 would
          }
        }
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(fd);  // also removes it from the epoll set
      }
    }
  }
  return 0;
}

// ---- the relay floor ----

// A relayed connection: its two sockets and what a short write left for each.
struct RelayConn {
  int client = -1;
  int upstream = -1;
  std::string to_upstream;  // pending bytes (a short write), normally empty
  std::string to_client;
  bool client_eof = false;
  bool upstream_eof = false;
};

int cmd_relay(const Args& a) {
  raise_nofile();
  int port = std::atoi(a.get("port", "0").c_str());
  int to = std::atoi(a.get("to", "0").c_str());
  if (port <= 0 || to <= 0) {
    die("relay: --port P --to Q are required");
  }
  sockaddr_in sin{};
  int ls = listen_loopback(port, sin);
  sockaddr_in up = sin;
  up.sin_port = htons(static_cast<uint16_t>(to));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  auto add = [ep](int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  };
  auto mod = [ep](int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  };
  add(ls, EPOLLIN);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  // fd -> connection (both of its fds map to the same entry).
  std::unordered_map<int, RelayConn*> conns;
  auto finish = [&](RelayConn* c) {
    conns.erase(c->client);
    conns.erase(c->upstream);
    close(c->client);  // also leaves the epoll set
    close(c->upstream);
    delete c;
  };
  // Writes `buf` (after anything pending) to fd; false on a hard error.
  auto push = [&](int fd, std::string& pending, const char* p, size_t n) {
    if (pending.empty()) {
      ssize_t w = write(fd, p, n);
      if (w < 0 && errno != EAGAIN) {
        return false;
      }
      size_t done = w < 0 ? 0 : static_cast<size_t>(w);
      if (done == n) {
        return true;
      }
      p += done;
      n -= done;
      mod(fd, EPOLLIN | EPOLLOUT);  // wait until it drains
    }
    pending.append(p, n);
    return true;
  };
  long relayed = 0;
  epoll_event evs[256];
  char buf[65536];
  while (g_stop == 0) {
    int n = epoll_wait(ep, evs, 256, 1000);
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        // One accept per wakeup: the listener is level-triggered, so a backlog is reported
        // again, and a sequential client never pays for the EAGAIN of a second accept4.
        for (int once = 0; once < 1; ++once) {
          int c = accept4(ls, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            break;
          }
          int u = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
          if (u < 0 || (connect(u, reinterpret_cast<sockaddr*>(&up), sizeof up) != 0 &&
                        errno != EINPROGRESS)) {
            close(c);
            if (u >= 0) {
              close(u);
            }
            continue;
          }
          auto* rc = new RelayConn{c, u};
          conns[c] = rc;
          conns[u] = rc;
          add(c, EPOLLIN);
          add(u, EPOLLIN);
          ++relayed;
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) {
        continue;  // closed earlier in this batch
      }
      RelayConn* c = it->second;
      bool from_client = fd == c->client;
      int other = from_client ? c->upstream : c->client;
      std::string& pending_out = from_client ? c->to_client : c->to_upstream;  // fd's backlog
      std::string& pending_in = from_client ? c->to_upstream : c->to_client;   // to `other`
      if ((evs[i].events & EPOLLOUT) != 0 && !pending_out.empty()) {
        ssize_t w = write(fd, pending_out.data(), pending_out.size());
        if (w > 0) {
          pending_out.erase(0, static_cast<size_t>(w));
        }
        if (pending_out.empty()) {
          mod(fd, EPOLLIN);
          if (!from_client && c->upstream_eof) {
            finish(c);
            continue;
          }
        }
      }
      if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) {
        continue;
      }
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        if (!push(other, pending_in, buf, static_cast<size_t>(r))) {
          finish(c);
        }
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      }
      if (r < 0 || !from_client) {
        // The server closed (or an error): close both once its last bytes are out.
        c->upstream_eof = true;
        if (r < 0 || c->to_client.empty()) {
          finish(c);
        } else {
          mod(fd, 0);
        }
        continue;
      }
      c->client_eof = true;
      shutdown(c->upstream, SHUT_WR);
      mod(fd, 0);  // nothing more to read from the client
    }
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](timeval tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  fmt::print(stderr, "relay: connections={} cpu user={:.3f}s sys={:.3f}s\n", relayed,
             secs(ru.ru_utime), secs(ru.ru_stime));
  return 0;
}

sockaddr_in target(const Args& a) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(std::atoi(a.get("port", "0").c_str())));
  std::string addr = a.get("addr", "");
  if (inet_pton(AF_INET, addr.c_str(), &sin.sin_addr) == 1) {
    return sin;
  }
  // A name (inside `agentbox run`, the box's DNS answers with a synthetic address): resolved
  // once, before the timed loop.
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(addr.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
    die(fmt::format("--addr `{}`: not an IPv4 address and does not resolve", addr));
  }
  sockaddr_in found{};
  std::memcpy(&found, res->ai_addr, sizeof found);
  freeaddrinfo(res);
  sin.sin_addr = found.sin_addr;
  return sin;
}

// connect, one byte each way; the fd on success, -1 (errno set) on failure.
// `cmd` 'x': the server answers and closes (short connection); 'h': it keeps the connection.
int one_exchange(const sockaddr_in& sin, char cmd) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  char c = 0;
  if (connect(s, reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0 ||
      write(s, &cmd, 1) != 1 || read(s, &c, 1) != 1 || (cmd == 'x' && read(s, &c, 1) != 0)) {
    int e = errno == 0 ? EPROTO : errno;
    close(s);
    errno = e;
    return -1;
  }
  return s;
}

int cmd_connrate(const Args& a) {
  auto sin = target(a);
  long count = std::atol(a.get("count", "1000").c_str());
  long ok = 0;
  long failed = 0;
  std::string first_error;
  auto t0 = Clock::now();
  for (long i = 0; i < count; ++i) {
    errno = 0;
    int s = one_exchange(sin, 'x');
    if (s < 0) {
      if (first_error.empty()) {
        first_error = fmt::format("connection {}: {}", i, std::strerror(errno));
      }
      ++failed;
      if (failed > 20) {
        break;  // the path is broken; don't wait 5 s per remaining connection
      }
      continue;
    }
    close(s);
    ++ok;
  }
  double secs = ms_since(t0) / 1000;
  if (!first_error.empty()) {
    fmt::print(stderr, "connrate: first failure at {}\n", first_error);
  }
  // This process's CPU clock (user+sys), robust under load where the rate is not.
  timespec cpu{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
  double cpu_us = (static_cast<double>(cpu.tv_sec) * 1e6 + static_cast<double>(cpu.tv_nsec) / 1e3) /
                  static_cast<double>(std::max(ok, 1L));
  fmt::print("conns={} ok={} failed={} seconds={:.3f} rate={:.0f} cpu_us={:.1f}\n", count, ok,
             failed, secs, static_cast<double>(ok) / secs, cpu_us);
  return failed == 0 ? 0 : 1;
}

int cmd_hold(const Args& a) {
  raise_nofile();
  auto sin = target(a);
  long count = std::atol(a.get("count", "1000").c_str());
  std::vector<int> fds;
  for (long i = 0; i < count; ++i) {
    int s = one_exchange(sin, 'h');
    if (s < 0) {
      die_errno(fmt::format("hold: connection {}", i));
    }
    fds.push_back(s);
  }
  fmt::print("held {}\n", fds.size());
  std::fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  for (int s : fds) {
    close(s);
  }
  return 0;
}

// ---- attach time ----

// In a child: unshare a netns (not timed: the box makes one anyway), then time tap creation and
// configuration: the product's net::TapSetup (libnl, what the box's init runs) when `product`,
// else this file's ioctl version. Returns milliseconds.
double attach_ours(bool product) {
  auto setup = net::TapSetup::prepare(net::TapSpec{});
  if (!setup) {
    die(setup.error().message());
  }
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    die_errno("pipe");
  }
  pid_t pid = fork();
  if (pid == 0) {
    if (unshare(CLONE_NEWNET) != 0) {
      _exit(2);
    }
    auto t0 = Clock::now();
    int tun = -1;
    if (product) {
      net::TapResult r = setup->apply("");
      tun = r.err == 0 ? r.fd : -1;
    } else {
      tun = create_tap(true);
    }
    double ms = tun >= 0 ? ms_since(t0) : -1;
    (void)!write(p[1], &ms, sizeof ms);
    close(tun);
    _exit(0);
  }
  close(p[1]);
  double ms = -1;
  if (read(p[0], &ms, sizeof ms) != sizeof ms) {
    ms = -1;
  }
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return ms;
}

// A process parked in a fresh netns for a peer to attach to.
pid_t netns_holder() {
  pid_t pid = fork();
  if (pid == 0) {
    if (unshare(CLONE_NEWNET) != 0) {
      _exit(2);
    }
    pause();
    _exit(0);
  }
  usleep(2000);  // let it unshare
  return pid;
}

double attach_slirp(pid_t ns) {
  int p[2];
  if (pipe2(p, 0) != 0) {
    die_errno("pipe");
  }
  std::string fd = fmt::format("--ready-fd={}", p[1]);
  std::string pid = std::to_string(ns);
  const char* argv[] = {"slirp4netns", "--configure", "--mtu=65520", fd.c_str(),
                        pid.c_str(),   "tap0",        nullptr};
  auto t0 = Clock::now();
  pid_t child = 0;
  if (posix_spawnp(&child, "slirp4netns", nullptr, nullptr, const_cast<char**>(argv), environ) !=
      0) {
    die("spawn slirp4netns");
  }
  close(p[1]);
  char c;
  double ms = read(p[0], &c, 1) == 1 ? ms_since(t0) : -1;
  close(p[0]);
  kill(child, SIGTERM);
  waitpid(child, nullptr, 0);
  return ms;
}

double attach_pasta(pid_t ns) {
  std::string pidfile = fmt::format("/tmp/net_bench_pasta.{}.pid", getpid());
  // pasta drops its capabilities before opening the namespace, so /proc/PID/ns/net (a ptrace
  // check) is out of reach; a bind mount of it (what `ip netns add` makes) is not.
  std::string netns = fmt::format("/tmp/net_bench_pasta.{}.ns", getpid());
  if (int fd = open(netns.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600); fd >= 0) {
    close(fd);
  }
  if (mount(fmt::format("/proc/{}/ns/net", ns).c_str(), netns.c_str(), nullptr, MS_BIND, nullptr) !=
      0) {
    die_errno("bind-mount the netns for pasta");
  }
  const char* argv[] = {"pasta", "--config-net",  "-q",      "--runas",     "0",
                        "--pid", pidfile.c_str(), "--netns", netns.c_str(), nullptr};
  auto t0 = Clock::now();
  pid_t child = 0;
  // pasta forks to the background once the namespace is configured: its exit is "ready".
  if (posix_spawnp(&child, "pasta", nullptr, nullptr, const_cast<char**>(argv), environ) != 0) {
    die("spawn pasta");
  }
  int st = 0;
  waitpid(child, &st, 0);
  double ms = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? ms_since(t0) : -1;
  if (FILE* f = std::fopen(pidfile.c_str(), "r")) {
    int bg = 0;
    if (std::fscanf(f, "%d", &bg) == 1 && bg > 0) {
      kill(bg, SIGTERM);
    }
    std::fclose(f);
  }
  unlink(pidfile.c_str());
  umount2(netns.c_str(), MNT_DETACH);
  unlink(netns.c_str());
  return ms;
}

int cmd_attach(const Args& a) {
  int rounds = std::atoi(a.get("rounds", "50").c_str());
  bool peers = a.has("peers");
  signal(SIGCHLD, SIG_DFL);
  for (int r = 0; r < rounds; ++r) {
    std::vector<std::string> order = {"agentbox", "agentbox-ioctl"};
    if (peers) {
      order = {"agentbox", "agentbox-ioctl", "slirp4netns", "pasta"};
    }
    std::rotate(order.begin(), order.begin() + static_cast<long>(r % order.size()), order.end());
    for (const auto& m : order) {
      double ms = 0;
      if (m == "agentbox" || m == "agentbox-ioctl") {
        ms = attach_ours(m == "agentbox");
      } else {
        pid_t ns = netns_holder();
        ms = m == "pasta" ? attach_pasta(ns) : attach_slirp(ns);
        kill(ns, SIGKILL);
        waitpid(ns, nullptr, 0);
      }
      fmt::print("{} {:.3f}\n", m, ms);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "usage: net_bench stack|serve|relay|connrate|hold|attach [options]\n");
    return 2;
  }
  std::string_view cmd = argv[1];
  Args a = parse_args(argc, argv, 2);
  if (cmd == "stack") {
    return cmd_stack(a);
  }
  if (cmd == "serve") {
    return cmd_serve(a);
  }
  if (cmd == "relay") {
    return cmd_relay(a);
  }
  if (cmd == "connrate") {
    return cmd_connrate(a);
  }
  if (cmd == "hold") {
    return cmd_hold(a);
  }
  if (cmd == "attach") {
    return cmd_attach(a);
  }
  fmt::print(stderr, "net_bench: unknown command `{}`\n", cmd);
  return 2;
}
