// agentbox-probe: answers questions about the box from inside it, one line per question.
//
//   agentbox-probe Q [ARGS] [\; Q [ARGS]]...
//   env                 one `env NAME=VALUE` line per variable
//   fds                 `fds 0 1 2` (the fds open in this process, without the listing's own)
//   pids                `pids 1 2` (what /proc shows)
//   id                  `id uid=U gid=G`
//   stat PATH           `stat PATH missing|dir|file|link|other`
//   write PATH          `write PATH ok|ENAME` (create or truncate, write one line)
//   mkdir PATH          `mkdir PATH ok|ENAME`
//   symlink TO LINK     `symlink LINK ok|ENAME`
//   ls DIR              `ls DIR a b c` (sorted)
//   tty                 `tty isatty=0|1 name=... files=DEV:INO,DEV:INO,DEV:INO` (fds 0-2)
//   winsize             `winsize ROWSxCOLS` of fd 0
//   tiocsti             `tiocsti ok|ENAME` (pushes a space into fd 0's input queue)
//   readline            reads one line from stdin, prints `readline got=LINE`
//   sleep SECONDS       sleeps
//   kill SIG            kill(getpid(), SIG)
//   exit N              exit(N)
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

extern char** environ;

namespace {

std::string ename(int err) {
  const char* n = strerrorname_np(err);
  return n != nullptr ? n : std::to_string(err);
}

std::vector<std::string> list_dir(const std::string& path, int* skip_fd = nullptr) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    return out;
  }
  if (skip_fd != nullptr) {
    *skip_fd = ::dirfd(d);
  }
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") {
      out.push_back(n);
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    bool na = !a.empty() && std::isdigit(static_cast<unsigned char>(a[0]));
    bool nb = !b.empty() && std::isdigit(static_cast<unsigned char>(b[0]));
    if (na && nb) {
      return std::atol(a.c_str()) < std::atol(b.c_str());
    }
    return a < b;
  });
  return out;
}

std::string kind(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return "missing";
  }
  if (S_ISDIR(st.st_mode)) {
    return "dir";
  }
  if (S_ISREG(st.st_mode)) {
    return "file";
  }
  if (S_ISLNK(st.st_mode)) {
    return "link";
  }
  return "other";
}

void out(const std::string& line) {
  std::cout << line << "\n" << std::flush;
}

int run(const std::vector<std::string>& a) {
  const std::string& q = a[0];
  auto arg = [&](size_t i) -> std::string { return i < a.size() ? a[i] : std::string(); };
  if (q == "env") {
    for (char** e = environ; *e != nullptr; ++e) {
      out(std::string("env ") + *e);
    }
  } else if (q == "fds") {
    int own = -1;
    auto fds = list_dir("/proc/self/fd", &own);
    std::string line = "fds";
    for (const auto& f : fds) {
      if (std::atoi(f.c_str()) != own) {
        line += " " + f;
      }
    }
    out(line);
  } else if (q == "pids") {
    std::string line = "pids";
    for (const auto& p : list_dir("/proc")) {
      if (std::all_of(p.begin(), p.end(),
                      [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
        line += " " + p;
      }
    }
    out(line);
  } else if (q == "id") {
    out("id uid=" + std::to_string(::getuid()) + " gid=" + std::to_string(::getgid()));
  } else if (q == "stat") {
    out("stat " + arg(1) + " " + kind(arg(1)));
  } else if (q == "write") {
    int fd = ::open(arg(1).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      out("write " + arg(1) + " " + ename(errno));
    } else {
      bool ok = ::write(fd, "probe\n", 6) == 6;
      ::close(fd);
      out("write " + arg(1) + " " + (ok ? "ok" : ename(errno)));
    }
  } else if (q == "mkdir") {
    out("mkdir " + arg(1) + " " + (::mkdir(arg(1).c_str(), 0755) == 0 ? "ok" : ename(errno)));
  } else if (q == "symlink") {
    out("symlink " + arg(2) + " " +
        (::symlink(arg(1).c_str(), arg(2).c_str()) == 0 ? "ok" : ename(errno)));
  } else if (q == "ls") {
    std::string line = "ls " + arg(1);
    for (const auto& n : list_dir(arg(1))) {
      line += " " + n;
    }
    out(line);
  } else if (q == "tty") {
    // dev:ino of the files behind fds 0-2 (st_dev tells one devpts instance from another;
    // st_rdev does not: every instance numbers its ptys from 0).
    std::string line = "tty isatty=" + std::to_string(::isatty(0));
    const char* name = ::ttyname(0);
    line += std::string(" name=") + (name != nullptr ? name : "none");
    line += " files=";
    for (int fd = 0; fd < 3; ++fd) {
      struct stat st {};
      ::fstat(fd, &st);
      line += std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + (fd < 2 ? "," : "");
    }
    out(line);
  } else if (q == "winsize") {
    struct winsize ws {};
    if (::ioctl(0, TIOCGWINSZ, &ws) == 0) {
      out("winsize " + std::to_string(ws.ws_row) + "x" + std::to_string(ws.ws_col));
    } else {
      out("winsize " + ename(errno));
    }
  } else if (q == "tiocsti") {
    char c = ' ';
    out(std::string("tiocsti ") + (::ioctl(0, TIOCSTI, &c) == 0 ? "ok" : ename(errno)));
  } else if (q == "readline") {
    std::string l;
    std::getline(std::cin, l);
    out("readline got=" + l);
  } else if (q == "sleep") {
    ::sleep(static_cast<unsigned>(std::atoi(arg(1).c_str())));
  } else if (q == "kill") {
    ::kill(::getpid(), std::atoi(arg(1).c_str()));
    ::pause();
  } else if (q == "exit") {
    std::exit(std::atoi(arg(1).c_str()));
  } else {
    std::cerr << "agentbox-probe: unknown question `" << q << "`\n";
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> cur;
  for (int i = 1; i <= argc; ++i) {
    if (i == argc || std::strcmp(argv[i], ";") == 0) {
      if (!cur.empty()) {
        if (int rc = run(cur); rc != 0) {
          return rc;
        }
      }
      cur.clear();
    } else {
      cur.emplace_back(argv[i]);
    }
  }
  return 0;
}
