// Integration harness: worlds per variant, spawning agentbox as a user, bounded waits.
#include "harness.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace agentbox::it {

namespace {

constexpr const char* kTestUser = "agentbox-test";

bool lookup(const std::string& name, RunAs& as) {
  struct passwd* pw = ::getpwnam(name.c_str());
  if (pw == nullptr) {
    return false;
  }
  as.uid = pw->pw_uid;
  as.gid = pw->pw_gid;
  as.name = pw->pw_name;
  as.home = pw->pw_dir;
  return true;
}

void copy_file(const std::string& from, const std::string& to, mode_t mode) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  out.close();
  ::chmod(to.c_str(), mode);
}

}  // namespace

int sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());  // NOLINT: fixed strings built by the tests
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

bool WorldTest::enter_world() {
  std::string why;
  if (!make_world(GetParam(), w_, why)) {
    skip(why);
    return false;
  }
  made_ = true;
  return true;
}

namespace {

// The steps of environment_refuses_box(), in order; the child reports the index of the first one
// the kernel refused.
constexpr const char* kBoxSteps[] = {"open /dev/net/tun", "seccomp (prctl PR_GET_SECCOMP)",
                                     "unshare(user, mount, pid, ipc, uts, cgroup, net namespaces)",
                                     "write /proc/self/uid_map",
                                     "mount a tmpfs in the new mount namespace"};

bool write_all(const char* path, const std::string& data) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

// The forked child: becomes the variant's user, tries each step, writes {step or -1, errno}.
[[noreturn]] void try_box_steps(const World& w, const std::string& uid_map,
                                const std::string& gid_map, int out) {
  auto report = [&](int step, int err) {
    int msg[2] = {step, err};
    [[maybe_unused]] ssize_t n = ::write(out, msg, sizeof msg);
    ::_exit(0);
  };
  if (::geteuid() == 0 && w.as.uid != 0 &&
      (::setgroups(0, nullptr) != 0 || ::setresgid(w.as.gid, w.as.gid, w.as.gid) != 0 ||
       ::setresuid(w.as.uid, w.as.uid, w.as.uid) != 0 ||
       // The uid change made the process non-dumpable: /proc/self/*_map would be root's.
       ::prctl(PR_SET_DUMPABLE, 1) != 0)) {
    ::_exit(1);
  }
  if (::open("/dev/net/tun", O_RDWR | O_CLOEXEC) < 0) {
    report(0, errno);
  }
  if (::prctl(PR_GET_SECCOMP) < 0 && errno == EINVAL) {
    report(1, EINVAL);
  }
  if (::unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
                CLONE_NEWCGROUP | CLONE_NEWNET) != 0) {
    report(2, errno);
  }
  if (!write_all("/proc/self/setgroups", "deny") || !write_all("/proc/self/uid_map", uid_map) ||
      !write_all("/proc/self/gid_map", gid_map)) {
    report(3, errno);
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      ::mount("none", "/tmp", "tmpfs", 0, nullptr) != 0) {
    report(4, errno);
  }
  report(-1, 0);
  ::_exit(0);  // not reached (report exits): the compiler cannot see through the lambda
}

}  // namespace

std::string environment_refuses_box(const World& w) {
  // What `agentbox run` needs from the kernel, done the way it does it (namespaces with its own
  // ids mapped 1:1, a private tmpfs, the tap device). Prepared before fork: the child only makes
  // system calls (the harness may have threads) and reports {step, errno} on a pipe.
  std::string uid_map = fmt::format("{} {} 1", w.as.uid, w.as.uid);
  std::string gid_map = fmt::format("{} {} 1", w.as.gid, w.as.gid);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return {};
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    try_box_steps(w, uid_map, gid_map, p[1]);
  }
  ::close(p[1]);
  int msg[2] = {-2, 0};
  ssize_t n = pid > 0 ? ::read(p[0], msg, sizeof msg) : -1;
  ::close(p[0]);
  int status = pid > 0 ? wait_for(pid, 10000) : -1;
  if (n != sizeof msg || status != 0) {
    // A probe that cannot tell never makes a skip.
    ADD_FAILURE() << "the harness's probe of this machine failed (status " << status << ")";
    return {};
  }
  if (msg[0] < 0) {
    return {};
  }
  const char* name = ::strerrorname_np(msg[1]);
  return fmt::format("{} as {}: {} ({})", kBoxSteps[msg[0]], w.as.label, std::strerror(msg[1]),
                     name != nullptr ? name : "?");
}

