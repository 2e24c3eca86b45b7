// Review mode: `agentbox diff`, a unified diff of a review session through diffutils' `diff -u`
// (docs/REVIEW.md says why an external program: diffutils is Essential on Debian, so always
// there, and no Debian library offers a maintained unified diff for C++).
#include <fcntl.h>
#include <fmt/core.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>

#include "agentbox/app/review.hpp"
#include "agentbox/base/sys.hpp"

extern char** environ;

namespace agentbox::app {

using base::Error;

namespace {

// git's rule: a NUL byte in the first 8000 bytes makes a file binary.
bool binary_file(const std::string& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return false;
  }
  std::array<char, 8000> buf{};
  ssize_t n = base::retry_eintr([&] { return ::read(fd.get(), buf.data(), buf.size()); });
  return n > 0 && std::memchr(buf.data(), 0, size_t(n)) != nullptr;
}

}  // namespace

// A side that does not exist is labelled /dev/null, as git and patch(1) expect.
base::Status unified_diff(const std::string& rel, const std::string& old_path,
                          const std::string& new_path) {
  std::fflush(stdout);
  std::string a = old_path == "/dev/null" ? old_path : "a/" + shown(rel);
  std::string b = new_path == "/dev/null" ? new_path : "b/" + shown(rel);
  std::array<const char*, 9> argv = {"diff",    "-u",      "--label",        a.c_str(),
                                     "--label", b.c_str(), old_path.c_str(), new_path.c_str(),
                                     nullptr};
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, "diff", nullptr, nullptr, const_cast<char* const*>(argv.data()),
                          environ);
  if (rc != 0) {
    return Error::sys(rc, "run", "diff").hint("diff comes with diffutils (apt install diffutils)");
  }
  int status = 0;
  if (base::retry_eintr([&] { return ::waitpid(pid, &status, 0); }) < 0) {
    return Error::sys(errno, "waitpid", "diff");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) > 1) {
    return Error::msg(fmt::format("diff of `{}` failed (status {})", rel, status));
  }
  return {};
}

namespace {

base::Status one(const Review& r, const Change& c) {
  std::string old_path = c.kind == ChangeKind::kAdded ? "/dev/null" : r.workspace + "/" + c.path;
  std::string new_path = c.kind == ChangeKind::kDeleted ? "/dev/null" : r.upper + "/" + c.path;
  if (!c.danger.empty()) {
    fmt::print("# DANGEROUS: {}: {}\n", shown(c.path), c.danger);
  }
  if (c.type != EntryType::kFile || c.kind == ChangeKind::kMode) {
    fmt::print("# {}\n", describe(c));
    return {};
  }
  if (!c.renamed_from.empty()) {
    fmt::print("# {}\n", describe(c));
  }
  if (binary_file(old_path) || binary_file(new_path)) {
    fmt::print("Binary files a/{0} and b/{0} differ ({1} -> {2} bytes)\n", shown(c.path),
               c.old_size, c.size);
    return {};
  }
  return unified_diff(c.path, old_path, new_path);
}

}  // namespace

base::Status print_diff(const Review& r, const std::vector<std::string>& paths, bool stat) {
  AGENTBOX_ASSIGN_OR_RETURN(std::vector<Change> changes, scan(r));
  for (const auto& c : changes) {
    if (!paths.empty() && !selected(c.path, paths)) {
      continue;
    }
    if (stat) {
      fmt::print("{}\n", describe(c));
      continue;
    }
    AGENTBOX_TRY(one(r, c));
  }
  std::fflush(stdout);
  return {};
}

}  // namespace agentbox::app
