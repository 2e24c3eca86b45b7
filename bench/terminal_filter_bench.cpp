// The terminal filter's own CPU per GiB of box output, in process (no pty): 1 GiB in 16 KiB reads
// (the relay's read size) of two floods, NUL bytes (the fast path) and coloured UTF-8 log lines
// (SGR sequences and box drawing in every line), against a plain copy of the same reads (what a
// relay costs at the least). bench/terminal_filter.sh measures the product under a pty.
//
//   build/bench/terminal_filter_bench [MiB]        (default 1024)
#include <fmt/core.h>
#include <time.h>

#include <cstdlib>
#include <string>

#include "agentbox/app/terminal_filter.hpp"

namespace {

constexpr size_t kRead = 16384;

// CPU time of this thread: the machine may be shared, and waiting for a core is not the filter's.
double cpu_now() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void measure(const char* name, const std::string& chunk, size_t total) {
  std::string out;
  out.reserve(kRead * 2);
  const size_t reads = total / chunk.size();
  double t0 = cpu_now();
  size_t copied = 0;
  for (size_t i = 0; i < reads; ++i) {
    out.assign(chunk);
    copied += out.size();
  }
  const double copy = cpu_now() - t0;
  agentbox::app::TerminalFilter filter;
  size_t passed = 0;
  t0 = cpu_now();
  for (size_t i = 0; i < reads; ++i) {
    out.clear();
    filter.feed(chunk, out);
    passed += out.size();
  }
  const double filt = cpu_now() - t0;
  const double mib = static_cast<double>(reads * chunk.size()) / (1 << 20);
  fmt::print(
      "{:<9} {:.0f} MiB: copy {:.3f} s ({:.0f} MiB/s), filter {:.3f} s ({:.0f} MiB/s), "
      "{:.2f} ns/byte more; {} bytes passed of {}, {} dropped sequences\n",
      name, mib, copy, mib / copy, filt, mib / filt,
      (filt - copy) * 1e9 / static_cast<double>(reads * chunk.size()), passed, copied,
      filter.total());
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
  const size_t total = mib << 20;
  measure("zeros", std::string(kRead, '\0'), total);
  const std::string line =
      "\x1b[1;32mok\x1b[0m \x1b[38;5;208m\u2500\u2500\u2502\x1b[m some plain text of a log line "
      "0123456789\n";
  std::string text;
  while (text.size() + line.size() <= kRead) {
    text += line;
  }
  measure("sgr-text", text, total);
  return 0;
}
