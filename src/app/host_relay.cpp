// A byte relay between two sockets on the session loop (host services).
#include "host_relay.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>

namespace agentbox::app {

namespace {

// Moves what `from` has into `to` through `d` until one of them would block. Returns 0 or the
// errno that ended the flow.
int pump(int from, int to, RelayDirection& d) noexcept {
  while (true) {
    if (d.len > 0) {
      ssize_t n = ::send(to, d.buf.get() + d.off, d.len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        return errno == EAGAIN || errno == EINTR ? 0 : errno;
      }
      d.off += static_cast<size_t>(n);
      d.len -= static_cast<size_t>(n);
      d.bytes += static_cast<uint64_t>(n);
      continue;
    }
    if (d.eof) {
      if (!d.shut) {
        d.shut = true;
        if (::shutdown(to, SHUT_WR) != 0 && errno != ENOTCONN) {
          return errno;
        }
      }
      return 0;
    }
    ssize_t n = ::recv(from, d.buf.get(), RelayDirection::kSize, MSG_DONTWAIT);
    if (n == 0) {
      d.eof = true;
      continue;
    }
    if (n < 0) {
      return errno == EAGAIN || errno == EINTR ? 0 : errno;
    }
    d.off = 0;
    d.len = static_cast<size_t>(n);
  }
}

}  // namespace

Relay::Relay(event::Loop& loop, base::UniqueFd a, base::UniqueFd b, Done done)
    : loop_(loop), a_(std::move(a)), b_(std::move(b)), done_(std::move(done)) {}

Relay::~Relay() {
  loop_.unwatch(wa_);
  loop_.unwatch(wb_);
}

base::Status Relay::start() {
  constexpr uint32_t kEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  AGENTBOX_ASSIGN_OR_RETURN(wa_,
                            loop_.watch_fd(a_.get(), kEvents, [this](uint32_t) { on_event(); }));
  AGENTBOX_ASSIGN_OR_RETURN(wb_,
                            loop_.watch_fd(b_.get(), kEvents, [this](uint32_t) { on_event(); }));
  on_event();  // bytes may have arrived before the watch (edge-triggered: no event for them)
  return base::ok();
}

void Relay::on_event() noexcept {
  if (finished_) {
    return;
  }
  int err = pump(a_.get(), b_.get(), fwd_);
  if (err == 0) {
    err = pump(b_.get(), a_.get(), back_);
  }
  if (err != 0 || (fwd_.shut && back_.shut)) {
    finished_ = true;
    loop_.unwatch(wa_);
    loop_.unwatch(wb_);
    wa_ = wb_ = 0;
    Done done = std::move(done_);  // the owner may destroy this Relay in it: nothing after
    done(err);
  }
}

}  // namespace agentbox::app
