// A hostile HTTP/2 upstream for proxy_h2_echo_test.cpp: echoes the token it was sent (the
// Authorization header after "Bearer ") in every form of echo_forms.hpp, with nghttp2 so that
// the test decides where every DATA frame ends.
//   h2_hostile_upstream DIR PORT   (DIR/srv.pem, DIR/srv.key; writes DIR/ready, logs DIR/seen.log)
// Routes:
//   /forms   a 103 carrying the raw token (interim: never relayed), then 200 with every form in
//            a header (x-f-NAME) and one named by the hex form; DATA: "NAME VALUE" lines, then
//            "split-NAME-K VALUE" lines with a DATA frame ending K bytes into VALUE, for every
//            form and every K inside it; trailers: every form (x-t-NAME)
//   /coding  200 with the token as its Content-Encoding (the proxy refuses the coding)
//   /stall   padding (newlines) until the proxy's flow-control window is about to close, then a
//   frame
//            ending in the token's first half; when the window stayed closed for 150 ms (the
//            box reading slowly), the second half follows ("stall split after N ms" logged),
//            else the attempt is spoiled with a newline; padding resumes, until 8 splits were
//            sent (or 4 MiB of padding: "stall gave up").
// Each connection is served by its own process (fork), so one the proxy keeps open blocks none.
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "echo_forms.hpp"

namespace {

using agentbox::it::echo_forms;
using Clock = std::chrono::steady_clock;

std::string g_dir;

void log_line(const std::string& line) {
  std::ofstream(g_dir + "/seen.log", std::ios::app) << line << "\n";
}

struct Stream {
  std::string path, auth, token;
  std::vector<std::string> chunks;  // one DATA frame each (or more, when the window is smaller)
  size_t at = 0, off = 0;
  std::vector<std::pair<std::string, std::string>> trailers;
  // /stall
  bool stall = false;
  size_t padded = 0;
  int splits = 0;
  bool head_out = false;
  Clock::time_point head_at;
  bool done = false;
};

struct Conn {
  SSL* ssl = nullptr;
  nghttp2_session* s = nullptr;
  std::map<int32_t, Stream> streams;
};

std::vector<nghttp2_nv> nvs(const std::vector<std::pair<std::string, std::string>>& f) {
  std::vector<nghttp2_nv> out;
  for (const auto& [n, v] : f) {
    out.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  }
  return out;
}

ssize_t end_body(Conn& c, int32_t id, Stream& st, uint32_t* flags, ssize_t n) {
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!st.trailers.empty()) {
    const auto nv = nvs(st.trailers);
    if (nghttp2_submit_trailer(c.s, id, nv.data(), nv.size()) == 0) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
  }
  return n;
}

// /stall: see the file's comment.
ssize_t stall_body(Conn& c, int32_t id, Stream& st, uint8_t* buf, size_t length, uint32_t* flags) {
  const std::string& t = st.token;
  const size_t half = t.size() / 2;
  if (st.head_out) {
    st.head_out = false;
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - st.head_at);
    if (waited.count() >= 150) {
      log_line("stall split after " + std::to_string(waited.count()) + " ms");
      const std::string rest = t.substr(half) + "\n";
      const size_t n = std::min(length, rest.size());
      std::memcpy(buf, rest.data(), n);
      ++st.splits;
      return st.splits >= 8 ? end_body(c, id, st, flags, static_cast<ssize_t>(n))
                            : static_cast<ssize_t>(n);
    }
    buf[0] = '\n';  // the window came back at once: spoil this attempt, pad on
    return 1;
  }
  if (st.padded > (size_t{4} << 20)) {
    log_line("stall gave up");
    return end_body(c, id, st, flags, 0);
  }
  const int32_t window = std::min(nghttp2_session_get_stream_remote_window_size(c.s, id),
                                  nghttp2_session_get_remote_window_size(c.s));
  if (window < 0 || length < static_cast<size_t>(window) || length < half + 1) {
    std::memset(buf, '\n', length);  // this frame does not close the window
    st.padded += length;
    return static_cast<ssize_t>(length);
  }
  // This frame closes the window: it ends with the token's first half.
  std::memset(buf, '\n', length - half);
  std::memcpy(buf + length - half, t.data(), half);
  st.head_out = true;
  st.head_at = Clock::now();
  return static_cast<ssize_t>(length);
}

ssize_t read_body(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                  nghttp2_data_source* src, void* ud) {
  auto& c = *static_cast<Conn*>(ud);
  auto& st = *static_cast<Stream*>(src->ptr);
  if (st.stall) {
    return stall_body(c, id, st, buf, length, flags);
  }
  if (st.at == st.chunks.size()) {
    return end_body(c, id, st, flags, 0);
  }
  const std::string& ch = st.chunks[st.at];
  const size_t n = std::min(length, ch.size() - st.off);
  std::memcpy(buf, ch.data() + st.off, n);
  st.off += n;
  if (st.off == ch.size()) {
    ++st.at;
    st.off = 0;
  }
  return static_cast<ssize_t>(n);
}

