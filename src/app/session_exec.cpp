// The session's exec guard: config -> ExecGuardSpec, and the launch command's own check.
#include "agentbox/app/session_exec.hpp"

#include <fmt/core.h>

namespace agentbox::app {

base::Result<sandbox::ExecGuardSpec> plan_exec_guard(const ExecInputs& in, audit::Sink& sink) {
  policy::ExecPolicy pol(in.rules, in.workspace);
  if (!in.command.empty()) {
    // The box runs the command from the workspace; PATH is searched inside, so only what was
    // typed is known here: a name rule sees its base name, a path rule the path as typed.
    policy::ExecCall call{.path = in.command[0].find('/') == std::string::npos
                                      ? in.command[0]
                                      : policy::normalize_path(in.workspace, in.command[0]),
                          .given = in.command[0],
                          .argv = in.command,
                          .truncated = false,
                          .cwd = in.workspace};
    policy::ExecVerdict v = pol.decide(call);
    if (v.action == policy::ExecAction::deny && v.rule >= 0) {
      const policy::ExecRule& r = pol.rules()[static_cast<size_t>(v.rule)];
      return base::Error::msg(fmt::format("the command `{}` is denied by the exec rule `{}` ({})",
                                          policy::shell_quote(in.command), r.describe(), r.origin));
    }
    if (in.log || v.rule >= 0) {
      audit::Event ev("exec");
      ev.str("source", "launch").str("path", call.path).strs("argv", in.command);
      ev.str("cwd", in.workspace).str("verdict", "allow");
      if (v.rule >= 0) {
        ev.str("rule", pol.rules()[static_cast<size_t>(v.rule)].describe())
            .str("reason", "the command you started");
      }
      sink.emit(ev);
    }
  }
  return sandbox::ExecGuardSpec{.policy = std::move(pol), .log = in.log, .approver = in.approver};
}

}  // namespace agentbox::app
