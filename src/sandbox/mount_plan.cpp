// Builds the ordered mount plan for the box (pure: the host is only seen through HostFs).
#include "agentbox/sandbox/mount_plan.hpp"

#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>

namespace agentbox::sandbox {

std::string MountOp::describe() const {
  switch (kind) {
    case MountKind::kMkdir:
      return fmt::format("mkdir `{}`", target);
    case MountKind::kBindDir:
    case MountKind::kBindFile:
      if (source == target) {
        return fmt::format("bind `{}`{}", target, read_only ? " (read-only)" : "");
      }
      return fmt::format("bind `{}` on `{}`{}", source, target, read_only ? " (read-only)" : "");
    case MountKind::kSymlink:
      return fmt::format("symlink `{}` -> `{}`", target, source);
    case MountKind::kWriteFile:
      return fmt::format("write `{}`", target);
    case MountKind::kTmpfs:
      return fmt::format("mount tmpfs `{}`", target);
    case MountKind::kProc:
      return fmt::format("mount proc `{}`", target);
    case MountKind::kDevpts:
      return fmt::format("mount devpts `{}`", target);
    case MountKind::kOverlay:
      return fmt::format("mount overlay `{}` (upper `{}`)", target, data);
    case MountKind::kProtect:
      return fmt::format("protect `{}/{}`{}", target, source, read_only ? "" : " (pinned)");
    case MountKind::kSeal:
      return fmt::format("make `{}` read-only", target);
    case MountKind::kRemountRoot:
      return "remount `/` read-only";
  }
  return "?";
}

namespace {

HostFs::Kind kind_of(const struct stat& st) {
  if (S_ISDIR(st.st_mode)) {
    return HostFs::Kind::kDir;
  }
  if (S_ISLNK(st.st_mode)) {
    return HostFs::Kind::kSymlink;
  }
  if (S_ISREG(st.st_mode)) {
    return HostFs::Kind::kFile;
  }
  return HostFs::Kind::kOther;
}

std::string parent_of(const std::string& path) {
  auto pos = path.rfind('/');
  if (pos == std::string::npos || pos == 0) {
    return "/";
  }
  return path.substr(0, pos);
}

size_t depth(const std::string& path) {
  return static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
}

// Accumulates ops and creates missing parent directories exactly once.
class Planner {
 public:
  explicit Planner(std::vector<MountOp>& ops) : ops_(ops) {}

  void ensure_parents(const std::string& target) {
    std::vector<std::string> missing;
    for (std::string p = parent_of(target); p != "/" && !known_.count(p); p = parent_of(p)) {
      missing.push_back(p);
    }
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      ops_.push_back(MountOp{.kind = MountKind::kMkdir, .target = *it, .mode = 0755});
      known_.insert(*it);
    }
  }
  void add(MountOp op) {
    ensure_parents(op.target);
    known_.insert(op.target);
    ops_.push_back(std::move(op));
  }

 private:
  std::vector<MountOp>& ops_;
  std::set<std::string> known_;
};

void add_host_entry(Planner& plan, const HostFs& host, const std::string& path) {
  switch (host.kind(path)) {
    case HostFs::Kind::kMissing:
      return;
    case HostFs::Kind::kDir:
      plan.add({.kind = MountKind::kBindDir, .target = path, .source = path, .read_only = true});
      return;
    case HostFs::Kind::kFile:
    case HostFs::Kind::kOther:
      plan.add({.kind = MountKind::kBindFile, .target = path, .source = path, .read_only = true});
      return;
    case HostFs::Kind::kSymlink:
      // Recreated as the same link: merged /usr (/bin -> usr/bin), /etc/localtime, os-release.
      plan.add({.kind = MountKind::kSymlink, .target = path, .source = host.read_link(path)});
      return;
  }
}

// One tree the user sees at its real path: HOME tmpfs, /tmp, the workspace, a grant.
struct UserTree {
  std::string path;
  MountOp op;
};

}  // namespace

HostFs::Kind RealHostFs::kind(const std::string& path) const {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return Kind::kMissing;
  }
  return kind_of(st);
}

HostFs::Kind RealHostFs::kind_follow(const std::string& path) const {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Kind::kMissing;
  }
  return kind_of(st);
}

std::string RealHostFs::read_link(const std::string& path) const {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof buf) {
    return {};
  }
  return std::string(buf, static_cast<size_t>(n));
}

const std::vector<std::string>& system_trees() {
  static const std::vector<std::string> kTrees = {"/usr",   "/bin",   "/sbin",   "/lib",
                                                  "/lib32", "/lib64", "/libx32", "/opt"};
  return kTrees;
}

