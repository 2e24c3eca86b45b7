// seccomp filter: every deny rule, probed with harmless arguments in a forked child, with a control
// run without the filter that must give a different (kernel) answer.
#include "agentbox/sandbox/seccomp.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <set>
#include <thread>

#include "agentbox/audit/audit.hpp"
#include "child.hpp"
#include "testkit/skip.hpp"

namespace agentbox::sandbox {
namespace {

using testing::ChildResult;
using testing::describe;
using testing::errno_of;
using testing::run_in_child;

void* const kBad = reinterpret_cast<void*>(uintptr_t{8});  // never mapped: EFAULT if read

// What a probe may use: a pty whose slave is the child's controlling terminal.
struct Ctx {
  int slave = -1;
};

struct Case {
  const char* name;
  int filtered;  // errno with the filter (0: allowed)
  std::function<long(Ctx&)> call;
};

long sys(long nr, auto... args) {
  return syscall(nr, args...);
}

// clone(2)/unshare(2) flag probes: CLONE_THREAD without CLONE_SIGHAND (clone) and CLONE_PARENT
// (unshare) make the kernel refuse with EINVAL, so the control run creates nothing.
#define CLONE_CASES(flag)                                                                 \
  Case{"clone_" #flag, EPERM,                                                             \
       [](Ctx&) { return sys(SYS_clone, (flag) | CLONE_THREAD, 0, 0, 0, 0); }},           \
      Case {                                                                              \
    "unshare_" #flag, EPERM, [](Ctx&) { return sys(SYS_unshare, (flag) | CLONE_PARENT); } \
  }

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"mount", EPERM, [](Ctx&) { return sys(SYS_mount, kBad, kBad, kBad, 0, kBad); }},
      {"umount2", EPERM, [](Ctx&) { return sys(SYS_umount2, kBad, 0); }},
      {"open_tree", EPERM, [](Ctx&) { return sys(SYS_open_tree, -1, kBad, 0); }},
      {"move_mount", EPERM, [](Ctx&) { return sys(SYS_move_mount, -1, kBad, -1, kBad, 0); }},
      {"fsopen", EPERM, [](Ctx&) { return sys(SYS_fsopen, kBad, 0); }},
      {"fsconfig", EPERM, [](Ctx&) { return sys(SYS_fsconfig, -1, 0, nullptr, nullptr, 0); }},
      {"fsmount", EPERM, [](Ctx&) { return sys(SYS_fsmount, -1, 0, 0); }},
      {"fspick", EPERM, [](Ctx&) { return sys(SYS_fspick, -1, kBad, 0); }},
      {"mount_setattr", EPERM, [](Ctx&) { return sys(SYS_mount_setattr, -1, kBad, 0, kBad, 0); }},
      {"pivot_root", EPERM, [](Ctx&) { return sys(SYS_pivot_root, kBad, kBad); }},
      {"chroot", EPERM, [](Ctx&) { return sys(SYS_chroot, kBad); }},
      {"setns", EPERM, [](Ctx&) { return sys(SYS_setns, -1, 0); }},
      // Newer than Debian 12's libseccomp: placed by number (457..469, asm-generic numbering).
      {"open_tree_attr", EPERM, [](Ctx&) { return sys(467, -1, kBad, 0, kBad, 0); }},
      {"statmount", EPERM, [](Ctx&) { return sys(457, kBad, kBad, 64, 0); }},
      {"listmount", EPERM, [](Ctx&) { return sys(458, kBad, kBad, 1, 0); }},
      {"lsm_set_self_attr", EPERM, [](Ctx&) { return sys(460, 100, kBad, 64, 0); }},
      {"file_setattr", EPERM, [](Ctx&) { return sys(469, -1, kBad, kBad, 64, 0); }},
      CLONE_CASES(CLONE_NEWNS),
      CLONE_CASES(CLONE_NEWCGROUP),
      CLONE_CASES(CLONE_NEWUTS),
      CLONE_CASES(CLONE_NEWIPC),
      CLONE_CASES(CLONE_NEWUSER),
      CLONE_CASES(CLONE_NEWPID),
      CLONE_CASES(CLONE_NEWNET),
      {"unshare_CLONE_NEWTIME", EPERM, [](Ctx&) { return sys(SYS_unshare, 0x80 | CLONE_PARENT); }},
      {"clone_high_bits_newuser", EPERM,
       [](Ctx&) {
         return sys(SYS_clone, 0xff00000000UL | CLONE_NEWUSER | CLONE_THREAD, 0, 0, 0, 0);
       }},
      {"clone3", ENOSYS, [](Ctx&) { return sys(SYS_clone3, nullptr, 0); }},
      {"ptrace", EPERM, [](Ctx&) { return sys(SYS_ptrace, 16 /*ATTACH*/, -1, 0, 0); }},
      {"process_vm_readv", EPERM,
       [](Ctx&) { return sys(SYS_process_vm_readv, -1, kBad, 1, kBad, 1, 0); }},
      {"process_vm_writev", EPERM,
       [](Ctx&) { return sys(SYS_process_vm_writev, -1, kBad, 1, kBad, 1, 0); }},
      {"process_madvise", EPERM, [](Ctx&) { return sys(SYS_process_madvise, -1, kBad, 1, 0, 0); }},
      {"pidfd_getfd", EPERM, [](Ctx&) { return sys(SYS_pidfd_getfd, -1, 0, 0); }},
      {"kcmp", EPERM, [](Ctx&) { return sys(SYS_kcmp, -1, -1, 0, 0, 0); }},
      {"perf_event_open", EPERM, [](Ctx&) { return sys(SYS_perf_event_open, kBad, 0, -1, -1, 0); }},
      {"bpf", EPERM, [](Ctx&) { return sys(SYS_bpf, -1, nullptr, 0); }},
      {"userfaultfd", EPERM, [](Ctx&) { return sys(SYS_userfaultfd, ~0); }},
      {"keyctl", EPERM, [](Ctx&) { return sys(SYS_keyctl, -1, 0, 0, 0, 0); }},
      {"add_key", EPERM, [](Ctx&) { return sys(SYS_add_key, kBad, kBad, nullptr, 0, 0); }},
      {"request_key", EPERM, [](Ctx&) { return sys(SYS_request_key, kBad, kBad, nullptr, 0); }},
      {"io_uring_setup", EPERM, [](Ctx&) { return sys(SYS_io_uring_setup, 0, kBad); }},
      {"io_uring_enter", EPERM,
       [](Ctx&) { return sys(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0); }},
      {"io_uring_register", EPERM,
       [](Ctx&) { return sys(SYS_io_uring_register, -1, 0, nullptr, 0); }},
      {"kexec_load", EPERM, [](Ctx&) { return sys(SYS_kexec_load, 0, 0, nullptr, ~0UL); }},
      {"kexec_file_load", EPERM,
       [](Ctx&) { return sys(SYS_kexec_file_load, -1, -1, 0, nullptr, ~0UL); }},
      {"init_module", EPERM, [](Ctx&) { return sys(SYS_init_module, kBad, 0, kBad); }},
      {"finit_module", EPERM, [](Ctx&) { return sys(SYS_finit_module, -1, kBad, 0); }},
      {"delete_module", EPERM, [](Ctx&) { return sys(SYS_delete_module, kBad, 0); }},
      {"acct", EPERM, [](Ctx&) { return sys(SYS_acct, kBad); }},
      {"swapon", EPERM, [](Ctx&) { return sys(SYS_swapon, kBad, 0); }},
      {"swapoff", EPERM, [](Ctx&) { return sys(SYS_swapoff, kBad); }},
      {"reboot", EPERM, [](Ctx&) { return sys(SYS_reboot, 0, 0, 0, nullptr); }},
      {"settimeofday", EPERM, [](Ctx&) { return sys(SYS_settimeofday, kBad, kBad); }},
      {"clock_settime", EPERM, [](Ctx&) { return sys(SYS_clock_settime, -1, kBad); }},
      {"adjtimex", EPERM, [](Ctx&) { return sys(SYS_adjtimex, kBad); }},
      {"clock_adjtime", EPERM, [](Ctx&) { return sys(SYS_clock_adjtime, -1, kBad); }},
      {"name_to_handle_at", EPERM,
       [](Ctx&) { return sys(SYS_name_to_handle_at, -1, kBad, kBad, kBad, 0); }},
      {"open_by_handle_at", EPERM, [](Ctx&) { return sys(SYS_open_by_handle_at, -1, kBad, 0); }},
      {"vmsplice", EPERM, [](Ctx&) { return sys(SYS_vmsplice, -1, kBad, 1, 0); }},
      {"quotactl", EPERM, [](Ctx&) { return sys(SYS_quotactl, 0, kBad, 0, kBad); }},
      {"iopl", EPERM, [](Ctx&) { return sys(SYS_iopl, 99); }},
      {"ioperm", EPERM, [](Ctx&) { return sys(SYS_ioperm, ~0UL, 1, 1); }},
      {"modify_ldt", EPERM, [](Ctx&) { return sys(SYS_modify_ldt, 99, kBad, 0); }},
      {"syslog", EPERM, [](Ctx&) { return sys(SYS_syslog, -1, nullptr, 0); }},
      {"lookup_dcookie", EPERM, [](Ctx&) { return sys(SYS_lookup_dcookie, 0, kBad, 0); }},
      {"nfsservctl", EPERM, [](Ctx&) { return sys(SYS_nfsservctl, 0, 0, 0); }},
      {"uselib", EPERM, [](Ctx&) { return sys(SYS_uselib, kBad); }},
      {"personality_addr_no_randomize", EPERM,
       [](Ctx&) { return sys(SYS_personality, 0x0040000); }},
      {"personality_per_linux32", EPERM, [](Ctx&) { return sys(SYS_personality, 0x0008); }},
      {"personality_mmap_page_zero", EPERM, [](Ctx&) { return sys(SYS_personality, 0x0100000); }},
      {"personality_high_bits", EPERM, [](Ctx&) { return sys(SYS_personality, 0x100040000UL); }},
      {"personality_all_but_one", EPERM, [](Ctx&) { return sys(SYS_personality, 0xfffffffeUL); }},
      {"personality_query_allowed", 0, [](Ctx&) { return sys(SYS_personality, 0xffffffffUL); }},
      {"personality_linux_allowed", 0, [](Ctx&) { return sys(SYS_personality, 0); }},
      {"ioctl_tiocsti_high_bits", EPERM,
       [](Ctx& c) { return sys(SYS_ioctl, c.slave, 0xdeadbeef00005412UL, nullptr); }},
      {"ioctl_tiocsti", EPERM, [](Ctx& c) { return sys(SYS_ioctl, c.slave, TIOCSTI, nullptr); }},
      {"ioctl_tioclinux", EPERM,
       [](Ctx& c) { return sys(SYS_ioctl, c.slave, 0x100000000UL | TIOCLINUX, nullptr); }},
      {"ioctl_tiocgwinsz_allowed", 0,
       [](Ctx& c) {
         winsize ws{};
         return sys(SYS_ioctl, c.slave, TIOCGWINSZ, &ws);
       }},
      {"socket_af_packet", EPERM, [](Ctx&) { return long{socket(AF_PACKET, SOCK_RAW, 0)}; }},
      {"socket_inet_raw", EPERM,
       [](Ctx&) { return long{socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)}; }},
      {"socket_inet6_raw_flags", EPERM,
       [](Ctx&) {
         return long{socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6)};
       }},
      {"socket_netlink_audit", EPERM,
       [](Ctx&) { return long{socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT)}; }},
      {"socket_netlink_uevent", EPERM,
       [](Ctx&) { return long{socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)}; }},
      {"socket_af_key", EPERM, [](Ctx&) { return long{socket(AF_KEY, SOCK_RAW, 2)}; }},
      {"socket_af_alg", EPERM, [](Ctx&) { return long{socket(AF_ALG, SOCK_SEQPACKET, 0)}; }},
      {"socket_af_vsock", EPERM, [](Ctx&) { return long{socket(AF_VSOCK, SOCK_STREAM, 0)}; }},
      {"socket_high_bits_inet", EPERM,
       [](Ctx&) { return sys(SYS_socket, 0x100000002UL, SOCK_STREAM, 0); }},
      {"socketpair_af_packet", EPERM,
       [](Ctx&) {
         int sv[2];
         return long{socketpair(AF_PACKET, SOCK_RAW, 0, sv)};
       }},
      {"socket_inet_stream_allowed", 0, [](Ctx&) { return long{socket(AF_INET, SOCK_STREAM, 0)}; }},
      {"socket_inet6_dgram_allowed", 0, [](Ctx&) { return long{socket(AF_INET6, SOCK_DGRAM, 0)}; }},
      {"socket_unix_allowed", 0, [](Ctx&) { return long{socket(AF_UNIX, SOCK_STREAM, 0)}; }},
      {"socket_netlink_route_allowed", 0,
       [](Ctx&) { return long{socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)}; }},
      {"unshare_files_allowed", 0, [](Ctx&) { return sys(SYS_unshare, CLONE_FILES | CLONE_FS); }},
      {"fork_allowed", 0,
       [](Ctx&) {
         pid_t p = fork();
         if (p == 0) {
           _exit(0);
         }
         return p < 0 ? -1L : 0L;
       }},
  };
  return all;
}

