// The session's policy::Approver: questions from the data path wait in a bounded queue until a
// person answers through the control socket (`agentbox approve`), or the wait ends.
//
// Theory of operation:
//   ask()      gives the question a short id (q1, q2, ...), an audit event `approval.ask`, and a
//              one-shot timer on the loop (the session's `network.ask_timeout`). With kMaxPending
//              questions already waiting it is denied at once (`approval.overflow`), on the next
//              turn of the loop (never from inside ask(), as approval.hpp promises).
//   answer()   (a control verb, on the loop thread) runs the widen hook first for "session" and
//              "always" (app's host hook allows the name in the EgressPolicy and, for always,
//              appends it to the user's config), then the asker's callback, exactly once.
//              `approval.answer` names who answered (uid, pid).
//   timeout    the callback gets Answer::deny; `approval.timeout`.
//   ~Approvals every question still waiting is denied (`approval.end`), as the session ends.
//   Observer   told when a question starts waiting and when it stops (answered anywhere, timed
//              out, ended): the desktop notifications (desktop_notify.hpp) show and close one
//              notification per question and answer through answer() like the control verb.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/policy/approval.hpp"

namespace agentbox::app {

class Approvals final : public policy::Approver {
 public:
  static constexpr size_t kMaxPending = 64;
  struct Who {
    uid_t uid = 0;
    pid_t pid = 0;
    std::string via;  // the answerer when not a control client ("desktop notification")
  };
  class Observer {
   public:
    virtual ~Observer() = default;
    virtual void waiting(const std::string& id, const policy::Question& q,
                         std::chrono::milliseconds timeout) = 0;
    virtual void settled(const std::string& id) = 0;
  };
  // Runs before the asker hears "session" or "always"; returns a note for the answerer
  // ("also written to FILE", or why it was not). Errors only for what it could not do at all.
  using Widen = std::function<std::string(const policy::Question&, policy::Answer, const Who& who)>;

  Approvals(event::Loop& loop, audit::Sink& audit, std::chrono::milliseconds timeout,
            Widen widen = {});
  ~Approvals() override;
  Approvals(const Approvals&) = delete;
  Approvals& operator=(const Approvals&) = delete;

  void ask(policy::Question q, policy::AnswerCallback answer) override;
  // Learning (`--learn`): nobody is asked. Each question is answered on the next turn of the
  // loop (a host: for the session, through the widen hook with Who::pid 0; an exec: once) and
  // recorded as `learn.allow`, which `agentbox profile suggest` reads. A credential's question
  // (`ask = true`) is still asked: learning never releases a real value by itself.
  void set_learning(bool on) { learning_ = on; }
  // Not owned; nullptr to stop. Called on the loop thread, after the audit event.
  void set_observer(Observer* o) { observer_ = o; }

  struct Pending {
    std::string id;
    policy::Question question;
    std::time_t asked = 0;
    int64_t waits_ms = 0;  // until it is denied
  };
  [[nodiscard]] std::vector<Pending> pending() const;
  // Answers question `id`; the note of the widen hook, or an error when no such question waits.
  [[nodiscard]] base::Result<std::string> answer(const std::string& id, policy::Answer a,
                                                 const Who& who);
  [[nodiscard]] std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  struct Entry {
    policy::Question question;
    policy::AnswerCallback callback;
    std::time_t asked = 0;
    std::chrono::steady_clock::time_point deadline;
    event::WatchId timer = 0;
    uint64_t seq = 0;
  };
  void expire(const std::string& id);
  // Runs `cb(a)` on the next turn of the loop (never from inside ask()).
  void defer(policy::AnswerCallback cb, policy::Answer a);
  audit::Event event(const char* type, const std::string& id, const policy::Question& q) const;

  event::Loop& loop_;
  audit::Sink& audit_;
  std::chrono::milliseconds timeout_;
  Widen widen_;
  uint64_t next_ = 1;
  bool learning_ = false;
  Observer* observer_ = nullptr;
  std::map<std::string, Entry> pending_;
  std::map<event::WatchId, policy::AnswerCallback> deferred_;  // overflow denials not yet run
};

// Parses "once", "session", "always", "deny" (the words of approval.hpp's to_string).
[[nodiscard]] base::Result<policy::Answer> parse_answer(const std::string& word);

}  // namespace agentbox::app
