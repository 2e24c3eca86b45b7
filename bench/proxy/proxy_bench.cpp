// Added latency and throughput of the ProxyHandler's interception path, side by side with a
// direct connection to the same loopback TLS server (timings are printed, never asserted).
//
//   bench_proxy [ROUNDS] [MIB] [DOWNLOADS]   (defaults 300, 256 and 1; the figure uses
//                                             MIB=1024)
//   bench_proxy serve DIR                     (the upstreams alone, for bench/proxy/product.sh)
//
// The proxy runs on its own thread with its own event::Loop (as the supervisor would), behind
// a loopback acceptor that hands each accepted connection to ProxyHandler::serve; the client is
// an in-process OpenSSL client on the main thread. Rounds alternate direct / proxied so that
// load on the (shared) machine hits both alike. Measured per HTTPS request:
//   new connection: TCP connect + TLS handshake + GET + response, connection closed;
//   reused: GET + response on a kept-alive connection;
// and the throughput of one large download: plain TCP loopback, direct TLS, TLS through a bare
// OpenSSL relay (BareRelay: the least any interceptor does, the floor), and TLS through the
// proxy's interception (decrypt, parse, scrub, re-encrypt).
#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>

#include "agentbox/proxy/tls_session.hpp"
#include "proxy_thread.hpp"

namespace {

using namespace agentbox;
using namespace agentbox::proxy;
using namespace agentbox::cred;
using namespace agentbox::http;
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

// The floor peer: the least an interceptor can do on the same crypto. It terminates the
// client's TLS with the same session-CA leaf and the proxy's own box-side context, opens TLS
// upstream with the proxy's upstream context (verified the same way: trust store plus the test
// CA, SNI, hostname check), and copies plaintext SSL_read -> SSL_write both ways through a
// 64 KiB buffer per direction: no HTTP parsing, no scrub, no policy. OpenSSL drives the
// non-blocking sockets itself (socket BIOs, read-ahead into a 64 KiB record buffer, a buffering
// write BIO, partial and moving writes); one thread, poll(2), one connection at a time (the
// bench needs one).
class BareRelay {
 public:
  BareRelay(std::shared_ptr<const Leaf> leaf, uint16_t upstream_port, const std::string& up_ca)
      : leaf_(std::move(leaf)), upstream_port_(upstream_port) {
    auto box_ctx = make_box_ctx();
    auto up_ctx = make_upstream_ctx(kSystemBundle, {up_ca});
    if (!box_ctx || !up_ctx) {
      std::fprintf(stderr, "bare relay: %s\n",
                   (box_ctx ? up_ctx.error() : box_ctx.error()).message().c_str());
      std::exit(1);
    }
    box_ctx_ = std::move(*box_ctx);
    up_ctx_ = std::move(*up_ctx);
    port_ = listen_loopback(listen_fd_);
    thread_ = std::thread([this] { run(); });
  }
  ~BareRelay() {
    stop_ = true;
    thread_.join();
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] pthread_t thread() { return thread_.native_handle(); }

 private:
  struct Dir {
    SSL* src;
    SSL* dst;
    std::vector<char> buf = std::vector<char>(size_t{64} * 1024);
    size_t off = 0;  // written so far of buf[0, len)
    size_t len = 0;
    bool want_write = false;  // dst's socket is full
    bool starved = false;     // src has no complete record buffered: wait for its fd
    bool eof = false;
  };

  // Socket BIOs: reads straight from the fd (read-ahead: up to 64 KiB of records per read(2));
  // writes through a 128 KiB buffering BIO flushed once per batch, so a 64 KiB batch (four
  // records) is one send(2), as the proxy sends its whole output buffer at once.
  static void attach(SSL* ssl, int fd) {
    BIO* sock = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO* buf = BIO_new(BIO_f_buffer());
    BIO_set_write_buffer_size(buf, 128 * 1024);
    BIO_up_ref(sock);  // one reference for the read side, one inside the write chain
    SSL_set_bio(ssl, sock, BIO_push(buf, sock));
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_read_ahead(ssl, 1);
    SSL_set_default_read_buffer_len(ssl, size_t{64} * 1024);
  }
  static void nonblocking(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
  }

  // Moves what is there; false when the direction ended (EOF or error).
  static bool step(Dir& d) {
    d.starved = false;
    BIO* wbio = SSL_get_wbio(d.dst);
    for (int i = 0; i < 64; ++i) {
      if (d.len > d.off) {
        size_t w = 0;
        if (SSL_write_ex(d.dst, d.buf.data() + d.off, d.len - d.off, &w) != 1) {
          const int e = SSL_get_error(d.dst, 0);
          d.want_write = e == SSL_ERROR_WANT_WRITE;
          return d.want_write || e == SSL_ERROR_WANT_READ;
        }
        d.off += w;
        if (d.off == d.len) {
          d.off = d.len = 0;
        }
        continue;
      }
      if (BIO_wpending(wbio) > 0 && BIO_flush(wbio) <= 0) {
        d.want_write = BIO_should_retry(wbio);
        return d.want_write;
      }
      d.want_write = false;
      if (d.eof) {
        return false;
      }
      // Gather records until OpenSSL has no complete one buffered or the batch is full.
      while (d.len < d.buf.size()) {
        size_t n = 0;
        if (SSL_read_ex(d.src, d.buf.data() + d.len, d.buf.size() - d.len, &n) != 1) {
          const int e = SSL_get_error(d.src, 0);
          if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            d.eof = true;
          }
          d.starved = true;
          break;
        }
        d.len += n;
      }
      if (d.len == 0) {
        return !d.eof;
      }
      d.starved = false;
    }
    return true;
  }

