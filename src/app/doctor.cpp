// Doctor: probe each kernel facility the box depends on, the way `run` will use it.
//
// Each probe that needs a namespace runs in a forked child so the caller's process is never
// changed; results come back as the child's exit status. Sysctl files are read only to explain
// a failure (the probe itself is the truth: a sysctl may be absent on one distribution and
// meaningful on another).
#include "agentbox/app/doctor.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <linux/landlock.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>

#include "agentbox/base/sys.hpp"

namespace agentbox::app {

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

// The sysctl's value, or "" when the file does not exist on this kernel.
std::string sysctl(const char* path) {
  auto r = base::read_file(path, 256);
  return r ? trim(*r) : std::string();
}

// True when this process runs under a seccomp filter (an agentbox box, a container runtime):
// "Seccomp: 2" in /proc/self/status (proc(5)).
bool under_seccomp_filter() {
  auto r = base::read_file("/proc/self/status", 1u << 16);
  return r && r->find("\nSeccomp:\t2\n") != std::string::npos;
}

// Runs `body` in a forked child; returns 0 on success or the errno the child exited with.
template <class F>
int in_child(F body) {
  pid_t pid = fork();
  if (pid < 0) {
    return errno;
  }
  if (pid == 0) {
    _exit(body());
  }
  int status = 0;
  if (base::retry_eintr([&] { return waitpid(pid, &status, 0); }) < 0) {
    return errno;
  }
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  return EINTR;
}

bool write_proc(const char* path, std::string_view data) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  close(fd);
  return ok;
}

// Child body: become root of a new user namespace with our own ids mapped, as run does.
int enter_userns(int extra_flags) {
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | extra_flags) != 0) {
    return errno;
  }
  if (!write_proc("/proc/self/setgroups", "deny") ||
      !write_proc("/proc/self/uid_map", fmt::format("0 {} 1", uid)) ||
      !write_proc("/proc/self/gid_map", fmt::format("0 {} 1", gid))) {
    return errno != 0 ? errno : EPERM;
  }
  return 0;
}

Check check_userns() {
  Check c{.name = "user namespaces"};
  ContainerEngine engine = container_engine();
  int err = in_child([] { return enter_userns(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET); });
  if (err != 0) {
    c.state = CheckState::kFail;
    c.detail = fmt::format("cannot create a user namespace: {} ({})", std::strerror(err),
                           base::errno_name(err));
    c.fix =
        engine != ContainerEngine::kNone
            ? container_fix(engine, under_seccomp_filter() ? Facility::kSeccomp : Facility::kUserns)
            : userns_hint(err);
    return c;
  }
  // The box also gets its own hostname and IPC namespace: container runtimes' default seccomp
  // profiles allow the namespaces yet refuse sethostname without CAP_SYS_ADMIN in the caller's.
  err = in_child([] {
    if (int e = enter_userns(CLONE_NEWUTS | CLONE_NEWIPC); e != 0) {
      return e;
    }
    return ::sethostname("agentbox", 8) == 0 ? 0 : errno;
  });
  if (err != 0) {
    c.state = CheckState::kFail;
    c.detail = fmt::format("namespaces can be created, but not the box's hostname: {} ({})",
                           std::strerror(err), base::errno_name(err));
    c.fix = engine != ContainerEngine::kNone ? container_fix(engine, Facility::kSeccomp)
                                             : userns_hint(err);
    return c;
  }
  c.detail = "unprivileged user, mount, pid, net, UTS and IPC namespaces can be created";
  return c;
}

// The security module's label of this process ("unconfined", "docker-default (enforce)").
std::string lsm_label() {
  auto r = base::read_file("/proc/self/attr/apparmor/current", 256);
  if (!r) {
    r = base::read_file("/proc/self/attr/current", 256);
  }
  return r ? trim(*r) : std::string();
}

