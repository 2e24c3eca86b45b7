// The HTTP/2 relay's sessions (h2_relay.hpp): ALPN hand-over, nghttp2 callbacks, the body data
// providers, and the step that moves frames between the two sessions and the two sides.
#include <fmt/core.h>

#include <algorithm>
#include <cstring>

#include "h2_stream.hpp"

namespace agentbox::proxy {

namespace {

constexpr size_t kMaxFieldBytes = size_t{64} * 1024;  // a head, as http::Limits::max_head
// Header bytes all streams of a connection may hold: 100 streams of 64 KiB heads would be
// 6.4 MiB; past this a new head resets its stream (the client may retry it).
constexpr size_t kMaxConnFieldBytes = size_t{512} * 1024;
constexpr uint32_t kMaxStreams = 100;
constexpr size_t kMinWindow = size_t{16} * 1024;
constexpr size_t kBatch = size_t{64} * 1024;  // frames gathered before one TLS write

H2Relay& relay(void* user_data) {
  return *static_cast<H2Relay*>(user_data);
}

H2Stream* stream_of(nghttp2_session* session, int32_t id) {
  return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, id));
}

std::string_view view(const uint8_t* p, size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

// Both sessions closed their side of the stream: nothing points at it any more.
void release_stream(H2Relay& h, H2Stream& s) {
  if (s.box_closed && (s.up_id == 0 || s.up_closed)) {
    h.field_bytes -= std::min(h.field_bytes, s.field_bytes);
    h.streams.erase(s.box_id);
  }
}

// --- box side (server session) ------------------------------------------------------------------

int box_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
  auto& h = relay(ud);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  auto s = std::make_unique<H2Stream>();
  s->box_id = frame->hd.stream_id;
  (void)nghttp2_session_set_stream_user_data(session, s->box_id, s.get());
  h.streams[s->box_id] = std::move(s);
  return 0;
}

int box_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
               size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  H2Stream* s = stream_of(session, frame->hd.stream_id);
  if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS) {
    return 0;
  }
  s->field_bytes += namelen + valuelen + 4;
  relay(ud).field_bytes += namelen + valuelen + 4;
  if (s->field_bytes > kMaxFieldBytes || relay(ud).field_bytes > kMaxConnFieldBytes) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the stream is reset
  }
  auto& to = frame->headers.cat == NGHTTP2_HCAT_REQUEST ? s->fields : s->up_trailers;
  to.push_back({std::string(view(name, namelen)), std::string(view(value, valuelen))});
  return 0;
}

int box_frame(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
  auto& h = relay(ud);
  H2Stream* s = stream_of(session, frame->hd.stream_id);
  if (s == nullptr) {
    return 0;
  }
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    s->up_end = end;
    h2_request_head(h, *s);
  } else if (frame->hd.type == NGHTTP2_HEADERS) {
    h2_request_trailers(h, *s);
  } else if (frame->hd.type == NGHTTP2_DATA && end) {
    s->up_end = true;
    if (s->up_id != 0) {
      (void)nghttp2_session_resume_data(h.up, s->up_id);
    }
  }
  return 0;
}

int box_data(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len,
             void* ud) {
  auto& h = relay(ud);
  H2Stream* s = stream_of(session, id);
  if (s == nullptr || s->phase == H2Stream::Phase::kAnswered) {
    (void)nghttp2_session_consume(session, id, len);  // dropped: its window comes back now
    return 0;
  }
  h2_request_data(h, *s, view(data, len));
  return 0;
}

int box_close(nghttp2_session* session, int32_t id, uint32_t code, void* ud) {
  auto& h = relay(ud);
  H2Stream* s = stream_of(session, id);
  if (s == nullptr) {
    return 0;
  }
  s->box_closed = true;
  if (!s->audited) {
    h2_audit(h, *s, "aborted",
             fmt::format("the box reset the stream ({})", nghttp2_http2_strerror(code)));
  }
  if (s->up_id != 0 && !s->up_closed && (!s->up_end || !s->down_end)) {
    (void)nghttp2_submit_rst_stream(h.up, NGHTTP2_FLAG_NONE, s->up_id, NGHTTP2_CANCEL);
  }
  release_stream(h, *s);
  return 0;
}

// --- upstream side (client session) -------------------------------------------------------------

int up_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
              size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  H2Stream* s = stream_of(session, frame->hd.stream_id);
  if (s == nullptr || frame->hd.type != NGHTTP2_HEADERS) {
    return 0;
  }
  s->field_bytes += namelen + valuelen + 4;
  relay(ud).field_bytes += namelen + valuelen + 4;
  if (s->field_bytes > 2 * kMaxFieldBytes || relay(ud).field_bytes > 2 * kMaxConnFieldBytes) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  auto& to = s->final_seen ? s->down_trailers : s->resp_fields;
  to.push_back({std::string(view(name, namelen)), std::string(view(value, valuelen))});
  return 0;
}

