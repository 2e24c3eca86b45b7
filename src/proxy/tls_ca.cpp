// Session CA and leaf minting with OpenSSL 3 (see tls_ca.hpp).
#include "agentbox/proxy/tls_ca.hpp"

#include <fmt/format.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/random.h>

#include <algorithm>
#include <array>
#include <ctime>

#include "agentbox/policy/host.hpp"
#include "agentbox/proxy/trust_store.hpp"

namespace agentbox::proxy {

namespace ossl {

std::string drain_errors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    if (!out.empty()) {
      out += "; ";
    }
    out += buf.data();
  }
  return out;
}

}  // namespace ossl

namespace {

constexpr size_t kMaxCachedLeaves = 4096;

base::Error ca_ssl_error(std::string_view op) {
  std::string what(op);
  if (auto detail = ossl::drain_errors(); !detail.empty()) {
    what += ": " + detail;
  }
  return base::Error::msg(std::move(what));
}

// A P-256 key made through the EC_KEY API (deprecated in OpenSSL 3, kept by it): a key made by
// a provider (EVP_PKEY_generate) is put into a certificate by OpenSSL's encoder and decoder
// framework, whose first use builds their method tables; a legacy key is encoded by its ASN.1
// method directly. The curve arithmetic and the private DRBG are the same code. Measured in a
// bare C program against the same static OpenSSL 3.0: generation and X509_set_pubkey 2.9-3.4 ms
// of CPU as a provider key, 1.4-1.7 ms as a legacy one (signing +0.25 ms: exported once).
base::Result<ossl::PkeyPtr> make_p256_key() {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  EC_KEY* ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  ossl::PkeyPtr key(EVP_PKEY_new());
  if (ec == nullptr || !key || EC_KEY_generate_key(ec) != 1 ||
      EVP_PKEY_assign_EC_KEY(key.get(), ec) != 1) {
    EC_KEY_free(ec);  // not the key's unless assigned
    return ca_ssl_error("generating a P-256 key");
  }
#pragma GCC diagnostic pop
  return key;
}

// A positive random 127-bit serial (RFC 5280 4.1.2.2: unique, at most 20 octets). From the
// kernel's CSPRNG: RAND_bytes would instantiate OpenSSL's public DRBG (AES-CTR, ~1 ms at a
// session's start) for these 16 bytes alone; the keys use the private DRBG either way.
bool set_random_serial(X509* x) {
  std::array<unsigned char, 16> bytes{};
  if (::getrandom(bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size())) {
    return false;
  }
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;  // never zero
  ossl::BignumPtr bn(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
  return bn && BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x)) != nullptr;
}

bool add_ext(X509* subject, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer, subject, nullptr, nullptr, 0);
  ossl::X509ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str()));
  return ext && X509_add_ext(subject, ext.get(), -1) == 1;
}

bool set_name(X509_NAME* name, const std::string& cn) {
  const auto* org = reinterpret_cast<const unsigned char*>("agentbox");
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, org, -1, -1, 0) != 1) {
    return false;
  }
  // CN is at most 64 characters (RFC 5280 ub-common-name); the SAN carries the name anyway.
  if (cn.empty() || cn.size() > 64) {
    return true;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(cn.c_str());
  return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, p, -1, -1, 0) == 1;
}

// Common skeleton: v3, serial, validity, subject, public key.
bool init_cert(X509* x, EVP_PKEY* pub, const std::string& cn, long not_before, long not_after) {
  return X509_set_version(x, 2) == 1 && set_random_serial(x) &&
         X509_gmtime_adj(X509_getm_notBefore(x), not_before) != nullptr &&
         X509_gmtime_adj(X509_getm_notAfter(x), not_after) != nullptr &&
         set_name(X509_get_subject_name(x), cn) && X509_set_pubkey(x, pub) == 1;
}

}  // namespace

bool prepare_openssl() {
  OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr);
  if (RAND_set_DRBG_type(nullptr, "HASH-DRBG", nullptr, nullptr, "SHA256") != 1) {
    ERR_clear_error();  // a generator already made (OpenSSL used before): the default stays
    return false;
  }
  return true;
}