class SeccompRule : public ::testing::TestWithParam<size_t> {
 protected:
  static void SetUpTestSuite() {
    auto p = compile_seccomp({});
    ASSERT_TRUE(p) << p.error().render();
    program_ = new SeccompProgram(std::move(p).value());
  }
  static void TearDownTestSuite() { delete program_; }

  // Runs case `c` in a child, with or without the filter. Exit code: errno (0: success).
  static ChildResult run(const Case& c, bool filtered) {
    return run_in_child([&] {
      // Unprivileged: probe as root of our own user, network and mount namespaces, so that
      // namespaced permission checks (AF_PACKET, fsopen, ...) pass and only the filter denies.
      if (geteuid() != 0 &&
          (!testing::become_root_in_userns() || unshare(CLONE_NEWNET | CLONE_NEWNS) != 0)) {
        return 203;
      }
      // A pty whose slave is our controlling terminal: TIOCSTI's own permission check passes,
      // so only the filter can make it EPERM.
      setsid();
      int master = posix_openpt(O_RDWR | O_NOCTTY);
      if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        return 200;
      }
      Ctx ctx;
      ctx.slave = open(ptsname(master), O_RDWR);
      if (ctx.slave < 0 || ioctl(ctx.slave, TIOCSCTTY, 0) != 0) {
        return 201;
      }
      if (filtered) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || load_seccomp(*program_, -1) != 0) {
          return 202;
        }
      }
      return errno_of(c.call(ctx));
    });
  }
  static SeccompProgram* program_;
};
SeccompProgram* SeccompRule::program_ = nullptr;

