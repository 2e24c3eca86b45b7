// The session's confinement: policy -> ConfinementSpec, launcher hook, listener and cgroup.
#include "agentbox/app/session_confinement.hpp"

#ifdef AGENTBOX_HAVE_LAUNCHER

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

#include "agentbox/app/session_exec.hpp"
#include "agentbox/app/session_limits.hpp"
#include "agentbox/base/log.hpp"

namespace agentbox::app {

namespace sb = sandbox;

base::Result<std::unique_ptr<SessionConfinement>> SessionConfinement::create(
    const ConfineInputs& in, audit::Sink& sink) {
  sb::ConfinementSpec spec;
  sb::add_system_grants(spec);
  if (!in.mount_sys) {
    std::erase(spec.ro_paths, "/sys");
  }
  spec.ro_paths.insert(spec.ro_paths.end(), in.ro.begin(), in.ro.end());
  spec.rw_paths.push_back(in.workspace);
  spec.rw_paths.emplace_back("/tmp");
  if (!in.home.empty() && in.home != "/") {
    spec.rw_paths.push_back(in.home);
  }
  spec.rw_paths.insert(spec.rw_paths.end(), in.rw.begin(), in.rw.end());
  spec.ro_within_rw = in.protected_abs;
  for (const auto& g : in.seccomp_allow) {
    if (auto ok = sb::check_seccomp_groups({g.value}); !ok) {
      return std::move(ok).error().context(
          fmt::format("seccomp.allow (from {})", g.origin.describe()));
    }
    spec.seccomp_allow_groups.insert(g.value);
    // Never loosened silently: said here (and in the sandbox.confine audit event).
    base::log::info("seccomp: the `{}` group is allowed (from {})", g.value, g.origin.describe());
    if (g.value == "userns" && ::geteuid() == 0) {
      // verify_root_map() (kernel/user_namespace.c, 5.12+): mapping the parent's uid 0 needs
      // CAP_SETFCAP, which the box never keeps (file capabilities it wrote would hold on the host).
      base::log::warn(
          "seccomp: `userns` as root: a nested user namespace cannot map uid 0 without "
          "CAP_SETFCAP, which the box never keeps, so bwrap and `unshare -Ur` fail inside; run "
          "agentbox as your user for nested sandboxes");
    }
  }
#ifdef AGENTBOX_BENCH_UNCONFINED
  // Only the test-only build agentbox-unconfined (tests/CMakeLists.txt) reads the switch.
  const char* unsafe = std::getenv(kUnsafeBenchUnconfinedEnv);
  const bool unconfined = unsafe != nullptr && std::string_view(unsafe) == "1";
#else
  constexpr bool unconfined = false;
#endif
  if (unconfined) {
    // Printed even with -q: a box without seccomp and Landlock must never go unnoticed.
    fmt::print(stderr,
               "agentbox: warning: {}=1: seccomp and Landlock are OFF for this box (benchmark "
               "use only)\n",
               kUnsafeBenchUnconfinedEnv);
    spec.seccomp = false;
    spec.landlock = false;
  }

  std::optional<sb::ExecGuardSpec> exec_spec;
  if (!in.exec_rules.empty() || in.exec_log) {
    AGENTBOX_ASSIGN_OR_RETURN(exec_spec, plan_exec_guard({.rules = in.exec_rules,
                                                          .log = in.exec_log,
                                                          .workspace = in.workspace,
                                                          .command = in.command,
                                                          .approver = in.approver},
                                                         sink));
    if (!spec.seccomp && !in.exec_rules.empty()) {
      return base::Error::msg("exec rules need seccomp, which this benchmark build turned off");
    }
    spec.exec = in.exec_rules.empty() ? sb::ExecNotify::kLog : sb::ExecNotify::kEnforce;
  }
  SessionLimits lim = plan_session_limits(in.session_id, in.limits);
  std::optional<sb::SessionCgroup>& cgroup = lim.cgroup;
  spec.limits = lim.rlimits;

  AGENTBOX_ASSIGN_OR_RETURN(sb::PreparedConfinement prepared, sb::prepare(spec));
  std::unique_ptr<SessionConfinement> c(new SessionConfinement(std::move(prepared), sink));
  c->unsafe_unconfined_ = unconfined;
  c->exec_spec_ = std::move(exec_spec);
  c->cpus_ = lim.cpus;
  c->start_note_ = std::move(lim.start_note);
  c->autogroup_nice_ = lim.autogroup_nice;
  {
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
      return base::Error::sys(errno, "pipe2", "init's exit report");
    }
    c->report_read_.reset(p[0]);
    c->report_write_.reset(p[1]);
  }
  // What LimitWatch looks at: the rlimits the program runs under (RLIMIT_NPROC only where it
  // binds: not for root), the box's HOME and /tmp tmpfs.
  c->watch_spec_.nproc = ::geteuid() == 0 ? std::nullopt : spec.limits.processes;
  c->watch_spec_.address_space = spec.limits.address_space;
  c->watch_spec_.file_size = spec.limits.file_size;
  c->watch_spec_.tmpfs.push_back({"/tmp", "/tmp", "sandbox.tmp_size"});
  if (!in.home.empty() && in.home != "/") {
    c->watch_spec_.tmpfs.push_back({"HOME", in.home, "sandbox.home_size"});
  }
  c->cpus_enforced_ = cgroup && cgroup->limits_cpu();
  if (lim.cpus && cgroup && !c->cpus_enforced_) {
    fmt::print(stderr,
               "agentbox: warning: --cpus {} (from {}) is NOT enforced: the session cgroup has no "
               "cpu controller here; `agentbox doctor` explains\n",
               *lim.cpus, in.limits.cpus->origin.describe());
  }
  if (cgroup) {
    AGENTBOX_ASSIGN_OR_RETURN(c->cgroup_fds_, cgroup->open_procs());
    for (const auto& fd : c->cgroup_fds_) {
      c->prepared_.cgroup_procs_fds.push_back(fd.get());
    }
    c->cgroup_.emplace(std::move(*cgroup));
  }
  if (spec.seccomp) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return base::Error::sys(errno, "socketpair", "seccomp listener channel");
    }
    c->notify_parent_.reset(sv[0]);
    c->notify_child_.reset(sv[1]);
  }
  return c;
}

