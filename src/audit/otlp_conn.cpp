// One exporter connection to a collector, plain or TLS (otlp_conn.hpp). Every wait is a poll
// bounded by the Deadline, in slices of at most 100 ms, so a stop() also ends a wait that began
// before it: a collector that accepts TCP and never answers the ClientHello costs the worker one
// deadline, never the session's loop (which only ever copies lines into the queue).
#include "otlp_conn.hpp"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "agentbox/base/error.hpp"

namespace agentbox::audit::otlp {

using base::Error;
using base::Result;

Clock::time_point Deadline::at() const {
  Clock::rep c = cutoff != nullptr ? cutoff->load(std::memory_order_relaxed) : 0;
  return c == 0 ? own : std::min(own, Clock::time_point(Clock::duration(c)));
}

namespace {

constexpr std::chrono::milliseconds kSlice{100};

// Waits for `events` on fd until the deadline; false on timeout or error.
bool wait_fd(int fd, short events, const Deadline& deadline) {
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline.at() - Clock::now());
    if (left.count() <= 0) {
      return false;
    }
    struct pollfd p {
      fd, events, 0
    };
    int n = ::poll(&p, 1, static_cast<int>(std::min(left, kSlice).count()));
    if (n > 0) {
      return true;
    }
    if (n < 0 && errno != EINTR) {
      return false;
    }
  }
}

// The OpenSSL error queue as one line, emptied; `fallback` when it is empty.
std::string ssl_errors(std::string_view fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    if (out.empty()) {
      out = reason != nullptr ? reason : fmt::format("OpenSSL error {:#x}", e);
    }
  }
  return out.empty() ? std::string(fallback) : out;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

Result<base::UniqueFd> connect_to(const Endpoint& e, const Deadline& deadline) {
  struct addrinfo hints {};
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* res = nullptr;
  std::string port = std::to_string(e.port);
  if (int rc = ::getaddrinfo(e.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Error::msg(fmt::format("resolve `{}`: {}", e.host, ::gai_strerror(rc)));
  }
  Error last = Error::msg(fmt::format("no address for `{}`", e.host));
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    base::UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      last = Error::sys(errno, "socket");
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = Error::sys(errno, "connect", fmt::format("{}:{}", e.host, e.port));
      continue;
    }
    int err = ETIMEDOUT;
    socklen_t len = sizeof err;
    if (wait_fd(fd.get(), POLLOUT, deadline)) {
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (err == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    last = Error::sys(err, "connect", fmt::format("{}:{}", e.host, e.port));
  }
  ::freeaddrinfo(res);
  return last;
}

// After SSL_ERROR_WANT_READ/WRITE: waits for the socket; false on any other error or timeout.
bool wait_ssl(int fd, int ssl_error, const Deadline& deadline) {
  if (ssl_error == SSL_ERROR_WANT_READ) {
    return wait_fd(fd, POLLIN, deadline);
  }
  return ssl_error == SSL_ERROR_WANT_WRITE && wait_fd(fd, POLLOUT, deadline);
}

}  // namespace

Result<SslCtxPtr> make_tls_context(const std::string& ca_file) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    return Error::msg(fmt::format("make a TLS context: {}", ssl_errors("out of memory")));
  }
  if (ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
      return Error::msg(
          fmt::format("load the system trust store: {}", ssl_errors("no CA certificates")));
    }
  } else {
    if (::access(ca_file.c_str(), R_OK) != 0) {
      return Error::sys(errno, "read", ca_file);
    }
    if (SSL_CTX_load_verify_file(ctx.get(), ca_file.c_str()) != 1) {
      return Error::msg(fmt::format("load CA certificates from `{}`: {}", ca_file,
                                    ssl_errors("no certificate found")));
    }
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  // Partial writes: a slow collector's full socket buffer returns what was written, the rest is
  // retried from the same (moving) buffer. Record buffers are freed when empty.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
  // A collector that closes after its answer without close_notify is an end, not an error.
  SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  return ctx;
}

Result<Conn> Conn::open(const Endpoint& e, SSL_CTX* tls, const Deadline& deadline,
                        Failure& failure) {
  failure = Failure::kRetry;
  Conn c;
  AGENTBOX_ASSIGN_OR_RETURN(c.fd_, connect_to(e, deadline));
  if (tls != nullptr) {
    c.ssl_.reset(SSL_new(tls));
    AGENTBOX_TRY(c.handshake(e, deadline, failure));
  }
  return c;
}

