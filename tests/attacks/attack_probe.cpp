// agentbox-attack: one escape or exfiltration attempt per invocation, run inside the box (and as a
// control outside it). Prints "<attack> ok" or "<attack> <ENAME>" and exits 0; attacks that the
// sandbox answers with a signal (foreign syscall ABIs) never print.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

using Args = std::vector<std::string>;

int err(long rc) {
  return rc < 0 ? errno : 0;
}

int closing(int fd) {
  if (fd < 0) {
    return errno;
  }
  close(fd);
  return 0;
}

// A child that sleeps, for the ptrace-family attacks (our own child: allowed without the box).
pid_t sleeper() {
  pid_t p = fork();
  if (p == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) {
      pause();
    }
  }
  return p;
}

int with_sleeper(const std::function<int(pid_t)>& f) {
  pid_t p = sleeper();
  if (p < 0) {
    return errno;
  }
  int e = f(p);
  kill(p, SIGKILL);
  waitpid(p, nullptr, 0);
  return e;
}

int raw_clone(unsigned long flags) {
  long p = syscall(SYS_clone, flags | SIGCHLD, 0, nullptr, nullptr, 0);
  if (p == 0) {
    _exit(0);
  }
  if (p < 0) {
    return errno;
  }
  waitpid(static_cast<pid_t>(p), nullptr, 0);
  return 0;
}

// A pty pair whose slave is our controlling terminal; returns the slave fd (or -errno).
int own_pty(int* master_out) {
  setsid();
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) {
    return -errno;
  }
  int s = open(ptsname(m), O_RDWR);
  if (s < 0 || ioctl(s, TIOCSCTTY, 0) != 0) {
    return -errno;
  }
  *master_out = m;
  return s;
}

int connect_unix(const std::string& path, bool abstract) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return errno;
  }
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  size_t off = abstract ? 1 : 0;
  std::memcpy(a.sun_path + off, path.data(), std::min(path.size(), sizeof(a.sun_path) - 1 - off));
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + off + path.size());
  int e = err(connect(fd, reinterpret_cast<sockaddr*>(&a), len));
  close(fd);
  return e;
}

