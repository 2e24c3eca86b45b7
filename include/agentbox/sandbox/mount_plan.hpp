// The mount plan: a pure function from what the box should see to an ordered list of mount
// operations, executed later by the box's init inside its new mount namespace.
//
// Paths in the plan are paths as the box sees them ("/usr", "/home/me/proj"); sources are host
// paths. The executor prefixes them with the staging directories (see launcher.cpp). Order matters
// and is the plan's job: the root tmpfs first, then system trees, /etc, /proc, /dev, then the
// user's trees sorted parents-first (HOME and /tmp tmpfs before a workspace that lives inside
// them, the workspace before grants inside it), protected workspace paths, and last the remount
// of the root read-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace agentbox::sandbox {

enum class MountKind {
  kMkdir,       // create directory `target` (mode), parents must exist
  kBindDir,     // bind `source` (a directory) on `target`, creating the mountpoint dir
  kBindFile,    // bind `source` (a non-directory) on `target`, creating an empty file
  kSymlink,     // symlink `target` -> `source` (source is the link text)
  kWriteFile,   // create `target` with `data` (mode)
  kTmpfs,       // tmpfs on `target` (mode, size_bytes), creating the mountpoint dir
  kProc,        // new procfs on `target`
  kDevpts,      // new devpts instance on `target`
  kOverlay,     // overlayfs on `target`: lower `source`, upper `data`, work `work`
  kProtect,     // make workspace-relative `source` under workspace `target` read-only (openat2)
  kSeal,        // make the mount at `target` and every mount under it read-only, nosuid, nodev
  kRemountRoot  // remount the box's root tmpfs read-only (last)
};

struct MountOp {
  MountKind kind = MountKind::kMkdir;
  std::string target;  // box path
  std::string source;  // host path, link text or workspace-relative path
  std::string data;    // file contents for kWriteFile; the upper directory for kOverlay
  std::string work;    // kOverlay: overlayfs's work directory (host path)
  bool read_only = false;
  bool recursive = true;  // binds: MS_REC
  bool optional = false;  // a missing source is skipped, not an error
  bool devices = false;   // binds: keep device nodes usable (no MOUNT_ATTR_NODEV)
  bool sealed = false;    // read-only binds: a later kSeal restricts it (not one call per bind)
  uint32_t mode = 0755;
  uint64_t size_bytes = 0;  // tmpfs; 0: no size cap
  uint64_t inodes = 0;      // tmpfs nr_inodes; 0: no inode cap
  // A short human description for error messages: "bind `/usr` (read-only)".
  [[nodiscard]] std::string describe() const;
};

// What the plan needs to know about the host, behind an interface so tests can fake it.
class HostFs {
 public:
  enum class Kind { kMissing, kDir, kFile, kSymlink, kOther };
  virtual ~HostFs() = default;
  // lstat-like: does not follow a final symlink.
  [[nodiscard]] virtual Kind kind(const std::string& path) const = 0;
  // stat-like: follows symlinks (kMissing when dangling).
  [[nodiscard]] virtual Kind kind_follow(const std::string& path) const = 0;
  [[nodiscard]] virtual std::string read_link(const std::string& path) const = 0;
};

// The real host, via lstat/stat/readlink.
class RealHostFs final : public HostFs {
 public:
  [[nodiscard]] Kind kind(const std::string& path) const override;
  [[nodiscard]] Kind kind_follow(const std::string& path) const override;
  [[nodiscard]] std::string read_link(const std::string& path) const override;
};

struct Grant {
  std::string path;  // absolute, canonical host path; shown at the same path in the box
  bool writable = false;
};

// A host file or directory shown read-only at another path in the box: the merged trust bundle
// over the distributions' trust-store files, the session CA's certificate directory, a token
// file with its secrets masked. Overlays come after the user's trees, so one inside HOME lands in
// the private tmpfs (its parents created there), and one over a system file is bound on top of
// it (its parents already exist in the read-only tree, so nothing is created there).
struct Overlay {
  std::string target;  // box path
  std::string source;  // host path (prepared by the supervisor, e.g. in the session folder)
  bool dir = false;
};

// A symlink made in the box (in its private HOME or root tmpfs), after the overlays: a launcher
// link of the program's installation (app/program_install.hpp), its text kept as on the host.
struct Link {
  std::string target;  // box path (a real directory + name)
  std::string text;
};

struct MountSpec {
  std::string workspace;  // absolute canonical; read-write at the same path
  // Review mode (app/review.hpp): the workspace is an overlay whose writes land in these host
  // directories instead of the real files; empty: the workspace is bound read-write.
  std::string review_upper;
  std::string review_work;
  std::string home;  // the user's real home path; an empty private tmpfs there
  // The private tmpfs (0: no cap, as tmpfs itself reads 0).
  uint64_t home_size = 1ull << 30;
  uint64_t tmp_size = 1ull << 30;
  uint64_t shm_size = 256ull << 20;
  uint64_t home_inodes = 0;
  uint64_t tmp_inodes = 0;
  uint64_t shm_inodes = 0;
  bool mount_sys = false;
  std::vector<Grant> grants;                 // --ro/--rw and policy ro/rw, canonical
  std::vector<std::string> protected_paths;  // workspace-relative, e.g. ".git/hooks"
  // A linked worktree's main repository (MAIN/.git): granted read-write (in `grants`), with
  // these paths relative to it protected the same way (config, hooks, ...).
  std::string git_common;
  std::vector<std::string> git_common_protected;
  std::vector<Overlay> overlays;  // shown read-only, after the user's trees
  // Another host directory bound read-write at a path of the box (an agent's persisted state,
  // app/agent_state.hpp), among the user's trees: parents first, so a read-only grant inside
  // one lands on top of it.
  std::vector<Overlay> persisted;
  std::vector<Link> links;  // made after the overlays
  // Synthesized /etc files (contents prepared by the caller).
  std::string etc_passwd;
  std::string etc_group;
  std::string etc_hosts;
  std::string etc_hostname;
  std::string etc_resolv_conf;
};

// System trees bound read-only when they exist (symlinks, as in merged-/usr, are recreated).
[[nodiscard]] const std::vector<std::string>& system_trees();
// Harmless /etc entries bound read-only when they exist. Never shadow, gshadow, sudoers, ssh keys.
[[nodiscard]] const std::vector<std::string>& etc_entries();
// Workspace paths always protected: git's metadata (the agents' and editors' files are the
// config's built-in `sandbox.protected`, which the user may shorten).
[[nodiscard]] const std::vector<std::string>& default_protected_paths();

[[nodiscard]] std::vector<MountOp> build_mount_plan(const MountSpec& spec, const HostFs& host);

// "/a/b/../c" style normalisation without touching the filesystem; "" for relative paths.
[[nodiscard]] std::string lexically_normal_abs(const std::string& path);
// True when `path` equals `dir` or lies below it (both normalised absolute paths).
[[nodiscard]] bool path_within(const std::string& path, const std::string& dir);

}  // namespace agentbox::sandbox
