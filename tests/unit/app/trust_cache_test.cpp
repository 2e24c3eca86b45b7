// The JVM truststore's cached system part: used only when it matches the bundle byte for byte
// and nobody else (the box above all) can have written it; rebuilt otherwise.
#include "agentbox/app/trust_cache.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/pkcs12.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "agentbox/app/session_trust.hpp"
#include "agentbox/proxy/tls_ca.hpp"
#include "agentbox/proxy/trust_store.hpp"

namespace agentbox::app {
namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/agentbox-tc-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};

std::string ca_pem(const std::string& host) {
  auto ca = proxy::SessionCa::create({.hosts = {host}});
  EXPECT_TRUE(ca.has_value());
  return proxy::cert_pem(ca->cert());
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The certificates in a PKCS#12 store, by friendly name.
std::vector<std::string> store_aliases(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  PKCS12* p12 = d2i_PKCS12(nullptr, &p, static_cast<long>(der.size()));
  std::vector<std::string> out;
  if (p12 == nullptr) {
    return out;
  }
  EXPECT_EQ(PKCS12_verify_mac(p12, proxy::kJdkStorePassword, -1), 1);
  STACK_OF(PKCS7)* safes = PKCS12_unpack_authsafes(p12);
  for (int i = 0; safes != nullptr && i < sk_PKCS7_num(safes); ++i) {
    STACK_OF(PKCS12_SAFEBAG)* bags = PKCS12_unpack_p7data(sk_PKCS7_value(safes, i));
    for (int j = 0; bags != nullptr && j < sk_PKCS12_SAFEBAG_num(bags); ++j) {
      char* name = PKCS12_get_friendlyname(sk_PKCS12_SAFEBAG_value(bags, j));
      out.emplace_back(name != nullptr ? name : "");
      OPENSSL_free(name);
    }
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
  }
  sk_PKCS7_pop_free(safes, PKCS7_free);
  PKCS12_free(p12);
  return out;
}

struct Fixture : ::testing::Test {
  TempDir tmp;
  std::string bundle = tmp.path + "/bundle.pem";
  TrustCache cache{.dir = tmp.path + "/cache/agentbox/trust", .box_writable = {"/work/ws"}};
  void SetUp() override { std::ofstream(bundle) << ca_pem("a.test") << ca_pem("b.test"); }
  std::string entry() const {
    for (const auto& e : std::filesystem::directory_iterator(cache.dir)) {
      return e.path().string();
    }
    return {};
  }
};

using TrustCacheTest = Fixture;

TEST_F(TrustCacheTest, BuiltOnceThenReadAndTheSameBytes) {
  auto first = system_trusted_bags(bundle, cache);
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_EQ(first->use, CacheUse::kBuilt);
  struct stat st {};
  ASSERT_EQ(::stat(cache.dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(entry().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto second = system_trusted_bags(bundle, cache);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->use, CacheUse::kHit);
  EXPECT_EQ(second->der, first->der);
  auto store = proxy::pkcs12_from_bags({second->der});
  ASSERT_TRUE(store.has_value());
  EXPECT_EQ(store_aliases(*store), (std::vector<std::string>{"agentbox-0", "agentbox-1"}));
}

TEST_F(TrustCacheTest, RebuiltWhenTheBundleChanges) {
  ASSERT_TRUE(system_trusted_bags(bundle, cache).has_value());
  // Same size, same mtime: only the bytes say it changed (a stat key would miss this).
  struct stat before {};
  ASSERT_EQ(::stat(bundle.c_str(), &before), 0);
  const std::string text = slurp(bundle);
  const size_t second = text.find("-----BEGIN", 1);
  ASSERT_NE(second, std::string::npos);
  std::ofstream(bundle, std::ios::trunc) << text.substr(second) << text.substr(0, second);
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, bundle.c_str(), times, 0), 0);
  auto again = system_trusted_bags(bundle, cache);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->use, CacheUse::kBuilt) << again->why;
  EXPECT_EQ(system_trusted_bags(bundle, cache)->use, CacheUse::kHit);
  // Another certificate added: rebuilt, and the store has three.
  std::ofstream(bundle, std::ios::app) << ca_pem("d.test");
  auto three = system_trusted_bags(bundle, cache);
  ASSERT_TRUE(three.has_value());
  EXPECT_EQ(three->use, CacheUse::kBuilt);
  EXPECT_EQ(store_aliases(*proxy::pkcs12_from_bags({three->der})).size(), 3u);
}

