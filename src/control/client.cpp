// The control socket's client side (client.hpp).
#include "agentbox/control/client.hpp"

#include <fmt/core.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace agentbox::control {

using base::Error;
using base::Result;

Result<Client> Client::connect(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    return Error::msg(fmt::format("socket path `{}` is too long", path));
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return Error::sys(errno, "socket", "AF_UNIX");
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    return Error::sys(errno, "connect", path);
  }
  return Client(std::move(fd));
}

Result<nlohmann::json> Client::call(const Request& request, std::chrono::milliseconds timeout) {
  std::string line = encode_request(request);
  if (::send(fd_.get(), line.data(), line.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(line.size())) {
    return Error::sys(errno, "send", "control socket");
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t nl;
  while ((nl = in_.find('\n')) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    struct pollfd p = {fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (r == 0) {
      return Error::msg(
          fmt::format("no answer to `{}` within {} ms", request.verb, timeout.count()));
    }
    char buf[65536];
    ssize_t n = r < 0 ? -1 : ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n == 0 ? Error::msg("the session closed the control connection")
                    : Error::sys(errno, "recv", "control socket");
    }
    in_.append(buf, static_cast<size_t>(n));
    if (in_.size() > (16u << 20)) {
      return Error::msg("answer longer than 16 MiB");
    }
  }
  std::string reply = in_.substr(0, nl);
  in_.erase(0, nl + 1);
  // Answers may be long (policy, ps): decode them without the request line limit.
  nlohmann::json j = nlohmann::json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error::msg("the session answered something that is not JSON");
  }
  auto ok = j.find("ok");
  if (ok != j.end() && ok->is_boolean() && ok->get<bool>()) {
    auto res = j.find("result");
    return res == j.end() ? nlohmann::json::object() : *res;
  }
  auto err = j.find("error");
  return Error::msg(err != j.end() && err->is_string() ? err->get<std::string>()
                                                       : "the session refused the request");
}

}  // namespace agentbox::control
