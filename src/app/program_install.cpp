// Resolves the command on the caller's PATH and plans what of its installation the box is shown.
//
// Theory of operation:
//   1. Find argv[0] as execvp would, on the caller's PATH (a name with a slash: that path).
//   2. Follow it link by link. Each hop's directory is made real first (realpath), so every link
//      is recreated at a real path and its text resolves in the box as on the host; a hop inside
//      a tree the box shows anyway needs nothing.
//   3. Show the real file's installation read-only: the npm package directory
//      (.../node_modules/NAME or @SCOPE/NAME), the whole node_modules of a hoisted install (bun,
//      pnpm: its parent has a package.json, or the path goes through .pnpm), VOLTA_HOME for a
//      volta shim, else the file alone. Never HOME or one of its ancestors.
//   4. Read its `#!` line: `env NAME` resolves NAME on the caller's PATH (its directory joins the
//      box's PATH), an absolute interpreter is followed the same way; at most kShebangDepth levels.
#include "agentbox/app/program_install.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <optional>

#include "agentbox/base/unique_fd.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

namespace {

namespace sb = sandbox;

constexpr int kMaxHops = 40;      // as the kernel's MAXSYMLINKS
constexpr int kShebangDepth = 3;  // program -> its interpreter -> that one's interpreter
constexpr size_t kShebangMax = 256;

std::string realpath_of(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    return {};
  }
  return buf;
}

std::string dirname_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  return path.substr(path.rfind('/') + 1);
}

std::vector<std::string> split_any(const std::string& s, const char* seps) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find_first_of(seps, i);
    if (j == std::string::npos) {
      j = s.size();
    }
    if (j > i) {
      out.push_back(s.substr(i, j - i));
    }
    i = j + 1;
  }
  return out;
}

bool within_any(const std::string& path, const std::vector<std::string>& trees) {
  return std::any_of(trees.begin(), trees.end(),
                     [&](const std::string& t) { return sb::path_within(path, t); });
}

struct Found {
  std::string dir;   // the PATH entry
  std::string path;  // dir/name
};

// As execvp: the first entry holding an executable regular file. Relative entries (the current
// directory) are skipped: the box's cwd is not the caller's idea of them.
std::optional<Found> find_on_path(const std::string& name, const std::string& path_var) {
  for (const auto& dir : split_any(path_var, ":")) {
    if (dir[0] != '/') {
      continue;
    }
    std::string p = fmt::format("{}/{}", dir, name);
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0) {
      return Found{dir, p};
    }
  }
  return std::nullopt;
}

// The interpreter named by a `#!` line, as a name to look up (`env node`) or a path.
struct Shebang {
  std::string interpreter;  // absolute path, or "" when none
  std::string env_name;     // NAME of `env [-S] [VAR=x] NAME`
};

Shebang read_shebang(const std::string& file) {
  base::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  char buf[kShebangMax];
  ssize_t n = fd ? ::read(fd.get(), buf, sizeof buf) : -1;
  if (n < 3 || buf[0] != '#' || buf[1] != '!') {
    return {};
  }
  std::string line(buf + 2, static_cast<size_t>(n) - 2);
  line = line.substr(0, line.find('\n'));
  std::vector<std::string> words = split_any(line, " \t\r");
  if (words.empty() || words[0][0] != '/') {
    return {};
  }
  Shebang sh{.interpreter = words[0]};
  if (base_of(words[0]) != "env") {
    return sh;
  }
  for (size_t i = 1; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "-u" || w == "-C") {
      ++i;  // takes a value
    } else if (w[0] != '-' && w.find('=') == std::string::npos) {
      sh.env_name = w;
      break;
    }
  }
  return sh;
}

class Resolver {
 public:
  Resolver(const std::map<std::string, std::string>& env, std::vector<std::string> visible,
           const std::string& default_path)
      : visible_(std::move(visible)), default_dirs_(split_any(default_path, ":")) {
    auto p = env.find("PATH");
    path_var_ = p == env.end() ? std::string() : p->second;
    auto h = env.find("HOME");
    home_ = h == env.end() ? std::string() : realpath_of(h->second);
  }

  void command(const std::string& cmd, const std::string& cwd) {
    if (cmd.find('/') != std::string::npos) {
      program(cmd[0] == '/' ? cmd : fmt::format("{}/{}", cwd, cmd), cmd, 0);
    } else if (auto f = find_on_path(cmd, path_var_)) {
      add_path_dir(f->dir);
      program(f->path, cmd, 0);
    }
  }

  ProgramInstall finish() {
    // A link or a file inside a shown directory is there already (and the directory is read-only:
    // a link could not be made in it).
    std::sort(out_.shown.begin(), out_.shown.end());
    out_.shown.erase(std::unique(out_.shown.begin(), out_.shown.end()), out_.shown.end());
    std::vector<std::string> dirs;
    for (const auto& s : out_.shown) {
      if (!within_any(s, dirs)) {
        dirs.push_back(s);
      }
    }
    out_.shown = dirs;
    std::erase_if(out_.links, [&](const ProgramLink& l) { return within_any(l.path, dirs); });
    return std::move(out_);
  }

