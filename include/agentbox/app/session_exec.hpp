// The session's exec guard, seen from app: the `[exec]` config -> sandbox::ExecGuardSpec, and
// the check of the command agentbox itself starts (its exec is not held: see
// sandbox::with_exec_notify), both before the box starts.
#pragma once

#include <string>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/policy/approval.hpp"
#include "agentbox/policy/exec_rule.hpp"
#include "agentbox/sandbox/exec_guard.hpp"

namespace agentbox::app {

struct ExecInputs {
  const std::vector<policy::ExecRule>& rules;
  bool log;
  const std::string& workspace;
  const std::vector<std::string>& command;
  policy::Approver* approver;
};

// A deny rule matching `command` is an error naming the rule and where it was written; an ask
// rule lets it run (you typed it). With logging, the command's `exec` event ("source":"launch").
[[nodiscard]] base::Result<sandbox::ExecGuardSpec> plan_exec_guard(const ExecInputs& in,
                                                                   audit::Sink& sink);

}  // namespace agentbox::app
