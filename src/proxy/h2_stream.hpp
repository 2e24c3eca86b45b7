// The HTTP/2 relay's state (h2_relay.hpp): the two nghttp2 sessions and the streams between.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "h2_relay.hpp"

namespace agentbox::proxy {

struct H2Stream {
  // kHeaders: the request head is being received; kFresh: a credential it needs is re-read off
  // the loop; kOpen: relayed; kAnswered: the proxy answered it (refused), nothing goes up.
  enum class Phase { kHeaders, kFresh, kOpen, kAnswered };
  Phase phase = Phase::kHeaders;
  int32_t box_id = 0;
  int32_t up_id = 0;                 // 0: not sent upstream
  std::vector<http::Header> fields;  // request head as received (pseudo-headers first)
  size_t field_bytes = 0;
  std::vector<http::Header> resp_fields;
  bool final_seen = false;  // the final response head came (later HEADERS are trailers)
  std::string authority;    // :authority as sent (forwarded as sent)
  // Exchange holds the parsed request, the audit fields, the body scan state and the scrubber.
  Exchange x;
  ByteBuffer up;  // request DATA for the upstream stream (window not yet given back)
  bool up_end = false;
  std::vector<http::Header> up_trailers;
  ByteBuffer down;  // response DATA for the box stream, scrubbed
  bool down_end = false;
  std::vector<http::Header> down_trailers;
  bool headers_sent = false;  // a response head went to the box
  bool audited = false;
  bool box_closed = false;
  bool up_closed = false;
};

struct H2Relay {
  H2Relay(ProxyHandler::Internals& i, Conn& conn) : in(i), c(conn) {}
  ~H2Relay();
  H2Relay(const H2Relay&) = delete;
  H2Relay& operator=(const H2Relay&) = delete;

  ProxyHandler::Internals& in;
  Conn& c;
  std::optional<TlsChannel> box_tls;                     // kAlpn: the box's channel, not fed yet
  nghttp2_session* box = nullptr;                        // server session toward the box
  nghttp2_session* up = nullptr;                         // client session toward the upstream
  std::map<int32_t, std::unique_ptr<H2Stream>> streams;  // by box stream id
  std::string batch;                                     // frames for one side, then sent
  bool up_gone = false;    // the upstream session ended: the box is told with GOAWAY
  size_t field_bytes = 0;  // header bytes held by the streams alive (kMaxConnFieldBytes)
};

// h2_stream.cpp: the request head checked and sent up (or refused); request DATA and trailers;
// the response head, DATA and trailers scrubbed; refusals and the audit line.
void h2_request_head(H2Relay& h, H2Stream& s);
void h2_request_data(H2Relay& h, H2Stream& s, std::string_view data);
void h2_request_trailers(H2Relay& h, H2Stream& s);
void h2_response_head(H2Relay& h, H2Stream& s, bool end_stream);
void h2_response_data(H2Relay& h, H2Stream& s, std::string_view data);
void h2_response_end(H2Relay& h, H2Stream& s);
void h2_refuse(H2Relay& h, H2Stream& s, int status, const std::string& line);
void h2_audit(H2Relay& h, H2Stream& s, std::string_view decision, std::string_view reason = {});
// h2_session.cpp: the data providers both streams' bodies go through.
[[nodiscard]] nghttp2_data_provider h2_up_body(H2Stream& s);
[[nodiscard]] nghttp2_data_provider h2_down_body(H2Stream& s);
// Lowercased fields as nghttp2 name/value pairs (pointing into `fields`).
[[nodiscard]] std::vector<nghttp2_nv> h2_nv(const std::vector<http::Header>& fields);

}  // namespace agentbox::proxy
