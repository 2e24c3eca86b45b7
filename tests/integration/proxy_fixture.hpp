// A loopback TLS upstream with its own CA (tests/integration/data/upstream.py) and
// `agentbox run` pointed at it with --connect-to, for the proxy tests outside proxy_test.cpp.
// sh, slurp and free_port come from the shared harness.
#pragma once

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.hpp"

namespace agentbox::it {

using Args = std::vector<std::string>;

// The upstream's own CA (`dir`/ca.pem, readable by all) and one server certificate (srv.pem) for
// every name in `hosts`.
inline bool make_upstream_certs(const std::string& dir, const std::vector<std::string>& hosts) {
  std::string san;
  for (const auto& h : hosts) {
    san += (san.empty() ? "DNS:" : ",DNS:") + h;
  }
  return sh(fmt::format(
             "(cd {0} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=upstream test CA' && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key "
             "-out srv.csr -subj /CN={1} && printf 'subjectAltName={2}\\n' > ext.cnf && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 2 -extfile ext.cnf && chmod 644 ca.pem) >/dev/null 2>&1",
             dir, hosts.at(0), san)) == 0;
}

// Starts tests/integration/data/upstream.py serving `dir` on a free loopback port and waits (at
// most 20 s: a loaded machine) until it is ready. `pid` is set as soon as it is forked, so TearDown
// can kill it.
inline bool start_upstream(const std::string& dir, const std::string& git_password, uint16_t& port,
                           pid_t& pid) {
  port = free_port();
  if (port == 0) {
    return false;
  }
  pid = ::fork();
  if (pid < 0) {
    return false;
  }
  if (pid == 0) {
    ::execlp("python3", "python3", AGENTBOX_TEST_DATA "/upstream.py", dir.c_str(),
             std::to_string(port).c_str(), git_password.c_str(), nullptr);
    ::_exit(127);
  }
  for (int i = 0; i < 400 && ::access((dir + "/ready").c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return ::access((dir + "/ready").c_str(), F_OK) == 0;
}

// Starts `argv` (a server writing `dir`/ready when listening) and waits at most 20 s.
inline bool start_server(const std::vector<std::string>& argv, const std::string& dir, pid_t& pid) {
  ::unlink((dir + "/ready").c_str());
  pid = ::fork();
  if (pid < 0) {
    return false;
  }
  if (pid == 0) {
    std::vector<char*> a;
    for (const auto& s : argv) {
      a.push_back(const_cast<char*>(s.c_str()));
    }
    a.push_back(nullptr);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  for (int i = 0; i < 400 && ::access((dir + "/ready").c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return ::access((dir + "/ready").c_str(), F_OK) == 0;
}

// No file under `dir` holds any of `secrets`. grep's exit status decides: 1 (nothing found) is the
// only pass, 2 (a read error, a missing dir) fails; and the same search must find `present`, a
// string that is there (so a broken search cannot pass).
inline void expect_tree_lacks(const std::string& dir, const std::vector<std::string>& secrets,
                              const std::string& present) {
  EXPECT_EQ(sh(fmt::format("grep -rqF -e '{}' '{}'", present, dir)), 0)
      << "control: the search does not find `" << present << "` in " << dir;
  std::string pattern;
  for (const auto& s : secrets) {
    pattern += fmt::format(" -e '{}'", s);
  }
  EXPECT_EQ(sh(fmt::format("grep -rqF{} '{}'", pattern, dir)), 1)
      << "a real secret in " << dir << " (or grep failed)";
}

// How many times `needle` occurs in `text` (requests in a log, answers in the box's output).
inline size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// The upstream answers for every name in hosts() (one certificate, one port); the subclass
// writes the agentbox config (config()) and names the secrets that must never show up.
class UpstreamFixture : public WorldTest {
 protected:
  virtual std::vector<std::string> hosts() const = 0;
  virtual std::string config() const = 0;
  virtual std::vector<std::string> secrets() const = 0;
  virtual std::map<std::string, std::string> env() const = 0;
  // Runs before the upstream starts (extra files in up_).
  virtual void prepare() {}

  void SetUp() override {
    if (!enter_world()) {
      return;
    }
    up_ = w_.root + "/upstream";
    ASSERT_EQ(::mkdir(up_.c_str(), 0755), 0);
    ASSERT_TRUE(make_upstream_certs(up_, hosts()));
    ASSERT_EQ(::mkdir((up_ + "/git").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((up_ + "/pub").c_str(), 0755), 0);
    prepare();
    if (HasFatalFailure()) {
      return;
    }
    ASSERT_TRUE(start_upstream(up_, "unused-git-password", port_, server_))
        << "the upstream did not start";
    cfg_ = w_.root + "/cfg";
    ASSERT_EQ(::mkdir(cfg_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((cfg_ + "/agentbox").c_str(), 0755), 0);
    write_file(cfg_ + "/agentbox/config.toml", config());
    chown_tree(cfg_, w_.as.uid, w_.as.gid);
  }
  void TearDown() override {
    if (server_ > 0) {
      ::kill(server_, SIGKILL);
      ::waitpid(server_, nullptr, 0);
    }
    if (made_) {
      // The real secrets are in no file agentbox wrote (audit logs, session folders).
      if (!all_audit_logs(w_).empty()) {  // a test whose set-up failed ran no session
        expect_tree_lacks(w_.state, secrets(), R"("type":"session.start")");
      }
      destroy_world(w_);
    }
  }
  // `agentbox run` with the test's config, `sh -c SCRIPT` inside, cwd = the workspace; `flags`
  // go after the fixture's own; `quiet` false keeps warnings and the exit summary on stderr.
  Output box(const std::string& script, int timeout_ms = 60000, const Args& flags = {},
             bool quiet = true) {
    Args a = {"run", "--upstream-ca", up_ + "/ca.pem"};
    if (quiet) {
      a.push_back("-q");
    }
    a.insert(a.end(), flags.begin(), flags.end());
    for (const auto& h : hosts()) {
      a.push_back("--connect-to");
      a.push_back(fmt::format("{}:443:127.0.0.1:{}", h, port_));
    }
    a.insert(a.end(), extra_flags_.begin(), extra_flags_.end());
    a.insert(a.end(), {"--", "sh", "-c", script});
    RunOptions o;
    o.env = env();
    o.env["XDG_CONFIG_HOME"] = cfg_;
    o.timeout_ms = timeout_ms;
    Output r = run(w_, a, o);
    for (const auto& s : secrets()) {
      EXPECT_EQ(r.out.find(s), std::string::npos) << r.out;
      EXPECT_EQ(r.err.find(s), std::string::npos) << r.err;
    }
    return r;
  }
  std::string seen() { return slurp(up_ + "/seen.log"); }
  std::string audit() { return all_audit_logs(w_); }

  Args extra_flags_;  // more `agentbox run` flags for box()
  std::string up_;
  std::string cfg_;
  uint16_t port_ = 0;
  pid_t server_ = -1;
};

}  // namespace agentbox::it