// The box mounts its own /proc and sets its user namespace's limits in /proc/sys/user; a
// container runtime's masked /proc (read-only /proc/sys, files bound over /proc/kcore...) makes
// the kernel refuse both.
Check check_proc() {
  Check c{.name = "the box's own /proc"};
  int err = in_child([] {
    if (int e = enter_userns(CLONE_NEWNS | CLONE_NEWPID); e != 0) {
      return e;
    }
    int fd = ::open("/proc/sys/user/max_inotify_instances", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      return errno == EROFS ? EROFS : 0;  // other errors: the launcher's own check decides
    }
    ::close(fd);
    if (mount("none", "/tmp", "tmpfs", 0, nullptr) != 0) {
      return errno == EACCES ? EACCES : ENOTDIR;  // told apart from proc's EPERM below
    }
    if (mkdir("/tmp/p", 0700) != 0) {
      return errno;
    }
    pid_t pid = fork();  // the first child is the new pid namespace's init, as the box's is
    if (pid == 0) {
      _exit(mount("proc", "/tmp/p", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0
                ? 0
                : errno);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
      return errno;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
  });
  if (err == 0) {
    c.detail = "a new /proc can be mounted and the namespace's limits set";
    return c;
  }
  ContainerEngine engine = container_engine();
  c.state = CheckState::kFail;
  if (err == EACCES || err == ENOTDIR) {
    std::string label = lsm_label();
    c.detail = fmt::format("mounts are refused in a new user namespace (security label: {})",
                           label.empty() ? "none" : label);
    c.fix = engine != ContainerEngine::kNone
                ? container_fix(engine, Facility::kAppArmor)
                : "a security module refuses mounts: install agentbox's AppArmor profile";
    return c;
  }
  c.detail = err == EROFS ? "/proc/sys is read-only here (a masked /proc)"
                          : fmt::format("a new /proc cannot be mounted: {} ({})",
                                        std::strerror(err), base::errno_name(err));
  c.fix = engine != ContainerEngine::kNone
              ? container_fix(engine, Facility::kProc)
              : "something has mounted over /proc (or /proc/sys read-only); run agentbox where "
                "/proc is the kernel's own";
  return c;
}

// Informational: named only inside a container, so each fix below reads in its terms.
std::optional<Check> check_container() {
  ContainerEngine engine = container_engine();
  if (engine == ContainerEngine::kNone) {
    return std::nullopt;
  }
  return Check{.name = "container",
               .detail = fmt::format("running inside {}: each fix names that engine's setting "
                                     "(deploy/README.md has tested manifests)",
                                     engine_name(engine))};
}

Check check_landlock() {
  Check c{.name = "landlock"};
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi >= 6) {
    c.detail = fmt::format("ABI {}: filesystem rules and signal/abstract-socket scoping", abi);
  } else if (abi >= 1) {
    c.state = CheckState::kWarn;
    c.detail = fmt::format("ABI {}: filesystem rules enforced; no IPC scoping before ABI 6", abi);
    c.fix = "a kernel >= 6.12 enforces every Landlock rule agentbox knows";
  } else {
    c.state = CheckState::kWarn;
    c.detail = fmt::format("not available: {}; the mount namespace still confines the box",
                           std::strerror(errno));
    c.fix = errno == EOPNOTSUPP ? "boot with `lsm=landlock,...` on the kernel command line"
                                : "use a kernel >= 5.13 built with CONFIG_SECURITY_LANDLOCK=y";
  }
  return c;
}

Check check_seccomp() {
  Check c{.name = "seccomp"};
  std::string actions = sysctl("/proc/sys/kernel/seccomp/actions_avail");
  if (prctl(PR_GET_SECCOMP) < 0 && errno == EINVAL) {
    c.state = CheckState::kFail;
    c.detail = "the kernel has no seccomp support";
    c.fix = "use a kernel built with CONFIG_SECCOMP_FILTER=y";
  } else if (actions.find("user_notif") == std::string::npos) {
    c.state = CheckState::kWarn;
    c.detail = fmt::format("filters work; no user notification (actions: {})", actions);
    c.fix = "a kernel >= 5.5 lets agentbox log each denied system call";
  } else {
    c.detail = "filters and user notification available";
  }
  return c;
}

Check check_tun() {
  Check c{.name = "/dev/net/tun"};
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    close(fd);
    c.detail = "present and openable (the box's network link)";
    return c;
  }
  int err = errno;
  c.state = CheckState::kFail;
  c.detail = fmt::format("cannot open: {} ({}); only `--network none` works without it",
                         std::strerror(err), base::errno_name(err));
  ContainerEngine engine = container_engine();
  c.fix = engine != ContainerEngine::kNone ? container_fix(engine, Facility::kTun) : tun_fix(err);
  return c;
}

