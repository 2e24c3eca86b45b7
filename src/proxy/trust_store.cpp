// PEM certificates in, a JDK-readable PKCS#12 truststore out (see trust_store.hpp).
#include "agentbox/proxy/trust_store.hpp"

#include <fmt/format.h>
#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#include <array>
#include <memory>

#include "agentbox/base/sys.hpp"
#include "agentbox/proxy/tls_ca.hpp"

namespace agentbox::proxy {

namespace {

// Oracle's trustedKeyUsage attribute (JDK sun.security.pkcs12.PKCS12KeyStore, TrustedKeyUsage_OID):
// a certificate bag without a private key becomes a trusted entry only when it carries it.
constexpr const char* kJdkTrustedKeyUsage = "2.16.840.1.113894.746875.1.1";
constexpr const char* kAnyExtendedKeyUsage = "2.5.29.37.0";

struct FreeBags {
  void operator()(STACK_OF(PKCS12_SAFEBAG) * s) const {
    sk_PKCS12_SAFEBAG_pop_free(s, PKCS12_SAFEBAG_free);
  }
};
struct FreeSafes {
  void operator()(STACK_OF(PKCS7) * s) const { sk_PKCS7_pop_free(s, PKCS7_free); }
};
using BagsPtr = std::unique_ptr<STACK_OF(PKCS12_SAFEBAG), FreeBags>;
using SafesPtr = std::unique_ptr<STACK_OF(PKCS7), FreeSafes>;
using P7Ptr = std::unique_ptr<PKCS7, ossl::Deleter<PKCS7, PKCS7_free>>;
using P12Ptr = std::unique_ptr<PKCS12, ossl::Deleter<PKCS12, PKCS12_free>>;
using ObjPtr = std::unique_ptr<ASN1_OBJECT, ossl::Deleter<ASN1_OBJECT, ASN1_OBJECT_free>>;

base::Error store_ssl_error(std::string what) {
  if (auto detail = ossl::drain_errors(); !detail.empty()) {
    what = fmt::format("{}: {}", what, detail);
  }
  return base::Error::msg(std::move(what));
}

// A certificate bag as PKCS12_add_cert() makes one from the parsed certificate (byte for byte:
// tls_ca_test), from the certificate's DER without parsing it: an ANY holding the SEQUENCE's
// encoding is written out verbatim into the bag's OCTET STRING.
PKCS12_SAFEBAG* cert_bag_from_der(std::string_view der) {
  ASN1_TYPE* any = ASN1_TYPE_new();
  ASN1_STRING* seq = ASN1_STRING_type_new(V_ASN1_SEQUENCE);
  PKCS12_SAFEBAG* bag = nullptr;
  if (any != nullptr && seq != nullptr &&
      ASN1_STRING_set(seq, der.data(), static_cast<int>(der.size())) == 1) {
    ASN1_TYPE_set(any, V_ASN1_SEQUENCE, seq);  // owns seq now
    seq = nullptr;
    bag = PKCS12_item_pack_safebag(any, ASN1_ITEM_rptr(ASN1_ANY), NID_x509Certificate, NID_certBag);
  }
  ASN1_STRING_free(seq);
  ASN1_TYPE_free(any);
  return bag;
}

// The bag's alias and the JDK's trust mark; the bag goes onto *bags (owned there) either way.
bool add_trusted_bag(STACK_OF(PKCS12_SAFEBAG) * *bags, PKCS12_SAFEBAG* bag,
                     const std::string& alias, const ASN1_OBJECT* any_eku) {
  if (bag == nullptr) {
    return false;
  }
  if (*bags == nullptr) {
    *bags = sk_PKCS12_SAFEBAG_new_null();
  }
  if (*bags == nullptr || sk_PKCS12_SAFEBAG_push(*bags, bag) == 0) {
    PKCS12_SAFEBAG_free(bag);
    return false;
  }
  return PKCS12_add_friendlyname_asc(bag, alias.c_str(), -1) == 1 &&
         // len -1 with a non-string type: the data is the ASN1_OBJECT itself (copied).
         PKCS12_add1_attr_by_txt(bag, kJdkTrustedKeyUsage, V_ASN1_OBJECT,
                                 reinterpret_cast<const unsigned char*>(any_eku), -1) == 1;
}

// One DER SEQUENCE spanning all of `der` (a certificate's outer shape; its inside is not read).
bool one_sequence(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  long len = 0;
  int tag = 0;
  int cls = 0;
  const int r = ASN1_get_object(&p, &len, &tag, &cls, static_cast<long>(der.size()));
  return (r & 0x80) == 0 && r == V_ASN1_CONSTRUCTED && tag == V_ASN1_SEQUENCE &&
         cls == V_ASN1_UNIVERSAL &&
         p + len == reinterpret_cast<const unsigned char*>(der.data()) + der.size();
}

// The DER of every `CERTIFICATE` block of PEM text, base64-decoded, not parsed (~1 ms for a
// distribution's bundle, where parsing costs 60-100 ms with OpenSSL 3). A block that does not
// decode to one DER SEQUENCE is skipped, as are blocks of other types.
std::vector<std::string> pem_cert_ders(std::string_view text) {
  constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string> out;
  for (size_t pos = text.find(kBegin); pos != std::string_view::npos;
       pos = text.find(kBegin, pos)) {
    const size_t body = pos + kBegin.size();
    const size_t end = text.find(kEnd, body);
    if (end == std::string_view::npos) {
      break;
    }
    pos = end + kEnd.size();
    std::string b64;
    for (char ch : text.substr(body, end - body)) {
      if (ch != '\n' && ch != '\r' && ch != ' ' && ch != '\t') {
        b64.push_back(ch);
      }
    }
    if (b64.empty() || b64.size() % 4 != 0) {
      continue;
    }
    std::string der(b64.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(der.data()),
                                  reinterpret_cast<const unsigned char*>(b64.data()),
                                  static_cast<int>(b64.size()));
    const size_t pad = b64.ends_with("==") ? 2 : b64.ends_with("=") ? 1 : 0;
    if (n < 0 || static_cast<size_t>(n) < pad) {
      continue;
    }
    der.resize(static_cast<size_t>(n) - pad);
    if (one_sequence(der)) {
      out.push_back(std::move(der));
    }
  }
  return out;
}

// The bags, packed as one unencrypted PKCS#7 data item (DER).
base::Result<std::string> pack_bags(STACK_OF(PKCS12_SAFEBAG) * raw_bags) {
  BagsPtr bags(raw_bags);
  // Unencrypted data: a JDK that loads the store without a password skips encrypted bags.
  P7Ptr p7(bags ? PKCS12_pack_p7data(bags.get()) : nullptr);
  unsigned char* der = nullptr;
  const int n = p7 ? i2d_PKCS7(p7.get(), &der) : 0;
  if (n <= 0) {
    return store_ssl_error("packing the PKCS#12 truststore");
  }
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

}  // namespace

base::Result<std::vector<ossl::X509Ptr>> read_pem_certs(const std::string& path) {
  auto text = base::read_file(path, 16u << 20);
  if (!text) {
    return std::move(text).error();
  }
  return parse_pem_certs(*text, path);
}

base::Result<std::vector<ossl::X509Ptr>> parse_pem_certs(std::string_view text,
                                                         const std::string& path) {
  ossl::BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) {
    return store_ssl_error("BIO_new_mem_buf");
  }
  std::vector<ossl::X509Ptr> out;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(x);
  }
  (void)ossl::drain_errors();  // the end of the input reads as "no start line"
  if (out.empty()) {
    return base::Error::msg(fmt::format("no PEM certificate in `{}`", path))
        .hint("expected one or more -----BEGIN CERTIFICATE----- blocks");
  }
  return out;
}

