// Heap memory of the TLS objects an intercepted flow keeps in the supervisor: the box-side
// channel (TlsChannel::accept with a session-CA leaf) and the upstream channel
// (TlsChannel::connect, verified), each after its handshake and one request and response, with
// the peers' objects freed. Counted with glibc's mallinfo2 (bytes in use), so the figures are
// the heap's own, without RSS noise. Usage: build/bench/proxy/bench_tls_memory [FLOWS [keep]].
#include <fmt/core.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "agentbox/proxy/tls_ca.hpp"
#include "agentbox/proxy/tls_session.hpp"

namespace {

using agentbox::proxy::ByteBuffer;
using agentbox::proxy::SessionCa;
using agentbox::proxy::TlsChannel;
namespace ossl = agentbox::proxy::ossl;

size_t heap_in_use() {
  return mallinfo2().uordblks;
}

void move_bytes(TlsChannel& from, TlsChannel& to) {
  to.input().append(from.output().view());
  from.output().clear();
}

// Handshake, one request and one response (the client's tickets read), in memory.
bool converse(TlsChannel& client, TlsChannel& server) {
  for (int i = 0; i < 16 && !(client.handshake_done() && server.handshake_done()); ++i) {
    (void)client.handshake();
    move_bytes(client, server);
    (void)server.handshake();
    move_bytes(server, client);
  }
  ByteBuffer plain;
  if (client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n") != TlsChannel::Status::kDone) {
    return false;
  }
  move_bytes(client, server);
  (void)server.read_into(plain);
  if (server.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") != TlsChannel::Status::kDone) {
    return false;
  }
  move_bytes(server, client);
  (void)client.read_into(plain);
  move_bytes(client, server);
  (void)server.read_into(plain);
  return client.handshake_done() && server.handshake_done() && !plain.empty();
}

struct Flow {
  std::optional<TlsChannel> box_client;  // the agent in the box (not in the supervisor)
  std::optional<TlsChannel> box_side;    // the proxy's box-side channel
  std::optional<TlsChannel> upstream;    // the proxy's upstream channel
  std::optional<TlsChannel> up_server;   // the upstream server (not in the supervisor)
};

std::string temp_pem(const std::string& pem) {
  char path[] = "/tmp/agentbox-tlsmem-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0 || write(fd, pem.data(), pem.size()) != static_cast<ssize_t>(pem.size())) {
    std::exit(1);
  }
  close(fd);
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::max(1, std::atoi(argv[1])) : 1000;
  // "keep": OpenSSL's record buffers are not freed (as before SSL_free_buffers in the sweep).
  const bool release = !(argc > 2 && std::string(argv[2]) == "keep");
  auto session_ca = SessionCa::create({.hosts = {"*.bench.example"}});
  auto upstream_ca = SessionCa::create({.hosts = {"*.bench.example"}, .common_name = "upstream"});
  if (!session_ca || !upstream_ca) {
    fmt::print(stderr, "bench: making the CAs failed\n");
    return 1;
  }
  const std::string host = "api.bench.example";
  const std::string ca_file = temp_pem(upstream_ca->pem());
  auto box_ctx = agentbox::proxy::make_box_ctx();
  auto up_ctx = agentbox::proxy::make_upstream_ctx(ca_file, {});
  // The upstream server: a default server context (it sends session tickets, as most do).
  ossl::SslCtxPtr server_ctx(SSL_CTX_new(TLS_server_method()));
  auto box_leaf = session_ca->leaf_for(host);
  auto up_leaf = upstream_ca->leaf_for(host);
  if (!box_ctx || !up_ctx || !server_ctx || !box_leaf || !up_leaf) {
    unlink(ca_file.c_str());
    fmt::print(stderr, "bench: making the contexts failed\n");
    return 1;
  }
  std::vector<Flow> flows(static_cast<size_t>(n));
  const auto per = [n](size_t a, size_t b) { return a > b ? (a - b) / static_cast<size_t>(n) : 0; };
  // Stages, each a heap delta over all flows: the proxy's channels made (SSL_new, the leaf
  // set), the peers made and every handshake with one request and response done (the peers'
  // heap counted too), the peers freed (the proxy's two channels as after their exchange),
  // OpenSSL's record buffers freed per side (the sweep's SSL_free_buffers), then each side.
  const size_t before = heap_in_use();
  for (auto& f : flows) {
    f.box_side.emplace(std::move(*TlsChannel::accept(box_ctx->get(), **box_leaf)));
  }
  const size_t box_new = heap_in_use();
  for (auto& f : flows) {
    f.upstream.emplace(std::move(*TlsChannel::connect(up_ctx->get(), host)));
  }
  const size_t up_new = heap_in_use();
  for (auto& f : flows) {
    f.box_client.emplace(std::move(*TlsChannel::connect(up_ctx->get(), host)));
    f.up_server.emplace(std::move(*TlsChannel::accept(server_ctx.get(), **up_leaf)));
    // The box's client trusts the session CA: it is verified against the upstream CA file
    // here, so its verification fails; it is not measured, only its peer is.
    SSL_set_verify(f.box_client->native(), SSL_VERIFY_NONE, nullptr);
    if (!converse(*f.box_client, *f.box_side) || !converse(*f.upstream, *f.up_server)) {
      fmt::print(stderr, "bench: a handshake failed: {} {}\n", f.box_side->error(),
                 f.upstream->error());
      return 1;
    }
  }
  for (auto& f : flows) {
    f.box_client.reset();
    f.up_server.reset();
    for (auto* ch : {&*f.box_side, &*f.upstream}) {
      ch->input().shrink_to_fit();
      ch->output().shrink_to_fit();
    }
  }
  const size_t talked = heap_in_use();
  // What the proxy's sweep does to an idle flow (Side::release), side by side.
  size_t released[2] = {talked, talked};
  for (int side = 0; side < 2 && release; ++side) {
    for (auto& f : flows) {
      if (!(side == 0 ? f.box_side : f.upstream)->release_buffers()) {
        fmt::print(stderr, "bench: OpenSSL kept its buffers\n");
      }
    }
    released[side] = heap_in_use();
  }
  const size_t both = heap_in_use();
  unlink(ca_file.c_str());  // not before: the upstream context reads it at its first verification
  if (getenv("TLSMEM_KEEP") != nullptr) {
    std::fflush(stdout);
    _exit(0);  // under heaptrack: what the flows hold is its "leaked" report
  }
  for (auto& f : flows) {
    f.box_side.reset();
  }
  const size_t upstream_only = heap_in_use();
  fmt::print(
      "{} flows, heap in use per flow (mallinfo2): box side {} B, upstream {} B, both {} B\n", n,
      per(both, upstream_only), per(upstream_only, before), per(both, before));
  fmt::print(
      "  made (SSL_new, BIO, leaf set): box side {} B, upstream {} B; after the exchange, "
      "record buffers kept: both {} B; SSL_free_buffers frees box side {} B, upstream {} B\n",
      per(box_new, before), per(up_new, box_new), per(talked, before), per(talked, released[0]),
      per(released[0], released[1]));
  return 0;
}
