// The session CA: an in-memory, name-constrained ECDSA CA that mints leaf certificates.
//
// Theory of operation: one CA per session, made at start (P-256 key that never leaves memory,
// valid from now-1h to now+24h, critical basicConstraints CA:TRUE pathlen:0, critical keyUsage
// keyCertSign+cRLSign, subject and authority key identifiers (what strict verifiers such as
// `openssl verify -x509_strict` and Python's VERIFY_X509_STRICT require), and critical X.509
// name constraints that permit only the DNS names the session may intercept and exclude every
// IPv4/IPv6 address). Its PEM is added to the box's trust bundle. Because
// OpenSSL, Go and Node enforce name constraints on a root, even a leaked CA key could not vouch
// for any other name inside the box. A learning run (`--learn`, CaOptions::any_name) is the one
// exception: it intercepts every name to see methods and paths, so its CA permits every DNS name
// (IP addresses stay excluded); its key still never leaves the supervisor's memory. Leaves (SAN
// dNSName, critical keyUsage digitalSignature, EKU serverAuth, critical CA:FALSE, both key
// identifiers, signed by the CA, never self-signed) share one session leaf key and are cached per
// name.
#pragma once

#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/policy/host.hpp"
#include "agentbox/proxy/openssl_ptr.hpp"

namespace agentbox::proxy {

// Sets OpenSSL up for a supervisor, before its first use of OpenSSL (the state folder's hash,
// the session CA, review's objects): no exit-time cleanup (OPENSSL_cleanup frees only what the
// exit frees anyway: ~1 ms at a profile's exit), and Hash_DRBG over SHA-256 as its random
// generators instead of the default CTR_DRBG over AES-256. Both are SP 800-90A generators of
// 256-bit strength; SHA-256 is fetched anyway, while the cipher's first fetch builds OpenSSL's
// whole cipher method table (1.1-1.4 ms of CPU against 0.2 ms, first RAND_priv_bytes in a bare
// C program against the same static OpenSSL 3.0). Without a later use this costs a few locks:
// no config is read and no provider loaded. False when the generator type was not taken.
bool prepare_openssl();

struct CaOptions {
  // Names the CA may sign for: "api.github.com" or "*.github.com" (labels below only).
  std::vector<std::string> hosts;
  // A learning run: any DNS name (no permitted subtree; every address still excluded).
  bool any_name = false;
  std::chrono::seconds backdate{3600};  // clock skew in the box
  std::chrono::seconds lifetime{24 * 3600};
  std::string common_name = "agentbox session CA";
};

struct Leaf {
  ossl::X509Ptr cert;
  ossl::PkeyPtr key;  // a reference to the session leaf key
  std::string host;
};

class SessionCa {
 public:
  [[nodiscard]] static base::Result<SessionCa> create(const CaOptions& options);

  // True when `host` (canonical) is one of the names the CA may mint for.
  [[nodiscard]] bool permits(std::string_view host) const;
  // The cached leaf for `host`, minted on first use; error if !permits(host).
  [[nodiscard]] base::Result<std::shared_ptr<const Leaf>> leaf_for(std::string_view host);
  // Mints without the permits() check (tests prove the name constraints still bite).
  [[nodiscard]] base::Result<std::shared_ptr<const Leaf>> mint_unchecked(std::string_view host);

  [[nodiscard]] X509* cert() const { return cert_.get(); }
  [[nodiscard]] std::string pem() const;
  [[nodiscard]] size_t cached_leaves() const { return leaves_.size(); }
  // False until the first leaf: a session that intercepts nothing makes one key, not two.
  [[nodiscard]] bool leaf_key_made() const { return leaf_key_ != nullptr; }

 private:
  SessionCa() = default;
  CaOptions options_;
  std::time_t created_ = 0;
  std::vector<policy::HostPattern> patterns_;
  ossl::PkeyPtr key_;
  ossl::PkeyPtr leaf_key_;  // every leaf's key, made by the first leaf
  ossl::X509Ptr cert_;
  std::map<std::string, std::shared_ptr<const Leaf>, std::less<>> leaves_;
};

inline constexpr const char* kSystemBundle = "/etc/ssl/certs/ca-certificates.crt";

}  // namespace agentbox::proxy
