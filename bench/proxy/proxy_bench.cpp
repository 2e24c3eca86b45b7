// Added latency and throughput of the ProxyHandler's interception path, side by side with a
// direct connection to the same loopback TLS server (timings are printed, never asserted).
//
//   bench_proxy [ROUNDS] [MIB] [DOWNLOADS]   (defaults 300, 256 and 1; the figure uses
//                                             MIB=1024)
//
// The proxy runs on its own thread with its own event::Loop (as the supervisor would), behind
// a loopback acceptor that hands each accepted connection to ProxyHandler::serve; the client is
// an in-process OpenSSL client on the main thread. Rounds alternate direct / proxied so that
// load on the (shared) machine hits both alike. Measured per HTTPS request:
//   new connection: TCP connect + TLS handshake + GET + response, connection closed;
//   reused: GET + response on a kept-alive connection;
// and the throughput of one large download: plain TCP loopback, direct TLS, and TLS through the
// proxy's interception (decrypt, parse, scrub, re-encrypt).
#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>

#include "../../tests/unit/proxy/proxy_rig.hpp"

namespace {

using namespace agentbox;
using namespace agentbox::proxy;
using namespace agentbox::proxy::testing;
using Clock = std::chrono::steady_clock;

constexpr const char* kHost = "api.bench.test";

struct Client {
  ossl::SslCtxPtr ctx;
  UniqueFd fd;
  ossl::SslPtr ssl;
  std::string buf;

  bool connect(uint16_t port, const std::string& ca_file, bool tls = true) {
    fd.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      return false;
    }
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    buf.clear();
    if (!tls) {
      return true;
    }
    if (!ctx) {
      ctx.reset(SSL_CTX_new(TLS_client_method()));
      SSL_CTX_load_verify_file(ctx.get(), ca_file.c_str());
      SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
      SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    }
    ssl.reset(SSL_new(ctx.get()));
    SSL_set_fd(ssl.get(), fd.get());
    SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(kHost));
    SSL_set1_host(ssl.get(), kHost);
    return SSL_connect(ssl.get()) == 1;
  }
  void close() {
    if (ssl) {
      SSL_shutdown(ssl.get());
    }
    ssl.reset();
    fd.reset();
  }
  // GET `path`; returns the body size (the response is read, not kept, for large bodies).
  int64_t get(const std::string& path, const std::string& auth) {
    Stream s(fd.get(), ssl.get());
    if (!s.write("GET " + path + " HTTP/1.1\r\nHost: " + kHost + "\r\n" + auth + "\r\n")) {
      return -1;
    }
    const size_t end = s.read_until(buf, "\r\n\r\n");
    if (end == std::string::npos) {
      return -1;
    }
    const uint64_t len = std::stoull(header_of(buf.substr(0, end), "content-length"));
    buf.erase(0, end);
    uint64_t got = std::min<uint64_t>(buf.size(), len);
    buf.erase(0, got);
    char tmp[65536];
    while (got < len) {
      const ssize_t n = s.read(tmp, sizeof tmp);
      if (n <= 0) {
        return -1;
      }
      const auto take = std::min<uint64_t>(static_cast<uint64_t>(n), len - got);
      got += take;
      if (take < static_cast<uint64_t>(n)) {
        buf.append(tmp + take, static_cast<size_t>(static_cast<uint64_t>(n) - take));
      }
    }
    return static_cast<int64_t>(got);
  }
};

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

struct Stats {
  std::vector<double> v;
  double median() {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  double p90() {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() * 9 / 10];
  }
};

void print(const char* what, Stats& s) {
  std::printf("  %-44s median %8.3f ms   p90 %8.3f ms\n", what, s.median(), s.p90());
}

