// Limits: rlimits for the child, and the session cgroup (v2 delegated subtree, v1 for root).
#include "agentbox/sandbox/limits.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <string_view>
#include <utility>

#include "agentbox/base/sys.hpp"

namespace agentbox::sandbox {
namespace {

using base::Error;
using base::Result;
using base::Status;

int set_one(int resource, rlim_t value) noexcept {
  rlimit cur{};
  if (getrlimit(resource, &cur) != 0) {
    return errno;
  }
  // Lowering never needs a privilege; raising past the hard limit would (CAP_SYS_RESOURCE).
  rlim_t v = std::min(value, cur.rlim_max);
  rlimit next{.rlim_cur = v, .rlim_max = v};
  return setrlimit(resource, &next) == 0 ? 0 : errno;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(sep, pos);
    if (end == std::string::npos) {
      end = s.size();
    }
    out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool contains_word(const std::string& list, const std::string& word, char sep = ' ') {
  for (const auto& w : split(list, sep)) {
    std::string t = w;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) {
      t.pop_back();
    }
    if (t == word) {
      return true;
    }
  }
  return false;
}

Status write_str(const std::string& path, const std::string& value) {
  base::UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    return Error::sys(errno, "open", path);
  }
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return Error::sys(errno, "write", path);
  }
  return base::ok();
}

// "key N" lines (memory.events, pids.events, memory.oom_control).
uint64_t keyed(const std::string& text, const std::string& key) {
  for (const auto& line : split(text, '\n')) {
    if (line.rfind(key + " ", 0) == 0) {
      return std::strtoull(line.c_str() + key.size() + 1, nullptr, 10);
    }
  }
  return 0;
}

struct Mount {
  std::string root;   // the cgroup path the mount shows at its top
  std::string point;  // where it is mounted
  std::string fstype;
  std::string superopts;
};

Result<std::vector<Mount>> cgroup_mounts(const std::string& mountinfo) {
  AGENTBOX_ASSIGN_OR_RETURN(std::string text, base::read_file(mountinfo, 1u << 20));
  std::vector<Mount> out;
  for (const auto& line : split(text, '\n')) {
    auto f = split(line, ' ');
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 4) {
      continue;
    }
    Mount m{.root = f[3], .point = f[4], .fstype = dash[1], .superopts = dash[3]};
    if (m.fstype == "cgroup2" || m.fstype == "cgroup") {
      out.push_back(std::move(m));
    }
  }
  return out;
}

// The directory of cgroup `path` under mount `m` (mountinfo shows octal escapes only for
// whitespace, which cgroup paths of ours never contain).
std::string dir_of(const Mount& m, const std::string& path) {
  std::string rel = path;
  if (m.root != "/" && rel.rfind(m.root, 0) == 0) {
    rel = rel.substr(m.root.size());
  }
  if (rel == "/") {
    rel.clear();
  }
  return m.point + rel;
}

std::string cpu_max(double cpus) {
  constexpr uint64_t kPeriod = 100000;
  auto quota = static_cast<uint64_t>(std::llround(cpus * kPeriod));
  return std::to_string(std::max<uint64_t>(quota, 1000)) + " " + std::to_string(kPeriod);
}

