// Hash chaining's cost per audit line (issue 17: "<= 1 us per audit line"): rendering a typical
// line (a proxied request's fields) alone, then rendering and sealing it (SHA-256 through a
// context fetched once, and the hex link), interleaved in rounds; and OpenSSL 3's one-shot
// SHA256(), which fetches the digest on every call, for comparison.
//
//   build/bench/audit_chain_bench [lines per round]        (default 200000, 5 rounds)
#include <fmt/core.h>
#include <openssl/sha.h>
#include <time.h>

#include <cstdlib>
#include <string>

#include "agentbox/audit/audit.hpp"
#include "agentbox/audit/chain.hpp"

namespace {

using namespace agentbox::audit;

// CPU time of this thread: the machine may be shared, and waiting for a core is not ours.
double cpu_now() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

Event typical(int i) {
  return Event("http.request")
      .str("host", "api.anthropic.com")
      .num("port", 443)
      .str("method", "POST")
      .str("path", "/v1/messages")
      .num("status", 200)
      .num("bytes_up", 1024 + i % 7)
      .num("bytes_down", 48213)
      .str("credential", "anthropic");
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 200000;
  Digest nonce{};
  Chain chain(nonce);
  size_t bytes = 0;
  double render = 0;
  double sealed = 0;
  double oneshot = 0;
  for (int round = 0; round < 5; ++round) {
    double t0 = cpu_now();
    for (int i = 0; i < n; ++i) {
      bytes += render_line(typical(i), "20261207-031900-abc123").size();
    }
    render += cpu_now() - t0;
    t0 = cpu_now();
    for (int i = 0; i < n; ++i) {
      std::string line = render_line(typical(i), "20261207-031900-abc123");
      chain.seal(line);
      bytes += line.size();
    }
    sealed += cpu_now() - t0;
    std::string line = render_line(typical(0), "20261207-031900-abc123");
    unsigned char d[SHA256_DIGEST_LENGTH];
    t0 = cpu_now();
    for (int i = 0; i < n; ++i) {
      line[20] = static_cast<char>('0' + i % 10);
      ::SHA256(reinterpret_cast<const unsigned char*>(line.data()), line.size(), d);
      bytes += d[0];
    }
    oneshot += cpu_now() - t0;
  }
  const double lines = 5.0 * n;
  fmt::print(
      "{} lines of ~{} bytes: render {:.0f} ns/line, render+seal {:.0f} ns/line, "
      "chain {:.0f} ns/line; one-shot SHA256() alone {:.0f} ns/line (checksum {})\n",
      lines, render_line(typical(0), "20261207-031900-abc123").size() + 74, render * 1e9 / lines,
      sealed * 1e9 / lines, (sealed - render) * 1e9 / lines, oneshot * 1e9 / lines, bytes % 1000);
  return 0;
}
