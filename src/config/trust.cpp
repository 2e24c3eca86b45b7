// Ownership and mode checks on the files whose contents become policy (see trust.hpp).
#include "trust.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "agentbox/base/unique_fd.hpp"

namespace agentbox::config {
namespace {

constexpr off_t kMaxConfigFile = 4 * 1024 * 1024;

// "" when acceptable, otherwise what is wrong, in words.
std::string untrusted(const struct stat& st, bool is_dir) {
  uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me) {
    return fmt::format("owned by uid {} (neither you, uid {}, nor root)", st.st_uid, me);
  }
  bool sticky = (st.st_mode & S_ISVTX) != 0;
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !(is_dir && sticky)) {
    return fmt::format("writable by {} (mode {:04o})",
                       (st.st_mode & S_IWOTH) != 0 ? "everyone" : "its group", st.st_mode & 07777);
  }
  return {};
}

}  // namespace

std::optional<TrustedText> read_trusted(const std::string& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    if (errno == ENOENT) {
      return std::nullopt;
    }
    return TrustedText{{}, fmt::format("cannot open: {}", std::strerror(errno))};
  }
  TrustedText out;
  struct stat st {};
  std::error_code ec;
  std::filesystem::path real = std::filesystem::canonical(path, ec);
  struct stat dir {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    out.refused = "not a regular file";
  } else if (st.st_size > kMaxConfigFile) {
    out.refused = fmt::format("larger than {} MiB", kMaxConfigFile >> 20);
  } else if (std::string why = untrusted(st, false); !why.empty()) {
    out.refused = "the file is " + why;
  } else if (ec || ::stat(real.parent_path().c_str(), &dir) != 0) {
    out.refused = "cannot resolve the directory it is in";
  } else if (std::string dwhy = untrusted(dir, true); !dwhy.empty()) {
    out.refused = fmt::format("its directory {} is {}", real.parent_path().string(), dwhy);
  }
  char buf[16384];
  ssize_t n = 0;
  while (out.refused.empty() && (n = ::read(fd.get(), buf, sizeof buf)) > 0) {
    out.text.append(buf, static_cast<size_t>(n));
  }
  if (n < 0) {
    out.refused = fmt::format("cannot read: {}", std::strerror(errno));
  }
  if (!out.refused.empty()) {
    out.text.clear();
  }
  return out;
}

}  // namespace agentbox::config
