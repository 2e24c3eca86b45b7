// Agent state kept across sessions (see agent_state.hpp for the layout and the rules).
#include "agentbox/app/agent_state.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <openssl/evp.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <tuple>

#include "agentbox/base/sys.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using base::UniqueFd;

namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kMaxStripFile = 16u << 20;
constexpr int kMaxDepth = 256;  // removal recursion: deeper trees are left (and reported)

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? end : end - start));
    if (end == std::string::npos) {
      return out;
    }
    start = end + 1;
  }
}

Result<UniqueFd> open_dir_at(int dirfd, const std::string& name) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return Error::sys(errno, "open", name);
  }
  return fd;
}

// Walks `comps` below `dirfd` without following any link, creating directories (0700) when
// `create`; the last directory's fd.
Result<UniqueFd> open_chain(int dirfd, const std::vector<std::string>& comps, bool create) {
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd fd, open_dir_at(dirfd, "."));
  for (const auto& c : comps) {
    if (create && ::mkdirat(fd.get(), c.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error::sys(errno, "mkdir", c);
    }
    AGENTBOX_ASSIGN_OR_RETURN(fd, open_dir_at(fd.get(), c));
  }
  return fd;
}

// Removes `name` below `dirfd`, a directory with everything in it; links are removed, never
// followed. False when something stayed.
bool remove_at(int dirfd, const std::string& name, int depth = 0) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT;
  }
  if (!S_ISDIR(st.st_mode)) {
    return ::unlinkat(dirfd, name.c_str(), 0) == 0;
  }
  auto fd = open_dir_at(dirfd, name);
  if (!fd || depth > kMaxDepth) {
    return false;
  }
  DIR* d = ::fdopendir(fd->release());
  if (d == nullptr) {
    return false;
  }
  bool ok = true;
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") {
      names.push_back(std::move(n));
    }
  }
  for (const auto& n : names) {
    ok = remove_at(::dirfd(d), n, depth + 1) && ok;
  }
  ::closedir(d);
  return ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) == 0 && ok;
}

// The persisted root a HOME-relative path lies in (strictly below it), or nullptr.
const std::string* owner_of(const std::vector<std::string>& roots, const std::string& rel) {
  for (const auto& r : roots) {
    if (rel.size() > r.size() && rel.compare(0, r.size(), r) == 0 && rel[r.size()] == '/') {
      return &r;
    }
  }
  return nullptr;
}

// Opens the parent of `rel` (below `home_fd`), removing a link found on the way (the box made
// it: following it could lead out of the state tree, or around a drop rule). Returns an invalid
// fd when the parent does not exist. `removed` collects what was removed.
UniqueFd open_parent(int home_fd, const std::vector<std::string>& comps,
                     std::vector<std::string>& removed, const std::string& rel) {
  auto fd = open_dir_at(home_fd, ".");
  if (!fd) {
    return UniqueFd();
  }
  for (size_t i = 0; i + 1 < comps.size(); ++i) {
    struct stat st {};
    if (::fstatat(fd->get(), comps[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return UniqueFd();
    }
    if (!S_ISDIR(st.st_mode)) {
      if (remove_at(fd->get(), comps[i])) {
        removed.push_back(rel);
      }
      return UniqueFd();
    }
    fd = open_dir_at(fd->get(), comps[i]);
    if (!fd) {
      return UniqueFd();
    }
  }
  return std::move(*fd);
}

// Erases the dotted key path `keys[i..]` ("*" matches every key) from `j`.
bool erase_keys(nlohmann::json& j, const std::vector<std::string>& keys, size_t i) {
  if (!j.is_object()) {
    return false;
  }
  const std::string& k = keys[i];
  if (i + 1 == keys.size()) {
    if (k == "*") {
      const bool had = !j.empty();
      j = nlohmann::json::object();
      return had;
    }
    return j.erase(k) > 0;
  }
  bool changed = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (k == "*" || it.key() == k) {
      changed = erase_keys(it.value(), keys, i + 1) || changed;
    }
  }
  return changed;
}

// Strips `keys` from the JSON file `name` in `dirfd`. A link, a non-regular file, an oversized
// or unparsable one is removed: it cannot be checked. True when the file changed or went.
bool strip_file(int dirfd, const std::string& name, const std::vector<std::string>& keys) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    return errno != ENOENT && remove_at(dirfd, name);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) > kMaxStripFile) {
    return remove_at(dirfd, name);
  }
  auto text = base::read_all(fd.get(), kMaxStripFile);
  nlohmann::json j(nlohmann::json::value_t::discarded);
  if (text) {
    j = nlohmann::json::parse(*text, nullptr, false);
  }
  if (j.is_discarded()) {
    return remove_at(dirfd, name);
  }
  bool changed = false;
  for (const auto& k : keys) {
    changed = erase_keys(j, split(k, '.'), 0) || changed;
  }
  if (!changed) {
    return false;
  }
  const std::string tmp = fmt::format(".{}.agentbox-strip", name);
  ::unlinkat(dirfd, tmp.c_str(), 0);
  UniqueFd out(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        st.st_mode & 0700));
  if (!out || !base::write_all(out.get(), j.dump(2)) ||
      ::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return remove_at(dirfd, name);  // stripping failed: the file does not carry over
  }
  return true;
}