const std::vector<std::string>& etc_entries() {
  // Read-only and harmless: trust stores, dynamic linker, name service switch (files only: the
  // synthesized passwd/group), time zone, distribution id, system-wide tool configuration.
  static const std::vector<std::string> kEntries = {"ssl",
                                                    "ca-certificates",
                                                    "ca-certificates.conf",
                                                    "pki",
                                                    "crypto-policies",
                                                    "alternatives",
                                                    "ld.so.cache",
                                                    "ld.so.conf",
                                                    "ld.so.conf.d",
                                                    "nsswitch.conf",
                                                    "host.conf",
                                                    "gai.conf",
                                                    "localtime",
                                                    "timezone",
                                                    "os-release",
                                                    "lsb-release",
                                                    "debian_version",
                                                    "issue",
                                                    "gitconfig",
                                                    "gitattributes",
                                                    "mime.types",
                                                    "mailcap",
                                                    "magic",
                                                    "protocols",
                                                    "services",
                                                    "rpc",
                                                    "ethertypes",
                                                    "networks",
                                                    "inputrc",
                                                    "bash.bashrc",
                                                    "bash_completion.d",
                                                    "profile",
                                                    "profile.d",
                                                    "shells",
                                                    "terminfo",
                                                    "vim",
                                                    "nanorc",
                                                    "locale.alias",
                                                    "locale.conf",
                                                    "locale.gen",
                                                    "manpath.config",
                                                    "python3",
                                                    "perl",
                                                    "fonts",
                                                    "ssh/ssh_config",
                                                    "ssh/ssh_config.d",
                                                    "ssh/ssh_known_hosts",
                                                    "subversion",
                                                    "wgetrc",
                                                    "curlrc",
                                                    "environment.d",
                                                    "xattr.conf",
                                                    "login.defs",
                                                    "libaudit.conf",
                                                    "selinux/config",
                                                    "java-17-openjdk",
                                                    "dpkg/origins",
                                                    "apt/apt.conf.d",
                                                    "apt/sources.list",
                                                    "apt/sources.list.d",
                                                    "apt/trusted.gpg.d"};
  return kEntries;
}

const std::vector<std::string>& default_protected_paths() {
  // Git's own metadata: every file git reads to decide what to run (docs/CONFINEMENT.md, "Git
  // metadata"). `.git/commondir` would move config and hooks elsewhere; `modules` holds the
  // submodules' git directories (config, hooks); `worktrees` the linked worktrees' (their
  // commondir, config.worktree); `objects/info/alternates` names other object stores.
  static const std::vector<std::string> kPaths = {".git/hooks",     ".git/config",
                                                  ".git/commondir", ".git/modules",
                                                  ".git/worktrees", ".git/objects/info/alternates",
                                                  ".gitmodules"};
  return kPaths;
}

std::string lexically_normal_abs(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return {};
  }
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) {
      j = path.size();
    }
    std::string part = path.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty()) {
        parts.pop_back();
      }
    } else if (!part.empty() && part != ".") {
      parts.push_back(std::move(part));
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& p : parts) {
    out += '/';
    out += p;
  }
  return out.empty() ? "/" : out;
}

