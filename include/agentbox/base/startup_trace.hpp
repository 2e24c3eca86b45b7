// AGENTBOX_TRACE_STARTUP: one line per start-up phase on stderr, for bench/startup_trace.sh.
#pragma once

namespace agentbox::base::startup_trace {

// The variable's name. Set (to anything non-empty) in agentbox's own environment; the box's
// program never sees it (the box's environment is built, not inherited).
inline constexpr const char* kEnv = "AGENTBOX_TRACE_STARTUP";

// Whether the variable is set; read once, on the first call (call it before any clone, so that
// the children's copies hold the answer and never read the environment).
bool enabled() noexcept;

// When enabled, writes `agentbox-trace PID TID MONO_US CPU_US MINFLT PHASE` to fd 2: the
// monotonic clock, this thread's CPU time and its minor page faults so far. System calls only (no
// allocation, no locks): callable in init and in the program's vfork-like child.
void stamp(const char* phase) noexcept;

}  // namespace agentbox::base::startup_trace
