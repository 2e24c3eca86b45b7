// The control socket's server side (server.hpp).
#include "agentbox/control/server.hpp"

#include <fmt/core.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace agentbox::control {

using base::Error;
using base::Result;
using base::UniqueFd;

struct Server::Client {
  UniqueFd fd;
  Peer peer;
  event::WatchId watch = 0;
  std::string in;
};

namespace {

Result<sockaddr_un> address(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    return Error::msg(
        fmt::format("socket path `{}` is longer than {} bytes", path, sizeof sa.sun_path - 1));
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}

// True when a server answers at `sa` (a live session): its socket must not be replaced.
bool alive(const sockaddr_un& sa) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return fd && ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0;
}

// The pid namespace of `pid`, as (dev, inode) of /proc/PID/ns/pid.
Result<std::pair<dev_t, ino_t>> pid_ns(const std::string& pid) {
  std::string p = fmt::format("/proc/{}/ns/pid", pid);
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    return Error::sys(errno, "stat", p);
  }
  return std::pair{st.st_dev, st.st_ino};
}

void send_line(int fd, const std::string& line) {
  // Answers are small and the client reads them: a full buffer means a client that does not
  // read, which is dropped on its next request rather than blocking the loop.
  [[maybe_unused]] ssize_t n = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace

Result<Peer> peer_of(int fd) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Error::sys(errno, "getsockopt", "SO_PEERCRED");
  }
  return Peer{.uid = cred.uid, .pid = cred.pid};
}

base::Status check_peer(const Peer& peer) {
  if (peer.uid != ::geteuid()) {
    return Error::msg(fmt::format("uid {} is not the session's uid {}", peer.uid, ::geteuid()));
  }
  auto theirs = pid_ns(std::to_string(peer.pid));
  auto mine = pid_ns("self");
  if (!theirs || !mine) {
    return Error::msg(fmt::format("pid {}: its pid namespace cannot be checked", peer.pid));
  }
  if (*theirs != *mine) {
    return Error::msg(fmt::format("pid {} lives in another pid namespace (a box?)", peer.pid));
  }
  return {};
}

Result<std::unique_ptr<Server>> Server::listen(event::Loop& loop, std::string path) {
  AGENTBOX_ASSIGN_OR_RETURN(sockaddr_un sa, address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return Error::sys(errno, "socket", "AF_UNIX");
  }
  if (alive(sa)) {
    return Error::msg(fmt::format("another session already serves `{}`", path));
  }
  ::unlink(path.c_str());  // a dead session's socket
  mode_t old = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  int err = errno;
  ::umask(old);
  if (rc != 0) {
    return Error::sys(err, "bind", path);
  }
  if (::listen(fd.get(), 16) != 0) {
    int e = errno;
    ::unlink(path.c_str());
    return Error::sys(e, "listen", path);
  }
  std::unique_ptr<Server> s(new Server(loop, std::move(path), std::move(fd)));
  auto w = loop.watch_fd(s->fd_.get(), EPOLLIN, [p = s.get()](uint32_t) { p->accept_one(); });
  if (!w) {
    return std::move(w).error();
  }
  s->watch_ = *w;
  return s;
}

Server::Server(event::Loop& loop, std::string path, UniqueFd fd)
    : loop_(loop), path_(std::move(path)), fd_(std::move(fd)) {}

Server::~Server() {
  loop_.unwatch(watch_);
  for (auto& [fd, c] : clients_) {
    loop_.unwatch(c->watch);
  }
  clients_.clear();
  ::unlink(path_.c_str());
}

void Server::refuse(UniqueFd fd, const Peer& peer, const std::string& why) noexcept {
  send_line(fd.get(), encode_error(fmt::format("refused: {}", why)));
  if (on_refused_) {
    on_refused_(peer, why);
  }
}

void Server::accept_one() noexcept {  // NOLINT(bugprone-exception-escape): server.hpp
  UniqueFd fd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (!fd) {
    return;
  }
  auto peer = peer_of(fd.get());
  if (!peer) {
    refuse(std::move(fd), {}, peer.error().message());
    return;
  }
  if (auto ok = check_peer(*peer); !ok) {
    refuse(std::move(fd), *peer, ok.error().message());
    return;
  }
  if (clients_.size() >= kMaxClients) {
    refuse(std::move(fd), *peer, fmt::format("{} clients already connected", kMaxClients));
    return;
  }
  auto c = std::make_unique<Client>();
  c->peer = *peer;
  int raw = fd.get();
  c->fd = std::move(fd);
  auto w = loop_.watch_fd(raw, EPOLLIN | EPOLLRDHUP, [this, raw](uint32_t) {
    auto it = clients_.find(raw);
    if (it != clients_.end()) {
      readable(*it->second);
    }
  });
  if (!w) {
    return;
  }
  c->watch = *w;
  clients_.emplace(raw, std::move(c));
}

void Server::drop(int fd) noexcept {
  auto it = clients_.find(fd);
  if (it != clients_.end()) {
    loop_.unwatch(it->second->watch);
    clients_.erase(it);
  }
}

void Server::readable(Client& c) noexcept {  // NOLINT(bugprone-exception-escape): server.hpp
  char buf[4096];
  ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    return;
  }
  if (n <= 0) {
    drop(c.fd.get());
    return;
  }
  c.in.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = c.in.find('\n')) != std::string::npos) {
    std::string reply = answer(std::string_view(c.in).substr(0, nl), c.peer);
    c.in.erase(0, nl + 1);
    send_line(c.fd.get(), reply);
  }
  if (c.in.size() > kMaxLine) {
    send_line(c.fd.get(), encode_error(fmt::format("request longer than {} bytes", kMaxLine)));
    drop(c.fd.get());
  }
}

// NOLINTNEXTLINE(bugprone-exception-escape): server.hpp
std::string Server::answer(std::string_view line, const Peer& peer) noexcept {
  auto req = parse_request(line);
  if (!req) {
    return encode_error(fmt::format("bad request: {}", req.error().message()));
  }
  auto h = handlers_.find(req->verb);
  if (h == handlers_.end()) {
    return encode_error(fmt::format("unknown verb `{}`", req->verb));
  }
  // A handler that throws (a JSON type error, say) answers this request with why; it must not
  // take the supervisor, and the box with it, down.
  try {
    auto result = h->second(*req, peer);
    return result ? encode_ok(*result) : encode_error(result.error().message());
  } catch (const std::exception& e) {
    return encode_error(fmt::format("`{}` failed: {}", req->verb, e.what()));
  }
}

}  // namespace agentbox::control