int up_frame(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
  auto& h = relay(ud);
  H2Stream* s = stream_of(session, frame->hd.stream_id);
  if (s == nullptr || s->phase == H2Stream::Phase::kAnswered) {
    return 0;
  }
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !s->final_seen) {
    h2_response_head(h, *s, end);
  } else if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) && end) {
    h2_response_end(h, *s);
  }
  return 0;
}

int up_data(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data, size_t len,
            void* ud) {
  auto& h = relay(ud);
  H2Stream* s = stream_of(session, id);
  if (s == nullptr || s->phase == H2Stream::Phase::kAnswered) {
    (void)nghttp2_session_consume(session, id, len);
    return 0;
  }
  h2_response_data(h, *s, view(data, len));
  return 0;
}

int up_close(nghttp2_session* session, int32_t id, uint32_t code, void* ud) {
  auto& h = relay(ud);
  H2Stream* s = stream_of(session, id);
  if (s == nullptr) {
    return 0;
  }
  s->up_closed = true;
  if (!s->down_end && !s->box_closed && s->phase != H2Stream::Phase::kAnswered) {
    // The upstream ended the stream without a whole response: so does the box's.
    if (!s->audited) {
      h2_audit(h, *s, "aborted",
               fmt::format("the upstream reset the stream ({})", nghttp2_http2_strerror(code)));
    }
    (void)nghttp2_submit_rst_stream(
        h.box, NGHTTP2_FLAG_NONE, s->box_id,
        code == NGHTTP2_NO_ERROR ? uint32_t{NGHTTP2_INTERNAL_ERROR} : code);
  }
  release_stream(h, *s);
  return 0;
}

// --- bodies ------------------------------------------------------------------------------------

// Hands queued bytes of `from` to nghttp2 and gives their window back on the session they came
// from; at the end, trailers (when any) follow on `session`.
ssize_t provide(H2Relay& h, nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                uint32_t* flags, ByteBuffer& from, bool end, std::vector<http::Header>& trailers,
                nghttp2_session* source, int32_t source_id) {
  const size_t n = std::min(length, from.size());
  std::memcpy(buf, from.data(), n);
  from.consume(n);
  if (n > 0 && source != nullptr && source_id != 0) {
    (void)nghttp2_session_consume(source, source_id, n);
  }
  if (!from.empty() || !end) {
    return n > 0 ? static_cast<ssize_t>(n) : ssize_t{NGHTTP2_ERR_DEFERRED};
  }
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!trailers.empty()) {
    const auto nv = h2_nv(trailers);
    if (nghttp2_submit_trailer(session, id, nv.data(), nv.size()) == 0) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
  }
  (void)h;
  return static_cast<ssize_t>(n);
}

ssize_t read_up_body(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                     uint32_t* flags, nghttp2_data_source* src, void* ud) {
  auto& h = relay(ud);
  auto& s = *static_cast<H2Stream*>(src->ptr);
  return provide(h, session, id, buf, length, flags, s.up, s.up_end, s.up_trailers, h.box,
                 s.box_id);
}

ssize_t read_down_body(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                       uint32_t* flags, nghttp2_data_source* src, void* ud) {
  auto& h = relay(ud);
  auto& s = *static_cast<H2Stream*>(src->ptr);
  // A stream the proxy answered gives no window back upstream: those bytes are its own.
  const int32_t source_id = s.phase == H2Stream::Phase::kAnswered ? 0 : s.up_id;
  return provide(h, session, id, buf, length, flags, s.down, s.down_end, s.down_trailers, h.up,
                 source_id);
}

// --- sessions ----------------------------------------------------------------------------------

struct Callbacks {
  nghttp2_session_callbacks* p = nullptr;
  Callbacks() { (void)nghttp2_session_callbacks_new(&p); }
  ~Callbacks() { nghttp2_session_callbacks_del(p); }
  Callbacks(const Callbacks&) = delete;
  Callbacks& operator=(const Callbacks&) = delete;
};

