// Session CA: chain verification with name constraints, and a real TLS handshake over a socketpair.
#include "agentbox/proxy/tls_ca.hpp"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "agentbox/base/unique_fd.hpp"

namespace agentbox::proxy {
namespace {

// X509_verify_cert with a store holding only the CA, for `host` as a TLS server.
int verify(const SessionCa& ca, X509* leaf, const std::string& host, unsigned long flags = 0) {
  ossl::StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca.cert());
  ossl::StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set_flags(param, flags);
  const int ok = X509_verify_cert(ctx.get());
  return ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx.get());
}

SessionCa make_ca() {
  auto ca = SessionCa::create({.hosts = {"api.github.com", "*.githubusercontent.com"}});
  EXPECT_TRUE(ca.has_value()) << (ca ? "" : ca.error().message());
  return std::move(*ca);
}

// A supervisor's OpenSSL draws from Hash_DRBG over SHA-256 when prepare_openssl() ran before its
// first use; a second call (OpenSSL used by then) leaves the generator as it is. In a fresh process
// (this test binary again, this test alone): in this one other tests have used OpenSSL already.
TEST(PrepareOpenssl, HashDrbgWhenSetBeforeTheFirstUse) {
  if (std::getenv("AGENTBOX_TEST_FRESH_OPENSSL") != nullptr) {
    const bool taken = prepare_openssl();
    std::array<unsigned char, 16> b{};
    EVP_RAND_CTX* priv = RAND_get0_private(nullptr);
    EVP_RAND_CTX* pub = RAND_get0_public(nullptr);
    const std::string name = priv ? EVP_RAND_get0_name(EVP_RAND_CTX_get0_rand(priv)) : "";
    const std::string pub_name = pub ? EVP_RAND_get0_name(EVP_RAND_CTX_get0_rand(pub)) : "";
    const bool ok = taken && RAND_priv_bytes(b.data(), 16) == 1 && RAND_bytes(b.data(), 16) == 1 &&
                    name == "HASH-DRBG" && pub_name == "HASH-DRBG" && !prepare_openssl();
    std::fprintf(stderr, "taken %d private %s public %s\n", taken, name.c_str(), pub_name.c_str());
    std::fflush(stderr);
    ::_exit(ok ? 0 : 1);
  }
  std::string filter = "--gtest_filter=PrepareOpenssl.HashDrbgWhenSetBeforeTheFirstUse";
  char* argv[] = {const_cast<char*>("/proc/self/exe"), filter.data(), nullptr};
  std::vector<std::string> env_s = {"AGENTBOX_TEST_FRESH_OPENSSL=1"};
  std::vector<char*> envp = {env_s[0].data(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(SessionCa, RefusesEmptyOrBadNames) {
  EXPECT_FALSE(SessionCa::create({}).has_value());
  EXPECT_FALSE(SessionCa::create({.hosts = {"a,b.com"}}).has_value());
  EXPECT_FALSE(SessionCa::create({.hosts = {"*.a.com/x"}}).has_value());
}

TEST(SessionCa, CaCertificateShape) {
  auto ca = make_ca();
  X509* x = ca.cert();
  EXPECT_EQ(X509_check_ca(x), 1);
  EXPECT_EQ(X509_get_pathlen(x), 0);
  EXPECT_EQ(X509_check_issued(x, x), X509_V_OK) << "self-issued root";
  const int nc = X509_get_ext_by_NID(x, NID_name_constraints, -1);
  ASSERT_GE(nc, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(x, nc)), 1);
  ossl::BioPtr text(BIO_new(BIO_s_mem()));
  ASSERT_EQ(X509V3_EXT_print(text.get(), X509_get_ext(x, nc), 0, 0), 1);
  char* data = nullptr;
  const long n = BIO_ctrl(text.get(), BIO_CTRL_INFO, 0, &data);
  const std::string printed(data, static_cast<size_t>(n));
  EXPECT_NE(printed.find("DNS:api.github.com"), std::string::npos) << printed;
  EXPECT_NE(printed.find("DNS:githubusercontent.com"), std::string::npos) << printed;
  EXPECT_NE(printed.find("IP:0.0.0.0/0.0.0.0"), std::string::npos) << printed;
  EXPECT_NE(printed.find("IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0"), std::string::npos) << printed;
  EXPECT_EQ(X509_get_key_usage(x), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  // Validity: about now-1h .. now+24h.
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
  EXPECT_EQ(days * 86400 + secs, 25 * 3600);
  EVP_PKEY* pub = X509_get0_pubkey(x);
  EXPECT_EQ(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(pub), 256);
  const std::string pem = ca.pem();
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
  EXPECT_EQ(pem.find("PRIVATE"), std::string::npos);
}

TEST(SessionCa, LeafVerifiesForPermittedNames) {
  auto ca = make_ca();
  for (const std::string host :
       {"api.github.com", "raw.githubusercontent.com", "a.b.githubusercontent.com"}) {
    auto leaf = ca.leaf_for(host);
    ASSERT_TRUE(leaf.has_value()) << leaf.error().message();
    EXPECT_EQ(verify(ca, (*leaf)->cert.get(), host), X509_V_OK) << host;
    EXPECT_EQ(X509_check_issued(ca.cert(), (*leaf)->cert.get()), X509_V_OK);
    EXPECT_NE(X509_check_issued((*leaf)->cert.get(), (*leaf)->cert.get()), X509_V_OK)
        << "a leaf must not be its own issuer";
    EXPECT_TRUE(X509_get_extended_key_usage((*leaf)->cert.get()) & XKU_SSL_SERVER);
    EXPECT_EQ(X509_check_ca((*leaf)->cert.get()), 0);
    EXPECT_EQ(X509_check_host((*leaf)->cert.get(), host.c_str(), host.size(), 0, nullptr), 1);
    // The hostname check still applies: the leaf is not good for another name.
    EXPECT_NE(verify(ca, (*leaf)->cert.get(), "other.githubusercontent.com"), X509_V_OK);
  }
  // Cached: the same object comes back.
  EXPECT_EQ(ca.leaf_for("api.github.com")->get(), ca.leaf_for("api.github.com")->get());
  EXPECT_EQ(ca.cached_leaves(), 3u);
}

// The leaves' key is made by the first leaf (the CA's own key at create), then shared by all.
TEST(SessionCa, LeafKeyWaitsForTheFirstLeaf) {
  auto ca = make_ca();
  EXPECT_FALSE(ca.leaf_key_made());
  auto first = ca.leaf_for("api.github.com");
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_TRUE(ca.leaf_key_made());
  auto second = ca.leaf_for("raw.githubusercontent.com");
  ASSERT_TRUE(second.has_value()) << second.error().message();
  EXPECT_EQ((*first)->key.get(), (*second)->key.get());
  EXPECT_NE(EVP_PKEY_eq(X509_get0_pubkey(ca.cert()), (*first)->key.get()), 1)
      << "a leaf must not carry the CA's key";
  EXPECT_EQ(X509_check_private_key((*second)->cert.get(), (*second)->key.get()), 1);
}

TEST(SessionCa, RefusesNamesOutsideItsScope) {
  auto ca = make_ca();
  for (const std::string host : {"evil.example", "github.com", "githubusercontent.com",
                                 "xapi.github.com", "api.github.com.evil.example"}) {
    EXPECT_FALSE(ca.leaf_for(host).has_value()) << host;
  }
}

TEST(SessionCa, NameConstraintsBiteEvenWhenMintingIsForced) {
  auto ca = make_ca();
  auto evil = ca.mint_unchecked("evil.example");
  ASSERT_TRUE(evil.has_value());
  EXPECT_EQ(verify(ca, (*evil)->cert.get(), "evil.example"), X509_V_ERR_PERMITTED_VIOLATION);
  auto apex = ca.mint_unchecked("github.com");
  ASSERT_TRUE(apex.has_value());
  EXPECT_EQ(verify(ca, (*apex)->cert.get(), "github.com"), X509_V_ERR_PERMITTED_VIOLATION);
}

TEST(SessionCa, StrictVerificationAcceptsTheCaAndItsLeaves) {
  auto ca = make_ca();
  auto leaf = ca.leaf_for("api.github.com");
  ASSERT_TRUE(leaf.has_value());
  EXPECT_EQ(verify(ca, (*leaf)->cert.get(), "api.github.com", X509_V_FLAG_X509_STRICT), X509_V_OK);
  // What strict verifiers look for, each present (OpenSSL 3.0 exempts a root from the AKI check;
  // others do not).
  for (X509* x : {ca.cert(), (*leaf)->cert.get()}) {
    EXPECT_NE(X509_get0_subject_key_id(x), nullptr);
    EXPECT_NE(X509_get0_authority_key_id(x), nullptr);
    int crit = 0;
    std::unique_ptr<ASN1_BIT_STRING, ossl::Deleter<ASN1_BIT_STRING, ASN1_BIT_STRING_free>> usage(
        static_cast<ASN1_BIT_STRING*>(X509_get_ext_d2i(x, NID_key_usage, &crit, nullptr)));
    EXPECT_NE(usage, nullptr);
    EXPECT_EQ(crit, 1);
  }
}

// Drives both ends of a TLS handshake over non-blocking socketpair ends, bounded.
bool handshake(SSL* client, SSL* server) {
  bool c_done = false, s_done = false;
  for (int i = 0; i < 200 && !(c_done && s_done); ++i) {
    if (!c_done) {
      const int r = SSL_do_handshake(client);
      c_done = r == 1;
      if (r <= 0 && SSL_get_error(client, r) != SSL_ERROR_WANT_READ) {
        return false;
      }
    }
    if (!s_done) {
      const int r = SSL_do_handshake(server);
      s_done = r == 1;
      if (r <= 0 && SSL_get_error(server, r) != SSL_ERROR_WANT_READ) {
        return false;
      }
    }
  }
  return c_done && s_done;
}

struct Pair {
  ossl::SslCtxPtr sctx, cctx;
  ossl::SslPtr server, client;
  base::UniqueFd a, b;
};

Pair make_pair(SessionCa& ca, const std::shared_ptr<const Leaf>& leaf, const std::string& host) {
  Pair p;
  int sv[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  p.a.reset(sv[0]);
  p.b.reset(sv[1]);
  p.sctx.reset(SSL_CTX_new(TLS_server_method()));
  SSL_CTX_use_certificate(p.sctx.get(), leaf->cert.get());
  SSL_CTX_use_PrivateKey(p.sctx.get(), leaf->key.get());
  p.cctx.reset(SSL_CTX_new(TLS_client_method()));
  X509_STORE_add_cert(SSL_CTX_get_cert_store(p.cctx.get()), ca.cert());
  SSL_CTX_set_verify(p.cctx.get(), SSL_VERIFY_PEER, nullptr);
  p.server.reset(SSL_new(p.sctx.get()));
  p.client.reset(SSL_new(p.cctx.get()));
  SSL_set_fd(p.server.get(), p.a.get());
  SSL_set_fd(p.client.get(), p.b.get());
  SSL_set_accept_state(p.server.get());
  SSL_set_connect_state(p.client.get());
  SSL_set1_host(p.client.get(), host.c_str());
  return p;
}

TEST(SessionCa, RealHandshakeVerifiesWithTheCaAndHostname) {
  auto ca = make_ca();
  auto leaf = ca.leaf_for("api.github.com");
  ASSERT_TRUE(leaf.has_value());
  auto p = make_pair(ca, *leaf, "api.github.com");
  ASSERT_TRUE(handshake(p.client.get(), p.server.get())) << ossl::drain_errors();
  EXPECT_EQ(SSL_get_verify_result(p.client.get()), X509_V_OK);
  ASSERT_EQ(SSL_write(p.client.get(), "ping", 4), 4);
  char buf[8] = {};
  int n = -1;
  for (int i = 0; i < 10 && n <= 0; ++i) {
    n = SSL_read(p.server.get(), buf, sizeof buf);
  }
  EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max(n, 0))), "ping");
}

TEST(SessionCa, HandshakeFailsForAnotherName) {
  auto ca = make_ca();
  auto leaf = ca.leaf_for("api.github.com");
  ASSERT_TRUE(leaf.has_value());
  auto p = make_pair(ca, *leaf, "evil.example");
  EXPECT_FALSE(handshake(p.client.get(), p.server.get()));
  EXPECT_EQ(SSL_get_verify_result(p.client.get()), X509_V_ERR_HOSTNAME_MISMATCH);
  ERR_clear_error();
}

}  // namespace
}  // namespace agentbox::proxy
