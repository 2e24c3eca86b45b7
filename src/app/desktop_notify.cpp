// Approval questions as desktop notifications over sd-bus (desktop_notify.hpp).
//
// Why sd-bus, loaded with dlopen: it is a small C API whose connection is one fd plus one
// deadline, which join our epoll loop as they are (libdbus-1 wants watch/timeout callbacks, GDBus
// its own GMainContext thread, `gdbus`/`notify-send` a process per question and no ActionInvoked
// without blocking). libsystemd.so pulls in gcrypt, lz4, zstd and lzma: linked, every `agentbox
// run` would pay the dynamic linker for them; loaded here it costs only a session that asks a
// question with a desktop present.
#include "agentbox/app/desktop_notify.hpp"

#include <dlfcn.h>
#include <fmt/core.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>

#include "agentbox/base/log.hpp"

namespace agentbox::app {

namespace {

constexpr const char* kService = "org.freedesktop.Notifications";
constexpr const char* kPath = "/org/freedesktop/Notifications";
constexpr uint64_t kCallTimeoutUs = 5'000'000;  // a server slower than this is given up on
constexpr int kProcessBudget = 64;              // messages per wake-up, then the loop turns
constexpr size_t kTextLimit = 200;

// The few sd-bus entry points we use, resolved from libsystemd.so.0.
#define AGENTBOX_SD_BUS_CALLS(X)     \
  X(sd_bus_new)                      \
  X(sd_bus_set_address)              \
  X(sd_bus_set_bus_client)           \
  X(sd_bus_start)                    \
  X(sd_bus_close_unref)              \
  X(sd_bus_get_fd)                   \
  X(sd_bus_get_events)               \
  X(sd_bus_get_timeout)              \
  X(sd_bus_process)                  \
  X(sd_bus_call_async)               \
  X(sd_bus_match_signal_async)       \
  X(sd_bus_message_new_method_call)  \
  X(sd_bus_message_unref)            \
  X(sd_bus_message_append)           \
  X(sd_bus_message_append_strv)      \
  X(sd_bus_message_read)             \
  X(sd_bus_message_read_strv)        \
  X(sd_bus_message_get_cookie)       \
  X(sd_bus_message_get_reply_cookie) \
  X(sd_bus_message_get_sender)       \
  X(sd_bus_message_get_error)

struct SdBus {
  void* handle = nullptr;
// NOLINTNEXTLINE(bugprone-macro-parentheses): a declarator, where parentheses would not parse
#define AGENTBOX_SD_POINTER(name) decltype(&::name) name = nullptr;
  AGENTBOX_SD_BUS_CALLS(AGENTBOX_SD_POINTER)
#undef AGENTBOX_SD_POINTER

  // Empty on success, else why not.
  std::string load() {
    handle = ::dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* e = ::dlerror();
      return fmt::format("cannot load libsystemd.so.0 (sd-bus): {}", e != nullptr ? e : "?");
    }
    std::string missing;
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(handle, name));
      if (fn == nullptr) {
        missing = name;
      }
    };
#define AGENTBOX_SD_RESOLVE(name) get(name, #name);
    AGENTBOX_SD_BUS_CALLS(AGENTBOX_SD_RESOLVE)
#undef AGENTBOX_SD_RESOLVE
    return missing.empty() ? std::string()
                           : fmt::format("libsystemd.so.0 has no `{}` (too old)", missing);
  }
};
#undef AGENTBOX_SD_BUS_CALLS

std::string env_get(const std::map<std::string, std::string>& env, const char* key) {
  auto it = env.find(key);
  return it != env.end() ? it->second : std::string();
}

// Printable ASCII only: these bytes come from inside the box (a name, an argv), and D-Bus
// refuses invalid UTF-8 outright. Each other byte becomes '?', so no two pieces join up.
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    out.push_back(c >= 0x20 && c < 0x7f ? ch : '?');
  }
  return out;
}

std::string markup_escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

const char* answer_key(policy::Answer a) {
  switch (a) {
    case policy::Answer::allow_once:
      return "once";
    case policy::Answer::allow_session:
      return "session";
    case policy::Answer::allow_always:
      return "always";
    case policy::Answer::deny:
      return "deny";
  }
  return "deny";
}

}  // namespace