std::string read_small(int dirfd, const std::string& name) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return {};
  }
  auto text = base::read_all(fd.get(), 4096);
  return text ? *text : std::string();
}

uint64_t tree_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) {
      total += it->file_size(ec);
    }
  }
  return total;
}

// The first 16 hex digits of SHA-256(s): a workspace's directory name.
std::string short_hash(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned i = 0; i < 8 && i < len; ++i) {
    out += fmt::format("{:02x}", md[i]);
  }
  return out;
}

bool valid_scope(const std::string& s) {
  return !s.empty() && s.size() <= 64 && s[0] != '.' &&
         s.find_first_not_of(
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+") ==
             std::string::npos;
}

}  // namespace

std::string agentbox_state_dir(const std::map<std::string, std::string>& env,
                               const std::string& home) {
  auto it = env.find("XDG_STATE_HOME");
  const std::string base = (it != env.end() && !it->second.empty() && it->second[0] == '/')
                               ? it->second
                               : home + "/.local/state";
  return base + "/agentbox";
}

std::string home_relative(const std::string& path) {
  if (path.rfind("~/", 0) != 0 || path.size() == 2) {
    return {};
  }
  std::string rel = path.substr(2);
  while (!rel.empty() && rel.back() == '/') {
    rel.pop_back();
  }
  for (const auto& c : split(rel, '/')) {
    if (c.empty() || c == "." || c == "..") {
      return {};
    }
  }
  return rel;
}

std::string scope_dir(const std::string& state_dir, const PersistSpec& spec) {
  return fmt::format("{}/state/{}/{}", state_dir, spec.scope, short_hash(spec.workspace));
}

Result<std::vector<std::string>> sanitize_persist(const std::string& state_dir,
                                                  const PersistSpec& spec) {
  std::vector<std::string> removed;
  auto home = base::open_fd(scope_dir(state_dir, spec) + "/home",
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (!home) {
    if (home.error().err() == ENOENT) {
      return removed;  // nothing kept yet
    }
    return std::move(home).error();
  }
  std::vector<std::string> roots;
  for (const auto& p : spec.paths) {
    roots.push_back(home_relative(p));
  }
  auto act = [&](const std::string& path, const auto& fn) {
    const std::string rel = home_relative(path);
    if (rel.empty() || owner_of(roots, rel) == nullptr) {
      return;  // not inside a persisted directory: nothing of it is kept anyway
    }
    const auto comps = split(rel, '/');
    UniqueFd parent = open_parent(home->get(), comps, removed, rel);
    if (parent && fn(parent.get(), comps.back())) {
      removed.push_back(rel);
    }
  };
  for (const auto& d : spec.drop) {
    act(d, [](int fd, const std::string& name) {
      struct stat st {};
      return ::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && remove_at(fd, name);
    });
  }
  for (const auto& [file, keys] : spec.strip) {
    act(file,
        [&keys = keys](int fd, const std::string& name) { return strip_file(fd, name, keys); });
  }
  return removed;
}

Result<std::vector<sandbox::Overlay>> prepare_persist(const std::string& state_dir,
                                                      const PersistSpec& spec,
                                                      const std::string& home) {
  std::vector<sandbox::Overlay> binds;
  if (spec.paths.empty()) {
    return binds;
  }
  if (!valid_scope(spec.scope)) {
    return Error::msg(fmt::format("`{}` cannot name a state directory", spec.scope));
  }
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd root,
                            base::open_fd(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const std::string dir = scope_dir(state_dir, spec);
  const std::string key = dir.substr(dir.rfind('/') + 1);
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd scope,
                            open_chain(root.get(), {"state", spec.scope, key}, true));
  if (read_small(scope.get(), "workspace") != spec.workspace) {
    UniqueFd f(::openat(scope.get(), "workspace",
                        O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!f || !base::write_all(f.get(), spec.workspace)) {
      return Error::sys(errno, "write", dir + "/workspace");
    }
  }
  for (const auto& p : spec.paths) {
    const std::string rel = home_relative(p);
    if (rel.empty()) {
      return Error::msg(fmt::format("persist path `{}` is not below ~/", p));
    }
    auto comps = split(rel, '/');
    comps.insert(comps.begin(), "home");
    auto fd = open_chain(scope.get(), comps, true);
    if (!fd) {
      return std::move(fd).error().context(fmt::format("persist path `{}` in {}", p, dir));
    }
    binds.push_back({.target = fmt::format("{}/{}", home, rel),
                     .source = fmt::format("{}/home/{}", dir, rel),
                     .dir = true});
  }
  AGENTBOX_TRY(sanitize_persist(state_dir, spec));
  return binds;
}

Result<std::string> placeholder_key(const std::string& state_dir) {
  const std::string path = state_dir + "/placeholder.key";
  for (int attempt = 0; attempt < 2; ++attempt) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (fd) {
      struct stat st {};
      if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
          (st.st_mode & 077) != 0) {
        return Error::msg(fmt::format("`{}` must be a regular file of yours, mode 0600", path));
      }
      auto key = base::read_all(fd.get(), 64);
      if (!key || key->size() != kKeyBytes) {
        return Error::msg(fmt::format("`{}` is not a {}-byte key", path, kKeyBytes));
      }
      return std::move(*key);
    }
    if (errno != ENOENT) {
      return Error::sys(errno, "open", path);
    }
    // Written aside and linked into place, so a concurrent session never reads half a key.
    std::string key(kKeyBytes, '\0');
    if (::getrandom(key.data(), key.size(), 0) != static_cast<ssize_t>(key.size())) {
      return Error::sys(errno, "getrandom");
    }
    const std::string tmp = fmt::format("{}.{}", path, ::getpid());
    UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out || !base::write_all(out.get(), key) || ::fsync(out.get()) != 0) {
      return Error::sys(errno, "write", tmp);
    }
    const bool linked = ::link(tmp.c_str(), path.c_str()) == 0;
    const int err = errno;
    ::unlink(tmp.c_str());
    if (linked) {
      return key;
    }
    if (err != EEXIST) {
      return Error::sys(err, "link", path);
    }
  }
  return Error::msg(fmt::format("`{}` could not be read or created", path));
}

