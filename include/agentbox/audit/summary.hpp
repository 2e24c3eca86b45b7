// What a session did, per host and per credential, read back from its audit log: the exit
// summary and `agentbox log --summary` print the same table (docs/TELEMETRY.md, "Summary").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace agentbox::audit {

struct Use {
  uint64_t connections = 0;  // net.connect
  uint64_t requests = 0;     // http.request
  uint64_t bytes_up = 0;     // net.close for a host; request bodies for a credential
  uint64_t bytes_down = 0;
  uint64_t denials = 0;  // net.deny, denied DNS names, proxy.drop, denied requests, blocked uses
  // From "usage" events (model, input_tokens, output_tokens, cached_tokens, cost_usd), when the
  // proxy writes them.
  uint64_t input_tokens = 0;
  uint64_t output_tokens = 0;
  uint64_t cached_tokens = 0;
  double cost_usd = 0;
  bool has_usage = false;
};

class LogSummary {
 public:
  // One line of the log (a line that does not parse is skipped).
  void feed(std::string_view line);
  // "host NAME: ..." lines, then "credential NAME: ...", then "model NAME: ..."; nothing for an
  // empty session.
  [[nodiscard]] std::vector<std::string> render() const;
  std::map<std::string, Use> hosts;
  std::map<std::string, Use> credentials;
  std::map<std::string, Use> models;
};

// The summary of the log at `path` (empty when it cannot be read).
[[nodiscard]] LogSummary summarize_log(const std::string& path);

}  // namespace agentbox::audit