 private:
  void add_path_dir(const std::string& dir) {
    std::string real = realpath_of(dir);
    if (real.empty() ||
        std::find(default_dirs_.begin(), default_dirs_.end(), dir) != default_dirs_.end()) {
      return;
    }
    if (std::find(out_.path_dirs.begin(), out_.path_dirs.end(), real) == out_.path_dirs.end()) {
      out_.path_dirs.push_back(real);
    }
  }

  // Follows `path` link by link; returns the real regular file ("" when it is none).
  std::string follow(std::string path, std::string& chain) {
    for (int hop = 0; hop < kMaxHops; ++hop) {
      std::string dir = realpath_of(dirname_of(path));
      if (dir.empty()) {
        return {};
      }
      std::string at = dir == "/" ? "/" + base_of(path) : fmt::format("{}/{}", dir, base_of(path));
      struct stat st {};
      if (::lstat(at.c_str(), &st) != 0) {
        return {};
      }
      if (!S_ISLNK(st.st_mode)) {
        return S_ISREG(st.st_mode) ? at : std::string();
      }
      char buf[PATH_MAX];
      ssize_t n = ::readlink(at.c_str(), buf, sizeof buf - 1);
      if (n <= 0) {
        return {};
      }
      std::string text(buf, static_cast<size_t>(n));
      if (!within_any(at, visible_)) {
        out_.links.push_back({at, text});
      }
      chain += fmt::format(" -> {}", text);
      path = text[0] == '/' ? text : fmt::format("{}/{}", dir, text);
    }
    return {};
  }

  // What to show for the real file `real`: its installation (see the theory above).
  std::string installation_of(const std::string& real) {
    std::string dir = real;
    if (base_of(real) == "volta-shim") {
      dir = dirname_of(dirname_of(real));  // VOLTA_HOME/bin/volta-shim
      out_.pass_env.emplace_back("VOLTA_HOME");
    } else if (size_t pnpm = real.find("/node_modules/.pnpm/"); pnpm != std::string::npos) {
      dir = real.substr(0, pnpm + 13);
    } else if (size_t nm = real.rfind("/node_modules/"); nm != std::string::npos) {
      std::string modules = real.substr(0, nm + 13);
      std::vector<std::string> rest = split_any(real.substr(nm + 14), "/");
      size_t parts = !rest.empty() && rest[0][0] == '@' ? 2 : 1;
      struct stat st {};
      if (::stat(fmt::format("{}/package.json", dirname_of(modules)).c_str(), &st) == 0) {
        dir = modules;  // a project-style install: dependencies hoisted beside the package
      } else if (rest.size() > parts) {
        dir = modules;
        for (size_t i = 0; i < parts; ++i) {
          dir += "/" + rest[i];
        }
      }
    }
    if (dir == "/" || (!home_.empty() && sb::path_within(home_, dir))) {
      return real;  // never HOME itself, or what holds it
    }
    return dir;
  }

  void program(const std::string& path, const std::string& label, int depth) {
    std::string chain = path;
    std::string real = follow(path, chain);
    if (real.empty()) {
      return;
    }
    if (chain != path) {
      chain += fmt::format(" ({})", real);
    }
    bool seen = within_any(real, visible_);
    out_.resolution.push_back(
        fmt::format("`{}`: {}{}", label, chain, seen ? " (already in the box)" : ""));
    if (!seen) {
      out_.shown.push_back(installation_of(real));
    }
    if (depth + 1 >= kShebangDepth) {
      return;
    }
    Shebang sh = read_shebang(real);
    if (!sh.env_name.empty()) {
      if (sh.env_name.find('/') != std::string::npos) {
        program(sh.env_name, sh.env_name, depth + 1);
      } else if (auto f = find_on_path(sh.env_name, path_var_)) {
        add_path_dir(f->dir);
        program(f->path, sh.env_name, depth + 1);
      }
    } else if (!sh.interpreter.empty() && base_of(sh.interpreter) != "env") {
      program(sh.interpreter, sh.interpreter, depth + 1);
    }
  }

  std::vector<std::string> visible_;
  std::vector<std::string> default_dirs_;
  std::string path_var_;
  std::string home_;
  ProgramInstall out_;
};

}  // namespace

ProgramInstall resolve_program(const std::string& command,
                               const std::map<std::string, std::string>& env,
                               const std::string& cwd, const std::vector<std::string>& visible,
                               const std::string& default_path) {
  if (command.empty()) {
    return {};
  }
  Resolver r(env, visible, default_path);
  r.command(command, cwd);
  return r.finish();
}

std::vector<std::string> describe(const ProgramInstall& p) {
  std::vector<std::string> out;
  for (const auto& s : p.shown) {
    out.push_back(fmt::format("shown read-only: {}", s));
  }
  for (const auto& l : p.links) {
    out.push_back(fmt::format("link: {} -> {}", l.path, l.text));
  }
  if (!p.path_dirs.empty()) {
    out.push_back(fmt::format("PATH: {} in front of the default", fmt::join(p.path_dirs, ":")));
  }
  for (const auto& e : p.pass_env) {
    out.push_back(fmt::format("env: {} passed through (read by the installation)", e));
  }
  return out;
}

}  // namespace agentbox::app
