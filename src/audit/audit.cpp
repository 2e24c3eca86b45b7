// JSON-lines audit sink. Hand-written writer: the log only ever writes flat objects of strings and
// numbers, must be noexcept on the event loop and must survive hostile bytes; nlohmann-json (the
// Debian option) allocates a node tree per event and throws on invalid UTF-8.
#include "agentbox/audit/audit.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <unordered_map>
#include <vector>

#include "agentbox/audit/chain.hpp"
#include "agentbox/base/sys.hpp"

namespace agentbox::audit {

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not one (overlongs and surrogates too).
size_t utf8_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (n == 0 || c > 0xF4 || i + n > s.size()) {
    return 0;
  }
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) {
      return 0;
    }
  }
  if ((c == 0xE0 && b(i + 1) < 0xA0) || (c == 0xED && b(i + 1) > 0x9F) ||
      (c == 0xF0 && b(i + 1) < 0x90) || (c == 0xF4 && b(i + 1) > 0x8F)) {
    return 0;
  }
  return n;
}

std::string now_rfc3339() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms);
}

}  // namespace

void json_escape(std::string_view s, std::string& out) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\u{:04x}", c);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    size_t n = utf8_len(s, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
}

Event::Event(std::string_view type) : type_(type) {}

void Event::key(std::string_view k) {
  fields_ += ",\"";
  json_escape(k, fields_);
  fields_ += "\":";
}

Event& Event::str(std::string_view k, std::string_view value) {
  key(k);
  fields_ += '"';
  json_escape(value, fields_);
  fields_ += '"';
  return *this;
}

std::optional<std::string_view> Event::field(std::string_view k) const {
  // Keys are trusted literals and every value's quotes are escaped, so `,"key":` can only be
  // the start of a field.
  std::string needle = ",\"";
  json_escape(k, needle);
  needle += "\":";
  size_t at = fields_.find(needle);
  if (at == std::string::npos) {
    return std::nullopt;
  }
  std::string_view rest = std::string_view(fields_).substr(at + needle.size());
  if (!rest.empty() && rest[0] == '"') {
    for (size_t i = 1; i < rest.size(); ++i) {
      if (rest[i] == '\\') {
        ++i;
      } else if (rest[i] == '"') {
        return rest.substr(1, i - 1);
      }
    }
    return std::nullopt;
  }
  size_t end = rest.find_first_of(",]");
  std::string_view v = rest.substr(0, end);
  if (v.empty() || v[0] == '[') {
    return std::nullopt;
  }
  return v;
}

Event& Event::num(std::string_view k, int64_t value) {
  key(k);
  fields_ += fmt::format("{}", value);
  return *this;
}

Event& Event::coalesce(std::string key) {
  coalesce_ = std::move(key);
  return *this;
}

Event& Event::boolean(std::string_view k, bool value) {
  key(k);
  fields_ += value ? "true" : "false";
  return *this;
}

Event& Event::strs(std::string_view k, std::span<const std::string> values) {
  key(k);
  fields_ += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i != 0) {
      fields_ += ',';
    }
    fields_ += '"';
    json_escape(values[i], fields_);
    fields_ += '"';
  }
  fields_ += ']';
  return *this;
}

std::string render_line(const Event& event, std::string_view session_id) {
  std::string line =
      fmt::format("{{\"v\":{},\"ts\":\"{}\",\"session\":\"", kSchemaVersion, now_rfc3339());
  json_escape(session_id, line);
  line += "\",\"type\":\"";
  json_escape(event.type(), line);
  line += '"';
  line += event.fields();
  line += "}\n";
  return line;
}

void Tally::add(const std::string& type) {
  std::lock_guard lock(mu_);
  ++counts_[type];
}

uint64_t Tally::count(std::string_view type) const {
  std::lock_guard lock(mu_);
  auto it = counts_.find(type);
  return it == counts_.end() ? 0 : it->second;
}

std::map<std::string, uint64_t> Tally::snapshot() const {
  std::lock_guard lock(mu_);
  return {counts_.begin(), counts_.end()};
}

// Lines held between hold() and release(). `len` is published after the bytes it covers are in
// `buf`, so the fatal-signal handler writes whole lines only, even when the crash hits an emit.
// The rest of the sink's state lives here too, under `mu`: emit may come from another thread (a
// credential source's worker).
struct JsonlSink::Held {
  static constexpr size_t kBytes = 64 * 1024;
  // Keys coalesced within one second; past that a line is written as usual (the cap bounds it).
  static constexpr size_t kMaxRepeatKeys = 4096;
  struct Repeat {
    std::string type;
    std::string key;
    uint64_t count = 0;
  };
  std::mutex mu;
  bool holding = false;
  int fd = -1;
  std::unique_ptr<char[]> buf{new char[kBytes]};
  std::atomic<size_t> len{0};
  SinkLimits limits;
  uint64_t accepted = 0;  // bytes of the lines accepted so far (written or held)
  bool truncated = false;
  bool torn = false;  // the last write stopped inside a line
  Losses losses;
  std::function<void()> on_loss;
  bool loss_reported = false;
  int64_t repeat_second = -1;
  std::unordered_map<std::string, Repeat> repeats;
  std::optional<Chain> chain;  // set by open()
  std::vector<std::function<void(std::string_view)>> observers;
};

