// Syscall wrappers with precise errors.
#include "agentbox/base/sys.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

namespace agentbox::base {

Status write_all(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    ssize_t n = retry_eintr([&] { return ::write(fd, data.data(), data.size()); });
    if (n < 0) {
      return Error::sys(errno, "write");
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return ok();
}

Status write_all(int fd, std::string_view data) {
  return write_all(fd, std::as_bytes(std::span<const char>(data.data(), data.size())));
}

Result<std::string> read_all(int fd, size_t limit) {
  std::string out;
  // A regular file's size known, one allocation: growing by doubling copies the data at each
  // step and, past glibc's mmap threshold (128 KiB), faults in fresh pages every time (the
  // system CA bundle, ~220 KiB, was read twice per intercepting session: ~100 faults each).
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    out.reserve(std::min(static_cast<size_t>(st.st_size), limit));
  }
  char buf[16384];
  while (out.size() < limit) {
    ssize_t n = retry_eintr([&] { return ::read(fd, buf, sizeof buf); });
    if (n < 0) {
      return Error::sys(errno, "read");
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.size() > limit) {
    out.resize(limit);
  }
  return out;
}

Result<UniqueFd> open_fd(const std::string& path, int flags, int mode) {
  int fd = retry_eintr([&] { return ::open(path.c_str(), flags | O_CLOEXEC, mode); });
  if (fd < 0) {
    return Error::sys(errno, "open", path);
  }
  return UniqueFd(fd);
}

Result<std::string> read_file(const std::string& path, size_t limit) {
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd fd, open_fd(path, O_RDONLY));
  auto r = read_all(fd.get(), limit);
  if (!r) {
    return std::move(r).error().context(fmt::format("reading `{}`", path));
  }
  return r;
}

Status write_file(const std::string& path, std::string_view data, int mode) {
  AGENTBOX_ASSIGN_OR_RETURN(UniqueFd fd,
                            open_fd(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode));
  auto r = write_all(fd.get(), data);
  if (!r) {
    return std::move(r).error().context(fmt::format("writing `{}`", path));
  }
  return ok();
}

Result<Pipe> make_pipe(int extra_flags) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | extra_flags) != 0) {
    return Error::sys(errno, "pipe2");
  }
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace agentbox::base
