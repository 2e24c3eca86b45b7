// EpollPoller: the Poller interface over epoll(7).
#include "agentbox/net/epoll_poller.hpp"

#include <sys/epoll.h>

#include <cerrno>

namespace agentbox::net {

base::Result<EpollPoller> EpollPoller::create() {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    return base::Error::sys(errno, "epoll_create1");
  }
  return EpollPoller(base::UniqueFd(fd));
}

void EpollPoller::watch(int fd, uint32_t events, uint64_t token) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  // New fds are the common case (one watch per flow): ADD first, MOD only if already there.
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST) {
    (void)epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev);
  }
}

void EpollPoller::unwatch(int fd) {
  (void)epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

std::vector<std::pair<uint64_t, uint32_t>> EpollPoller::wait(int timeout_ms) {
  epoll_event evs[64];
  int n = epoll_wait(epfd_.get(), evs, 64, timeout_ms);
  std::vector<std::pair<uint64_t, uint32_t>> out;
  for (int i = 0; i < n; ++i) {
    uint64_t token = evs[i].data.u64;
    uint32_t events = evs[i].events;
    out.emplace_back(token, events);
  }
  return out;
}

}  // namespace agentbox::net