TEST_P(SeccompRule, DeniesWithErrnoAndControlDiffers) {
  const Case& c = cases()[GetParam()];
  ChildResult with = run(c, true);
  ChildResult without = run(c, false);
  ASSERT_TRUE(with.exited) << describe(with);
  ASSERT_TRUE(without.exited) << describe(without);
  ASSERT_LT(without.code, 200) << "control set-up failed";
  EXPECT_EQ(with.code, c.filtered) << "filtered: " << strerror(with.code);
  if (c.filtered != 0 && without.code == c.filtered && getuid() != 0) {
    testkit::skip(std::string("unprivileged, the kernel itself refuses ") + c.name +
                  " with the same errno; the root run proves this rule");
    return;
  }
  if (c.filtered != 0) {
    // A control that fails the same way proves nothing about the filter.
    EXPECT_NE(without.code, c.filtered)
        << "control without the filter also gives " << strerror(without.code);
  } else {
    EXPECT_EQ(without.code, 0) << "allowed call fails even without the filter";
  }
}

INSTANTIATE_TEST_SUITE_P(All, SeccompRule, ::testing::Range<size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& param) {
                           return std::string(cases()[param.param].name);
                         });

int load_errno_filter() {
  static SeccompProgram program = std::move(compile_seccomp({})).value();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return errno;
  }
  return load_seccomp(program, -1);
}

