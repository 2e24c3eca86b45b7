// PEM certificates in and out: the box's trust bundle (see trust_store.hpp; the JVM's store is
// jdk_store.cpp).
#include "agentbox/proxy/trust_store.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>

#include "agentbox/base/sys.hpp"

namespace agentbox::proxy {

namespace {

struct CopiedBundle {
  base::UniqueFd fd;     // the output, positioned at its end
  bool newline = false;  // the system bundle did not end with one: add it
};

// The system bundle copied into a new `out_path` by sendfile(2): the ~220 KiB never pass through
// this process's memory (reading them cost ~55 page faults per session).
base::Result<CopiedBundle> copy_system_bundle(const std::string& from, const std::string& to) {
  AGENTBOX_ASSIGN_OR_RETURN(base::UniqueFd in, base::open_fd(from, O_RDONLY));
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) {
    return base::Error::sys(errno, "fstat", from);
  }
  if (!S_ISREG(st.st_mode)) {
    return base::Error::msg(fmt::format("`{}` is not a regular file", from));
  }
  CopiedBundle out;
  AGENTBOX_ASSIGN_OR_RETURN(out.fd,
                            base::open_fd(to, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644));
  const auto size = static_cast<size_t>(st.st_size);
  off_t offset = 0;
  // Bounded: each call copies at least a byte or ends the loop.
  while (static_cast<size_t>(offset) < size) {
    const ssize_t n = base::retry_eintr([&] {
      return ::sendfile(out.fd.get(), in.get(), &offset, size - static_cast<size_t>(offset));
    });
    if (n < 0) {
      return base::Error::sys(errno, "sendfile", from);
    }
    if (n == 0) {
      break;  // the file shrank meanwhile: what was there is copied
    }
  }
  char last = '\n';
  if (offset > 0 && ::pread(in.get(), &last, 1, offset - 1) != 1) {
    return base::Error::sys(errno, "pread", from);
  }
  out.newline = last != '\n';
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
    return base::Error::msg(fmt::format("BIO_new_mem_buf: {}", ossl::drain_errors()));
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

base::Status write_trust_bundle(const std::string& system_bundle, const std::vector<X509*>& extra,
                                const std::string& out_path) {
  auto copied = copy_system_bundle(system_bundle, out_path);
  if (!copied) {
    return std::move(copied)
        .error()
        .context("building the box's trust bundle")
        .hint("install the distribution's CA bundle (Debian: ca-certificates)");
  }
  std::string tail = copied->newline ? "\n" : "";
  for (X509* cert : extra) {
    std::array<char, 256> name{};
    X509_NAME_oneline(X509_get_subject_name(cert), name.data(), static_cast<int>(name.size()));
    tail += fmt::format("# agentbox: {}\n", name.data());
    tail += cert_pem(cert);
  }
  auto r = base::write_all(copied->fd.get(), tail);
  if (!r) {
    return std::move(r).error().context(fmt::format("writing `{}`", out_path));
  }
  return base::ok();
}

}  // namespace agentbox::proxy
