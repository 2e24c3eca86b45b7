// The box's trust files: the PEM bundle, and the JVM's PKCS#12 truststore checked byte for byte
// against OpenSSL's own PKCS#12 encoder (the oracle) and read back through OpenSSL.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "agentbox/base/sys.hpp"
#include "agentbox/proxy/tls_ca.hpp"
#include "agentbox/proxy/trust_store.hpp"

namespace agentbox::proxy {
namespace {

SessionCa make_ca() {
  auto ca = SessionCa::create({.hosts = {"api.github.com", "*.githubusercontent.com"}});
  EXPECT_TRUE(ca.has_value()) << (ca ? "" : ca.error().message());
  return std::move(*ca);
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/agentbox-jdk-store-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, std::string_view text) const {
    const std::string p = path + "/" + name;
    EXPECT_TRUE(base::write_file(p, text).has_value());
    return p;
  }
};

std::string read(const std::string& path) {
  auto text = base::read_file(path, 16u << 20);
  EXPECT_TRUE(text.has_value()) << path;
  return text ? *text : std::string();
}

using P7Ptr = std::unique_ptr<PKCS7, ossl::Deleter<PKCS7, PKCS7_free>>;
using P12Ptr = std::unique_ptr<PKCS12, ossl::Deleter<PKCS12, PKCS12_free>>;
using ObjPtr = std::unique_ptr<ASN1_OBJECT, ossl::Deleter<ASN1_OBJECT, ASN1_OBJECT_free>>;
constexpr const char* kTrustedKeyUsage = "2.16.840.1.113894.746875.1.1";

// The oracle: the store as OpenSSL's PKCS#12 functions make it from parsed certificates, one
// unencrypted item per part, bags named `prefix` + index, the JDK's trust mark on each.
std::string openssl_store(const std::vector<std::pair<std::vector<X509*>, std::string>>& parts,
                          std::string_view salt) {
  ObjPtr any_eku(OBJ_txt2obj("2.5.29.37.0", 1));
  STACK_OF(PKCS7)* safes = sk_PKCS7_new_null();
  for (const auto& [certs, prefix] : parts) {
    STACK_OF(PKCS12_SAFEBAG)* bags = sk_PKCS12_SAFEBAG_new_null();
    for (size_t i = 0; i < certs.size(); ++i) {
      PKCS12_SAFEBAG* bag = PKCS12_SAFEBAG_create_cert(certs[i]);
      EXPECT_NE(bag, nullptr);
      sk_PKCS12_SAFEBAG_push(bags, bag);
      EXPECT_EQ(PKCS12_add_friendlyname_asc(bag, (prefix + std::to_string(i)).c_str(), -1), 1);
      EXPECT_EQ(PKCS12_add1_attr_by_txt(bag, kTrustedKeyUsage, V_ASN1_OBJECT,
                                        reinterpret_cast<const unsigned char*>(any_eku.get()), -1),
                1);
    }
    sk_PKCS7_push(safes, PKCS12_pack_p7data(bags));
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
  }
  P12Ptr p12(PKCS12_add_safes(safes, 0));
  sk_PKCS7_pop_free(safes, PKCS7_free);
  EXPECT_NE(p12, nullptr);
  EXPECT_EQ(PKCS12_set_mac(p12.get(), kJdkStorePassword, -1,
                           reinterpret_cast<unsigned char*>(const_cast<char*>(salt.data())),
                           static_cast<int>(salt.size()), 2048, EVP_sha256()),
            1);
  unsigned char* der = nullptr;
  const int n = i2d_PKCS12(p12.get(), &der);
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(n > 0 ? n : 0));
  OPENSSL_free(der);
  return out;
}

// The items of a PKCS#12 store whose MAC verifies under the JDK's password (null otherwise).
STACK_OF(PKCS7) * store_items(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  P12Ptr p12(d2i_PKCS12(nullptr, &p, static_cast<long>(der.size())));
  if (!p12 || PKCS12_verify_mac(p12.get(), kJdkStorePassword, -1) != 1) {
    return nullptr;
  }
  return PKCS12_unpack_authsafes(p12.get());
}

constexpr std::string_view kSalt = "\x01\x02\x03\x04\xfa\xfb\xfc\xfd";

std::vector<X509*> raw(const std::vector<ossl::X509Ptr>& certs) {
  std::vector<X509*> out;
  for (const auto& c : certs) {
    out.push_back(c.get());
  }
  return out;
}

TEST(JdkStore, IsByteForByteWhatOpenSslMakesOfTheParsedCertificates) {
  auto ca = make_ca();
  auto other = make_ca();
  TempDir dir;
  // Two CAs, then the same 150 times over: three-digit aliases and multi-byte DER lengths.
  std::string many;
  for (int i = 0; i < 150; ++i) {
    many += cert_pem(i % 2 == 0 ? ca.cert() : other.cert());
  }
  std::vector<std::string> bundles = {
      dir.write("two.pem", cert_pem(ca.cert()) + cert_pem(other.cert())),
      dir.write("many.pem", many)};
  for (const char* host :
       {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}) {
    if (::access(host, R_OK) == 0) {
      bundles.emplace_back(host);
    }
  }
  for (const auto& bundle : bundles) {
    auto certs = read_pem_certs(bundle);
    ASSERT_TRUE(certs.has_value()) << bundle;
    const std::string out = dir.path + "/cacerts.p12";
    auto made = write_jdk_trust_store(bundle, {ca.cert()}, out, kSalt);
    ASSERT_TRUE(made.has_value()) << made.error().message();
    EXPECT_EQ(
        read(out),
        openssl_store({{raw(*certs), "agentbox-"}, {{ca.cert()}, "agentbox-session-"}}, kSalt))
        << bundle;
  }
}

