// gtest helpers over the proxy rig (proxy_rig.hpp).
#pragma once

#include <gtest/gtest.h>

#include "proxy_rig.hpp"

namespace agentbox::proxy::testing {

// Runs `f` on a thread while the loop is pumped; returns f's result.
template <class F>
auto while_pumping(event::Loop& loop, F f, std::chrono::milliseconds max = 30s) {
  using R = decltype(f());
  std::optional<R> result;
  std::atomic<bool> done{false};
  std::thread t([&] {
    result.emplace(f());
    done = true;
  });
  const bool ok = pump_until(
      loop, [&] { return done.load(); }, max);
  t.join();
  EXPECT_TRUE(ok) << "timed out";
  return std::move(*result);
}

}  // namespace agentbox::proxy::testing
