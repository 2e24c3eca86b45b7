// Confinement: prepare() in the parent, apply() in the child; see confine.hpp for the stages.
#include "agentbox/sandbox/confine.hpp"

#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstring>

namespace agentbox::sandbox {

void add_system_grants(ConfinementSpec& spec) {
  // /proc read-only: a box whose uid is 0 (agentbox run as root) passes the owner check of
  // /proc/sys/* and /proc/sysrq-trigger with no capability at all (sysctl test_perm() compares
  // euid with GLOBAL_ROOT_UID), so only this rule (or a read-only mount) keeps it from rewriting
  // kernel.core_pattern. Lost: writes to /proc/self/{oom_score_adj,attr/*,task/*/comm}.
  for (const char* p :
       {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
        "/run/systemd/resolve", "/sys", "/dev/urandom", "/dev/random", "/proc"}) {
    spec.ro_paths.emplace_back(p);
  }
  // /dev/pts and /dev/ptmx: the box's own devpts; /dev/shm: POSIX shared memory (the box's).
  for (const char* p :
       {"/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/pts", "/dev/shm"}) {
    spec.rw_paths.emplace_back(p);
  }
}

const char* stage_name(Stage stage) {
  switch (stage) {
    case Stage::kNone:
      return "none";
    case Stage::kLimits:
      return "setting resource limits";
    case Stage::kNoNewPrivs:
      return "setting no_new_privs";
    case Stage::kLandlock:
      return "enforcing Landlock";
    case Stage::kProtect:
      return "checking protected paths are read-only";
    case Stage::kCaps:
      return "dropping capabilities";
    case Stage::kSeccomp:
      return "loading the seccomp filter";
  }
  return "?";
}

base::Result<PreparedConfinement> prepare(const ConfinementSpec& spec) {
  SeccompProgram bpf;
  uint64_t cookie = 0;
  if (spec.seccomp) {
    AGENTBOX_ASSIGN_OR_RETURN(bpf, compile_seccomp(spec.seccomp_allow_groups));
    if (spec.exec != ExecNotify::kOff) {
      while (cookie == 0) {
        if (::getrandom(&cookie, sizeof cookie, 0) != static_cast<ssize_t>(sizeof cookie)) {
          return base::Error::sys(errno, "getrandom", "exec filter cookie");
        }
      }
      bpf.notify = with_exec_notify(std::move(bpf.notify), cookie);  // errno_only stays as is
      bpf.exec_required = spec.exec == ExecNotify::kEnforce;
    }
  } else {
    AGENTBOX_TRY(check_seccomp_groups(spec.seccomp_allow_groups));
  }
  LandlockPlan plan;
  if (spec.landlock) {
    // "userns" promises nested sandboxes, and they mount: under a Landlock domain that handles
    // filesystem rights no mount can succeed (see LandlockFs), so that box keeps only Landlock's
    // scopes and its filesystem rests on the mount namespace, whose read-only binds a nested
    // namespace cannot make writable (MNT_LOCK_READONLY). docs/CONFINEMENT.md has the trade-off.
    LandlockFs fs =
        spec.seccomp_allow_groups.contains("userns") ? LandlockFs::kScopesOnly : LandlockFs::kRules;
    AGENTBOX_ASSIGN_OR_RETURN(
        plan, plan_landlock(spec.ro_paths, spec.rw_paths, spec.landlock_abi_cap, fs));
  }
  AGENTBOX_ASSIGN_OR_RETURN(CapDrop caps, CapDrop::prepare());
  for (const auto& p : spec.ro_within_rw) {
    if (p.empty() || p[0] != '/') {
      return base::Error::msg("protected path `" + p + "` is not absolute");
    }
  }
  return PreparedConfinement{.spec = spec,
                             .seccomp = std::move(bpf),
                             .landlock = std::move(plan),
                             .caps = std::move(caps),
                             .protected_paths = spec.ro_within_rw,
                             .exec_cookie = cookie};
}

ChildFailure apply(const PreparedConfinement& p, int notify_socket) noexcept {
  if (int err = join_cgroup(p.cgroup_procs_fds.data(), p.cgroup_procs_fds.size()); err != 0) {
    return {Stage::kLimits, err};
  }
  if (int err = apply_rlimits(p.spec.limits); err != 0) {
    return {Stage::kLimits, err};
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return {Stage::kNoNewPrivs, errno};
  }
  for (const auto& path : p.protected_paths) {
    struct statfs st {};
    if (statfs(path.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        continue;  // the mount layer covers missing ones
      }
      return {Stage::kProtect, errno};
    }
    if ((st.f_flags & ST_RDONLY) == 0) {
      return {Stage::kProtect, EROFS};  // "should have been read-only"
    }
  }
  if (p.spec.landlock) {
    if (int err = apply_landlock(p.landlock); err != 0) {
      return {Stage::kLandlock, err};
    }
  }
  if (p.spec.drop_caps) {
    if (int err = p.caps.apply(); err != 0) {
      return {Stage::kCaps, err};
    }
  }
  if (int err = apply_nice(p.spec.limits); err != 0) {
    return {Stage::kLimits, err};
  }
  if (p.spec.seccomp) {
    if (int err = load_seccomp(p.seccomp, notify_socket); err != 0) {
      return {Stage::kSeccomp, err};
    }
  }
  return {};
}

audit::Event confinement_event(const PreparedConfinement& p, bool notified) {
  audit::Event ev("sandbox.confine");
  ev.num("landlock_abi", p.spec.landlock ? p.landlock.abi : 0);
  ev.boolean("landlock_fs", p.spec.landlock && p.landlock.handled_fs != 0);
  struct utsname u {};
  ev.str("kernel", ::uname(&u) == 0 ? std::string(u.release) : std::string("?"));
  ev.str("seccomp", !p.spec.seccomp ? "off" : notified ? "notify" : "errno");
  std::vector<std::string> groups(p.spec.seccomp_allow_groups.begin(),
                                  p.spec.seccomp_allow_groups.end());
  ev.strs("seccomp_allow", groups);
  switch (p.spec.exec) {
    case ExecNotify::kOff:
      ev.str("exec", "off");
      break;
    case ExecNotify::kLog:
    case ExecNotify::kEnforce:
      ev.str("exec", !p.spec.seccomp || !notified      ? "unseen"
                     : p.spec.exec == ExecNotify::kLog ? "log"
                                                       : "rules");
      break;
  }
  ev.strs("ro", p.spec.ro_paths).strs("rw", p.spec.rw_paths).strs("protected", p.protected_paths);
  ev.str("caps", p.spec.drop_caps ? "none" : "kept");
  ev.boolean("cgroup", !p.cgroup_procs_fds.empty());
  const Limits& l = p.spec.limits;
  const std::pair<const char*, const std::optional<uint64_t>*> rl[] = {
      {"rlimit_as", &l.address_space},
      {"rlimit_data", &l.data},
      {"rlimit_nproc", &l.processes},
      {"rlimit_fsize", &l.file_size},
      {"rlimit_nofile", &l.open_files}};
  for (const auto& [key, value] : rl) {
    if (value->has_value()) {
      ev.num(key, static_cast<int64_t>(**value));
    }
  }
  ev.num("nice", l.nice.value_or(0));
  return ev;
}

base::Error to_error(const ChildFailure& f) {
  base::Error e = base::Error::sys(f.err, stage_name(f.stage));
  if (f.stage == Stage::kProtect && f.err == EROFS) {
    e = base::Error::msg("a protected path is writable inside the box");
    e.hint("protected paths must be bind-mounted read-only by the mount layer");
  } else if (f.stage == Stage::kCaps && f.err == EPERM) {
    e.hint("capabilities are dropped inside the box's user namespace, where it holds CAP_SETPCAP");
  }
  return std::move(e).context("confining the agent");
}

}  // namespace agentbox::sandbox
