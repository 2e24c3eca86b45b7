// Test helper shared by the unit suites that drive an event::Loop by hand.
#pragma once

#include <chrono>

#include "agentbox/event/loop.hpp"

namespace agentbox::event::testing {

// Runs `loop` until `done()` holds or `limit` passes (every test stays bounded); false on the
// deadline.
template <typename F>
bool pump_until(Loop& loop, F done, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) {
      return false;
    }
    (void)loop.run_once(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace agentbox::event::testing
