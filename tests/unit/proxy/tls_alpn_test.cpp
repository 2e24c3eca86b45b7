// ALPN through interception (docs/PROXY.md, "HTTP/2"): the upstream side offers what the box
// offered (offer_alpn), the box side answers h2 only when told the upstream picked it
// (answer_h2), otherwise http/1.1 or nothing. Real OpenSSL on both ends, in memory.
#include <gtest/gtest.h>
#include <unistd.h>

#include "agentbox/proxy/tls_session.hpp"
#include "proxy_test_util.hpp"

namespace agentbox::proxy::testing {
namespace {

struct Picked {
  std::string client;  // what the client sees selected
  std::string server;
};

// A session-CA leaf answers a client offering `offer` (wire format); `h2` is answer_h2's flag.
Picked handshake(std::string_view offer, bool h2) {
  auto ca = SessionCa::create({.hosts = {"*.example.test"}});
  EXPECT_TRUE(ca.has_value());
  const std::string ca_file = temp_file(ca->pem());
  auto sctx = make_box_ctx();
  auto cctx = make_upstream_ctx(ca_file, {});
  EXPECT_TRUE(sctx.has_value() && cctx.has_value());
  auto server = TlsChannel::accept(sctx->get(), **ca->leaf_for(kApi));
  auto client = TlsChannel::connect(cctx->get(), kApi);
  EXPECT_TRUE(server.has_value() && client.has_value());
  client->offer_alpn(offer);
  server->answer_h2(h2);
  for (int i = 0; i < 8 && !(client->handshake_done() && server->handshake_done()); ++i) {
    (void)client->handshake();
    server->input().append(client->output().view());
    client->output().clear();
    (void)server->handshake();
    client->input().append(server->output().view());
    server->output().clear();
  }
  EXPECT_TRUE(client->handshake_done() && server->handshake_done()) << client->error();
  unlink(ca_file.c_str());
  return {client->alpn(), server->alpn()};
}

constexpr std::string_view kBoth = "\x02h2\x08http/1.1";
constexpr std::string_view kH2Only = "\x02h2";
constexpr std::string_view kHttp11Only = "\x08http/1.1";

TEST(TlsAlpn, H2IsAnsweredOnlyWhenTheUpstreamPickedIt) {
  EXPECT_EQ(handshake(kBoth, true).client, "h2");
  EXPECT_EQ(handshake(kBoth, true).server, "h2");
  EXPECT_EQ(handshake(kH2Only, true).client, "h2");
}

TEST(TlsAlpn, OtherwiseHttp11OrNothing) {
  EXPECT_EQ(handshake(kBoth, false).client, "http/1.1");
  EXPECT_EQ(handshake(kH2Only, false).client, "");  // no ALPN: the client decides
  EXPECT_EQ(handshake(kHttp11Only, true).client, "http/1.1");
}

}  // namespace
}  // namespace agentbox::proxy::testing
