// app::Session's run: the box started, the control socket and the network once it runs,
// supervision, then the teardown that ends in `session.end` and the report (session.hpp).
#include "agentbox/app/session.hpp"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "agentbox/app/doctor.hpp"
#include "agentbox/app/session_control.hpp"
#include "agentbox/audit/summary.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/base/startup_trace.hpp"
#include "session_internal.hpp"

namespace agentbox::app {

using base::Error;
namespace sb = sandbox;

std::string_view to_string(EndReason r) {
  switch (r) {
    case EndReason::not_started:
      return "not started";
    case EndReason::exit:
      return "exit";
    case EndReason::sigterm:
      return "SIGTERM";
    case EndReason::sighup:
      return "SIGHUP";
    case EndReason::parent_ended:
      return "parent ended";
    case EndReason::timeout:
      return "timeout";
    case EndReason::limit:
      return "limit";
    case EndReason::setup_failed:
      return "setup failed";
    case EndReason::exec_failed:
      return "exec failed";
    case EndReason::audit_failed:
      return "audit failed";
  }
  return "?";
}

namespace {

bool exec_asks(const config::Policy& p) {
  return std::any_of(p.exec_rules.begin(), p.exec_rules.end(),
                     [](const policy::ExecRule& r) { return r.action == policy::ExecAction::ask; });
}

std::vector<std::pair<std::string, std::string>> label_pairs(const config::Policy& p) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, v] : p.labels) {
    out.emplace_back(k, v.value);
  }
  return out;
}

// One line each for lines the audit log lost (issue 14): never only the path of a log that is
// silently incomplete.
std::vector<std::string> audit_losses(const audit::Losses& l, const std::string& path,
                                      const config::AuditSettings& as) {
  std::vector<std::string> out;
  if (l.failed_lines != 0 || l.first_errno != 0) {
    out.push_back(
        fmt::format("the audit log lost {} line{}: write `{}`: {} ({})", l.failed_lines,
                    l.failed_lines == 1 ? "" : "s", path, std::strerror(l.first_errno),
                    strerrorname_np(l.first_errno) ? strerrorname_np(l.first_errno) : "?"));
  }
  if (l.truncated_lines != 0) {
    out.push_back(fmt::format(
        "the audit log reached its size cap of {} bytes (audit.max_size, {}): {} later line{} "
        "dropped",
        as.max_size.value, detail::origin_text(as.max_size.origin), l.truncated_lines,
        l.truncated_lines == 1 ? " was" : "s were"));
  }
  return out;
}

// The fix to suggest when the box did not start, by the stage that failed ("" when none fits).
std::string start_hint(const sb::LaunchFailure& failure, const std::string& command) {
  bool userns =
      failure.stage == sb::SetupStage::kNone || failure.stage == sb::SetupStage::kUidMap ||
      failure.stage == sb::SetupStage::kGidMap || failure.stage == sb::SetupStage::kSetgroups;
  if (((userns || failure.stage == sb::SetupStage::kMountOp) && failure.err == EPERM) ||
      (failure.stage == sb::SetupStage::kUserLimits && failure.err == EROFS)) {
    if (std::string nested = nested_box_hint(); !nested.empty()) {
      return nested;
    }
  }
  const std::string doctor = "; `agentbox doctor` checks this machine";
  if (userns && (failure.err == EPERM || failure.err == EACCES || failure.err == ENOSPC ||
                 failure.err == EINVAL)) {
    return userns_hint(failure.err) + doctor;
  }
  if (failure.stage == sb::SetupStage::kUserLimits && failure.err == EROFS) {
    return proc_fix() + doctor;
  }
  if (failure.stage == sb::SetupStage::kHostname && failure.err == EPERM) {
    return hostname_fix() + doctor;
  }
  if (failure.stage == sb::SetupStage::kTunOpen) {
    return tun_fix(failure.err) + doctor;
  }
  if (failure.stage == sb::SetupStage::kTapCreate) {
    return "the kernel refused a tap device in the box's own network namespace (a security "
           "module or a container policy?); `agentbox doctor` checks /dev/net/tun";
  }
  if (failure.stage == sb::SetupStage::kExec && failure.err == ENOENT) {
    return command.find('/') == std::string::npos
               ? "the box's PATH is " + std::string(sb::kDefaultPath) +
                     "; show more with `--ro DIR` or set PATH with `--env PATH=...`"
               : "the box shows system directories, the workspace and what --ro/--rw grant";
  }
  return {};
}

}  // namespace