std::string cannot_box(const World& w, const Output& probe) {
  if (probe.status == 0) {
    return {};
  }
  std::string first = probe.err.substr(0, probe.err.find('\n'));
  std::string refused = environment_refuses_box(w);
  if (refused.empty() || probe.status != 125) {
    // Fatal (FAIL() needs a void function): SetUp() then stops the test before its body runs.
    [&] {
      FAIL() << "`agentbox run -- true` as " << w.as.label << " ended with status " << probe.status
             << (refused.empty()
                     ? " on a machine that can make a box (the harness's own probe made the "
                       "namespaces and opened /dev/net/tun as that user)"
                     : " (a crash or timeout is never an environment cause)")
             << ": agentbox is broken, this is not a skip.\nstderr:\n"
             << probe.err;
    }();
    return "agentbox failed (recorded as a failure)";
  }
  Output doctor = run(w, {"doctor"});
  std::string fails;
  std::istringstream lines(doctor.out + doctor.err);
  for (std::string l; std::getline(lines, l);) {
    if (l.rfind("fail", 0) == 0) {
      fails += (fails.empty() ? "" : "; ") + l.substr(l.find_first_not_of(' ', 4));
    }
  }
  return fmt::format("this machine cannot make a box as {}: {} ({}; agentbox doctor: {})",
                     w.as.label, refused, first, fails.empty() ? "no failed check" : fails);
}

void BoxWorldTest::SetUp() {
  if (!enter_world()) {
    return;
  }
  if (std::string no = cannot_box(w_, run(w_, {"run", "-q", "--", "true"})); !no.empty()) {
    skip(no);
  }
}

void BoxWorldTest::TearDown() {
  if (made_) {
    destroy_world(w_);
  }
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint16_t free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(s);
    return 0;
  }
  ::close(s);
  return ntohs(a.sin_port);
}

std::string audit_log_of(const Output& o) {
  auto pos = o.err.find("audit log: ");
  if (pos == std::string::npos) {
    return {};
  }
  std::string path = o.err.substr(pos + 11);
  return slurp(path.substr(0, path.find('\n')));
}

std::string all_audit_logs(const World& w) {
  std::string dir = w.state + "/agentbox/sessions";
  std::string all;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') {
        all += slurp(dir + "/" + e->d_name + "/audit.jsonl");
      }
    }
    ::closedir(d);
  }
  return all;
}

bool Output::has_line(const std::string& line) const {
  std::istringstream s(out);
  std::string l;
  while (std::getline(s, l)) {
    if (!l.empty() && l.back() == '\r') {
      l.pop_back();
    }
    if (l == line) {
      return true;
    }
  }
  return false;
}

std::string Output::line_starting(const std::string& prefix) const {
  std::istringstream s(out);
  std::string l;
  while (std::getline(s, l)) {
    if (!l.empty() && l.back() == '\r') {
      l.pop_back();
    }
    if (l.rfind(prefix, 0) == 0) {
      return l;
    }
  }
  return {};
}

void write_file(const std::string& path, const std::string& data, mode_t mode) {
  std::ofstream f(path, std::ios::trunc);
  f << data;
  f.close();
  ::chmod(path.c_str(), mode);
}

RunOptions with_user_config(const World& w, const std::string& toml) {
  const std::string dir = w.root + "/config";
  std::filesystem::create_directories(dir + "/agentbox");
  write_file(dir + "/agentbox/config.toml", toml);
  chown_tree(dir, w.as.uid, w.as.gid);
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = dir;
  return o;
}

void chown_tree(const std::string& path, uid_t uid, gid_t gid) {
  sh(fmt::format("chown -R {}:{} '{}'", uid, gid, path));
}