Result<std::vector<StateEntry>> list_state(const std::string& state_dir) {
  namespace fs = std::filesystem;
  std::vector<StateEntry> out;
  std::error_code ec;
  const fs::path root = fs::path(state_dir) / "state";
  for (const auto& s : fs::directory_iterator(root, ec)) {
    if (!s.is_directory(ec) || s.is_symlink(ec)) {
      continue;
    }
    std::error_code ec2;
    for (const auto& k : fs::directory_iterator(s.path(), ec2)) {
      if (!k.is_directory(ec2) || k.is_symlink(ec2)) {
        continue;
      }
      auto fd = base::open_fd(k.path().string(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      out.push_back({.scope = s.path().filename().string(),
                     .key = k.path().filename().string(),
                     .workspace = fd ? read_small(fd->get(), "workspace") : std::string(),
                     .bytes = tree_bytes(k.path().string())});
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Error::sys(ec.value(), "read", root.string());
  }
  std::sort(out.begin(), out.end(), [](const StateEntry& a, const StateEntry& b) {
    return std::tie(a.scope, a.workspace, a.key) < std::tie(b.scope, b.workspace, b.key);
  });
  return out;
}

Result<size_t> remove_state(const std::string& state_dir, const std::string& scope) {
  if (!scope.empty() && !valid_scope(scope)) {
    return Error::msg(fmt::format("`{}` is not a profile name", scope));
  }
  AGENTBOX_ASSIGN_OR_RETURN(auto entries, list_state(state_dir));
  auto root = base::open_fd(state_dir + "/state", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (!root) {
    if (root.error().err() == ENOENT) {
      return size_t{0};
    }
    return std::move(root).error();
  }
  size_t removed = 0;
  std::vector<std::string> scopes;
  for (const auto& e : entries) {
    if (scope.empty() || e.scope == scope) {
      removed += 1;
      if (std::find(scopes.begin(), scopes.end(), e.scope) == scopes.end()) {
        scopes.push_back(e.scope);
      }
    }
  }
  if (!scope.empty() && scopes.empty()) {
    struct stat st {};
    if (::fstatat(root->get(), scope.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      scopes.push_back(scope);  // an empty scope directory
    }
  }
  for (const auto& s : scopes) {
    if (!remove_at(root->get(), s)) {
      return Error::msg(fmt::format("could not remove all of {}/state/{}", state_dir, s));
    }
  }
  return removed;
}

}  // namespace agentbox::app