Check check_overlay() {
  Check c{.name = "overlayfs in user namespaces"};
  int err = in_child([] {
    if (int e = enter_userns(CLONE_NEWNS); e != 0) {
      return e;
    }
    if (mount("none", "/tmp", "tmpfs", 0, nullptr) != 0) {
      return errno;
    }
    for (const char* d : {"/tmp/l", "/tmp/u", "/tmp/w", "/tmp/m"}) {
      if (mkdir(d, 0700) != 0) {
        return errno;
      }
    }
    if (mount("overlay", "/tmp/m", "overlay", 0,
              "lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w") != 0) {
      return errno;
    }
    return 0;
  });
  if (err == 0) {
    c.detail = "can be mounted unprivileged";
  } else {
    c.state = CheckState::kWarn;
    c.detail = fmt::format("not mountable: {} ({}); not needed by the default box",
                           std::strerror(err), base::errno_name(err));
    c.fix = "a kernel >= 5.11 mounts overlayfs in user namespaces";
  }
  return c;
}

Check check_cgroup() {
  Check c{.name = "cgroup v2 delegation"};
  struct statfs st {};
  bool unified = statfs("/sys/fs/cgroup", &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
  std::string own;
  if (auto r = base::read_file("/proc/self/cgroup", 4096)) {
    for (size_t pos = 0; pos < r->size();) {
      size_t end = r->find('\n', pos);
      std::string line = r->substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      if (line.rfind("0::", 0) == 0) {
        own = line.substr(3);
      }
      pos = end == std::string::npos ? r->size() : end + 1;
    }
  }
  std::string dir = "/sys/fs/cgroup" + own;
  std::string controllers = sysctl((dir + "/cgroup.controllers").c_str());
  bool writable = access((dir + "/cgroup.procs").c_str(), W_OK) == 0;
  if (unified && writable && controllers.find("memory") != std::string::npos &&
      controllers.find("pids") != std::string::npos) {
    c.detail = fmt::format("{} is delegated (controllers: {})", dir, controllers);
    return c;
  }
  bool v1 = geteuid() == 0 && access("/sys/fs/cgroup/memory/cgroup.procs", W_OK) == 0 &&
            access("/sys/fs/cgroup/pids/cgroup.procs", W_OK) == 0;
  if (v1) {
    c.detail = "root: the cgroup v1 memory, pids (and cpu) hierarchies are used";
    return c;
  }
  c.state = CheckState::kWarn;
  c.detail = unified ? fmt::format("{} is not writable with memory and pids controllers", dir)
                     : "no unified cgroup v2 hierarchy at /sys/fs/cgroup";
  // What each limit becomes without a cgroup (docs/CONFINEMENT.md, "Limits").
  c.detail +=
      "; memory and pids fall back to rlimits (the default memory limit to RLIMIT_DATA, an "
      "explicit --memory to RLIMIT_AS: per process, weaker; RLIMIT_NPROC: per box, but it does "
      "not bind root), tmpfs pages are charged to nothing but their own sizes, the box has no CPU "
      "share of its own, and --cpus is NOT enforced: only a cgroup limits a CPU rate";
  if (container_engine() != ContainerEngine::kNone) {
    c.fix =
        "give the container a writable cgroup v2 subtree of its own (a cgroup v2 host and "
        "`--cgroupns=private`; a pod's resources bound the whole pod instead)";
  } else {
    c.fix = unified
                ? "run inside a systemd user session (`systemd-run --user --scope agentbox ...`)"
                : "boot with systemd.unified_cgroup_hierarchy=1";
  }
  return c;
}

}  // namespace