bool make_sessions(H2Relay& h, size_t cap) {
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    return false;
  }
  // Windows are given back only when the bytes were handed on (provide): what a stream and the
  // connection hold stays within the windows below.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  Callbacks server;
  nghttp2_session_callbacks_set_on_begin_headers_callback(server.p, box_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(server.p, box_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(server.p, box_frame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(server.p, box_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(server.p, box_close);
  Callbacks client;
  nghttp2_session_callbacks_set_on_header_callback(client.p, up_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(client.p, up_frame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(client.p, up_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(client.p, up_close);
  const bool made = nghttp2_session_server_new2(&h.box, server.p, &h, opt) == 0 &&
                    nghttp2_session_client_new2(&h.up, client.p, &h, opt) == 0;
  nghttp2_option_del(opt);
  if (!made) {
    return false;
  }
  const auto window = static_cast<uint32_t>(std::max(cap, kMinWindow));
  const nghttp2_settings_entry box_settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxFieldBytes)},
  };
  const nghttp2_settings_entry up_settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window},
  };
  return nghttp2_submit_settings(h.box, NGHTTP2_FLAG_NONE, box_settings, 3) == 0 &&
         nghttp2_submit_settings(h.up, NGHTTP2_FLAG_NONE, up_settings, 2) == 0 &&
         nghttp2_session_set_local_window_size(h.box, NGHTTP2_FLAG_NONE, 0,
                                               static_cast<int32_t>(2 * window)) == 0 &&
         nghttp2_session_set_local_window_size(h.up, NGHTTP2_FLAG_NONE, 0,
                                               static_cast<int32_t>(2 * window)) == 0;
}

// Frames nghttp2 has for `side`, gathered and handed to it while its queue is below the cap.
// Returns false on a session error.
bool pump(H2Relay& h, nghttp2_session* session, Side& side, size_t cap, bool& progress) {
  while (side.pending() < cap) {
    h.batch.clear();
    while (h.batch.size() < kBatch) {
      const uint8_t* p = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session, &p);
      if (n < 0) {
        return false;
      }
      if (n == 0) {
        break;
      }
      h.batch.append(view(p, static_cast<size_t>(n)));
    }
    if (h.batch.empty()) {
      break;
    }
    side.send(h.batch);
    progress = true;
  }
  return true;
}

// Bytes from one side into its session. Returns false (and says why) on a protocol error.
bool feed(nghttp2_session* session, Side& side, std::string& why) {
  if (side.rx.empty()) {
    return true;
  }
  const auto got = nghttp2_session_mem_recv(
      session, reinterpret_cast<const uint8_t*>(side.rx.data()), side.rx.size());
  if (got < 0) {
    why = nghttp2_strerror(static_cast<int>(got));
    return false;
  }
  side.rx.consume(static_cast<size_t>(got));
  return true;
}

void retry_fresh(H2Relay& h) {
  std::vector<H2Stream*> waiting;
  for (auto& [id, s] : h.streams) {
    if (s->phase == H2Stream::Phase::kFresh) {
      waiting.push_back(s.get());
    }
  }
  for (H2Stream* s : waiting) {
    h2_request_head(h, *s);
  }
}

// The ends: the box gone ends the flow; the upstream gone (or done) ends the box's session
// with GOAWAY once its streams are answered.
bool ends(ProxyHandler::Internals& in, Conn& c, H2Relay& h) {
  if ((c.box.eof && c.box.rx.empty()) ||
      (nghttp2_session_want_read(h.box) == 0 && nghttp2_session_want_write(h.box) == 0)) {
    drop(in, c, {});
    return true;
  }
  const bool up_done =
      c.up.failed() || (c.up.eof && c.up.rx.empty()) ||
      (nghttp2_session_want_read(h.up) == 0 && nghttp2_session_want_write(h.up) == 0);
  if (up_done && !h.up_gone) {
    h.up_gone = true;
    for (auto& [id, s] : h.streams) {
      if (!s->down_end && s->phase != H2Stream::Phase::kAnswered && !s->box_closed) {
        if (!s->audited) {
          h2_audit(h, *s, "aborted", c.up.failed() ? c.up.error : "the upstream closed");
        }
        (void)nghttp2_submit_rst_stream(h.box, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
      }
    }
    // A graceful GOAWAY: responses already read go on to the box; the session ends (both
    // want_read and want_write 0) once its last stream closed.
    (void)nghttp2_submit_goaway(h.box, NGHTTP2_FLAG_NONE,
                                nghttp2_session_get_last_proc_stream_id(h.box), NGHTTP2_NO_ERROR,
                                nullptr, 0);
    return true;
  }
  return false;
}

}  // namespace

H2Relay::~H2Relay() {
  nghttp2_session_del(box);
  nghttp2_session_del(up);
}

void H2RelayDeleter::operator()(H2Relay* r) const {
  delete r;
}

std::vector<nghttp2_nv> h2_nv(const std::vector<http::Header>& fields) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(fields.size());
  for (const auto& f : fields) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(),
                  f.value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