Session::~Session() = default;

void Session::log_start() {
  std::vector<std::string> ro;
  std::vector<std::string> rw;
  for (const auto& g : grants_) {
    (g.writable ? rw : ro).push_back(g.path);
  }
  audit::Event ev("session.start");
  ev.strs("argv", req_.command)
      .str("workspace", workspace_)
      .str("cwd", launch_.cwd)
      .strs("ro", ro)
      .strs("rw", rw)
      .strs("protected", protect_.paths)
      .strs("program", describe(program_))
      .strs("config", req_.config_files)
      .boolean("tty", launch_.pty)
      .num("uid", user_.uid)
      .str("profile", req_.policy.state_scope);
  if (req_.policy.learn.value) {
    ev.boolean("learn", true);  // `agentbox profile suggest` learns methods, paths and ports
  }
  for (const auto& [k, v] : req_.policy.labels) {
    ev.str("label." + k, v.value);  // keys are [a-z0-9_.-] (config::label_problem)
  }
  sink_->emit(ev);
}

SessionReport Session::run() {
  log_start();
  if (req_.policy.audit.required.value && sink_->losses().lost()) {
    for (const auto& line : audit_losses(sink_->losses(), sink_->path(), req_.policy.audit)) {
      fmt::print(stderr, "{}",
                 Error::msg(line).hint("audit.required is set: the box did not start").render());
    }
    return {};
  }
  base::log::debug("workspace {}, cwd {}, {} mount operations, session {}", workspace_, launch_.cwd,
                   launch_.mounts.size(), id_);
  auto loop = event::Loop::create();
  if (!loop) {
    fmt::print(stderr, "{}", loop.error().render());
    return {};
  }
  loop_.emplace(std::move(*loop));
  // Block the signals before the clone so none is lost while the box starts.
  auto signals =
      loop_->watch_signals({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2},
                           [](const signalfd_siginfo&) {});
  if (!signals) {
    fmt::print(stderr, "{}", signals.error().render());
    return {};
  }
  signals_ = *signals;
  // Audit lines emitted during one loop iteration go out in one write at its end (a short
  // connection's net.connect, proxy.open and net.close: three writes before); the sink writes
  // what it holds on exit paths and fatal signals too (audit.hpp).
  loop_->set_dispatch_hooks([this] { sink_->hold(); }, [this] { sink_->release(); });

  sb::LaunchFailure failure;
  auto box = sb::Box::start(launch_, &failure);
  base::startup_trace::stamp("started");
  started_ = box.has_value();
  if (!box) {
    start_failed(std::move(box).error(), failure);
  } else {
    supervise_box(*box);
  }
  SessionReport r;
  finish_network(r);
  finish_workspace(r);
  finish_log(r);
  return r;
}

void Session::start_failed(Error err, const sb::LaunchFailure& failure) {
  if (std::string h = start_hint(failure, req_.command[0]); !h.empty()) {
    err.hint(h);
  }
  if (std::string h = review_ ? review_mount_hint(launch_.mounts, failure) : ""; !h.empty()) {
    err.hint(h);
  }
  fmt::print(stderr, "{}", err.render());
  code_ = sb::launch_exit_code(failure);
  reason_ =
      failure.stage == sb::SetupStage::kExec ? EndReason::exec_failed : EndReason::setup_failed;
  error_ = err.message();
}

