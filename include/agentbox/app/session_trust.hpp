// What the box trusts, and where its programs find it: the system roots, the session CA (when
// something is intercepted) and the user's `trust_ca` files, in every form the box's clients read.
//
// Theory of operation: make_box_trust() runs in the supervisor before the box exists. It writes
// the PEM bundle (system roots + extras), a hashed certificate directory (the extras, `openssl
// rehash` names) and a PKCS#12 truststore for the JVM (the same certificates) into a private
// folder on a tmpfs ($XDG_RUNTIME_DIR when it is one, else /dev/shm; the session folder when
// neither is: an ext4 inode per file cost more than the rest of the writing), and returns the
// read-only overlays that show them in the box and the trust variables that point at the
// bundle. All of it is removed when the box is gone (remove_box_trust).
//
// The JVM reads neither the PEM bundle nor SSL_CERT_FILE: its default truststore is the file
// `cacerts`. The truststore is bound over the distributions' cacerts files and every JDK's
// `lib/security/cacerts` found under /usr/lib/jvm, /usr/lib64/jvm, /opt/java and $JAVA_HOME,
// rather than named in JAVA_TOOL_OPTIONS (-Djavax.net.ssl.trustStore): every JVM prints
// "Picked up JAVA_TOOL_OPTIONS" on stderr (noise for the agent, and tools that parse
// `java -version` break), a program that reads cacerts by path (keytool -cacerts, build tools
// that load it themselves) would not see the property, and a child started with a cleaned
// environment (`env -i`, some build daemons) would lose it. The cost: a JDK elsewhere (unpacked
// into the workspace) keeps its own cacerts; -Djavax.net.ssl.trustStore=/etc/agentbox/cacerts.p12
// points it at the session's store. The store is built only when a JVM can use it
// (jvm_reachable), and written straight from the bundle's DER without parsing a certificate or
// building OpenSSL's ASN.1 objects (proxy::write_jdk_trust_store: ~1 ms where parsing cost
// 60-100 ms), so nothing is cached and nothing outlives the session folder.
#pragma once

#include <openssl/types.h>

#include <string>
#include <utility>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

inline constexpr const char* kBoxJavaStore = "/etc/agentbox/cacerts.p12";

struct TrustInputs {
  std::string system_bundle;   // the host's PEM bundle
  X509* session_ca = nullptr;  // null: nothing is intercepted
  // `trust_ca` files (paths as given, `~` expanded) and where each was named, for errors.
  std::vector<std::pair<std::string, std::string>> trust_ca;
  std::string java_home;    // the caller's JAVA_HOME, may be empty
  std::string path;         // the caller's PATH (is a `java` there?)
  std::string runtime_dir;  // the caller's XDG_RUNTIME_DIR, may be empty
  std::string session_dir;  // the session folder (written into when no tmpfs is at hand)
};

struct BoxTrust {
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<sandbox::Overlay> overlays;
  bool java_store = false;  // the JVM truststore was built (a JVM can use it)
  // What was written, each directory after its files (the tmpfs folder last): removed when the
  // box is gone (remove_box_trust), so no store outlives its session.
  std::vector<std::string> written;
};

// Nothing to add (no CA, no trust_ca): an empty BoxTrust, and the box's stores stay as they are.
[[nodiscard]] base::Result<BoxTrust> make_box_trust(const TrustInputs& in);

// Removes what make_box_trust wrote (`written`); a failure is logged at debug level, not fatal.
void remove_box_trust(const std::vector<std::string>& written);

// Whether a JVM in the box can read the JVM truststore, decided before the box starts: the host
// has a JDK's or the distribution's cacerts (java_trust_store_files: a JDK under /usr/lib/jvm,
// /opt/java..., or ca-certificates-java, which every Debian JDK pulls in), or the caller sets
// JAVA_HOME, or `java` is on the caller's PATH (an SDKMAN or unpacked JDK). Otherwise no store
// is built (~60-100 ms saved per session) and /etc/agentbox/cacerts.p12 does not exist.
[[nodiscard]] bool jvm_reachable(const std::string& java_home, const std::string& path_var,
                                 bool host_stores);

// The JVM truststore files on this host that the session's store is bound over (links
// resolved, each once).
[[nodiscard]] std::vector<std::string> java_trust_store_files(const std::string& java_home);

}  // namespace agentbox::app