struct DesktopNotify::Impl {
  Impl(event::Loop& l, audit::Sink& a, Setup s) : loop(l), audit(a), setup(std::move(s)) {}
  event::Loop& loop;
  audit::Sink& audit;
  Setup setup;
  SdBus sd;
  sd_bus* bus = nullptr;
  event::WatchId fd_watch = 0;
  event::WatchId timer = 0;
  enum class Phase : uint8_t { starting, ready, off };
  Phase phase = Phase::starting;
  bool actions = false;
  bool markup = false;
  std::string server;  // the unique name that answered GetCapabilities
  struct Shown {
    std::string qid;
    uint32_t nid = 0;      // the server's notification id, once Notify returned
    bool settled = false;  // closed before Notify returned: close it when it does
  };
  std::map<std::string, std::pair<policy::Question, std::chrono::milliseconds>> queued;
  std::map<uint64_t, Shown> calls;       // Notify cookie -> question
  std::map<uint32_t, std::string> open;  // notification id -> question id

  std::string connect(const std::string& address);
  void fail(const std::string& why);
  void process();
  void rearm();
  sd_bus_message* call(const char* member);
  bool send(sd_bus_message* m, sd_bus_message_handler_t cb, uint64_t* cookie);
  void notify(const std::string& id, const policy::Question& q, std::chrono::milliseconds t);
  void close(uint32_t nid);
  static int on_caps(sd_bus_message* m, void* self, sd_bus_error*);
  static int on_notified(sd_bus_message* m, void* self, sd_bus_error*);
  static int on_action(sd_bus_message* m, void* self, sd_bus_error*);
  static int on_closed(sd_bus_message* m, void* self, sd_bus_error*);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
};

