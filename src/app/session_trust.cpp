// The box's trust material: PEM bundle, hashed directory, JVM truststore (see session_trust.hpp).
#include "agentbox/app/session_trust.hpp"

#include <fmt/format.h>
#include <glob.h>
#include <linux/magic.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "agentbox/app/session_proxy.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/base/sys.hpp"
#include "agentbox/proxy/trust_store.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;

namespace {

// Where distributions keep the JVM's default truststore (the JDK's lib/security/cacerts is
// often a link to one of these).
const std::vector<std::string>& java_store_paths() {
  static const std::vector<std::string> paths = {
      "/etc/ssl/certs/java/cacerts",               // Debian, Ubuntu, Arch (ca-certificates-java)
      "/etc/pki/ca-trust/extracted/java/cacerts",  // Fedora, RHEL
      "/var/lib/ca-certificates/java-cacerts",     // openSUSE
      "/usr/lib/jvm/*/lib/security/cacerts",       // JDK 9+ packages
      "/usr/lib/jvm/*/jre/lib/security/cacerts",   // JDK 8
      "/usr/lib64/jvm/*/lib/security/cacerts",     // openSUSE, older Fedora
      "/opt/java/*/lib/security/cacerts",          // Temurin images (/opt/java/openjdk)
  };
  return paths;
}

// The real file behind `path` when it is a regular file.
std::optional<std::string> real_file(const std::string& path) {
  char buf[PATH_MAX];
  struct stat st {};
  if (::realpath(path.c_str(), buf) == nullptr || ::stat(buf, &st) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  return std::string(buf);
}

// The hashed directory form (`openssl rehash`), for clients that look certificates up by
// subject hash: HASH.0, HASH.1, ... for subjects that share a hash.
base::Status write_cert_dir(const std::string& dir, const std::vector<X509*>& certs,
                            std::vector<std::string>* written) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Error::sys(errno, "mkdir", dir);
  }
  std::map<unsigned long, int> used;
  for (X509* cert : certs) {
    const unsigned long hash = X509_subject_name_hash(cert);
    std::string file = fmt::format("{}/{:08x}.{}", dir, hash, used[hash]++);
    AGENTBOX_TRY(base::write_file(file, proxy::cert_pem(cert)));
    written->push_back(std::move(file));
  }
  written->push_back(dir);
  return base::ok();
}

// The --trust-ca certificates, each file read once; an error names the file and where it was set.
Result<std::vector<proxy::ossl::X509Ptr>> read_trust_ca(const TrustInputs& in) {
  std::vector<proxy::ossl::X509Ptr> out;
  for (const auto& [path, origin] : in.trust_ca) {
    auto certs = proxy::read_pem_certs(path);
    if (!certs) {
      return std::move(certs).error().context(fmt::format("trust_ca `{}` ({})", path, origin));
    }
    for (auto& c : *certs) {
      out.push_back(std::move(c));
    }
  }
  return out;
}

bool private_tmpfs(const std::string& dir) {
  struct statfs fs {};
  struct stat st {};
  return !dir.empty() && dir[0] == '/' && ::statfs(dir.c_str(), &fs) == 0 &&
         fs.f_type == TMPFS_MAGIC && ::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Where the trust files go: a private folder (0700, made here) on a tmpfs, $XDG_RUNTIME_DIR
// when it is one and ours, else /dev/shm; the session folder when neither is a tmpfs. They are
// written at every start and removed at its end, and on the session folder's ext4 each new
// inode cost a search of the inode bitmap past those that recent sessions freed (perf:
// find_inode_bit, ~0.3-0.5 ms per file at a profile's start); a tmpfs has no such search.
std::string trust_folder(const TrustInputs& in) {
  struct stat st {};
  std::string base = in.runtime_dir;
  if (!private_tmpfs(base) || ::lstat(base.c_str(), &st) != 0 || st.st_uid != ::geteuid() ||
      (st.st_mode & 077) != 0) {
    base = "/dev/shm";
  }
  if (!private_tmpfs(base)) {
    return in.session_dir;
  }
  std::string dir = base + "/agentbox-trust-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    base::log::debug("trust files in the session folder: mkdtemp in `{}`: {}", base,
                     std::strerror(errno));
    return in.session_dir;
  }
  return dir;
}