std::string tun_fix(int err) {
  if (ContainerEngine e = container_engine(); e != ContainerEngine::kNone) {
    return container_fix(e, Facility::kTun);
  }
  return err == ENOENT ? "sudo modprobe tun  (and add `tun` to /etc/modules-load.d/)"
                       : "make /dev/net/tun mode 0666 (the distribution default)";
}

std::string userns_hint(int err) {
  if (ContainerEngine e = container_engine(); e != ContainerEngine::kNone) {
    return container_fix(e, under_seccomp_filter() ? Facility::kSeccomp : Facility::kUserns);
  }
  if (sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1") {
    return "AppArmor restricts unprivileged user namespaces: install agentbox's AppArmor profile "
           "(packaging/apparmor/agentbox) or `sudo sysctl "
           "kernel.apparmor_restrict_unprivileged_userns=0`";
  }
  if (sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0") {
    return "`sudo sysctl kernel.unprivileged_userns_clone=1`";
  }
  if (sysctl("/proc/sys/user/max_user_namespaces") == "0") {
    return "`sudo sysctl user.max_user_namespaces=15000`";
  }
  if (err == ENOSPC) {
    return "the user namespace limit is reached: raise `user.max_user_namespaces`";
  }
  if (err == EPERM && under_seccomp_filter()) {
    return "a seccomp filter around this process (a container runtime's?) refuses new "
           "namespaces; run `agentbox doctor` outside it";
  }
  if (err == EPERM) {
    return "this process may not create user namespaces (a container or seccomp policy around "
           "agentbox forbids it); run `agentbox doctor` outside it";
  }
  return "run `agentbox doctor` for a diagnosis";
}

std::string nested_box_hint() {
  // Inside a box, pid 1 is the box's init: a fork of agentbox that never executes anything else,
  // so agentbox there is never pid 1 itself (it is in a container started as `... agentbox run`).
  if (getpid() == 1 || !under_seccomp_filter() || sysctl("/proc/1/comm") != "agentbox") {
    return "";
  }
  return "this is an agentbox box, and agentbox does not run inside agentbox: the outer box "
         "refuses new namespaces, and with `--allow-syscalls userns` (enough for bwrap and "
         "`unshare -Ur`) the inner box can set neither its limits in the outer box's read-only "
         "/proc/sys nor mount its own /proc";
}

std::string proc_fix() {
  ContainerEngine e = container_engine();
  return e != ContainerEngine::kNone
             ? container_fix(e, Facility::kProc)
             : "/proc/sys is read-only or /proc is masked here; run agentbox where /proc is the "
               "kernel's own";
}

std::string hostname_fix() {
  ContainerEngine e = container_engine();
  return e != ContainerEngine::kNone
             ? container_fix(e, Facility::kSeccomp)
             : "a seccomp filter around agentbox refuses sethostname in its own UTS namespace";
}

std::vector<Check> run_doctor() {
  std::vector<Check> checks;
  if (auto c = check_container()) {
    checks.push_back(std::move(*c));
  }
  for (auto* check : {check_userns, check_proc, check_landlock, check_seccomp, check_tun,
                      check_overlay, check_cgroup}) {
    checks.push_back(check());
  }
  return checks;
}

std::string render_checks(const std::vector<Check>& checks) {
  std::string out;
  for (const Check& c : checks) {
    std::string_view label;
    switch (c.state) {
      case CheckState::kOk:
        label = "ok";
        break;
      case CheckState::kWarn:
        label = "warn";
        break;
      case CheckState::kFail:
        label = "fail";
        break;
    }
    out += fmt::format("{:<5} {}: {}\n", label, c.name, c.detail);
    if (!c.fix.empty()) {
      out += fmt::format("      fix: {}\n", c.fix);
    }
  }
  return out;
}

}  // namespace agentbox::app
