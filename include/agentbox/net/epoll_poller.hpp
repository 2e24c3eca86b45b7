// A Poller over a private epoll fd: for tests and for running the stack without the event
// module (the session loop adapts its own epoll to the Poller interface instead).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/net/flow.hpp"

namespace agentbox::net {

class EpollPoller final : public Poller {
 public:
  [[nodiscard]] static base::Result<EpollPoller> create();
  void watch(int fd, uint32_t events, uint64_t token) override;
  void unwatch(int fd) override;
  // Waits up to timeout_ms; returns (token, events) pairs.
  [[nodiscard]] std::vector<std::pair<uint64_t, uint32_t>> wait(int timeout_ms);
  [[nodiscard]] int fd() const { return epfd_.get(); }

 private:
  explicit EpollPoller(base::UniqueFd fd) : epfd_(std::move(fd)) {}
  base::UniqueFd epfd_;
};

}  // namespace agentbox::net
