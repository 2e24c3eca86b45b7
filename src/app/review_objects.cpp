// Review mode's git objects (app/review_git.hpp): the upper's objects verified into a quarantine,
// the host's git run safely over it, and the quarantine landed in the real repository.
#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <openssl/evp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include "agentbox/app/review_git.hpp"
#include "agentbox/base/scope_exit.hpp"
#include "agentbox/base/sys.hpp"

extern char** environ;  // NOLINT: posix_spawn takes the process environment

namespace agentbox::app {

using base::Error;
using base::Result;
using base::UniqueFd;

namespace {

constexpr size_t kMaxObject = 1u << 30;      // a loose object file past this is refused
constexpr size_t kMaxGitOutput = 16u << 20;  // what run_git keeps of a child's output
constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

bool hex_name(const std::string& s, size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A loose object's file: zlib of "TYPE SIZE\0BYTES"; its id is the hash of that whole text.
// Checked here: the stream inflates completely with nothing after it, the type is one of git's
// four, the size is the true size, and the hash is the file's name.
base::Status verify_loose(const std::string& data, const std::string& id) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) {
    return Error::msg("zlib");
  }
  base::ScopeExit end([&] { inflateEnd(&z); });
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(md.get(), id.size() == 40 ? EVP_sha1() : EVP_sha256(), nullptr);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  std::array<unsigned char, 65536> buf{};
  std::string header;
  uint64_t total = 0;
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = buf.data();
    z.avail_out = buf.size();
    rc = inflate(&z, Z_NO_FLUSH);
    size_t n = buf.size() - z.avail_out;
    EVP_DigestUpdate(md.get(), buf.data(), n);
    for (size_t i = 0; i < n && header.find('\0') == std::string::npos && header.size() < 64; ++i) {
      header.push_back(static_cast<char>(buf[i]));
    }
    total += n;
  }
  if (rc != Z_STREAM_END || z.avail_in != 0) {
    return Error::msg("not a complete zlib stream");
  }
  auto nul = header.find('\0');
  auto sp = header.find(' ');
  if (nul == std::string::npos || sp == std::string::npos || sp > nul) {
    return Error::msg("no object header");
  }
  const std::string type = header.substr(0, sp);
  const std::string size = header.substr(sp + 1, nul - sp - 1);
  if (type != "blob" && type != "tree" && type != "commit" && type != "tag") {
    return Error::msg(fmt::format("type `{}`", shown(type)));
  }
  if (size.empty() || size.size() > 19 ||
      !std::all_of(size.begin(), size.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
      std::stoull(size) != total - nul - 1) {
    return Error::msg("its header's size is wrong");
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> h{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(md.get(), h.data(), &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += fmt::format("{:02x}", h[i]);
  }
  return hex == id ? base::Status{} : Error::msg(fmt::format("its content hashes to {}", hex));
}

// Writes `data` as `name` in `dir` (temporary name, then a link: never replaces an entry).
base::Status put_new(int dir, const std::string& name, std::string_view data, mode_t mode) {
  const std::string tmp = fmt::format("tmp_agentbox_{}", ::getpid());
  ::unlinkat(dir, tmp.c_str(), 0);
  UniqueFd out(::openat(dir, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!out) {
    return Error::sys(errno, "create", tmp);
  }
  auto w = base::write_all(out.get(), data);
  int rc = w ? ::linkat(dir, tmp.c_str(), dir, name.c_str(), 0) : -1;
  int e = errno;
  ::unlinkat(dir, tmp.c_str(), 0);
  if (!w) {
    return w;
  }
  return rc == 0 || e == EEXIST ? base::Status{} : Error::sys(e, "link", name);
}

Result<std::string> slurp_at(int dir, const std::string& name, size_t limit) {
  UniqueFd fd(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return Error::sys(errno, "open", name);
  }
  return base::read_all(fd.get(), limit);
}

Result<UniqueFd> subdir(int dir, const std::string& name) {
  if (::mkdirat(dir, name.c_str(), 0755) != 0 && errno != EEXIST) {
    return Error::sys(errno, "mkdir", name);
  }
  UniqueFd fd(::openat(dir, name.c_str(), kDirFlags));
  return fd ? Result<UniqueFd>(std::move(fd)) : Error::sys(errno, "open", name);
}

// The upper's packs, each indexed by the host's git (which hashes every object in it) from a
// copy in the quarantine; the upper's own .idx is never read.
void quarantine_packs(const Review& r, int up_objects, int quarantine,
                      std::vector<std::string>& bad) {
  UniqueFd packs(::openat(up_objects, "pack", kDirFlags));
  if (!packs) {
    return;
  }
  auto q = subdir(quarantine, "pack");
  if (!q) {
    bad.push_back(fmt::format("git packs: {}", q.error().message()));
    return;
  }
  for (const auto& n : entries_of(packs.get())) {
    if (!n.ends_with(".pack")) {
      continue;
    }
    auto data = slurp_at(packs.get(), n, kMaxObject);
    const std::string in = fmt::format("incoming-{}", ::getpid());
    ::unlinkat(q->get(), (in + ".pack").c_str(), 0);
    ::unlinkat(q->get(), (in + ".idx").c_str(), 0);
    if (!data || !put_new(q->get(), in + ".pack", *data, 0444)) {
      bad.push_back(fmt::format(".git/objects/pack/{}: unreadable, never applied", shown(n)));
      continue;
    }
    const std::string path = fmt::format("{}/objects/pack/{}.pack", r.root, in);
    auto out = run_git(r.workspace + "/.git", "", {"index-pack", "--fsck-objects", path});
    std::string hash =
        out ? out->substr(out->find('\t') == std::string::npos ? 0 : out->find('\t') + 1)
            : std::string();
    while (!hash.empty() && hash.back() == '\n') {
      hash.pop_back();
    }
    if (!out || !(hex_name(hash, 40) || hex_name(hash, 64)) ||
        ::renameat(q->get(), (in + ".pack").c_str(), q->get(),
                   ("pack-" + hash + ".pack").c_str()) != 0 ||
        ::renameat(q->get(), (in + ".idx").c_str(), q->get(), ("pack-" + hash + ".idx").c_str()) !=
            0) {
      bad.push_back(
          fmt::format(".git/objects/pack/{}: refused by git index-pack ({}), never "
                      "applied",
                      shown(n), out ? "rename" : out.error().message()));
    }
  }
}

}  // namespace

Result<std::vector<std::string>> quarantine_objects(const Review& r) {
  std::vector<std::string> bad;
  UniqueFd up(::open((r.upper + "/.git/objects").c_str(), kDirFlags));
  if (!up) {
    return bad;
  }
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd root, base::open_fd(r.root, kDirFlags));
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd q, subdir(root.get(), "objects"));
  for (const auto& fan : entries_of(up.get())) {
    UniqueFd f(hex_name(fan, 2) ? ::openat(up.get(), fan.c_str(), kDirFlags) : -1);
    if (!f) {
      continue;  // info/ (alternates), pack/ below, anything else never lands
    }
    UniqueFd qf;
    for (const auto& n : entries_of(f.get())) {
      struct stat st {};
      if (!(hex_name(n, 38) || hex_name(n, 62)) ||
          ::fstatat(f.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
        continue;
      }
      auto data = slurp_at(f.get(), n, kMaxObject);
      auto ok = data ? verify_loose(*data, fan + n) : base::Status(data.error());
      if (!ok) {
        bad.push_back(
            fmt::format(".git/objects/{}/{}: {}, never applied", fan, n, ok.error().message()));
        continue;
      }
      if (!qf) {
        AGENTBOX_ASSIGN_OR_RETURN(qf, subdir(q.get(), fan));
      }
      AGENTBOX_TRY(put_new(qf.get(), n, *data, 0444));
    }
  }
  quarantine_packs(r, up.get(), q.get(), bad);
  return bad;
}

namespace {

// The child's environment: the caller's without GIT_* (GIT_DIR, GIT_CONFIG_*, GIT_EXEC_PATH and
// the like would redirect or configure it), plus `extra`.
std::vector<std::string> git_env(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "GIT_", 4) != 0) {
      env.emplace_back(*e);
    }
  }
  env.insert(env.end(), extra.begin(), extra.end());
  env.emplace_back("GIT_TERMINAL_PROMPT=0");
  return env;
}