  void serve(UniqueFd cfd) {
    ossl::SslPtr box(SSL_new(box_ctx_.get()));
    SSL_use_certificate(box.get(), leaf_->cert.get());
    SSL_use_PrivateKey(box.get(), leaf_->key.get());
    // The handshakes block (the fds are switched to non-blocking after them).
    attach(box.get(), cfd.get());
    if (SSL_accept(box.get()) != 1) {
      return;
    }
    UniqueFd ufd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(upstream_port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(ufd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      return;
    }
    ossl::SslPtr up(SSL_new(up_ctx_.get()));
    SSL_ctrl(up.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(kHost));
    SSL_set1_host(up.get(), kHost);
    attach(up.get(), ufd.get());
    if (SSL_connect(up.get()) != 1 || SSL_get_verify_result(up.get()) != X509_V_OK) {
      std::fprintf(stderr, "bare relay: upstream TLS failed\n");
      return;
    }
    nonblocking(cfd.get());
    nonblocking(ufd.get());
    Dir down{.src = up.get(), .dst = box.get()};
    Dir upward{.src = box.get(), .dst = up.get()};
    while (!stop_) {
      if (!step(upward) || !step(down)) {
        return;
      }
      // Work left that no fd event would announce (the step limit was reached).
      if ((!down.starved && !down.want_write) || (!upward.starved && !upward.want_write)) {
        continue;
      }
      pollfd p[2] = {{cfd.get(), 0, 0}, {ufd.get(), 0, 0}};
      p[0].events =
          static_cast<short>((upward.len == 0 ? POLLIN : 0) | (down.want_write ? POLLOUT : 0));
      p[1].events =
          static_cast<short>((down.len == 0 ? POLLIN : 0) | (upward.want_write ? POLLOUT : 0));
      (void)poll(p, 2, 100);
    }
  }

  void run() {
    pthread_setname_np(pthread_self(), "relay");
    while (!stop_) {
      pollfd p{listen_fd_.get(), POLLIN, 0};
      if (poll(&p, 1, 20) != 1) {
        continue;
      }
      UniqueFd c(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (c) {
        serve(std::move(c));
      }
    }
  }

  std::shared_ptr<const Leaf> leaf_;
  uint16_t upstream_port_;
  ossl::SslCtxPtr box_ctx_;
  ossl::SslCtxPtr up_ctx_;
  UniqueFd listen_fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
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

// `rounds` downloads of `mib` each, in turn: plain loopback, direct TLS, the bare relay,
// intercepted (so load on the shared machine hits all four alike); medians reported. Also the
// CPU time per GiB of the proxy's thread and of the relay's thread (user + system, from their
// thread CPU clocks), and of all threads (server, proxy or relay, client): unlike MiB/s they
// hardly depend on what else runs on the machine, so they are the figures to compare versions by.
void throughput(uint64_t mib, int rounds, Client& plain, Client& d, Client& r, Client& p,
                const std::string& auth, clockid_t proxy_clock, clockid_t relay_clock) {
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
  Stats loop_mibs, direct_mibs, relay_mibs, proxy_mibs;
  Stats loop_cpu, direct_cpu, relay_cpu, relay_thread, all_cpu, proxy_cpu;
  const double per_gib = 1000.0 * 1024.0 / static_cast<double>(mib);
  auto process_cpu = [&](Stats& mibs, Stats& cpu, Client& cl, const std::string& a) {
    const double a0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
    mibs.v.push_back(measure(cl, a));
    cpu.v.push_back((cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - a0) * per_gib);
  };
  for (int i = 0; i < rounds; ++i) {
    process_cpu(loop_mibs, loop_cpu, plain, "");
    process_cpu(direct_mibs, direct_cpu, d, "");
    const double r0 = cpu_seconds(relay_clock);
    process_cpu(relay_mibs, relay_cpu, r, "");  // no injection: the relay does none
    relay_thread.v.push_back((cpu_seconds(relay_clock) - r0) * per_gib);
    const double c0 = cpu_seconds(proxy_clock);
    process_cpu(proxy_mibs, all_cpu, p, auth);
    proxy_cpu.v.push_back((cpu_seconds(proxy_clock) - c0) * per_gib);
  }
  const double l = loop_mibs.median();
  const double dt = direct_mibs.median();
  const double br = relay_mibs.median();
  const double px = proxy_mibs.median();
  std::printf("download of %llu MiB, one connection, %d interleaved rounds (medians):\n",
              static_cast<unsigned long long>(mib), rounds);
  std::printf("  %-34s %8.0f MiB/s   CPU per GiB: all threads %5.0f ms\n", "plain TCP loopback", l,
              loop_cpu.median());
  std::printf("  %-34s %8.0f MiB/s   CPU per GiB: all threads %5.0f ms\n", "TLS direct", dt,
              direct_cpu.median());
  std::printf("  %-34s %8.0f MiB/s   CPU per GiB: all threads %5.0f ms, relay thread %4.0f ms\n",
              "TLS bare OpenSSL relay", br, relay_cpu.median(), relay_thread.median());
  std::printf("  %-34s %8.0f MiB/s   CPU per GiB: all threads %5.0f ms, proxy thread %4.0f ms\n",
              "TLS intercepted (+scrub)", px, all_cpu.median(), proxy_cpu.median());
  std::printf(
      "  intercepted / loopback = %.2f (goal >= 0.3), bare relay / loopback = %.2f, "
      "direct TLS / loopback = %.2f\n",
      px / l, br / l, dt / l);
  std::printf(
      "  intercepted / bare relay = %.2f (MiB/s), %.2f (thread CPU per GiB, relay / proxy)"
      ", intercepted / direct TLS = %.2f\n",
      px / br, relay_thread.median() / proxy_cpu.median(), px / dt);
}

// `bench_proxy serve DIR`: the same upstreams for bench/proxy/product.sh (curl inside
// `agentbox run`): DIR/ca.pem (the upstream's test CA), DIR/ports ("TLS PLAIN"), served until
// stdin closes.
int serve(const std::string& dir) {
  auto ca = SessionCa::create({.hosts = {kHost}, .common_name = "bench upstream CA"});
  if (!ca) {
    std::fprintf(stderr, "bench_proxy serve: %s\n", ca.error().message().c_str());
    return 1;
  }
  Upstream tls_server(Upstream::Kind::kTls, *ca->leaf_for(kHost));
  Upstream plain_server(Upstream::Kind::kPlain);
  const std::string pem = ca->pem();
  FILE* f = std::fopen((dir + "/ca.pem").c_str(), "we");
  if (f == nullptr || std::fwrite(pem.data(), 1, pem.size(), f) != pem.size() ||
      std::fclose(f) != 0) {
    std::fprintf(stderr, "bench_proxy serve: cannot write %s/ca.pem\n", dir.c_str());
    return 1;
  }
  // Written last: the script waits for this file.
  const std::string tmp = dir + "/ports.tmp";
  f = std::fopen(tmp.c_str(), "we");
  if (f == nullptr) {
    return 1;
  }
  std::fprintf(f, "%u %u\n", tls_server.port(), plain_server.port());
  if (std::fclose(f) != 0 || std::rename(tmp.c_str(), (dir + "/ports").c_str()) != 0) {
    return 1;
  }
  serve_until_stdin_closes();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 3 && std::string(argv[1]) == "serve") {
    return serve(argv[2]);
  }
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 300;
  const uint64_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 256;
  const int downloads = argc > 3 ? std::max(1, std::atoi(argv[3])) : 1;

  auto up_ca = SessionCa::create({.hosts = {kHost}, .common_name = "bench upstream CA"});
  const std::string up_ca_file = temp_file(up_ca->pem());
  Upstream tls_server(Upstream::Kind::kTls, *up_ca->leaf_for(kHost));
  Upstream plain_server(Upstream::Kind::kPlain);

  audit::MemorySink audit;
  auto creds = bench_credential(kHost, "key", "Authorization");
  const std::string auth = "Authorization: Bearer " + *creds->placeholder("key") + "\r\n";
  ProxyOptions options = bench_options(kHost, tls_server.port(), up_ca_file);
  auto session_ca = SessionCa::create({.hosts = {kHost}});
  const std::string session_ca_file = temp_file(session_ca->pem());
  // The bare relay's leaf, minted before the proxy's thread uses the CA.
  auto relay_leaf = session_ca->leaf_for(kHost).value();
  policy::EgressPolicy policy;

  ProxyThread proxy(policy, options, &*creds, &*session_ca, audit, kHost);
  const uint16_t proxy_port = proxy.port();

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
  BareRelay relay(relay_leaf, tls_server.port(), up_ca_file);
  Client r;
  if (!r.connect(relay.port(), session_ca_file)) {
    std::fprintf(stderr, "bare relay: connection failed\n");
    return 1;
  }
  clockid_t proxy_clock{};
  clockid_t relay_clock{};
  if (pthread_getcpuclockid(proxy.thread(), &proxy_clock) != 0 ||
      pthread_getcpuclockid(relay.thread(), &relay_clock) != 0) {
    return 1;
  }
  throughput(mib, downloads, plain, d, r, p, auth, proxy_clock, relay_clock);
  d.close();
  r.close();
  p.close();
  plain.close();
  proxy.stop();
  unlink(up_ca_file.c_str());
  unlink(session_ca_file.c_str());
  return 0;
}
