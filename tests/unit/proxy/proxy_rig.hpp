// Rig for the ProxyHandler tests and benchmark (no gtest here): real loopback upstream servers
// (TLS with their own test CA, or plain), a loopback acceptor that hands accepted sockets to
// ProxyHandler::serve so that real clients (curl, python, an in-process OpenSSL client) can be
// the box, and a loop pump.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../event/pump.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/cred/placeholder.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/proxy/proxy_handler.hpp"
#include "agentbox/proxy/tls_ca.hpp"

namespace agentbox::proxy::testing {

using base::UniqueFd;
using namespace std::chrono_literals;

inline std::string temp_file(const std::string& content) {
  char path[] = "/tmp/agentbox-proxy-XXXXXX";
  const int fd = mkstemp(path);
  if (fd >= 0) {
    close(fd);
  }
  std::ofstream(path) << content;
  return path;
}

inline std::string sha256_hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : md) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// Deterministic bytes for large transfers: a pseudo-random table with a prime period, copied
// (cheap, so that the servers measure the proxy and not the pattern).
inline void pattern(std::string& out, uint64_t offset, size_t n) {
  constexpr size_t kPeriod = 65521;
  static const std::string table = [] {
    std::string t(kPeriod, '\0');
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (auto& ch : t) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      ch = static_cast<char>(x >> 24);
    }
    return t;
  }();
  out.resize(n);
  size_t done = 0;
  while (done < n) {
    const size_t at = static_cast<size_t>((offset + done) % kPeriod);
    const size_t k = std::min(n - done, kPeriod - at);
    std::memcpy(out.data() + done, table.data() + at, k);
    done += k;
  }
}

inline uint16_t listen_loopback(UniqueFd& fd) {
  fd.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  (void)bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  (void)listen(fd.get(), 64);
  socklen_t len = sizeof a;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A blocking byte stream over a socket, optionally TLS.
class Stream {
 public:
  Stream(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  ssize_t read(char* buf, size_t n) {
    if (ssl_ != nullptr) {
      size_t got = 0;
      return SSL_read_ex(ssl_, buf, n, &got) == 1 ? static_cast<ssize_t>(got) : 0;
    }
    return ::read(fd_, buf, n);
  }
  bool write(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = 0;
      if (ssl_ != nullptr) {
        size_t w = 0;
        n = SSL_write_ex(ssl_, s.data(), s.size(), &w) == 1 ? static_cast<ssize_t>(w) : -1;
      } else {
        n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      }
      if (n <= 0) {
        return false;
      }
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Reads until `delim` is in buf (returns its end offset) or EOF (npos).
  size_t read_until(std::string& buf, std::string_view delim, size_t cap = 1 << 20) {
    for (;;) {
      if (auto p = buf.find(delim); p != std::string::npos) {
        return p + delim.size();
      }
      if (buf.size() > cap) {
        return std::string::npos;
      }
      char tmp[16384];
      const ssize_t n = read(tmp, sizeof tmp);
      if (n <= 0) {
        return std::string::npos;
      }
      buf.append(tmp, static_cast<size_t>(n));
    }
  }
  bool read_exact(std::string& buf, size_t n) {
    while (buf.size() < n) {
      char tmp[65536];
      const ssize_t r = read(tmp, std::min(sizeof tmp, n - buf.size()));
      if (r <= 0) {
        return false;
      }
      buf.append(tmp, static_cast<size_t>(r));
    }
    return true;
  }

 private:
  int fd_;
  SSL* ssl_;
};

struct SeenRequest {
  std::string head;  // as received, CRLF lines
  std::string body;  // first 64 KiB
  uint64_t body_len = 0;
  std::string body_sha;
};

inline std::string header_of(const std::string& head, std::string name) {
  for (auto& ch : name) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos + 2 < head.size()) {
    const size_t end = head.find("\r\n", pos + 2);
    std::string line = head.substr(pos + 2, end - pos - 2);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string n = line.substr(0, colon);
      for (auto& ch : n) {
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      }
      if (n == name) {
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') {
          ++v;
        }
        return line.substr(v);
      }
    }
    pos = end;
  }
  return {};
}