// Reads the child's stdout and stderr to their ends (both kept up to kMaxGitOutput).
void drain(int out, int err, std::string& o, std::string& e) {
  std::array<pollfd, 2> p = {pollfd{out, POLLIN, 0}, pollfd{err, POLLIN, 0}};
  std::array<char, 65536> buf{};
  while (p[0].fd >= 0 || p[1].fd >= 0) {
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i].fd < 0 || p[i].revents == 0) {
        continue;
      }
      ssize_t n = ::read(p[i].fd, buf.data(), buf.size());
      std::string& s = i == 0 ? o : e;
      if (n <= 0) {
        p[i].fd = -1;
      } else if (s.size() < kMaxGitOutput) {
        s.append(buf.data(), size_t(n));
      }
    }
  }
}

}  // namespace

Result<std::string> run_git(const std::string& git_dir, const std::string& objects,
                            const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"git", "--git-dir=" + git_dir, "-c", "core.hooksPath=/dev/null",
                                   "-c",  "core.fsmonitor=false", "-c", "core.sshCommand=false",
                                   "-c",  "protocol.allow=never"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> extra;
  if (!objects.empty()) {
    extra = {"GIT_OBJECT_DIRECTORY=" + objects,
             "GIT_ALTERNATE_OBJECT_DIRECTORIES=" + git_dir + "/objects"};
  }
  std::vector<std::string> env = git_env(extra);
  std::vector<char*> av;
  std::vector<char*> ev;
  av.reserve(argv.size() + 1);
  ev.reserve(env.size() + 1);
  for (auto& a : argv) {
    av.push_back(a.data());
  }
  for (auto& e : env) {
    ev.push_back(e.data());
  }
  av.push_back(nullptr);
  ev.push_back(nullptr);
  AGENTBOX_ASSIGN_OR_RETURN(base::Pipe out, base::make_pipe());
  AGENTBOX_ASSIGN_OR_RETURN(base::Pipe err, base::make_pipe());
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  base::ScopeExit fa_done([&] { posix_spawn_file_actions_destroy(&fa); });
  const std::string cwd = git_dir.substr(0, git_dir.rfind('/'));
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.write.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err.write.get(), 2);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.empty() ? "/" : cwd.c_str());
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, "git", &fa, nullptr, av.data(), ev.data());
  if (rc != 0) {
    return Error::sys(rc, "run", "git").hint("apply --refs needs the host's git");
  }
  out.write = UniqueFd();
  err.write = UniqueFd();
  std::string o;
  std::string e;
  drain(out.read.get(), err.read.get(), o, e);
  int status = 0;
  if (base::retry_eintr([&] { return ::waitpid(pid, &status, 0); }) < 0) {
    return Error::sys(errno, "waitpid", "git");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!e.empty() && e.back() == '\n') {
      e.pop_back();
    }
    auto nl = e.rfind('\n');
    return Error::msg(fmt::format("git {} failed: {}", args.empty() ? "" : args[0],
                                  shown(nl == std::string::npos ? e : e.substr(nl + 1))));
  }
  return o;
}

