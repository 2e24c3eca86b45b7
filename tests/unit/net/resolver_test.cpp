// The worker pool and the asynchronous resolver: lookups run off the loop, a slow one does not
// hold up a fast one, answers are cached and shared, a lookup past its timeout is answered.
#include "agentbox/net/resolver.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "../event/pump.hpp"

namespace agentbox::net {
namespace {

using namespace std::chrono_literals;
using Addrs = AsyncResolver::Addrs;

using event::testing::pump_until;

TEST(Worker, JobsRunOffTheLoopAndCompleteOnIt) {
  auto loop = event::Loop::create();
  ASSERT_TRUE(loop);
  auto w = Worker::create(*loop, {.threads = 2, .max_queue = 4});
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ(loop->watch_count(), 0u);  // nothing until the first job
  const auto loop_thread = std::this_thread::get_id();
  std::thread::id job_thread;
  std::thread::id done_thread;
  bool done = false;
  ASSERT_TRUE((*w)->post([&] { job_thread = std::this_thread::get_id(); },
                         [&] {
                           done_thread = std::this_thread::get_id();
                           done = true;
                         }));
  ASSERT_TRUE(pump_until(*loop, [&] { return done; }));
  EXPECT_NE(job_thread, loop_thread);
  EXPECT_EQ(done_thread, loop_thread);
}

TEST(Worker, QueueIsBounded) {
  auto loop = event::Loop::create();
  auto w = Worker::create(*loop, {.threads = 1, .max_queue = 2});
  ASSERT_TRUE(w);
  std::atomic<bool> release{false};
  auto block = [&] {
    while (!release) {
      std::this_thread::sleep_for(1ms);
    }
  };
  int finished = 0;
  EXPECT_TRUE((*w)->post(block, [&] { ++finished; }));
  EXPECT_TRUE((*w)->post(block, [&] { ++finished; }));
  EXPECT_FALSE((*w)->post(block, [&] { ++finished; }));  // full
  release = true;
  ASSERT_TRUE(pump_until(*loop, [&] { return finished == 2; }));
  EXPECT_EQ((*w)->threads(), 1u);
}

TEST(AsyncResolver, SlowLookupDoesNotHoldUpAnotherAndAnswersAreCached) {
  auto loop = event::Loop::create();
  std::atomic<bool> slow_running{false};
  std::atomic<bool> slow_release{false};
  std::atomic<int> calls{0};
  auto fake = [&](const std::string& name) -> Addrs {
    ++calls;
    if (name == "slow.test") {
      slow_running = true;
      for (int i = 0; i < 5000 && !slow_release; ++i) {
        std::this_thread::sleep_for(1ms);
      }
      return std::vector<policy::IpAddr>{policy::IpAddr::v4(0x5db8d822)};
    }
    if (name == "nx.test") {
      return base::Error::msg("resolve `nx.test`: Name or service not known");
    }
    return std::vector<policy::IpAddr>{policy::IpAddr::v4(0x01020304)};
  };
  auto r = AsyncResolver::create(*loop, {.resolve = fake, .threads = 2, .timeout = 10'000ms});
  ASSERT_TRUE(r) << r.error().message();
  AsyncResolver& res = **r;
  std::optional<Addrs> slow;
  std::optional<Addrs> fast;
  std::optional<Addrs> shared;
  res.resolve("slow.test", [&](const Addrs& a) { slow = a; });
  res.resolve("slow.test", [&](const Addrs& a) { shared = a; });
  ASSERT_TRUE(pump_until(*loop, [&] { return slow_running.load(); }));
  res.resolve("fast.test", [&](const Addrs& a) { fast = a; });
  // The fast name is answered while the slow lookup is still running: one slow name does not
  // stall the loop or the other lookups.
  ASSERT_TRUE(pump_until(*loop, [&] { return fast.has_value(); }));
  EXPECT_FALSE(slow.has_value());
  ASSERT_TRUE(*fast);
  EXPECT_EQ((**fast)[0].to_string(), "1.2.3.4");
  slow_release = true;
  ASSERT_TRUE(pump_until(*loop, [&] { return slow.has_value() && shared.has_value(); }));
  EXPECT_EQ((**slow)[0].to_string(), "93.184.216.34");
  EXPECT_EQ(res.counters().shared, 1u);
  EXPECT_EQ(calls.load(), 2);  // two names, one lookup each
  auto hit = res.cached("slow.test");
  ASSERT_TRUE(hit && *hit);
  EXPECT_EQ(res.counters().cache_hits, 1u);
  // Failures are cached too (shorter), and handed back as errors.
  std::optional<Addrs> nx;
  res.resolve("nx.test", [&](const Addrs& a) { nx = a; });
  ASSERT_TRUE(pump_until(*loop, [&] { return nx.has_value(); }));
  EXPECT_FALSE(*nx);
  auto nx_hit = res.cached("nx.test");
  ASSERT_TRUE(nx_hit);
  EXPECT_FALSE(*nx_hit);
}

TEST(AsyncResolver, TimeoutAnswersAndLateAnswerFillsTheCache) {
  auto loop = event::Loop::create();
  std::atomic<bool> release{false};
  auto fake = [&](const std::string&) -> Addrs {
    for (int i = 0; i < 5000 && !release; ++i) {
      std::this_thread::sleep_for(1ms);
    }
    return std::vector<policy::IpAddr>{policy::IpAddr::v4(0x01020304)};
  };
  auto r = AsyncResolver::create(*loop, {.resolve = fake, .threads = 1, .timeout = 100ms});
  ASSERT_TRUE(r);
  std::optional<Addrs> got;
  (*r)->resolve("late.test", [&](const Addrs& a) { got = a; });
  ASSERT_TRUE(pump_until(*loop, [&] { return got.has_value(); }));
  ASSERT_FALSE(*got);
  EXPECT_NE(got->error().message().find("longer than 100 ms"), std::string::npos);
  EXPECT_EQ((*r)->counters().timeouts, 1u);
  release = true;
  ASSERT_TRUE(pump_until(*loop, [&] { return (*r)->cached("late.test").has_value(); }));
}

TEST(AsyncResolver, CancelledTicketIsNeverAnswered) {
  auto loop = event::Loop::create();
  std::atomic<bool> release{false};
  auto fake = [&](const std::string&) -> Addrs {
    for (int i = 0; i < 5000 && !release; ++i) {
      std::this_thread::sleep_for(1ms);
    }
    return std::vector<policy::IpAddr>{policy::IpAddr::v4(0x01020304)};
  };
  auto r = AsyncResolver::create(*loop, {.resolve = fake, .threads = 1});
  ASSERT_TRUE(r);
  bool a_called = false;
  bool b_called = false;
  const uint64_t a = (*r)->resolve("x.test", [&](const Addrs&) { a_called = true; });
  (*r)->resolve("x.test", [&](const Addrs&) { b_called = true; });
  (*r)->cancel(a);
  release = true;
  ASSERT_TRUE(pump_until(*loop, [&] { return b_called; }));
  EXPECT_FALSE(a_called);
}

// The resolver goes away with lookups in flight (the session ends): nothing is called later,
// and the detached thread finishes on its own.
TEST(AsyncResolver, DestroyedWithALookupInFlight) {
  auto loop = event::Loop::create();
  // Shared with the detached thread, which may outlive this test's frame.
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto fake = [release](const std::string&) -> Addrs {
    for (int i = 0; i < 2000 && !*release; ++i) {
      std::this_thread::sleep_for(1ms);
    }
    return std::vector<policy::IpAddr>{};
  };
  bool called = false;
  {
    auto r = AsyncResolver::create(*loop, {.resolve = fake, .threads = 1});
    ASSERT_TRUE(r);
    (*r)->resolve("gone.test", [&](const Addrs&) { called = true; });
    (void)loop->run_once(10ms);
  }
  *release = true;
  for (int i = 0; i < 10; ++i) {
    (void)loop->run_once(10ms);
  }
  EXPECT_FALSE(called);
  EXPECT_EQ(loop->watch_count(), 0u);
}

}  // namespace
}  // namespace agentbox::net
