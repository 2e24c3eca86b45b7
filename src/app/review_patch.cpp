// Review mode: `agentbox diff --patch`, the session's changes as a patch `git apply` takes.
//
// git's format, written here around diffutils' hunks (review_diff.cpp says why diffutils): a
// `diff --git` header per path, the mode lines git reads (new file, deleted file, old/new mode),
// an `index` line with both blob ids, then the unified hunks. Symlinks are mode 120000 with the
// link text as content; a change of type (file to symlink) is a deletion and an addition, as git
// writes it. Binary files use git's `GIT binary patch` literal form (zlib deflate, git's base85),
// which `git apply` accepts only with full blob ids on the `index` line: both are computed
// (SHA-1 of "blob SIZE\0" and the bytes), and git checks the old one against the real file.
// Dangerous changes are left out unless named, as `apply` does: each one left out is a line on
// stderr, so a patch piped into `git apply` never carries one silently.
#include <fcntl.h>
#include <fmt/core.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <string>

#include "agentbox/app/review.hpp"
#include "agentbox/base/sys.hpp"

namespace agentbox::app {

using base::Error;

namespace {

// Larger files are refused in a patch: `agentbox apply` lands them without holding them in memory.
constexpr size_t kMaxPatchFile = 64u << 20;

struct Side {
  bool exists = false;
  bool link = false;
  mode_t mode = 0;      // permission bits
  std::string content;  // the bytes, or the link text
};

base::Result<Side> side(const std::string& path) {
  Side s;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return s;
    }
    return Error::sys(errno, "lstat", path);
  }
  s.exists = true;
  s.mode = st.st_mode & 07777;
  if (S_ISLNK(st.st_mode)) {
    s.link = true;
    std::array<char, 4096> buf{};
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) {
      return Error::sys(errno, "readlink", path);
    }
    s.content.assign(buf.data(), size_t(n));
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    return Error::msg(fmt::format("`{}` is not a regular file or a symlink", shown(path)));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxPatchFile) {
    return Error::msg(fmt::format("`{}` is larger than {} MiB", shown(path), kMaxPatchFile >> 20))
        .hint("land it with `agentbox apply`, which has no size limit");
  }
  AGENTBOX_ASSIGN_OR_RETURN(s.content, base::read_file(path, kMaxPatchFile));
  return s;
}

// git's file modes: 120000 for a symlink, 100755 when the owner may execute, else 100644.
std::string git_mode(const Side& s) {
  if (s.link) {
    return "120000";
  }
  return (s.mode & S_IXUSR) != 0 ? "100755" : "100644";
}

std::string blob_id(const Side& s) {
  if (!s.exists) {
    return std::string(40, '0');
  }
  std::string head = fmt::format("blob {}", s.content.size());
  head.push_back('\0');
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr);
  EVP_DigestUpdate(ctx, head.data(), head.size());
  EVP_DigestUpdate(ctx, s.content.data(), s.content.size());
  EVP_DigestFinal_ex(ctx, md.data(), &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += fmt::format("{:02x}", md[i]);
  }
  return hex;
}

// git's rule: a NUL byte in the first 8000 bytes makes content binary.
bool binary(const Side& s) {
  return !s.link && s.content.find('\0') < 8000;
}

// git's base85 alphabet and line format: a length byte ('A'-'Z' = 1-26, 'a'-'z' = 27-52), then
// the line's bytes in groups of four, five characters each (big-endian, the last group padded).
std::string base85_lines(const std::string& data) {
  static constexpr std::string_view kAlphabet =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
  std::string out;
  for (size_t off = 0; off < data.size(); off += 52) {
    size_t n = std::min<size_t>(52, data.size() - off);
    out.push_back(n <= 26 ? char('A' + n - 1) : char('a' + n - 27));
    for (size_t i = 0; i < n; i += 4) {
      uint32_t acc = 0;
      for (size_t k = 0; k < 4; ++k) {
        size_t at = off + i + k;
        acc = (acc << 8) | (i + k < n ? static_cast<unsigned char>(data[at]) : 0u);
      }
      std::array<char, 5> group{};
      for (int k = 4; k >= 0; --k) {
        group[size_t(k)] = kAlphabet[acc % 85];
        acc /= 85;
      }
      out.append(group.data(), group.size());
    }
    out.push_back('\n');
  }
  return out;
}

base::Result<std::string> deflate(const std::string& data) {
  uLongf len = compressBound(data.size());
  std::string out(len, '\0');
  int rc = compress2(reinterpret_cast<Bytef*>(out.data()), &len,
                     reinterpret_cast<const Bytef*>(data.data()), data.size(), Z_BEST_COMPRESSION);
  if (rc != Z_OK) {
    return Error::msg(fmt::format("deflate failed (zlib status {})", rc));
  }
  out.resize(len);
  return out;
}

// One side's lines as a hunk body: `sign` before each, git's marker after a last line without
// a newline.
std::string hunk_lines(char sign, const std::string& text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    bool last = nl == std::string::npos;
    out += sign;
    out.append(text, pos, last ? std::string::npos : nl - pos);
    out += '\n';
    if (last) {
      out += "\\ No newline at end of file\n";
      break;
    }
    pos = nl + 1;
  }
  return out;
}

size_t line_count(const std::string& text) {
  size_t n = size_t(std::count(text.begin(), text.end(), '\n'));
  return n + (!text.empty() && text.back() != '\n' ? 1 : 0);
}

