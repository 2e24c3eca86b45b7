// Usage accounting's share of the proxy's CPU on a streamed model response (issue 17: "<= 2%
// proxy CPU"), measured on the real interception path (ProxyHandler with a SessionBudget, as
// `agentbox run` has one), not on a model of it. A loopback TLS upstream streams an Anthropic
// Messages response (message_start with usage, N text deltas, message_delta with usage,
// message_stop), chunked, one chunk per event; the same bytes are served as
// `text/event-stream` (metered: the UsageMeter reads every event) and as
// `application/octet-stream` (not metered: the one thing that differs), on one kept-alive
// intercepted connection with the credential's placeholder swapped, alternating metered and
// unmetered streams (the order flips every round). Measured: the proxy thread's CPU clock per
// stream; printed: medians, the median of the per-round ratios, the ratios of the medians, lower
// quartiles and tenth percentiles of all streams of each kind (on a loaded machine the noise only
// adds CPU, so the low quantiles are the steadier figure), and the tokens the budget recorded
// (proof that the meter ran). Beside each round, on the bench's own thread: the meter
// alone fed the same stream in 16 KiB pieces (as the proxy reads a bulk stream), and the floor
// of any reading of those bytes, one memchr pass over them; both as a share of the unmetered
// proxy CPU.
//
// The floor in the proxy itself (the meter's feed replaced by one memchr pass over the same bytes)
// is this bench built after `git apply bench/proxy/usage_floor.patch` (then `git apply -R` it).
//
//   build/bench/proxy/bench_usage_proxy [EVENTS] [ROUNDS] [each|bulk]   (2000, 15, each)
//     each: the upstream writes one event per TLS record, as a model streams tokens;
//     bulk: the whole stream in one write (16 KiB records, many events per proxy read: the
//           least proxy work per event, so the largest share the meter can have).
#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "../model_stream.hpp"
#include "agentbox/proxy/session_budget.hpp"
#include "proxy_thread.hpp"

namespace {

using namespace agentbox;
using namespace agentbox::proxy;
using namespace agentbox::cred;
using namespace agentbox::http;
using namespace agentbox::proxy::testing;

constexpr const char* kHost = "api.anthropic.bench.test";

std::string chunk(std::string_view d) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", d.size());
  return std::string(size) + std::string(d) + "\r\n";
}

// The upstream: TLS, kept alive; GET /sse or /raw answers the stream (one write per event, or
// the whole of it in one write).
class StreamServer {
 public:
  StreamServer(std::shared_ptr<const Leaf> leaf, std::vector<std::string> events, bool bulk)
      : events_(std::move(events)), bulk_(bulk) {
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_use_certificate(ctx_.get(), leaf->cert.get());
    SSL_CTX_use_PrivateKey(ctx_.get(), leaf->key.get());
    port_ = listen_loopback(fd_);
    thread_ = std::thread([this] { run(); });
  }
  ~StreamServer() {
    shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  [[nodiscard]] uint16_t port() const { return port_; }

 private:
  void run() {
    UniqueFd c(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));  // one connection
    if (!c) {
      return;
    }
    int one = 1;
    setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ossl::SslPtr ssl(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), c.get());
    if (SSL_accept(ssl.get()) != 1) {
      return;
    }
    Stream s(c.get(), ssl.get());
    std::string buf;
    for (;;) {
      const size_t end = s.read_until(buf, "\r\n\r\n");
      if (end == std::string::npos) {
        return;
      }
      const bool sse = buf.rfind("GET /sse ", 0) == 0;
      buf.erase(0, end);
      std::string out = std::string("HTTP/1.1 200 OK\r\nContent-Type: ") +
                        (sse ? "text/event-stream" : "application/octet-stream") +
                        "\r\nTransfer-Encoding: chunked\r\n\r\n";
      for (const auto& e : events_) {
        out += chunk(e);
        if (!bulk_) {
          if (!s.write(out)) {
            return;
          }
          out.clear();
        }
      }
      out += "0\r\n\r\n";
      if (!s.write(out)) {
        return;
      }
    }
  }

  std::vector<std::string> events_;
  bool bulk_;
  ossl::SslCtxPtr ctx_;
  UniqueFd fd_;
  uint16_t port_ = 0;
  std::thread thread_;
};

