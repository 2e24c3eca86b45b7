// The exec guard (theory of operation: include/agentbox/sandbox/exec_guard.hpp).
#include "agentbox/sandbox/exec_guard.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <map>

#include "agentbox/base/unique_fd.hpp"

namespace agentbox::sandbox {

using base::Error;
using base::Result;
using base::Status;
using base::UniqueFd;

namespace {

constexpr size_t kPage = 4096;
// argv pointers read at once, and the first bytes of each of their strings, read together with
// one process_vm_readv: a typical exec's argv costs two reads of the caller's memory.
constexpr size_t kBatch = 64;
constexpr size_t kFirstBytes = 256;

size_t page_rest(uint64_t addr) {
  return kPage - static_cast<size_t>(addr % kPage);
}

void* remote(uint64_t addr) {
  return reinterpret_cast<void*>(addr);  // NOLINT(performance-no-int-to-ptr): in the caller
}

Error read_error(ssize_t n) {
  return Error::sys(n < 0 ? errno : EIO, "process_vm_readv", "the caller's memory");
}

// Appends the rest of the NUL-terminated string at `addr` to `out`, `out` at most `max` bytes;
// reads never cross a page so an unmapped next page is not an error when the string ends
// before it.
Status read_rest(pid_t pid, uint64_t addr, size_t max, std::string& out, bool* cut) {
  while (out.size() < max) {
    const size_t want = std::min(page_rest(addr), max - out.size());
    const size_t old = out.size();
    out.resize(old + want);
    iovec l{.iov_base = out.data() + old, .iov_len = want};
    iovec r{.iov_base = remote(addr), .iov_len = want};
    ssize_t n = ::process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (n <= 0) {
      return read_error(n);
    }
    const auto* nul = static_cast<const char*>(std::memchr(out.data() + old, 0, size_t(n)));
    if (nul != nullptr) {
      out.resize(static_cast<size_t>(nul - out.data()));
      return {};
    }
    out.resize(old + static_cast<size_t>(n));
    addr += static_cast<uint64_t>(n);
  }
  *cut = true;
  return {};
}

// Pieces of the caller's memory, none crossing a page, read back to back into one buffer with
// one process_vm_readv; got(i) is what of piece i arrived (short from the first piece the
// kernel could not read on: those are read again one by one).
class Pieces {
 public:
  void add(uint64_t addr, size_t len) {
    local_[n_] = {.iov_base = buf_.data() + used_, .iov_len = len};
    remote_[n_++] = {.iov_base = remote(addr), .iov_len = len};
    used_ += len;
  }
  void read(pid_t pid) {
    if (n_ == 0) {
      return;
    }
    ssize_t n = ::process_vm_readv(pid, local_.data(), n_, remote_.data(), n_, 0);
    total_ = n < 0 ? 0 : static_cast<size_t>(n);
  }
  [[nodiscard]] std::string_view got(size_t i) const {
    const size_t off = static_cast<size_t>(static_cast<char*>(local_[i].iov_base) - buf_.data());
    const size_t len = off >= total_ ? 0 : std::min(local_[i].iov_len, total_ - off);
    return {buf_.data() + off, len};
  }

