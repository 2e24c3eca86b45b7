// The user's terminal in integration tests: a pty the test owns, agentbox on its slave.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace agentbox::it {

// The user's terminal, played by a pty the test owns: agentbox gets the slave as fds 0-2.
class OuterTerminal {
 public:
  OuterTerminal() {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master_ < 0 || ::grantpt(master_) != 0 || ::unlockpt(master_) != 0) {
      return;
    }
    slave_ = ::open(::ptsname(master_), O_RDWR | O_NOCTTY | O_CLOEXEC);
    ::fcntl(master_, F_SETFL, O_NONBLOCK);
  }
  ~OuterTerminal() {
    if (pid_ > 0 && status_ < 0) {
      ::kill(pid_, SIGKILL);
      wait_for(pid_, 5000);
    }
    for (int fd : {out_, err_, slave_, master_}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }
  [[nodiscard]] bool ok() const { return slave_ >= 0; }
  int slave() const { return slave_; }
  int master() const { return master_; }
  pid_t start(const World& w, const std::vector<std::string>& args, RunOptions o = {}) {
    o.stdin_fd = slave_;
    o.stdout_fd = slave_;
    pid_ = spawn(w, args, o, &out_, &err_);
    return pid_;
  }
  // Reads the terminal until `text` shows up (true) or the timeout/the exit of agentbox.
  bool wait_for_text(const std::string& text, int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pump();
      if (seen_.find(text) != std::string::npos) {
        return true;
      }
      if (status_ >= 0) {
        pump();
        return seen_.find(text) != std::string::npos;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  void type(const std::string& s) {
    ASSERT_EQ(::write(master_, s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  // Called with everything seen so far after each read that brought new bytes: a terminal that
  // answers queries writes its answers to master() from here.
  std::function<void(const std::string& seen)> on_output;
  int finish(int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (status_ < 0 && std::chrono::steady_clock::now() < deadline) {
      pump();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pump();
    return status_;
  }
  const std::string& seen() const { return seen_; }

 private:
  void pump() {
    char buf[1024];
    ssize_t n;
    bool more = false;
    while ((n = ::read(master_, buf, sizeof buf)) > 0) {
      seen_.append(buf, static_cast<size_t>(n));
      more = true;
    }
    if (more && on_output) {
      on_output(seen_);
    }
    int st = 0;
    if (status_ < 0 && ::waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
  }
  int master_ = -1;
  int slave_ = -1;
  int out_ = -1;
  int err_ = -1;
  pid_t pid_ = -1;
  int status_ = -1;
  std::string seen_;
};

}  // namespace agentbox::it
