// The built-in resource defaults: what a box may take of the host when nothing else is said.
//
// A fork bomb, a memory hog, a tmpfs filler or an inotify drain inside the box must leave the
// host answering, while claude/codex/npm/cargo builds never notice the limits (docs/CONFINEMENT.md,
// "Default limits", gives the reasoning for each value). Every one is overridable in config and
// flags, "unlimited" included.
#pragma once

#include <cstdint>

#include "agentbox/config/model.hpp"

namespace agentbox::config {

// What the defaults are derived from, read once from the host (0: not known).
struct HostFacts {
  uint64_t mem_total = 0;          // /proc/meminfo MemTotal, bytes
  uint64_t inotify_instances = 0;  // /proc/sys/user/max_inotify_instances (the caller's userns)
  uint64_t inotify_watches = 0;    // /proc/sys/user/max_inotify_watches
};

inline constexpr uint64_t kDefaultPids = 4096;

[[nodiscard]] HostFacts read_host_facts();

// Sets memory (half the RAM), pids, and the inotify limits (half of the caller's per-user
// limits) with origin "built-in"; a fact that is 0 leaves its limit unset.
void apply_resource_defaults(Policy& p, const HostFacts& host);

// The inode cap of a tmpfs of `size` bytes unless one was set: one inode per 4 KiB; none for
// an unlimited size.
[[nodiscard]] uint64_t default_inodes(uint64_t size);

}  // namespace agentbox::config