std::string DesktopNotify::bus_address(const std::map<std::string, std::string>& env,
                                       std::string& why) {
  if (env_get(env, "DISPLAY").empty() && env_get(env, "WAYLAND_DISPLAY").empty()) {
    why = "no graphical session (neither DISPLAY nor WAYLAND_DISPLAY is set)";
    return {};
  }
  std::string address = env_get(env, "DBUS_SESSION_BUS_ADDRESS");
  if (!address.empty()) {
    return address;
  }
  std::string runtime = env_get(env, "XDG_RUNTIME_DIR");
  struct stat st {};
  if (!runtime.empty() && ::stat((runtime + "/bus").c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    return "unix:path=" + runtime + "/bus";
  }
  why = "no session bus (DBUS_SESSION_BUS_ADDRESS is not set and there is no $XDG_RUNTIME_DIR/bus)";
  return {};
}

std::string DesktopNotify::describe(const policy::Question& q,
                                    const std::vector<std::string>& hidden, size_t limit) {
  std::string what;
  switch (q.kind) {
    case policy::ApprovalKind::host:
      what = q.detail.empty() || q.detail == q.subject
                 ? fmt::format("connect to {}", q.subject)
                 : fmt::format("connect to {} (rule {})", q.subject, q.detail);
      break;
    case policy::ApprovalKind::credential:
      what = fmt::format("use the credential {} for {}", q.subject, q.detail);
      break;
    case policy::ApprovalKind::exec:
      what = fmt::format("run {}", q.detail.empty() ? q.subject : q.detail);
      break;
  }
  what = printable(what);
  for (const auto& h : hidden) {
    if (h.size() < 8) {
      continue;  // too short to tell from ordinary text (cred::kMinSecretLength)
    }
    for (size_t at = what.find(h); at != std::string::npos; at = what.find(h, at)) {
      what.replace(at, h.size(), "[placeholder]");
    }
  }
  if (what.size() > limit) {
    what.resize(limit > 3 ? limit - 3 : 0);
    what += "...";
  }
  return what;
}

void DesktopNotify::Impl::fail(const std::string& why) {
  if (phase == Phase::off) {
    return;
  }
  phase = Phase::off;
  base::log::debug("desktop notifications off: {}", why);
  audit.emit(audit::Event("approval.notify").str("state", "off").str("why", why));
  queued.clear();
  calls.clear();
  open.clear();
}

std::string DesktopNotify::Impl::connect(const std::string& address) {
  if (std::string why = sd.load(); !why.empty()) {
    return why;
  }
  if (int r = sd.sd_bus_new(&bus); r < 0) {
    return fmt::format("sd_bus_new: {}", ::strerror(-r));
  }
  int r = sd.sd_bus_set_address(bus, address.c_str());
  if (r >= 0) {
    r = sd.sd_bus_set_bus_client(bus, 1);
  }
  if (r >= 0) {
    r = sd.sd_bus_start(bus);  // non-blocking: the connect and Hello finish in process()
  }
  if (r < 0) {
    return fmt::format("session bus `{}`: {}", printable(address), ::strerror(-r));
  }
  for (const char* member : {"ActionInvoked", "NotificationClosed"}) {
    r = sd.sd_bus_match_signal_async(bus, nullptr, nullptr, kPath, kService, member,
                                     member[0] == 'A' ? &on_action : &on_closed, nullptr, this);
    if (r < 0) {
      return fmt::format("match {}: {}", member, ::strerror(-r));
    }
  }
  sd_bus_message* m = call("GetCapabilities");
  if (m == nullptr || !send(m, &on_caps, nullptr)) {
    return "GetCapabilities could not be sent";
  }
  auto w = loop.watch_fd(sd.sd_bus_get_fd(bus), EPOLLIN, [this](uint32_t) { process(); });
  if (!w) {
    return w.error().message();
  }
  fd_watch = *w;
  rearm();
  return {};
}

sd_bus_message* DesktopNotify::Impl::call(const char* member) {
  sd_bus_message* m = nullptr;
  if (sd.sd_bus_message_new_method_call(bus, &m, kService, kPath, kService, member) < 0) {
    return nullptr;
  }
  return m;
}

// Sends `m` (consumed) with the bounded timeout; the reply (or the timeout's error) goes to `cb`.
bool DesktopNotify::Impl::send(sd_bus_message* m, sd_bus_message_handler_t cb, uint64_t* cookie) {
  int r = sd.sd_bus_call_async(bus, nullptr, m, cb, this, kCallTimeoutUs);
  if (r >= 0 && cookie != nullptr) {
    r = sd.sd_bus_message_get_cookie(m, cookie);
  }
  sd.sd_bus_message_unref(m);
  if (r < 0) {
    fail(fmt::format("a call to the notification server: {}", ::strerror(-r)));
    return false;
  }
  return true;
}

void DesktopNotify::Impl::process() {
  int r = 0;
  for (int i = 0; i < kProcessBudget && phase != Phase::off; ++i) {
    r = sd.sd_bus_process(bus, nullptr);
    if (r < 0) {
      fail(fmt::format("the session bus: {}", ::strerror(-r)));
    }
    if (r <= 0) {
      break;
    }
  }
  if (phase == Phase::off) {
    // Unwatched here, outside sd-bus's own callbacks; the connection closes with the notifier.
    loop.unwatch(fd_watch);
    loop.unwatch(timer);
    fd_watch = timer = 0;
    return;
  }
  rearm();
  if (r > 0) {
    // More was ready than the budget: the rest on the next turn (sd-bus may hold it read).
    loop.unwatch(timer);
    auto t = loop.add_timer(std::chrono::milliseconds(0), std::chrono::milliseconds(0),
                            [this](uint64_t) {
                              timer = 0;
                              process();
                            });
    timer = t ? *t : 0;
  }
}

void DesktopNotify::Impl::rearm() {
  if (phase == Phase::off || fd_watch == 0) {
    return;
  }
  const int ev = sd.sd_bus_get_events(bus);
  uint32_t mask = 0;
  if (ev > 0 && (ev & POLLIN) != 0) {
    mask |= EPOLLIN;
  }
  if (ev > 0 && (ev & POLLOUT) != 0) {
    mask |= EPOLLOUT;
  }
  [[maybe_unused]] auto m = loop.modify(fd_watch, mask != 0 ? mask : EPOLLIN);
  uint64_t until = 0;
  loop.unwatch(timer);
  timer = 0;
  if (sd.sd_bus_get_timeout(bus, &until) <= 0 || until == UINT64_MAX) {
    return;
  }
  struct timespec now {};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const uint64_t now_us = static_cast<uint64_t>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000;
  const auto delay = std::chrono::milliseconds(until > now_us ? (until - now_us + 999) / 1000 : 0);
  auto t = loop.add_timer(delay, std::chrono::milliseconds(0), [this](uint64_t) {
    timer = 0;
    process();
  });
  timer = t ? *t : 0;
}

int DesktopNotify::Impl::on_caps(sd_bus_message* m, void* self, sd_bus_error*) {
  auto* d = static_cast<Impl*>(self);
  if (d->phase != Phase::starting) {
    return 0;
  }
  char** caps = nullptr;
  if (const sd_bus_error* e = d->sd.sd_bus_message_get_error(m); e != nullptr) {
    d->fail(fmt::format("no notification server: {}",
                        printable(e->message != nullptr ? e->message : e->name)));
    return 0;
  }
  if (d->sd.sd_bus_message_read_strv(m, &caps) < 0) {
    d->fail("the notification server's capabilities are not a list of strings");
    return 0;
  }
  for (char** c = caps; c != nullptr && *c != nullptr; ++c) {
    d->actions = d->actions || std::string_view(*c) == "actions";
    d->markup = d->markup || std::string_view(*c) == "body-markup";
    std::free(*c);
  }
  std::free(caps);
  const char* sender = d->sd.sd_bus_message_get_sender(m);
  d->server = sender != nullptr ? sender : "";
  d->phase = Phase::ready;
  base::log::debug("desktop notifications: server {}{}", printable(d->server),
                   d->actions ? " with actions" : " without actions (shown only)");
  auto queued = std::move(d->queued);
  d->queued.clear();
  for (const auto& [id, q] : queued) {
    d->notify(id, q.first, q.second);
  }
  return 0;
}

void DesktopNotify::Impl::notify(const std::string& id, const policy::Question& q,
                                 std::chrono::milliseconds t) {
  const std::string summary = printable(fmt::format("agentbox: session {} asks", setup.session));
  std::string body = printable(fmt::format("{} wants to ", setup.program)) +
                     describe(q, setup.hidden, kTextLimit) +
                     fmt::format(" (denied in {} s unless answered; or: agentbox approve {})",
                                 t.count() / 1000, setup.session);
  if (markup) {
    body = markup_escaped(body);
  }
  sd_bus_message* m = call("Notify");
  if (m == nullptr) {
    fail("Notify could not be built");
    return;
  }
  const char* with[] = {"once", "Allow once", "session", "Allow for this session",
                        "deny", "Deny",       nullptr};
  const char* without[] = {nullptr};
  int r = sd.sd_bus_message_append(m, "susss", "agentbox", 0U, "dialog-question", summary.c_str(),
                                   body.c_str());
  if (r >= 0) {
    r = sd.sd_bus_message_append_strv(m, const_cast<char**>(actions ? with : without));
  }
  if (r >= 0) {
    // Critical urgency: the notification stays until it is answered or closed by us.
    r = sd.sd_bus_message_append(m, "a{sv}i", 1, "urgency", "y", 2,
                                 static_cast<int32_t>(std::min<int64_t>(t.count(), INT32_MAX)));
  }
  if (r < 0) {
    sd.sd_bus_message_unref(m);
    fail(fmt::format("Notify: {}", ::strerror(-r)));
    return;
  }
  uint64_t cookie = 0;
  if (send(m, &on_notified, &cookie)) {
    calls[cookie] = Shown{.qid = id};
  }
}

int DesktopNotify::Impl::on_notified(sd_bus_message* m, void* self, sd_bus_error*) {
  auto* d = static_cast<Impl*>(self);
  uint64_t cookie = 0;
  if (d->phase != Phase::ready || d->sd.sd_bus_message_get_reply_cookie(m, &cookie) < 0) {
    return 0;
  }
  auto it = d->calls.find(cookie);
  if (it == d->calls.end()) {
    return 0;
  }
  Shown shown = std::move(it->second);
  d->calls.erase(it);
  if (const sd_bus_error* e = d->sd.sd_bus_message_get_error(m); e != nullptr) {
    d->fail(
        fmt::format("Notify failed: {}", printable(e->message != nullptr ? e->message : e->name)));
    return 0;
  }
  uint32_t nid = 0;
  if (d->sd.sd_bus_message_read(m, "u", &nid) < 0) {
    d->fail("Notify's reply is not a notification id");
    return 0;
  }
  if (shown.settled) {
    d->close(nid);  // answered elsewhere while the server was showing it
  } else {
    d->open[nid] = shown.qid;
  }
  return 0;
}

void DesktopNotify::Impl::close(uint32_t nid) {
  sd_bus_message* m = call("CloseNotification");
  if (m == nullptr || sd.sd_bus_message_append(m, "u", nid) < 0) {
    if (m != nullptr) {
      sd.sd_bus_message_unref(m);
    }
    fail("CloseNotification could not be built");
    return;
  }
  // The reply carries nothing we need; an error (already closed) is harmless.
  send(
      m, [](sd_bus_message*, void*, sd_bus_error*) { return 0; }, nullptr);
}

int DesktopNotify::Impl::on_action(sd_bus_message* m, void* self, sd_bus_error*) {
  auto* d = static_cast<Impl*>(self);
  const char* sender = d->sd.sd_bus_message_get_sender(m);
  uint32_t nid = 0;
  const char* key = nullptr;
  // Only the server that showed it speaks for a notification (another client on the bus could
  // emit the same signal).
  if (d->phase != Phase::ready || sender == nullptr || d->server != sender ||
      d->sd.sd_bus_message_read(m, "us", &nid, &key) < 0 || key == nullptr) {
    return 0;
  }
  auto it = d->open.find(nid);
  if (it == d->open.end()) {
    return 0;
  }
  for (policy::Answer a :
       {policy::Answer::allow_once, policy::Answer::allow_session, policy::Answer::deny}) {
    if (std::string_view(key) == answer_key(a)) {
      const std::string qid = it->second;
      d->open.erase(it);
      d->setup.answer(qid, a);
      return 0;
    }
  }
  return 0;  // "default" (a click on the body) or a key we never offered: still waiting
}

int DesktopNotify::Impl::on_closed(sd_bus_message* m, void* self, sd_bus_error*) {
  auto* d = static_cast<Impl*>(self);
  const char* sender = d->sd.sd_bus_message_get_sender(m);
  uint32_t nid = 0;
  if (d->phase == Phase::ready && sender != nullptr && d->server == sender &&
      d->sd.sd_bus_message_read(m, "u", &nid) >= 0) {
    d->open.erase(nid);  // dismissed: the question still waits in `agentbox approve`
  }
  return 0;
}

std::unique_ptr<DesktopNotify> DesktopNotify::start(event::Loop& loop, audit::Sink& audit,
                                                    const std::map<std::string, std::string>& env,
                                                    Setup setup) {
  std::string why;
  const std::string address = bus_address(env, why);
  if (address.empty()) {
    base::log::debug("desktop notifications: none: {}", why);
    return nullptr;
  }
  auto impl = std::make_unique<Impl>(loop, audit, std::move(setup));
  if (std::string err = impl->connect(address); !err.empty()) {
    impl->fail(err);
    return nullptr;
  }
  audit.emit(audit::Event("approval.notify").str("state", "starting"));
  return std::unique_ptr<DesktopNotify>(new DesktopNotify(std::move(impl)));
}

DesktopNotify::DesktopNotify(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DesktopNotify::~DesktopNotify() = default;

DesktopNotify::Impl::~Impl() {
  loop.unwatch(fd_watch);
  loop.unwatch(timer);
  if (bus != nullptr) {
    // Not flushed: closing never waits for a server. What settled() queued was written when it
    // was sent unless the socket was full.
    sd.sd_bus_close_unref(bus);
  }
  if (sd.handle != nullptr) {
    ::dlclose(sd.handle);
  }
}

void DesktopNotify::waiting(const std::string& id, const policy::Question& q,
                            std::chrono::milliseconds timeout) {
  switch (impl_->phase) {
    case Impl::Phase::starting:
      if (impl_->queued.size() < Approvals::kMaxPending) {
        impl_->queued[id] = {q, timeout};
      }
      return;
    case Impl::Phase::ready:
      impl_->notify(id, q, timeout);
      impl_->rearm();
      return;
    case Impl::Phase::off:
      return;
  }
}

void DesktopNotify::settled(const std::string& id) {
  impl_->queued.erase(id);
  for (auto& [cookie, shown] : impl_->calls) {
    if (shown.qid == id) {
      shown.settled = true;
    }
  }
  for (auto it = impl_->open.begin(); it != impl_->open.end(); ++it) {
    if (it->second == id) {
      const uint32_t nid = it->first;
      impl_->open.erase(it);
      if (impl_->phase == Impl::Phase::ready) {
        impl_->close(nid);
        impl_->rearm();
      }
      break;
    }
  }
}

}  // namespace agentbox::app
