// Capture rules: XML field extraction, minting actions, file write-back (see capture.hpp).
#include "agentbox/cred/capture.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "agentbox/base/unique_fd.hpp"
#include "agentbox/http/text.hpp"

namespace agentbox::cred {

namespace {

// AWS query actions that hand back a secret nobody asked the proxy to capture: IAM keys,
// console passwords, SSH/signing material, MFA seeds, and STS temporary credentials.
constexpr std::array<std::string_view, 13> kMintingActions = {
    "CreateAccessKey",
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "CreateServiceSpecificCredential",
    "ResetServiceSpecificCredential",
    "CreateVirtualMFADevice",
    "UploadSSHPublicKey",
    "UploadSigningCertificate",
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
    "GetSessionToken",
    "GetFederationToken",
};

// One form component, percent-decoded ('+' is a space); a bad escape stays as it is.
std::string form_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && http::detail::hex_value(s[i + 1]) >= 0 &&
        http::detail::hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(http::detail::hex_value(s[i + 1]) * 16 +
                                      http::detail::hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

// The value of `Action` in an application/x-www-form-urlencoded string, percent-decoded.
std::optional<std::string> action_param(std::string_view form) {
  size_t pos = 0;
  while (pos <= form.size()) {
    size_t end = form.find('&', pos);
    end = end == std::string_view::npos ? form.size() : end;
    const std::string_view pair = form.substr(pos, end - pos);
    const size_t eq = pair.find('=');
    if (eq != std::string_view::npos && form_decode(pair.substr(0, eq)) == "Action") {
      return form_decode(pair.substr(eq + 1));
    }
    pos = end + 1;
  }
  return std::nullopt;
}

bool minting(const std::string& action) {
  return std::find(kMintingActions.begin(), kMintingActions.end(), action) != kMintingActions.end();
}

base::Status write_all(int fd, std::string_view text, const std::string& path) {
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return base::Error::sys(errno, "write", path);
    }
    off += static_cast<size_t>(n);
  }
  return base::ok();
}

}  // namespace

base::Result<std::optional<std::string>> xml_element(std::string_view text, std::string_view name) {
  const std::string open = fmt::format("<{}>", name);
  const std::string close = fmt::format("</{}>", name);
  const size_t start = text.find(open);
  if (start == std::string_view::npos) {
    return std::optional<std::string>();
  }
  const size_t from = start + open.size();
  const size_t end = text.find(close, from);
  if (end == std::string_view::npos) {
    return base::Error::msg(fmt::format("<{}> is not closed", name));
  }
  std::string_view value = text.substr(from, end - from);
  // A secret is plain text; markup or an entity would mean the proxy and the client read
  // different values (and the client's copy would escape the scrubber).
  if (value.find_first_of("<&") != std::string_view::npos) {
    return base::Error::msg(fmt::format("<{}> holds markup or an entity", name));
  }
  value = http::detail::trim_ows(value);
  return std::optional<std::string>(std::string(value));
}

std::optional<std::string> minting_action(std::string_view target, std::string_view content_type,
                                          std::string_view body) {
  if (const size_t q = target.find('?'); q != std::string_view::npos) {
    auto a = action_param(target.substr(q + 1, target.find('#', q) - q - 1));
    if (a && minting(*a)) {
      return a;
    }
  }
  const std::string_view form = "application/x-www-form-urlencoded";
  if (content_type.size() >= form.size() &&
      std::equal(form.begin(), form.end(), content_type.begin(),
                 [](char a, char b) { return a == (b | 0x20); })) {
    auto a = action_param(body);
    if (a && minting(*a)) {
      return a;
    }
  }
  return std::nullopt;
}

base::Status replace_file_atomically(const std::string& path, std::string_view text) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return base::Error::sys(errno, "stat", path);
  }
  const std::string tmp = fmt::format("{}.agentbox-{}", path, ::getpid());
  base::UniqueFd fd(
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) {
    return base::Error::sys(errno, "open", tmp);
  }
  // Owner first (chown clears set-id bits), then the mode: the user's file keeps both.
  base::Status st_write = write_all(fd.get(), text, tmp);
  if (st_write && ::fchown(fd.get(), st.st_uid, st.st_gid) != 0 && errno != EPERM) {
    st_write = base::Error::sys(errno, "fchown", tmp);
  }
  if (st_write && ::fchmod(fd.get(), st.st_mode & 07777) != 0) {
    st_write = base::Error::sys(errno, "fchmod", tmp);
  }
  if (st_write && ::fsync(fd.get()) != 0) {
    st_write = base::Error::sys(errno, "fsync", tmp);
  }
  if (st_write && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st_write = base::Error::sys(errno, "rename", tmp);
  }
  if (!st_write) {
    ::unlink(tmp.c_str());
  }
  return st_write;
}

base::Status rewrite_in_place(const std::string& path, std::string_view text) {
  base::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    return base::Error::sys(errno, "open", path);
  }
  return write_all(fd.get(), text, path);
}

}  // namespace agentbox::cred
