// Git metadata readers: config syntax, index gitlinks, gitfiles, the repository's layout.
#include "agentbox/sandbox/git_meta.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdlib>

#include "agentbox/base/unique_fd.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::sandbox {

using base::Error;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) {
    ++b;
  }
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

// `[section]`, `[section "sub"]` or `[section.sub]` at `text[i]` ('['). Returns the prefix
// ("section." or "section.sub.") or "" when malformed; `i` moves past the ']'.
std::string parse_section(std::string_view text, size_t& i) {
  size_t close = text.find(']', i);
  size_t quote = text.find('"', i);
  std::string name;
  std::string sub;
  if (quote != std::string_view::npos && (close == std::string_view::npos || quote < close)) {
    name = lower(trim(text.substr(i + 1, quote - i - 1)));
    size_t j = quote + 1;
    for (; j < text.size() && text[j] != '"' && text[j] != '\n'; ++j) {
      if (text[j] == '\\' && j + 1 < text.size()) {
        ++j;
      }
      sub += text[j];
    }
    close = text.find(']', j);
  } else if (close != std::string_view::npos) {
    std::string whole = trim(text.substr(i + 1, close - i - 1));
    size_t dot = whole.find('.');
    name = lower(whole.substr(0, dot));
    if (dot != std::string::npos) {
      sub = lower(whole.substr(dot + 1));
    }
  }
  if (close == std::string_view::npos || name.empty()) {
    i = text.find('\n', i);
    return {};
  }
  i = close + 1;
  return sub.empty() ? name + "." : name + "." + sub + ".";
}

// A value from `text[i]` to the end of its logical line: quotes, escapes, continuations.
std::string parse_value(std::string_view text, size_t& i) {
  std::string out;
  bool quoted = false;
  size_t keep = 0;  // out's length up to the last quoted or escaped char (kept from the trim)
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      break;
    }
    if (!quoted && (c == '#' || c == ';')) {
      i = text.find('\n', i);
      break;
    }
    if (c == '"') {
      quoted = !quoted;
      keep = out.size();
      continue;
    }
    if (c == '\\' && i + 1 < text.size()) {
      char n = text[++i];
      if (n == '\n') {
        continue;
      }
      out += n == 'n' ? '\n' : n == 't' ? '\t' : n == 'b' ? '\b' : n;
      keep = out.size();
      continue;
    }
    out += c;
    if (quoted) {
      keep = out.size();
    }
  }
  size_t e = out.size();
  while (e > keep && (out[e - 1] == ' ' || out[e - 1] == '\t' || out[e - 1] == '\r')) {
    --e;
  }
  out.resize(e);
  size_t b = 0;
  while (b < out.size() && (out[b] == ' ' || out[b] == '\t')) {
    ++b;
  }
  return out.substr(b);
}

bool starts_with(const std::string& s, std::string_view p) {
  return s.rfind(p, 0) == 0;
}

bool ends_with(const std::string& s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

uint32_t be32(std::string_view s, size_t at) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 3]));
}

std::string dir_of(const std::string& path) {
  auto pos = path.rfind('/');
  return pos == std::string::npos || pos == 0 ? "/" : path.substr(0, pos);
}

std::string canonical(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) != nullptr ? std::string(buf) : std::string();
}

std::string first_line(const std::string& s) {
  return trim(s.substr(0, s.find('\n')));
}

}  // namespace

std::vector<GitConfigEntry> parse_git_config(std::string_view text) {
  std::vector<GitConfigEntry> out;
  std::string prefix;
  size_t i = 0;
  while (i < text.size() && i != std::string_view::npos) {
    char c = text[i];
    if (c == '\n' || c == ' ' || c == '\t' || c == '\r') {
      ++i;
    } else if (c == '#' || c == ';') {
      i = text.find('\n', i);
    } else if (c == '[') {
      prefix = parse_section(text, i);
    } else {
      size_t j = i;
      while (j < text.size() && (std::isalnum(static_cast<unsigned char>(text[j])) != 0 ||
                                 text[j] == '-' || text[j] == '_')) {
        ++j;
      }
      std::string name = lower(text.substr(i, j - i));
      while (j < text.size() && (text[j] == ' ' || text[j] == '\t')) {
        ++j;
      }
      std::string value;
      if (j < text.size() && text[j] == '=') {
        ++j;
        value = parse_value(text, j);
      } else if (j < text.size() && text[j] != '\n' && text[j] != '\r' && text[j] != '#' &&
                 text[j] != ';') {
        name.clear();  // not a key: skip the line
      }
      if (!name.empty() && !prefix.empty()) {
        out.push_back({prefix + name, std::move(value)});
      }
      i = j < text.size() ? text.find('\n', j) : std::string_view::npos;
    }
  }
  return out;
}

