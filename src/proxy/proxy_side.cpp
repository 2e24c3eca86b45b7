// One side of a proxied connection: non-blocking fd I/O, optional TLS, bounded buffers.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agentbox/base/sys.hpp"
#include "proxy_conn.hpp"

namespace agentbox::proxy {

namespace {
// Bytes per read(2): the socket's receive buffer rarely holds more at once.
constexpr size_t kReadChunk = size_t{64} * 1024;
}  // namespace

void Side::start_tls() {
  if (tls && !tls->handshake_done()) {
    if (tls->handshake() == TlsChannel::Status::kError) {
      error = tls->error();
    }
  }
}

void Side::adopt_tls(TlsChannel channel) {
  tls = std::move(channel);
  tls->input().append(rx.view());
  rx.clear();
  after_tls_input();
}

void Side::after_tls_input() {
  if (!tls->handshake_done()) {
    const auto st = tls->handshake();
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
  // Post-handshake messages (tickets, key updates, alerts) go to the output buffer as well.
  const auto st = tls->read_into(rx);
  // EOF without close_notify counts as EOF: the framing above decides if that truncated.
  if (st == TlsChannel::Status::kError && !fd_eof) {
    error = tls->error();
  } else if (st == TlsChannel::Status::kClosed || fd_eof) {
    eof = true;
  }
}

bool Side::fill(size_t budget) {
  if (!open() || connecting || fd_eof || failed()) {
    return false;
  }
  // Straight into the buffer the bytes are consumed from: rx, or the TLS channel's input.
  ByteBuffer& into = tls ? tls->input() : rx;
  size_t total = 0;
  bool changed = false;
  while (total < budget) {
    const auto space = into.prepare(std::min(kReadChunk, budget - total));
    const size_t want = std::min(space.size(), budget - total);
    const ssize_t n = base::retry_eintr([&] { return ::read(fd.get(), space.data(), want); });
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
    into.commit(static_cast<size_t>(n));
    bytes_in += static_cast<size_t>(n);
    total += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < want) {
      break;  // the socket is empty now: skip the read(2) that would say EAGAIN
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
  } else if (tls->write(plain) == TlsChannel::Status::kError) {
    error = tls->error();
  }
}

void Side::trim(size_t keep) {
  rx.shrink_if_empty(keep);
  tx.shrink_if_empty(keep);
  if (tls) {
    tls->input().shrink_if_empty(keep);
    tls->output().shrink_if_empty(keep);
  }
}

size_t Side::release() {
  size_t freed = rx.shrink_to_fit() + tx.shrink_to_fit();
  if (out.empty() && out.capacity() > std::string().capacity()) {
    freed += out.capacity();
    std::string().swap(out);
  }
  if (tls) {
    freed += tls->input().shrink_to_fit() + tls->output().shrink_to_fit();
    (void)tls->release_buffers();  // OpenSSL's own: not counted
  }
  return freed;
}

BufferUse Side::use() const {
  BufferUse u{.bytes = rx.size() + tx.size() + out.size(),
              .capacity = rx.capacity() + tx.capacity() +
                          (out.capacity() > std::string().capacity() ? out.capacity() : 0)};
  if (tls) {
    u.bytes += tls->input().size() + tls->output().size();
    u.capacity += tls->input().capacity() + tls->output().capacity();
  }
  return u;
}

void Side::discard_output() {
  tx.clear();
  out.clear();
  if (tls) {
    tls->output().clear();
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
  }
  if (want_shut && !notified && out.empty() && tls && tls->handshake_done()) {
    tls->close();  // close_notify, once; the peer may still send (TLS half-close)
    notified = true;
  }
  for (ByteBuffer* q : {&tx, tls ? &tls->output() : nullptr}) {
    while (q != nullptr && !q->empty()) {
      const ssize_t n = base::retry_eintr(
          [&] { return ::send(fd.get(), q->data(), q->size(), MSG_NOSIGNAL | MSG_DONTWAIT); });
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          return progress;
        }
        error = std::string("send: ") + std::strerror(errno);
        return true;
      }
      q->consume(static_cast<size_t>(n));
      bytes_out += static_cast<size_t>(n);
      progress = true;
    }
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
    connect_failed = true;
  }
}

}  // namespace agentbox::proxy