// The /forms body: every form whole, then every form cut at every offset inside it.
void forms_body(Stream& st) {
  const auto forms = echo_forms(st.token);
  std::string whole;
  for (const auto& [name, value] : forms) {
    whole += name + " " + value + "\n";
  }
  st.chunks.push_back(whole);
  std::string carry;
  for (const auto& [name, value] : forms) {
    for (size_t k = 1; k < value.size(); ++k) {
      st.chunks.push_back(carry + "split-" + name + "-" + std::to_string(k) + " " +
                          value.substr(0, k));
      carry = value.substr(k) + "\n";
    }
  }
  st.chunks.push_back(carry + "end\n");
}

void respond(Conn& c, int32_t id) {
  auto& st = c.streams[id];
  log_line("h2 GET " + st.path + " " + (st.auth.empty() ? "-" : st.auth));
  st.token = st.auth.substr(st.auth.find(' ') + 1);
  std::vector<std::pair<std::string, std::string>> head = {{":status", "200"},
                                                           {"content-type", "text/plain"}};
  if (st.path == "/forms") {
    const std::vector<std::pair<std::string, std::string>> early = {{":status", "103"},
                                                                    {"x-early", st.token}};
    const auto nv = nvs(early);
    (void)nghttp2_submit_headers(c.s, NGHTTP2_FLAG_NONE, id, nullptr, nv.data(), nv.size(),
                                 nullptr);
    for (const auto& [name, value] : echo_forms(st.token)) {
      head.emplace_back("x-f-" + name, value);
      st.trailers.emplace_back("x-t-" + name, value);
    }
    for (const auto& [name, value] : echo_forms(st.token)) {
      if (name == "hex-lower") {
        head.emplace_back("x-" + value, "name");  // a valid field name, all lowercase
      }
    }
    forms_body(st);
  } else if (st.path == "/coding") {
    head.emplace_back("content-encoding", st.token);
    st.chunks.push_back("coded\n");
  } else if (st.path == "/stall") {
    st.stall = true;
  } else {
    st.chunks.push_back("ok\n");
  }
  const auto nv = nvs(head);
  nghttp2_data_provider p{};
  p.source.ptr = &st;
  p.read_callback = read_body;
  (void)nghttp2_submit_response(c.s, id, nv.data(), nv.size(), &p);
}

int on_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  auto& st = static_cast<Conn*>(ud)->streams[f->hd.stream_id];
  const std::string n(reinterpret_cast<const char*>(name), namelen);
  const std::string v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":path") {
    st.path = v;
  } else if (n == "authorization") {
    st.auth = v;
  }
  return 0;
}

int on_frame(nghttp2_session*, const nghttp2_frame* f, void* ud) {
  if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
      (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    respond(*static_cast<Conn*>(ud), f->hd.stream_id);
  }
  return 0;
}

ssize_t on_send(nghttp2_session*, const uint8_t* data, size_t length, int, void* ud) {
  auto& c = *static_cast<Conn*>(ud);
  const int n = SSL_write(c.ssl, data, static_cast<int>(length));
  return n > 0 ? n : NGHTTP2_ERR_CALLBACK_FAILURE;
}

int select_h2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned int inlen, void*) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* o = nullptr;
  if (SSL_select_next_proto(&o, outlen, kH2, sizeof kH2, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

void serve(SSL_CTX* ctx, int fd) {
  Conn c;
  c.ssl = SSL_new(ctx);
  SSL_set_fd(c.ssl, fd);
  if (SSL_accept(c.ssl) != 1) {
    return;
  }
  nghttp2_session_callbacks* cb = nullptr;
  (void)nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_send_callback(cb, on_send);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
  (void)nghttp2_session_server_new(&c.s, cb, &c);
  nghttp2_session_callbacks_del(cb);
  (void)nghttp2_submit_settings(c.s, NGHTTP2_FLAG_NONE, nullptr, 0);
  uint8_t buf[16384];
  // Bounded by the peer: every turn reads; the proxy closes the connection when the box is done.
  while (nghttp2_session_want_read(c.s) != 0 || nghttp2_session_want_write(c.s) != 0) {
    if (nghttp2_session_send(c.s) != 0) {
      break;
    }
    const int n = SSL_read(c.ssl, buf, sizeof buf);
    if (n <= 0 || nghttp2_session_mem_recv(c.s, buf, static_cast<size_t>(n)) < 0) {
      break;
    }
  }
  nghttp2_session_del(c.s);
  SSL_free(c.ssl);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: h2_hostile_upstream DIR PORT\n");
    return 2;
  }
  g_dir = argv[1];
  ::signal(SIGCHLD, SIG_IGN);  // children reaped by the kernel
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(ctx, (g_dir + "/srv.pem").c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, (g_dir + "/srv.key").c_str(), SSL_FILETYPE_PEM) != 1) {
    std::fprintf(stderr, "h2_hostile_upstream: cannot load %s/srv.pem or srv.key\n", argv[1]);
    return 1;
  }
  SSL_CTX_set_alpn_select_cb(ctx, select_h2, nullptr);
  const int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  (void)::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 16) != 0) {
    std::perror("h2_hostile_upstream: bind");
    return 1;
  }
  std::ofstream(g_dir + "/ready").flush();
  for (;;) {
    const int fd = ::accept(ls, nullptr, nullptr);
    if (fd < 0) {
      continue;
    }
    if (::fork() == 0) {
      (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::close(ls);
      serve(ctx, fd);
      ::_exit(0);
    }
    ::close(fd);
  }
}