bool executable_on_path(const std::string& name, const std::string& path_var) {
  size_t start = 0;
  while (start <= path_var.size()) {
    size_t end = path_var.find(':', start);
    end = end == std::string::npos ? path_var.size() : end;
    const std::string dir = path_var.substr(start, end - start);
    if (!dir.empty() && dir[0] == '/' &&
        ::access(fmt::format("{}/{}", dir, name).c_str(), X_OK) == 0) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

}  // namespace

bool jvm_reachable(const std::string& java_home, const std::string& path_var, bool host_stores) {
  return host_stores || !java_home.empty() || executable_on_path("java", path_var);
}

std::vector<std::string> java_trust_store_files(const std::string& java_home) {
  std::vector<std::string> patterns = java_store_paths();
  if (!java_home.empty()) {
    patterns.push_back(java_home + "/lib/security/cacerts");
    patterns.push_back(java_home + "/jre/lib/security/cacerts");
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& p : patterns) {
    glob_t g{};
    if (::glob(p.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) {
        if (auto real = real_file(g.gl_pathv[i]); real && seen.insert(*real).second) {
          out.push_back(*real);
        }
      }
    }
    ::globfree(&g);
  }
  return out;
}

void remove_box_trust(const std::vector<std::string>& written) {
  for (const auto& path : written) {
    if (::remove(path.c_str()) != 0 && errno != ENOENT) {
      base::log::debug("removing `{}`: {}", path, std::strerror(errno));
    }
  }
}

namespace {

// The files and the box's view of them, into `out` (`written` as they are made, so a failure
// half way removes what was written).
base::Status write_box_trust(const TrustInputs& in, const std::vector<X509*>& extra,
                             const std::string& folder, BoxTrust& out) {
  const std::string bundle_path = folder + "/ca-bundle.pem";
  AGENTBOX_TRY(proxy::write_trust_bundle(in.system_bundle, extra, bundle_path));
  out.written.push_back(bundle_path);
  const std::string cert_dir = folder + "/certs";
  AGENTBOX_TRY(write_cert_dir(cert_dir, extra, &out.written));
  const auto java_files = java_trust_store_files(in.java_home);
  const std::string java_path = folder + "/cacerts.p12";
  out.java_store = jvm_reachable(in.java_home, in.path, !java_files.empty());
  if (out.java_store) {
    auto store = proxy::write_jdk_trust_store(in.system_bundle, extra, java_path);
    if (!store) {
      return std::move(store).error().context("building the box's Java truststore");
    }
    out.written.push_back(java_path);
  } else {
    base::log::debug(
        "JVM truststore: not built (no JDK on this host, no JAVA_HOME, no java on "
        "PATH)");
  }

  for (const auto& name : trust_env_names()) {
    out.env.emplace_back(name, kBoxBundle);
  }
  out.env.emplace_back("SSL_CERT_DIR", fmt::format("{}:/etc/ssl/certs", kBoxCertDir));
  out.overlays.push_back({.target = kBoxBundle, .source = bundle_path});
  out.overlays.push_back({.target = kBoxCertDir, .source = cert_dir, .dir = true});
  if (out.java_store) {
    out.overlays.push_back({.target = kBoxJavaStore, .source = java_path});
  }
  // Links (Debian's /usr/lib/ssl/cert.pem, Fedora's ca-bundle.crt, a JDK's cacerts) are
  // resolved: a bind lands on the file they lead to, once.
  std::set<std::string> seen;
  for (const auto& f : trust_store_files()) {
    if (auto real = real_file(f); real && seen.insert(*real).second) {
      out.overlays.push_back({.target = *real, .source = bundle_path});
    }
  }
  for (const auto& f : java_files) {
    if (out.java_store && seen.insert(f).second) {
      out.overlays.push_back({.target = f, .source = java_path});
    }
  }
  return base::ok();
}

}  // namespace

Result<BoxTrust> make_box_trust(const TrustInputs& in) {
  BoxTrust out;
  AGENTBOX_ASSIGN_OR_RETURN(auto trusted, read_trust_ca(in));
  std::vector<X509*> extra;
  if (in.session_ca != nullptr) {
    extra.push_back(in.session_ca);
  }
  for (const auto& c : trusted) {
    extra.push_back(c.get());
  }
  if (extra.empty()) {
    return out;
  }
  const std::string folder = trust_folder(in);
  auto written = write_box_trust(in, extra, folder, out);
  if (folder != in.session_dir) {
    out.written.push_back(folder);  // after its files: removed last
  }
  if (!written) {
    remove_box_trust(out.written);
    return std::move(written).error();
  }
  return out;
}

}  // namespace agentbox::app