bool make_world(const std::string& label, World& w, std::string& why) {
  bool root = ::geteuid() == 0;
  if (label == "root") {
    if (!root) {
      why = "not running as root";
      return false;
    }
    w.as = RunAs{"root", 0, 0, "root", ""};
  } else if (root) {
    if (!lookup(kTestUser, w.as)) {
      sh(fmt::format("useradd -m {} >/dev/null 2>&1", kTestUser));
      if (!lookup(kTestUser, w.as)) {
        why = "cannot create the user agentbox-test (useradd failed)";
        return false;
      }
    }
    w.as.label = "user";
    ::mkdir(w.as.home.c_str(), 0755);
    [[maybe_unused]] int rc = ::chown(w.as.home.c_str(), w.as.uid, w.as.gid);
  } else {
    w.as.label = "user";
    w.as.uid = ::getuid();
    w.as.gid = ::getgid();
    struct passwd* pw = ::getpwuid(w.as.uid);
    w.as.name = pw != nullptr ? pw->pw_name : "me";
    const char* h = std::getenv("HOME");
    w.as.home = h != nullptr ? h : (pw != nullptr ? pw->pw_dir : "/tmp");
  }
  char tmpl[] = "/tmp/agentbox-it-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    why = "mkdtemp failed";
    return false;
  }
  w.root = tmpl;
  ::chmod(w.root.c_str(), 0755);
  w.bin = w.root + "/bin";
  w.ws = w.root + "/ws";
  w.state = w.root + "/state";
  ::mkdir(w.bin.c_str(), 0755);
  ::mkdir(w.ws.c_str(), 0755);
  ::mkdir(w.state.c_str(), 0700);
  ::mkdir((w.ws + "/.git").c_str(), 0755);
  ::mkdir((w.ws + "/.git/hooks").c_str(), 0755);
  write_file(w.ws + "/.git/config", "[core]\n");
  write_file(w.ws + "/.git/HEAD", "ref: refs/heads/main\n");
  write_file(w.root + "/outside.txt", "outside the workspace\n");
  if (w.as.label == "root" || ::geteuid() != 0) {
    // Never plant test secrets in a real home: only the dedicated agentbox-test user's is used.
    w.as.home = w.root + "/home";
    ::mkdir(w.as.home.c_str(), 0700);
  }
  w.agentbox = w.bin + "/agentbox";
  w.agentbox_unconfined = w.bin + "/agentbox-unconfined";
  w.probe = w.bin + "/agentbox-probe";
  const char* under_test = std::getenv("AGENTBOX_TEST_BIN");
  const std::string bin = under_test != nullptr && *under_test != '\0' ? under_test : AGENTBOX_BIN;
  copy_file(bin, w.agentbox, 0755);
  // Review boxes' git fsmonitor hook, found next to agentbox as in a build tree (docs/REVIEW.md).
  const std::string hook = bin.substr(0, bin.rfind('/') + 1) + "agentbox-fsmonitor";
  if (::access(hook.c_str(), X_OK) == 0) {
    copy_file(hook, w.bin + "/agentbox-fsmonitor", 0755);
  }
  copy_file(AGENTBOX_UNCONFINED_BIN, w.agentbox_unconfined, 0755);
  copy_file(AGENTBOX_PROBE_BIN, w.probe, 0755);
  chown_tree(w.root, w.as.uid, w.as.gid);
  return true;
}

void destroy_world(const World& w) {
  if (w.root.rfind("/tmp/agentbox-it-", 0) == 0) {
    sh(fmt::format("rm -rf '{}'", w.root));
  }
}