TEST(JdkStore, VerifiesUnderTheJdkPasswordAndMarksEveryCertificateTrusted) {
  auto ca = make_ca();
  auto other = make_ca();
  TempDir dir;
  const std::string sys = dir.write("sys.pem", cert_pem(ca.cert()));
  const std::string out = dir.path + "/cacerts.p12";
  ASSERT_TRUE(write_jdk_trust_store(sys, {other.cert()}, out).has_value());
  STACK_OF(PKCS7)* safes = store_items(read(out));
  ASSERT_NE(safes, nullptr);
  ASSERT_EQ(sk_PKCS7_num(safes), 2);
  ObjPtr trusted(OBJ_txt2obj(kTrustedKeyUsage, 1));
  for (int item = 0; item < 2; ++item) {
    PKCS7* p7 = sk_PKCS7_value(safes, item);
    EXPECT_EQ(OBJ_obj2nid(p7->type), NID_pkcs7_data);  // unencrypted: readable with no password
    STACK_OF(PKCS12_SAFEBAG)* bags = PKCS12_unpack_p7data(p7);
    ASSERT_NE(bags, nullptr);
    ASSERT_EQ(sk_PKCS12_SAFEBAG_num(bags), 1);
    const PKCS12_SAFEBAG* bag = sk_PKCS12_SAFEBAG_value(bags, 0);
    EXPECT_EQ(PKCS12_SAFEBAG_get_nid(bag), NID_certBag);
    EXPECT_GE(X509at_get_attr_by_OBJ(PKCS12_SAFEBAG_get0_attrs(bag), trusted.get(), -1), 0);
    char* name = PKCS12_get_friendlyname(const_cast<PKCS12_SAFEBAG*>(bag));
    EXPECT_STREQ(name, item == 0 ? "agentbox-0" : "agentbox-session-0");
    OPENSSL_free(name);
    ossl::X509Ptr cert(PKCS12_SAFEBAG_get1_cert(bag));
    EXPECT_EQ(X509_cmp(cert.get(), item == 0 ? ca.cert() : other.cert()), 0);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
  }
  sk_PKCS7_pop_free(safes, PKCS7_free);
  // A fresh salt each time: two stores of the same certificates differ only there and in the MAC.
  const std::string again = dir.path + "/again.p12";
  ASSERT_TRUE(write_jdk_trust_store(sys, {other.cert()}, again).has_value());
  EXPECT_NE(read(out), read(again));
  EXPECT_EQ(read(out).size(), read(again).size());
}

// A real certificate's PEM with one byte of its base64 replaced by `ch` (removed for NUL): a
// byte outside the alphabet, padding in the middle, a length not in groups of four.
std::string broken(const SessionCa& ca, char ch) {
  std::string pem = cert_pem(ca.cert());
  const size_t at = std::string_view("-----BEGIN CERTIFICATE-----\n").size() + 100;
  if (ch == '\0') {
    pem.erase(at, 1);
  } else {
    pem[at] = ch;
  }
  return pem;
}

TEST(JdkStore, SkipsBlocksThatAreNotCertificatesAndNamesAFileWithNone) {
  auto ca = make_ca();
  auto other = make_ca();
  TempDir dir;
  const std::string mixed = dir.write(
      "mixed.pem", cert_pem(ca.cert()) + "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n" +
                       "-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n!!!!\n" +
                       "-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nAAAA\n" +
                       "-----END PRIVATE KEY-----\n" + cert_pem(other.cert()) +
                       "-----BEGIN CERTIFICATE-----\nMIIB" +  // no end line
                       broken(ca, '*') + broken(ca, '=') + broken(ca, '\0'));
  const std::string out = dir.path + "/cacerts.p12";
  ASSERT_TRUE(write_jdk_trust_store(mixed, {ca.cert()}, out, kSalt).has_value());
  EXPECT_EQ(read(out), openssl_store({{{ca.cert(), other.cert()}, "agentbox-"},
                                      {{ca.cert()}, "agentbox-session-"}},
                                     kSalt));
  for (const std::string& empty :
       {dir.write("none.pem", "no certificate here"), dir.write("empty.pem", "")}) {
    auto none = write_jdk_trust_store(empty, {ca.cert()}, out);
    ASSERT_FALSE(none.has_value());
    EXPECT_NE(none.error().message().find(empty), std::string::npos) << none.error().message();
  }
  auto missing = write_jdk_trust_store(dir.path + "/missing.pem", {ca.cert()}, out);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message().find("missing.pem"), std::string::npos);
  ERR_clear_error();
}

TEST(TrustBundle, AppendsEachCertificateToTheSystemBundle) {
  auto ca = make_ca();
  auto other = make_ca();
  TempDir dir;
  const std::string out = dir.path + "/ca-bundle.pem";
  const std::string sys = "-----BEGIN CERTIFICATE-----\nSYSTEM\n-----END CERTIFICATE-----";
  ASSERT_TRUE(write_trust_bundle(dir.write("sys.pem", sys), {ca.cert(), other.cert()}, out));
  std::string bundle = read(out);
  EXPECT_EQ(bundle.find(sys + "\n# agentbox: "), 0u);  // a newline added where there was none
  const size_t first = bundle.find(ca.pem());
  EXPECT_NE(first, std::string::npos);
  EXPECT_GT(bundle.find(cert_pem(other.cert())), first);
  ASSERT_TRUE(write_trust_bundle(dir.write("sys2.pem", sys + "\n"), {ca.cert()}, out));
  EXPECT_EQ(read(out).find(sys + "\n# agentbox: "), 0u);  // and none added where there was one
  auto missing = write_trust_bundle(dir.path + "/missing.crt", {ca.cert()}, out);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message().find("missing.crt"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::proxy
