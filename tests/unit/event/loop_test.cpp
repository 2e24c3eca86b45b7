// The event loop: fd watches, timers, signals, child exit, removal from inside callbacks.
#include "agentbox/event/loop.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

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

}  // namespace
}  // namespace agentbox::event
