// The model response both usage benchmarks replay (usage_bench, proxy/usage_proxy_bench): an
// Anthropic Messages SSE stream as the API sends it, one string per event (its blank line
// included): message_start with the usage so far, N text deltas, message_delta with the output
// count, message_stop.
#pragma once

#include <string>
#include <vector>

namespace agentbox::bench {

inline std::vector<std::string> anthropic_events(int n) {
  std::vector<std::string> ev;
  ev.push_back(
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\","
      "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\","
      "\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":2095,"
      "\"cache_read_input_tokens\":18000,\"output_tokens\":1}}}\n\n");
  for (int i = 0; i < n; ++i) {
    ev.push_back(
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\" token " +
        std::to_string(i) + " of the answer, \\\"quoted\\\" and plain\"}}\n\n");
  }
  ev.push_back(
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
      "\"end_turn\"},\"usage\":{\"output_tokens\":" +
      std::to_string(n) + "}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
  return ev;
}

}  // namespace agentbox::bench