std::string cert_pem(X509* cert) {
  ossl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return {};
  }
  char* data = nullptr;
  const long n = BIO_ctrl(bio.get(), BIO_CTRL_INFO, 0, &data);  // BIO_get_mem_data()
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

base::Result<std::string> merged_trust_bundle(const std::string& system_bundle,
                                              const std::vector<X509*>& extra) {
  auto system = base::read_file(system_bundle, 16u << 20);
  if (!system) {
    return std::move(system)
        .error()
        .context("building the box's trust bundle")
        .hint("install the distribution's CA bundle (Debian: ca-certificates)");
  }
  std::string out = std::move(*system);
  if (!out.empty() && out.back() != '\n') {
    out.push_back('\n');
  }
  for (X509* cert : extra) {
    std::array<char, 256> name{};
    X509_NAME_oneline(X509_get_subject_name(cert), name.data(), static_cast<int>(name.size()));
    out += fmt::format("# agentbox: {}\n", name.data());
    out += cert_pem(cert);
  }
  return out;
}

base::Result<std::string> trusted_bags(const std::vector<X509*>& certs,
                                       std::string_view alias_prefix) {
  ObjPtr any_eku(OBJ_txt2obj(kAnyExtendedKeyUsage, 1));
  if (!any_eku) {
    return store_ssl_error("OBJ_txt2obj");
  }
  STACK_OF(PKCS12_SAFEBAG)* bags = nullptr;
  for (size_t i = 0; i < certs.size(); ++i) {
    if (!add_trusted_bag(&bags, PKCS12_SAFEBAG_create_cert(certs[i]),
                         fmt::format("{}{}", alias_prefix, i), any_eku.get())) {
      BagsPtr free_bags(bags);
      return store_ssl_error("adding a certificate to the PKCS#12 truststore");
    }
  }
  return pack_bags(bags);
}