// Alternating direct and proxied requests on new connections, then on kept-alive ones (`d`
// and `p` stay connected for the throughput part).
bool latency(int rounds, uint16_t direct_port, const std::string& direct_ca, uint16_t proxy_port,
             const std::string& proxy_ca, const std::string& auth, Client& d, Client& p) {
  Stats direct_new, proxy_new, direct_reused, proxy_reused;
  Client cd;  // each client keeps its own context (its own trust anchor)
  Client cp;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    if (!cd.connect(direct_port, direct_ca) || cd.get("/", "") != 3) {
      std::fprintf(stderr, "direct request failed\n");
      std::exit(1);
    }
    direct_new.v.push_back(ms(Clock::now() - t0));
    cd.close();
    t0 = Clock::now();
    if (!cp.connect(proxy_port, proxy_ca) || cp.get("/", auth) != 3) {
      std::fprintf(stderr, "proxied request failed\n");
      std::exit(1);
    }
    proxy_new.v.push_back(ms(Clock::now() - t0));
    cp.close();
  }
  if (!d.connect(direct_port, direct_ca) || !p.connect(proxy_port, proxy_ca)) {
    return false;
  }
  for (int i = 0; i < rounds * 4; ++i) {
    auto t0 = Clock::now();
    (void)d.get("/", "");
    direct_reused.v.push_back(ms(Clock::now() - t0));
    t0 = Clock::now();
    (void)p.get("/", auth);
    proxy_reused.v.push_back(ms(Clock::now() - t0));
  }
  print("direct, new connection", direct_new);
  print("intercept+inject, new connection", proxy_new);
  print("direct, reused connection", direct_reused);
  print("intercept+inject, reused connection", proxy_reused);
  std::printf("  added: new %+.3f ms (goal <= +1 ms), reused %+.3f ms (goal <= +0.2 ms)\n",
              proxy_new.median() - direct_new.median(),
              proxy_reused.median() - direct_reused.median());
  return true;
}