bool git_key_runs_code(const std::string& key, const std::string& value) {
  // Exact keys whose value is a command or a program git runs (git-config(1)).
  static const char* const kExact[] = {"core.fsmonitor",
                                       "core.hookspath",
                                       "core.pager",
                                       "core.sshcommand",
                                       "core.editor",
                                       "core.askpass",
                                       "core.gitproxy",
                                       "core.worktree",
                                       "core.alternaterefscommand",
                                       "diff.external",
                                       "credential.helper",
                                       "sequence.editor",
                                       "gpg.program",
                                       "include.path",
                                       "interactive.difffilter",
                                       "web.browser",
                                       "uploadpack.packobjectshook",
                                       "ssh.variant",
                                       "sendemail.smtpserver",
                                       "sendemail.tocmd",
                                       "sendemail.cccmd",
                                       "sendemail.sendmailcmd",
                                       "core.fsmonitorhookversion"};
  for (const char* k : kExact) {
    if (key == k) {
      return true;
    }
  }
  auto section = key.substr(0, key.find('.'));
  auto name = key.substr(key.rfind('.') + 1);
  if (section == "filter" || section == "pager" || section == "includeif") {
    return true;  // filter.X.{clean,smudge,process}; pager.CMD; includeIf.COND.path
  }
  if ((section == "diff" && (name == "command" || name == "textconv")) ||
      (section == "merge" && name == "driver") || (section == "credential" && name == "helper") ||
      (section == "gpg" && name == "program") ||
      ((section == "difftool" || section == "mergetool" || section == "man" ||
        section == "browser") &&
       (name == "cmd" || name == "path")) ||
      (section == "remote" && (name == "receivepack" || name == "uploadpack" || name == "vcs")) ||
      (section == "submodule" && name == "update" && starts_with(value, "!"))) {
    return true;
  }
  if (section == "alias") {
    return starts_with(trim(value), "!");
  }
  if ((section == "remote" && (name == "url" || name == "pushurl")) ||
      (section == "url" && (name == "insteadof" || name == "pushinsteadof"))) {
    return starts_with(value, "ext::") || starts_with(key, "url.ext::");
  }
  return false;
}

std::vector<std::string> index_gitlinks(std::string_view idx, size_t oid_size,
                                        std::string* shared_index) {
  std::vector<std::string> out;
  if (idx.size() < 12 || idx.substr(0, 4) != "DIRC") {
    return out;
  }
  uint32_t version = be32(idx, 4);
  uint32_t count = be32(idx, 8);
  if (version < 2 || version > 4) {
    return out;
  }
  size_t at = 12;
  std::string prev;
  const size_t fixed = 40 + oid_size + 2;  // stat data, the object name, the flags
  for (uint32_t n = 0; n < count; ++n) {
    if (at + fixed > idx.size()) {
      return out;
    }
    uint32_t mode = be32(idx, at + 24);
    size_t flags_at = at + 40 + oid_size;
    auto flags = static_cast<uint16_t>((static_cast<unsigned char>(idx[flags_at]) << 8) |
                                       static_cast<unsigned char>(idx[flags_at + 1]));
    size_t name_at = flags_at + 2 + ((flags & 0x4000) != 0 ? 2 : 0);
    std::string name;
    size_t end = 0;
    if (version == 4) {
      // An offset varint (the bytes to drop from the previous name), then the rest, NUL-ended.
      uint64_t strip = 0;
      size_t p = name_at;
      for (int k = 0; p < idx.size() && k < 10; ++k) {
        auto c = static_cast<unsigned char>(idx[p++]);
        strip = (strip << 7) | (c & 0x7f);
        if ((c & 0x80) == 0) {
          break;
        }
        ++strip;
      }
      size_t nul = idx.find('\0', p);
      if (nul == std::string_view::npos || strip > prev.size()) {
        return out;
      }
      name = prev.substr(0, prev.size() - strip) + std::string(idx.substr(p, nul - p));
      end = nul + 1;
    } else {
      size_t nul = idx.find('\0', name_at);
      if (nul == std::string_view::npos) {
        return out;
      }
      name = std::string(idx.substr(name_at, nul - name_at));
      end = at + ((name_at - at + name.size() + 8) & ~static_cast<size_t>(7));
    }
    if ((mode & 0170000) == 0160000) {
      out.push_back(name);
    }
    prev = std::move(name);
    at = end;
  }
  // Extensions, up to the trailing checksum: only `link` matters here.
  while (shared_index != nullptr && at + 8 + oid_size <= idx.size()) {
    uint32_t size = be32(idx, at + 4);
    if (idx.substr(at, 4) == "link" && size >= oid_size && at + 8 + oid_size <= idx.size()) {
      std::string hex;
      for (size_t k = 0; k < oid_size; ++k) {
        hex += fmt::format("{:02x}", static_cast<unsigned char>(idx[at + 8 + k]));
      }
      *shared_index = hex;
    }
    at += 8 + static_cast<size_t>(size);
  }
  return out;
}