// The hunks between two text sides. A whole-file hunk when one side is empty or a symlink (what
// git writes there too); diffutils' hunks otherwise.
base::Status text_hunks(const std::string& rel, const std::string& old_path, const Side& a,
                        const std::string& new_path, const Side& b) {
  std::string la = a.exists ? "a/" + rel : "/dev/null";
  std::string lb = b.exists ? "b/" + rel : "/dev/null";
  if (a.content == b.content) {
    return {};
  }
  if (a.content.empty() || b.content.empty() || a.link || b.link) {
    size_t na = line_count(a.content);
    size_t nb = line_count(b.content);
    fmt::print("--- {}\n+++ {}\n@@ -{} +{} @@\n{}{}", la, lb,
               na == 0   ? "0,0"
               : na == 1 ? "1"
                         : fmt::format("1,{}", na),
               nb == 0   ? "0,0"
               : nb == 1 ? "1"
                         : fmt::format("1,{}", nb),
               hunk_lines('-', a.content), hunk_lines('+', b.content));
    return {};
  }
  return unified_diff(rel, old_path, new_path);
}

base::Status binary_hunk(const Side& b) {
  AGENTBOX_ASSIGN_OR_RETURN(std::string z, deflate(b.content));
  fmt::print("GIT binary patch\nliteral {}\n{}\n", b.content.size(), base85_lines(z));
  return {};
}

// Names git writes quoted ("a/\\tx"): control bytes, `"` and `\\`. They are left out rather
// than written in a form `git apply` would read as another name. Non-ASCII bytes are written
// raw, which git apply reads as they are.
bool needs_quoting(std::string_view rel) {
  return std::any_of(rel.begin(), rel.end(), [](char ch) {
    auto u = static_cast<unsigned char>(ch);
    return u < 0x20 || u == 0x7f || ch == '"' || ch == '\\';
  });
}

// One path, old side `a` (the real workspace) to new side `b` (the upper directory).
base::Status one_path(const std::string& rel, const std::string& old_path, const Side& a,
                      const std::string& new_path, const Side& b) {
  std::string shown_rel = shown(rel);
  if (a.exists && b.exists && a.link != b.link) {
    // A change of type is two patches in git's format: the old entry goes, the new one comes.
    AGENTBOX_TRY(one_path(rel, old_path, a, "/dev/null", Side{}));
    return one_path(rel, "/dev/null", Side{}, new_path, b);
  }
  if (a.exists && b.exists && git_mode(a) == git_mode(b) && a.content == b.content) {
    return {};  // a change git does not see (permission bits other than the owner's x)
  }
  fmt::print("diff --git a/{0} b/{0}\n", shown_rel);
  std::string mode_tail;
  if (!a.exists) {
    fmt::print("new file mode {}\n", git_mode(b));
  } else if (!b.exists) {
    fmt::print("deleted file mode {}\n", git_mode(a));
  } else if (git_mode(a) != git_mode(b)) {
    fmt::print("old mode {}\nnew mode {}\n", git_mode(a), git_mode(b));
  } else {
    mode_tail = " " + git_mode(a);
  }
  if (a.exists && b.exists && a.content == b.content) {
    return {};  // a mode change only: the header is the whole patch
  }
  fmt::print("index {}..{}{}\n", blob_id(a), blob_id(b), mode_tail);
  if (binary(a) || binary(b)) {
    return binary_hunk(b);
  }
  return text_hunks(rel, old_path, a, new_path, b);
}

}  // namespace

base::Result<size_t> print_patch(const Review& r, const std::vector<std::string>& paths) {
  AGENTBOX_ASSIGN_OR_RETURN(std::vector<Change> changes, scan(r));
  size_t left_out = 0;
  for (const auto& c : changes) {
    if (!paths.empty() && !selected(c.path, paths)) {
      continue;
    }
    if (c.type == EntryType::kDir) {
      continue;  // git tracks no directories: their files carry them
    }
    if (!c.danger.empty() && std::find(paths.begin(), paths.end(), c.path) == paths.end()) {
      fmt::print(stderr, "agentbox: held {} (dangerous: {}): name it to include it\n",
                 shown(c.path), c.danger);
      ++left_out;
      continue;
    }
    if (c.type == EntryType::kOther) {
      fmt::print(stderr, "agentbox: left out {}: a special file has no patch form\n",
                 shown(c.path));
      ++left_out;
      continue;
    }
    if (needs_quoting(c.path)) {
      fmt::print(stderr, "agentbox: left out {}: git would quote its name\n", shown(c.path));
      ++left_out;
      continue;
    }
    std::string old_path = r.workspace + "/" + c.path;
    std::string new_path = r.upper + "/" + c.path;
    Side a;
    Side b;
    if (c.kind != ChangeKind::kAdded) {
      AGENTBOX_ASSIGN_OR_RETURN(a, side(old_path));
    }
    if (c.kind != ChangeKind::kDeleted) {
      AGENTBOX_ASSIGN_OR_RETURN(b, side(new_path));
    }
    AGENTBOX_TRY(one_path(c.path, a.exists ? old_path : "/dev/null", a,
                          b.exists ? new_path : "/dev/null", b));
  }
  std::fflush(stdout);
  return left_out;
}

}  // namespace agentbox::app
