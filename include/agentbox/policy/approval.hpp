// Questions the data path asks a person while the box keeps running (issue 16: approvals).
//
// Theory of operation: net (a DNS name or a connection under `ask`), proxy (a credential's first
// use, when a profile says so) and the exec guard (an `[[exec.rule]]` with `ask`) hold what they
// are doing and call Approver::ask(). app implements the Approver on top of the control plane's
// queue (`agentbox approve`); net, proxy and the exec guard include only this header, never
// control. The callback runs exactly once, on the event loop's thread: with the person's answer,
// or with Answer::deny when the wait ends unanswered (the bound, default 60 s, or the session's
// end). Whoever asked keeps what it holds bounded meanwhile; the box keeps running.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace agentbox::policy {

enum class ApprovalKind : uint8_t {
  host,        // subject: "name" or "name:port"
  credential,  // subject: the credential's name; detail: the request line it would join
  exec,        // subject: the program; detail: the argv, shell-quoted
};

enum class Answer : uint8_t {
  allow_once,     // this one request, connection or exec
  allow_session,  // the same subject, until the session ends
  allow_always,   // as allow_session, and written to the user's config (with a comment)
  deny,
};

struct Question {
  ApprovalKind kind = ApprovalKind::host;
  std::string subject;
  std::string detail;
};

using AnswerCallback = std::function<void(Answer)>;

class Approver {
 public:
  virtual ~Approver() = default;
  // Queues `q`; `answer` runs later, once, on the loop thread (never from inside ask()).
  virtual void ask(Question q, AnswerCallback answer) = 0;
};

[[nodiscard]] constexpr std::string_view to_string(ApprovalKind k) {
  switch (k) {
    case ApprovalKind::host:
      return "host";
    case ApprovalKind::credential:
      return "credential";
    case ApprovalKind::exec:
      return "exec";
  }
  return "?";
}

[[nodiscard]] constexpr std::string_view to_string(Answer a) {
  switch (a) {
    case Answer::allow_once:
      return "once";
    case Answer::allow_session:
      return "session";
    case Answer::allow_always:
      return "always";
    case Answer::deny:
      return "deny";
  }
  return "?";
}

[[nodiscard]] constexpr bool allows(Answer a) {
  return a != Answer::deny;
}

}  // namespace agentbox::policy
