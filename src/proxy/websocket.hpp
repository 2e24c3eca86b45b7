// WebSocket frames after an allowed upgrade (RFC 6455 5.2): the proxy keeps reading them both
// ways instead of relaying an unchecked tunnel (websocket.cpp).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/cred/scrubber.hpp"
#include "agentbox/proxy/usage.hpp"

namespace agentbox::proxy {

struct WsHead {
  bool fin = false;
  uint8_t opcode = 0;
  uint64_t length = 0;
};

// Splits a byte stream into frames, whatever the reads: each header goes to on_head, each
// payload piece (unmasked) to on_payload with `end` set on the frame's last piece (a frame
// without payload gets one empty piece). The box's frames must be masked and the upstream's
// not; RSV bits must be clear (no extension is ever negotiated: the proxy strips
// Sec-WebSocket-Extensions from the handshake).
class WsReader {
 public:
  using OnHead = std::function<void(const WsHead&)>;
  using OnPayload = std::function<void(std::string_view, bool end)>;
  explicit WsReader(bool from_client) : from_client_(from_client) {}
  // Reads all of `in`; returns why the stream is not WebSocket (empty when it is, so far).
  [[nodiscard]] std::string feed(std::string_view in, const OnHead& on_head,
                                 const OnPayload& on_payload);

 private:
  [[nodiscard]] std::string take_head(const OnHead& on_head, const OnPayload& on_payload);
  bool from_client_;
  std::string head_;  // header bytes so far (at most 14)
  bool in_payload_ = false;
  uint64_t left_ = 0;  // payload bytes left in the frame
  uint64_t at_ = 0;    // offset in the payload (the mask key's index)
  std::array<uint8_t, 4> key_{};
};

// Both directions of an upgraded WebSocket connection.
//   box -> upstream  frames forwarded as sent; their payloads, joined across frames and reads,
//                    are scanned for placeholders (an off-scope one ends the connection).
//   upstream -> box  data payloads go through a Scrubber across fragments and reads, and are
//                    sent on re-fragmented (RFC 6455 5.4 lets an intermediary do that when no
//                    extension is in use): held bytes wait for the next fragment, the message's
//                    last frame carries the rest. Control frames are scrubbed whole.
struct WsRelay {
  static constexpr size_t kOverlap = 4096;  // longer than any placeholder
  WsReader from_box{true};
  std::string scan_tail;  // last payload bytes of the box, scanned again with the next ones
  WsReader from_up{false};
  cred::Scrubber scrubber;  // upstream data payloads
  cred::Scrubber fresh;     // the same needles, never fed: a copy scrubs each control frame
  WsHead head;              // the upstream frame being read
  uint8_t message_opcode = 0;
  bool message_started = false;  // a fragment of this message went to the box
  std::string control;           // an upstream control frame's payload so far
  // A model API's WebSocket (the Responses API over WebSocket): each upstream text message is
  // read for token usage like a JSON body; readings wait here until ws_down settles them.
  bool meter = false;
  std::vector<std::string> credentials;  // used by the upgrade request (charged the usage)
  UsageMeter message_usage{UsageMeter::Format::kJson};
  std::vector<UsageMeter::Reading> readings;
  // Frames for the box from upstream bytes; returns an error (the stream is not WebSocket).
  [[nodiscard]] std::string down(std::string_view in, std::string& out);
  // A data fragment for the box holding `payload` (fin: the message's last).
  void emit(std::string_view payload, bool fin, std::string& out);
};

// A frame from the server's side (unmasked).
[[nodiscard]] std::string ws_frame(uint8_t opcode, bool fin, std::string_view payload);

}  // namespace agentbox::proxy
