// Which limit the box reached when no cgroup counts it: evidence the supervisor reads itself.
//
// With rlimits the kernel records nothing when a limit refuses something (fork gets EAGAIN,
// mmap ENOMEM, a tmpfs write ENOSPC, and nobody outside is told). What the supervisor CAN read:
//   - the box's tasks, walked from init through /proc/<pid>/task/<tid>/children: their number
//     (RLIMIT_NPROC counts every task of the box's uid in its user namespace, threads and zombies
//     included, init too) and each process's VmPeak (the kernel's own high-water mark of the
//     address space, which RLIMIT_AS caps). Sampled every kSampleInterval while the box runs: a
//     process that peaks and exits between two samples is not seen.
//   - the HOME and /tmp tmpfs of the box, opened once through /proc/<init>/root (the open fds
//     keep them readable after the box is gone): full (no free block or inode) at a sample or at
//     the end. A filler that deletes its file before the next sample is not seen.
//   - init's ExitReport: processes it reaped that died of SIGXFSZ (RLIMIT_FSIZE).
// Every claim it makes is a fact it read ("32 tasks at once" with RLIMIT_NPROC 32 means the next
// fork was refused); when it saw nothing it claims nothing, so a limit hit unseen goes unsaid.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agentbox/base/unique_fd.hpp"
#include "agentbox/sandbox/launcher.hpp"
#include "agentbox/sandbox/limits.hpp"

namespace agentbox::sandbox {

inline constexpr std::chrono::milliseconds kSampleInterval{100};
// RLIMIT_AS is called reached when a process's VmPeak came this close to it: a failed mmap
// leaves no trace, and the request that failed was at least this big in the common case (glibc
// serves allocations >= 128 KiB with mmap; the attack suite's balloon asks for 1 MiB).
inline constexpr uint64_t kAddressSpaceSlack = 2u << 20;

struct TmpfsToWatch {
  std::string what;      // "HOME", "/tmp"
  std::string box_path;  // where it is mounted in the box
  std::string setting;   // "sandbox.home_size"
};

struct LimitWatchSpec {
  pid_t init = -1;                        // the box's init, in the supervisor's pid namespace
  std::optional<uint64_t> nproc;          // RLIMIT_NPROC the program runs under (no cgroup)
  std::optional<uint64_t> address_space;  // RLIMIT_AS
  std::optional<uint64_t> file_size;      // RLIMIT_FSIZE
  std::vector<TmpfsToWatch> tmpfs;
};

// One limit reached, for the summary ("the box reached its <phrase>") and the audit log.
struct LimitHit {
  std::string key;     // "pids", "memory", "file_size", "home_size", "tmp_size", "cpus"
  std::string phrase;  // "process limit (RLIMIT_NPROC 32: 32 tasks at once)"
};

class LimitWatch {
 public:
  // Opens what it will read. Never fails: what cannot be opened is not watched (debug log).
  static LimitWatch start(const LimitWatchSpec& spec);
  LimitWatch() = default;

  // Walks the box's tasks (only when an rlimit on tasks or memory is set) and statfs's the tmpfs.
  void sample() noexcept;
  // The last tmpfs look (the box is gone, the fds still show its tmpfs), then what was reached.
  [[nodiscard]] std::vector<LimitHit> finish(const std::optional<ExitReport>& report);

  [[nodiscard]] uint64_t max_tasks() const { return max_tasks_; }
  [[nodiscard]] uint64_t max_vm_peak() const { return max_vm_peak_; }
  [[nodiscard]] bool walks_tasks() const { return spec_.nproc || spec_.address_space; }

 private:
  struct Fs {
    TmpfsToWatch what;
    base::UniqueFd fd;
    uint64_t size = 0;
    bool full = false;
  };
  void look_at_tmpfs() noexcept;
  LimitWatchSpec spec_;
  std::vector<Fs> fs_;
  uint64_t max_tasks_ = 0;
  uint64_t max_vm_peak_ = 0;  // bytes, processes other than init
};

// "8 MiB", "63.4 MiB", "2 GiB".
[[nodiscard]] std::string human_bytes(uint64_t bytes);

}  // namespace agentbox::sandbox
