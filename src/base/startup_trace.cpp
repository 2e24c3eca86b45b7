// AGENTBOX_TRACE_STARTUP: see startup_trace.hpp. Costs one branch per stamp when unset.
#include "agentbox/base/startup_trace.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>

namespace agentbox::base::startup_trace {

namespace {

int g_state = -1;  // -1: not read yet; 0: off; 1: on

// Appends the decimal digits of `v` at `out`; returns the end.
char* put_u64(char* out, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) {
    *out++ = tmp[--n];
  }
  return out;
}

char* put_str(char* out, const char* end, const char* s) {
  while (*s != '\0' && out < end) {
    *out++ = *s++;
  }
  return out;
}

uint64_t micros(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000U + static_cast<uint64_t>(ts.tv_nsec) / 1000U;
}

}  // namespace

bool enabled() noexcept {
  if (g_state < 0) {
    const char* v = std::getenv(kEnv);
    g_state = v != nullptr && *v != '\0' ? 1 : 0;
  }
  return g_state == 1;
}

void stamp(const char* phase) noexcept {
  if (!enabled()) {
    return;
  }
  uint64_t mono = micros(CLOCK_MONOTONIC);
  uint64_t cpu = micros(CLOCK_THREAD_CPUTIME_ID);
  struct rusage ru {};
  ::getrusage(RUSAGE_THREAD, &ru);
  char line[256];
  char* const end = line + sizeof line - 1;
  char* o = put_str(line, end, "agentbox-trace ");
  o = put_u64(o, static_cast<uint64_t>(::getpid()));
  *o++ = ' ';
  o = put_u64(o, static_cast<uint64_t>(::syscall(SYS_gettid)));
  *o++ = ' ';
  o = put_u64(o, mono);
  *o++ = ' ';
  o = put_u64(o, cpu);
  *o++ = ' ';
  o = put_u64(o, static_cast<uint64_t>(ru.ru_minflt));
  *o++ = ' ';
  o = put_str(o, end, phase);
  *o++ = '\n';
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line, static_cast<size_t>(o - line));
}

}  // namespace agentbox::base::startup_trace
