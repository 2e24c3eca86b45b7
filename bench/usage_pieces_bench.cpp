// The usage meter alone on a bulk stream, by piece size (issue 17: "<= 2% proxy CPU"): the
// Anthropic stream of bench/model_stream.hpp (2,000 deltas, 323 KB) fed in pieces of PIECE bytes,
// as the proxy feeds what one read decodes, against one memchr pass over the same pieces (the
// floor of any reading of those bytes). Thread CPU, the best of REPS feeds. It needs nothing but
// the meter, so another tree's meter is timed with the same loop:
//
//   build/bench/usage_pieces_bench [PIECE] [REPS]                        (16384, 300)
//   g++ -std=c++20 -O2 -IOTHER/include OTHER/src/proxy/usage.cpp bench/usage_pieces_bench.cpp
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "agentbox/proxy/usage.hpp"
#include "model_stream.hpp"

namespace {

double thread_cpu() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  using agentbox::proxy::UsageMeter;
  const size_t piece = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 16384;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 300;
  if (piece == 0 || reps <= 0) {
    std::fprintf(stderr, "usage: usage_pieces_bench [PIECE] [REPS]\n");
    return 2;
  }
  std::string body;
  for (const auto& e : agentbox::bench::anthropic_events(2000)) {
    body += e;
  }
  const std::string_view all(body);
  size_t sink = 0;
  double meter = 1e9;
  double floor = 1e9;
  for (int r = 0; r < reps; ++r) {
    const double t0 = thread_cpu();
    UsageMeter m(UsageMeter::Format::kSse);
    for (size_t at = 0; at < all.size(); at += piece) {
      m.feed(all.substr(at, piece));
    }
    sink += m.finish().tokens.output;
    const double t1 = thread_cpu();
    for (size_t at = 0; at < all.size(); at += piece) {
      const auto p = all.substr(at, piece);
      sink += std::memchr(p.data(), 0, p.size()) == nullptr ? 1 : 0;
    }
    const double t2 = thread_cpu();
    meter = std::min(meter, t1 - t0);
    floor = std::min(floor, t2 - t1);
  }
  std::printf(
      "%zu bytes in pieces of %zu: the meter %.1f us, one memchr pass %.1f us (best of %d; "
      "checksum %zu)\n",
      all.size(), piece, meter * 1e6, floor * 1e6, reps, sink);
  return 0;
}