base::Status Conn::handshake(const Endpoint& e, const Deadline& deadline, Failure& failure) {
  SSL* ssl = ssl_.get();
  ERR_clear_error();
  // OpenSSL's socket BIO writes with write(2), not send(MSG_NOSIGNAL): a collector that hangs up
  // raises SIGPIPE, which agentbox's main() catches with a no-op handler (cli/main.cpp), so the
  // write fails with EPIPE and the POST is retried or dropped.
  if (ssl == nullptr || SSL_set_fd(ssl, fd_.get()) != 1) {
    return Error::msg(fmt::format("set up TLS: {}", ssl_errors("out of memory")));
  }
  // SNI only for a name (RFC 6066: never an address); SSL_set1_host checks an IP literal
  // against the certificate's IP SANs, a name against its DNS SANs.
  // SSL_set_tlsext_host_name() is a macro with a C cast; this is the call it expands to.
  bool ip = is_ip_literal(e.host);
  if ((!ip && SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                       const_cast<char*>(e.host.c_str())) != 1) ||
      SSL_set1_host(ssl, e.host.c_str()) != 1) {
    return Error::msg(fmt::format("set the TLS name `{}`: {}", e.host, ssl_errors("invalid")));
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  SSL_set_connect_state(ssl);
  while (true) {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) {
      return base::ok();
    }
    int err = SSL_get_error(ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_ssl(fd_.get(), err, deadline)) {
        return Error::msg("the collector did not finish the TLS handshake in time");
      }
      continue;
    }
    if (long v = SSL_get_verify_result(ssl); v != X509_V_OK) {
      failure = Failure::kFinal;
      (void)ssl_errors("");
      return Error::msg(fmt::format("TLS: the certificate of {}:{} is refused: {}", e.host, e.port,
                                    X509_verify_cert_error_string(v)));
    }
    return Error::msg(fmt::format("TLS handshake with {}:{}: {}", e.host, e.port,
                                  ssl_errors("the collector closed the connection")));
  }
}

base::Status Conn::write_all(std::string_view data, const Deadline& deadline) {
  for (size_t off = 0; off < data.size();) {
    size_t n = 0;
    int wait = SSL_ERROR_WANT_WRITE;
    if (ssl_) {
      ERR_clear_error();
      int rc = SSL_write_ex(ssl_.get(), data.data() + off, data.size() - off, &n);
      wait = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), rc);
      if (wait != SSL_ERROR_NONE && wait != SSL_ERROR_WANT_READ && wait != SSL_ERROR_WANT_WRITE) {
        return Error::msg(fmt::format("TLS write: {}", ssl_errors("the connection broke")));
      }
    } else {
      ssize_t s = ::send(fd_.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (s < 0 && errno != EAGAIN && errno != EINTR) {
        return Error::sys(errno, "send");
      }
      n = s > 0 ? static_cast<size_t>(s) : 0;
      wait = s > 0 ? SSL_ERROR_NONE : SSL_ERROR_WANT_WRITE;
    }
    off += n;
    if (wait != SSL_ERROR_NONE && !wait_ssl(fd_.get(), wait, deadline)) {
      return Error::msg("the collector did not read the request in time");
    }
  }
  return base::ok();
}

Result<size_t> Conn::read_some(std::span<char> buf, const Deadline& deadline) {
  while (true) {
    int wait = SSL_ERROR_WANT_READ;
    if (ssl_) {
      size_t n = 0;
      ERR_clear_error();
      int rc = SSL_read_ex(ssl_.get(), buf.data(), buf.size(), &n);
      if (rc == 1) {
        return n;
      }
      wait = SSL_get_error(ssl_.get(), rc);
      if (wait == SSL_ERROR_ZERO_RETURN) {
        return size_t{0};
      }
      if (wait != SSL_ERROR_WANT_READ && wait != SSL_ERROR_WANT_WRITE) {
        return Error::msg(fmt::format("TLS read: {}", ssl_errors("the connection broke")));
      }
    } else {
      ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
      if (n >= 0) {
        return static_cast<size_t>(n);
      }
      if (errno != EAGAIN && errno != EINTR) {
        return Error::sys(errno, "recv");
      }
    }
    if (!wait_ssl(fd_.get(), wait, deadline)) {
      return Error::msg("the collector did not answer in time");
    }
  }
}

}  // namespace agentbox::audit::otlp
