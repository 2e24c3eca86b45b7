// The terminal relay between the user's terminal and the box's pty.
#include "agentbox/app/terminal.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <exception>

#include "agentbox/policy/terminal_allow.hpp"

namespace agentbox::app {

namespace {
constexpr size_t kMaxPending = 1u << 16;
constexpr size_t kChunk = 1u << 14;

void write_blocking(int fd, const char* data, size_t size) noexcept {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN) {
        struct timespec ts {
          0, 1000000
        };
        ::nanosleep(&ts, nullptr);
        continue;
      }
      return;  // the user's terminal went away: drop output
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}
}  // namespace

std::optional<TerminalFilterOptions> terminal_filter_options(const config::Policy& policy) {
  if (!policy.terminal_filter.value) {
    return std::nullopt;
  }
  TerminalFilterOptions o;
  for (const auto& entry : policy.terminal_allow) {
    if (auto n = policy::parse_terminal_allow(entry.value)) {  // validated by config::load
      o.osc.insert(*n);
    }
  }
  return o;
}

RawMode::RawMode(int fd) : fd_(fd) {
  struct termios t {};
  if (::tcgetattr(fd, &t) != 0) {
    return;
  }
  saved_ = t;
  ::cfmakeraw(&t);
  ::tcsetattr(fd, TCSADRAIN, &t);
}

void RawMode::restore() noexcept {
  if (saved_) {
    ::tcsetattr(fd_, TCSADRAIN, &*saved_);
    saved_.reset();
  }
}

PtyRelay::PtyRelay(event::Loop& loop, int in_fd, int out_fd, int master,
                   std::optional<TerminalFilterOptions> filter)
    : loop_(loop), in_(in_fd), out_(out_fd), master_(master) {
  if (filter) {
    filter_.emplace(std::move(*filter));
  }
}

PtyRelay::~PtyRelay() {
  loop_.unwatch(in_watch_);
  loop_.unwatch(master_watch_);
}

base::Status PtyRelay::start() {
  int flags = ::fcntl(master_, F_GETFL);
  if (flags < 0 || ::fcntl(master_, F_SETFL, flags | O_NONBLOCK) != 0) {
    return base::Error::sys(errno, "fcntl O_NONBLOCK", "pty master");
  }
  AGENTBOX_ASSIGN_OR_RETURN(master_watch_,
                            loop_.watch_fd(master_, EPOLLIN, [this](uint32_t e) { on_master(e); }));
  auto in = loop_.watch_fd(in_, EPOLLIN, [this](uint32_t e) { on_input(e); });
  if (in) {
    in_watch_ = *in;
  }  // else stdin cannot be polled (e.g. /dev/null): the box simply gets no input
  resize();
  return base::ok();
}

void PtyRelay::resize() noexcept {
  struct winsize ws {};
  if (::ioctl(in_, TIOCGWINSZ, &ws) == 0 || ::ioctl(out_, TIOCGWINSZ, &ws) == 0) {
    ::ioctl(master_, TIOCSWINSZ, &ws);
  }
}

void PtyRelay::on_input(uint32_t events) noexcept {
  if (pending_.size() >= kMaxPending) {
    return;
  }
  char buf[kChunk];
  ssize_t n = ::read(in_, buf, sizeof buf);
  if (n > 0) {
    pending_.append(buf, static_cast<size_t>(n));
    flush_input();
  } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) ||
             (events & (EPOLLHUP | EPOLLERR)) != 0) {
    loop_.unwatch(in_watch_);  // the user's side is gone; the box keeps running
    in_watch_ = 0;
  }
}

void PtyRelay::flush_input() noexcept {
  while (!pending_.empty() && !master_done_) {
    ssize_t n = ::write(master_, pending_.data(), pending_.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno != EAGAIN) {
        pending_.clear();
      }
      break;
    }
    pending_.erase(0, static_cast<size_t>(n));
  }
  update_master_watch();
}

void PtyRelay::update_master_watch() noexcept {
  if (master_done_) {
    return;
  }
  [[maybe_unused]] auto r =
      loop_.modify(master_watch_, EPOLLIN | (pending_.empty() ? 0u : uint32_t{EPOLLOUT}));
  if (in_watch_ != 0) {
    [[maybe_unused]] auto r2 =
        loop_.modify(in_watch_, pending_.size() < kMaxPending ? uint32_t{EPOLLIN} : 0u);
  }
}

void PtyRelay::on_master(uint32_t events) noexcept {
  if ((events & EPOLLOUT) != 0) {
    flush_input();
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) == 0) {
    return;
  }
  char buf[kChunk];
  ssize_t n = ::read(master_, buf, sizeof buf);
  if (n > 0) {
    to_user(buf, static_cast<size_t>(n));
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    return;
  }
  // EIO: no slave is open any more (the box closed its terminal or is gone).
  master_done_ = true;
  loop_.unwatch(master_watch_);
  master_watch_ = 0;
}

void PtyRelay::to_user(const char* data, size_t size) noexcept {
  if (!filter_) {
    write_blocking(out_, data, size);
    return;
  }
  filtered_.clear();
  try {
    filter_->feed(std::string_view(data, size), filtered_);
  } catch (const std::exception&) {
    filtered_.clear();  // out of memory: this read is dropped rather than passed unfiltered
  }
  write_blocking(out_, filtered_.data(), filtered_.size());
}

std::string PtyRelay::report(audit::Sink& sink) {
  if (!filter_) {
    return {};
  }
  filter_->finish();
  if (filter_->total() == 0) {
    return {};
  }
  audit::Event ev("terminal.filtered");
  std::string parts;
  for (size_t i = 0; i < kFilteredKinds; ++i) {
    auto kind = static_cast<Filtered>(i);
    if (uint64_t n = filter_->count(kind); n > 0) {
      ev.num(filtered_name(kind), static_cast<int64_t>(n));
      parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", filtered_name(kind), n);
    }
  }
  sink.emit(ev);
  return fmt::format(
      "terminal: {} sequence{} the box printed did not reach your terminal ({}); see "
      "`[terminal]` in docs/CONFIG.md",
      filter_->total(), filter_->total() == 1 ? "" : "s", parts);
}

void PtyRelay::drain() noexcept {
  char buf[kChunk];
  for (int i = 0; i < 256 && !master_done_; ++i) {
    ssize_t n = ::read(master_, buf, sizeof buf);
    if (n <= 0) {
      break;
    }
    to_user(buf, static_cast<size_t>(n));
  }
}

}  // namespace agentbox::app
