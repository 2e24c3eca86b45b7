// How a session ended, as a value: the typed end reason and the report the CLI renders at exit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace agentbox::app {

// Why the session ended. session.end's "reason" is to_string() of it, except for `limit`, whose
// text is the limit's own phrase (SessionReport::limit).
enum class EndReason : uint8_t {
  not_started,   // refused before the box (an error was printed); no session.end
  exit,          // the program ended, by itself or by a signal it was sent
  sigterm,       // agentbox got SIGTERM, passed it on and armed the 3 s kill
  sighup,        // the same for SIGHUP
  parent_ended,  // the process that started agentbox ended (sandbox.die_with_parent)
  timeout,       // --timeout: status 124
  limit,         // the box reached a limit (memory, processes, CPU, ...)
  setup_failed,  // the box or its network could not be set up: status 125
  exec_failed,   // the command could not be executed: status 126/127
  audit_failed,  // audit.required and a line was lost: status 125
};

[[nodiscard]] std::string_view to_string(EndReason r);

struct SessionReport {
  int code = 125;  // agentbox's exit status
  EndReason reason = EndReason::not_started;
  std::string limit;            // reason == limit: "memory limit (OOM kill)"
  bool started = false;         // the box ran
  bool program_exited = false;  // init saw the program exit by itself (128+N is its own)
  double seconds = 0;
  std::string command;  // argv[0]
  std::string id;       // the short session id
  std::string dir;      // the session folder (audit.jsonl)
  std::string chain_head;
  // Lines for the end of the run, in order: network and proxy, terminal filter, per host and
  // credential (as `log --summary`); then --review's; then telemetry's.
  std::vector<std::string> summary;
  std::vector<std::string> review;
  std::vector<std::string> telemetry;
};

// The report as the lines `run` prints at exit (without -q): the summaries, the audit chain's
// head and "`cmd` exited with status 0 after 1.2s; session ...". Nothing when no session ran.
[[nodiscard]] std::vector<std::string> render(const SessionReport& r);

}  // namespace agentbox::app