double cpu_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// `rounds` downloads of `mib` each, in turn: plain loopback, direct TLS, intercepted (so load on
// the shared machine hits all three alike); medians reported. Also the CPU time the proxy's
// thread spent per GiB intercepted (user + system, from its thread CPU clock), and all threads
// (server, proxy, client): unlike MiB/s they hardly depend on what else runs on the machine, so
// they are the figures to compare versions by.
void throughput(uint64_t mib, int rounds, Client& plain, Client& d, Client& p,
                const std::string& auth, clockid_t proxy_clock) {
  const std::string big = "/big/" + std::to_string(mib << 20);
  auto measure = [&](Client& cl, const std::string& a) {
    const auto t0 = Clock::now();
    const int64_t n = cl.get(big, a);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (n <= 0) {
      std::fprintf(stderr, "download failed\n");
      std::exit(1);
    }
    return static_cast<double>(n) / s / (1 << 20);
  };
  Stats loop_mibs, direct_mibs, proxy_mibs, proxy_cpu, all_cpu, loop_cpu, direct_cpu;
  const double per_gib = 1000.0 * 1024.0 / static_cast<double>(mib);
  auto process_cpu = [&](Stats& mibs, Stats& cpu, Client& cl, const std::string& a) {
    const double a0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
    mibs.v.push_back(measure(cl, a));
    cpu.v.push_back((cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - a0) * per_gib);
  };
  for (int i = 0; i < rounds; ++i) {
    process_cpu(loop_mibs, loop_cpu, plain, "");
    process_cpu(direct_mibs, direct_cpu, d, "");
    const double c0 = cpu_seconds(proxy_clock);
    process_cpu(proxy_mibs, all_cpu, p, auth);
    proxy_cpu.v.push_back((cpu_seconds(proxy_clock) - c0) * per_gib);
  }
  const double l = loop_mibs.median();
  const double dt = direct_mibs.median();
  const double px = proxy_mibs.median();
  std::printf("download of %llu MiB, one connection, %d interleaved rounds (medians):\n",
              static_cast<unsigned long long>(mib), rounds);
  std::printf("  plain TCP loopback                 %8.0f MiB/s\n", l);
  std::printf("  TLS direct                         %8.0f MiB/s\n", dt);
  std::printf("  TLS intercepted (+scrub)           %8.0f MiB/s\n", px);
  std::printf("  CPU per GiB intercepted: proxy thread %.0f ms, all threads %.0f ms\n",
              proxy_cpu.median(), all_cpu.median());
  std::printf("  CPU per GiB, all threads: loopback %.0f ms, direct TLS %.0f ms\n",
              loop_cpu.median(), direct_cpu.median());
  std::printf("  intercepted / loopback = %.2f (goal >= 0.3), intercepted / direct TLS = %.2f\n",
              px / l, px / dt);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 300;
  const uint64_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 256;
  const int downloads = argc > 3 ? std::max(1, std::atoi(argv[3])) : 1;

  auto up_ca = SessionCa::create({.hosts = {kHost}, .common_name = "bench upstream CA"});
  const std::string up_ca_file = temp_file(up_ca->pem());
  Upstream tls_server(Upstream::Kind::kTls, *up_ca->leaf_for(kHost));
  Upstream plain_server(Upstream::Kind::kPlain);

  audit::MemorySink audit;
  auto creds =
      CredentialSet::load({{.name = "key",
                            .env = "KEY",
                            .from = "env:KEY",
                            .hosts = {kHost},
                            .inject = "header:Authorization"}},
                          SecretSource([](const std::string&) -> std::optional<std::string> {
                            return std::string("sk-ant-api03-") + std::string(80, 'r');
                          }),
                          nullptr);
  const std::string auth = "Authorization: Bearer " + *creds->placeholder("key") + "\r\n";
  ProxyOptions options;
  options.connect_to.push_back(*net::parse_connect_to(
      std::string(kHost) + ":443:127.0.0.1:" + std::to_string(tls_server.port())));
  options.upstream_ca = {up_ca_file};
  auto session_ca = SessionCa::create({.hosts = {kHost}});
  const std::string session_ca_file = temp_file(session_ca->pem());
  policy::EgressPolicy policy;

  // The proxy's thread: its loop, handler and acceptor live and die there.
  std::atomic<bool> stop{false};
  std::atomic<uint16_t> proxy_port{0};
  std::thread proxy_thread([&] {
    pthread_setname_np(pthread_self(), "proxy");  // for perf --comm and top -H
    auto loop = event::Loop::create();
    auto handler = ProxyHandler::create(*loop, policy, options, &*creds, &*session_ca, audit);
    if (!handler) {
      std::fprintf(stderr, "proxy: %s\n", handler.error().message().c_str());
      std::exit(1);
    }
    Acceptor acc(*loop, **handler, kHost);
    proxy_port = acc.port();
    while (!stop) {
      (void)loop->run_once(std::chrono::milliseconds(20));
    }
  });
  while (proxy_port == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  double load[3] = {0, 0, 0};
  FILE* f = std::fopen("/proc/loadavg", "re");
  if (f != nullptr) {
    if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) {
      load[0] = load[1] = load[2] = 0;
    }
    std::fclose(f);
  }
  std::printf("proxy latency, %d interleaved rounds (%u cpus, load %.2f %.2f %.2f)\n", rounds,
              std::thread::hardware_concurrency(), load[0], load[1], load[2]);

  Client d;
  Client p;
  if (!latency(rounds, tls_server.port(), up_ca_file, proxy_port, session_ca_file, auth, d, p)) {
    return 1;
  }
  Client plain;
  if (!plain.connect(plain_server.port(), "", false)) {
    return 1;
  }
  clockid_t proxy_clock{};
  if (pthread_getcpuclockid(proxy_thread.native_handle(), &proxy_clock) != 0) {
    return 1;
  }
  throughput(mib, downloads, plain, d, p, auth, proxy_clock);
  d.close();
  p.close();
  plain.close();
  stop = true;
  proxy_thread.join();
  unlink(up_ca_file.c_str());
  unlink(session_ca_file.c_str());
  return 0;
}