SessionConfinement::~SessionConfinement() {
  if (loop_ != nullptr && watch_ != 0) {
    loop_->unwatch(watch_);
  }
  if (loop_ != nullptr && sample_timer_ != 0) {
    loop_->unwatch(sample_timer_);  // its callback points at this object
  }
}

sb::ConfineResult SessionConfinement::apply() const noexcept {
  sb::ChildFailure f = sb::apply(prepared_, notify_child_.get());
  sb::SetupStage stage = sb::SetupStage::kNone;
  switch (f.stage) {
    case sb::Stage::kNone:
      return {};
    case sb::Stage::kLimits:
      stage = sb::SetupStage::kRlimits;
      break;
    case sb::Stage::kNoNewPrivs:
      stage = sb::SetupStage::kNoNewPrivs;
      break;
    case sb::Stage::kLandlock:
      stage = sb::SetupStage::kLandlock;
      break;
    case sb::Stage::kProtect:
      stage = sb::SetupStage::kProtectCheck;
      break;
    case sb::Stage::kCaps:
      stage = sb::SetupStage::kCapabilities;
      break;
    case sb::Stage::kSeccomp:
      stage = sb::SetupStage::kSeccomp;
      break;
  }
  return {stage, f.err};
}

std::vector<int> SessionConfinement::child_fds() const {
  std::vector<int> fds = prepared_.cgroup_procs_fds;
  if (notify_child_) {
    fds.push_back(notify_child_.get());
  }
  return fds;
}

void SessionConfinement::started(event::Loop& loop, pid_t init) {
  notify_child_.reset();  // only the box holds it now: EOF if it never sends a listener
  report_write_.reset();  // only init holds it now
  watch_spec_.init = init;
  if (!start_note_.empty()) {
    base::log::info("{}", start_note_);  // not with -q: the defaults, not something asked for
  }
  limit_watch_ = sb::LimitWatch::start(watch_spec_);
  if (auto t = loop.add_timer(sb::kSampleInterval, sb::kSampleInterval,
                              [this](uint64_t) { limit_watch_.sample(); })) {
    sample_timer_ = *t;
    loop_ = &loop;
  }
  bool notified = false;
  auto listener = notify_parent_ ? sb::receive_fd(notify_parent_.get())
                                 : base::Result<base::UniqueFd>(base::Error::msg("seccomp is off"));
  notify_parent_.reset();
  if (listener) {
    auto mon = sb::DenialMonitor::create(std::move(*listener), *sink_);
    if (mon) {
      monitor_.emplace(std::move(*mon));
      if (exec_spec_) {
        exec_guard_ = std::make_unique<sb::ExecGuard>(std::move(*exec_spec_), *sink_);
        monitor_->set_exec_handler(exec_guard_.get());
      }
      auto w = loop.watch_fd(monitor_->fd(), EPOLLIN, [this](uint32_t) {
        if (!monitor_->on_readable() && loop_ != nullptr && watch_ != 0) {
          loop_->unwatch(watch_);  // every filtered process has exited
          watch_ = 0;
        }
      });
      if (w) {
        loop_ = &loop;
        watch_ = *w;
        notified = true;
      } else {
        base::log::warn("seccomp denials will not be audited: {}", w.error().message());
      }
    } else {
      base::log::warn("seccomp denials will not be audited: {}", mon.error().message());
    }
  } else {
    base::log::debug("no seccomp listener: {}", listener.error().message());
  }
  audit::Event ev = sb::confinement_event(prepared_, notified);
  if (unsafe_unconfined_) {
    ev.boolean("unsafe_bench_unconfined", true);
  }
  if (cpus_) {
    ev.str("cpus", cpus_enforced_ ? "cgroup" : "not enforced");
  }
  sink_->emit(ev);
  cgroup_fds_.clear();  // the agent has joined (it runs): the supervisor needs them no more
  prepared_.cgroup_procs_fds.clear();
}

