// Blocking work kept off the supervisor's event loop: a small worker pool (Worker) and the
// upstream name resolver built on it (AsyncResolver).
//
// Theory of operation:
//   * Worker: jobs go into a bounded queue; up to `threads` threads (started on first use, with
//     every signal blocked so signals keep arriving through the loop's signalfd) run them; the
//     eventfd joins the loop with the first job, so an unused Worker costs one fd. A
//     finished job's completion is queued back and an eventfd watched by the event::Loop wakes
//     the loop, which runs the completions on its own thread. So completions touch loop-side
//     state freely and jobs touch nothing but what they captured. The threads share one state
//     block with the Worker (shared_ptr): destroying the Worker drops the queued jobs and their
//     completions and detaches the threads, which end after the job they are running (a
//     getaddrinfo cannot be interrupted; the session does not wait for it).
//   * AsyncResolver: resolve(name) answers from a per-session cache (positive answers kept
//     `ttl`, failures `negative_ttl`: getaddrinfo reports no TTL, so the cache picks one) or
//     runs the lookup on a Worker; concurrent lookups of one name share a job. A lookup still
//     running after `timeout` is answered with an error (the thread finishes it later and its
//     answer still fills the cache). The caller applies the egress checks (DNS rebinding guard)
//     to whatever comes back, cached or not, before it connects.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/net/connect.hpp"

namespace agentbox::net {

class Worker {
 public:
  struct Options {
    size_t threads = 2;
    size_t max_queue = 256;  // queued + running
  };
  [[nodiscard]] static base::Result<std::unique_ptr<Worker>> create(event::Loop& loop,
                                                                    Options options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs `job` on a worker thread, then `done` on the loop's thread. False (nothing runs) when
  // the queue is full or a thread cannot be started.
  [[nodiscard]] bool post(std::function<void()> job, std::function<void()> done);
  [[nodiscard]] size_t threads() const;

  struct State;

 private:
  Worker() = default;
  void on_ready() noexcept;
  event::Loop* loop_ = nullptr;
  event::WatchId watch_ = 0;
  std::shared_ptr<State> state_;
};

class AsyncResolver {
 public:
  using Addrs = base::Result<std::vector<policy::IpAddr>>;
  using Done = std::function<void(const Addrs&)>;
  struct Options {
    Resolver resolve = system_resolve;  // runs on the worker
    size_t threads = 2;
    size_t max_queue = 256;
    std::chrono::milliseconds timeout{5'000};
    std::chrono::milliseconds ttl{30'000};
    std::chrono::milliseconds negative_ttl{5'000};
    size_t max_cache = 1024;
  };
  struct Counters {
    uint64_t lookups = 0;  // jobs run on the worker
    uint64_t cache_hits = 0;
    uint64_t shared = 0;  // waited on a lookup already running
    uint64_t timeouts = 0;
    uint64_t refused = 0;  // queue full
  };

  [[nodiscard]] static base::Result<std::unique_ptr<AsyncResolver>> create(event::Loop& loop,
                                                                           Options options);
  ~AsyncResolver();
  AsyncResolver(const AsyncResolver&) = delete;
  AsyncResolver& operator=(const AsyncResolver&) = delete;

  // A fresh cached answer, if any (counts a hit).
  [[nodiscard]] std::optional<Addrs> cached(const std::string& name);
  // Resolves `name` in the background; `done` runs later on the loop's thread (never inside
  // this call). Returns a ticket for cancel().
  uint64_t resolve(const std::string& name, Done done);
  // The ticket's `done` will not run. Unknown tickets are ignored.
  void cancel(uint64_t ticket);
  [[nodiscard]] const Counters& counters() const { return counters_; }

 private:
  struct Pending {
    std::vector<std::pair<uint64_t, Done>> waiters;
    event::WatchId timer = 0;
    bool timed_out = false;
  };
  struct Cached {
    Addrs addrs;
    std::chrono::steady_clock::time_point expires;
  };
  AsyncResolver(event::Loop& loop, Options options, std::unique_ptr<Worker> worker);
  void finish(const std::string& name, const Addrs& addrs, bool from_timeout);
  void store(const std::string& name, const Addrs& addrs);

  event::Loop& loop_;
  Options options_;
  std::unique_ptr<Worker> worker_;
  std::map<std::string, Pending> pending_;
  std::map<std::string, Cached> cache_;
  std::map<uint64_t, std::string> tickets_;
  uint64_t next_ticket_ = 1;
  Counters counters_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace agentbox::net
