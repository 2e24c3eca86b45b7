// The session's Approver over the control plane (approvals.hpp).
#include "agentbox/app/approvals.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "agentbox/base/log.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using policy::Answer;

Approvals::Approvals(event::Loop& loop, audit::Sink& audit, std::chrono::milliseconds timeout,
                     Widen widen)
    : loop_(loop), audit_(audit), timeout_(timeout), widen_(std::move(widen)) {}

Approvals::~Approvals() {
  // The session ends: nobody will answer. Each asker hears "deny" once.
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, e] : pending) {
    loop_.unwatch(e.timer);
    audit_.emit(event("approval.end", id, e.question).str("answer", "deny"));
    if (observer_ != nullptr) {
      observer_->settled(id);
    }
    e.callback(Answer::deny);
  }
  auto deferred = std::move(deferred_);
  deferred_.clear();
  for (auto& [timer, cb] : deferred) {
    loop_.unwatch(timer);
    cb(Answer::deny);
  }
}

audit::Event Approvals::event(const char* type, const std::string& id,
                              const policy::Question& q) const {
  audit::Event ev(type);
  ev.str("id", id).str("kind", policy::to_string(q.kind)).str("subject", q.subject);
  if (!q.detail.empty()) {
    ev.str("detail", q.detail);
  }
  return ev;
}

void Approvals::defer(policy::AnswerCallback cb, Answer a) {
  auto shared = std::make_shared<event::WatchId>(0);
  auto t = loop_.add_timer(std::chrono::milliseconds(0), std::chrono::milliseconds(0),
                           [this, shared, a](uint64_t) {
                             auto it = deferred_.find(*shared);
                             if (it != deferred_.end()) {
                               auto run = std::move(it->second);
                               deferred_.erase(it);
                               run(a);
                             }
                           });
  if (t) {
    *shared = *t;
    deferred_.emplace(*t, std::move(cb));
  } else {
    base::log::warn("approvals: no timer for an answer: {}", t.error().message());
  }
}

void Approvals::ask(policy::Question q, policy::AnswerCallback answer) {
  // Learning never hands out a credential's real value: that question waits for a person.
  if (learning_ && q.kind != policy::ApprovalKind::credential) {
    const Answer a =
        q.kind == policy::ApprovalKind::host ? Answer::allow_session : Answer::allow_once;
    audit_.emit(event("learn.allow", "", q).str("answer", policy::to_string(a)));
    // The widening runs with the answer, outside the asker's own call (the DNS responder is
    // in the middle of its decision while it asks).
    defer(
        [this, q = std::move(q), answer = std::move(answer)](Answer got) {
          if (policy::allows(got) && got != Answer::allow_once && widen_) {
            widen_(q, got, Who{.uid = ::getuid(), .pid = 0});
          }
          answer(got);
        },
        a);
    return;
  }
  if (pending_.size() >= kMaxPending) {
    audit_.emit(event("approval.overflow", "", q)
                    .num("pending", static_cast<int64_t>(pending_.size()))
                    .str("answer", "deny"));
    defer(std::move(answer), Answer::deny);
    return;
  }
  std::string id = fmt::format("q{}", next_);
  Entry e{.question = std::move(q),
          .callback = std::move(answer),
          .asked = std::time(nullptr),
          .deadline = std::chrono::steady_clock::now() + timeout_,
          .timer = 0,
          .seq = next_++};
  auto t =
      loop_.add_timer(timeout_, std::chrono::milliseconds(0), [this, id](uint64_t) { expire(id); });
  if (t) {
    e.timer = *t;
  } else {
    base::log::warn("approvals: no timer for question {}: {}", id, t.error().message());
  }
  audit_.emit(event("approval.ask", id, e.question).num("timeout_ms", timeout_.count()));
  base::log::debug("approval {}: {} {} asked", id, policy::to_string(e.question.kind),
                   e.question.subject);
  auto placed = pending_.emplace(id, std::move(e)).first;
  if (observer_ != nullptr) {
    observer_->waiting(id, placed->second.question, timeout_);
  }
}

void Approvals::expire(const std::string& id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    return;
  }
  Entry e = std::move(it->second);
  pending_.erase(it);
  audit_.emit(event("approval.timeout", id, e.question)
                  .num("timeout_ms", timeout_.count())
                  .str("answer", "deny"));
  if (observer_ != nullptr) {
    observer_->settled(id);
  }
  e.callback(Answer::deny);
}

std::vector<Approvals::Pending> Approvals::pending() const {
  std::vector<Pending> out;
  auto now = std::chrono::steady_clock::now();
  for (const auto& [id, e] : pending_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(e.deadline - now);
    out.push_back({id, e.question, e.asked, std::max<int64_t>(0, left.count())});
  }
  std::sort(out.begin(), out.end(), [&](const Pending& a, const Pending& b) {
    return pending_.at(a.id).seq < pending_.at(b.id).seq;
  });
  return out;
}

Result<std::string> Approvals::answer(const std::string& id, Answer a, const Who& who) {
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    return Error::msg(
               fmt::format("no question `{}` waits (answered, timed out, or never asked)", id))
        .hint("`agentbox approve SESSION --json` lists the questions that wait");
  }
  Entry e = std::move(it->second);
  pending_.erase(it);
  loop_.unwatch(e.timer);
  std::string note;
  if ((a == Answer::allow_session || a == Answer::allow_always) && widen_) {
    note = widen_(e.question, a, who);
  }
  auto ev = event("approval.answer", id, e.question);
  ev.str("answer", policy::to_string(a)).num("by_uid", who.uid).num("by_pid", who.pid);
  if (!who.via.empty()) {
    ev.str("by", who.via);
  }
  if (!note.empty()) {
    ev.str("note", note);
  }
  audit_.emit(ev);
  if (observer_ != nullptr) {
    observer_->settled(id);
  }
  e.callback(a);
  return note;
}

Result<Answer> parse_answer(const std::string& word) {
  for (Answer a : {Answer::allow_once, Answer::allow_session, Answer::allow_always, Answer::deny}) {
    if (word == policy::to_string(a)) {
      return a;
    }
  }
  return Error::msg(fmt::format("`{}` is not an answer", word))
      .hint("answer once, session, always or deny");
}

}  // namespace agentbox::app