void SessionConfinement::use_approver(policy::Approver* approver) {
  if (exec_guard_) {
    exec_guard_->use_approver(approver);
  } else if (exec_spec_) {
    exec_spec_->approver = approver;
  }
}

std::string SessionConfinement::finished() {
  if (loop_ != nullptr && watch_ != 0) {
    if (monitor_) {
      monitor_->on_readable();  // answer what is left
    }
    loop_->unwatch(watch_);
    watch_ = 0;
  }
  if (loop_ != nullptr && sample_timer_ != 0) {
    loop_->unwatch(sample_timer_);
    sample_timer_ = 0;
  }
  std::optional<sb::ExitReport> report;
  sb::ExitReport r;
  if (report_read_ && ::read(report_read_.get(), &r, sizeof r) == sizeof r) {
    report = r;
    program_exited_ = WIFEXITED(r.program_status);
  }
  std::vector<sb::LimitHit> hits;
  audit::Event lim("limits");
  lim.str("source", cgroup_ ? "cgroup" : "rlimits");
  if (cgroup_) {
    auto ev = cgroup_->events();
    if (ev) {
      lim.num("oom_kills", static_cast<int64_t>(ev->oom_kills))
          .num("memory_max", static_cast<int64_t>(ev->memory_max))
          .num("pids_max", static_cast<int64_t>(ev->pids_max))
          .num("cpu_throttled", static_cast<int64_t>(ev->cpu_throttled));
      if (ev->oom_kills > 0) {
        hits.push_back({"memory", "memory limit (OOM kill)"});
      }
      if (ev->pids_max > 0) {
        hits.push_back({"pids", "process limit (fork refused)"});
      }
      if (cpus_ && ev->cpu_throttled > 0) {
        hits.push_back({"cpus", fmt::format("CPU limit (--cpus {}: throttled {} time(s))", *cpus_,
                                            ev->cpu_throttled)});
      }
    }
    cgroup_->destroy();
  }
  for (auto& h : limit_watch_.finish(report)) {
    hits.push_back(std::move(h));
  }
  if (limit_watch_.walks_tasks()) {
    lim.num("max_tasks", static_cast<int64_t>(limit_watch_.max_tasks()))
        .num("max_vm_peak", static_cast<int64_t>(limit_watch_.max_vm_peak()));
  }
  if (report) {
    lim.num("died_of_sigxfsz", report->died_of_sigxfsz)
        .num("died_of_sigxcpu", report->died_of_sigxcpu)
        .boolean("program_signaled", WIFSIGNALED(report->program_status));
  }
  std::vector<std::string> keys;
  std::string hit;
  for (const auto& h : hits) {
    keys.push_back(h.key);
    hit += (hit.empty() ? "" : " and its ") + h.phrase;
  }
  lim.strs("hit", keys);
  sink_->emit(lim);
  if (exec_guard_) {
    sb::ExecStats st = exec_guard_->stats();
    audit::Event e("exec.summary");
    e.num("execs", static_cast<int64_t>(st.execs))
        .num("denied", static_cast<int64_t>(st.denied))
        .num("asked", static_cast<int64_t>(st.asked));
    sink_->emit(e);
  }
  if (monitor_) {
    audit::Event e("seccomp.summary");
    e.num("denied", static_cast<int64_t>(monitor_->denied()));
    sink_->emit(e);
    if (monitor_->denied() > 0) {
      base::log::info("{} system call(s) denied by seccomp (see the audit log)",
                      monitor_->denied());
    }
  }
  return hit;
}

}  // namespace agentbox::app

#endif  // AGENTBOX_HAVE_LAUNCHER
