// SessionProxy: what the box is given (placeholders, trust, git helper) and what it never gets.
#include "agentbox/app/session_proxy.hpp"

#include <gtest/gtest.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "agentbox/app/session_trust.hpp"
#include "agentbox/config/load.hpp"
#include "testkit/skip.hpp"

namespace agentbox::app {
namespace {

const std::string kReal = "ghp_RealSessionToken0123456789abcdefABCD";

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/agentbox-sp-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};

config::Credential github(const std::string& from) {
  return {.origin = {"/home/u/.config/agentbox/config.toml", 3, 1},
          .name = "github",
          .env = "GITHUB_TOKEN",
          .from = *agentbox::policy::SourceSpec::parse(from),
          .hosts = {"github.com"},
          .inject = agentbox::policy::InjectSpec::basic()};
}

// The host file shown at `target` in the box ("" when none is).
std::string source_of(const std::vector<sandbox::Overlay>& overlays, const std::string& target) {
  for (const auto& o : overlays) {
    if (o.target == target) {
      return o.source;
    }
  }
  return {};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::map<std::string, std::string> as_map(
    const std::vector<std::pair<std::string, std::string>>& v) {
  return {v.begin(), v.end()};
}

TEST(SessionProxy, ACredentialGivesThePlaceholderTrustAndAGitHelperNeverTheSecret) {
  TempDir dir;
  config::Policy p;
  p.credentials["github"] = github("env:REAL_GH");
  audit::MemorySink sink;
  auto sp = SessionProxy::create(p, {{"REAL_GH", kReal}}, "/home/u", dir.path, sink);
  ASSERT_TRUE(sp) << sp.error().message();
  auto env = as_map((*sp)->box_env());
  ASSERT_EQ(env.count("GITHUB_TOKEN"), 1u);
  EXPECT_EQ(env["GITHUB_TOKEN"].size(), kReal.size());
  EXPECT_NE(env["GITHUB_TOKEN"], kReal);
  for (const auto& [k, v] : env) {
    EXPECT_EQ(v.find(kReal), std::string::npos) << k;
  }
  EXPECT_EQ(env["SSL_CERT_FILE"], kBoxBundle);
  EXPECT_EQ(env["NODE_EXTRA_CA_CERTS"], kBoxBundle);
  EXPECT_EQ(env["GIT_CONFIG_COUNT"], "1");
  EXPECT_EQ(env["GIT_CONFIG_KEY_0"], "credential.https://github.com.helper");
  EXPECT_NE(env["GIT_CONFIG_VALUE_0"].find("$GITHUB_TOKEN"), std::string::npos);
  EXPECT_EQ((*sp)->secret_env_sources().count("REAL_GH"), 1u);
  // The merged bundle is bound at /etc/agentbox and over the host's trust file.
  auto ov = (*sp)->overlays();
  auto has = [&](const std::string& t) {
    return std::any_of(ov.begin(), ov.end(), [&](const auto& o) { return o.target == t; });
  };
  EXPECT_TRUE(has(kBoxBundle));
  EXPECT_TRUE(has(kBoxCertDir));
  if (::access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0) {
    EXPECT_TRUE(has("/etc/ssl/certs/ca-certificates.crt"));
  }
  // The JVM's truststore: at /etc/agentbox and over every cacerts this host has, when a JVM can
  // read it (no PATH or JAVA_HOME given here: a JDK's cacerts on this host decides).
  EXPECT_EQ(has(kBoxJavaStore), jvm_reachable("", "", !java_trust_store_files("").empty()));
  for (const auto& f : java_trust_store_files("")) {
    EXPECT_TRUE(has(f)) << f;
  }
  if (::access("/etc/ssl/certs/java/cacerts", R_OK) == 0) {
    EXPECT_TRUE(has("/etc/ssl/certs/java/cacerts"));
  }
  EXPECT_NE(read_text(source_of(ov, kBoxBundle)).find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_EQ(sink.lines().find(kReal), std::string::npos);
}

// The JVM truststore is built only when a JVM can read it (issue 15: ~60-100 ms saved).
TEST(SessionTrust, JvmReachableOnlyWithAJdkJavaHomeOrJavaOnPath) {
  TempDir bin;
  EXPECT_FALSE(jvm_reachable("", bin.path + ":relative:", false));
  EXPECT_TRUE(jvm_reachable("", "", true));
  EXPECT_TRUE(jvm_reachable("/opt/jdk", "", false));
  std::ofstream(bin.path + "/java") << "#!/bin/sh\n";
  EXPECT_FALSE(jvm_reachable("", bin.path, false));  // not executable
  ASSERT_EQ(::chmod((bin.path + "/java").c_str(), 0755), 0);
  EXPECT_TRUE(jvm_reachable("", "/nonexistent:" + bin.path, false));
}

// A shipped profile names the usual variables, which many users do not set: the box simply has
// no such variable. The same credential in the user's own config is an error naming its line.
TEST(SessionProxy, AnUnsetEnvSourceOfAShippedProfileMeansNoVariable) {
  TempDir dir;
  config::Policy p;
  p.credentials["github"] = github("env:NOT_SET_ANYWHERE");
  p.credentials["github"].origin = {config::default_profile_dirs().front() + "/github.toml", 3, 1};
  audit::MemorySink sink;
  auto sp = SessionProxy::create(p, {}, "/home/u", dir.path, sink);
  ASSERT_TRUE(sp) << sp.error().message();
  auto env = as_map((*sp)->box_env());
  EXPECT_EQ(env.count("GITHUB_TOKEN"), 0u);
  EXPECT_EQ((*sp)->secret_env_sources().count("NOT_SET_ANYWHERE"), 1u);
}

TEST(SessionProxy, AnUnsetEnvSourceOfYourConfigFailsWithItsLine) {
  TempDir dir;
  config::Policy p;
  p.credentials["github"] = github("env:NOT_SET_ANYWHERE");
  p.credentials["github"].origin = {"/home/u/.config/agentbox/config.toml", 3, 1};
  audit::MemorySink sink;
  auto sp = SessionProxy::create(p, {}, "/home/u", dir.path, sink);
  ASSERT_FALSE(sp);
  EXPECT_NE(
      sp.error().render().find("credential `github` (/home/u/.config/agentbox/config.toml:3:1)"
                               ": variable `NOT_SET_ANYWHERE` is not set"),
      std::string::npos)
      << sp.error().render();
}

TEST(SessionProxy, TrustCaAloneAddsItsCertificatesToTheBoxTrustWithoutACa) {
  TempDir dir;
  const std::string system = trust_store_files().front();
  if (::access(system.c_str(), R_OK) != 0) {
    testkit::skip("no system bundle at " + system);
    return;
  }
  // Any PEM certificate does: the first one of the system bundle.
  std::ifstream in(system);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t end = text.find("-----END CERTIFICATE-----");
  ASSERT_NE(end, std::string::npos);
  {
    std::ofstream(dir.path + "/private-ca.pem")
        << text.substr(text.find("-----BEGIN CERTIFICATE-----"), end + 26);
  }
  config::Policy p;
  p.trust_ca.push_back({dir.path + "/private-ca.pem", {"--trust-ca"}});
  audit::MemorySink sink;
  auto sp = SessionProxy::create(p, {}, "/home/u", dir.path, sink);
  ASSERT_TRUE(sp) << sp.error().message();
  EXPECT_EQ(as_map((*sp)->box_env())["SSL_CERT_FILE"], kBoxBundle);
  EXPECT_FALSE((*sp)->overlays().empty());
  EXPECT_EQ(sink.lines().find("proxy.ca"), std::string::npos);  // nothing intercepted
  const std::string bundle = source_of((*sp)->overlays(), kBoxBundle);
  EXPECT_NE(read_text(bundle).find("# agentbox: "), std::string::npos);
  const std::string folder = bundle.substr(0, bundle.rfind('/'));
  EXPECT_EQ(::access((folder + "/cacerts.p12").c_str(), R_OK) == 0,
            jvm_reachable("", "", !java_trust_store_files("").empty()));
  // On a tmpfs when one is at hand (an ext4 inode per file cost more than the writing), in a
  // private folder that goes with the session.
  struct statfs fs {};
  if (::statfs("/dev/shm", &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
    ASSERT_EQ(::statfs(bundle.c_str(), &fs), 0);
    EXPECT_EQ(fs.f_type, TMPFS_MAGIC) << bundle;
    EXPECT_NE(folder, dir.path);
    struct stat st {};
    ASSERT_EQ(::stat(folder.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(st.st_uid, ::geteuid());
    sp->reset();
    EXPECT_FALSE(std::filesystem::exists(folder)) << folder;
  }

  p.trust_ca = {{dir.path + "/nothing.pem", {"--trust-ca"}}};
  std::ofstream(dir.path + "/nothing.pem") << "not a certificate\n";
  auto bad = SessionProxy::create(p, {}, "/home/u", dir.path, sink);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("no PEM certificate in"), std::string::npos)
      << bad.error().message();
}

TEST(SessionProxy, NothingToInterceptMeansNoCaAndUntouchedTrustStores) {
  TempDir dir;
  config::Policy p;
  audit::MemorySink sink;
  auto sp = SessionProxy::create(p, {}, "/home/u", dir.path, sink);
  ASSERT_TRUE(sp);
  EXPECT_TRUE((*sp)->overlays().empty());
  EXPECT_TRUE((*sp)->box_env().empty());
  EXPECT_NE(::access((dir.path + "/ca-bundle.pem").c_str(), F_OK), 0);
}

TEST(SessionProxy, ABadFileSourceFailsTheSession) {
  TempDir dir;
  config::Policy p;
  p.credentials["github"] = github("file:/nonexistent/token");
  audit::MemorySink sink;
  auto sp = SessionProxy::create(p, {}, "/home/u", dir.path, sink);
  ASSERT_FALSE(sp);
  EXPECT_NE(sp.error().render().find("credential `github`"), std::string::npos)
      << sp.error().render();
}

}  // namespace
}  // namespace agentbox::app