double thread_cpu(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The meter alone and the floor (one memchr pass) over `body` in 16 KiB pieces: CPU seconds of
// `reps` passes each, alternated.
std::pair<double, double> meter_and_floor(std::string_view body, int reps, uint64_t& sink) {
  constexpr size_t kPiece = 16384;
  double meter = 0;
  double memchr_cpu = 0;
  for (int i = 0; i < reps; ++i) {
    const double t0 = thread_cpu(CLOCK_THREAD_CPUTIME_ID);
    UsageMeter m(UsageMeter::Format::kSse);
    for (size_t at = 0; at < body.size(); at += kPiece) {
      m.feed(body.substr(at, kPiece));
    }
    sink += m.finish().tokens.output;
    const double t1 = thread_cpu(CLOCK_THREAD_CPUTIME_ID);
    meter += t1 - t0;
    for (size_t at = 0; at < body.size(); at += kPiece) {
      const auto piece = body.substr(at, kPiece);
      sink += std::memchr(piece.data(), 0, piece.size()) == nullptr ? 1 : 0;
    }
    memchr_cpu += thread_cpu(CLOCK_THREAD_CPUTIME_ID) - t1;
  }
  return {meter / reps, memchr_cpu / reps};
}

// The value below which `q` of `v` lies (nearest rank). Under load the noise only adds CPU (cache
// refills after preemption, a sibling's share of the core), so the low quantiles of many
// streams are the steadier reading of what each kind costs.
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

double median(std::vector<double> v) {
  return quantile(std::move(v), 0.5);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const int events = argc > 1 ? std::max(1, std::atoi(argv[1])) : 2000;
  const int rounds = argc > 2 ? std::max(1, std::atoi(argv[2])) : 15;
  const bool bulk = argc > 3 && std::string(argv[3]) == "bulk";
  constexpr int kPerRound = 10;  // streams of each kind per round

  auto up_ca = SessionCa::create({.hosts = {kHost}, .common_name = "bench upstream CA"});
  const std::string up_ca_file = temp_file(up_ca->pem());
  const auto stream = agentbox::bench::anthropic_events(events);
  std::string body;
  for (const auto& e : stream) {
    body += e;
  }
  const size_t bytes = body.size();
  StreamServer upstream(*up_ca->leaf_for(kHost), stream, bulk);

  audit::MemorySink audit;
  auto creds = bench_credential(kHost, "anthropic", "x-api-key");
  const std::string auth = "x-api-key: " + *creds->placeholder("anthropic") + "\r\n";
  SessionBudget budget({}, {}, nullptr);  // no limits: the meter still reads (the ledger)
  ProxyOptions options = bench_options(kHost, upstream.port(), up_ca_file);
  options.budget = &budget;
  auto session_ca = SessionCa::create({.hosts = {kHost}});
  const std::string session_ca_file = temp_file(session_ca->pem());
  policy::EgressPolicy policy;

  ProxyThread proxy(policy, options, &*creds, &*session_ca, audit, kHost);
  const uint16_t proxy_port = proxy.port();
  clockid_t proxy_clock{};
  if (pthread_getcpuclockid(proxy.thread(), &proxy_clock) != 0) {
    return 1;
  }

  // The client: one intercepted connection, kept alive.
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(proxy_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ossl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_load_verify_file(ctx.get(), session_ca_file.c_str());
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  ossl::SslPtr ssl(SSL_new(ctx.get()));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    return 1;
  }
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL_set_fd(ssl.get(), fd.get());
  SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
           const_cast<char*>(kHost));
  if (SSL_connect(ssl.get()) != 1) {
    std::fprintf(stderr, "TLS to the proxy failed\n");
    return 1;
  }
  Stream s(fd.get(), ssl.get());
  std::string buf;
  // One stream; returns the proxy thread's CPU seconds for it.
  auto fetch = [&](const char* path) {
    const double t0 = thread_cpu(proxy_clock);
    if (!s.write(std::string("GET ") + path + " HTTP/1.1\r\nHost: " + kHost + "\r\n" + auth +
                 "\r\n") ||
        s.read_until(buf, "\r\n0\r\n\r\n", size_t{64} << 20) == std::string::npos) {
      std::fprintf(stderr, "stream %s failed\n", path);
      std::exit(1);
    }
    buf.clear();
    return thread_cpu(proxy_clock) - t0;
  };
  for (int i = 0; i < 3; ++i) {  // warm-up (session, allocations)
    (void)fetch("/sse");
    (void)fetch("/raw");
  }
  double load[3] = {0, 0, 0};
  if (FILE* f = std::fopen("/proc/loadavg", "re")) {
    if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) {
      load[0] = 0;
    }
    std::fclose(f);
  }
  std::vector<double> on;  // every stream's proxy CPU, metered and not
  std::vector<double> off;
  std::vector<double> ratio;  // per round: metered / unmetered of its kPerRound pairs
  std::vector<double> alone;
  std::vector<double> floors;
  uint64_t sink = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto [meter_cpu, floor_cpu] = meter_and_floor(body, kPerRound, sink);
    alone.push_back(meter_cpu);
    floors.push_back(floor_cpu);
    double m = 0;
    double u = 0;
    for (int i = 0; i < kPerRound; ++i) {
      const bool metered_first = (r + i) % 2 == 0;
      const double first = fetch(metered_first ? "/sse" : "/raw");
      const double second = fetch(metered_first ? "/raw" : "/sse");
      on.push_back(metered_first ? first : second);
      off.push_back(metered_first ? second : first);
      m += on.back();
      u += off.back();
    }
    ratio.push_back(m / u);
  }
  SSL_shutdown(ssl.get());
  ssl.reset();
  fd.reset();
  proxy.stop();  // the budget is the proxy thread's: read once it has stopped
  const auto models = budget.models();
  const auto it = models.find("claude-sonnet-4-5-20250929");
  std::printf(
      "streamed model response through the proxy (%s): %zu events, %zu bytes, %d rounds of %d "
      "streams each way (%u cpus, load %.2f %.2f %.2f)\n"
      "  proxy thread CPU per stream, median: unmetered %.1f us, metered %.1f us\n"
      "  metered / unmetered: median of rounds %.4f (min %.4f, max %.4f) -> meter adds %+.2f%%\n"
      "  metered / unmetered over all %zu streams each: medians %.4f, lower quartiles %.4f, "
      "tenth percentiles %.4f\n"
      "  beside it, over the same bytes in 16 KiB pieces (bench thread): the meter alone %.1f us "
      "(%.2f%% of unmetered), one memchr pass %.1f us (%.2f%%: the floor)\n"
      "  metered responses recorded: %llu (output tokens %llu; bench checksum %llu)\n",
      bulk ? "bulk: one write" : "one TLS record per event", stream.size(), bytes, rounds,
      kPerRound, std::thread::hardware_concurrency(), load[0], load[1], load[2], median(off) * 1e6,
      median(on) * 1e6, median(ratio), *std::min_element(ratio.begin(), ratio.end()),
      *std::max_element(ratio.begin(), ratio.end()), (median(ratio) - 1) * 100, on.size(),
      median(on) / median(off), quantile(on, 0.25) / quantile(off, 0.25),
      quantile(on, 0.1) / quantile(off, 0.1), median(alone) * 1e6,
      median(alone) / median(off) * 100, median(floors) * 1e6, median(floors) / median(off) * 100,
      static_cast<unsigned long long>(it == models.end() ? 0 : it->second.responses),
      static_cast<unsigned long long>(it == models.end() ? 0 : it->second.tokens.output),
      static_cast<unsigned long long>(sink));
  unlink(up_ca_file.c_str());
  unlink(session_ca_file.c_str());
  return 0;
}
