// One side of a proxied connection: non-blocking fd I/O, optional TLS, bounded buffers.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "agentbox/base/sys.hpp"
#include "proxy_conn.hpp"

namespace agentbox::proxy {

void Side::start_tls() {
  if (tls && !tls->handshake_done()) {
    if (tls->handshake() == TlsChannel::Status::kError) {
      error = tls->error();
    }
    tls->drain_into(tx);
  }
}

void Side::adopt_tls(TlsChannel channel) {
  tls = std::move(channel);
  const std::string pending = std::move(rx);
  rx.clear();
  tls->feed(std::as_bytes(std::span(pending.data(), pending.size())));
  after_tls_input();
}

void Side::after_tls_input() {
  if (!tls->handshake_done()) {
    const auto st = tls->handshake();
    tls->drain_into(tx);
    if (st == TlsChannel::Status::kError) {
      error = tls->error();
      return;
    }
    if (st == TlsChannel::Status::kWant) {
      if (fd_eof) {
        error = "connection closed during the TLS handshake";
      }
      return;
    }
  }
  const auto st = tls->read(rx);
  tls->drain_into(tx);  // post-handshake messages (tickets, key updates, alerts)
  if (st == TlsChannel::Status::kClosed) {
    eof = true;
  } else if (st == TlsChannel::Status::kError) {
    if (fd_eof) {
      eof = true;  // EOF without close_notify: the framing above decides if that truncated
    } else {
      error = tls->error();
    }
  } else if (fd_eof) {
    eof = true;
  }
}

bool Side::fill(size_t budget) {
  if (!open() || connecting || fd_eof || failed()) {
    return false;
  }
  // Not zeroed on purpose (read(2) fills what it reports); 64 KiB per call keeps syscalls few.
  thread_local std::array<std::byte, 65536> buf;
  size_t total = 0;
  bool changed = false;
  while (total < budget) {
    const size_t want = std::min(buf.size(), budget - total);
    const ssize_t n = base::retry_eintr([&] { return ::read(fd.get(), buf.data(), want); });
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        error = std::string("read: ") + std::strerror(errno);
        changed = true;
      }
      break;
    }
    changed = true;
    if (n == 0) {
      fd_eof = true;
      if (tls) {
        tls->feed_eof();
      } else {
        eof = true;
      }
      break;
    }
    bytes_in += static_cast<size_t>(n);
    total += static_cast<size_t>(n);
    if (tls) {
      tls->feed(std::span(buf).first(static_cast<size_t>(n)));
    } else {
      rx.append(reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(n));
    }
  }
  if (changed && tls && !failed()) {
    after_tls_input();
  }
  return changed;
}

void Side::send(std::string_view plain) {
  if (plain.empty() || !open()) {
    return;  // a closed side takes nothing: nothing may pile up for a peer that is gone
  }
  if (!tls) {
    tx.append(plain);
  } else if (!tls->handshake_done() || !out.empty()) {
    out.append(plain);
  } else {
    if (tls->write(plain) == TlsChannel::Status::kError) {
      error = tls->error();
    }
    tls->drain_into(tx);
  }
}

bool Side::flush() {
  if (!open() || connecting || failed()) {
    return false;
  }
  bool progress = false;
  if (tls && tls->handshake_done() && !out.empty()) {
    if (tls->write(out) == TlsChannel::Status::kError) {
      error = tls->error();
      return true;
    }
    out.clear();
    tls->drain_into(tx);
  }
  if (want_shut && !notified && out.empty() && tls && tls->handshake_done()) {
    tls->close();  // close_notify, once; the peer may still send (TLS half-close)
    tls->drain_into(tx);
    notified = true;
  }
  while (!tx.empty()) {
    const ssize_t n = base::retry_eintr(
        [&] { return ::send(fd.get(), tx.data(), tx.size(), MSG_NOSIGNAL | MSG_DONTWAIT); });
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return progress;
      }
      error = std::string("send: ") + std::strerror(errno);
      return true;
    }
    tx.erase(0, static_cast<size_t>(n));
    bytes_out += static_cast<size_t>(n);
    progress = true;
  }
  if (want_shut && !shut && out.empty()) {
    (void)::shutdown(fd.get(), SHUT_WR);
    shut = true;
    progress = true;
  }
  return progress;
}

void Side::finish_connect() {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
    err = errno;
  }
  if (err == EINPROGRESS || err == EALREADY) {
    return;
  }
  connecting = false;
  if (err != 0) {
    error = std::string("connect: ") + std::strerror(err);
  }
}

}  // namespace agentbox::proxy