base::Result<JsonlSink> JsonlSink::open(const std::string& path, std::string session_id,
                                        SinkLimits limits) {
  AGENTBOX_ASSIGN_OR_RETURN(base::UniqueFd fd,
                            base::open_fd(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600));
  AGENTBOX_ASSIGN_OR_RETURN(Chain chain, Chain::start());
  JsonlSink sink(std::move(fd), path, std::move(session_id), limits);
  sink.held_->chain.emplace(std::move(chain));
  return sink;
}

namespace {

// The sink whose held lines a fatal signal writes out: the session has one.
std::atomic<void*> g_held{nullptr};  // JsonlSink::Held*, type-erased (private type)
constexpr std::array<int, 5> kFatal = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
std::array<struct sigaction, kFatal.size()> g_previous{};

struct HeldView {  // what the handler reads: the fd, the buffer, the published length
  int fd;
  const char* buf;
  size_t len;
};
HeldView (*g_view)(void*) = nullptr;

void on_fatal(int sig) {
  if (void* h = g_held.exchange(nullptr); h != nullptr && g_view != nullptr) {
    HeldView v = g_view(h);
    size_t off = 0;
    while (off < v.len) {
      ssize_t w = ::write(v.fd, v.buf + off, v.len - off);
      if (w <= 0) {
        break;
      }
      off += static_cast<size_t>(w);
    }
  }
  // Then what would have happened without us (the default: die, with a core; or a sanitizer's
  // report). The signal is blocked while this handler runs, so raise() delivers it on return.
  for (size_t i = 0; i < kFatal.size(); ++i) {
    if (kFatal[i] == sig) {
      ::sigaction(sig, &g_previous[i], nullptr);
    }
  }
  ::raise(sig);
}

}  // namespace

JsonlSink::JsonlSink(base::UniqueFd fd, std::string path, std::string session_id, SinkLimits limits)
    : fd_(std::move(fd)),
      held_(std::make_unique<Held>()),
      path_(std::move(path)),
      session_id_(std::move(session_id)) {
  held_->fd = fd_.get();
  held_->limits = limits;
}

JsonlSink::JsonlSink(JsonlSink&& o) noexcept
    : fd_(std::move(o.fd_)),
      held_(std::move(o.held_)),
      path_(std::move(o.path_)),
      session_id_(std::move(o.session_id_)),
      tally_(std::move(o.tally_)) {}

JsonlSink::~JsonlSink() {
  if (held_) {
    {
      std::lock_guard lock(held_->mu);
      flush_repeats();
    }
    release();
    void* self = held_.get();
    g_held.compare_exchange_strong(self, nullptr);
  }
}

void JsonlSink::on_loss(std::function<void()> f) {
  std::lock_guard lock(held_->mu);
  held_->on_loss = std::move(f);
  held_->loss_reported = false;
  if (held_->losses.lost()) {
    lose(0, 0);
  }
}

void JsonlSink::observe(std::function<void(std::string_view line)> f) {
  std::lock_guard lock(held_->mu);
  held_->observers.push_back(std::move(f));
}

std::string JsonlSink::chain_head() const {
  std::lock_guard lock(held_->mu);
  return held_->chain ? held_->chain->head() : std::string();
}

Losses JsonlSink::losses() const {
  std::lock_guard lock(held_->mu);
  return held_->losses;
}

void JsonlSink::lose(uint64_t lines, int err) noexcept {
  Losses& l = held_->losses;
  l.failed_lines += lines;
  if (l.first_errno == 0 && err != 0) {
    l.first_errno = err;
  }
  if (!held_->loss_reported && held_->on_loss) {
    held_->loss_reported = true;
    held_->on_loss();
  }
}

void JsonlSink::write_out(std::string_view s) noexcept {
  auto lines_in = [](std::string_view rest) {
    return static_cast<uint64_t>(std::count(rest.begin(), rest.end(), '\n'));
  };
  if (held_->torn) {  // end the torn line, so that this one parses on its own
    if (::write(fd_.get(), "\n", 1) != 1) {
      lose(lines_in(s), errno);
      return;
    }
    held_->torn = false;
  }
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::write(fd_.get(), s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      int err = w < 0 ? errno : EIO;
      held_->torn = off != 0 && s[off - 1] != '\n';
      lose(lines_in(s.substr(off)), err);
      return;
    }
    off += static_cast<size_t>(w);
  }
}

void JsonlSink::write_held() noexcept {
  size_t n = held_->len.load(std::memory_order_acquire);
  if (n == 0) {
    return;
  }
  write_out(std::string_view(held_->buf.get(), n));
  held_->len.store(0, std::memory_order_release);
}

