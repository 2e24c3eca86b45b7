// The exec guard (theory of operation: include/agentbox/sandbox/exec_guard.hpp).
#include "agentbox/sandbox/exec_guard.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <map>

#include "agentbox/base/unique_fd.hpp"

namespace agentbox::sandbox {

using base::Error;
using base::Result;
using base::UniqueFd;

namespace {

constexpr size_t kPage = 4096;

// A NUL-terminated string at `addr` in the caller, at most `max` bytes; reads never cross a
// page so an unmapped next page is not an error when the string ends before it.
Result<std::string> read_string(int mem, uint64_t addr, size_t max, bool* cut) {
  std::string out;
  char buf[kPage];
  while (out.size() < max) {
    size_t want = std::min<size_t>(kPage - (addr % kPage), max - out.size());
    ssize_t n = ::pread(mem, buf, want, static_cast<off_t>(addr));
    if (n <= 0) {
      return Error::sys(n < 0 ? errno : EIO, "pread", "/proc/PID/mem");
    }
    const auto* nul = static_cast<const char*>(std::memchr(buf, 0, static_cast<size_t>(n)));
    if (nul != nullptr) {
      out.append(buf, static_cast<size_t>(nul - buf));
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
    addr += static_cast<uint64_t>(n);
  }
  *cut = true;
  return out;
}

Result<std::string> link_text(const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) {
    return Error::sys(errno, "readlink", path);
  }
  return std::string(buf, static_cast<size_t>(n));
}

// `abs` (box view) with every symlink and `..` resolved inside the box's root; "" if it cannot
// be (the file is gone, a memfd, a path over PATH_MAX).
std::string resolve_in_box(pid_t pid, const std::string& abs) {
  UniqueFd root(
      ::open(fmt::format("/proc/{}/root", pid).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    return {};
  }
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  UniqueFd f(static_cast<int>(::syscall(SYS_openat2, root.get(), abs.c_str(), &how, sizeof how)));
  if (!f) {
    return {};
  }
  // The link text of an fd is its path from the reader's root, or, when that root cannot be
  // reached (the box's mounts live in another namespace), from the root of the box's own tree:
  // the path the box sees.
  auto text = link_text(fmt::format("/proc/self/fd/{}", f.get()));
  return text ? *text : std::string();
}

}  // namespace

Result<policy::ExecCall> read_exec_call(pid_t pid, const seccomp_data& data) {
  const bool at = data.nr == __NR_execveat;
  const uint64_t path_ptr = at ? data.args[1] : data.args[0];
  const uint64_t argv_ptr = at ? data.args[2] : data.args[1];
  UniqueFd mem(::open(fmt::format("/proc/{}/mem", pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!mem) {
    return Error::sys(errno, "open", fmt::format("/proc/{}/mem", pid));
  }
  policy::ExecCall call;
  bool cut = false;
  AGENTBOX_ASSIGN_OR_RETURN(call.given, read_string(mem.get(), path_ptr, PATH_MAX, &cut));
  size_t budget = ExecGuard::kMaxBytes;
  for (size_t i = 0; argv_ptr != 0; ++i) {
    if (i == ExecGuard::kMaxArgs || budget == 0) {
      call.truncated = true;
      break;
    }
    uint64_t p = 0;
    if (::pread(mem.get(), &p, sizeof p, static_cast<off_t>(argv_ptr + i * sizeof p)) !=
        static_cast<ssize_t>(sizeof p)) {
      return Error::sys(errno == 0 ? EIO : errno, "pread", "argv");
    }
    if (p == 0) {
      break;
    }
    bool arg_cut = false;
    AGENTBOX_ASSIGN_OR_RETURN(std::string a, read_string(mem.get(), p, budget, &arg_cut));
    budget -= std::min(budget, a.size() + 1);
    call.truncated = call.truncated || arg_cut;
    call.argv.push_back(std::move(a));
  }
  auto cwd = link_text(fmt::format("/proc/{}/cwd", pid));
  call.cwd = cwd ? *cwd : std::string();
  std::string base = call.cwd;
  const auto dirfd = static_cast<int>(static_cast<uint32_t>(data.args[0]));
  if (at && dirfd != AT_FDCWD) {
    auto t = link_text(fmt::format("/proc/{}/fd/{}", pid, dirfd));
    base = t ? *t : std::string();
  }
  std::string abs;
  if (!call.given.empty() && call.given[0] == '/') {
    abs = call.given;
  } else if (call.given.empty() && at && (data.args[4] & AT_EMPTY_PATH) != 0) {
    abs = base;  // the fd itself
  } else if (!base.empty() && base[0] == '/') {
    abs = base + "/" + call.given;
  }
  if (!abs.empty() && abs[0] == '/') {
    call.path = resolve_in_box(pid, abs);
  }
  return call;
}

struct ExecGuard::State {
  ExecGuardSpec spec;
  audit::Sink* sink;
  ExecStats stats;
  std::set<std::string> allowed_for_session;  // "path\nargv" answered allow_session/always
  // "path\nargv" denied by a person or a timeout, until when: a shell's PATH search tries the
  // next directory after EACCES (/usr/bin/git, then /bin/git: the same file), which must not
  // ask the same question again.
  std::map<std::string, std::chrono::steady_clock::time_point> denied_recently;
};

namespace {

constexpr std::chrono::seconds kDeniedWindow{10};
constexpr size_t kMaxDeniedRemembered = 256;

using DeniedUntil = std::map<std::string, std::chrono::steady_clock::time_point>;

bool recently_denied(DeniedUntil& denied, const std::string& key) {
  auto it = denied.find(key);
  if (it == denied.end()) {
    return false;
  }
  if (it->second > std::chrono::steady_clock::now()) {
    return true;
  }
  denied.erase(it);
  return false;
}

void remember_denied(DeniedUntil& denied, const std::string& key) {
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(denied, [&](const auto& d) { return d.second <= now; });
  if (denied.size() >= kMaxDeniedRemembered) {
    denied.erase(denied.begin());
  }
  denied[key] = now + kDeniedWindow;
}

}  // namespace

ExecGuard::ExecGuard(ExecGuardSpec spec, audit::Sink& sink)
    : state_(std::make_shared<State>(State{std::move(spec), &sink, {}, {}})) {}

ExecGuard::~ExecGuard() = default;

ExecStats ExecGuard::stats() const {
  return state_->stats;
}

void ExecGuard::use_approver(policy::Approver* approver) noexcept {
  state_->spec.approver = approver;
}

namespace {

void respond(int listener, uint64_t id, bool allow) noexcept {
  seccomp_notif_resp resp{};
  resp.id = id;
  resp.error = allow ? 0 : -EACCES;
  resp.flags = allow ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
  // ENOENT: the caller died or was interrupted meanwhile (a signal restarts its execve, which
  // notifies anew).
  [[maybe_unused]] int rc = ::ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
}

audit::Event exec_event(pid_t pid, const policy::ExecCall& call, std::string_view verdict) {
  audit::Event ev("exec");
  ev.num("pid", pid).str("path", call.path.empty() ? call.given : call.path);
  if (call.given != call.path) {
    ev.str("given", call.given);
  }
  std::vector<std::string> shown;
  size_t bytes = 0;
  for (const auto& a : call.argv) {
    if (bytes + a.size() > ExecGuard::kAuditBytes) {
      shown.push_back(
          a.substr(0, ExecGuard::kAuditBytes - std::min(bytes, ExecGuard::kAuditBytes)));
      break;
    }
    bytes += a.size();
    shown.push_back(a);
  }
  ev.strs("argv", shown);
  if (shown.size() < call.argv.size() || call.truncated || bytes > ExecGuard::kAuditBytes) {
    ev.boolean("argv_truncated", true);
  }
  ev.str("cwd", call.cwd).str("verdict", verdict);
  return ev;
}

}  // namespace

void ExecGuard::on_exec(int listener, const seccomp_notif& req) noexcept {
  try {
    State& st = *state_;
    ++st.stats.execs;
    auto call = read_exec_call(static_cast<pid_t>(req.pid), req.data);
    // Checked after reading: the pid we read is still the caller that stopped.
    if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) != 0) {
      return;
    }
    const bool enforcing = !st.spec.policy.empty();
    if (!call) {
      if (enforcing) {
        ++st.stats.denied;
      }
      respond(listener, req.id, !enforcing);
      audit::Event ev("exec");
      ev.num("pid", req.pid).str("verdict", enforcing ? "deny" : "allow");
      ev.str("reason", "argv unreadable: " + call.error().message());
      st.sink->emit(ev);
      return;
    }
    policy::ExecVerdict v = st.spec.policy.decide(*call);
    std::string key = fmt::format("{}\n{}", call->path, policy::shell_quote(call->argv));
    if (v.action == policy::ExecAction::ask && st.allowed_for_session.contains(key)) {
      v = {policy::ExecAction::allow, v.rule, v.reason + ", allowed for this session"};
    }
    if (v.action == policy::ExecAction::ask && recently_denied(st.denied_recently, key)) {
      v = {policy::ExecAction::deny, v.rule, v.reason + ": denied moments ago, not asked again"};
    }
    if (v.action == policy::ExecAction::ask && st.spec.approver == nullptr) {
      v = {policy::ExecAction::deny, v.rule, v.reason + ": no approver"};
    }
    const auto with_rule = [&](audit::Event& ev) {
      if (v.rule >= 0) {
        const auto& r = st.spec.policy.rules()[static_cast<size_t>(v.rule)];
        ev.str("rule", r.describe()).str("rule_origin", r.origin);
      }
      if (!v.reason.empty()) {
        ev.str("reason", v.reason);
      }
    };
    switch (v.action) {
      case policy::ExecAction::allow:
      case policy::ExecAction::deny: {
        const bool allow = v.action == policy::ExecAction::allow;
        st.stats.denied += allow ? 0 : 1;
        respond(listener, req.id, allow);
        if (st.spec.log || v.rule >= 0 || !allow) {
          audit::Event ev =
              exec_event(static_cast<pid_t>(req.pid), *call, allow ? "allow" : "deny");
          with_rule(ev);
          st.sink->emit(ev);
        }
        return;
      }
      case policy::ExecAction::ask:
        break;
    }
    ++st.stats.asked;
    audit::Event held = exec_event(static_cast<pid_t>(req.pid), *call, "ask");
    with_rule(held);
    st.sink->emit(held);
    policy::Question q{.kind = policy::ApprovalKind::exec,
                       .subject = call->path.empty() ? call->given : call->path,
                       .detail = policy::shell_quote(call->argv)};
    std::weak_ptr<State> weak = state_;
    const uint64_t id = req.id;
    const auto pid = static_cast<pid_t>(req.pid);
    st.spec.approver->ask(
        std::move(q), [weak, listener, id, pid, key, c = std::move(*call), v](policy::Answer a) {
          auto s = weak.lock();
          if (!s) {
            return;  // the guard is gone; the listener closes with it (ENOSYS to the caller)
          }
          const bool allow = policy::allows(a);
          respond(listener, id, allow);
          if (a == policy::Answer::allow_session || a == policy::Answer::allow_always) {
            s->allowed_for_session.insert(key);
          } else if (!allow) {
            remember_denied(s->denied_recently, key);
          }
          s->stats.denied += allow ? 0 : 1;
          try {
            audit::Event ev = exec_event(pid, c, allow ? "allow" : "deny");
            ev.str("answer", policy::to_string(a));
            if (v.rule >= 0) {
              ev.str("rule", s->spec.policy.rules()[static_cast<size_t>(v.rule)].describe());
            }
            s->sink->emit(ev);
          } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory; answered already
          }
        });
  } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory: unanswered, the kernel holds
    respond(listener, req.id, state_->spec.policy.empty());
  }
}

}  // namespace agentbox::sandbox