bool path_within(const std::string& path, const std::string& dir) {
  if (dir == "/") {
    return !path.empty() && path[0] == '/';
  }
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

namespace {

// Protected workspace paths: read-only over whatever is there, placeholders for what is not.
// Their parent directories inside the workspace (`.git` of `.git/hooks`) are first pinned with a
// read-write bind onto themselves: a mountpoint cannot be renamed or removed (EBUSY), so the box
// cannot move `.git` aside and create a fresh `.git/hooks/pre-commit` on the host (attack
// `protected_parent_renamed`). A parent that is itself protected gets its read-only mount only.
void add_protected(std::vector<MountOp>& ops, const std::string& root,
                   const std::vector<std::string>& rels) {
  std::set<std::string> leaves;
  for (const auto& rel : rels) {
    if (!rel.empty() && rel[0] != '/') {
      leaves.insert(rel);
    }
  }
  std::set<std::string> pinned;
  for (const auto& rel : leaves) {
    for (size_t slash = rel.find('/'); slash != std::string::npos && slash + 1 < rel.size();
         slash = rel.find('/', slash + 1)) {
      std::string parent = rel.substr(0, slash);
      if (!leaves.contains(parent) && pinned.insert(parent).second) {
        ops.push_back({.kind = MountKind::kProtect,
                       .target = root,
                       .source = parent,
                       .read_only = false,
                       .optional = true});
      }
    }
  }
  std::set<std::string> seen;
  for (const auto& rel : rels) {
    if (rel.empty() || rel[0] == '/' || !seen.insert(rel).second) {
      continue;
    }
    ops.push_back({.kind = MountKind::kProtect, .target = root, .source = rel, .read_only = true});
  }
}

// Whether `op`, under a sealed tree, may be restricted by the seal instead of on its own: what
// the seal makes read-only, nosuid and nodev must already be meant to be all three.
bool sealable(const MountOp& op) {
  switch (op.kind) {
    case MountKind::kMkdir:
    case MountKind::kSymlink:
    case MountKind::kWriteFile:
      return true;
    case MountKind::kBindDir:
    case MountKind::kBindFile:
      return op.read_only && !op.devices;
    case MountKind::kTmpfs:
    case MountKind::kProc:
    case MountKind::kDevpts:
    case MountKind::kOverlay:
    case MountKind::kProtect:
    case MountKind::kSeal:
    case MountKind::kRemountRoot:
      return false;
  }
  return false;
}

// /etc's read-only binds (47 on the development VM) restricted together: /etc is then a small tmpfs
// of its own and one recursive mount_setattr at the end (kSeal) makes it and every mount under it
// read-only, nosuid and nodev, instead of one call per bind. Only when everything planned under
// /etc is read-only anyway; a writable grant there (or a workspace under /etc) keeps the old
// way: /etc a directory of the root tmpfs, each bind restricted on its own.
void seal_etc(std::vector<MountOp>& ops, size_t etc_at) {
  for (size_t i = etc_at; i < ops.size(); ++i) {
    if (path_within(ops[i].target, "/etc") && !sealable(ops[i])) {
      return;
    }
  }
  ops[etc_at] = {.kind = MountKind::kTmpfs, .target = "/etc", .mode = 0755, .size_bytes = 4u << 20};
  for (size_t i = etc_at + 1; i < ops.size(); ++i) {
    MountOp& op = ops[i];
    if ((op.kind == MountKind::kBindDir || op.kind == MountKind::kBindFile) &&
        path_within(op.target, "/etc")) {
      op.sealed = true;
    }
  }
  ops.push_back({.kind = MountKind::kSeal, .target = "/etc"});
}

}  // namespace

namespace {

// /etc: the harmless host entries read-only, then the synthesized files.
void add_etc(Planner& plan, const MountSpec& spec, const HostFs& host) {
  plan.add({.kind = MountKind::kMkdir, .target = "/etc", .mode = 0755});
  for (const auto& entry : etc_entries()) {
    add_host_entry(plan, host, "/etc/" + entry);
  }
  auto write = [&](const char* path, const std::string& data) {
    plan.add({.kind = MountKind::kWriteFile, .target = path, .data = data, .mode = 0644});
  };
  write("/etc/passwd", spec.etc_passwd);
  write("/etc/group", spec.etc_group);
  write("/etc/hosts", spec.etc_hosts);
  write("/etc/hostname", spec.etc_hostname);
  write("/etc/resolv.conf", spec.etc_resolv_conf);
}

void add_proc_sys(Planner& plan, const MountSpec& spec) {
  plan.add({.kind = MountKind::kProc, .target = "/proc"});
  // Read-only over the writable parts of the box's /proc, as bubblewrap does: a box whose uid is 0
  // passes the owner check of /proc/sys/* and /proc/sysrq-trigger with no capability at all
  // (sysctl test_perm() compares the euid with GLOBAL_ROOT_UID), so without these mounts only
  // Landlock would keep it from rewriting kernel.core_pattern; a kernel without Landlock has them.
  for (const char* p : {"sys", "sysrq-trigger", "irq", "bus"}) {
    plan.add({.kind = MountKind::kProtect,
              .target = "/proc",
              .source = p,
              .read_only = true,
              .optional = true});
  }
  if (spec.mount_sys) {
    plan.add({.kind = MountKind::kBindDir, .target = "/sys", .source = "/sys", .read_only = true});
  }
}

// A minimal /dev: the harmless character devices bound from the host, the usual links, a
// private shm and a devpts instance of the box's own (ptmx inside it, never the host's).
void add_dev(Planner& plan, const MountSpec& spec) {
  plan.add({.kind = MountKind::kTmpfs, .target = "/dev", .mode = 0755, .size_bytes = 1u << 20});
  for (const char* dev : {"null", "zero", "full", "random", "urandom", "tty"}) {
    std::string p = std::string("/dev/") + dev;
    plan.add({.kind = MountKind::kBindFile,
              .target = p,
              .source = p,
              .recursive = false,
              .optional = true,
              .devices = true});
  }
  auto link = [&](const char* path, const char* to) {
    plan.add({.kind = MountKind::kSymlink, .target = path, .source = to});
  };
  link("/dev/fd", "/proc/self/fd");
  link("/dev/stdin", "/proc/self/fd/0");
  link("/dev/stdout", "/proc/self/fd/1");
  link("/dev/stderr", "/proc/self/fd/2");
  link("/dev/ptmx", "pts/ptmx");
  plan.add({.kind = MountKind::kTmpfs,
            .target = "/dev/shm",
            .mode = 01777,
            .size_bytes = spec.shm_size,
            .inodes = spec.shm_inodes});
  plan.add({.kind = MountKind::kDevpts, .target = "/dev/pts"});
}

// /tmp, HOME and the workspace (plain, or the review overlay).
void own_trees(std::vector<UserTree>& trees, const MountSpec& spec) {
  trees.push_back({"/tmp",
                   {.kind = MountKind::kTmpfs,
                    .target = "/tmp",
                    .mode = 01777,
                    .size_bytes = spec.tmp_size,
                    .inodes = spec.tmp_inodes}});
  if (!spec.home.empty() && spec.home != "/") {
    trees.push_back({spec.home,
                     {.kind = MountKind::kTmpfs,
                      .target = spec.home,
                      .mode = 0700,
                      .size_bytes = spec.home_size,
                      .inodes = spec.home_inodes}});
  }
  if (spec.review_upper.empty()) {
    trees.push_back({spec.workspace,
                     {.kind = MountKind::kBindDir,
                      .target = spec.workspace,
                      .source = spec.workspace,
                      .read_only = false}});
  } else {
    trees.push_back({spec.workspace,
                     {.kind = MountKind::kOverlay,
                      .target = spec.workspace,
                      .source = spec.workspace,
                      .data = spec.review_upper,
                      .work = spec.review_work}});
  }
}

// The grants present on the host (but the workspace) and the persisted paths.
void granted_trees(std::vector<UserTree>& trees, const MountSpec& spec, const HostFs& host) {
  for (const auto& g : spec.grants) {
    if (g.path == spec.workspace) {
      continue;
    }
    HostFs::Kind k = host.kind_follow(g.path);
    if (k == HostFs::Kind::kMissing) {
      continue;
    }
    trees.push_back({g.path,
                     {.kind = k == HostFs::Kind::kDir ? MountKind::kBindDir : MountKind::kBindFile,
                      .target = g.path,
                      .source = g.path,
                      .read_only = !g.writable}});
  }
  for (const auto& p : spec.persisted) {
    trees.push_back({p.target,
                     {.kind = p.dir ? MountKind::kBindDir : MountKind::kBindFile,
                      .target = p.target,
                      .source = p.source,
                      .read_only = false}});
  }
}

// The user's trees, parents first (stable: equal depth keeps the listed order), then the
// overlaid files and the links.
void add_user_trees(Planner& plan, const MountSpec& spec, const HostFs& host) {
  std::vector<UserTree> trees;
  own_trees(trees, spec);
  granted_trees(trees, spec, host);
  std::stable_sort(trees.begin(), trees.end(), [](const UserTree& a, const UserTree& b) {
    return depth(a.path) < depth(b.path);
  });
  for (auto& t : trees) {
    plan.add(std::move(t.op));
  }
  for (const auto& o : spec.overlays) {
    plan.add({.kind = o.dir ? MountKind::kBindDir : MountKind::kBindFile,
              .target = o.target,
              .source = o.source,
              .read_only = true});
  }
  for (const auto& l : spec.links) {
    plan.add({.kind = MountKind::kSymlink, .target = l.target, .source = l.text});
  }
}

}  // namespace

std::vector<MountOp> build_mount_plan(const MountSpec& spec, const HostFs& host) {
  std::vector<MountOp> ops;
  Planner plan(ops);
  for (const auto& tree : system_trees()) {
    add_host_entry(plan, host, tree);
  }
  const size_t etc_at = ops.size();
  add_etc(plan, spec, host);
  add_proc_sys(plan, spec);
  add_dev(plan, spec);
  add_user_trees(plan, spec, host);
  add_protected(ops, spec.workspace, spec.protected_paths);
  if (!spec.git_common.empty()) {
    add_protected(ops, spec.git_common, spec.git_common_protected);
  }
  seal_etc(ops, etc_at);
  ops.push_back({.kind = MountKind::kRemountRoot, .target = "/"});
  return ops;
}

}  // namespace agentbox::sandbox