base::Result<std::string> trusted_bags_pem(std::string_view pem, std::string_view alias_prefix,
                                           const std::string& path) {
  ObjPtr any_eku(OBJ_txt2obj(kAnyExtendedKeyUsage, 1));
  if (!any_eku) {
    return store_ssl_error("OBJ_txt2obj");
  }
  const auto ders = pem_cert_ders(pem);
  if (ders.empty()) {
    return base::Error::msg(fmt::format("no PEM certificate in `{}`", path))
        .hint("expected one or more -----BEGIN CERTIFICATE----- blocks");
  }
  STACK_OF(PKCS12_SAFEBAG)* bags = nullptr;
  for (size_t i = 0; i < ders.size(); ++i) {
    if (!add_trusted_bag(&bags, cert_bag_from_der(ders[i]), fmt::format("{}{}", alias_prefix, i),
                         any_eku.get())) {
      BagsPtr free_bags(bags);
      return store_ssl_error("adding a certificate to the PKCS#12 truststore");
    }
  }
  return pack_bags(bags);
}

base::Result<std::string> pkcs12_from_bags(const std::vector<std::string>& parts) {
  SafesPtr safes(sk_PKCS7_new_null());
  if (!safes) {
    return store_ssl_error("packing the PKCS#12 truststore");
  }
  for (const auto& part : parts) {
    const auto* p = reinterpret_cast<const unsigned char*>(part.data());
    P7Ptr p7(d2i_PKCS7(nullptr, &p, static_cast<long>(part.size())));
    // Only unencrypted data, read to its last byte: anything else is not what trusted_bags made.
    if (!p7 || PKCS7_type_is_data(p7.get()) == 0 ||
        p != reinterpret_cast<const unsigned char*>(part.data()) + part.size() ||
        sk_PKCS7_push(safes.get(), p7.get()) == 0) {
      return store_ssl_error("packing the PKCS#12 truststore");
    }
    (void)p7.release();  // owned by safes
  }
  P12Ptr p12(PKCS12_add_safes(safes.get(), 0));
  if (!p12 || PKCS12_set_mac(p12.get(), kJdkStorePassword, -1, nullptr, 0, PKCS12_DEFAULT_ITER,
                             EVP_sha256()) != 1) {
    return store_ssl_error("making the PKCS#12 truststore");
  }
  unsigned char* der = nullptr;
  const int n = i2d_PKCS12(p12.get(), &der);
  if (n <= 0) {
    return store_ssl_error("encoding the PKCS#12 truststore");
  }
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

base::Result<std::string> pkcs12_trust_store(const std::vector<X509*>& certs) {
  auto bags = trusted_bags(certs, "agentbox-");
  if (!bags) {
    return std::move(bags).error();
  }
  return pkcs12_from_bags({*bags});
}

}  // namespace agentbox::proxy
