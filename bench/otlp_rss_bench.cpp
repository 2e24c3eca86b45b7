// OTLP export at a chosen rate, without the box (issue 17: "10,000 events/s keeps supervisor RSS
// within 8 MiB of idle"): the real audit sink (JsonlSink: render, hash chain, write(2)) and the
// real exporter (bounded queue, worker thread, OTLP JSON, POSTs over HTTP or TLS) in this process,
// fed denied-DNS lines as the supervisor writes them, paced at RATE a second, to a receiver given
// by URL. It prints this process's peak VmRSS while idle (the exporter started, no lines) and
// while flooding, the rate reached, and the exporter's counts. bench/telemetry_rss.sh runs it
// beside the end-to-end measurement, where a loaded machine cannot make the box produce 10,000
// events a second: this shows what the export path itself holds at that rate.
//
//   build/bench/otlp_rss_bench URL RATE SECS [CA_FILE]
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "agentbox/audit/audit.hpp"
#include "agentbox/audit/export.hpp"

namespace {

using namespace agentbox;
using Clock = std::chrono::steady_clock;

long rss_kib() {
  std::ifstream f("/proc/self/status");
  for (std::string l; std::getline(f, l);) {
    if (l.rfind("VmRSS:", 0) == 0) {
      return std::atol(l.c_str() + 6);
    }
  }
  return 0;
}

// Samples VmRSS every 50 ms until stopped; the peak.
struct Sampler {
  std::atomic<bool> stop{false};
  std::atomic<long> peak{0};
  std::thread t{[this] {
    while (!stop.load()) {
      long v = rss_kib();
      if (v > peak.load()) {
        peak.store(v);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }};
  long finish() {
    stop.store(true);
    t.join();
    return peak.load();
  }
};

// `rate` lines a second for `secs` seconds, in 1 ms ticks (each tick catches up); lines made.
long flood(audit::JsonlSink& sink, long rate, double secs) {
  auto t0 = Clock::now();
  long i = 0;
  while (true) {
    double el = std::chrono::duration<double>(Clock::now() - t0).count();
    if (el >= secs) {
      return i;
    }
    for (long due = static_cast<long>(el * static_cast<double>(rate)); i < due; ++i) {
      sink.emit(audit::Event("dns.query")
                    .str("name", fmt::format("n{}.flood.bench.test", i))
                    .str("qtype", "A")
                    .num("qtype_num", 1)
                    .str("result", "denied"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fmt::print(stderr, "usage: {} URL RATE SECS [CA_FILE]\n", argv[0]);
    return 2;
  }
  auto ep = audit::parse_endpoint(argv[1]);
  if (!ep) {
    fmt::print(stderr, "{}\n", ep.error().message());
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);  // a collector hanging up mid-TLS-write: EPIPE, as in agentbox
  long rate = std::atol(argv[2]);
  double secs = std::atof(argv[3]);
  char dir[] = "/tmp/otlp-bench-XXXXXX";
  if (::mkdtemp(dir) == nullptr) {
    return 1;
  }
  std::string log = std::string(dir) + "/audit.jsonl";
  auto sink = audit::JsonlSink::open(log, "bench0", {.max_bytes = 1ull << 30, .coalesce = true});
  auto x = audit::OtlpExporter::make({.endpoint = *ep,
                                      .ca_file = argc > 4 ? argv[4] : "",
                                      .resource = {{"service.name", "agentbox"}}});
  if (!sink || !x) {
    fmt::print(stderr, "set-up failed\n");
    return 1;
  }
  audit::OtlpExporter& exporter = **x;
  sink->observe([&exporter](std::string_view line) { exporter.push(line); });
  if (!exporter.start()) {
    return 1;
  }
  long before = rss_kib();
  Sampler idle;
  std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  long idle_peak = idle.finish();
  Sampler busy;
  auto t0 = Clock::now();
  long made = flood(*sink, rate, secs);
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the last batch
  long busy_peak = busy.finish();
  audit::ExportStats s = exporter.stop(std::chrono::milliseconds(2000));
  fmt::print(
      "start {:.1f} MiB, idle peak {:.1f} MiB, flood peak {:.1f} MiB (+{:.1f} MiB over idle); "
      "{} lines in {:.1f} s ({:.0f}/s); sent {}, dropped {}, posts {}{}\n",
      static_cast<double>(before) / 1024, static_cast<double>(idle_peak) / 1024,
      static_cast<double>(busy_peak) / 1024, static_cast<double>(busy_peak - idle_peak) / 1024,
      made, took, static_cast<double>(made) / took, s.sent, s.dropped, s.posts,
      s.last_error.empty() ? "" : fmt::format(" ({})", s.last_error));
  ::unlink(log.c_str());
  ::rmdir(dir);
  return 0;
}