base::Result<SessionCa> SessionCa::create(const CaOptions& options) {
  SessionCa ca;
  ca.options_ = options;
  // Name constraints from the host patterns. RFC 5280 4.2.1.10: a dNSName constraint
  // "github.com" permits github.com and every name below it; "*.github.com" therefore becomes
  // "github.com" too (a leading-dot form is not RFC 5280 for DNS names and not every client
  // takes it). permits() keeps the exact pattern semantics on our side.
  std::string constraints = "critical";
  for (const auto& h : options.hosts) {
    auto pattern = policy::HostPattern::parse(h);
    if (!pattern) {
      return base::Error::msg("host pattern `" + h + "` is not a hostname")
          .context("making the session CA");
    }
    constraints += ",permitted;DNS:" + pattern->base();
    ca.patterns_.push_back(std::move(*pattern));
  }
  if (ca.patterns_.empty() && !options.any_name) {
    // An empty permitted list would mean "no constraint": never make an unconstrained CA.
    return base::Error::msg("no host to intercept").context("making the session CA");
  }
  constraints += ",excluded;IP:0.0.0.0/0.0.0.0,excluded;IP:::/::";
  AGENTBOX_ASSIGN_OR_RETURN(ca.key_, make_p256_key());
  ca.cert_.reset(X509_new());
  ca.created_ = std::time(nullptr);
  X509* x = ca.cert_.get();
  const long life = static_cast<long>(options.lifetime.count());
  const long back = -static_cast<long>(options.backdate.count());
  if (!x || !init_cert(x, ca.key_.get(), options.common_name, back, life) ||
      X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
      !add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_ext(x, x, NID_subject_key_identifier, "hash") ||
      // RFC 5280 4.2.1.1 lets a self-signed root omit it; strict verifiers (OpenSSL's
      // -x509_strict, Python 3.13's default VERIFY_X509_STRICT) want it on every certificate.
      !add_ext(x, x, NID_authority_key_identifier, "keyid:always") ||
      !add_ext(x, x, NID_name_constraints, constraints) ||
      X509_sign(x, ca.key_.get(), EVP_sha256()) == 0) {
    return ca_ssl_error("making the session CA certificate");
  }
  return ca;
}

bool SessionCa::permits(std::string_view host) const {
  if (options_.any_name) {
    // A name as the policy normalises it; never an address (excluded by the constraints too).
    const auto name = policy::normalize_name(host);
    return name.has_value() && *name == host;
  }
  return std::any_of(patterns_.begin(), patterns_.end(),
                     [&](const policy::HostPattern& p) { return p.matches(host); });
}

base::Result<std::shared_ptr<const Leaf>> SessionCa::leaf_for(std::string_view host) {
  if (auto it = leaves_.find(host); it != leaves_.end()) {
    return it->second;
  }
  if (!permits(host)) {
    return base::Error::msg(fmt::format("`{}` is outside the session CA's names", host));
  }
  AGENTBOX_ASSIGN_OR_RETURN(auto leaf, mint_unchecked(host));
  if (leaves_.size() >= kMaxCachedLeaves) {
    leaves_.clear();  // wildcard scopes make the name set open-ended: bound the memory
  }
  leaves_.emplace(std::string(host), leaf);
  return leaf;
}

base::Result<std::shared_ptr<const Leaf>> SessionCa::mint_unchecked(std::string_view host) {
  auto canon = policy::normalize_name(host);
  if (!canon || *canon != host) {
    return base::Error::msg(fmt::format("`{}` is not a canonical hostname", host));
  }
  auto leaf = std::make_shared<Leaf>();
  leaf->host = *canon;
  leaf->cert.reset(X509_new());
  X509* x = leaf->cert.get();
  // The leaf ends with the CA (a leaf outliving its issuer would be refused later).
  const long life = static_cast<long>(created_ + options_.lifetime.count() - std::time(nullptr));
  if (life <= 0) {
    return base::Error::msg("the session CA has expired");
  }
  const long back = -static_cast<long>(options_.backdate.count());
  if (!leaf_key_) {
    // Made by the first leaf, not with the CA: a session whose program never reaches an
    // intercepted host spends no second key generation at its start.
    AGENTBOX_ASSIGN_OR_RETURN(leaf_key_, make_p256_key());
  }
  if (!x || !init_cert(x, leaf_key_.get(), *canon, back, life) ||
      X509_set_issuer_name(x, X509_get_subject_name(cert_.get())) != 1 ||
      !add_ext(x, cert_.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(x, cert_.get(), NID_key_usage, "critical,digitalSignature") ||
      !add_ext(x, cert_.get(), NID_ext_key_usage, "serverAuth") ||
      !add_ext(x, cert_.get(), NID_subject_alt_name, "DNS:" + *canon) ||
      !add_ext(x, cert_.get(), NID_subject_key_identifier, "hash") ||
      !add_ext(x, cert_.get(), NID_authority_key_identifier, "keyid:always") ||
      X509_sign(x, key_.get(), EVP_sha256()) == 0) {
    return ca_ssl_error("minting a leaf certificate for `" + *canon + "`");
  }
  EVP_PKEY_up_ref(leaf_key_.get());
  leaf->key.reset(leaf_key_.get());
  return std::shared_ptr<const Leaf>(std::move(leaf));
}

std::string SessionCa::pem() const {
  return cert_pem(cert_.get());
}

}  // namespace agentbox::proxy
