// seccomp: compiles the box's syscall filter (libseccomp, exported as BPF), loads it in the child,
// and answers user notifications in the supervisor. See seccomp.hpp for the theory of operation.
#include "agentbox/sandbox/seccomp.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "agentbox/base/log.hpp"
#include "agentbox/base/scope_exit.hpp"
#include "agentbox/base/sys.hpp"

namespace agentbox::sandbox {
namespace {

using base::Error;
using base::Result;
using base::Status;

#ifndef CLONE_NEWTIME
constexpr uint64_t CLONE_NEWTIME = 0x00000080;
#endif

// CLONE_NEW* flags readable in clone(2)'s first argument. CLONE_NEWTIME (0x80) is absent: in
// clone(2) that bit belongs to the exit signal; it only means NEWTIME to unshare(2) and clone3.
constexpr uint64_t kCloneNewFlags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                       CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};

// Denied unconditionally: kernel attack surface or host state an agent never needs.
constexpr const char* kAlwaysDenied[] = {
    "bpf", "userfaultfd", "keyctl", "add_key", "request_key",
    // io_uring operations bypass seccomp entirely (they run in kernel workers).
    "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms",
    "query_module", "acct", "swapon", "swapoff", "reboot", "settimeofday", "clock_settime",
    "adjtimex", "clock_adjtime", "stime",
    // file handles bypass path-based checks (the "shocker" container escape).
    "name_to_handle_at", "open_by_handle_at", "vmsplice", "quotactl", "quotactl_fd", "iopl",
    "ioperm", "modify_ldt", "syslog", "lookup_dcookie", "nfsservctl", "uselib", "_sysctl", "ustat",
    "sysfs", "vhangup",
    // Changes the caller's LSM context (the syscall twin of writing /proc/self/attr/*).
    "lsm_set_self_attr",
    // Sets inode flags and project ids by path, without opening the file Landlock would check.
    "file_setattr"};

// Syscalls newer than Debian 12's libseccomp (2.5.4 names nothing past futex_requeue, 456), by
// number. From 424 on every architecture shares the asm-generic numbers, so one table serves
// x86_64 and aarch64. Each one was reviewed and placed: allowed (not listed in a deny list below)
// or in a group. Anything above the last row is unknown to this build: ENOSYS (see kCeiling).
struct NewSyscall {
  const char* name;
  int nr;
};
constexpr NewSyscall kNewSyscalls[] = {
    {"statmount", 457},         {"listmount", 458},        {"lsm_get_self_attr", 459},
    {"lsm_set_self_attr", 460}, {"lsm_list_modules", 461}, {"mseal", 462},
    {"setxattrat", 463},        {"getxattrat", 464},       {"listxattrat", 465},
    {"removexattrat", 466},     {"open_tree_attr", 467},   {"file_getattr", 468},
    {"file_setattr", 469}};

constexpr const char* kPtraceGroup[] = {"ptrace",          "process_vm_readv", "process_vm_writev",
                                        "process_madvise", "pidfd_getfd",      "kcmp"};
constexpr const char* kPerfGroup[] = {"perf_event_open"};
// open_tree_attr (6.15) is open_tree plus mount_setattr in one call; statmount/listmount (6.8)
// read the mount tree by id (the box's /proc/self/mountinfo tells it the same, nothing more).
constexpr const char* kMountFamily[] = {
    "mount",      "umount2",  "open_tree", "open_tree_attr", "move_mount",
    "fsopen",     "fsconfig", "fsmount",   "fspick",         "mount_setattr",
    "pivot_root", "chroot",   "setns",     "statmount",      "listmount"};

}  // namespace

std::string_view seccomp_group_of(std::string_view syscall) {
  auto in = [&](const auto& list) {
    return std::any_of(std::begin(list), std::end(list),
                       [&](const char* n) { return syscall == n; });
  };
  if (in(kPtraceGroup)) {
    return "ptrace";
  }
  if (in(kPerfGroup)) {
    return "perf";
  }
  // clone and unshare are refused for their CLONE_NEW* flags only.
  if (in(kMountFamily) || syscall == "unshare" || syscall == "clone") {
    return "userns";
  }
  return {};
}

