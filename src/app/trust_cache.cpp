// The JVM truststore's system part, cached per user (see trust_cache.hpp).
#include "agentbox/app/trust_cache.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "agentbox/base/log.hpp"
#include "agentbox/base/sys.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/proxy/trust_store.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;
using base::UniqueFd;

namespace {

constexpr std::string_view kMagic = "agentbox jvm-roots 1";
constexpr size_t kMaxCacheBytes = 8u << 20;  // ~170 KB for a distribution's bundle

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    return {};
  }
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += fmt::format("{:02x}", md[i]);
  }
  return out;
}

// Only this user may have written it: owned by us, writable by no one else.
bool ours_alone(const struct stat& st) {
  return st.st_uid == ::geteuid() && (st.st_mode & 022) == 0;
}

bool inside(const std::string& path, const std::string& root) {
  return path == root || root == "/" ||
         (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
          path[root.size()] == '/');
}

// Empty when `dir` can hold the cache (made 0700 if missing), else why not.
std::string usable_dir(const TrustCache& cache) {
  if (cache.dir.empty()) {
    return "no cache directory";
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(cache.dir).parent_path(), ec);
  if (::mkdir(cache.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return fmt::format("cannot create {}: {}", cache.dir, std::strerror(errno));
  }
  struct stat st {};
  if (::lstat(cache.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || !ours_alone(st)) {
    return fmt::format("{} is not a directory of this user's alone", cache.dir);
  }
  char real[PATH_MAX];
  if (::realpath(cache.dir.c_str(), real) == nullptr) {
    return fmt::format("cannot resolve {}", cache.dir);
  }
  for (const auto& root : cache.box_writable) {
    if (inside(real, root)) {
      return fmt::format("{} is inside `{}`, which the box can write", real, root);
    }
  }
  return {};
}

// The payload when `text` (the cache file) is one for `bundle_digest` and intact, else why not.
Result<std::string> parse_entry(std::string_view text, const std::string& bundle_digest) {
  const size_t end = text.find("\n\n");
  if (end == std::string_view::npos) {
    return Error::msg("no header");
  }
  const std::string_view payload = text.substr(end + 2);
  const std::string want = fmt::format("{}\nbundle-sha256 {}\npayload-sha256 {}", kMagic,
                                       bundle_digest, sha256_hex(payload));
  if (text.substr(0, end) != want) {
    return Error::msg("stale or corrupt (digests differ)");
  }
  return std::string(payload);
}

Result<std::string> read_entry(const std::string& path, const std::string& bundle_digest) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return Error::sys(errno, "open", path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || !ours_alone(st)) {
    return Error::msg("not a regular file of this user's alone");
  }
  auto text = base::read_all(fd.get(), kMaxCacheBytes);
  if (!text) {
    return std::move(text).error();
  }
  return parse_entry(*text, bundle_digest);
}

// Written aside and renamed over: a reader sees the old file or the new one, never half.
void write_entry(const std::string& path, const std::string& bundle_digest,
                 const std::string& payload) {
  const std::string tmp = fmt::format("{}.{}.tmp", path, ::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  const std::string head = fmt::format("{}\nbundle-sha256 {}\npayload-sha256 {}\n\n", kMagic,
                                       bundle_digest, sha256_hex(payload));
  if (!fd || !base::write_all(fd.get(), head) || !base::write_all(fd.get(), payload) ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
    base::log::debug("JVM truststore cache: cannot write {}: {}", path, std::strerror(errno));
    ::unlink(tmp.c_str());
  }
}

}  // namespace

Result<SystemBags> system_trusted_bags(const std::string& bundle_path, const TrustCache& cache) {
  auto text = base::read_file(bundle_path, 16u << 20);
  if (!text) {
    return std::move(text).error().context("building the box's Java truststore");
  }
  SystemBags out;
  const std::string digest = sha256_hex(*text);
  const std::string dir_problem = usable_dir(cache);
  out.why = dir_problem;
  const std::string path =
      fmt::format("{}/jvm-roots-{}.bin", cache.dir, sha256_hex(bundle_path).substr(0, 16));
  if (dir_problem.empty()) {
    auto hit = read_entry(path, digest);
    if (hit) {
      out.der = std::move(*hit);
      out.use = CacheUse::kHit;
      return out;
    }
    out.why = hit.error().message();
  }
  // Parsed from the bytes just hashed: the entry describes exactly what it was built from.
  auto certs = proxy::parse_pem_certs(*text, bundle_path);
  if (!certs) {
    return std::move(certs).error().context("building the box's Java truststore");
  }
  std::vector<X509*> raw;
  for (const auto& c : *certs) {
    raw.push_back(c.get());
  }
  AGENTBOX_ASSIGN_OR_RETURN(out.der, proxy::trusted_bags(raw, "agentbox-"));
  if (dir_problem.empty()) {
    write_entry(path, digest, out.der);
    out.use = CacheUse::kBuilt;
  }
  return out;
}

std::string trust_cache_dir(const std::string& xdg_cache_home, const std::string& home) {
  const std::string base =
      !xdg_cache_home.empty() && xdg_cache_home[0] == '/' ? xdg_cache_home : home + "/.cache";
  return base + "/agentbox/trust";
}

}  // namespace agentbox::app