nghttp2_data_provider h2_up_body(H2Stream& s) {
  nghttp2_data_provider p{};
  p.source.ptr = &s;
  p.read_callback = read_up_body;
  return p;
}

nghttp2_data_provider h2_down_body(H2Stream& s) {
  nghttp2_data_provider p{};
  p.source.ptr = &s;
  p.read_callback = read_down_body;
  return p;
}

std::string h2_upstream_alpn(ProxyHandler::Internals& in, const Conn& c,
                             const std::vector<std::string>& alpn) {
  if (std::find(alpn.begin(), alpn.end(), "h2") == alpn.end()) {
    return {};
  }
  // `body = true` credentials re-frame request bodies (HTTP/1.1 only, for now).
  if (in.credentials != nullptr && !in.credentials->body_injector(c.sni, false).empty()) {
    return {};
  }
  std::string wire;
  for (const auto& p : alpn) {
    if (p == "h2" || p == "http/1.1") {
      wire += static_cast<char>(p.size());
      wire += p;
    }
  }
  return wire;
}

void h2_defer_box(ProxyHandler::Internals& in, Conn& c, TlsChannel box) {
  c.mode = Mode::kAlpn;
  c.h2.reset(new H2Relay(in, c));
  c.h2->box_tls = std::move(box);
}

bool alpn_step(ProxyHandler::Internals& in, Conn& c) {
  if (c.box.failed()) {
    c.done = true;
    return true;
  }
  const bool up_done = c.up.tls && c.up.tls->handshake_done();
  if (!up_done && c.up.open() && !c.up.failed() && !c.up.eof) {
    return false;  // the upstream has not picked yet
  }
  const bool h2 = up_done && c.up.tls->alpn() == "h2";
  TlsChannel box = std::move(*c.h2->box_tls);
  box.answer_h2(h2);
  c.box.adopt_tls(std::move(box));
  c.mode = Mode::kHttp;
  if (!h2) {
    c.h2.reset();
    return true;  // HTTP/1.1 as before (or the 502 naming why the upstream failed)
  }
  c.h2->box_tls.reset();
  if (!make_sessions(*c.h2, c.cap)) {
    drop(in, c, "HTTP/2: cannot set up the sessions");
    return true;
  }
  c.mode = Mode::kH2;
  return true;
}

bool h2_step(ProxyHandler::Internals& in, Conn& c) {
  if (c.box.failed()) {
    if (!c.box.handshake_done()) {
      return http_step(in, c);  // names why (the client refused the session CA, ...)
    }
    c.done = true;
    return true;
  }
  if (!c.box.handshake_done()) {
    return false;
  }
  auto& h = *c.h2;
  bool progress = false;
  std::string why;
  const size_t from_box = c.box.rx.size();
  if (!feed(h.box, c.box, why)) {
    drop(in, c, "HTTP/2 from the box: " + why);
    return true;
  }
  if (from_box > 0 && in.options.budget != nullptr) {
    in.options.budget->count_egress(c.info.id, from_box);
  }
  progress = from_box > 0;
  if (!c.up.rx.empty()) {
    if (!feed(h.up, c.up, why)) {
      ++in.counters.upstream_failures;
      drop(in, c, "HTTP/2 from " + c.info.name + ": " + why);
      return true;
    }
    progress = true;
  }
  if (c.http.woken) {
    c.http.woken = false;
    retry_fresh(h);
  }
  if (!pump(h, h.up, c.up, c.cap, progress) || !pump(h, h.box, c.box, c.cap, progress)) {
    drop(in, c, "HTTP/2: session error");
    return true;
  }
  return ends(in, c, h) || progress;
}

bool h2_holds(const Conn& c) {
  if (!c.h2) {
    return false;
  }
  return std::any_of(c.h2->streams.begin(), c.h2->streams.end(), [](const auto& kv) {
    return kv.second->x.scrubber && kv.second->x.scrubber->held() > 0;
  });
}

void h2_release_expired(ProxyHandler::Internals& in, Conn& c, Clock::time_point now) {
  for (auto& [id, s] : c.h2->streams) {
    auto& x = s->x;
    if (x.scrubber && x.scrubber->held() > 0 && now - x.held_since >= in.options.scrub_hold) {
      s->down.append(x.scrubber->finish());
      x.held_since = Clock::time_point{};
      (void)nghttp2_session_resume_data(c.h2->box, id);
    }
  }
}

void h2_abort(ProxyHandler::Internals&, Conn& c) {
  for (auto& [id, s] : c.h2->streams) {
    if (!s->audited) {
      h2_audit(*c.h2, *s, "aborted", c.box.failed() ? c.box.error : "connection closed");
    }
  }
}

}  // namespace agentbox::proxy
