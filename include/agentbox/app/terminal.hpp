// The terminal relay: the user's terminal <-> the box's own pty, on the event loop.
//
// The box never holds the user's tty (TIOCSTI or TIOCLINUX on it would type into the user's
// shell). The supervisor puts the user's terminal in raw mode (restored by RawMode's destructor on
// every path out of run()), copies bytes both ways and propagates window size changes.
// Output to the user's terminal is written blocking (a terminal drains quickly); input into the
// pty master is buffered (bounded) and written when the master is writable, so a box that does
// not read its input never stalls the loop. What the box prints passes the terminal filter
// (terminal_filter.hpp) unless `[terminal] filter = false`.
#pragma once

#include <termios.h>

#include <optional>
#include <string>

#include "agentbox/app/terminal_filter.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/config/model.hpp"
#include "agentbox/event/loop.hpp"

namespace agentbox::app {

// The filter's options from `[terminal]`; nullopt when `filter = false`.
std::optional<TerminalFilterOptions> terminal_filter_options(const config::Policy& policy);

class RawMode {
 public:
  // Puts `fd` in raw mode; a no-op object when it is not a terminal.
  explicit RawMode(int fd);
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;
  ~RawMode() { restore(); }
  void restore() noexcept;

 private:
  int fd_;
  std::optional<struct termios> saved_;
};

class PtyRelay {
 public:
  // `filter`: nullopt passes the box's output unchanged.
  PtyRelay(event::Loop& loop, int in_fd, int out_fd, int master,
           std::optional<TerminalFilterOptions> filter);
  PtyRelay(const PtyRelay&) = delete;
  PtyRelay& operator=(const PtyRelay&) = delete;
  ~PtyRelay();
  [[nodiscard]] base::Status start();
  // Copies the window size of `in_fd` (the user's terminal) to the pty (SIGWINCH).
  void resize() noexcept;
  // Writes whatever the box already printed (after it exited), without blocking on the master.
  void drain() noexcept;
  // After the box ended: what the filter dropped, as one `terminal.filtered` audit event with a
  // count per kind, and the line for the exit summary ("" when nothing was dropped).
  std::string report(audit::Sink& sink);

 private:
  void on_input(uint32_t events) noexcept;
  void on_master(uint32_t events) noexcept;
  void flush_input() noexcept;
  void update_master_watch() noexcept;
  void to_user(const char* data, size_t size) noexcept;

  event::Loop& loop_;
  int in_;
  int out_;
  int master_;
  std::string pending_;  // input not yet written to the master
  std::optional<TerminalFilter> filter_;
  std::string filtered_;  // the filter's output for one read (capacity kept)
  event::WatchId in_watch_ = 0;
  event::WatchId master_watch_ = 0;
  bool master_done_ = false;
};

}  // namespace agentbox::app
