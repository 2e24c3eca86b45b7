// Test helper: run a lambda in a forked child and collect how it ended (exit code or signal).
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

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

inline std::string describe(const ChildResult& r) {
  return r.exited ? "exit " + std::to_string(r.code) : "signal " + std::to_string(r.sig);
}

}  // namespace agentbox::sandbox::testing