// A loopback HTTP/1.1 server, TLS (leaf from a test CA) or plain, one thread per connection.
// Routes: /echo (head + body back, Content-Length), /echo-chunked (same, chunked in two pieces
// split in the middle), /split/K and /split-chunked/K (the head echoed in two writes, cut K bytes
// into the Authorization value), /sse (one event, waits for sse_gate, a second event), /big/N (N
// pattern bytes), /upload (sha256 and length of the body), /ws (101 then a WebSocket echo), /close
// (answers with Connection: close), anything else "ok\n". The raw mode ("banner") speaks first
// and echoes lines, like an SSH server would start.
class Upstream {
 public:
  enum class Kind { kTls, kPlain, kBanner };
  Upstream(Kind kind, std::shared_ptr<const Leaf> leaf = nullptr) : kind_(kind) {
    port_ = listen_loopback(fd_);
    if (kind == Kind::kTls) {
      ctx_.reset(SSL_CTX_new(TLS_server_method()));
      SSL_CTX_use_certificate(ctx_.get(), leaf->cert.get());
      SSL_CTX_use_PrivateKey(ctx_.get(), leaf->key.get());
      SSL_CTX_set_alpn_select_cb(
          ctx_.get(),
          [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
             unsigned int inlen, void*) {
            unsigned char* sel = nullptr;
            static const unsigned char kH1[] = "\x08http/1.1";
            if (SSL_select_next_proto(&sel, outlen, kH1, 9, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
              *out = sel;
              return SSL_TLSEXT_ERR_OK;
            }
            return SSL_TLSEXT_ERR_NOACK;
          },
          nullptr);
    }
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~Upstream() {
    stop_ = true;
    shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
    for (auto& t : conn_threads_) {
      t.join();
    }
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] int connections() const { return connections_; }
  // Connections this server has finished serving (the peer closed or went quiet).
  [[nodiscard]] int closed() const { return closed_; }
  [[nodiscard]] std::vector<SeenRequest> seen() {
    std::lock_guard lk(mu_);
    return seen_;
  }
  // The body of the request being read so far (first 64 KiB), before the request is complete.
  [[nodiscard]] std::string partial_body() {
    std::lock_guard lk(mu_);
    return partial_body_;
  }
  [[nodiscard]] std::string last_alpn() {
    std::lock_guard lk(mu_);
    return alpn_;
  }
  void open_sse_gate() {
    std::lock_guard lk(mu_);
    sse_gate_ = true;
    cv_.notify_all();
  }

 private:
  void accept_loop() {
    while (!stop_) {
      UniqueFd c(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) {
        return;
      }
      ++connections_;
      std::lock_guard lk(mu_);
      conn_threads_.emplace_back([this, fd = c.release()] {
        serve(UniqueFd(fd));
        ++closed_;
      });
    }
  }

  void serve(UniqueFd fd) {
    timeval tv{.tv_sec = 20, .tv_usec = 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ossl::SslPtr ssl;
    if (kind_ == Kind::kTls) {
      ssl.reset(SSL_new(ctx_.get()));
      SSL_set_fd(ssl.get(), fd.get());
      if (SSL_accept(ssl.get()) != 1) {
        return;
      }
      const unsigned char* p = nullptr;
      unsigned n = 0;
      SSL_get0_alpn_selected(ssl.get(), &p, &n);
      std::lock_guard lk(mu_);
      alpn_.assign(reinterpret_cast<const char*>(p), n);
    }
    Stream s(fd.get(), ssl.get());
    if (kind_ == Kind::kBanner) {
      s.write("SSH-2.0-agentbox-test\r\n");
      std::string buf;
      while (s.read_until(buf, "\n") != std::string::npos) {
        const size_t e = buf.find('\n') + 1;
        s.write("echo: " + buf.substr(0, e));
        buf.erase(0, e);
      }
      return;
    }
    std::string buf;
    for (int i = 0; i < 1000000; ++i) {  // bounded; clients close long before
      if (!one_request(s, buf)) {
        break;
      }
    }
    if (ssl) {
      SSL_shutdown(ssl.get());
    }
  }

  bool read_body(Stream& s, std::string& buf, const std::string& head, SeenRequest& r) {
    const std::string cl = header_of(head, "content-length");
    const bool chunked = header_of(head, "transfer-encoding") == "chunked";
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
    auto take = [&](std::string_view d) {
      EVP_DigestUpdate(sha.get(), d.data(), d.size());
      r.body_len += d.size();
      if (r.body.size() < 65536) {
        r.body.append(d.substr(0, 65536 - r.body.size()));
        std::lock_guard lk(mu_);
        partial_body_ = r.body;
      }
    };
    if (chunked) {
      for (;;) {
        const size_t e = s.read_until(buf, "\r\n");
        if (e == std::string::npos) {
          return false;
        }
        const uint64_t n = std::stoull(buf.substr(0, e), nullptr, 16);
        buf.erase(0, e);
        if (n == 0) {
          if (s.read_until(buf, "\r\n") == std::string::npos) {
            return false;
          }
          buf.erase(0, 2);
          break;
        }
        if (!s.read_exact(buf, n + 2)) {
          return false;
        }
        take(std::string_view(buf).substr(0, n));
        buf.erase(0, n + 2);
      }
    } else if (!cl.empty()) {
      uint64_t left = std::stoull(cl);
      while (left > 0) {
        if (buf.empty()) {
          char tmp[65536];
          const ssize_t n = s.read(tmp, sizeof tmp);
          if (n <= 0) {
            return false;
          }
          buf.append(tmp, static_cast<size_t>(n));
        }
        const size_t n = std::min<uint64_t>(left, buf.size());
        take(std::string_view(buf).substr(0, n));
        buf.erase(0, n);
        left -= n;
      }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    EVP_DigestFinal_ex(sha.get(), md, &md_len);
    static const char* kHex = "0123456789abcdef";
    for (unsigned i = 0; i < md_len; ++i) {
      r.body_sha += kHex[md[i] >> 4];
      r.body_sha += kHex[md[i] & 15];
    }
    return true;
  }

  bool one_request(Stream& s, std::string& buf) {
    const size_t end = s.read_until(buf, "\r\n\r\n");
    if (end == std::string::npos) {
      return false;
    }
    SeenRequest r;
    r.head = buf.substr(0, end);
    buf.erase(0, end);
    if (header_of(r.head, "expect") == "100-continue") {
      s.write("HTTP/1.1 100 Continue\r\n\r\n");
    }
    if (!read_body(s, buf, r.head, r)) {
      return false;
    }
    {
      std::lock_guard lk(mu_);
      seen_.push_back(r);
    }
    const std::string line = r.head.substr(0, r.head.find("\r\n"));
    std::string path = line.substr(line.find(' ') + 1, line.rfind(' ') - line.find(' ') - 1);
    path = path.substr(0, path.find('?'));
    const bool close = header_of(r.head, "connection") == "close";
    const std::string conn = close ? "Connection: close\r\n" : "";
    if (path == "/echo") {
      const std::string body = r.head + r.body;
      s.write("HTTP/1.1 200 OK\r\nX-Echo-Auth: " + header_of(r.head, "authorization") +
              "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + conn + "\r\n" + body);
    } else if (path == "/echo-chunked") {
      const std::string body = r.head + r.body;
      const size_t half = body.size() / 2;
      auto chunk = [](std::string_view d) {
        char size[32];
        std::snprintf(size, sizeof size, "%zx\r\n", d.size());
        return std::string(size) + std::string(d) + "\r\n";
      };
      s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + conn + "\r\n");
      s.write(chunk(std::string_view(body).substr(0, half)));
      std::this_thread::sleep_for(20ms);
      s.write(chunk(std::string_view(body).substr(half)) + "0\r\n\r\n");
    } else if (path.rfind("/split/", 0) == 0 || path.rfind("/split-chunked/", 0) == 0 ||
               path.rfind("/split-slow/", 0) == 0) {
      // The echo of the request head, written in two pieces with a pause between them, cut K
      // bytes into the Authorization value (/split/K: Content-Length; /split-chunked/K: two
      // chunks; /split-slow/K: Content-Length with a pause longer than the proxy's scrub hold):
      // a secret echoed back arrives split across the proxy's reads.
      const bool chunked = path.rfind("/split-chunked/", 0) == 0;
      const bool slow = path.rfind("/split-slow/", 0) == 0;
      const std::string body = r.head + "\r\n";
      const size_t k = std::stoull(path.substr(path.rfind('/') + 1));
      const size_t auth = body.find(header_of(r.head, "authorization"));
      const size_t cut = std::min(body.size(), (auth == std::string::npos ? 0 : auth) + k);
      auto piece = [&](std::string_view d) {
        char size[32];
        std::snprintf(size, sizeof size, "%zx\r\n", d.size());
        return chunked ? std::string(size) + std::string(d) + "\r\n" : std::string(d);
      };
      s.write(chunked ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + conn + "\r\n"
                      : "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                            "\r\n" + conn + "\r\n");
      s.write(piece(std::string_view(body).substr(0, cut)));
      std::this_thread::sleep_for(slow ? 150ms : 3ms);
      s.write(piece(std::string_view(body).substr(cut)) + (chunked ? "0\r\n\r\n" : ""));
    } else if (path == "/sse") {
      s.write(
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: "
          "chunked\r\n\r\n");
      s.write("b\r\ndata: one\n\n\r\n");
      std::unique_lock lk(mu_);
      const bool opened = cv_.wait_for(lk, 10s, [this] { return sse_gate_; });
      lk.unlock();
      const std::string e2 = opened ? "data: two\n\n" : "data: gate\n\n";
      char size[16];
      std::snprintf(size, sizeof size, "%zx\r\n", e2.size());
      s.write(std::string(size) + e2 + "\r\n0\r\n\r\n");
    } else if (path == "/sse-g") {
      // Ends a chunk with "g", which could start the secret "ghp_...": the proxy holds it back
      // until more data comes or its short hold expires; the test waits without sending more.
      s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ndata: g\r\n");
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, 10s, [this] { return sse_gate_; });
      lk.unlock();
      s.write("2\r\n\n\n\r\n0\r\n\r\n");
    } else if (path.rfind("/big/", 0) == 0) {
      const uint64_t n = std::stoull(path.substr(5));
      s.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(n) + "\r\n" + conn + "\r\n");
      std::string piece;
      for (uint64_t off = 0; off < n; off += piece.size()) {
        pattern(piece, off, static_cast<size_t>(std::min<uint64_t>(256 * 1024, n - off)));
        if (!s.write(piece)) {
          return false;
        }
      }
    } else if (path == "/upload") {
      const std::string body = r.body_sha + " " + std::to_string(r.body_len) + "\n";
      s.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + conn +
              "\r\n" + body);
    } else if (path == "/ws") {
      return websocket(s, buf, r.head);
    } else {
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n" + conn + "\r\nok\n");
    }
    return !close;
  }

  static bool websocket(Stream& s, std::string& buf, const std::string& head) {
    const std::string key =
        header_of(head, "sec-websocket-key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(key.data()), key.size(), md);
    const std::string accept =
        cred::base64_encode(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
    s.write(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        accept + "\r\n\r\n");
    for (;;) {  // small frames only: 2-byte header, 7-bit length, masked
      if (!s.read_exact(buf, 2)) {
        return false;
      }
      const auto op = static_cast<uint8_t>(buf[0]) & 0x0f;
      const size_t len = static_cast<uint8_t>(buf[1]) & 0x7f;
      if (!s.read_exact(buf, 6 + len)) {
        return false;
      }
      std::string payload = buf.substr(6, len);
      for (size_t i = 0; i < len; ++i) {
        payload[i] = static_cast<char>(payload[i] ^ buf[2 + (i % 4)]);
      }
      buf.erase(0, 6 + len);
      std::string frame;
      frame += static_cast<char>(0x80 | op);
      frame += static_cast<char>(len);
      frame += payload;
      s.write(frame);
      if (op == 8) {
        return false;
      }
    }
  }

  Kind kind_;
  UniqueFd fd_;
  uint16_t port_ = 0;
  ossl::SslCtxPtr ctx_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> closed_{0};
  std::thread thread_;
  std::vector<std::thread> conn_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool sse_gate_ = false;
  std::string partial_body_;
  std::vector<SeenRequest> seen_;
  std::string alpn_;
};

// Pumps the event loop until `done` or the deadline (every test is bounded).
inline bool pump_until(event::Loop& loop, const std::function<bool()>& done,
                       std::chrono::milliseconds max = 20s) {
  return event::testing::pump_until(loop, done, max);
}

// Runs a shell command (bounded by timeout(1)); exit status and stdout+stderr.
inline std::pair<int, std::string> run_cmd(const std::string& cmd) {
  std::string out;
  FILE* p = popen(("timeout 30 " + cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    return {-1, ""};
  }
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

inline bool have_tool(const char* tool) {
  return run_cmd(std::string("sh -c 'command -v ") + tool + "'").first == 0;
}

// A loopback listener in the loop: every accepted connection becomes a box flow named `name`
// (as if the box had resolved `name` and connected to its synthetic address on `orig_port`).
class Acceptor {
 public:
  Acceptor(event::Loop& loop, ProxyHandler& handler, std::string name, uint16_t orig_port = 443)
      : loop_(loop), handler_(handler), name_(std::move(name)), orig_port_(orig_port) {
    port_ = listen_loopback(fd_);
    fcntl(fd_.get(), F_SETFL, O_NONBLOCK);
    watch_ = *loop_.watch_fd(fd_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
  }
  ~Acceptor() { loop_.unwatch(watch_); }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] int accepted() const { return accepted_; }

 private:
  void on_accept() {
    for (;;) {
      UniqueFd c(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!c) {
        return;
      }
      ++accepted_;
      int one = 1;
      setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      net::FlowInfo info{
          .id = next_flow_++ + 1000, .name = name_, .orig_port = orig_port_, .rule = "test"};
      (void)handler_.serve(info, std::move(c));
    }
  }
  event::Loop& loop_;
  ProxyHandler& handler_;
  std::string name_;
  uint16_t orig_port_;
  UniqueFd fd_;
  uint16_t port_ = 0;
  event::WatchId watch_ = 0;
  int accepted_ = 0;
  uint64_t next_flow_ = 0;
};

}  // namespace agentbox::proxy::testing