namespace {

// The number for `name`: libseccomp's, else kNewSyscalls' (-1: not a syscall of this ABI).
int syscall_number(const char* name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr >= 0) {
    return nr;
  }
  for (const auto& s : kNewSyscalls) {
    if (std::strcmp(s.name, name) == 0) {
      return s.nr;
    }
  }
  return -1;  // __NR_SCMP_ERROR, or a pseudo number: not a syscall of the native ABI
}

// The ceiling prologue, in front of libseccomp's program (classic BPF jumps only forward, so
// prepending leaves its offsets intact). From 424 on every architecture but alpha and mips
// numbers new syscalls alike, so one ceiling serves them all. For the native ABI, a number above
// `ceiling` returns ENOSYS before any rule runs: a syscall added to a later kernel is not executed
// until a build has reviewed it. Other architectures (i386 via int 0x80) and x32 numbers (bit 30 of
// the x86_64 ABI) fall through to libseccomp's bad-arch action, which kills.
std::vector<sock_filter> ceiling_prologue(uint32_t ceiling) {
#if defined(__alpha__) || defined(__mips__)
#error \
    "agentbox: alpha and mips number syscalls apart from asm-generic; give kSyscallCeiling theirs"
#endif
  // The native audit arch (libseccomp's arch tokens are the AUDIT_ARCH_* values).
  std::vector<sock_filter> p = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, seccomp_arch_native(), 0, 0),  // jf set below
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
  };
#if defined(__x86_64__)
  constexpr uint32_t kX32Bit = 0x40000000;
  p.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, 2, 0));  // x32: on to bad-arch
#endif
  p.push_back(BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, ceiling, 0, 1));
  p.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
  p[1].jf = static_cast<uint8_t>(p.size() - 2);  // a foreign arch: to libseccomp's first insn
  return p;
}

// Address families a coding agent uses. AF_NETLINK only as NETLINK_ROUTE (ip addr, getifaddrs).
bool family_allowed(int family) {
  return family == AF_UNIX || family == AF_INET || family == AF_INET6 || family == AF_NETLINK;
}

class Builder {
 public:
  Builder(scmp_filter_ctx ctx, uint32_t deny) : ctx_(ctx), deny_(deny) {}

  // Adds `action` for syscall `name` when all `args` match. Syscalls the native ABI lacks are
  // skipped (iopl on arm64, ...).
  Status add(const char* name, uint32_t action, std::initializer_list<scmp_arg_cmp> args = {}) {
    int nr = syscall_number(name);
    if (nr < 0) {
      return base::ok();
    }
    std::vector<scmp_arg_cmp> v(args);
    int rc = seccomp_rule_add_exact_array(ctx_, action, nr, static_cast<unsigned>(v.size()),
                                          v.empty() ? nullptr : v.data());
    if (rc < 0) {
      return Error::sys(-rc, "seccomp_rule_add", name);
    }
    return base::ok();
  }
  Status deny(const char* name, std::initializer_list<scmp_arg_cmp> args = {}) {
    return add(name, deny_, args);
  }

 private:
  scmp_filter_ctx ctx_;
  uint32_t deny_;
};

Status add_namespace_rules(Builder& b) {
  for (uint64_t flag : kCloneNewFlags) {
    AGENTBOX_TRY(b.deny("clone", {SCMP_A0_64(SCMP_CMP_MASKED_EQ, flag, flag)}));
    AGENTBOX_TRY(b.deny("unshare", {SCMP_A0_64(SCMP_CMP_MASKED_EQ, flag, flag)}));
  }
  AGENTBOX_TRY(b.deny("unshare", {SCMP_A0_64(SCMP_CMP_MASKED_EQ, CLONE_NEWTIME, CLONE_NEWTIME)}));
  for (const char* name : kMountFamily) {
    AGENTBOX_TRY(b.deny(name));
  }
  return base::ok();
}

