// The HTTP/2 relay alone against the HTTP/1.1 exchange (issue 15: added latency per request on
// a reused connection, h2 <= +0.2 ms): both endpoints in this process, the same code direct and
// through the real ProxyHandler, so their own cost cancels out of "added" (timings are
// printed, never asserted).
//
//   bench_h2_proxy [ROUNDS] [REQUESTS] [split]   (defaults 20 and 400; `split`: the h2 server
//                                                writes HEADERS and DATA apart, as node does)
//   bench_h2_proxy relay DIR PORT CA             (the proxy alone for h2_bench.sh's PARTS=relay)
//
// The upstream is a TLS server (one thread per connection, blocking) that picks h2 when offered
// (an nghttp2 server session) and HTTP/1.1 otherwise, answering every GET with the
// Authorization it got, in a header and in the body (as the node upstream of h2_bench.sh: the
// proxy scrubs the real key out of both). The client (main thread, blocking) is an nghttp2
// client session or a minimal HTTP/1.1 one; it sends the placeholder's Authorization through
// the proxy (injection included). Every round opens one connection per (protocol, path), a few
// requests warm it, then REQUESTS requests per path are timed, the four paths taken in turn
// (the order rotating), so load on the shared machine hits all four alike. Printed per protocol
// (medians over rounds of each round's median, and of the per-request CPU of each thread over the
// timed requests):
//   direct / proxied   the time of one request (write, then the whole response read)
//   added              proxied - direct: what the relay adds, the endpoints' work cancelled
//   proxy CPU          the proxy thread's CPU per request (user + system)
//   client / server    the endpoints' CPU per request, direct / proxied
// Then that every proxied request reached the upstream with the real key, and that no response
// brought it back. Pinned to one CPU (`taskset -c 1 bench_h2_proxy`) every hand-over is a
// context switch on that CPU and the figures repeat; unpinned, on a shared 2-CPU machine, where
// each connection's threads happen to land makes the rounds bimodal (20 against 70 us).
#include <fmt/core.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <thread>

#include "proxy_thread.hpp"

