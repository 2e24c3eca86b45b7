// The event loop: fd watches, timers, signals, child exit, removal from inside callbacks.
#include "agentbox/event/loop.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>

namespace agentbox::event {
namespace {

using std::chrono::milliseconds;

TEST(Loop, FdWatchSeesDataAndCanRemoveItself) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  std::string got;
  WatchId id = 0;
  auto w = loop->watch_fd(p[0], EPOLLIN, [&](uint32_t events) {
    EXPECT_TRUE(events & EPOLLIN);
    char buf[16];
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
    }
    loop->unwatch(id);  // removing yourself inside the callback is allowed
  });
  ASSERT_TRUE(w);
  id = *w;
  ASSERT_EQ(::write(p[1], "abc", 3), 3);
  ASSERT_TRUE(loop->run());  // returns: no watch left
  EXPECT_EQ(got, "abc");
  EXPECT_EQ(loop->watch_count(), 0u);
  ::close(p[0]);
  ::close(p[1]);
}

TEST(Loop, RemovedWatchIsNotDispatchedLaterInTheSameIteration) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  int a[2];
  int b[2];
  ASSERT_EQ(::pipe2(a, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(b, O_CLOEXEC), 0);
  int calls = 0;
  WatchId wa = 0;
  WatchId wb = 0;
  // Whichever fires first removes the other; the other must never run.
  wa = *loop->watch_fd(a[0], EPOLLIN, [&](uint32_t) {
    ++calls;
    loop->unwatch(wb);
    loop->unwatch(wa);
  });
  wb = *loop->watch_fd(b[0], EPOLLIN, [&](uint32_t) {
    ++calls;
    loop->unwatch(wa);
    loop->unwatch(wb);
  });
  ASSERT_EQ(::write(a[1], "x", 1), 1);
  ASSERT_EQ(::write(b[1], "x", 1), 1);
  auto n = loop->run_once(milliseconds(1000));
  ASSERT_TRUE(n);
  EXPECT_EQ(calls, 1);
  for (int fd : {a[0], a[1], b[0], b[1]}) {
    ::close(fd);
  }
}

TEST(Loop, OneShotAndPeriodicTimers) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  int once = 0;
  uint64_t ticks = 0;
  WatchId periodic = 0;
  ASSERT_TRUE(loop->add_timer(milliseconds(5), milliseconds(0), [&](uint64_t) { ++once; }));
  periodic = *loop->add_timer(milliseconds(1), milliseconds(2), [&](uint64_t n) {
    ticks += n;
    if (ticks >= 5) {
      loop->unwatch(periodic);
    }
  });
  auto start = std::chrono::steady_clock::now();
  while ((once == 0 || ticks < 5) &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    ASSERT_TRUE(loop->run_once(milliseconds(100)));
  }
  EXPECT_EQ(once, 1);
  EXPECT_GE(ticks, 5u);
}

TEST(Loop, ZeroDelayTimerFires) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  bool fired = false;
  ASSERT_TRUE(loop->add_timer(milliseconds(0), milliseconds(0), [&](uint64_t) {
    fired = true;
    loop->stop();
  }));
  ASSERT_TRUE(loop->run());
  EXPECT_TRUE(fired);
}

// A one-shot timer that fired must not stay in the table (each one held a timerfd): 10,000 of
// them in a row leave no entry behind, and the process's fd count does not grow either.
TEST(Loop, FiredOneShotTimersDoNotAccumulate) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  auto open_fds = [] {
    int n = 0;
    for (int fd = 0; fd < 65536; ++fd) {
      if (::fcntl(fd, F_GETFD) >= 0) {
        ++n;
      }
    }
    return n;
  };
  const int fds_before = open_fds();
  int fired = 0;
  size_t max_watches = 0;
  WatchId last = 0;
  for (int i = 0; i < 10000; ++i) {
    auto id = loop->add_timer(milliseconds(0), milliseconds(0), [&](uint64_t) { ++fired; });
    ASSERT_TRUE(id) << id.error().message();
    max_watches = std::max(max_watches, loop->watch_count());
    // Bounded: a zero-delay timer fires within the first wait; the loop must not spin forever.
    for (int spin = 0; spin < 100 && fired <= i; ++spin) {
      ASSERT_TRUE(loop->run_once(milliseconds(100)));
    }
    ASSERT_EQ(fired, i + 1);
    last = *id;
  }
  loop->unwatch(last);  // an owner that still unwatches a fired timer is harmless
  EXPECT_EQ(fired, 10000);
  EXPECT_EQ(loop->watch_count(), 0u);
  EXPECT_LE(max_watches, 1u);
  EXPECT_EQ(open_fds(), fds_before);
}

// A one-shot timer may re-arm a new one from inside its callback (the proxy's flush timer does).
TEST(Loop, OneShotTimerCanRearmFromItsCallback) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  int fired = 0;
  std::function<void(uint64_t)> again = [&](uint64_t) {
    if (++fired < 3) {
      ASSERT_TRUE(loop->add_timer(milliseconds(0), milliseconds(0), again));
    }
  };
  ASSERT_TRUE(loop->add_timer(milliseconds(0), milliseconds(0), again));
  ASSERT_TRUE(loop->run());  // returns once the last timer removed itself: no watch left
  EXPECT_EQ(fired, 3);
  EXPECT_EQ(loop->watch_count(), 0u);
}

TEST(Loop, SignalsArriveThroughSignalfd) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  int seen = 0;
  auto w = loop->watch_signals({SIGUSR1}, [&](const signalfd_siginfo& si) {
    seen = static_cast<int>(si.ssi_signo);
    loop->stop();
  });
  ASSERT_TRUE(w);
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);  // blocked now, so it waits in the signalfd
  ASSERT_TRUE(loop->run());
  EXPECT_EQ(seen, SIGUSR1);
  loop->unwatch(*w);
}

TEST(Loop, ChildExitThroughPidfd) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::_exit(5);
  }
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  ASSERT_GE(pidfd, 0);
  int status = -1;
  ASSERT_TRUE(loop->watch_child(pidfd, [&] {
    siginfo_t info{};
    ASSERT_EQ(::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED), 0);
    status = info.si_status;
  }));
  ASSERT_TRUE(loop->run());  // the child watch removes itself after firing
  EXPECT_EQ(status, 5);
  ::close(pidfd);
}

TEST(Loop, ModifyUnknownWatchFails) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  EXPECT_FALSE(loop->modify(12345, EPOLLIN));
  loop->unwatch(12345);  // ignored
}

// The session holds its audit lines for one iteration: the hooks bracket every callback of an
// iteration that dispatched something, and a wait that timed out runs neither.
TEST(Loop, DispatchHooksBracketEachIteration) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  std::string trace;
  loop->set_dispatch_hooks([&] { trace += "("; }, [&] { trace += ")"; });
  auto w = loop->watch_fd(p[0], EPOLLIN, [&](uint32_t) {
    char buf[16];
    while (::read(p[0], buf, sizeof buf) > 0) {
    }
    trace += "r";
  });
  ASSERT_TRUE(w);
  auto n = loop->run_once(milliseconds(0));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0);
  EXPECT_EQ(trace, "") << "nothing ready: no hooks";
  ASSERT_EQ(::write(p[1], "a", 1), 1);
  ASSERT_TRUE(loop->run_once(milliseconds(1000)));
  ASSERT_EQ(::write(p[1], "b", 1), 1);
  ASSERT_TRUE(loop->run_once(milliseconds(1000)));
  EXPECT_EQ(trace, "(r)(r)");
  loop->unwatch(*w);
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace
}  // namespace agentbox::event