// int 0x80 from a 64-bit process is the i386 ABI: the filter's bad-arch action kills. The
// kernel's own SIGSEGV (no i386 entry) must kill too, not be caught by a sanitizer's handler.
int int80_getpid() {
  ::signal(SIGSEGV, SIG_DFL);
  long ret = 20;                                       // __NR_getpid on i386
  asm volatile("int $0x80" : "+a"(ret) : : "memory");  // NOLINT(hicpp-no-assembler)
  return ret > 0 ? 0 : 1;
}

TEST(SeccompArch, Int80IsKilled) {
  // The control must get through: getpid through the i386 ABI answers. A kernel without IA32
  // emulation faults on int 0x80 (SIGSEGV) by itself: nothing for the filter to stop there.
  ChildResult control = run_in_child([] { return int80_getpid(); });
  if (!control.exited && control.sig == SIGSEGV) {
    testkit::skip(testkit::Need::feature("IA32", "the i386 syscall ABI (int 0x80)"),
                  "int 0x80 faults without the filter too (no i386 syscall entry: IA32 "
                  "emulation off, or the hypervisor's)");
    return;
  }
  ASSERT_TRUE(control.exited && control.code == 0) << "control: " << describe(control);
  ChildResult r = run_in_child([] {
    if (load_errno_filter() != 0) {
      return 100;
    }
    return int80_getpid();
  });
  EXPECT_FALSE(r.exited) << describe(r);
  EXPECT_EQ(r.sig, SIGSYS) << describe(r);
}

