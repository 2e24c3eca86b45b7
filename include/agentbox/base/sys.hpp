// Thin, errno-precise wrappers over the system calls used everywhere.
#pragma once

#include <cerrno>
#include <span>
#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::base {

// Retries `f` while it fails with EINTR; returns its result.
template <class F>
auto retry_eintr(F&& f) {
  decltype(f()) r;
  do {
    r = f();
  } while (r == -1 && errno == EINTR);
  return r;
}

// Writes all of `data`, retrying short writes and EINTR.
Status write_all(int fd, std::span<const std::byte> data);
Status write_all(int fd, std::string_view data);
// Reads until EOF (at most `limit` bytes).
Result<std::string> read_all(int fd, size_t limit = 1u << 20);
Result<std::string> read_file(const std::string& path, size_t limit = 1u << 20);
// Writes a whole file (O_CLOEXEC|O_NOFOLLOW, truncating), mode for creation.
Status write_file(const std::string& path, std::string_view data, int mode = 0644);

Result<UniqueFd> open_fd(const std::string& path, int flags, int mode = 0);
// pipe2(O_CLOEXEC) as two owned ends.
struct Pipe {
  UniqueFd read;
  UniqueFd write;
};
Result<Pipe> make_pipe(int extra_flags = 0);

}  // namespace agentbox::base