pid_t spawn(const World& w, const std::vector<std::string>& args, const RunOptions& o, int* out_fd,
            int* err_fd) {
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  if (o.stdout_fd < 0 && ::pipe2(out, O_CLOEXEC) != 0) {
    return -1;
  }
  if (o.stderr_fd < 0 && ::pipe2(err, O_CLOEXEC) != 0) {
    return -1;
  }
  std::vector<std::string> argv_s = o.wrapper;
  argv_s.push_back(w.agentbox);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::map<std::string, std::string> env = {{"HOME", w.as.home},
                                            {"PATH", "/usr/local/bin:/usr/bin:/bin"},
                                            {"XDG_STATE_HOME", w.state},
                                            {"LANG", "C.UTF-8"}};
  for (const auto& [k, v] : o.env) {
    env[k] = v;
  }
  std::vector<std::string> env_s;
  for (const auto& [k, v] : env) {
    env_s.push_back(k + "=" + v);
  }
  std::vector<char*> argv;
  for (auto& a : argv_s) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_s) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  std::string cwd = o.cwd.empty() ? w.ws : o.cwd;
  bool switch_user = ::geteuid() == 0 && w.as.uid != 0;

  pid_t pid = ::fork();
  if (pid != 0) {
    if (out[1] >= 0) {
      ::close(out[1]);
    }
    if (err[1] >= 0) {
      ::close(err[1]);
    }
    *out_fd = out[0];
    *err_fd = err[0];
    return pid;
  }
  // child
  int in = o.stdin_fd >= 0 ? o.stdin_fd : ::open("/dev/null", O_RDONLY);
  ::dup2(in, 0);
  ::dup2(o.stdout_fd >= 0 ? o.stdout_fd : out[1], 1);
  ::dup2(o.stderr_fd >= 0 ? o.stderr_fd : err[1], 2);
  for (int fd : o.leak_fds) {
    int n = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
    ::dup2(n, fd);
  }
  if (o.before_exec && !o.before_exec()) {
    ::_exit(120);
  }
  if (switch_user) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(w.as.gid, w.as.gid, w.as.gid) != 0 ||
        ::setresuid(w.as.uid, w.as.uid, w.as.uid) != 0) {
      ::_exit(121);
    }
  }
  if (::chdir(cwd.c_str()) != 0) {
    ::_exit(122);
  }
  ::execve(argv[0], argv.data(), envp.data());
  ::_exit(123);
}

int wait_for(pid_t pid, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (r < 0 || std::chrono::steady_clock::now() > deadline) {
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Output run(const World& w, const std::vector<std::string>& args, const RunOptions& o) {
  Output res;
  int out = -1;
  int err = -1;
  pid_t pid = spawn(w, args, o, &out, &err);
  if (pid < 0) {
    return res;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.timeout_ms);
  std::vector<pollfd> fds;
  if (out >= 0) {
    fds.push_back({out, POLLIN, 0});
  }
  if (err >= 0) {
    fds.push_back({err, POLLIN, 0});
  }
  bool timed_out = false;
  while (!fds.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(left));
    if (n <= 0) {
      continue;
    }
    for (size_t i = 0; i < fds.size();) {
      if (fds[i].revents == 0) {
        ++i;
        continue;
      }
      char buf[4096];
      ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      if (r > 0) {
        (fds[i].fd == out ? res.out : res.err).append(buf, static_cast<size_t>(r));
        ++i;
      } else {
        fds.erase(fds.begin() + static_cast<long>(i));
      }
    }
  }
  if (out >= 0) {
    ::close(out);
  }
  if (err >= 0) {
    ::close(err);
  }
  res.status = wait_for(pid, timed_out ? 5000 : o.timeout_ms);
  if (timed_out) {
    res.status = -1;
  }
  return res;
}

std::vector<pid_t> pids_with_cmdline(const std::string& needle) {
  // Processes come and go while /proc is walked: a pid whose directory vanished, or whose cmdline
  // read fails (ESRCH from an exiting task), is simply not a match. Raw open/read on purpose:
  // std::ifstream throws from underflow() when read(2) fails mid-file.
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) {
    return out;
  }
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || end == e->d_name || *end != '\0') {
      continue;
    }
    std::string path = fmt::format("/proc/{}/cmdline", pid);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    std::string cmd;
    char buf[4096];
    for (int i = 0; i < 64; ++i) {  // cmdline is at most a few pages; bound the loop anyway
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        break;
      }
      cmd.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    if (cmd.find(needle) != std::string::npos) {
      out.push_back(static_cast<pid_t>(pid));
    }
  }
  ::closedir(d);
  return out;
}

std::vector<std::string> mount_table() {
  std::ifstream f("/proc/self/mountinfo");
  std::vector<std::string> out;
  std::string l;
  while (std::getline(f, l)) {
    // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": drop the ids.
    std::istringstream in(l);
    std::string id, parent, devno, root, point;
    in >> id >> parent >> devno >> root >> point;
    out.push_back(root + " " + point + l.substr(l.find(" - ")));
  }
  std::sort(out.begin(), out.end());
  return out;
}

size_t mountinfo_lines() {
  std::ifstream f("/proc/self/mountinfo");
  size_t n = 0;
  std::string l;
  while (std::getline(f, l)) {
    ++n;
  }
  return n;
}

}  // namespace agentbox::it
