// LimitWatch: which rlimit or tmpfs size the box reached, from what the supervisor can read.
#include "agentbox/sandbox/limit_watch.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "agentbox/base/log.hpp"

namespace agentbox::sandbox {
namespace {

// Bounds one walk: a box with more processes than this is counted up to here (enough to see any
// process limit a user would set; a fork bomb without one is the cgroup's or the host's problem).
constexpr size_t kMaxWalk = 16384;

// Reads a small /proc file into `out` (at most `cap` bytes). false when it is gone.
bool read_proc(const std::string& path, std::string& out, size_t cap) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return false;
  }
  out.clear();
  char buf[4096];
  while (out.size() < cap) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n == 0 || !out.empty();
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return true;
}

// "Key:\t123 kB" -> 123 (0 when absent).
uint64_t status_field(const std::string& status, const char* key) {
  size_t pos = status.find(key);
  if (pos == std::string::npos || (pos != 0 && status[pos - 1] != '\n')) {
    return 0;
  }
  return std::strtoull(status.c_str() + pos + std::strlen(key), nullptr, 10);
}

void add_children(const std::string& text, std::vector<pid_t>& queue) {
  const char* p = text.c_str();
  while (*p != '\0') {
    char* end = nullptr;
    long v = std::strtol(p, &end, 10);
    if (end == p) {
      break;
    }
    if (v > 0) {
      queue.push_back(static_cast<pid_t>(v));
    }
    p = end;
  }
}

}  // namespace

std::string human_bytes(uint64_t bytes) {
  constexpr uint64_t kMiB = 1u << 20;
  if (bytes >= (kMiB << 10) && bytes % (kMiB << 10) == 0) {
    return fmt::format("{} GiB", bytes / (kMiB << 10));
  }
  if (bytes % kMiB == 0) {
    return fmt::format("{} MiB", bytes / kMiB);
  }
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / static_cast<double>(kMiB));
}

LimitWatch LimitWatch::start(const LimitWatchSpec& spec) {
  LimitWatch w;
  w.spec_ = spec;
  if (!w.spec_.file_size) {
    // Not set by agentbox, but maybe inherited from the caller's shell (`ulimit -f`).
    rlimit r{};
    if (::getrlimit(RLIMIT_FSIZE, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
      w.spec_.file_size = r.rlim_cur;
    }
  }
  if (spec.tmpfs.empty() || spec.init <= 0) {
    return w;
  }
  // /proc/<init>/root is the box's root (init pivoted before the program ran); paths below it
  // are resolved as inside the box, symlinks refused: the box cannot send us elsewhere. init is
  // not dumpable (a copy of the supervisor, secrets included), so an unprivileged supervisor may
  // not open its root: the program's (init's child, dumpable again after execve) is the same.
  std::string root_path = fmt::format("/proc/{}/root", spec.init);
  base::UniqueFd root(::open(root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  std::string children;
  if (!root &&
      read_proc(fmt::format("/proc/{}/task/{}/children", spec.init, spec.init), children, 4096)) {
    root_path = fmt::format("/proc/{}/root", std::strtol(children.c_str(), nullptr, 10));
    root = base::UniqueFd(::open(root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
  if (!root) {
    base::log::debug("limits: cannot open {}: {}", root_path, std::strerror(errno));
    return w;
  }
  for (const auto& t : spec.tmpfs) {
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    base::UniqueFd fd(
        static_cast<int>(::syscall(SYS_openat2, root.get(), t.box_path.c_str(), &how, sizeof how)));
    struct statfs st {};
    if (!fd || ::fstatfs(fd.get(), &st) != 0 || st.f_type != TMPFS_MAGIC) {
      base::log::debug("limits: the box's {} ({}) is not watched", t.what, t.box_path);
      continue;
    }
    w.fs_.push_back(Fs{
        .what = t, .fd = std::move(fd), .size = static_cast<uint64_t>(st.f_blocks) * st.f_bsize});
  }
  return w;
}

void LimitWatch::look_at_tmpfs() noexcept {
  for (auto& f : fs_) {
    struct statfs st {};
    if (::fstatfs(f.fd.get(), &st) == 0 && (st.f_bfree == 0 || st.f_ffree == 0)) {
      f.full = true;
    }
  }
}

void LimitWatch::sample() noexcept {
  look_at_tmpfs();
  if (!walks_tasks() || spec_.init <= 0) {
    return;
  }
  try {
    std::vector<pid_t> queue{spec_.init};
    uint64_t tasks = 0;
    std::string text;
    for (size_t i = 0; i < queue.size() && i < kMaxWalk; ++i) {
      pid_t pid = queue[i];
      if (!read_proc(fmt::format("/proc/{}/status", pid), text, 16384)) {
        continue;  // exited (and reaped) since its parent listed it
      }
      uint64_t threads = status_field(text, "Threads:");
      tasks += threads > 0 ? threads : 1;
      if (pid != spec_.init) {  // init's address space is a copy of ours, not the box's
        max_vm_peak_ = std::max(max_vm_peak_, status_field(text, "VmPeak:") << 10);
      }
      // Each thread lists the children it forked.
      std::string task_dir = fmt::format("/proc/{}/task", pid);
      DIR* d = ::opendir(task_dir.c_str());
      if (d == nullptr) {
        continue;
      }
      while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.' &&
            read_proc(fmt::format("{}/{}/children", task_dir, e->d_name), text, 1u << 20)) {
          add_children(text, queue);
        }
      }
      ::closedir(d);
    }
    max_tasks_ = std::max(max_tasks_, tasks);
  } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory: this sample is lost, no more
  }
}

std::vector<LimitHit> LimitWatch::finish(const std::optional<ExitReport>& report) {
  look_at_tmpfs();
  std::vector<LimitHit> hits;
  if (spec_.nproc && max_tasks_ >= *spec_.nproc) {
    hits.push_back({"pids", fmt::format("process limit (RLIMIT_NPROC {}: {} tasks at once)",
                                        *spec_.nproc, max_tasks_)});
  }
  if (spec_.address_space && max_vm_peak_ + kAddressSpaceSlack >= *spec_.address_space) {
    hits.push_back(
        {"memory", fmt::format("memory limit (RLIMIT_AS {}: a process's address space "
                               "peaked at {})",
                               human_bytes(*spec_.address_space), human_bytes(max_vm_peak_))});
  }
  if (spec_.file_size && report && report->died_of_sigxfsz > 0) {
    hits.push_back(
        {"file_size", fmt::format("file size limit (RLIMIT_FSIZE {}: {} process(es) "
                                  "killed by SIGXFSZ)",
                                  human_bytes(*spec_.file_size), report->died_of_sigxfsz)});
  }
  for (const auto& f : fs_) {
    if (f.full) {
      std::string key = f.what.setting.substr(f.what.setting.find('.') + 1);
      hits.push_back({key, fmt::format("{} size limit ({} {} tmpfs: full, writes fail with ENOSPC)",
                                       f.what.what, f.what.setting, human_bytes(f.size))});
    }
  }
  fs_.clear();  // the box's tmpfs can go now
  return hits;
}

}  // namespace agentbox::sandbox
