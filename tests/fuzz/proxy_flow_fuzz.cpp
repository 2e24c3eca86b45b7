// Fuzz target: one whole proxied flow. The input is what the box sends, then
// "\n--upstream--\n", then what the upstream answers; the ProxyHandler runs on a real event loop
// with real sockets (plain HTTP: classification, request checks, body framing, response parsing,
// scrubbing, tunnels). "@PH@" in the box's part stands for the credential's placeholder, and the
// upstream may answer with the real secret (an echo endpoint). Invariants: nothing crashes, no
// internal error, the flow is always finished and freed within its deadlines, the real secret
// never reaches the box (responses are scrubbed), and never goes upstream (plain HTTP).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "agentbox/audit/audit.hpp"
#include "agentbox/proxy/proxy_handler.hpp"

namespace {

using namespace agentbox;
using namespace std::chrono_literals;

constexpr std::string_view kSecret = "sk-fuzzsecret0123456789";

struct World {
  std::optional<event::Loop> loop;
  audit::MemorySink audit;
  policy::EgressPolicy policy;
  std::optional<cred::CredentialSet> creds;
  std::unique_ptr<proxy::ProxyHandler> handler;
  base::UniqueFd listener;
  uint64_t flow = 0;

  World() {
    signal(SIGPIPE, SIG_IGN);
    loop.emplace(std::move(*event::Loop::create()));
    listener.reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    (void)listen(listener.get(), 16);
    socklen_t len = sizeof a;
    getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len);
    auto set = cred::CredentialSet::load(
        {{.name = "k",
          .env = "K",
          .from = policy::SourceSpec::env("K"),
          .hosts = {"fuzz.test"},
          .inject = agentbox::policy::InjectSpec::header("Authorization")}},
        cred::SecretSource(
            [](const std::string&) -> std::optional<std::string> { return std::string(kSecret); }),
        &audit);
    creds.emplace(std::move(*set));
    proxy::ProxyOptions o;
    o.connect_to.push_back(
        *net::parse_connect_to("fuzz.test:80:127.0.0.1:" + std::to_string(ntohs(a.sin_port))));
    o.http_rules = {{.origin = "fuzz", .host = "fuzz.test", .paths = {"/ok/**"}, .max_body = 4096}};
    o.first_bytes_timeout = 50ms;
    o.head_timeout = 50ms;
    o.idle_timeout = 200ms;
    o.sweep_interval = 10ms;
    o.scrub_hold = 5ms;
    o.buffer = 4096;
    handler = std::move(*proxy::ProxyHandler::create(*loop, policy, o, &*creds, nullptr, audit));
  }
};

// Reads what is there into `into`; the number of bytes read.
size_t drain(int fd, std::string& into) {
  char buf[4096];
  size_t total = 0;
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    into.append(buf, static_cast<size_t>(n));
    total += static_cast<size_t>(n);
  }
  return total;
}

void replace_all(std::string& s, std::string_view from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World w;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kSplit = "\n--upstream--\n";
  const size_t split = in.find(kSplit);
  std::string box(in.substr(0, split));
  static const std::string placeholder = *w.creds->placeholder("k");
  replace_all(box, "@PH@", placeholder);
  const bool box_had_secret = box.find(kSecret) != std::string::npos;
  const std::string up(split == std::string_view::npos ? std::string_view()
                                                       : in.substr(split + kSplit.size()));
  // Connections of earlier flows that ended before their upstream was accepted: drop them, so
  // the first accept below is this flow's own (the handler connects as the flow opens).
  for (int i = 0; i < 64; ++i) {
    base::UniqueFd stale(accept4(w.listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!stale) {
      break;
    }
  }
  auto r = w.handler->on_open({.id = ++w.flow, .name = "fuzz.test", .orig_port = 80});
  if (!r) {
    std::abort();
  }
  base::UniqueFd fd = std::move(r->fd);
  base::UniqueFd upstream;
  size_t up_sent = 0;
  size_t up_heard = 0;
  std::string box_got;  // everything the box received
  std::string up_got;   // everything the upstream received
  bool box_shut = false;
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (w.handler->connection_count() > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::abort();  // a flow outlived every deadline
    }
    if (!box.empty()) {
      const ssize_t n = ::send(fd.get(), box.data(), box.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        box.erase(0, static_cast<size_t>(n));
      } else if (n < 0 && errno != EAGAIN) {
        box.clear();
      }
    } else if (!box_shut) {
      (void)::shutdown(fd.get(), SHUT_WR);
      box_shut = true;
    }
    (void)drain(fd.get(), box_got);
    if (!upstream) {
      upstream.reset(accept4(w.listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    }
    if (upstream) {
      // An HTTP server answers a request: it speaks once the proxy has forwarded something.
      up_heard += drain(upstream.get(), up_got);
    }
    if (upstream && up_heard > 0) {
      if (up_sent < up.size()) {
        const ssize_t n = ::send(upstream.get(), up.data() + up_sent, up.size() - up_sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        up_sent += n > 0 ? static_cast<size_t>(n) : (n < 0 && errno != EAGAIN ? up.size() : 0);
      } else if (up_sent == up.size()) {
        (void)::shutdown(upstream.get(), SHUT_WR);
        ++up_sent;
      }
    }
    (void)w.loop->run_once(1ms);
  }
  (void)drain(fd.get(), box_got);
  if (upstream) {
    (void)drain(upstream.get(), up_got);
  }
  if (w.handler->counters().internal_errors != 0) {
    std::abort();
  }
  // (A box that sent the secret itself already had it: its echo proves nothing.)
  if (!box_had_secret && box_got.find(kSecret) != std::string::npos) {
    std::abort();  // the real secret reached the box
  }
  if (!box_had_secret && up_got.find(kSecret) != std::string::npos) {
    std::abort();  // the proxy put the secret on plain HTTP
  }
  return 0;
}
