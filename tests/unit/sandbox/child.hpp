// Test helper: run a lambda in a forked child and collect how it ended (exit code or signal).
#pragma once

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "agentbox/base/sys.hpp"

namespace agentbox::sandbox::testing {

struct ChildResult {
  bool exited = false;
  int code = -1;  // exit code when exited
  int sig = 0;    // terminating signal otherwise
};

// Runs f() in a fork; its int return value is the exit code. The child is killed by SIGALRM
// after `timeout` seconds so a broken test cannot hang the suite.
template <class F>
ChildResult run_in_child(F&& f, unsigned timeout = 20) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(timeout);
    _exit(f());
  }
  ChildResult r;
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) {
    return r;
  }
  if (WIFEXITED(status)) {
    r.exited = true;
    r.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.sig = WTERMSIG(status);
  }
  return r;
}

// The errno of a failed call (or 0 on success), as a child exit code.
inline int errno_of(long rc) {
  return rc == -1 ? errno : 0;
}

// Unprivileged runs get their capabilities from a new user namespace, as the box does.
inline bool become_root_in_userns() {
  if (geteuid() == 0) {
    return true;
  }
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER) != 0) {
    return false;
  }
  return base::write_file("/proc/self/setgroups", "deny") &&
         base::write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") &&
         base::write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
}

inline std::string describe(const ChildResult& r) {
  return r.exited ? "exit " + std::to_string(r.code) : "signal " + std::to_string(r.sig);
}

}  // namespace agentbox::sandbox::testing