// personality(2): only PER_LINUX (0) and the query 0xffffffff. libseccomp allows one comparison
// per argument per rule, so "x != 0 && x != 0xffffffff" is spelled over the low 32 bits the
// kernel reads: x has a lowest clear bit k >= 1 (bits 0..k-1 set, so x != 0), or x is even and has
// a lowest set bit m >= 1 (so x != 0xffffffff). 62 masked rules, evaluated only for personality.
Status add_personality_rules(Builder& b) {
  for (int k = 1; k < 32; ++k) {
    uint64_t mask = (uint64_t{1} << (k + 1)) - 1;
    uint64_t ones = (uint64_t{1} << k) - 1;
    AGENTBOX_TRY(b.deny("personality", {SCMP_A0_64(SCMP_CMP_MASKED_EQ, mask, ones)}));
    uint64_t bit = uint64_t{1} << k;
    AGENTBOX_TRY(b.deny("personality", {SCMP_A0_64(SCMP_CMP_MASKED_EQ, mask, bit)}));
  }
  return base::ok();
}

Status add_socket_rules(Builder& b) {
  for (const char* call : {"socket", "socketpair"}) {
    // Families are ints; any value with high bits set is > AF_NETLINK and denied.
    AGENTBOX_TRY(b.deny(call, {SCMP_A0_64(SCMP_CMP_GT, AF_NETLINK)}));
    for (int family = 0; family < AF_NETLINK; ++family) {
      if (!family_allowed(family)) {
        AGENTBOX_TRY(b.deny(call, {SCMP_A0_64(SCMP_CMP_EQ, static_cast<uint64_t>(family))}));
      }
    }
    for (int family : {AF_INET, AF_INET6}) {
      for (int type : {SOCK_RAW, SOCK_PACKET}) {
        // SOCK_NONBLOCK/SOCK_CLOEXEC live above the type mask (0xf).
        AGENTBOX_TRY(
            b.deny(call, {SCMP_A0_64(SCMP_CMP_EQ, static_cast<uint64_t>(family)),
                          SCMP_A1_64(SCMP_CMP_MASKED_EQ, 0xf, static_cast<uint64_t>(type))}));
      }
    }
    AGENTBOX_TRY(b.deny(
        call, {SCMP_A0_64(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2_64(SCMP_CMP_NE, NETLINK_ROUTE)}));
  }
  return base::ok();
}

Result<std::vector<sock_filter>> build(const std::set<std::string>& allow, uint32_t deny,
                                       SeccompLayout layout, uint32_t ceiling) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) {
    return Error::msg("seccomp_init failed");
  }
  auto release = base::ScopeExit([&] { seccomp_release(ctx); });
  // Only the native ABI is in the filter: i386 (int 0x80) and x32 syscalls hit the bad-arch
  // action. libseccomp also routes x32 syscall numbers (bit 30) of the x86_64 ABI there.
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc < 0) {
    return Error::sys(-rc, "seccomp_attr_set", "SCMP_FLTATR_ACT_BADARCH");
  }
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); rc < 0) {
    return Error::sys(-rc, "seccomp_attr_set", "SCMP_FLTATR_CTL_NNP");
  }
  // libseccomp < 2.5 has no binary tree: the linear layout is as correct, only longer.
  if (layout == SeccompLayout::kTree) {
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  }
  Builder b(ctx, deny);
  for (const char* name : kAlwaysDenied) {
    AGENTBOX_TRY(b.deny(name));
  }
  // clone3 passes its flags behind a pointer seccomp cannot read: ENOSYS makes glibc (>= 2.34) and
  // musl fall back to clone(2), whose flags the namespace rules inspect. Never notified: glibc
  // tries it on every pthread_create.
  AGENTBOX_TRY(b.add("clone3", SCMP_ACT_ERRNO(ENOSYS)));
  if (!allow.contains("userns")) {
    AGENTBOX_TRY(add_namespace_rules(b));
  }
  if (!allow.contains("ptrace")) {
    for (const char* name : kPtraceGroup) {
      AGENTBOX_TRY(b.deny(name));
    }
  }
  if (!allow.contains("perf")) {
    for (const char* name : kPerfGroup) {
      AGENTBOX_TRY(b.deny(name));
    }
  }
  // Terminal injection: the request number is an unsigned int; compare only the low 32 bits so
  // 0xdeadbeef00005412 cannot slip past (CVE-2017-5226 style).
  for (uint64_t req : {uint64_t{TIOCSTI}, uint64_t{TIOCLINUX}}) {
    AGENTBOX_TRY(b.deny("ioctl", {SCMP_A1_64(SCMP_CMP_MASKED_EQ, 0xffffffffULL, req)}));
  }
  AGENTBOX_TRY(add_personality_rules(b));
  AGENTBOX_TRY(add_socket_rules(b));

  base::UniqueFd mem(memfd_create("agentbox-seccomp", MFD_CLOEXEC));
  if (!mem) {
    return Error::sys(errno, "memfd_create", "agentbox-seccomp");
  }
  if (int rc = seccomp_export_bpf(ctx, mem.get()); rc < 0) {
    return Error::sys(-rc, "seccomp_export_bpf");
  }
  if (lseek(mem.get(), 0, SEEK_SET) != 0) {
    return Error::sys(errno, "lseek", "agentbox-seccomp");
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string bytes, base::read_all(mem.get(), 1u << 20));
  if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0 ||
      bytes.size() / sizeof(sock_filter) > BPF_MAXINSNS) {
    return Error::msg("seccomp_export_bpf produced " + std::to_string(bytes.size()) +
                      " bytes, not a loadable program");
  }
  std::vector<sock_filter> prog = ceiling_prologue(ceiling);
  size_t head = prog.size();
  prog.resize(head + bytes.size() / sizeof(sock_filter));
  std::memcpy(prog.data() + head, bytes.data(), bytes.size());
  if (prog.size() > BPF_MAXINSNS) {
    return Error::msg("seccomp program of " + std::to_string(prog.size()) + " instructions");
  }
  return prog;
}

}  // namespace