const std::map<std::string, std::function<int(const Args&)>>& attacks() {
  static const std::map<std::string, std::function<int(const Args&)>> table = {
      {"read",
       [](const Args& a) {
         int fd = open(a.at(0).c_str(), O_RDONLY | O_CLOEXEC);
         if (fd < 0) {
           return errno;
         }
         char c;
         int e = err(read(fd, &c, 1));
         close(fd);
         return e;
       }},
      {"write",
       [](const Args& a) {
         for (size_t i = 1; i < a.at(0).size(); ++i) {  // mkdir -p the parents
           if (a.at(0)[i] == '/') {
             mkdir(a.at(0).substr(0, i).c_str(), 0755);
           }
         }
         int fd = open(a.at(0).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
         if (fd < 0) {
           return errno;
         }
         int e = err(write(fd, "pwned\n", 6));
         close(fd);
         return e;
       }},
      {"append",
       [](const Args& a) {
         int fd = open(a.at(0).c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
         if (fd < 0) {
           return errno;
         }
         int e = err(write(fd, "pwned\n", 6));
         close(fd);
         return e;
       }},
      {"stat",
       [](const Args& a) {
         struct stat st {};
         return err(lstat(a.at(0).c_str(), &st));
       }},
      {"unlink", [](const Args& a) { return err(unlink(a.at(0).c_str())); }},
      {"rmdir", [](const Args& a) { return err(rmdir(a.at(0).c_str())); }},
      {"rename", [](const Args& a) { return err(rename(a.at(0).c_str(), a.at(1).c_str())); }},
      {"symlink", [](const Args& a) { return err(symlink(a.at(0).c_str(), a.at(1).c_str())); }},
      {"chmod", [](const Args& a) { return err(chmod(a.at(0).c_str(), 0777)); }},
      {"mknod",
       [](const Args& a) { return err(mknod(a.at(0).c_str(), S_IFCHR | 0666, makedev(1, 3))); }},
      {"connect_unix", [](const Args& a) { return connect_unix(a.at(0), false); }},
      {"connect_abstract", [](const Args& a) { return connect_unix(a.at(0), true); }},
      {"connect_tcp",
       [](const Args& a) {
         int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
         sockaddr_in sin{};
         sin.sin_family = AF_INET;
         sin.sin_port = htons(static_cast<uint16_t>(std::stoi(a.at(1))));
         inet_pton(AF_INET, a.at(0).c_str(), &sin.sin_addr);
         int e = err(connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)));
         close(fd);
         return e;
       }},
      {"kill", [](const Args& a) { return err(kill(std::stoi(a.at(0)), SIGKILL)); }},
      {"env_has", [](const Args& a) { return getenv(a.at(0).c_str()) != nullptr ? 0 : ENOENT; }},
      {"mount_tmpfs",
       [](const Args& a) { return err(mount("none", a.at(0).c_str(), "tmpfs", 0, "size=1m")); }},
      {"remount_rw",
       [](const Args& a) {
         return err(mount(nullptr, a.at(0).c_str(), nullptr, MS_REMOUNT | MS_BIND, nullptr));
       }},
      {"umount", [](const Args& a) { return err(umount2(a.at(0).c_str(), MNT_DETACH)); }},
      {"userns_mount",
       [](const Args& a) {
         if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
           return errno;
         }
         return err(mount("none", a.at(0).c_str(), "tmpfs", 0, "size=1m"));
       }},
      {"unshare_user", [](const Args&) { return err(unshare(CLONE_NEWUSER)); }},
      // A copy of this binary (a fresh file, as an agent would download one) exec'd to try the
      // same: the filter, no_new_privs and the dropped capabilities are inherited across execve.
      {"userns_copy",
       [](const Args& a) {
         std::string copy = a.at(0);
         int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
         int out = open(copy.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
         if (in < 0 || out < 0) {
           return errno;
         }
         char buf[65536];
         ssize_t n = 0;
         while ((n = read(in, buf, sizeof buf)) > 0) {
           if (write(out, buf, static_cast<size_t>(n)) != n) {
             return errno;
           }
         }
         close(in);
         close(out);
         pid_t p = fork();
         if (p == 0) {
           execl(copy.c_str(), "agentbox-attack", "unshare_user_exit", static_cast<char*>(nullptr));
           _exit(127);
         }
         int st = 0;
         waitpid(p, &st, 0);
         unlink(copy.c_str());
         return WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
       }},
      // read_via_proc_root PATH: PATH through /proc/1/root (init's root), then /proc/self/root;
      // the first that works wins. In the box both are the box's own root.
      {"read_via_proc_root",
       [](const Args& a) {
         int first = 0;
         for (const char* pfx : {"/proc/1/root", "/proc/self/root"}) {
           int fd = open((std::string(pfx) + a.at(0)).c_str(), O_RDONLY | O_CLOEXEC);
           if (fd >= 0) {
             char c = 0;
             ssize_t n = read(fd, &c, 1);
             close(fd);
             if (n >= 0) {
               return 0;
             }
           }
           first = first != 0 ? first : errno;
         }
         return first;
       }},
      {"unshare_user_exit", [](const Args&) -> int { _exit(err(unshare(CLONE_NEWUSER))); }},
      {"unshare_net", [](const Args&) { return err(unshare(CLONE_NEWUSER | CLONE_NEWNET)); }},
      {"clone_newuser", [](const Args&) { return raw_clone(CLONE_NEWUSER); }},
      {"clone3",
       [](const Args&) {
         struct {
           uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
         } args{CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0};
         long p = syscall(SYS_clone3, &args, sizeof(args));
         if (p == 0) {
           _exit(0);
         }
         if (p < 0) {
           return errno;
         }
         waitpid(static_cast<pid_t>(p), nullptr, 0);
         return 0;
       }},
      {"setns_self_net",
       [](const Args&) {
         int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
         int e = err(setns(fd, CLONE_NEWNET));
         close(fd);
         return e;
       }},
      {"chroot", [](const Args& a) { return err(chroot(a.at(0).c_str())); }},
      {"fsopen",
       [](const Args&) { return closing(static_cast<int>(syscall(SYS_fsopen, "tmpfs", 0))); }},
      {"open_tree",
       [](const Args& a) {
         return closing(static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, a.at(0).c_str(), 1)));
       }},
      // open_tree_attr (Linux 6.15, number 467 everywhere): open_tree with mount attributes.
      {"open_tree_attr",
       [](const Args& a) {
         return closing(static_cast<int>(syscall(467, AT_FDCWD, a.at(0).c_str(), 1, nullptr, 0)));
       }},
      {"ptrace_child",
       [](const Args&) {
         return with_sleeper([](pid_t p) {
           int e = err(syscall(SYS_ptrace, 16 /*PTRACE_ATTACH*/, p, 0, 0));
           return e;
         });
       }},
      {"vm_read_child",
       [](const Args&) {
         return with_sleeper([](pid_t p) {
           static char buf[16];
           iovec local{buf, sizeof(buf)};
           iovec remote{buf, sizeof(buf)};  // same address in the forked child
           return err(process_vm_readv(p, &local, 1, &remote, 1, 0));
         });
       }},
      {"pidfd_getfd_child",
       [](const Args&) {
         return with_sleeper([](pid_t p) {
           int pfd = static_cast<int>(syscall(SYS_pidfd_open, p, 0));
           if (pfd < 0) {
             return errno;
           }
           int e = closing(static_cast<int>(syscall(SYS_pidfd_getfd, pfd, 0, 0)));
           close(pfd);
           return e;
         });
       }},
      {"io_uring",
       [](const Args&) {
         char params[120] = {};
         return closing(static_cast<int>(syscall(SYS_io_uring_setup, 4, params)));
       }},
      {"userfaultfd",
       [](const Args&) {
         return closing(
             static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | 1 /*USER_MODE_ONLY*/)));
       }},
      {"add_key",
       [](const Args&) {
         return err(
             syscall(SYS_add_key, "user", "agentbox-attack", "x", 1, KEY_SPEC_PROCESS_KEYRING));
       }},
      {"keyctl_join",
       [](const Args&) {
         return err(syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "agentbox-attack"));
       }},
      {"perf_self",
       [](const Args&) {
         perf_event_attr attr{};
         attr.type = PERF_TYPE_SOFTWARE;
         attr.size = sizeof(attr);
         attr.config = PERF_COUNT_SW_TASK_CLOCK;
         attr.exclude_kernel = 1;
         return closing(static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0)));
       }},
      {"bpf_map",
       [](const Args&) {
         uint32_t attr[16] = {2 /*ARRAY*/, 4, 4, 1};
         return closing(static_cast<int>(syscall(SYS_bpf, 0 /*MAP_CREATE*/, attr, sizeof(attr))));
       }},
      {"raw_socket",
       [](const Args&) { return closing(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP)); }},
      {"packet_socket",
       [](const Args&) { return closing(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)); }},
      {"netlink_audit",
       [](const Args&) {
         return closing(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT));
       }},
      {"af_alg",
       [](const Args&) { return closing(socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)); }},
      {"personality_aslr", [](const Args&) { return err(syscall(SYS_personality, 0x0040000)); }},
      {"name_to_handle",
       [](const Args& a) {
         struct {
           unsigned int bytes;
           int type;
           unsigned char h[128];
         } fh{128, 0, {}};
         int mount_id = 0;
         return err(syscall(SYS_name_to_handle_at, AT_FDCWD, a.at(0).c_str(), &fh, &mount_id, 0));
       }},
      {"tiocsti_own_pty",
       [](const Args&) {
         int m = -1;
         int s = own_pty(&m);
         if (s < 0) {
           return -s;
         }
         char c = 'x';
         return err(syscall(SYS_ioctl, s, 0xdeadbeef00005412UL, &c));
       }},
      {"tiocsti_fd0",
       [](const Args& a) {
         int e = 0;
         for (char c : a.at(0) + "\n") {
           e = err(syscall(SYS_ioctl, 0, 0x100005412UL, &c));
           if (e != 0) {
             break;
           }
         }
         return e;
       }},
      // tioclinux [TTY]: TIOCLINUX on fd 0, or on TTY (a virtual console, for the control), with
      // the read-only TIOCL_GETSHIFTSTATE subcode; the box refuses the request whatever the code.
      {"tioclinux",
       [](const Args& a) {
         int fd = 0;
         if (!a.empty() && (fd = open(a[0].c_str(), O_RDONLY | O_NOCTTY | O_CLOEXEC)) < 0) {
           return errno;
         }
         char sub = 6;  // TIOCL_GETSHIFTSTATE
         int e = err(syscall(SYS_ioctl, fd, TIOCLINUX, &sub));
         if (fd != 0) {
           close(fd);
         }
         return e;
       }},
      {"reboot_probe", [](const Args&) { return err(syscall(SYS_reboot, 0, 0, 0, nullptr)); }},
      {"init_module", [](const Args&) { return err(syscall(SYS_init_module, "", 0, "")); }},
      {"open_kcore",
       [](const Args&) { return closing(open("/proc/kcore", O_RDONLY | O_CLOEXEC)); }},
      {"daemonize",
       [](const Args& a) {
         int gate[2];
         if (pipe2(gate, O_CLOEXEC) != 0) {
           return errno;
         }
         pid_t p = fork();
         if (p == 0) {
           setsid();
           if (fork() == 0) {
             int null = open("/dev/null", O_RDWR);  // detach from the caller's pipes
             dup2(null, 0);
             dup2(null, 1);
             dup2(null, 2);
             execl("/proc/self/exe", "agentbox-attack", "sleep", a.at(0).c_str(),
                   static_cast<char*>(nullptr));
             _exit(127);
           }
           _exit(0);
         }
         close(gate[1]);
         char c;
         (void)!read(gate[0], &c, 1);  // EOF once the daemon has executed (close-on-exec)
         close(gate[0]);
         waitpid(p, nullptr, 0);
         return 0;
       }},
      // fork_until_refused MAX: sleeping children until fork fails or MAX (<= 16384); prints
      // "bomb N ERRNO" and "held", waits for stdin to close (<= 20 s), then kills them all.
      // For the built-in defaults (defaults_test.cpp): light children, so thousands are quick.
      {"fork_until_refused",
       [](const Args& a) {
         int max = std::min(std::stoi(a.at(0)), 16384);
         std::vector<pid_t> kids;
         int err = 0;
         while (static_cast<int>(kids.size()) < max) {
           pid_t p = fork();
           if (p == 0) {
             pause();
             _exit(0);
           }
           if (p < 0) {
             err = errno;
             break;
           }
           kids.push_back(p);
         }
         std::printf("bomb %zu %d\nheld\n", kids.size(), err);
         std::fflush(stdout);
         pollfd pfd{0, POLLIN, 0};
         (void)poll(&pfd, 1, 20000);
         for (pid_t p : kids) {
           kill(p, SIGKILL);
         }
         for (pid_t p : kids) {
           waitpid(p, nullptr, 0);
         }
         return 0;
       }},
      {"sleep",
       [](const Args&) {
         sleep(5);
         return 0;
       }},
      // DoS probes, each bounded so that the control (run on the host) is harmless.
      // fork_bomb N [MARKER [HOLD_MS]]: up to N sleeping children, held HOLD_MS (<= 5000) once
      // capped or done (as a bomb keeps what it has), then all killed; EAGAIN = capped.
      {"fork_bomb",
       [](const Args& a) {
         int n = std::min(std::stoi(a.at(0)), 400);
         int hold_ms = a.size() > 2 ? std::min(std::stoi(a.at(2)), 5000) : 0;
         std::vector<pid_t> kids;
         int result = 0;
         for (int i = 0; i < n; ++i) {
           pid_t p = fork();
           if (p == 0) {
             pause();
             _exit(0);
           }
           if (p < 0) {
             result = errno;
             break;
           }
           kids.push_back(p);
         }
         std::printf("forked %zu\n", kids.size());  // how far it got (the limit's real size)
         usleep(static_cast<useconds_t>(hold_ms) * 1000);
         for (pid_t p : kids) {
           kill(p, SIGKILL);
         }
         for (pid_t p : kids) {
           waitpid(p, nullptr, 0);
         }
         return result;
       }},
      // balloon MIB [MARKER [HOLD_MS]]: touches MIB MiB (<= 1024), holds what it got HOLD_MS
      // (<= 5000); ENOMEM, or killed by the OOM killer.
      {"balloon",
       [](const Args& a) {
         int mib = std::min(std::stoi(a.at(0)), 1024);
         int hold_ms = a.size() > 2 ? std::min(std::stoi(a.at(2)), 5000) : 0;
         std::vector<char*> blocks;
         int result = 0;
         for (int i = 0; i < mib; ++i) {
           auto* b = static_cast<char*>(malloc(1 << 20));  // NOLINT: raw memory on purpose
           if (b == nullptr) {
             result = ENOMEM;
             break;
           }
           memset(b, i + 1, 1 << 20);
           blocks.push_back(b);
         }
         usleep(static_cast<useconds_t>(hold_ms) * 1000);
         for (char* b : blocks) {
           free(b);  // NOLINT
         }
         return result;
       }},
      // fill FILE MIB [HOLD_MS]: writes up to MIB MiB (<= 1024) to FILE, keeps it HOLD_MS
      // (<= 5000), then removes it.
      {"fill",
       [](const Args& a) {
         int mib = std::min(std::stoi(a.at(1)), 1024);
         int hold_ms = a.size() > 2 ? std::min(std::stoi(a.at(2)), 5000) : 0;
         signal(SIGXFSZ, SIG_IGN);  // an RLIMIT_FSIZE cap shows as EFBIG, not a kill
         int fd = open(a.at(0).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
         if (fd < 0) {
           return errno;
         }
         std::vector<char> chunk(1 << 20, 'x');
         int result = 0;
         for (int i = 0; i < mib && result == 0; ++i) {
           size_t done = 0;
           while (done < chunk.size()) {
             ssize_t w = write(fd, chunk.data() + done, chunk.size() - done);
             if (w < 0) {
               result = errno;
               break;
             }
             done += static_cast<size_t>(w);
           }
         }
         usleep(static_cast<useconds_t>(hold_ms) * 1000);
         close(fd);
         unlink(a.at(0).c_str());
         return result;
       }},
      // race_protected MS: in the current directory (a workspace), one process swaps what is at
      // the protected paths (renames them and their parent aside, puts symlinks and fresh
      // directories in their place, renames back) while another keeps writing to them, for MS
      // wall-clock ms (<= 3000) or 20,000 rounds each. "ok" when any write went through.
      {"race_protected",
       [](const Args& a) {
         int ms = std::min(std::stoi(a.at(0)), 3000);
         timespec start{};
         clock_gettime(CLOCK_MONOTONIC, &start);
         auto running = [&](int round) {
           timespec now{};
           clock_gettime(CLOCK_MONOTONIC, &now);
           return round < 20000 &&
                  (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms;
         };
         mkdir("race-elsewhere", 0755);  // where swapped-in links lead: plain workspace
         pid_t swapper = fork();
         if (swapper == 0) {
           for (int i = 0; running(i); ++i) {
             std::string n = std::to_string(i);
             // The hooks directory: aside, a link to it in its place, back.
             rename(".git/hooks", ".git/hooks.swap");
             (void)!symlink("hooks.swap", ".git/hooks");
             unlink(".git/hooks");
             rename(".git/hooks.swap", ".git/hooks");
             // A protected file that did not exist: replaced by a link, atomically.
             (void)!symlink("race-elsewhere/envrc", ".envrc.tmp");
             rename(".envrc.tmp", ".envrc");
             unlink(".envrc");
             unlink(".envrc.tmp");
             // A protected directory that did not exist: aside, link, fresh directory.
             rename(".vscode", (".vscode.swap" + n).c_str());
             (void)!symlink("race-elsewhere", ".vscode");
             unlink(".vscode");
             mkdir(".vscode", 0755);
             // The parent: .git aside and a fresh one with an empty hooks directory.
             if (rename(".git", ".git.swap") == 0) {
               mkdir(".git", 0755);
               mkdir(".git/hooks", 0755);
               rename(".git", (".git.fake" + n).c_str());
               rename(".git.swap", ".git");
             }
           }
           _exit(0);
         }
         int got = 0;
         int last = 0;
         for (int i = 0; running(i); ++i) {
           for (const char* path :
                {".git/hooks/pre-commit", ".envrc", ".vscode/tasks.json", ".git/config"}) {
             int flags = std::string(path) == ".git/config" ? O_WRONLY | O_APPEND
                                                            : O_WRONLY | O_CREAT | O_TRUNC;
             int fd = open(path, flags | O_CLOEXEC, 0755);
             if (fd < 0) {
               last = errno;
               continue;
             }
             got += write(fd, "pwned\n", 6) == 6 ? 1 : 0;
             close(fd);
           }
         }
         waitpid(swapper, nullptr, 0);
         return got > 0 ? 0 : (last != 0 ? last : EIO);
       }},
      // spin MS: busy for MS wall-clock ms (<= 5000), then prints "spin <CPU ms it used>".
      {"spin",
       [](const Args& a) {
         int ms = std::min(std::stoi(a.at(0)), 5000);
         timespec start{};
         timespec now{};
         clock_gettime(CLOCK_MONOTONIC, &start);
         do {
           clock_gettime(CLOCK_MONOTONIC, &now);
         } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 <
                  ms);
         timespec cpu{};
         clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
         std::printf("spin %ld\n", cpu.tv_sec * 1000 + cpu.tv_nsec / 1000000);
         std::fflush(stdout);
         _exit(0);  // one result line
         return 0;
       }},
      // grow FILE MIB: appends up to MIB MiB (<= 1024) to FILE with SIGXFSZ at its default (as
      // dd or cp would: an RLIMIT_FSIZE cap kills it), then removes it.
      {"grow",
       [](const Args& a) {
         int mib = std::min(std::stoi(a.at(1)), 1024);
         int fd = open(a.at(0).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
         if (fd < 0) {
           return errno;
         }
         unlink(a.at(0).c_str());  // the open fd keeps it until exit, whatever ends it
         std::vector<char> chunk(1 << 20, 'x');
         for (int i = 0; i < mib; ++i) {
           if (write(fd, chunk.data(), chunk.size()) < 0) {
             int e = errno;
             close(fd);
             return e;
           }
         }
         close(fd);
         return 0;
       }},
      {"open_wronly",  // opens for writing and closes: the access check without a write
       [](const Args& a) {
         int fd = open(a.at(0).c_str(), O_WRONLY | O_CLOEXEC);
         if (fd < 0) {
           return errno;
         }
         close(fd);
         return 0;
       }},
      {"write_same",  // writes a file's own content back (a sysctl: no change, but the access)
       [](const Args& a) {
         int fd = open(a.at(0).c_str(), O_RDWR | O_CLOEXEC);
         if (fd < 0) {
           return errno;
         }
         char buf[256];
         ssize_t n = read(fd, buf, sizeof(buf));
         int e = n < 0 ? errno : err(pwrite(fd, buf, static_cast<size_t>(n), 0));
         close(fd);
         return e;
       }},
      {"core_enabled",
       [](const Args&) {
         rlimit r{RLIM_INFINITY, RLIM_INFINITY};
         setrlimit(RLIMIT_CORE, &r);  // try to raise it back
         getrlimit(RLIMIT_CORE, &r);
         return r.rlim_cur > 0 ? 0 : EPERM;
       }},
      {"has_caps",
       [](const Args&) {
         cap_t c = cap_get_proc();
         cap_t empty = cap_init();
         int same = cap_compare(c, empty);
         cap_free(c);
         cap_free(empty);
         return same == 0 ? EPERM : 0;  // "ok" = some capability held
       }},
      {"regain_privs",
       [](const Args&) { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? EPERM : 0; }},
      {"int80",
       [](const Args&) {
         long ret = 20;  // i386 getpid
         asm volatile("int $0x80" : "+a"(ret) : : "memory");
         return ret > 0 ? 0 : static_cast<int>(-ret);
       }},
      {"x32", [](const Args&) { return err(syscall(0x40000000 | SYS_getpid)); }},
  };
  return table;
}

std::string ename(int e) {
  if (e == 0) {
    return "ok";
  }
  const char* n = strerrorname_np(e);
  return n != nullptr ? n : "E" + std::to_string(e);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || attacks().count(argv[1]) == 0) {
    std::fprintf(stderr, "usage: agentbox-attack NAME [ARGS...]\n");
    return 2;
  }
  Args args(argv + 2, argv + argc);
  int e = attacks().at(argv[1])(args);
  std::printf("%s %s\n", argv[1], ename(e).c_str());
  return 0;
}
