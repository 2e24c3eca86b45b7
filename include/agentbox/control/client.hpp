// The client side of the control socket: what `agentbox ps|stop|kill|...` use.
#pragma once

#include <chrono>
#include <string>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/control/protocol.hpp"

namespace agentbox::control {

class Client {
 public:
  // Connects to the socket at `path`. ECONNREFUSED/ENOENT: the session is not running.
  [[nodiscard]] static base::Result<Client> connect(const std::string& path);
  // Sends one request and waits at most `timeout` for its answer. An error response is an
  // Error with the server's message.
  [[nodiscard]] base::Result<nlohmann::json> call(
      const Request& request, std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  explicit Client(base::UniqueFd fd) : fd_(std::move(fd)) {}
  base::UniqueFd fd_;
  std::string in_;
};

}  // namespace agentbox::control