base::Status land_objects(const Review& r) {
  UniqueFd q(::open((r.root + "/objects").c_str(), kDirFlags));
  if (!q) {
    return {};
  }
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd real, base::open_fd(r.workspace + "/.git/objects", kDirFlags));
  for (const auto& fan : entries_of(q.get())) {
    UniqueFd f(hex_name(fan, 2) ? ::openat(q.get(), fan.c_str(), kDirFlags) : -1);
    if (!f) {
      continue;
    }
    AGENTBOX_ASSIGN_OR_RETURN(UniqueFd to, subdir(real.get(), fan));
    for (const auto& n : entries_of(f.get())) {
      struct stat st {};
      if (::fstatat(to.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        continue;  // git has it: objects are immutable, never replaced
      }
      AGENTBOX_ASSIGN_OR_RETURN(std::string data, slurp_at(f.get(), n, kMaxObject));
      AGENTBOX_TRY(put_new(to.get(), n, data, 0444));
    }
  }
  UniqueFd qp(::openat(q.get(), "pack", kDirFlags));
  if (!qp) {
    return {};
  }
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd to, subdir(real.get(), "pack"));
  for (const auto& n : entries_of(qp.get())) {
    if (n.rfind("pack-", 0) != 0 || !n.ends_with(".pack")) {
      continue;
    }
    const std::string idx = n.substr(0, n.size() - 5) + ".idx";
    for (const auto& one : {n, idx}) {  // the .idx last: git finds a pack by its index
      AGENTBOX_ASSIGN_OR_RETURN(std::string data, slurp_at(qp.get(), one, kMaxObject));
      AGENTBOX_TRY(put_new(to.get(), one, data, 0444));
    }
  }
  return {};
}

}  // namespace agentbox::app
