// The control plane's integration fixture (control_test.cpp, approve_test.cpp): a loopback HTTP
// server, and a box started in the background with its own runtime folder, steered by the
// agentbox verbs, as root and as the user agentbox-test.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;
using namespace std::chrono_literals;

// A loopback HTTP server: every request gets `hello`, or with `endless` a body that never ends
// (64 KiB every 20 ms, at most 60 s) to be cut.
class Http {
 public:
  explicit Http(bool endless) : endless_(endless) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sin), len) == 0 && ::listen(fd_, 16) == 0) {
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len);
      port_ = ntohs(sin.sin_port);
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~Http() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  std::atomic<int> accepted{0};
  std::atomic<uint64_t> sent{0};
  std::atomic<bool> cut{false};  // the endless body's connection ended before 60 s

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        continue;
      }
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        continue;
      }
      ++accepted;
      char buf[4096];
      [[maybe_unused]] ssize_t n = ::recv(c, buf, sizeof buf, 0);
      serve(c);
      ::close(c);
    }
  }
  void serve(int c) {
    if (!endless_) {
      std::string r = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n";
      [[maybe_unused]] ssize_t n = ::send(c, r.data(), r.size(), MSG_NOSIGNAL);
      return;
    }
    std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n";
    [[maybe_unused]] ssize_t h = ::send(c, head.data(), head.size(), MSG_NOSIGNAL);
    std::string block(64 << 10, 'x');
    auto end = std::chrono::steady_clock::now() + 60s;
    while (!stop_ && std::chrono::steady_clock::now() < end) {
      ssize_t n = ::send(c, block.data(), block.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        cut = true;
        return;
      }
      sent += static_cast<uint64_t>(n);
      std::this_thread::sleep_for(20ms);
    }
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  bool endless_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class ControlTest : public BoxWorldTest {
 protected:
  void SetUp() override {
    BoxWorldTest::SetUp();
    if (!made_ || HasFatalFailure() || IsSkipped()) {
      return;
    }
    runtime_ = w_.root + "/run";
    ASSERT_EQ(::mkdir(runtime_.c_str(), 0700), 0);
    ASSERT_EQ(::chown(runtime_.c_str(), w_.as.uid, w_.as.gid), 0);
  }
  // `sleep N`'s argument, distinct for the root and the user case of a test (they may run at
  // once), so a check for leftovers sees only its own box's processes.
  std::string sleep_arg(int n) const {
    return std::to_string(w_.as.label == "root" ? n : n + 1000);
  }
  // No process runs `sleep ARG`, after a bounded wait: the pid namespace's last processes are
  // torn down after init's death, asynchronously.
  static bool gone(const std::string& arg) {
    const std::string cmdline = "sleep" + std::string(1, '\0') + arg;
    for (int i = 0; i < 100 && !pids_with_cmdline(cmdline).empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return pids_with_cmdline(cmdline).empty();
  }
  RunOptions env(RunOptions o = {}) {
    o.env["XDG_RUNTIME_DIR"] = runtime_;
    for (const auto& [k, v] : extra_env_) {
      o.env[k] = v;
    }
    return o;
  }
  Output agentbox(const Args& args) { return run(w_, args, env({.timeout_ms = 20000})); }
  // Starts `agentbox run FLAGS -- CMD` in the background, its output in files; waits (bounded)
  // until `agentbox ps` lists it and returns its short id ("" on failure).
  std::string start(const Args& flags, const Args& cmd) {
    Args a = {"run"};
    a.insert(a.end(), flags.begin(), flags.end());
    a.push_back("--");
    a.insert(a.end(), cmd.begin(), cmd.end());
    RunOptions o = env();
    out_ = ::open((w_.root + "/box.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    err_ = ::open((w_.root + "/box.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    o.stdout_fd = out_;
    o.stderr_fd = err_;
    int unused_out = -1;
    int unused_err = -1;  // spawn writes them; -1 when not captured
    pid_ = spawn(w_, a, o, &unused_out, &unused_err);
    for (int i = 0; i < 400 && pid_ > 0; ++i) {
      Output ps = agentbox({"ps", "--json"});
      auto pos = ps.out.find("\"id\": \"");
      if (pos != std::string::npos) {
        return ps.out.substr(pos + 7, 6);
      }
      std::this_thread::sleep_for(50ms);
    }
    return "";
  }
  // Waits for the background agentbox; its status (-1 when it did not end in time).
  int finish(int timeout_ms = 30000) {
    int st = wait_for(pid_, timeout_ms);
    if (st == -1) {
      ::kill(pid_, SIGKILL);
      wait_for(pid_, 5000);
    }
    pid_ = -1;
    ::close(out_);
    ::close(err_);
    return st;
  }
  void TearDown() override {
    if (pid_ > 0) {
      finish(1);
    }
    BoxWorldTest::TearDown();
  }
  std::string box_out() { return slurp(w_.root + "/box.out"); }
  std::string box_err() { return slurp(w_.root + "/box.err"); }
  static Args reach(uint16_t port) {
    return {"--connect-to", fmt::format("data.test:{0}:127.0.0.1:{0}", port)};
  }

  std::string runtime_;
  std::map<std::string, std::string> extra_env_;  // for `run` and every verb
  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
};

}  // namespace
}  // namespace agentbox::it