std::vector<sock_filter> with_exec_notify(std::vector<sock_filter> prog, uint64_t cookie) {
  // Classic BPF jumps forward only; the original program follows unchanged (it loads the arch
  // again), so a foreign arch or an x32 number (bit 30: never equal to a native number) falls
  // through to its bad-arch action.
  constexpr uint32_t kArg5 = offsetof(seccomp_data, args) + 5 * sizeof(uint64_t);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  constexpr uint32_t kLo = kArg5;
  constexpr uint32_t kHi = kArg5 + 4;
#else
  constexpr uint32_t kLo = kArg5 + 4;
  constexpr uint32_t kHi = kArg5;
#endif
  const std::vector<sock_filter> head = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, seccomp_arch_native(), 0, 9),  // -> 11
      /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 5, 0),  // -> 9
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 0, 6),    // -> 11
      /* 5 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kLo),
      /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(cookie), 0, 2),  // -> 9
      /* 7 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kHi),
      /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(cookie >> 32), 1, 0),
      /* 9 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
      /* 10 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  prog.insert(prog.begin(), head.begin(), head.end());
  return prog;
}

namespace {

int seccomp_syscall(unsigned op, unsigned flags, const std::vector<sock_filter>& insns) noexcept {
  sock_fprog prog{.len = static_cast<unsigned short>(insns.size()),
                  .filter = const_cast<sock_filter*>(insns.data())};  // NOLINT: the kernel reads
  return static_cast<int>(syscall(SYS_seccomp, op, flags, &prog));
}

const char* new_syscall_name(int nr) {
  for (const auto& s : kNewSyscalls) {
    if (s.nr == nr) {
      return s.name;
    }
  }
  return nullptr;
}

}  // namespace

const std::vector<std::string>& known_seccomp_groups() {
  static const std::vector<std::string> groups = {"perf", "ptrace", "userns"};
  return groups;
}

Status check_seccomp_groups(const std::set<std::string>& allow_groups) {
  const auto& known = known_seccomp_groups();
  for (const auto& g : allow_groups) {
    if (std::find(known.begin(), known.end(), g) == known.end()) {
      return Error::msg("unknown seccomp group `" + g + "`")
          .hint("known groups: perf, ptrace, userns");
    }
  }
  return base::ok();
}

std::vector<sock_filter> notify_to_errno(std::vector<sock_filter> prog) {
  for (auto& insn : prog) {
    if (insn.code == (BPF_RET | BPF_K) && insn.k == SECCOMP_RET_USER_NOTIF) {
      insn.k = SECCOMP_RET_ERRNO | EPERM;
    }
  }
  return prog;
}

Result<std::vector<sock_filter>> compile_seccomp_with(const std::set<std::string>& allow_groups,
                                                      bool notify, SeccompLayout layout,
                                                      uint32_t ceiling) {
  AGENTBOX_TRY(check_seccomp_groups(allow_groups));
  return build(allow_groups, notify ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(EPERM), layout, ceiling);
}

int send_fd(int sock, int fd) noexcept {
  char byte = 'F';
  iovec iov{.iov_base = &byte, .iov_len = 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n = base::retry_eintr([&] { return sendmsg(sock, &msg, MSG_NOSIGNAL); });
  return n == 1 ? 0 : errno;
}

Result<base::UniqueFd> receive_fd(int sock) {
  char byte = 0;
  iovec iov{.iov_base = &byte, .iov_len = 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = base::retry_eintr([&] { return recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); });
  if (n < 0) {
    return Error::sys(errno, "recvmsg", "seccomp listener");
  }
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (n == 0 || c == nullptr || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
      c->cmsg_len != CMSG_LEN(sizeof(int)) || (msg.msg_flags & MSG_CTRUNC) != 0) {
    return Error::msg("no seccomp listener fd received (the box failed before loading its filter)");
  }
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return base::UniqueFd(fd);
}

int load_seccomp(const SeccompProgram& program, int notify_socket, SeccompMode* mode) noexcept {
  if (notify_socket >= 0) {
    int listener =
        seccomp_syscall(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, program.notify);
    if (listener >= 0) {
      // Until the listener is closed here, a denied call would wait for an answer nobody gives:
      // nothing between load and close makes one. After the close, only the supervisor holds it.
      int err = send_fd(notify_socket, listener);
      close(listener);
      if (mode != nullptr) {
        *mode = SeccompMode::kNotified;
      }
      return err;
    }
    if (errno != EBUSY || program.exec_required) {
      return errno;  // EBUSY with exec rules: rules nobody could enforce stop the start
    }
    // EBUSY: an enclosing filter already has a listener (agentbox inside agentbox).
  }
  if (seccomp_syscall(SECCOMP_SET_MODE_FILTER, 0, program.errno_only) != 0) {
    return errno;
  }
  if (mode != nullptr) {
    *mode = SeccompMode::kErrnoOnly;
  }
  return 0;
}

// ---- supervisor side ------------------------------------------------------------------------

Result<DenialMonitor> DenialMonitor::create(base::UniqueFd listener, audit::Sink& sink) {
  seccomp_notif* req = nullptr;
  seccomp_notif_resp* resp = nullptr;
  if (int rc = seccomp_notify_alloc(&req, &resp); rc != 0) {
    return Error::sys(-rc, "seccomp_notify_alloc");
  }
  if (int flags = fcntl(listener.get(), F_GETFL);
      flags < 0 || fcntl(listener.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    int err = errno;
    seccomp_notify_free(req, resp);
    return Error::sys(err, "fcntl", "seccomp listener");
  }
  return DenialMonitor(std::move(listener), sink, req, resp);
}

DenialMonitor::DenialMonitor(base::UniqueFd listener, audit::Sink& sink, seccomp_notif* req,
                             seccomp_notif_resp* resp)
    : listener_(std::move(listener)), sink_(&sink), req_(req), resp_(resp) {}

DenialMonitor::DenialMonitor(DenialMonitor&& other) noexcept
    : listener_(std::move(other.listener_)),
      sink_(other.sink_),
      req_(std::exchange(other.req_, nullptr)),
      resp_(std::exchange(other.resp_, nullptr)),
      denied_(other.denied_),
      by_name_(std::move(other.by_name_)) {}

DenialMonitor::~DenialMonitor() {
  if (req_ != nullptr || resp_ != nullptr) {
    seccomp_notify_free(req_, resp_);
  }
}

bool DenialMonitor::on_readable() noexcept {
  // Bounded: one wake-up answers at most 256 calls, then yields to the rest of the loop.
  for (int i = 0; i < 256; ++i) {
    pollfd p{.fd = listener_.get(), .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 0) <= 0) {
      return true;
    }
    if ((p.revents & POLLIN) != 0) {
      handle_one();
      continue;
    }
    // POLLHUP: every task using the filter has exited.
    return (p.revents & (POLLHUP | POLLERR | POLLNVAL)) == 0;
  }
  return true;
}

void DenialMonitor::handle_one() noexcept {
  std::memset(req_, 0, sizeof(*req_));  // the kernel insists on a zeroed buffer
  if (seccomp_notify_receive(listener_.get(), req_) != 0) {
    return;  // ENOENT: the caller died (or was signalled) before we read it
  }
  if (exec_ != nullptr && req_->data.arch == seccomp_arch_native() &&
      (req_->data.nr == __NR_execve || req_->data.nr == __NR_execveat)) {
    exec_->on_exec(listener_.get(), *req_);
    return;
  }
  // Collect what we audit while the caller is still blocked, then check the id is still live so
  // a recycled pid cannot lend us another program's exe.
  std::string exe;
  char path[64];
  char buf[4096];
  std::snprintf(path, sizeof(path), "/proc/%u/exe", req_->pid);
  ssize_t n = readlink(path, buf, sizeof(buf));
  if (n > 0) {
    exe.assign(buf, static_cast<size_t>(n));
  }
  bool live = seccomp_notify_id_valid(listener_.get(), req_->id) == 0;
  resp_->id = req_->id;
  resp_->val = 0;
  resp_->error = -EPERM;
  resp_->flags = 0;
  (void)seccomp_notify_respond(listener_.get(), resp_);  // ENOENT: the caller is gone
  if (!live) {
    exe.clear();
  }
  try {
    std::string name;
    if (char* s = seccomp_syscall_resolve_num_arch(req_->data.arch, req_->data.nr)) {
      name = s;
      std::free(s);  // NOLINT: libseccomp hands out malloc'd strings
    } else if (const char* known = new_syscall_name(req_->data.nr)) {
      name = known;
    } else {
      name = "syscall_" + std::to_string(req_->data.nr);
    }
    ++denied_;
    uint64_t count = ++by_name_[name];
    if (count > kAuditBurst && count % 1024 != 0) {
      return;
    }
    audit::Event ev("seccomp.deny");
    ev.str("syscall", name).num("nr", req_->data.nr).num("pid", req_->pid).str("exe", exe);
    ev.num("arg0", static_cast<int64_t>(req_->data.args[0]));
    if (count > kAuditBurst) {
      ev.num("count", static_cast<int64_t>(count));
    }
    sink_->emit(ev);
  } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory; the call is answered already
  }
}

}  // namespace agentbox::sandbox
