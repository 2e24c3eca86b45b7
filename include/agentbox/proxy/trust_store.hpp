// The trust material the box sees, in the forms its clients read: a PEM bundle (OpenSSL, Go,
// Python, Node, curl, git) and a PKCS#12 truststore (the JVM's cacerts format).
//
// Theory of operation: the supervisor reads the system bundle and the user's --trust-ca files
// once, adds the session CA (when something is intercepted), and writes both forms into the
// session folder; app binds them over the distributions' paths. Nothing here is secret: the
// files hold certificates only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/proxy/openssl_ptr.hpp"

namespace agentbox::proxy {

// Every certificate in a PEM file (other PEM blocks are skipped). An unreadable file, or one
// without a certificate, is an error naming it.
[[nodiscard]] base::Result<std::vector<ossl::X509Ptr>> read_pem_certs(const std::string& path);
// The same from text already read (`path` names it in errors).
[[nodiscard]] base::Result<std::vector<ossl::X509Ptr>> parse_pem_certs(std::string_view text,
                                                                       const std::string& path);

// The box's PEM trust bundle: the system bundle (e.g. /etc/ssl/certs/ca-certificates.crt)
// followed by `extra` (the session CA, --trust-ca certificates), each under a comment line.
[[nodiscard]] base::Result<std::string> merged_trust_bundle(const std::string& system_bundle,
                                                            const std::vector<X509*>& extra);

// PEM text of one certificate (empty if OpenSSL cannot encode it).
[[nodiscard]] std::string cert_pem(X509* cert);

// A PKCS#12 truststore as the JDK reads one (keytool -importcert, or OpenSSL 3.2's
// `pkcs12 -jdktrust`): one unencrypted certificate bag per certificate, each with a
// friendlyName (the JDK's alias) and Oracle's trustedKeyUsage attribute (without it the JDK
// ignores a certificate that has no private key), and a SHA-256 MAC under the JDK's default
// cacerts password "changeit". The JDK loads it with or without that password.
[[nodiscard]] base::Result<std::string> pkcs12_trust_store(const std::vector<X509*>& certs);

// The same in parts, so the system roots and the session's certificates are encoded apart:
// trusted_bags() encodes `certs` as one unencrypted PKCS#7 data item of trusted certificate bags
// (DER; aliases `alias_prefix` + index, which must differ between parts), and pkcs12_from_bags()
// joins such items into a store under the MAC (each item is re-read only as an octet string).
[[nodiscard]] base::Result<std::string> trusted_bags(const std::vector<X509*>& certs,
                                                     std::string_view alias_prefix);
[[nodiscard]] base::Result<std::string> pkcs12_from_bags(const std::vector<std::string>& parts);

// trusted_bags() of every certificate in PEM text, byte for byte the same, without parsing them:
// each block is base64-decoded and its DER put into the bag as it is (~3 ms for a distribution's
// ~140 roots, where parsing them costs 60-100 ms with OpenSSL 3). A block that is not one DER
// SEQUENCE is skipped; no block at all is an error naming `path`. For the system bundle (root's
// file, which the JDK parses when it loads the store); user files go through parse_pem_certs.
[[nodiscard]] base::Result<std::string> trusted_bags_pem(std::string_view pem,
                                                         std::string_view alias_prefix,
                                                         const std::string& path);

inline constexpr const char* kJdkStorePassword = "changeit";

}  // namespace agentbox::proxy
