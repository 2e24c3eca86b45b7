// The supervisor's event loop: one epoll set for fds, timers (timerfd), signals (signalfd) and
// child exit (pidfd).
//
// Theory of operation: everything the supervisor waits for is a file descriptor in one epoll set.
// A watch is registered with a callback; the loop dispatches ready watches in epoll order, one
// callback per ready fd per iteration. Callbacks run on the loop's thread and must not throw (the
// loop calls them from noexcept code, so an escaping exception terminates). A callback may add or
// remove any watch, including its own: removal marks the entry dead and the loop skips it for the
// rest of the iteration, then frees it. The tap device, proxy sockets and the control socket join
// the same loop later through watch_fd().
#pragma once

#include <sys/signalfd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::event {

// Identifies a registered watch (fd, timer, signal set or child). Never reused within one Loop.
using WatchId = uint64_t;

// `events` is the EPOLL* mask that was ready (EPOLLIN, EPOLLOUT, EPOLLHUP, EPOLLERR, ...).
using FdCallback = std::function<void(uint32_t events)>;
// `expirations` is the number of expirations since the last call (>= 1).
using TimerCallback = std::function<void(uint64_t expirations)>;
using SignalCallback = std::function<void(const signalfd_siginfo& info)>;
// Called once when the child behind a pidfd has exited (the pidfd became readable). The callback
// reaps it (waitid P_PIDFD) itself, so the loop never steals an exit status.
using ChildCallback = std::function<void()>;

class Loop {
 public:
  [[nodiscard]] static base::Result<Loop> create();
  Loop(Loop&&) noexcept;
  Loop& operator=(Loop&&) noexcept;
  ~Loop();

  // Watches `fd` (not owned; the caller keeps it open until unwatch) for `events` (EPOLLIN|...).
  [[nodiscard]] base::Result<WatchId> watch_fd(int fd, uint32_t events, FdCallback cb);
  // Changes the event mask of a watch made by watch_fd.
  [[nodiscard]] base::Status modify(WatchId id, uint32_t events);
  // Removes any watch (fd, timer, signals, child). Unknown ids are ignored. Safe in callbacks.
  void unwatch(WatchId id) noexcept;

  // One-shot after `delay` when `interval` is zero, else periodic. The loop owns the timerfd. A
  // one-shot timer removes itself when it fires (before its callback runs), so its id is then
  // unknown; unwatching it again is harmless.
  [[nodiscard]] base::Result<WatchId> add_timer(std::chrono::milliseconds delay,
                                                std::chrono::milliseconds interval,
                                                TimerCallback cb);
  // Blocks `signals` in this thread (sigprocmask) and delivers them through a signalfd.
  // Unwatching restores nothing: blocked stays blocked (children get their mask reset by sandbox).
  [[nodiscard]] base::Result<WatchId> watch_signals(std::initializer_list<int> signals,
                                                    SignalCallback cb);
  // Calls `cb` once when the process behind `pidfd` (not owned) exits; then the watch is removed.
  [[nodiscard]] base::Result<WatchId> watch_child(int pidfd, ChildCallback cb);

  // Runs until stop() is called or no watch is left. Errors only when epoll_wait itself fails.
  [[nodiscard]] base::Status run();
  // Waits at most `timeout` (-1: forever) and dispatches what is ready once. Returns the number of
  // callbacks run.
  [[nodiscard]] base::Result<int> run_once(std::chrono::milliseconds timeout);
  void stop() noexcept { stopped_ = true; }
  [[nodiscard]] bool stopped() const noexcept { return stopped_; }
  // Brackets every iteration that dispatches something: `before` runs after epoll_wait returned
  // ready watches and before the first callback, `after` once the last one has returned (the
  // session holds audit lines during an iteration and writes them with one write(2) in `after`).
  // Either may be empty. They must not throw.
  void set_dispatch_hooks(std::function<void()> before, std::function<void()> after) {
    before_dispatch_ = std::move(before);
    after_dispatch_ = std::move(after);
  }
  [[nodiscard]] size_t watch_count() const noexcept { return entries_.size(); }

 private:
  enum class Kind { kFd, kTimer, kSignal, kChild };
  struct Entry {
    Kind kind = Kind::kFd;
    int fd = -1;
    base::UniqueFd owned;  // timerfd / signalfd
    bool dead = false;
    bool once = false;  // one-shot timer: removed when it fires
    FdCallback on_fd;
    TimerCallback on_timer;
    SignalCallback on_signal;
    ChildCallback on_child;
  };
  explicit Loop(base::UniqueFd epfd);
  base::Result<WatchId> add(std::unique_ptr<Entry> entry, uint32_t events);
  void dispatch(WatchId id, uint32_t events) noexcept;

  base::UniqueFd epfd_;
  WatchId next_id_ = 1;
  std::unordered_map<WatchId, std::unique_ptr<Entry>> entries_;
  std::vector<std::unique_ptr<Entry>> graveyard_;  // freed after the current iteration
  bool stopped_ = false;
  std::function<void()> before_dispatch_;
  std::function<void()> after_dispatch_;
};

}  // namespace agentbox::event
