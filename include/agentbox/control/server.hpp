// The control socket of one session, served on the supervisor's event loop.
//
// Theory of operation:
//   listen()   binds a unix stream socket at `path` (mode 0600 from a 0177 umask around bind; a
//              stale socket of a dead session is replaced, a live one is an error), non-blocking,
//              watched on the loop.
//   accept     each client is checked before it may say anything: SO_PEERCRED must name our own
//              effective uid (no exception for root: see docs/CONTROL.md), and the peer must
//              live in our pid namespace (a process of a box maps to our uid in its user
//              namespace; the box cannot reach the socket anyway, this is the second wall). A
//              refused client gets one error line and is closed; on_refused() is told.
//   requests   one JSON line at a time (protocol.hpp), dispatched to the handler registered for
//              its verb, answered with one line. Handlers run on the loop thread, so they may
//              change what the data path reads without locks.
// At most kMaxClients clients at once; the rest are refused. Nothing here runs unless a client
// connects: the data path does not know the server exists.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/control/protocol.hpp"
#include "agentbox/event/loop.hpp"

namespace agentbox::control {

inline constexpr size_t kMaxClients = 16;

// Who sent a request (SO_PEERCRED), for the audit line of every change.
struct Peer {
  uid_t uid = 0;
  pid_t pid = 0;
};

using Handler = std::function<base::Result<nlohmann::json>(const Request&, const Peer&)>;

class Server {
 public:
  [[nodiscard]] static base::Result<std::unique_ptr<Server>> listen(event::Loop& loop,
                                                                    std::string path);
  ~Server();  // stops watching, closes every client, removes the socket
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void on(const std::string& verb, Handler handler) { handlers_[verb] = std::move(handler); }
  // Called for each client refused (wrong uid, another pid namespace, too many clients).
  void on_refused(std::function<void(const Peer&, const std::string& why)> f) {
    on_refused_ = std::move(f);
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  struct Client;
  Server(event::Loop& loop, std::string path, base::UniqueFd fd);
  // Past the handlers (answer() catches what they throw) only std::bad_alloc can leave these;
  // std::terminate is then the loud end.
  // NOLINTNEXTLINE(bugprone-exception-escape)
  void accept_one() noexcept;
  void refuse(base::UniqueFd fd, const Peer& peer, const std::string& why) noexcept;
  // NOLINTNEXTLINE(bugprone-exception-escape)
  void readable(Client& c) noexcept;
  // NOLINTNEXTLINE(bugprone-exception-escape)
  std::string answer(std::string_view line, const Peer& peer) noexcept;
  void drop(int fd) noexcept;

  event::Loop& loop_;
  std::string path_;
  base::UniqueFd fd_;
  event::WatchId watch_ = 0;
  std::map<std::string, Handler> handlers_;
  std::map<int, std::unique_ptr<Client>> clients_;
  std::function<void(const Peer&, const std::string&)> on_refused_;
};

// Checks a connected peer: our effective uid, our pid namespace. An error says why not.
[[nodiscard]] base::Status check_peer(const Peer& peer);
// SO_PEERCRED of a connected unix socket.
[[nodiscard]] base::Result<Peer> peer_of(int fd);

}  // namespace agentbox::control
