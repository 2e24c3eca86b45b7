// app::Session once the box runs: the terminal relay, signals, --timeout, the end of the process
// that started agentbox, reaping (session.hpp).
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "agentbox/app/session.hpp"
#include "agentbox/app/terminal.hpp"
#include "agentbox/base/log.hpp"
#include "session_internal.hpp"

namespace agentbox::app {

namespace sb = sandbox;

// A pidfd rather than PR_SET_PDEATHSIG, which fires when the parent *thread* that forked us exits
// (a worker thread of a CI runner or a Python pool), not the parent process.
base::UniqueFd watch_parent(const config::Policy& policy) {
  if (!policy.die_with_parent.value) {
    return {};
  }
  pid_t parent = ::getppid();
  base::UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, parent, 0)));
  if (!fd || ::getppid() != parent) {  // gone already: we were reparented before the open
    base::log::debug("parent {} not watched: {}", parent, fd ? "already gone" : "pidfd_open");
    return {};
  }
  return fd;
}

namespace {

// What stops the box from outside: agentbox's signals, the parent's end, --timeout. SIGTERM,
// SIGHUP, the parent and the timeout arm a 3 s timer after which the box gets SIGKILL.
struct Stops {
  sb::Box& box;
  event::Loop& loop;
  PtyRelay* relay = nullptr;
  EndReason ended_by = EndReason::exit;
  event::WatchId kill_timer = 0;
  event::WatchId parent_watch = 0;

  void arm_kill() {
    if (kill_timer != 0) {
      return;
    }
    auto t = loop.add_timer(std::chrono::seconds(3), std::chrono::milliseconds(0),
                            [this](uint64_t) { [[maybe_unused]] auto r = box.signal(SIGKILL); });
    kill_timer = t ? *t : 0;
  }

  void on_signal(const signalfd_siginfo& si) {
    int n = static_cast<int>(si.ssi_signo);
    if (n == SIGWINCH) {
      if (relay != nullptr) {
        relay->resize();
      }
      return;
    }
    [[maybe_unused]] auto r = box.signal(n);
    if (n == SIGTERM || n == SIGHUP) {
      ended_by = n == SIGTERM ? EndReason::sigterm : EndReason::sighup;
      arm_kill();
    }
  }

  void watch_parent_fd(int parent) {
    if (parent < 0) {
      return;
    }
    auto w = loop.watch_fd(parent, EPOLLIN, [this](uint32_t) {
      base::log::info("the process that started agentbox has ended: stopping the box");
      ended_by = EndReason::parent_ended;
      [[maybe_unused]] auto r = box.signal(SIGTERM);
      arm_kill();
      loop.unwatch(parent_watch);
    });
    parent_watch = w ? *w : 0;
  }

  void watch_timeout(const std::optional<config::Sourced<uint64_t>>& t) {
    if (!t) {
      return;
    }
    [[maybe_unused]] auto timer = loop.add_timer(
        std::chrono::seconds(t->value), std::chrono::milliseconds(0), [this, &t](uint64_t) {
          base::log::info("timeout of {}s reached ({}): stopping the box", t->value,
                          detail::origin_text(t->origin));
          ended_by = EndReason::timeout;
          [[maybe_unused]] auto r = box.signal(SIGTERM);
          arm_kill();
        });
  }
};

}  // namespace

Session::Outcome Session::supervise(sb::Box& box) {
  event::Loop& loop = *loop_;
  int exit_code = 125;
  std::unique_ptr<RawMode> raw;
  std::unique_ptr<PtyRelay> relay;
  base::UniqueFd master = box.take_pty_master();
  if (master) {
    raw = std::make_unique<RawMode>(STDIN_FILENO);
    relay = std::make_unique<PtyRelay>(loop, STDIN_FILENO, STDOUT_FILENO, master.get(),
                                       terminal_filter_options(req_.policy));
    if (auto r = relay->start(); !r) {
      base::log::warn("terminal relay: {}", r.error().message());
    }
  }
  Stops stops{.box = box, .loop = loop, .relay = relay.get()};
  loop.unwatch(signals_);
  auto sig = loop.watch_signals({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2},
                                [&stops](const signalfd_siginfo& si) { stops.on_signal(si); });
  if (sig) {
    signals_ = *sig;
  }
  stops.watch_parent_fd(parent_.get());
  stops.watch_timeout(req_.policy.limits.timeout_seconds);
  [[maybe_unused]] auto child = loop.watch_child(box.pidfd(), [&] {
    auto r = box.reap(true);
    exit_code = r && r->has_value() ? **r : 125;
    if (relay) {
      relay->drain();
    }
    loop.stop();
  });
  if (auto r = loop.run(); !r) {
    base::log::warn("event loop: {}", r.error().message());
  }
  if (!box.reaped()) {
    [[maybe_unused]] auto k = box.signal(SIGKILL);
    auto r = box.reap(true);
    exit_code = r && r->has_value() ? **r : 125;
  }
  std::string terminal = relay ? relay->report(*sink_) : std::string();
  relay.reset();
  raw.reset();  // the user's terminal is cooked again before anything else is printed
  return {exit_code, stops.ended_by, std::move(terminal)};
}

}  // namespace agentbox::app
