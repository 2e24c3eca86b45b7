// Built-in resource defaults derived from the host (see defaults.hpp and docs/CONFINEMENT.md).
#include "agentbox/config/defaults.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

namespace agentbox::config {

namespace {

uint64_t read_number(const char* path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return in ? v : 0;
}

uint64_t mem_total() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") {
      return kib << 10;
    }
  }
  return 0;
}

// Half of the caller's per-user limit, so whatever the box takes, the user's own watchers
// outside keep the other half (the kernel checks the count at every namespace level up).
// Capped: inside a user namespace the caller's limit may be INT_MAX.
uint64_t half(uint64_t host_limit, uint64_t cap) {
  return std::clamp<uint64_t>(host_limit / 2, 1, cap);
}

}  // namespace

HostFacts read_host_facts() {
  return {.mem_total = mem_total(),
          .inotify_instances = read_number("/proc/sys/user/max_inotify_instances"),
          .inotify_watches = read_number("/proc/sys/user/max_inotify_watches")};
}

void apply_resource_defaults(Policy& p, const HostFacts& host) {
  const Origin builtin{"built-in"};
  if (host.mem_total > 0) {
    p.limits.memory_bytes = Sourced<uint64_t>{(host.mem_total / 2) & ~((uint64_t{1} << 20) - 1),
                                              {"built-in: half the RAM"}};
  }
  p.limits.pids = Sourced<uint64_t>{kDefaultPids, builtin};
  if (host.inotify_instances > 0) {
    p.limits.inotify_instances = Sourced<uint64_t>{half(host.inotify_instances, 1024),
                                                   {"built-in: half the caller's per-user limit"}};
  }
  if (host.inotify_watches > 0) {
    p.limits.inotify_watches = Sourced<uint64_t>{half(host.inotify_watches, uint64_t{1} << 20),
                                                 {"built-in: half the caller's per-user limit"}};
  }
}

uint64_t default_inodes(uint64_t size) {
  return size == kUnlimited ? kUnlimited : std::max<uint64_t>(size / 4096, 1024);
}

}  // namespace agentbox::config
