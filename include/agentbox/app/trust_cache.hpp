// The system roots' part of the box's JVM truststore, kept between sessions (issue 15).
//
// Theory of operation: turning the host's PEM bundle (~140 roots) into PKCS#12 certificate bags
// costs ~60-100 ms of CPU with OpenSSL 3, almost all of it parsing the certificates; the result
// depends on the bundle's bytes only. It is kept in a per-user cache directory (0700) as one file
// per bundle path: a short text header (format, SHA-256 of the bundle's bytes, SHA-256 of the
// payload) and the payload, the DER of the bags (proxy::trusted_bags). A session hashes the
// bundle (~1 ms) and uses the file only when both digests match; anything else (another bundle,
// a torn or corrupt write, a header that does not parse, a file or directory that is not the
// user's alone, a link) is ignored and the part is built again and written aside, then renamed
// over. The session CA and trust_ca files are never cached: they join per session.
//
// Why this is safe to trust: the cache holds nothing the bundle does not, and the only writers
// are this user's processes outside the box, which can already change what agentbox runs
// (its config, the user's shell). The box must never be one of them: the cache is used only when
// its directory is outside every path the box is shown writable (the workspace, rw grants), so a
// workspace that contains it (e.g. HOME) turns the cache off for that session. The digests are not
// a signature and are not meant as one: they catch staleness and corruption, not the user.
#pragma once

#include <string>
#include <vector>

#include "agentbox/base/result.hpp"

namespace agentbox::app {

struct TrustCache {
  std::string dir;                        // empty: no cache (always build)
  std::vector<std::string> box_writable;  // canonical host paths the box can write
};

enum class CacheUse {
  kOff,    // no usable cache directory: built, not kept
  kHit,    // read from the cache
  kBuilt,  // built and written to the cache
};

struct SystemBags {
  std::string der;  // proxy::trusted_bags() of the bundle's certificates
  CacheUse use = CacheUse::kOff;
  std::string why;  // why the cache was off or not used (for -v), empty on a hit
};

// The trusted bags of every certificate in `bundle_path` (aliases "agentbox-N").
[[nodiscard]] base::Result<SystemBags> system_trusted_bags(const std::string& bundle_path,
                                                           const TrustCache& cache);

// $XDG_CACHE_HOME/agentbox/trust, or HOME/.cache/agentbox/trust.
[[nodiscard]] std::string trust_cache_dir(const std::string& xdg_cache_home,
                                          const std::string& home);

}  // namespace agentbox::app
