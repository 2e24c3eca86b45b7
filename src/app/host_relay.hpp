// A byte relay between two sockets on the session loop (host services: no inspection, no
// stack; the kernel's sockets carry the TCP on both sides).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "agentbox/base/unique_fd.hpp"
#include "agentbox/event/loop.hpp"

namespace agentbox::app {

// One direction's buffer: bytes read from one socket, not yet written to the other.
struct RelayDirection {
  static constexpr size_t kSize = 64 * 1024;
  std::unique_ptr<char[]> buf = std::make_unique<char[]>(kSize);
  size_t off = 0;
  size_t len = 0;
  bool eof = false;   // the source sent FIN
  bool shut = false;  // FIN passed on (shutdown SHUT_WR on the destination)
  uint64_t bytes = 0;
};

// Relays `a` <-> `b` (both non-blocking, connected) until both directions ended or one failed;
// then calls `done(error)` once (0: clean end) from the loop. Edge-triggered watches with a
// fixed mask: every event pumps both directions until EAGAIN, so nothing is re-armed per event.
class Relay {
 public:
  using Done = std::function<void(int error)>;
  Relay(event::Loop& loop, base::UniqueFd a, base::UniqueFd b, Done done);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;
  [[nodiscard]] base::Status start();
  [[nodiscard]] uint64_t bytes_a_to_b() const { return fwd_.bytes; }
  [[nodiscard]] uint64_t bytes_b_to_a() const { return back_.bytes; }

 private:
  void on_event() noexcept;
  event::Loop& loop_;
  base::UniqueFd a_;
  base::UniqueFd b_;
  Done done_;
  event::WatchId wa_ = 0;
  event::WatchId wb_ = 0;
  RelayDirection fwd_;   // a -> b
  RelayDirection back_;  // b -> a
  bool finished_ = false;
};

}  // namespace agentbox::app