TEST(SeccompArch, X32SyscallIsKilled) {
  constexpr long kX32Bit = 0x40000000;
  ChildResult control = run_in_child([] { return errno_of(syscall(kX32Bit | SYS_getpid)); });
  ASSERT_TRUE(control.exited) << describe(control);
  ChildResult r = run_in_child([] {
    if (load_errno_filter() != 0) {
      return 100;
    }
    return errno_of(syscall(kX32Bit | SYS_getpid));
  });
  EXPECT_EQ(r.sig, SIGSYS) << describe(r);  // the filter kills x32 numbers on every kernel
  // The control must get through (getpid answers); a kernel built without x32 answers ENOSYS by
  // itself, so there the rule guards nothing reachable.
  if (control.code == ENOSYS) {
    testkit::skip(testkit::Need::feature("X32", "the x32 syscall ABI"),
                  "no x32 ABI on this kernel (CONFIG_X86_X32_ABI unset); the filter still killed "
                  "the call");
    return;
  }
  EXPECT_EQ(control.code, 0) << "control: " << describe(control);
}

TEST(Seccomp, ThreadsStillWorkThroughCloneFallback) {
  ChildResult r = run_in_child([] {
    if (load_errno_filter() != 0) {
      return 100;
    }
    int value = 0;
    std::thread t([&] { value = 7; });
    t.join();
    return value == 7 ? 0 : 1;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

TEST(Seccomp, UnknownGroupIsAnError) {
  auto r = compile_seccomp({"ptrace", "raw-sockets"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("raw-sockets"), std::string::npos);
}

// compile_seccomp() compiles once and derives the errno program by rewriting the notify
// program's returns: it must be exactly what libseccomp builds with ERRNO(EPERM) as the deny
// action, for every combination of loosened groups.
TEST(Seccomp, DerivedErrnoProgramEqualsLibseccompsOwn) {
  const std::vector<std::set<std::string>> combos = {
      {}, {"ptrace"}, {"perf"}, {"userns"}, {"ptrace", "perf"}, {"perf", "ptrace", "userns"}};
  for (const auto& groups : combos) {
    auto p = compile_seccomp(groups);
    auto direct = compile_seccomp_with(groups, false);
    ASSERT_TRUE(p && direct);
    ASSERT_EQ(p->errno_only.size(), direct->size());
    size_t notify_returns = 0;
    for (size_t i = 0; i < direct->size(); ++i) {
      const sock_filter& a = p->errno_only[i];
      const sock_filter& b = (*direct)[i];
      EXPECT_TRUE(a.code == b.code && a.jt == b.jt && a.jf == b.jf && a.k == b.k)
          << "instruction " << i << " differs";
      const sock_filter& n = p->notify[i];
      notify_returns += n.code == (BPF_RET | BPF_K) && n.k == SECCOMP_RET_USER_NOTIF ? 1 : 0;
    }
    EXPECT_GT(notify_returns, 0u);  // the rewrite had something to do
  }
}

// The programs compiled into agentbox at build time are what libseccomp builds now, for every
// combination of groups (a mismatch means the build's libseccomp or kernel API level differed).
TEST(Seccomp, BuildTimeProgramsEqualLibseccompsOwn) {
  const auto& known = known_seccomp_groups();
  for (size_t mask = 0; mask < (size_t{1} << known.size()); ++mask) {
    std::set<std::string> groups;
    for (size_t i = 0; i < known.size(); ++i) {
      if ((mask & (size_t{1} << i)) != 0) {
        groups.insert(known[i]);
      }
    }
    const auto* built = prebuilt_seccomp(groups);
    ASSERT_NE(built, nullptr) << "no build-time program for group mask " << mask
                              << " (agentbox_seccomp_gen warned at build time)";
    auto now = compile_seccomp_with(groups, true);
    ASSERT_TRUE(now);
    ASSERT_EQ(built->size(), now->size()) << "mask " << mask;
    for (size_t i = 0; i < now->size(); ++i) {
      const sock_filter& a = (*built)[i];
      const sock_filter& b = (*now)[i];
      ASSERT_TRUE(a.code == b.code && a.jt == b.jt && a.jf == b.jf && a.k == b.k)
          << "mask " << mask << ": instruction " << i << " differs";
    }
  }
  EXPECT_EQ(prebuilt_seccomp({"no-such-group"}), nullptr);
}

TEST(Seccomp, UnknownGroupIsAnErrorEvenWithoutCompiling) {
  auto s = check_seccomp_groups({"ptrace", "raw-sockets"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("raw-sockets"), std::string::npos);
}

TEST(Seccomp, PtraceGroupLoosensOnlyPtrace) {
  auto p = compile_seccomp({"ptrace"});
  ASSERT_TRUE(p) << p.error().render();
  ChildResult r = run_in_child([&] {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || load_seccomp(*p, -1) != 0) {
      return 100;
    }
    int ptrace_err = errno_of(syscall(SYS_ptrace, 16, -1, 0, 0));
    int bpf_err = errno_of(syscall(SYS_bpf, -1, nullptr, 0));
    return ptrace_err == ESRCH && bpf_err == EPERM ? 0 : 1;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

TEST(Seccomp, UsernsGroupAllowsNamespaces) {
  auto p = compile_seccomp({"userns"});
  ASSERT_TRUE(p) << p.error().render();
  ChildResult r = run_in_child([&] {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || load_seccomp(*p, -1) != 0) {
      return 100;
    }
    return errno_of(syscall(SYS_unshare, CLONE_NEWUSER));
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

// ---- user notification ----------------------------------------------------------------------

struct NotifiedChild {
  pid_t pid = -1;
  base::UniqueFd sock;  // supervisor end
  base::UniqueFd go;    // write a byte to let the child make its denied call
};

// Child: load the notify program (listener sent over the socket), wait for "go", call mount
// with bad pointers, exit with the errno.
NotifiedChild start_notified_child(const SeccompProgram& program) {
  int sv[2];
  int gp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || pipe2(gp, O_CLOEXEC) != 0) {
    return {};
  }
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(20);
    close(sv[0]);
    close(gp[1]);
    SeccompMode mode{};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || load_seccomp(program, sv[1], &mode) != 0 ||
        mode != SeccompMode::kNotified) {
      _exit(100);
    }
    char b = 0;
    if (read(gp[0], &b, 1) != 1) {
      _exit(101);
    }
    _exit(errno_of(syscall(SYS_mount, kBad, kBad, kBad, 0, kBad)));
  }
  close(sv[1]);
  close(gp[0]);
  return {pid, base::UniqueFd(sv[0]), base::UniqueFd(gp[1])};
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
}

TEST(SeccompNotify, SupervisorAnswersEpermAndAudits) {
  auto program = compile_seccomp({});
  ASSERT_TRUE(program);
  NotifiedChild child = start_notified_child(*program);
  ASSERT_GT(child.pid, 0);
  auto listener = receive_fd(child.sock.get());
  ASSERT_TRUE(listener) << listener.error().render();
  audit::MemorySink sink;
  auto monitor = DenialMonitor::create(std::move(listener).value(), sink);
  ASSERT_TRUE(monitor) << monitor.error().render();
  ASSERT_EQ(write(child.go.get(), "g", 1), 1);
  // Drive the monitor like the event loop would, bounded to ~10 s.
  bool alive = true;
  for (int i = 0; i < 1000 && alive && monitor->denied() == 0; ++i) {
    pollfd p{.fd = monitor->fd(), .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 10) > 0) {
      alive = monitor->on_readable();
    }
  }
  EXPECT_EQ(wait_exit(child.pid), EPERM);
  EXPECT_EQ(monitor->denied(), 1u);
  std::string lines = sink.lines();
  EXPECT_NE(lines.find(R"("type":"seccomp.deny")"), std::string::npos) << lines;
  EXPECT_NE(lines.find(R"("syscall":"mount")"), std::string::npos) << lines;
  EXPECT_NE(lines.find(R"("exe":"/)"), std::string::npos) << lines;
  // The filter's only user is gone: the listener reports it.
  pollfd p{.fd = monitor->fd(), .events = POLLIN, .revents = 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1);
  EXPECT_FALSE(monitor->on_readable());
}

TEST(SeccompNotify, DeadSupervisorMeansEnosysNotAHang) {
  auto program = compile_seccomp({});
  ASSERT_TRUE(program);
  NotifiedChild child = start_notified_child(*program);
  ASSERT_GT(child.pid, 0);
  {
    auto listener = receive_fd(child.sock.get());
    ASSERT_TRUE(listener) << listener.error().render();
  }  // closed: nobody will ever answer
  ASSERT_EQ(write(child.go.get(), "g", 1), 1);
  EXPECT_EQ(wait_exit(child.pid), ENOSYS);
}

TEST(SeccompNotify, NestedListenerFallsBackToErrno) {
  auto program = compile_seccomp({});
  ASSERT_TRUE(program);
  ChildResult r = run_in_child([&] {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      return 100;
    }
    SeccompMode first{};
    SeccompMode second{};
    if (load_seccomp(*program, sv[1], &first) != 0 || first != SeccompMode::kNotified) {
      return 101;
    }
    // The outer listener stays alive (queued in sv[0]); no denied call is made until exit.
    int inner[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, inner) != 0) {
      return 102;
    }
    if (load_seccomp(*program, inner[1], &second) != 0) {
      return 103;
    }
    return second == SeccompMode::kErrnoOnly ? 0 : 104;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

}  // namespace
}  // namespace agentbox::sandbox

namespace agentbox::sandbox {
namespace {

// A classic-BPF walk of `prog` for syscall `nr` on x86_64, as the kernel's action cache does it
// when it prepares its bitmap (kernel/seccomp.c, seccomp_is_const_allow): only the number and
// the arch are known. Returns {instructions executed, allowed without reading an argument}.
std::pair<int, bool> const_walk(const std::vector<sock_filter>& prog, uint32_t nr) {
  uint32_t a = 0;
  size_t pc = 0;
  for (int n = 1; pc < prog.size() && n < 4096; ++n) {
    const sock_filter& in = prog[pc];
    switch (BPF_CLASS(in.code)) {
      case BPF_LD:
        if (in.k != offsetof(seccomp_data, nr) && in.k != offsetof(seccomp_data, arch)) {
          return {n, false};  // reads an argument (or ip): the cache cannot decide it
        }
        a = in.k == offsetof(seccomp_data, nr) ? nr : AUDIT_ARCH_X86_64;
        ++pc;
        break;
      case BPF_JMP: {
        if (BPF_OP(in.code) == BPF_JA) {
          pc += 1 + in.k;
          break;
        }
        bool c = BPF_OP(in.code) == BPF_JEQ   ? a == in.k
                 : BPF_OP(in.code) == BPF_JGT ? a > in.k
                 : BPF_OP(in.code) == BPF_JGE ? a >= in.k
                                              : (a & in.k) != 0;
        pc += 1 + (c ? in.jt : in.jf);
        break;
      }
      case BPF_RET:
        return {n, in.k == SECCOMP_RET_ALLOW};
      default:
        return {n, false};
    }
  }
  return {0, false};
}

// The hot system calls of real work (git status: newfstatat, openat, getdents64, statx ...)
// must be decided by the kernel's action cache without running the filter: their path may not
// read an argument. And no allowed number may sit at the end of a long chain: the sorted binary
// tree decides each in a few comparisons (bench/seccomp_bench, docs/BENCHMARKS.md).
TEST(SeccompLayout, HotSyscallsAreConstantAllowAndTheTreeIsShallow) {
  auto prog = compile_seccomp({});
  ASSERT_TRUE(prog) << prog.error().message();
  for (long nr : {SYS_read, SYS_write, SYS_close, SYS_openat, SYS_newfstatat, SYS_statx,
                  SYS_getdents64, SYS_mmap, SYS_munmap, SYS_futex, SYS_lseek, SYS_fstat, SYS_execve,
                  SYS_wait4, SYS_rt_sigprocmask, SYS_brk, SYS_mprotect, SYS_pread64}) {
    auto [n, allowed] = const_walk(prog->notify, static_cast<uint32_t>(nr));
    EXPECT_TRUE(allowed) << "syscall " << nr << " is not decided by the action cache";
  }
  int deepest = 0;
  for (uint32_t nr = 0; nr < 460; ++nr) {
    auto [n, allowed] = const_walk(prog->notify, nr);
    deepest = allowed ? std::max(deepest, n) : deepest;
  }
  EXPECT_LE(deepest, 20) << "an allowed syscall takes " << deepest << " instructions to decide";
  auto linear = compile_seccomp_with({}, true, SeccompLayout::kLinear);
  ASSERT_TRUE(linear);
  int linear_deepest = 0;
  for (uint32_t nr = 0; nr < 460; ++nr) {
    auto [n, allowed] = const_walk(*linear, nr);
    linear_deepest = allowed ? std::max(linear_deepest, n) : linear_deepest;
  }
  EXPECT_GT(linear_deepest, 2 * deepest) << "the tree layout should be much shallower";
}

}  // namespace
}  // namespace agentbox::sandbox
