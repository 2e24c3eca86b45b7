// The session's resource limits: session cgroup or rlimits, and what is said about them.
#include "agentbox/app/session_limits.hpp"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <string_view>
#include <vector>

#include "agentbox/base/log.hpp"
#include "agentbox/config/units.hpp"

namespace agentbox::app {

namespace sb = sandbox;

namespace {

bool built_in(const config::Origin& o) {
  return std::string_view(o.source).rfind("built-in", 0) == 0;
}

// Says, once, what holds without a cgroup. Explicit limits that do not hold at all are warned
// about even with -q; the built-in defaults get one line (not with -q), since every start of an
// unprivileged user without a delegated cgroup would otherwise repeat a warning.
void say_without_cgroup(const config::Limits& in, SessionLimits& out) {
  const bool root = ::geteuid() == 0;
  std::vector<std::string> weaker;
  if (out.rlimits.processes) {
    weaker.push_back(
        root ? fmt::format("processes NOT capped (pids {}: RLIMIT_NPROC does not bind "
                           "root)",
                           *out.rlimits.processes)
             : fmt::format("processes capped per box by RLIMIT_NPROC {}", *out.rlimits.processes));
  }
  if (out.rlimits.data) {
    weaker.push_back(fmt::format("memory capped per process only (RLIMIT_DATA {})",
                                 config::format_size(*out.rlimits.data)));
  } else if (out.rlimits.address_space) {
    weaker.push_back(fmt::format("memory capped per process only (RLIMIT_AS {})",
                                 config::format_size(*out.rlimits.address_space)));
  }
  weaker.emplace_back(in.cpu_background.value
                          ? "CPU bounded by nice 10 only (processes and their autogroup; a "
                            "process that calls setsid() leaves the autogroup)"
                          : "no CPU share of its own (cpu_priority normal)");
  out.start_note = fmt::format("no cgroup for this box ({}): {}; `agentbox doctor` explains",
                               out.no_cgroup_why, fmt::join(weaker, ", "));
  if (out.cpus) {
    fmt::print(stderr,
               "agentbox: warning: --cpus {} (from {}) is NOT enforced: only a cgroup can limit "
               "CPU use and none can be made here ({}); `agentbox doctor` explains\n",
               *out.cpus, in.cpus->origin.describe(), out.no_cgroup_why);
  }
  if (out.rlimits.processes && root && !built_in(in.pids->origin)) {
    fmt::print(stderr,
               "agentbox: warning: --pids {} (from {}) is NOT enforced: without a cgroup it is "
               "RLIMIT_NPROC, which the kernel does not apply to root\n",
               *out.rlimits.processes, in.pids->origin.describe());
  }
}

}  // namespace

SessionLimits plan_session_limits(const std::string& session_id, const config::Limits& limits) {
  SessionLimits out;
  sb::CgroupLimits cl{.memory_bytes = config::imposed(limits.memory_bytes),
                      .pids = config::imposed(limits.pids),
                      .background = limits.cpu_background.value};
  if (limits.cpus) {
    out.cpus = cl.cpus = limits.cpus->value;
  }
  // Always tried, even with every limit lifted: a cgroup of its own also gives the box one CPU
  // share (the scheduler's group), so a fork bomb competes with the host as one task, not as
  // thousands.
  auto cg = sb::SessionCgroup::create(sb::session_cgroup_name(session_id), cl);
  if (cg) {
    out.cgroup.emplace(std::move(*cg));
    base::log::debug("limits: session cgroup ({}): memory {}, pids {}{}",
                     out.cgroup->version() == sb::CgroupVersion::kV2 ? "v2" : "v1",
                     cl.memory_bytes ? config::format_size(*cl.memory_bytes) : "unlimited",
                     cl.pids ? fmt::format("{}", *cl.pids) : "unlimited",
                     out.cgroup->limits_cpu() ? ", its own CPU group" : "");
  } else {
    out.no_cgroup_why = cg.error().message();
  }
  out.rlimits = sb::rlimits_for(std::nullopt, cl.pids, config::imposed(limits.file_size_bytes),
                                config::imposed(limits.nofile), out.cgroup.has_value());
  if (limits.cpu_background.value) {
    out.rlimits.nice = sb::kBackgroundNice;
    out.autogroup_nice = sb::kBackgroundNice;
  }
  if (!out.cgroup && cl.memory_bytes) {
    (built_in(limits.memory_bytes->origin) ? out.rlimits.data : out.rlimits.address_space) =
        cl.memory_bytes;
  }
  if (!out.cgroup && (cl.memory_bytes || cl.pids || cl.cpus)) {
    say_without_cgroup(limits, out);
  }
  return out;
}

}  // namespace agentbox::app