// The size cap, the chain, then the hold buffer (or one write). `final_line` passes the cap.
void JsonlSink::append(std::string line, bool final_line) noexcept {
  Held& h = *held_;
  size_t sealed = line.size() + (h.chain ? Chain::kGrowth : 0);
  if (!final_line && (h.truncated || h.accepted + sealed > h.limits.max_bytes)) {
    ++h.losses.truncated_lines;
    if (h.truncated) {
      return;
    }
    h.truncated = true;
    try {
      append(render_line(Event("audit.truncated")
                             .num("max_bytes", static_cast<int64_t>(h.limits.max_bytes))
                             .str("setting", "audit.max_size"),
                         session_id_),
             true);
    } catch (...) {
      lose(1, ENOMEM);
    }
    lose(0, 0);
    return;
  }
  if (h.chain) {
    try {
      h.chain->seal(line);  // here, in file order: a line dropped by the cap is never linked
    } catch (...) {
      lose(1, ENOMEM);
      return;
    }
  }
  h.accepted += line.size();
  for (const auto& o : h.observers) {
    o(line);
  }
  if (h.holding && line.size() <= Held::kBytes) {
    if (h.len.load(std::memory_order_relaxed) + line.size() > Held::kBytes) {
      write_held();
    }
    size_t at = h.len.load(std::memory_order_relaxed);
    std::memcpy(h.buf.get() + at, line.data(), line.size());
    h.len.store(at + line.size(), std::memory_order_release);
    return;
  }
  write_held();  // keep the order of lines
  write_out(line);
}

namespace {
int64_t coarse_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec;
}
}  // namespace

bool JsonlSink::fold(const Event& event) {
  Held& h = *held_;
  if (!h.limits.coalesce || event.coalesce_key().empty()) {
    return false;
  }
  int64_t sec = coarse_seconds();
  if (sec != h.repeat_second) {
    flush_repeats();
    h.repeat_second = sec;
  }
  std::string k = event.type();
  k += '\0';
  k += event.coalesce_key();
  auto it = h.repeats.find(k);
  if (it == h.repeats.end()) {
    if (h.repeats.size() < Held::kMaxRepeatKeys) {
      h.repeats.emplace(std::move(k), Held::Repeat{event.type(), event.coalesce_key(), 0});
    }
    return false;
  }
  ++it->second.count;
  ++h.losses.coalesced;
  return true;
}

void JsonlSink::flush_repeats() noexcept {
  try {
    for (const auto& [k, r] : held_->repeats) {
      if (r.count != 0) {
        append(render_line(Event("audit.repeated")
                               .str("of", r.type)
                               .str("key", r.key)
                               .num("count", static_cast<int64_t>(r.count))
                               .num("within_ms", 1000),
                           session_id_),
               false);
      }
    }
  } catch (...) {
    lose(1, ENOMEM);
  }
  held_->repeats.clear();
}

void JsonlSink::final(const Event& event) noexcept {
  try {
    tally_->add(event.type());
    std::string line = render_line(event, session_id_);
    std::lock_guard lock(held_->mu);
    flush_repeats();
    append(std::move(line), true);
    write_held();
  } catch (...) {
    std::lock_guard lock(held_->mu);
    lose(1, ENOMEM);
  }
}

void JsonlSink::hold() noexcept {
  if (!held_) {
    return;
  }
  static const bool installed = [] {
    g_view = [](void* h) {
      auto* held = static_cast<Held*>(h);
      return HeldView{held->fd, held->buf.get(), held->len.load(std::memory_order_acquire)};
    };
    for (size_t i = 0; i < kFatal.size(); ++i) {
      struct sigaction sa {};
      sa.sa_handler = on_fatal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_ONSTACK;
      ::sigaction(kFatal[i], &sa, &g_previous[i]);
    }
    return true;
  }();
  (void)installed;
  std::lock_guard lock(held_->mu);
  held_->holding = true;
  g_held.store(held_.get());
}

void JsonlSink::release() noexcept {
  if (!held_) {
    return;
  }
  std::lock_guard lock(held_->mu);
  if (!held_->repeats.empty() && coarse_seconds() != held_->repeat_second) {
    flush_repeats();  // the second is over: its counts go out now, not at the next denial
  }
  write_held();
  held_->holding = false;
}

void JsonlSink::emit(const Event& event) noexcept {
  if (!held_) {
    return;  // moved from
  }
  try {
    tally_->add(event.type());
    std::lock_guard lock(held_->mu);
    if (fold(event)) {
      return;
    }
    append(render_line(event, session_id_), false);
  } catch (...) {  // allocation failure: drop the line, keep serving
    std::lock_guard lock(held_->mu);
    lose(1, ENOMEM);
  }
}

void MemorySink::emit(const Event& event) noexcept {
  try {
    tally_.add(event.type());
    std::lock_guard lock(mu_);
    lines_ += render_line(event, session_id_);
  } catch (...) {
  }
}

std::string MemorySink::lines() const {
  std::lock_guard lock(mu_);
  return lines_;
}

}  // namespace agentbox::audit
