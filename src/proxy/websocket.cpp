// WebSocket frames after an allowed upgrade (websocket.hpp), and the connection steps that use
// them (proxy_conn.hpp: ws_up, ws_down, ws_release).
#include "websocket.hpp"

#include <algorithm>

#include "proxy_conn.hpp"

namespace agentbox::proxy {

std::string WsReader::take_head(const OnHead& on_head, const OnPayload& on_payload) {
  const auto b0 = static_cast<uint8_t>(head_[0]);
  const auto b1 = static_cast<uint8_t>(head_[1]);
  if ((b0 & 0x70) != 0) {
    return "a frame with RSV bits set (no extension was negotiated)";
  }
  const bool masked = (b1 & 0x80) != 0;
  if (masked != from_client_) {
    return from_client_ ? "an unmasked frame from the client (RFC 6455 5.1: a protocol error)"
                        : "a masked frame from the server (RFC 6455 5.1: a protocol error)";
  }
  const uint8_t len7 = b1 & 0x7f;
  const size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  const size_t need = 2 + ext + (masked ? 4 : 0);
  if (head_.size() < need) {
    return {};  // more header bytes to come
  }
  uint64_t length = len7;
  if (ext > 0) {
    length = 0;
    for (size_t i = 0; i < ext; ++i) {
      length = length << 8 | static_cast<uint8_t>(head_[2 + i]);
    }
    if (length >> 63 != 0) {
      return "a frame length with the top bit set";
    }
  }
  const uint8_t opcode = b0 & 0x0f;
  if (opcode >= 8 && (length > 125 || (b0 & 0x80) == 0)) {
    return "a fragmented or oversized control frame";
  }
  for (size_t i = 0; i < 4 && masked; ++i) {
    key_[i] = static_cast<uint8_t>(head_[2 + ext + i]);
  }
  head_.clear();
  on_head(WsHead{.fin = (b0 & 0x80) != 0, .opcode = opcode, .length = length});
  left_ = length;
  at_ = 0;
  in_payload_ = length > 0;
  if (length == 0) {
    on_payload({}, true);
  }
  return {};
}

std::string WsReader::feed(std::string_view in, const OnHead& on_head,
                           const OnPayload& on_payload) {
  std::string piece;
  while (!in.empty()) {
    if (!in_payload_) {
      head_ += in.front();
      in.remove_prefix(1);
      if (head_.size() >= 2) {
        if (auto err = take_head(on_head, on_payload); !err.empty()) {
          return err;
        }
      }
      continue;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size()));
    piece.assign(in.substr(0, n));
    if (from_client_) {
      for (char& ch : piece) {
        ch = static_cast<char>(static_cast<uint8_t>(ch) ^ key_[at_++ % 4]);
      }
    }
    in.remove_prefix(n);
    left_ -= n;
    in_payload_ = left_ > 0;
    on_payload(piece, left_ == 0);
  }
  return {};
}

std::string ws_frame(uint8_t opcode, bool fin, std::string_view payload) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | opcode);
  const uint64_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(n);
  } else if (n < 65536) {
    f += static_cast<char>(126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(127);
    for (int s = 56; s >= 0; s -= 8) {
      f += static_cast<char>((n >> s) & 0xff);
    }
  }
  f.append(payload);
  return f;
}

void WsRelay::emit(std::string_view payload, bool fin, std::string& out) {
  out += ws_frame(message_started ? 0 : message_opcode, fin, payload);
  message_started = !fin;
}

std::string WsRelay::down(std::string_view in, std::string& out) {
  return from_up.feed(
      in,
      [&](const WsHead& h) {
        head = h;
        if (h.opcode != 0 && h.opcode < 8) {
          message_opcode = h.opcode;  // a new data message (a stray one is the box's problem)
          message_usage = UsageMeter(UsageMeter::Format::kJson);
        }
      },
      [&](std::string_view payload, bool end) {
        if (head.opcode >= 8) {
          control.append(payload);
          if (end) {
            cred::Scrubber whole = fresh;  // none of the data's held bytes
            std::string body = whole.feed(control);
            body += whole.finish();
            out += ws_frame(head.opcode, true, body);
            control.clear();
          }
          return;
        }
        if (meter && message_opcode == 1) {
          message_usage.feed(payload);
          if (end && head.fin) {
            if (auto r = message_usage.finish(); r.seen) {
              readings.push_back(std::move(r));
            }
          }
        }
        std::string part = scrubber.feed(payload);
        if (end && head.fin) {
          part += scrubber.finish();
          emit(part, true, out);
        } else if (!part.empty()) {
          emit(part, false, out);
        }
      });
}

bool ws_up(ProxyHandler::Internals& in, Conn& c, std::string_view bytes) {
  auto& ws = *c.ws;
  std::string payload;
  const std::string err = ws.from_box.feed(
      bytes, [](const WsHead&) {},
      [&](std::string_view piece, bool /*end*/) { payload.append(piece); });
  if (!err.empty()) {
    drop(in, c, "websocket from the box: " + err);
    return false;
  }
  if (!payload.empty() && ws.meter && in.options.budget != nullptr) {
    // A message to a model API under a spent budget: a WebSocket has no status to answer
    // with, so the connection ends (audited by the budget and as a drop).
    if (auto r = in.options.budget->admit(c.info.name); r.limit != SessionLimit::kNone) {
      drop(in, c, "websocket message refused: " + r.why);
      return false;
    }
  }
  if (payload.empty() || in.credentials == nullptr) {
    return true;
  }
  // Joined across frames and reads: a placeholder split over two fragments is still seen.
  std::string window = std::move(ws.scan_tail);
  window += payload;
  http::Request none;
  const auto v = in.credentials->inspect(none, c.info.name, window, !c.tls);
  if (v.blocked) {
    drop(in, c, "websocket frame blocked: " + v.reason);
    return false;
  }
  ws.scan_tail = window.substr(window.size() - std::min(window.size(), WsRelay::kOverlap));
  return true;
}

bool ws_down(ProxyHandler::Internals& in, Conn& c, std::string_view bytes) {
  std::string out;
  const std::string err = c.ws->down(bytes, out);
  if (!err.empty()) {
    drop(in, c, "websocket from " + c.info.name + ": " + err);
    return false;
  }
  c.box.send(out);
  c.http.held_since = c.ws->scrubber.held() > 0 ? Clock::now() : Clock::time_point{};
  if (in.options.budget != nullptr) {
    for (const auto& r : c.ws->readings) {
      in.options.budget->record(c.info.name, c.ws->credentials, r);
    }
  }
  c.ws->readings.clear();
  return true;
}

void ws_release(Conn& c) {
  auto& ws = *c.ws;
  if (ws.scrubber.held() > 0) {
    std::string out;
    ws.emit(ws.scrubber.finish(), false, out);
    c.box.send(out);
  }
}

}  // namespace agentbox::proxy