Result<std::vector<std::string>> create_v2(const std::string& name, const CgroupLimits& limits,
                                           const std::string& cgroup_text,
                                           const std::vector<Mount>& mounts) {
  std::string path;
  for (const auto& line : split(cgroup_text, '\n')) {
    if (line.rfind("0::", 0) == 0) {
      path = line.substr(3);
    }
  }
  auto m = std::find_if(mounts.begin(), mounts.end(),
                        [](const Mount& x) { return x.fstype == "cgroup2"; });
  if (path.empty() || m == mounts.end()) {
    return Error::msg("no cgroup v2 hierarchy");
  }
  std::string parent = dir_of(*m, path);
  std::string controllers = base::read_file(parent + "/cgroup.controllers").value_or("");
  for (const char* need : {"memory", "pids"}) {
    if (!contains_word(controllers, need)) {
      return Error::msg(std::string("the ") + need + " controller is not available in " + parent);
    }
  }
  std::string subtree = base::read_file(parent + "/cgroup.subtree_control").value_or("");
  if (!contains_word(subtree, "memory") || !contains_word(subtree, "pids")) {
    // Fails with EBUSY when `parent` holds processes (the no-internal-process rule).
    std::string enable = "+memory +pids";
    if (contains_word(controllers, "cpu")) {
      enable += " +cpu";
    }
    if (auto st = write_str(parent + "/cgroup.subtree_control", enable); !st) {
      return std::move(st).error().context("enabling controllers for children of " + parent);
    }
  }
  remove_stale_cgroups(parent);
  std::string dir = parent + "/" + name;
  if (mkdir(dir.c_str(), 0755) != 0) {
    return Error::sys(errno, "mkdir", dir);
  }
  std::vector<std::string> dirs{dir};
  auto fail = [&](Error e) {
    rmdir(dir.c_str());
    return e;
  };
  if (limits.memory_bytes) {
    if (auto st = write_str(dir + "/memory.max", std::to_string(*limits.memory_bytes)); !st) {
      return fail(std::move(st).error());
    }
    (void)write_str(dir + "/memory.swap.max", "0");  // no swap escape; absent without swap
  }
  if (limits.pids) {
    if (auto st = write_str(dir + "/pids.max", std::to_string(*limits.pids)); !st) {
      return fail(std::move(st).error());
    }
  }
  if (limits.cpus) {
    if (auto st = write_str(dir + "/cpu.max", cpu_max(*limits.cpus)); !st) {
      return fail(std::move(st).error());
    }
  }
  // Absent when the parent does not pass the cpu controller down: the box then has no CPU group
  // of its own, and its processes' nice and autogroup are what bound it.
  if (limits.background && ::access((dir + "/cpu.weight.nice").c_str(), F_OK) == 0) {
    if (auto st = write_str(dir + "/cpu.weight.nice", std::to_string(kBackgroundNice)); !st) {
      return fail(std::move(st).error());
    }
  }
  return dirs;
}

Result<std::vector<std::string>> create_v1(const std::string& name, const CgroupLimits& limits,
                                           const std::string& cgroup_text,
                                           const std::vector<Mount>& mounts) {
  std::vector<std::string> dirs;
  auto undo = [&](Error e) {
    for (const auto& d : dirs) {
      rmdir(d.c_str());
    }
    return e;
  };
  for (const char* ctrl : {"memory", "pids", "cpu"}) {
    std::string path;
    for (const auto& line : split(cgroup_text, '\n')) {
      auto f = split(line, ':');
      if (f.size() >= 3 && contains_word(f[1], ctrl, ',')) {
        path = line.substr(f[0].size() + f[1].size() + 2);
      }
    }
    auto m = std::find_if(mounts.begin(), mounts.end(), [&](const Mount& x) {
      return x.fstype == "cgroup" && contains_word(x.superopts, ctrl, ',');
    });
    if (path.empty() || m == mounts.end()) {
      if (std::string(ctrl) == "cpu") {
        continue;  // optional
      }
      return undo(
          Error::msg(std::string("no cgroup v1 hierarchy with the ") + ctrl + " controller"));
    }
    remove_stale_cgroups(dir_of(*m, path));
    std::string dir = dir_of(*m, path) + "/" + name;
    if (mkdir(dir.c_str(), 0755) != 0) {
      return undo(Error::sys(errno, "mkdir", dir));
    }
    dirs.push_back(dir);
  }
  Status st = base::ok();
  if (limits.memory_bytes) {
    st = write_str(dirs[0] + "/memory.limit_in_bytes", std::to_string(*limits.memory_bytes));
    if (st) {  // memory+swap at the same value: no swap escape (absent without swap accounting)
      (void)write_str(dirs[0] + "/memory.memsw.limit_in_bytes",
                      std::to_string(*limits.memory_bytes));
    }
  }
  if (st && limits.pids) {
    st = write_str(dirs[1] + "/pids.max", std::to_string(*limits.pids));
  }
  if (st && limits.background && dirs.size() > 2) {
    st = write_str(dirs[2] + "/cpu.shares", std::to_string(kBackgroundWeight));
  }
  if (st && limits.cpus && dirs.size() > 2) {
    st = write_str(dirs[2] + "/cpu.cfs_period_us", "100000");
    if (st) {
      st = write_str(dirs[2] + "/cpu.cfs_quota_us", split(cpu_max(*limits.cpus), ' ')[0]);
    }
  }
  if (!st) {
    return undo(std::move(st).error());
  }
  return dirs;
}

// The supervisor pid a session cgroup's name ends with (`...-p1234`), or 0.
pid_t owner_of(std::string_view name) {
  if (name.rfind("agentbox-", 0) != 0) {
    return 0;
  }
  size_t at = name.rfind("-p");
  if (at == std::string_view::npos || at + 2 >= name.size()) {
    return 0;
  }
  pid_t pid = 0;
  for (char ch : name.substr(at + 2)) {
    if (ch < '0' || ch > '9' || pid > 100'000'000) {
      return 0;
    }
    pid = pid * 10 + (ch - '0');
  }
  return pid;
}

}  // namespace