 private:
  std::array<char, kBatch * kFirstBytes> buf_{};
  std::array<iovec, kBatch> local_{};
  std::array<iovec, kBatch> remote_{};
  size_t n_ = 0;
  size_t used_ = 0;
  size_t total_ = 0;
};

// One string from its first bytes (`first`, read at `addr`): complete when they hold its NUL,
// else read on from where they end; at most `max` bytes.
Result<std::string> finish_string(pid_t pid, uint64_t addr, std::string_view first, size_t max,
                                  bool* cut) {
  first = first.substr(0, max);
  if (auto nul = first.find('\0'); nul != std::string_view::npos) {
    return std::string(first.substr(0, nul));
  }
  std::string out(first);
  AGENTBOX_TRY(read_rest(pid, addr + out.size(), max, out, cut));
  return out;
}

// The bytes of argv pointers read at once from `at`: up to kBatch, never past its page unless
// one pointer straddles it.
size_t pointer_bytes(uint64_t at) {
  return std::max(sizeof(uint64_t), std::min(page_rest(at), kBatch * sizeof(uint64_t)));
}

// Up to kBatch argv pointers from argv[i] on; how many were read, 0 on error.
size_t read_pointers(pid_t pid, uint64_t argv_ptr, size_t i, std::array<uint64_t, kBatch>& p) {
  const uint64_t at = argv_ptr + i * sizeof(uint64_t);
  iovec l{.iov_base = p.data(), .iov_len = pointer_bytes(at)};
  iovec r{.iov_base = remote(at), .iov_len = l.iov_len};
  ssize_t n = ::process_vm_readv(pid, &l, 1, &r, 1, 0);
  return n <= 0 ? 0 : static_cast<size_t>(n) / sizeof(uint64_t);
}

// argv[0..] into call.argv, bounded by kMaxArgs and kMaxBytes: a batch of pointers, then the
// first bytes of all their strings at once. The first `prefetched` pointers are in `ptrs`.
Status read_argv(pid_t pid, uint64_t argv_ptr, std::array<uint64_t, kBatch>& ptrs,
                 size_t prefetched, policy::ExecCall& call) {
  size_t budget = ExecGuard::kMaxBytes;
  for (size_t i = 0; argv_ptr != 0;) {
    const size_t got =
        i == 0 && prefetched > 0 ? prefetched : read_pointers(pid, argv_ptr, i, ptrs);
    if (got == 0) {
      return Error::sys(errno == 0 ? EIO : errno, "process_vm_readv", "argv");
    }
    size_t k = 0;
    while (k < got && ptrs[k] != 0 && i + k < ExecGuard::kMaxArgs) {
      ++k;
    }
    Pieces first;
    for (size_t j = 0; j < k; ++j) {
      first.add(ptrs[j], std::min(page_rest(ptrs[j]), kFirstBytes));
    }
    first.read(pid);
    for (size_t j = 0; j < k; ++j) {
      if (budget == 0) {
        call.truncated = true;
        return {};
      }
      bool cut = false;
      AGENTBOX_ASSIGN_OR_RETURN(std::string a,
                                finish_string(pid, ptrs[j], first.got(j), budget, &cut));
      budget -= std::min(budget, a.size() + 1);
      call.truncated = call.truncated || cut;
      call.argv.push_back(std::move(a));
    }
    i += k;
    if (k < got) {  // a NULL pointer, or the bound on pointers
      call.truncated = call.truncated || ptrs[k] != 0;
      return {};
    }
  }
  return {};
}

Result<std::string> link_text(const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) {
    return Error::sys(errno, "readlink", path);
  }
  return std::string(buf, static_cast<size_t>(n));
}

// The box's root as the caller sees it: an fd that stays valid when the caller is gone.
UniqueFd open_root(pid_t pid) {
  return UniqueFd(
      ::open(fmt::format("/proc/{}/root", pid).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
}

// `abs` (box view) with every symlink and `..` resolved inside the box's root; "" if it cannot
// be (the file is gone, a memfd, a path over PATH_MAX).
std::string resolve_in_box(int root, const std::string& abs) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  UniqueFd f(static_cast<int>(::syscall(SYS_openat2, root, abs.c_str(), &how, sizeof how)));
  if (!f) {
    return {};
  }
  // The link text of an fd is its path from the reader's root, or, when that root cannot be
  // reached (the box's mounts live in another namespace), from the root of the box's own tree:
  // the path the box sees.
  auto text = link_text(fmt::format("/proc/self/fd/{}", f.get()));
  return text ? *text : std::string();
}

// Everything of an exec that must be read while the caller is held: path and argv as given,
// the cwd; returns the absolute box path to resolve ("" when there is none).
Result<std::string> read_exec_args(pid_t pid, const seccomp_data& data, policy::ExecCall& call) {
  const bool at = data.nr == __NR_execveat;
  const uint64_t path_ptr = at ? data.args[1] : data.args[0];
  const uint64_t argv_ptr = at ? data.args[2] : data.args[1];
  // The path's first bytes and argv's first pointers with one read; what it missed, on its own.
  std::array<char, kFirstBytes> head{};
  std::array<uint64_t, kBatch> ptrs{};
  std::array<iovec, 2> l{
      {{.iov_base = head.data(), .iov_len = std::min(page_rest(path_ptr), kFirstBytes)},
       {.iov_base = ptrs.data(), .iov_len = pointer_bytes(argv_ptr)}}};
  std::array<iovec, 2> r{{{.iov_base = remote(path_ptr), .iov_len = l[0].iov_len},
                          {.iov_base = remote(argv_ptr), .iov_len = l[1].iov_len}}};
  const ssize_t n =
      ::process_vm_readv(pid, l.data(), argv_ptr != 0 ? 2 : 1, r.data(), argv_ptr != 0 ? 2 : 1, 0);
  const size_t total = n < 0 ? 0 : static_cast<size_t>(n);
  const size_t prefetched = total > l[0].iov_len ? (total - l[0].iov_len) / sizeof(uint64_t) : 0;
  bool cut = false;
  AGENTBOX_ASSIGN_OR_RETURN(
      call.given,
      finish_string(pid, path_ptr, {head.data(), std::min(total, l[0].iov_len)}, PATH_MAX, &cut));
  AGENTBOX_TRY(read_argv(pid, argv_ptr, ptrs, prefetched, call));
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
  if (abs.empty() || abs[0] != '/') {
    abs.clear();
  }
  return abs;
}

}  // namespace

Result<policy::ExecCall> read_exec_call(pid_t pid, const seccomp_data& data) {
  policy::ExecCall call;
  AGENTBOX_ASSIGN_OR_RETURN(std::string abs, read_exec_args(pid, data, call));
  if (!abs.empty()) {
    if (UniqueFd root = open_root(pid)) {
      call.path = resolve_in_box(root.get(), abs);
    }
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

// False when the caller is gone: it died or was interrupted meanwhile (a signal restarts its
// execve, which notifies anew). True proves it was held from the notification until now, so
// its pid was not reused and what was read from /proc/PID was its own (as NOTIF_ID_VALID would).
bool respond(int listener, uint64_t id, bool allow) noexcept {
  seccomp_notif_resp resp{};
  resp.id = id;
  resp.error = allow ? 0 : -EACCES;
  resp.flags = allow ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
  return ::ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0;
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

audit::Event unreadable_event(pid_t pid, const Error& e, bool allowed) {
  audit::Event ev("exec");
  ev.num("pid", pid).str("verdict", allowed ? "allow" : "deny");
  ev.str("reason", "argv unreadable: " + e.message());
  return ev;
}

}  // namespace

// No rule can match: the caller runs on as soon as what names its exec is copied out of it
// (path and argv as given, cwd, an fd of its root); the path is resolved and the line emitted
// after it continues, off the exec's latency.
void ExecGuard::log_after_continuing(int listener, const seccomp_notif& req) {
  State& st = *state_;
  const auto pid = static_cast<pid_t>(req.pid);
  if (!st.spec.log) {
    respond(listener, req.id, true);
    return;
  }
  policy::ExecCall call;
  auto abs = read_exec_args(pid, req.data, call);
  UniqueFd root = abs && !abs->empty() ? open_root(pid) : UniqueFd();
  if (!respond(listener, req.id, true)) {
    return;  // gone: what was read may be another process's
  }
  if (!abs) {
    st.sink->emit(unreadable_event(pid, abs.error(), true));
    return;
  }
  if (root) {
    call.path = resolve_in_box(root.get(), *abs);
  }
  st.sink->emit(exec_event(pid, call, "allow"));
}

void ExecGuard::on_exec(int listener, const seccomp_notif& req) noexcept {
  try {
    State& st = *state_;
    ++st.stats.execs;
    if (st.spec.policy.empty()) {
      log_after_continuing(listener, req);
      return;
    }
    auto call = read_exec_call(static_cast<pid_t>(req.pid), req.data);
    if (!call) {
      if (respond(listener, req.id, false)) {
        ++st.stats.denied;
        st.sink->emit(unreadable_event(static_cast<pid_t>(req.pid), call.error(), false));
      }
      return;
    }
    policy::ExecVerdict v = st.spec.policy.decide(*call);
    std::string key;
    if (v.action == policy::ExecAction::ask) {
      key = fmt::format("{}\n{}", call->path, policy::shell_quote(call->argv));
      if (st.allowed_for_session.contains(key)) {
        v = {policy::ExecAction::allow, v.rule, v.reason + ", allowed for this session"};
      } else if (recently_denied(st.denied_recently, key)) {
        v = {policy::ExecAction::deny, v.rule, v.reason + ": denied moments ago, not asked again"};
      } else if (st.spec.approver == nullptr) {
        v = {policy::ExecAction::deny, v.rule, v.reason + ": no approver"};
      }
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
        if (!respond(listener, req.id, allow)) {
          return;  // gone: what was read may be another process's
        }
        st.stats.denied += allow ? 0 : 1;
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
    // Held for a person: checked first that the pid we read is still the caller that stopped.
    if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) != 0) {
      return;
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