std::string read_small_file(const std::string& path, size_t max) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<size_t>(st.st_size) > max) {
    return {};
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
    if (n <= 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

std::string gitfile_target(std::string_view text, const std::string& dir) {
  std::string line = first_line(std::string(text));
  if (line.rfind("gitdir:", 0) != 0) {
    return {};
  }
  std::string p = trim(line.substr(7));
  if (p.empty()) {
    return {};
  }
  return lexically_normal_abs(p[0] == '/' ? p : dir + "/" + p);
}

namespace {

// A linked worktree's git directory, MAIN/.git/worktrees/NAME, checked both ways: its
// `commondir` names MAIN/.git and its `gitdir` names this workspace's `.git`.
base::Result<GitLayout> linked_worktree(const std::string& workspace, const std::string& gitdir) {
  std::string cd_text = read_small_file(gitdir + "/commondir", 4096);
  std::string named = first_line(cd_text);
  std::string common = canonical(named.empty() || named[0] == '/' ? named : gitdir + "/" + named);
  std::string parent = dir_of(gitdir);
  std::string back = canonical(first_line(read_small_file(gitdir + "/gitdir", 4096)));
  bool ok = !common.empty() && parent.size() > 10 && ends_with(parent, "/worktrees") &&
            canonical(dir_of(parent)) == common && back == workspace + "/.git";
  if (!ok) {
    return Error::
        msg(fmt::format(
                "refusing the workspace: `{}/.git` names the git directory `{}`, whose `commondir` "
                "(`{}`) does not make it a linked worktree of a repository",
                workspace, gitdir, named))
            .hint(
                "a worktree's git directory is MAIN/.git/worktrees/NAME, with `commondir` naming "
                "MAIN/.git and `gitdir` naming this workspace's .git; anything else may have been "
                "written to redirect git's config and hooks");
  }
  if (!first_line(read_small_file(common + "/commondir", 4096)).empty() &&
      first_line(read_small_file(common + "/commondir", 4096)) != ".") {
    return Error::msg(fmt::format("refusing the workspace: `{}/commondir` exists", common))
        .hint("a repository's own .git has no commondir; check who wrote it, then remove it");
  }
  return GitLayout{GitLayout::Kind::kLinkedWorktree, gitdir, common};
}

}  // namespace

base::Result<GitLayout> inspect_git(const std::string& workspace) {
  std::string dotgit = workspace + "/.git";
  struct stat st {};
  if (::lstat(dotgit.c_str(), &st) != 0 || (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))) {
    return GitLayout{};
  }
  if (S_ISDIR(st.st_mode)) {
    std::string cd = dotgit + "/commondir";
    if (::lstat(cd.c_str(), &st) == 0) {
      std::string named = first_line(read_small_file(cd, 4096));
      // Empty: a placeholder another session is using; ".": ours, left by a killed session.
      if (!S_ISREG(st.st_mode) || (st.st_size != 0 && named != ".")) {
        return Error::msg(
                   fmt::format("refusing the workspace: `{}` exists and names `{}`", cd, named))
            .hint(
                "a repository's own .git has no commondir (only a linked worktree's git "
                "directory does): it makes git read its config and hooks from there. Check "
                "who wrote it (an agent in an earlier session?), then remove it");
      }
    }
    return GitLayout{GitLayout::Kind::kDir, dotgit, dotgit};
  }
  std::string gitdir = canonical(gitfile_target(read_small_file(dotgit, 4096), workspace));
  if (gitdir.empty()) {
    return GitLayout{GitLayout::Kind::kOtherGitfile, "", ""};
  }
  if (::lstat((gitdir + "/commondir").c_str(), &st) != 0) {
    return GitLayout{GitLayout::Kind::kOtherGitfile, gitdir, gitdir};  // a submodule's checkout
  }
  return linked_worktree(workspace, gitdir);
}

std::vector<std::string> git_config_includes(const std::string& config_path,
                                             const std::string& home) {
  std::vector<std::string> out;
  std::vector<std::string> todo = {config_path};
  for (size_t n = 0; n < todo.size() && n < 32; ++n) {  // git itself stops at depth 10
    std::string text = read_small_file(todo[n]);
    for (const auto& e : parse_git_config(text)) {
      bool inc = e.key == "include.path" ||
                 (starts_with(e.key, "includeif.") && ends_with(e.key, ".path"));
      if (!inc || e.value.empty()) {
        continue;
      }
      std::string p = e.value;
      if (starts_with(p, ":(optional)")) {
        p = p.substr(11);
      }
      if (starts_with(p, "~/")) {
        p = home.empty() ? std::string() : fmt::format("{}{}", home, p.substr(1));
      } else if (!p.empty() && p[0] != '/') {
        p = fmt::format("{}/{}", dir_of(todo[n]), p);
      }
      p = lexically_normal_abs(p);
      if (!p.empty() && std::find(out.begin(), out.end(), p) == out.end()) {
        out.push_back(p);
        todo.push_back(p);
      }
    }
  }
  return out;
}

}  // namespace agentbox::sandbox