std::string session_cgroup_name(const std::string& session_id) {
  return "agentbox-" + session_id + "-p" + std::to_string(::getpid());
}

size_t remove_stale_cgroups(const std::string& parent) noexcept {
  size_t removed = 0;
  DIR* d = ::opendir(parent.c_str());
  if (d == nullptr) {
    return 0;
  }
  while (const dirent* e = ::readdir(d)) {
    pid_t owner = owner_of(e->d_name);
    // A live owner (or a recycled pid: then the cgroup waits for a later start) keeps it.
    if (owner <= 0 || e->d_type != DT_DIR || (::kill(owner, 0) == 0 || errno != ESRCH)) {
      continue;
    }
    // rmdir fails (EBUSY) while a process is in it: only empty ones go.
    if (::unlinkat(::dirfd(d), e->d_name, AT_REMOVEDIR) == 0) {
      ++removed;
    }
  }
  ::closedir(d);
  return removed;
}

Limits rlimits_for(std::optional<uint64_t> memory_bytes, std::optional<uint64_t> pids,
                   std::optional<uint64_t> file_size, std::optional<uint64_t> open_files,
                   bool have_cgroup) {
  Limits l{.file_size = file_size, .open_files = open_files};
  if (!have_cgroup) {
    l.address_space = memory_bytes;
    l.processes = pids;
  }
  return l;
}

int apply_rlimits(const Limits& limits) noexcept {
  const std::pair<int, const std::optional<uint64_t>*> table[] = {
      {RLIMIT_AS, &limits.address_space},
      {RLIMIT_DATA, &limits.data},
      {RLIMIT_NPROC, &limits.processes},
      {RLIMIT_FSIZE, &limits.file_size},
      {RLIMIT_NOFILE, &limits.open_files}};
  for (const auto& [resource, value] : table) {
    if (value->has_value()) {
      if (int err = set_one(resource, static_cast<rlim_t>(**value)); err != 0) {
        return err;
      }
    }
  }
  return set_one(RLIMIT_CORE, 0);
}

int apply_nice(const Limits& limits) noexcept {
  if (!limits.nice) {
    return 0;
  }
  // Only ever lower the priority: started from a shell niced past it (`nice -n 19 agentbox`, a
  // batch runner), lowering the nice would need CAP_SYS_NICE, and the user asked for less CPU.
  errno = 0;
  const int now = ::getpriority(PRIO_PROCESS, 0);
  if (errno != 0) {
    return errno;
  }
  if (now < *limits.nice && ::setpriority(PRIO_PROCESS, 0, *limits.nice) != 0) {
    return errno;
  }
  return set_one(RLIMIT_NICE, 0);
}

int set_autogroup_nice(pid_t pid, int nice) noexcept {
  if (pid <= 0 || nice < 0 || nice > 19 || ::getsid(pid) != pid) {
    return ESRCH;
  }
  // "/proc/<pid>/autogroup" and "<nice>", without allocating.
  char path[40] = "/proc/";
  char digits[12];
  int n = 0;
  for (auto v = static_cast<unsigned>(pid); v != 0; v /= 10) {
    digits[n++] = static_cast<char>('0' + v % 10);
  }
  size_t at = 6;
  while (n > 0) {
    path[at++] = digits[--n];
  }
  std::memcpy(path + at, "/autogroup", sizeof "/autogroup");
  char value[3] = {static_cast<char>(nice >= 10 ? '1' : '0' + nice),
                   static_cast<char>('0' + nice % 10), 0};
  const char* text = nice >= 10 ? value : value + 1;
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno;
  }
  size_t len = nice >= 10 ? 2 : 1;
  int err = ::write(fd, text, len) == static_cast<ssize_t>(len) ? 0 : errno;
  ::close(fd);
  return err;
}

