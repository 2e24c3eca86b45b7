// Approval questions as desktop notifications (freedesktop Notifications over the session bus).
//
// Theory of operation:
//   start()    only when the supervisor's own environment (never the box's) names a session bus
//              (DBUS_SESSION_BUS_ADDRESS, or $XDG_RUNTIME_DIR/bus) and a display (DISPLAY or
//              WAYLAND_DISPLAY). libsystemd's sd-bus is loaded then (dlopen: a run without a
//              desktop question never pays for it), the connection starts non-blocking and its fd
//              and timeout join the session's event loop; GetCapabilities is asked once.
//   waiting()  one Notify per question (session, program, what is asked: printable ASCII,
//              shortened, placeholders masked), with the actions Allow once / Allow for this
//              session / Deny when the server advertises `actions`. Questions asked before the
//              capabilities are known wait for them.
//   action     ActionInvoked from the server that showed it answers the question through the
//              answer hook exactly as `agentbox approve` would (audited "by desktop notification").
//   settled()  the question was answered elsewhere, timed out or ended: CloseNotification.
//   failure    no bus, no server, an error or a call that outlives its timeout: one `-v` line and
//              one audit event (`approval.notify`), then the notifier stops; the terminal queue
//              is untouched. Nothing here waits: every call is asynchronous with a bound.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agentbox/app/approvals.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/event/loop.hpp"

namespace agentbox::app {

class DesktopNotify final : public Approvals::Observer {
 public:
  using AnswerHook = std::function<void(const std::string& id, policy::Answer a)>;
  struct Setup {
    std::string session;              // the short id users type
    std::string program;              // argv[0] of the box's program
    std::vector<std::string> hidden;  // strings never shown (the box's placeholders)
    AnswerHook answer;
  };
  // nullptr when the environment has no desktop (one `-v` line says why) or sd-bus cannot be
  // used (one audit event too).
  [[nodiscard]] static std::unique_ptr<DesktopNotify> start(
      event::Loop& loop, audit::Sink& audit, const std::map<std::string, std::string>& env,
      Setup setup);
  ~DesktopNotify() override;
  DesktopNotify(const DesktopNotify&) = delete;
  DesktopNotify& operator=(const DesktopNotify&) = delete;

  void waiting(const std::string& id, const policy::Question& q,
               std::chrono::milliseconds timeout) override;
  void settled(const std::string& id) override;

  // The bus address of `env`, or empty when it has no desktop (then `why` says what is missing).
  [[nodiscard]] static std::string bus_address(const std::map<std::string, std::string>& env,
                                               std::string& why);
  // What a notification says about `q`: printable ASCII, at most `limit` bytes, `hidden` masked.
  [[nodiscard]] static std::string describe(const policy::Question& q,
                                            const std::vector<std::string>& hidden, size_t limit);

  struct Impl;

 private:
  explicit DesktopNotify(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentbox::app