// The box runs: the control socket, then the network, then supervision to its end.
void Session::supervise_box(sb::Box& box) {
  base::log::debug("box started in {} us", std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::steady_clock::now() - t0_)
                                               .count());
  event::Loop& loop = *loop_;
  confinement_->started(loop, box.pid());
  telemetry_->started();
  if (req_.policy.audit.required.value) {  // fail closed: a lost line stops the box (pidfd)
    sink_->on_loss([&box] { [[maybe_unused]] auto k = box.signal(SIGKILL); });
  }
  const config::Policy& pol = req_.policy;
  auto control = SessionControl::start(loop,
                                       {.id = id_,
                                        .argv = req_.command,
                                        .workspace = workspace_,
                                        .config_files = req_.config_files,
                                        .profile = pol.state_scope,
                                        .labels = label_pairs(pol),
                                        .session_dir = dir_,
                                        .pid = box.pid(),
                                        .signal = [&box](int n) { return box.signal(n); },
                                        .ask_timeout = std::chrono::seconds(pol.ask_timeout.value),
                                        .exec_asks = exec_asks(pol),
                                        .learn = pol.learn.value,
                                        .ask_desktop = pol.ask_desktop.value},
                                       env_, *sink_, network_.get(), *proxy_);
  if (control) {
    base::log::debug("session {}: control socket {}", short_id(id_), (*control)->socket_path());
    // Before the loop first runs: no exec notification is read before this.
    confinement_->use_approver((*control)->approver());
  } else {
    base::log::warn("no control socket: {}", control.error().message());
  }
  // After the control socket: the network's first DNS question may already need its queue.
  if (auto r = network_ ? network_->start(box.take_tap(), loop, box.take_network_extra(),
                                          box.take_socket_factory())
                        : base::Status{};
      !r) {
    Error e = std::move(r).error().context("starting the network");
    fmt::print(stderr, "{}", e.render());
    error_ = e.message();
    [[maybe_unused]] auto k = box.signal(SIGKILL);
    net_failed_ = true;
  }
  Outcome out = supervise(box);
  base::startup_trace::stamp("reaped");
  confinement_->use_approver(nullptr);  // the queue goes with `control`
  sink_->on_loss({});
  code_ = out.code;
  reason_ = out.reason;
  terminal_ = std::move(out.terminal);
  if (reason_ == EndReason::timeout) {
    code_ = 124;  // as timeout(1): the status itself says the time ran out
  }
  if (std::string hit = confinement_->finished(); !hit.empty()) {
    if (reason_ != EndReason::timeout) {
      reason_ = EndReason::limit;
      limit_ = hit;
    }
    base::log::info("the box reached its {}", hit);
  }
}

// The stack goes before the loop does; its summary comes first in the report.
void Session::finish_network(SessionReport& r) {
  r.summary = network_ ? network_->finish() : std::vector<std::string>{};
  for (auto& line : proxy_->finish()) {
    r.summary.push_back(std::move(line));
  }
  if (!terminal_.empty()) {
    r.summary.push_back(std::move(terminal_));
  }
  sink_->release();
  for (auto& line : audit::summarize_log(sink_->path()).render()) {
    r.summary.push_back(std::move(line));  // per host and credential, as `log --summary`
  }
  if (net_failed_) {
    code_ = 125;
    reason_ = EndReason::setup_failed;
  }
}

// What the session leaves in the workspace and the state dir: placeholders, agent state, the
// git scan, --review's upper directory.
void Session::finish_workspace(SessionReport& r) {
  protect_.placeholders.remove();
  git_protect_.placeholders.remove();
  if (!persist_.paths.empty()) {
    // Again now, so what the box left for its next session is checked before anyone reads it.
    auto removed = sanitize_persist(state_dir_, persist_);
    if (removed && !removed->empty()) {
      sink_->emit(audit::Event("state.sanitize").strs("removed", *removed));
    }
  }
  if (started_) {
    git_.finish(id_, *sink_);
  }
  if (review_) {
    r.review = finish_review(*review_, started_, *sink_);
  }
}

// `session.end`, telemetry's last word, and the report's facts.
void Session::finish_log(SessionReport& r) {
  const bool audit_required = req_.policy.audit.required.value;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  audit::Event end("session.end");
  audit::Losses lost = sink_->losses();
  if (audit_required && lost.lost() && started_) {
    code_ = 125;
    reason_ = EndReason::audit_failed;
  }
  std::string reason(reason_ == EndReason::limit ? limit_ : to_string(reason_));
  end.num("exit", code_)
      .str("reason", reason)
      .num("duration_ms", static_cast<int64_t>(r.seconds * 1000));
  if (!error_.empty()) {
    end.str("error", error_);
  }
  if (lost.lost()) {
    end.num("audit_lines_lost", static_cast<int64_t>(lost.failed_lines + lost.truncated_lines));
  }
  telemetry_->report(*sink_);
  sink_->final(end);
  r.telemetry = telemetry_->finish();
  for (const auto& line : audit_losses(sink_->losses(), sink_->path(), req_.policy.audit)) {
    if (audit_required) {
      fmt::print(stderr, "{}",
                 Error::msg(line)
                     .hint("audit.required is set: the session ended with status 125")
                     .render());
    } else {
      base::log::warn("{}", line);
    }
  }
  r.code = code_;
  r.reason = reason_;
  r.limit = limit_;
  r.started = started_;
  r.program_exited = confinement_->program_exited();
  r.command = req_.command[0];
  r.id = short_id(id_);
  r.dir = dir_;
  r.chain_head = sink_->chain_head();
}

}  // namespace agentbox::app
