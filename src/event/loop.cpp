// epoll-based event loop: fds, timerfd timers, signalfd signals and pidfd child exits.
#include "agentbox/event/loop.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <array>
#include <cerrno>

#include "agentbox/base/sys.hpp"

namespace agentbox::event {

using base::Error;
using base::Result;
using base::UniqueFd;

Loop::Loop(UniqueFd epfd) : epfd_(std::move(epfd)) {}
Loop::Loop(Loop&&) noexcept = default;
Loop& Loop::operator=(Loop&&) noexcept = default;
Loop::~Loop() = default;

Result<Loop> Loop::create() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    return Error::sys(errno, "epoll_create1");
  }
  return Loop(UniqueFd(fd));
}

Result<WatchId> Loop::add(std::unique_ptr<Entry> entry, uint32_t events) {
  WatchId id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, entry->fd, &ev) != 0) {
    return Error::sys(errno, "epoll_ctl ADD");
  }
  entries_.emplace(id, std::move(entry));
  return id;
}

Result<WatchId> Loop::watch_fd(int fd, uint32_t events, FdCallback cb) {
  auto e = std::make_unique<Entry>();
  e->kind = Kind::kFd;
  e->fd = fd;
  e->on_fd = std::move(cb);
  return add(std::move(e), events);
}

base::Status Loop::modify(WatchId id, uint32_t events) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second->dead) {
    return Error::sys(ENOENT, "epoll_ctl MOD");
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, it->second->fd, &ev) != 0) {
    return Error::sys(errno, "epoll_ctl MOD");
  }
  return base::ok();
}

void Loop::unwatch(WatchId id) noexcept {
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return;
  }
  // The fd may already be closed by its owner; the kernel then dropped it from the set itself.
  ::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, it->second->fd, nullptr);
  it->second->dead = true;
  graveyard_.push_back(std::move(it->second));  // its callback may be running right now
  entries_.erase(it);
}

Result<WatchId> Loop::add_timer(std::chrono::milliseconds delay, std::chrono::milliseconds interval,
                                TimerCallback cb) {
  int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) {
    return Error::sys(errno, "timerfd_create");
  }
  UniqueFd owned(fd);
  auto to_ts = [](std::chrono::milliseconds ms) {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(ms.count() / 1000);
    ts.tv_nsec = static_cast<long>((ms.count() % 1000) * 1000000);
    return ts;
  };
  itimerspec spec{};
  spec.it_value = to_ts(delay.count() > 0 ? delay : std::chrono::milliseconds(0));
  if (delay.count() <= 0) {
    spec.it_value.tv_nsec = 1;  // zero would disarm the timer: fire as soon as possible
  }
  spec.it_interval = to_ts(interval);
  if (::timerfd_settime(fd, 0, &spec, nullptr) != 0) {
    return Error::sys(errno, "timerfd_settime");
  }
  auto e = std::make_unique<Entry>();
  e->kind = Kind::kTimer;
  e->fd = fd;
  e->owned = std::move(owned);
  e->once = interval.count() <= 0;
  e->on_timer = std::move(cb);
  return add(std::move(e), EPOLLIN);
}

Result<WatchId> Loop::watch_signals(std::initializer_list<int> signals, SignalCallback cb) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) {
    sigaddset(&set, s);
  }
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) {
    return Error::sys(errno, "sigprocmask");
  }
  int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) {
    return Error::sys(errno, "signalfd");
  }
  auto e = std::make_unique<Entry>();
  e->kind = Kind::kSignal;
  e->fd = fd;
  e->owned = UniqueFd(fd);
  e->on_signal = std::move(cb);
  return add(std::move(e), EPOLLIN);
}

Result<WatchId> Loop::watch_child(int pidfd, ChildCallback cb) {
  auto e = std::make_unique<Entry>();
  e->kind = Kind::kChild;
  e->fd = pidfd;
  e->on_child = std::move(cb);
  return add(std::move(e), EPOLLIN);
}

void Loop::dispatch(WatchId id, uint32_t events) noexcept {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second->dead) {
    return;  // removed earlier in this iteration
  }
  Entry& e = *it->second;
  switch (e.kind) {
    case Kind::kFd:
      e.on_fd(events);
      return;
    case Kind::kTimer: {
      uint64_t n = 0;
      ssize_t r = ::read(e.fd, &n, sizeof n);
      if (r != static_cast<ssize_t>(sizeof n) || n == 0) {
        return;
      }
      if (e.once) {
        // A fired one-shot timerfd is disarmed for good: drop it now, or every one-shot timer
        // would keep its timerfd and table entry until the owner remembered to unwatch it.
        TimerCallback cb = std::move(e.on_timer);
        unwatch(id);
        cb(n);
        return;
      }
      e.on_timer(n);
      return;
    }
    case Kind::kSignal: {
      // Drain every queued signal: one readiness may stand for several.
      for (int i = 0; i < 64 && !e.dead; ++i) {
        signalfd_siginfo info{};
        ssize_t r = ::read(e.fd, &info, sizeof info);
        if (r != static_cast<ssize_t>(sizeof info)) {
          break;
        }
        e.on_signal(info);
      }
      return;
    }
    case Kind::kChild: {
      ChildCallback cb = std::move(e.on_child);
      unwatch(id);  // fires once
      cb();
      return;
    }
  }
}

Result<int> Loop::run_once(std::chrono::milliseconds timeout) {
  std::array<epoll_event, 32> events{};
  int n = base::retry_eintr([&] {
    return ::epoll_wait(epfd_.get(), events.data(), static_cast<int>(events.size()),
                        static_cast<int>(timeout.count()));
  });
  if (n < 0) {
    return Error::sys(errno, "epoll_wait");
  }
  if (n > 0 && before_dispatch_) {
    before_dispatch_();
  }
  for (int i = 0; i < n; ++i) {
    dispatch(events[static_cast<size_t>(i)].data.u64, events[static_cast<size_t>(i)].events);
  }
  if (n > 0 && after_dispatch_) {
    after_dispatch_();
  }
  graveyard_.clear();
  return n;
}

base::Status Loop::run() {
  while (!stopped_ && !entries_.empty()) {
    AGENTBOX_TRY(run_once(std::chrono::milliseconds(-1)));
  }
  return base::ok();
}

}  // namespace agentbox::event
