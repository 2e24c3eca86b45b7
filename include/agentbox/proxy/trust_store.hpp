// The trust material the box sees, in the forms its clients read: a PEM bundle (OpenSSL, Go,
// Python, Node, curl, git) and a PKCS#12 truststore (the JVM's cacerts format).
//
// Theory of operation: the supervisor reads the user's --trust-ca files, adds the session CA
// (when something is intercepted) and writes both forms into the session folder, the system
// bundle copied by the kernel (PEM) or mapped and re-encoded without parsing (PKCS#12); app binds
// them over the distributions' paths. Nothing here is secret: the files hold certificates only.
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

// The box's PEM trust bundle, written to `out_path`: the system bundle (e.g.
// /etc/ssl/certs/ca-certificates.crt; its bytes copied by the kernel, never read into this
// process) followed by `extra` (the session CA, --trust-ca certificates), each under a comment
// line.
[[nodiscard]] base::Status write_trust_bundle(const std::string& system_bundle,
                                              const std::vector<X509*>& extra,
                                              const std::string& out_path);

// PEM text of one certificate (empty if OpenSSL cannot encode it).
[[nodiscard]] std::string cert_pem(X509* cert);

// A PKCS#12 truststore as the JDK reads one (keytool -importcert, or OpenSSL 3.2's
// `pkcs12 -jdktrust`), written to `out_path`: every certificate of the PEM file `system_pem`
// (aliases agentbox-0, -1, ...; each block's DER put into its bag as it is, not parsed: the JDK
// parses them when it loads the store; a block that is not one DER SEQUENCE is skipped, none at
// all is an error naming the file), then `extra` (agentbox-session-0, ...), as two unencrypted
// items (a JDK that loads the store without a password skips encrypted ones) of certificate
// bags, each with a friendlyName (the JDK's alias) and Oracle's trustedKeyUsage attribute
// (without it the JDK ignores a certificate that has no private key), under a SHA-256 MAC with
// the JDK's default cacerts password "changeit" (2048 iterations; the JDK loads the store with
// or without that password). Byte for byte what OpenSSL's PKCS12_add_cert, friendlyName,
// attribute, PKCS12_add_safes and PKCS12_set_mac make of the same certificates and salt
// (jdk_store_test), without OpenSSL's ASN.1 objects: ~1 ms and a handful of page faults for a
// distribution's ~140 roots. `salt` (8 bytes) is random when empty.
[[nodiscard]] base::Status write_jdk_trust_store(const std::string& system_pem,
                                                 const std::vector<X509*>& extra,
                                                 const std::string& out_path,
                                                 std::string_view salt = {});

inline constexpr const char* kJdkStorePassword = "changeit";

}  // namespace agentbox::proxy