namespace {

using namespace agentbox;
using namespace agentbox::proxy;
using namespace agentbox::proxy::testing;
using Clock = std::chrono::steady_clock;

constexpr const char* kHost = "api.bench.test";

enum class Proto { kH1, kH2 };

double thread_cpu_us(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// The server threads' CPU, summed (each adds its own after every response it wrote).
std::atomic<uint64_t> g_server_cpu_ns{0};
bool g_split = false;  // the h2 server writes each frame on its own (`split`)
// Requests the server received, and those that carried the real key (the proxy injected it).
std::atomic<uint64_t> g_requests{0};
std::atomic<uint64_t> g_injected{0};
constexpr std::string_view kRealKey = "Bearer sk-ant-api03-rrrr";

std::string echo_body(std::string_view auth) {
  return fmt::format("you sent: {}\n", auth.empty() ? "-" : auth);
}

// Responses the client got with the real key in them (through the proxy: none, it is scrubbed).
std::atomic<uint64_t> g_leaks{0};
void check_leak(std::string_view bytes) {
  if (bytes.find(kRealKey.substr(7)) != std::string_view::npos) {
    ++g_leaks;
  }
}

void note_key(std::string_view authorization) {
  if (authorization.substr(0, kRealKey.size()) == kRealKey) {
    ++g_injected;
  }
}

void add_server_cpu(double& last_us) {
  const double now = thread_cpu_us(CLOCK_THREAD_CPUTIME_ID);
  g_server_cpu_ns += static_cast<uint64_t>((now - last_us) * 1e3);
  last_us = now;
}

nghttp2_nv nv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// Writes every frame the session has, gathered into one SSL_write, or (`split`) one SSL_write
// per frame as node's http2 server answers (HEADERS, then DATA). False on an error.
bool flush(nghttp2_session* session, SSL* ssl, std::string& out, bool split = false) {
  out.clear();
  size_t w = 0;
  for (;;) {
    const uint8_t* p = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session, &p);
    if (n < 0) {
      return false;
    }
    if (n == 0) {
      break;
    }
    if (split && SSL_write_ex(ssl, p, static_cast<size_t>(n), &w) != 1) {
      return false;
    }
    out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  return split || out.empty() || SSL_write_ex(ssl, out.data(), out.size(), &w) == 1;
}

// Reads one TLS read's worth into the session. False on EOF or an error.
bool receive(nghttp2_session* session, SSL* ssl) {
  char buf[16384];
  size_t n = 0;
  if (SSL_read_ex(ssl, buf, sizeof buf, &n) != 1) {
    return false;
  }
  return nghttp2_session_mem_recv(session, reinterpret_cast<const uint8_t*>(buf), n) ==
         static_cast<ssize_t>(n);
}

// --- upstream -----------------------------------------------------------------------------------

class Server {
 public:
  explicit Server(const Leaf& leaf) {
    port_ = listen_loopback(fd_);
    ctx_.reset(SSL_CTX_new(TLS_server_method()));
    SSL_CTX_use_certificate(ctx_.get(), leaf.cert.get());
    SSL_CTX_use_PrivateKey(ctx_.get(), leaf.key.get());
    SSL_CTX_set_alpn_select_cb(
        ctx_.get(),
        [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
           unsigned int inlen, void*) {
          static const unsigned char kBoth[] = "\x02h2\x08http/1.1";
          unsigned char* sel = nullptr;
          if (SSL_select_next_proto(&sel, outlen, kBoth, 12, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
            return SSL_TLSEXT_ERR_NOACK;
          }
          *out = sel;
          return SSL_TLSEXT_ERR_OK;
        },
        nullptr);
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~Server() {
    shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
    for (auto& t : conns_) {
      t.join();
    }
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  [[nodiscard]] uint16_t port() const { return port_; }

 private:
  void accept_loop() {
    for (;;) {
      UniqueFd c(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) {
        return;
      }
      conns_.emplace_back([this, fd = c.release()] { serve(UniqueFd(fd)); });
    }
  }

  void serve(UniqueFd fd) {
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ossl::SslPtr ssl(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), fd.get());
    if (SSL_accept(ssl.get()) != 1) {
      return;
    }
    const unsigned char* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(ssl.get(), &p, &n);
    if (std::string_view(reinterpret_cast<const char*>(p), n) == "h2") {
      serve_h2(ssl.get());
    } else {
      serve_h1(fd.get(), ssl.get());
    }
  }

  static void serve_h1(int fd, SSL* ssl) {
    Stream s(fd, ssl);
    std::string buf;
    double last = thread_cpu_us(CLOCK_THREAD_CPUTIME_ID);
    for (;;) {
      const size_t end = s.read_until(buf, "\r\n\r\n");
      if (end == std::string::npos) {
        return;
      }
      ++g_requests;
      const std::string auth = header_of(buf.substr(0, end), "authorization");
      note_key(auth);
      buf.erase(0, end);
      const std::string body = echo_body(auth);
      if (!s.write(fmt::format("HTTP/1.1 200 OK\r\nx-echo: {}\r\ncontent-length: {}\r\n\r\n{}",
                               auth, body.size(), body))) {
        return;
      }
      add_server_cpu(last);
    }
  }

  // An h2 connection: each open stream's Authorization, then its response body.
  struct H2Conn {
    std::map<int32_t, std::string> auth, body;
  };

  static ssize_t body(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                      nghttp2_data_source* src, void*) {
    const auto& b = *static_cast<const std::string*>(src->ptr);
    const size_t n = std::min(length, b.size());  // a few dozen bytes: one frame
    std::memcpy(buf, b.data(), n);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == "authorization") {
      note_key(v);
      static_cast<H2Conn*>(ud)->auth[frame->hd.stream_id] = v;
    } else if (n == ":path") {
      ++g_requests;
    }
    return 0;
  }

  // The request ended: the answer echoes its Authorization in a header and in the body, as
  // the node upstream of h2_bench.sh does (through the proxy, both are scrubbed).
  static int on_frame(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
    if (frame->hd.type != NGHTTP2_HEADERS || (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    auto& c = *static_cast<H2Conn*>(ud);
    const int32_t id = frame->hd.stream_id;
    const std::string& auth = c.auth[id];
    std::string& b = c.body[id] = echo_body(auth);
    const std::string len = std::to_string(b.size());
    const nghttp2_nv head[] = {nv(":status", "200"), nv("x-echo", auth), nv("content-length", len)};
    nghttp2_data_provider data{};
    data.source.ptr = &b;
    data.read_callback = body;
    return nghttp2_submit_response(session, id, head, 3, &data) == 0 ? 0
                                                                     : NGHTTP2_ERR_CALLBACK_FAILURE;
  }

  static int on_close(nghttp2_session*, int32_t id, uint32_t, void* ud) {
    static_cast<H2Conn*>(ud)->auth.erase(id);
    static_cast<H2Conn*>(ud)->body.erase(id);
    return 0;
  }

  static void serve_h2(SSL* ssl) {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    H2Conn conn;
    nghttp2_session* session = nullptr;
    nghttp2_session_server_new(&session, cb, &conn);
    nghttp2_session_callbacks_del(cb);
    (void)nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
    std::string out;
    double last = thread_cpu_us(CLOCK_THREAD_CPUTIME_ID);
    while (flush(session, ssl, out, g_split)) {
      if (!out.empty()) {
        add_server_cpu(last);
      }
      if (!receive(session, ssl)) {
        break;
      }
    }
    nghttp2_session_del(session);
  }

  UniqueFd fd_;
  uint16_t port_ = 0;
  ossl::SslCtxPtr ctx_;
  std::thread thread_;
  std::vector<std::thread> conns_;
};

// --- client -------------------------------------------------------------------------------------

class Client {
 public:
  Client(Proto proto, uint16_t port, const std::string& ca_file, std::string auth)
      : proto_(proto), auth_(std::move(auth)) {
    fd_.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      return;
    }
    int one = 1;
    setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_load_verify_file(ctx_.get(), ca_file.c_str());
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    static const unsigned char kH2[] = "\x02h2";
    static const unsigned char kH1[] = "\x08http/1.1";
    if (proto == Proto::kH2) {
      SSL_CTX_set_alpn_protos(ctx_.get(), kH2, 3);
    } else {
      SSL_CTX_set_alpn_protos(ctx_.get(), kH1, 9);
    }
    ssl_.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl_.get(), fd_.get());
    SSL_ctrl(ssl_.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(kHost));
    SSL_set1_host(ssl_.get(), kHost);
    if (SSL_connect(ssl_.get()) != 1) {
      return;
    }
    const unsigned char* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(ssl_.get(), &p, &n);
    const std::string_view picked(reinterpret_cast<const char*>(p), n);
    ok_ = picked == (proto == Proto::kH2 ? "h2" : "http/1.1");
    if (ok_ && proto == Proto::kH2) {
      ok_ = start_h2();
    }
  }
  ~Client() {
    nghttp2_session_del(h2_);
    if (ssl_) {
      SSL_shutdown(ssl_.get());
    }
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  [[nodiscard]] bool ok() const { return ok_; }
  bool get() { return proto_ == Proto::kH2 ? get_h2() : get_h1(); }

 private:
  bool get_h1() {
    Stream s(fd_.get(), ssl_.get());
    if (!s.write(std::string("GET /x HTTP/1.1\r\nHost: ") + kHost + "\r\n" + auth_ + "\r\n")) {
      return false;
    }
    const size_t end = s.read_until(buf_, "\r\n\r\n");
    if (end == std::string::npos) {
      return false;
    }
    const size_t len = std::stoul(header_of(buf_.substr(0, end), "content-length"));
    if (!s.read_exact(buf_, end + len)) {
      return false;
    }
    check_leak(std::string_view(buf_).substr(0, end + len));
    buf_.erase(0, end + len);
    return true;
  }

  static int on_close(nghttp2_session*, int32_t, uint32_t code, void* ud) {
    static_cast<Client*>(ud)->closed_ = code == NGHTTP2_NO_ERROR ? 1 : -1;
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t,
                       const uint8_t* value, size_t valuelen, uint8_t, void*) {
    check_leak(std::string_view(reinterpret_cast<const char*>(value), valuelen));
    return 0;
  }
  static int on_data(nghttp2_session*, uint8_t, int32_t, const uint8_t* data, size_t len, void*) {
    check_leak(std::string_view(reinterpret_cast<const char*>(data), len));
    return 0;
  }

  bool start_h2() {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_client_new(&h2_, cb, this);
    nghttp2_session_callbacks_del(cb);
    return nghttp2_submit_settings(h2_, NGHTTP2_FLAG_NONE, nullptr, 0) == 0;
  }

  bool get_h2() {
    // The placeholder's value, as the Authorization header (auth_ is "NAME: VALUE\r\n").
    const size_t colon = auth_.find(": ");
    const std::string value =
        colon == std::string::npos ? "" : auth_.substr(colon + 2, auth_.size() - colon - 4);
    std::vector<nghttp2_nv> head = {nv(":method", "GET"), nv(":scheme", "https"),
                                    nv(":authority", kHost), nv(":path", "/x")};
    if (!value.empty()) {
      head.push_back(nv("authorization", value));
    }
    closed_ = 0;
    if (nghttp2_submit_request(h2_, nullptr, head.data(), head.size(), nullptr, nullptr) < 0 ||
        !flush(h2_, ssl_.get(), out_)) {
      return false;
    }
    while (closed_ == 0) {
      if (!receive(h2_, ssl_.get())) {
        return false;
      }
    }
    // What the response asks back (SETTINGS ack, window updates) goes now, as curl's would.
    return closed_ == 1 && flush(h2_, ssl_.get(), out_);
  }

  Proto proto_;
  std::string auth_;
  UniqueFd fd_;
  ossl::SslCtxPtr ctx_;
  ossl::SslPtr ssl_;
  bool ok_ = false;
  std::string buf_;
  std::string out_;
  nghttp2_session* h2_ = nullptr;
  int closed_ = 0;
};

// --- measurement --------------------------------------------------------------------------------

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// One of the four paths (protocol x direct/proxied): per round, the median of its requests'
// times and of each thread's CPU per request.
struct Path {
  Proto proto;
  uint16_t port;
  std::string ca;
  std::string auth;
  std::vector<double> ms, proxy_us, client_us, server_us;  // one per round
};

struct Sample {
  std::vector<double> ms, proxy_us, client_us, server_us;
};

// One request on `c`, its time and each thread's CPU (one request in flight at a time, so the
// proxy's and the server's CPU clocks count only its work).
void timed(Client& c, clockid_t proxy_clock, Sample& out) {
  const double p0 = thread_cpu_us(proxy_clock);
  const double c0 = thread_cpu_us(CLOCK_THREAD_CPUTIME_ID);
  const uint64_t s0 = g_server_cpu_ns;
  const auto t0 = Clock::now();
  if (!c.get()) {
    std::fprintf(stderr, "request failed\n");
    std::exit(1);
  }
  out.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  out.client_us.push_back(thread_cpu_us(CLOCK_THREAD_CPUTIME_ID) - c0);
  out.proxy_us.push_back(thread_cpu_us(proxy_clock) - p0);
  out.server_us.push_back(static_cast<double>(g_server_cpu_ns - s0) / 1e3);
}

// A round: a new connection per path, a few warm-up requests, then `n` requests per path taken
// in turn (the order rotating), so that load on the machine hits the four paths alike.
void round(std::vector<Path>& paths, int n, clockid_t proxy_clock) {
  std::vector<std::unique_ptr<Client>> clients;
  for (auto& p : paths) {
    clients.push_back(std::make_unique<Client>(p.proto, p.port, p.ca, p.auth));
    for (int i = 0; i < 5; ++i) {
      if (!clients.back()->ok() || !clients.back()->get()) {
        std::fprintf(stderr, "request failed (%s, port %u)\n",
                     p.proto == Proto::kH2 ? "h2" : "http/1.1", p.port);
        std::exit(1);
      }
    }
  }
  std::vector<Sample> samples(paths.size());
  for (int i = 0; i < n; ++i) {
    for (size_t k = 0; k < paths.size(); ++k) {
      const size_t j = (k + static_cast<size_t>(i)) % paths.size();
      timed(*clients[j], proxy_clock, samples[j]);
    }
  }
  for (size_t j = 0; j < paths.size(); ++j) {
    paths[j].ms.push_back(median(samples[j].ms));
    paths[j].proxy_us.push_back(median(samples[j].proxy_us));
    paths[j].client_us.push_back(median(samples[j].client_us));
    paths[j].server_us.push_back(median(samples[j].server_us));
  }
}

void report(const char* name, Path& direct, Path& proxied) {
  const double d = median(direct.ms);
  const double p = median(proxied.ms);
  std::printf("%-9s %9.3f %9.3f %+9.3f %10.1f %10.1f/%-6.1f %10.1f/%-6.1f\n", name, d, p, p - d,
              median(proxied.proxy_us), median(direct.client_us), median(proxied.client_us),
              median(direct.server_us), median(proxied.server_us));
}

// `bench_h2_proxy relay DIR PORT CA`: the same ProxyHandler in front of an outside upstream
// (h2_bench.sh's node on loopback PORT, trusted through CA) for clients outside any box (curl
// on the host): the relay with the real endpoints and without the box's translator. Writes
// DIR/relay-ca.pem (the session CA), DIR/relay-key (the placeholder) and DIR/relay-port (last),
// and serves until stdin closes.
int relay(const std::string& dir, uint16_t port, const std::string& ca_file) {
  audit::MemorySink audit;
  auto creds = bench_credential(kHost, "key", "Authorization");
  const ProxyOptions options = bench_options(kHost, port, ca_file);
  auto session_ca = SessionCa::create({.hosts = {kHost}});
  if (!creds || !session_ca) {
    std::fprintf(stderr, "bench_h2_proxy relay: cannot set up\n");
    return 1;
  }
  policy::EgressPolicy policy;
  ProxyThread proxy(policy, options, &*creds, &*session_ca, audit, kHost);
  auto put = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name + ".tmp") << text;
    return std::rename((dir + "/" + name + ".tmp").c_str(), (dir + "/" + name).c_str()) == 0;
  };
  if (!put("relay-ca.pem", session_ca->pem()) || !put("relay-key", *creds->placeholder("key")) ||
      !put("relay-port", std::to_string(proxy.port()))) {
    return 1;
  }
  serve_until_stdin_closes();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 5 && std::string_view(argv[1]) == "relay") {
    return relay(argv[2], static_cast<uint16_t>(std::atoi(argv[3])), argv[4]);
  }
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const int requests = argc > 2 ? std::max(1, std::atoi(argv[2])) : 400;
  g_split = argc > 3 && std::string_view(argv[3]) == "split";

  auto up_ca = SessionCa::create({.hosts = {kHost}, .common_name = "bench upstream CA"});
  const std::string up_ca_file = temp_file(up_ca->pem());
  Server server(**up_ca->leaf_for(kHost));

  audit::MemorySink audit;
  auto creds = bench_credential(kHost, "key", "Authorization");
  const std::string auth = "Authorization: Bearer " + *creds->placeholder("key") + "\r\n";
  ProxyOptions options = bench_options(kHost, server.port(), up_ca_file);
  auto session_ca = SessionCa::create({.hosts = {kHost}});
  const std::string session_ca_file = temp_file(session_ca->pem());
  policy::EgressPolicy policy;
  ProxyThread proxy(policy, options, &*creds, &*session_ca, audit, kHost);
  clockid_t proxy_clock{};
  if (pthread_getcpuclockid(proxy.thread(), &proxy_clock) != 0) {
    return 1;
  }

  // direct http/1.1, proxied http/1.1, direct h2, proxied h2
  std::vector<Path> paths = {{Proto::kH1, server.port(), up_ca_file, ""},
                             {Proto::kH1, proxy.port(), session_ca_file, auth},
                             {Proto::kH2, server.port(), up_ca_file, ""},
                             {Proto::kH2, proxy.port(), session_ca_file, auth}};
  for (int r = 0; r < rounds; ++r) {
    round(paths, requests, proxy_clock);
  }
  double load[3] = {0, 0, 0};
  if (FILE* f = std::fopen("/proc/loadavg", "re"); f != nullptr) {
    if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) {
      load[0] = 0;
    }
    std::fclose(f);
  }
  std::printf("reused connection, %d rounds x %d requests%s (load %.2f %.2f %.2f)\n", rounds,
              requests, g_split ? ", h2 answers in two writes" : "", load[0], load[1], load[2]);
  std::printf("%-9s %9s %9s %9s %10s %17s %17s\n", "protocol", "direct ms", "proxy ms", "added",
              "proxy us", "client us d/p", "server us d/p");
  report("http/1.1", paths[0], paths[1]);
  report("h2", paths[2], paths[3]);
  std::printf(
      "h2 - http/1.1: added %+.3f ms, proxy thread CPU %+.1f us per request\n",
      (median(paths[3].ms) - median(paths[2].ms)) - (median(paths[1].ms) - median(paths[0].ms)),
      median(paths[3].proxy_us) - median(paths[1].proxy_us));
  // Every proxied request reached the upstream with the real key in place of the placeholder.
  const auto proxied_n = static_cast<uint64_t>(rounds) * 2 * static_cast<uint64_t>(requests + 5);
  std::printf(
      "the upstream saw %llu requests, %llu with the real key (proxied: %llu); responses with "
      "the real key: %llu (the proxy scrubs its echo)\n",
      static_cast<unsigned long long>(g_requests.load()),
      static_cast<unsigned long long>(g_injected.load()),
      static_cast<unsigned long long>(proxied_n), static_cast<unsigned long long>(g_leaks.load()));
  proxy.stop();
  unlink(up_ca_file.c_str());
  unlink(session_ca_file.c_str());
  return 0;
}