TEST_F(TrustCacheTest, ATamperedOrForeignEntryIsNotUsed) {
  auto good = system_trusted_bags(bundle, cache);
  ASSERT_TRUE(good.has_value());
  const std::string path = entry();
  const std::string original = slurp(path);
  // Every corruption: a flipped payload byte, a cut, a forged bundle digest, garbage.
  for (std::string bad :
       {original.substr(0, original.size() - 1), original.substr(0, original.size() / 2),
        std::string("garbage"), original + "x"}) {
    std::ofstream(path, std::ios::trunc | std::ios::binary) << bad;
    auto r = system_trusted_bags(bundle, cache);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->use, CacheUse::kBuilt) << r->why;
    EXPECT_EQ(r->der, good->der);
    EXPECT_EQ(slurp(path), original);  // written again
  }
  std::string flipped = original;
  flipped[flipped.size() - 10] ^= 1;
  std::ofstream(path, std::ios::trunc | std::ios::binary) << flipped;
  EXPECT_EQ(system_trusted_bags(bundle, cache)->der, good->der);
  // Writable by others: not trusted, even when intact.
  ASSERT_EQ(::chmod(path.c_str(), 0622), 0);
  auto loose = system_trusted_bags(bundle, cache);
  EXPECT_NE(loose->use, CacheUse::kHit);
  // A link in its place is not followed.
  ::unlink(path.c_str());
  std::ofstream(tmp.path + "/elsewhere") << original;
  ASSERT_EQ(::symlink((tmp.path + "/elsewhere").c_str(), path.c_str()), 0);
  auto linked = system_trusted_bags(bundle, cache);
  EXPECT_NE(linked->use, CacheUse::kHit);
  EXPECT_EQ(linked->der, good->der);
}

TEST_F(TrustCacheTest, OffWhereTheBoxCanWriteOrTheDirectoryIsShared) {
  for (const std::string& root : {tmp.path, tmp.path + "/cache", cache.dir}) {
    TrustCache inside{.dir = cache.dir, .box_writable = {"/work/ws", root}};
    auto r = system_trusted_bags(bundle, inside);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->use, CacheUse::kOff) << root;
    EXPECT_NE(r->why.find("the box can write"), std::string::npos) << r->why;
    EXPECT_TRUE(entry().empty());  // nothing written there either
  }
  // A sibling that only shares a prefix is not inside.
  TrustCache sibling{.dir = cache.dir, .box_writable = {cache.dir + "-other"}};
  EXPECT_EQ(system_trusted_bags(bundle, sibling)->use, CacheUse::kBuilt);
  ASSERT_EQ(::chmod(cache.dir.c_str(), 0777), 0);
  auto shared = system_trusted_bags(bundle, cache);
  EXPECT_EQ(shared->use, CacheUse::kOff);
  EXPECT_EQ(system_trusted_bags(bundle, TrustCache{})->use, CacheUse::kOff);
}

TEST(JvmReachable, OnlyWithAJdkJavaHomeOrJavaOnPath) {
  TempDir bin;
  EXPECT_FALSE(jvm_reachable("", bin.path + ":relative:", false));
  EXPECT_TRUE(jvm_reachable("", "", true));
  EXPECT_TRUE(jvm_reachable("/opt/jdk", "", false));
  std::ofstream(bin.path + "/java") << "#!/bin/sh\n";
  EXPECT_FALSE(jvm_reachable("", bin.path, false));  // not executable
  ASSERT_EQ(::chmod((bin.path + "/java").c_str(), 0755), 0);
  EXPECT_TRUE(jvm_reachable("", "/nonexistent:" + bin.path, false));
}

}  // namespace
}  // namespace agentbox::app