Result<SessionCgroup> SessionCgroup::create(const std::string& name, const CgroupLimits& limits,
                                            const CgroupOptions& options) {
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') {
    return Error::msg("bad cgroup name `" + name + "`");
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string cg, base::read_file(options.proc_self_cgroup));
  AGENTBOX_ASSIGN_OR_RETURN(auto mounts, cgroup_mounts(options.mountinfo));
  Error why = Error::msg("cgroups disabled");
  if (options.allow_v2) {
    auto v2 = create_v2(name, limits, cg, mounts);
    if (v2) {
      return SessionCgroup(CgroupVersion::kV2, std::move(v2).value());
    }
    why = std::move(v2).error();
  }
  if (options.allow_v1 && geteuid() == 0) {
    auto v1 = create_v1(name, limits, cg, mounts);
    if (v1) {
      return SessionCgroup(CgroupVersion::kV1, std::move(v1).value());
    }
    why = std::move(v1).error().context(why.message());
  }
  return std::move(why).context("creating the session cgroup");
}

SessionCgroup::SessionCgroup(SessionCgroup&& other) noexcept
    : version_(other.version_), dirs_(std::exchange(other.dirs_, {})) {}

SessionCgroup::~SessionCgroup() {
  destroy();
}

Status SessionCgroup::add(pid_t pid) const {
  for (const auto& d : dirs_) {
    AGENTBOX_TRY(write_str(d + "/cgroup.procs", std::to_string(pid)));
  }
  return base::ok();
}

Result<std::vector<base::UniqueFd>> SessionCgroup::open_procs() const {
  std::vector<base::UniqueFd> fds;
  for (const auto& d : dirs_) {
    std::string path = d + "/cgroup.procs";
    base::UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) {
      return Error::sys(errno, "open", path);
    }
    fds.push_back(std::move(fd));
  }
  return fds;
}

int join_cgroup(const int* procs_fds, size_t count) noexcept {
  for (size_t i = 0; i < count; ++i) {
    if (write(procs_fds[i], "0", 1) != 1) {
      return errno;
    }
  }
  return 0;
}

Result<CgroupEvents> SessionCgroup::events() const {
  CgroupEvents ev;
  if (dirs_.empty()) {
    return ev;
  }
  if (version_ == CgroupVersion::kV2) {
    AGENTBOX_ASSIGN_OR_RETURN(std::string mem, base::read_file(dirs_[0] + "/memory.events"));
    AGENTBOX_ASSIGN_OR_RETURN(std::string pids, base::read_file(dirs_[0] + "/pids.events"));
    ev.oom_kills = keyed(mem, "oom_kill");
    ev.memory_max = keyed(mem, "max");
    ev.pids_max = keyed(pids, "max");
    // Absent when the cpu controller is not enabled for our subtree.
    ev.cpu_throttled = keyed(base::read_file(dirs_[0] + "/cpu.stat").value_or(""), "nr_throttled");
    return ev;
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string oom, base::read_file(dirs_[0] + "/memory.oom_control"));
  AGENTBOX_ASSIGN_OR_RETURN(std::string failcnt, base::read_file(dirs_[0] + "/memory.failcnt"));
  AGENTBOX_ASSIGN_OR_RETURN(std::string pids, base::read_file(dirs_[1] + "/pids.events"));
  ev.oom_kills = keyed(oom, "oom_kill");
  ev.memory_max = std::strtoull(failcnt.c_str(), nullptr, 10);
  ev.pids_max = keyed(pids, "max");
  if (dirs_.size() > 2) {
    ev.cpu_throttled = keyed(base::read_file(dirs_[2] + "/cpu.stat").value_or(""), "nr_throttled");
  }
  return ev;
}

void SessionCgroup::destroy() noexcept {
  if (dirs_.empty()) {
    return;
  }
  try {
    // v2 >= 5.14: cgroup.kill SIGKILLs the whole subtree atomically; else kill what is listed.
    if (version_ != CgroupVersion::kV2 || !write_str(dirs_[0] + "/cgroup.kill", "1")) {
      for (int round = 0; round < 10; ++round) {
        for (const auto& d : dirs_) {
          std::string procs = base::read_file(d + "/cgroup.procs").value_or("");
          for (const auto& p : split(procs, '\n')) {
            if (!p.empty()) {
              kill(static_cast<pid_t>(std::strtol(p.c_str(), nullptr, 10)), SIGKILL);
            }
          }
        }
      }
    }
    // rmdir fails with EBUSY until the killed tasks are gone: retry for up to a second.
    for (const auto& d : dirs_) {
      for (int i = 0; i < 100 && rmdir(d.c_str()) != 0 && errno == EBUSY; ++i) {
        timespec ts{.tv_sec = 0, .tv_nsec = 10'000'000};
        nanosleep(&ts, nullptr);
      }
    }
  } catch (...) {  // NOLINT(bugprone-empty-catch): best effort on the way out
  }
  dirs_.clear();
}

}  // namespace agentbox::sandbox
