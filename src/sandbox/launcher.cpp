// The launcher: prepares in the supervisor, clones into namespaces, runs init and the program.
// (Theory of operation: include/agentbox/sandbox/launcher.hpp.)
#include "agentbox/sandbox/launcher.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iterator>
#include <string_view>
#include <vector>

#include "agentbox/base/startup_trace.hpp"
#include "agentbox/base/sys.hpp"
#include "agentbox/sandbox/limits.hpp"

namespace agentbox::sandbox {

using base::Error;
using base::Result;
using base::UniqueFd;

const char* setup_stage_name(SetupStage stage) {
  switch (stage) {
    case SetupStage::kNone:
      return "starting the box";
    case SetupStage::kParentGone:
      return "the supervisor went away";
    case SetupStage::kPdeathsig:
      return "prctl PR_SET_PDEATHSIG";
    case SetupStage::kSetgroups:
      return "writing /proc/self/setgroups";
    case SetupStage::kUidMap:
      return "writing /proc/self/uid_map";
    case SetupStage::kGidMap:
      return "writing /proc/self/gid_map";
    case SetupStage::kMountPrivate:
      return "making mounts private";
    case SetupStage::kStaging:
      return "mounting the staging tmpfs on `/tmp`";
    case SetupStage::kPivotStaging:
      return "pivot_root into the staging tmpfs";
    case SetupStage::kMountOp:
      return "mount";
    case SetupStage::kHostname:
      return "sethostname";
    case SetupStage::kLoopback:
      return "bringing up `lo`";
    case SetupStage::kNetns:
      return "creating the box's network namespace";
    case SetupStage::kUserLimits:
      return "setting the box's user-namespace limits (/proc/sys/user)";
    case SetupStage::kTunOpen:
      return "opening `/dev/net/tun`";
    case SetupStage::kTapCreate:
      return "creating the box's tap device (TUNSETIFF)";
    case SetupStage::kTapConfigure:
      return "configuring the box's network (netlink)";
    case SetupStage::kTapSend:
      return "handing the tap device to the supervisor";
    case SetupStage::kHostPorts:
      return "listening on the box's localhost for --host-port";
    case SetupStage::kPivotRoot:
      return "pivot_root into the box";
    case SetupStage::kChdir:
      return "chdir into the working directory";
    case SetupStage::kPty:
      return "opening the box's pty";
    case SetupStage::kForkProgram:
      return "fork";
    case SetupStage::kSetsid:
      return "setsid";
    case SetupStage::kControllingTty:
      return "ioctl TIOCSCTTY";
    case SetupStage::kCloseFds:
      return "close_range";
    case SetupStage::kLandlock:
      return "applying Landlock";
    case SetupStage::kCapabilities:
      return "dropping capabilities";
    case SetupStage::kNoNewPrivs:
      return "prctl PR_SET_NO_NEW_PRIVS";
    case SetupStage::kSeccomp:
      return "loading the seccomp filter";
    case SetupStage::kRlimits:
      return "setting resource limits";
    case SetupStage::kProtectCheck:
      return "checking that protected paths are read-only";
    case SetupStage::kConfine:
      return "confining the program";
    case SetupStage::kExec:
      return "execve";
  }
  return "?";
}

int launch_exit_code(const LaunchFailure& f) {
  if (f.stage != SetupStage::kExec) {
    return 125;
  }
  return (f.err == ENOENT || f.err == ENOTDIR) ? 127 : 126;
}

namespace {

constexpr const char* kStaging = "/tmp";  // exists everywhere; shadowed only inside our mount ns
constexpr const char* kEmptyFile = "/empty";  // in the staging root: covers protected symlinks

enum class MsgType : uint32_t { kFailure = 1, kPtyMaster = 2, kTap = 3, kSocket = 4 };
struct Msg {
  MsgType type;
  uint16_t stage;
  int32_t err;
  int32_t index;
};

// Everything the child needs, as ready strings: it only makes system calls.
struct PreparedOp {
  MountKind kind;
  std::string target;  // "/newroot/usr"
  std::string source;  // "/oldroot/usr", link text, or workspace-relative
  std::string data;    // file contents or tmpfs options
  bool read_only;
  bool recursive;
  bool optional;
  bool devices;
  bool sealed;
  uint32_t mode;
};

struct Prepared {
  std::vector<PreparedOp> ops;
  std::string uid_map;
  std::string gid_map;
  std::string cwd;
  std::string hostname;
  std::vector<std::string> exec_candidates;
  std::vector<char*> argv;
  std::vector<char*> envp;
  bool pty = false;
  std::optional<struct winsize> winsize;
  std::optional<struct termios> termios;
  const Confinement* confinement = nullptr;
  const BoxNetwork* network = nullptr;
  int ctl = -1;           // the child's end of the control socket
  std::vector<int> keep;  // sorted: ctl and the confinement's fds
  int exit_report = -1;   // LaunchSpec::exit_report_fd
  std::vector<std::pair<std::string, std::string>> userns_limits;  // {path, value}
  int autogroup_nice = -1;                                         // LaunchSpec::autogroup_nice
  int factory = -1;  // init's end of the socket factory (LaunchSpec::socket_factory), or -1
};

std::string box_path_env(const std::vector<std::string>& env) {
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) {
      return e.substr(5);
    }
  }
  return "/usr/local/bin:/usr/bin:/bin";
}

// overlayfs's mount data for a review workspace. Paths are seen under /oldroot; `,` `:` and `\`
// are escaped with a backslash (overlayfs's option splitter and its lowerdir list honour it).
// userxattr: the only way an unprivileged user namespace may mount it (kernel >= 5.11); it also
// keeps redirect_dir and metacopy off, so every change is a plain file, whiteout or opaque
// directory in the upper directory (app/review.cpp reads it that way).
std::string overlay_options(const MountOp& op) {
  auto esc = [](const std::string& path) {
    std::string out;
    for (char c : "/oldroot" + path) {
      if (c == ',' || c == ':' || c == '\\') {
        out += '\\';
      }
      out += c;
    }
    return out;
  };
  return fmt::format("lowerdir={},upperdir={},workdir={},userxattr,index=off", esc(op.source),
                     esc(op.data), esc(op.work));
}

Prepared prepare(const LaunchSpec& spec, std::vector<std::string>& argv_store,
                 std::vector<std::string>& env_store) {
  Prepared p;
  p.ops.reserve(spec.mounts.size());
  for (const auto& op : spec.mounts) {
    PreparedOp po{.kind = op.kind,
                  .target = "/newroot" + (op.target == "/" ? std::string() : op.target),
                  .source = op.source,
                  .data = op.data,
                  .read_only = op.read_only,
                  .recursive = op.recursive,
                  .optional = op.optional,
                  .devices = op.devices,
                  .sealed = op.sealed,
                  .mode = op.mode};
    switch (op.kind) {
      case MountKind::kBindDir:
      case MountKind::kBindFile:
        po.source = "/oldroot" + op.source;
        break;
      case MountKind::kTmpfs:
        po.data = fmt::format("mode={:o},size={},nr_inodes={}", op.mode, op.size_bytes, op.inodes);
        break;
      case MountKind::kOverlay:
        po.data = overlay_options(op);
        break;
      case MountKind::kMkdir:
      case MountKind::kSymlink:
      case MountKind::kWriteFile:
      case MountKind::kProc:
      case MountKind::kDevpts:
      case MountKind::kProtect:
      case MountKind::kSeal:
      case MountKind::kRemountRoot:
        break;
    }
    p.ops.push_back(std::move(po));
  }
  p.uid_map = fmt::format("{0} {0} 1\n", spec.uid);
  p.gid_map = fmt::format("{0} {0} 1\n", spec.gid);
  p.cwd = spec.cwd;
  p.hostname = spec.hostname;
  const std::string& cmd = spec.argv.at(0);
  if (cmd.find('/') != std::string::npos) {
    p.exec_candidates.push_back(cmd);
  } else {
    std::string path = box_path_env(spec.env);
    size_t i = 0;
    while (i <= path.size()) {
      size_t j = path.find(':', i);
      if (j == std::string::npos) {
        j = path.size();
      }
      std::string dir = path.substr(i, j - i);
      p.exec_candidates.push_back((dir.empty() ? std::string(".") : dir) + "/" + cmd);
      i = j + 1;
    }
  }
  argv_store = spec.argv;
  env_store = spec.env;
  for (auto& a : argv_store) {
    p.argv.push_back(a.data());
  }
  p.argv.push_back(nullptr);
  for (auto& e : env_store) {
    p.envp.push_back(e.data());
  }
  p.envp.push_back(nullptr);
  p.pty = spec.pty;
  p.winsize = spec.winsize;
  p.termios = spec.termios;
  p.confinement = spec.confinement;
  p.network = spec.network;
  p.keep = spec.keep_fds;
  p.exit_report = spec.exit_report_fd;
  p.autogroup_nice = spec.autogroup_nice;
  for (const auto& [name, value] : spec.userns_limits) {
    p.userns_limits.emplace_back("/proc/sys/user/" + name, std::to_string(value));
  }
  if (p.exit_report >= 0) {
    p.keep.push_back(p.exit_report);
  }
  return p;
}

// ---- child side: system calls only, no allocation --------------------------------------------

[[noreturn]] void fail(const Prepared& p, SetupStage stage, int err, int index = -1) {
  Msg m{MsgType::kFailure, static_cast<uint16_t>(stage), err, index};
  [[maybe_unused]] ssize_t n = ::send(p.ctl, &m, sizeof m, MSG_NOSIGNAL);
  ::_exit(125);
}

// init maps its own ids. The supervisor is not dumpable (it holds the secrets and the session
// CA key, and init is a copy of it), so init's /proc/self files belong to the host's root
// (proc(5), "PR_SET_DUMPABLE"): an unprivileged init could not open its own uid_map. It becomes
// dumpable only for the three open() calls, before any map exists, and not dumpable again before
// writing them (the permission is checked at open).
void write_own_maps(const Prepared& p) {
  const bool was_dumpable = ::prctl(PR_GET_DUMPABLE) == 1;
  ::prctl(PR_SET_DUMPABLE, 1);
  int setgroups = ::open("/proc/self/setgroups", O_WRONLY | O_CLOEXEC);
  int setgroups_err = errno;
  int uid_map = ::open("/proc/self/uid_map", O_WRONLY | O_CLOEXEC);
  int uid_err = errno;
  int gid_map = ::open("/proc/self/gid_map", O_WRONLY | O_CLOEXEC);
  int gid_err = errno;
  if (!was_dumpable) {
    ::prctl(PR_SET_DUMPABLE, 0);
  }
  auto put = [](int fd, std::string_view data) {
    return fd >= 0 && ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  };
  if (!put(setgroups, "deny")) {
    fail(p, SetupStage::kSetgroups, setgroups < 0 ? setgroups_err : errno);
  }
  if (!put(uid_map, p.uid_map)) {
    fail(p, SetupStage::kUidMap, uid_map < 0 ? uid_err : errno);
  }
  if (!put(gid_map, p.gid_map)) {
    fail(p, SetupStage::kGidMap, gid_map < 0 ? gid_err : errno);
  }
  ::close(setgroups);
  ::close(uid_map);
  ::close(gid_map);
}

int sys_mount_setattr(int dfd, const char* path, unsigned flags, uint64_t attr_set) {
  struct mount_attr attr {};
  attr.attr_set = attr_set;
  return static_cast<int>(::syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof attr));
}

// The restriction without mount_setattr (kernels before 5.12): a remount of the one mount at
// `target`, never of the mounts under it. A remount replaces every flag, and in a user namespace
// the kernel refuses to clear one the host's mount locked (EPERM): the mount's current flags are
// kept, as mount_setattr keeps them.
bool remount_restricted(const char* target, bool read_only, bool devices) {
  struct statfs fs {};
  unsigned long flags =
      MS_REMOUNT | MS_BIND | MS_NOSUID | (devices ? 0 : MS_NODEV) | (read_only ? MS_RDONLY : 0);
  if (::statfs(target, &fs) == 0) {
    const auto has = [&](unsigned long st) { return (fs.f_flags & st) != 0; };
    flags |= (has(ST_RDONLY) ? MS_RDONLY : 0) | (has(ST_NODEV) ? MS_NODEV : 0) |
             (has(ST_NOEXEC) ? MS_NOEXEC : 0) | (has(ST_NOATIME) ? MS_NOATIME : 0) |
             (has(ST_NODIRATIME) ? MS_NODIRATIME : 0) | (has(ST_RELATIME) ? MS_RELATIME : 0);
  }
  return ::mount(nullptr, target, nullptr, flags, nullptr) == 0;
}

// Read-only (and nosuid/nodev) on a bind mount, recursively when asked. mount_setattr only sets
// flags, so flags locked by the host mount (nosuid, noexec, ...) are kept, as the kernel demands
// in a user namespace. Falls back to a plain remount on kernels before 5.12.
bool restrict_mount(const char* target, bool read_only, bool recursive, bool devices) {
  uint64_t attrs =
      MOUNT_ATTR_NOSUID | (devices ? 0 : MOUNT_ATTR_NODEV) | (read_only ? MOUNT_ATTR_RDONLY : 0);
  if (sys_mount_setattr(AT_FDCWD, target, recursive ? AT_RECURSIVE : 0, attrs) == 0) {
    return true;
  }
  return errno == ENOSYS && remount_restricted(target, read_only, devices);
}

// Whether `path` is `dir` or lies under it (no allocation: the child calls it).
bool within(const std::string& path, const std::string& dir) {
  return path.compare(0, dir.size(), dir) == 0 &&
         (path.size() == dir.size() || path[dir.size()] == '/');
}

// kSeal at `at`: the sealed binds under its target were made without their own restriction, and
// one recursive mount_setattr makes the tree and every mount under it read-only, nosuid and nodev.
// A kernel without it (before 5.12) gets the same mount by mount: each sealed bind, then the
// tree's own tmpfs. (As for any bind restricted by a remount, a host mount below a sealed bind
// stays as the host has it; the plan binds no such tree under /etc.)
bool seal(const std::vector<PreparedOp>& ops, size_t at) {
  const PreparedOp& root = ops[at];
  if (sys_mount_setattr(AT_FDCWD, root.target.c_str(), AT_RECURSIVE,
                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) == 0) {
    return true;
  }
  if (errno != ENOSYS) {
    return false;
  }
  for (size_t i = 0; i < at; ++i) {
    if (ops[i].sealed && within(ops[i].target, root.target) &&
        !remount_restricted(ops[i].target.c_str(), true, false)) {
      return false;
    }
  }
  return remount_restricted(root.target.c_str(), true, false);
}

bool make_file(const char* path, uint32_t mode) {
  // mknod rather than open(O_CREAT) + close: one system call per file mountpoint instead of
  // three (lstat, open, close), and it never follows a link. An existing file is a mountpoint as
  // it is (EEXIST comes before EROFS, so this also holds inside a read-only bind, where opening it
  // for writing would fail) unless it is a link or a directory.
  if (::mknod(path, S_IFREG | mode, 0) == 0) {
    return true;
  }
  if (errno != EEXIST) {
    return false;
  }
  struct stat st {};
  if (::lstat(path, &st) != 0) {
    return false;
  }
  errno = S_ISLNK(st.st_mode) ? ELOOP : EISDIR;
  return !S_ISLNK(st.st_mode) && !S_ISDIR(st.st_mode);
}

bool mkdir_ok(const char* path, uint32_t mode) {
  return ::mkdir(path, mode) == 0 || errno == EEXIST;
}

// Mounts the detached clone `tree` on `at`, read-only, nosuid and nodev from its first moment. A
// kernel without mount_setattr (before 5.12) cannot restrict a detached mount: there the clone is
// attached first (the box does not run yet) and remounted through its fd's /proc link, the host's
// /proc under /oldroot (the clone is a single mount: OPEN_TREE_CLONE without AT_RECURSIVE).
bool attach_read_only(int tree, int at) {
  auto attach = [&] {
    return ::syscall(SYS_move_mount, tree, "", at, "",
                     MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) == 0;
  };
  if (sys_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE,
                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) == 0) {
    return attach();
  }
  if (errno != ENOSYS || !attach()) {
    return false;
  }
  char link[64];
  std::snprintf(link, sizeof link, "/oldroot/proc/self/fd/%d", tree);
  return remount_restricted(link, true, false);
}

// Makes workspace-relative `rel` read-only without following any symlink: openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS refuses links anywhere in the path (a link planted there
// would otherwise redirect the read-only mount elsewhere and leave the real path writable), then
// the new mount API clones the very inode we opened and mounts the read-only clone on it.
bool protect(const PreparedOp& op) {
  int ws = ::open(op.target.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (ws < 0) {
    return false;
  }
  struct open_how how {};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;  // a final symlink is opened as itself
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, ws, op.source.c_str(), &how, sizeof how));
  int saved = errno;
  ::close(ws);
  if (fd < 0) {
    errno = saved;
    return op.optional && saved == ENOENT;  // /proc/irq etc. on a kernel without them
  }
  struct stat st {};
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH) != 0) {
    saved = errno;
    ::close(fd);
    errno = saved;
    return false;
  }
  if (!op.read_only) {
    // A parent of protected paths, pinned (mount_plan.cpp): a read-write bind of a directory
    // onto itself, with the attributes of the workspace's mount. Nothing to pin otherwise.
    bool ok = true;
    if (S_ISDIR(st.st_mode)) {
      int pin = static_cast<int>(
          ::syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
      ok = pin >= 0 && ::syscall(SYS_move_mount, pin, "", fd, "",
                                 MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) == 0;
      saved = errno;
      if (pin >= 0) {
        ::close(pin);
      }
    }
    ::close(fd);
    errno = saved;
    return ok;
  }
  // A symlink is covered by a read-only empty file (the new mount API can mount on the link
  // itself): the box can neither write through it nor replace it.
  int tree = S_ISLNK(st.st_mode)
                 ? static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, kEmptyFile,
                                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC))
                 : static_cast<int>(::syscall(SYS_open_tree, fd, "",
                                              OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
  bool ok = tree >= 0 && attach_read_only(tree, fd);
  saved = errno;
  if (tree >= 0) {
    ::close(tree);
  }
  ::close(fd);
  errno = saved;
  return ok;
}

bool run_op(const std::vector<PreparedOp>& ops, size_t at) {
  const PreparedOp& op = ops[at];
  const char* t = op.target.c_str();
  switch (op.kind) {
    case MountKind::kMkdir:
      return mkdir_ok(t, op.mode);
    case MountKind::kBindDir:
    case MountKind::kBindFile: {
      struct stat st {};
      if (op.optional && ::stat(op.source.c_str(), &st) != 0) {
        return true;
      }
      if (!(op.kind == MountKind::kBindDir ? mkdir_ok(t, 0755) : make_file(t, 0644))) {
        // An existing mountpoint inside a read-only tree is fine; a missing one is not.
        if (errno != EROFS || ::stat(t, &st) != 0) {
          return false;
        }
      }
      unsigned long flags = MS_BIND | (op.recursive ? MS_REC : 0);
      if (::mount(op.source.c_str(), t, nullptr, flags, nullptr) != 0) {
        return false;
      }
      return op.sealed || restrict_mount(t, op.read_only, op.recursive, op.devices);
    }
    case MountKind::kSymlink:
      return ::symlink(op.source.c_str(), t) == 0 || errno == EEXIST;
    case MountKind::kWriteFile: {
      int fd = ::open(t, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, op.mode);
      if (fd < 0) {
        return false;
      }
      ssize_t n = ::write(fd, op.data.data(), op.data.size());
      int saved = errno;
      ::close(fd);
      errno = saved;
      return n == static_cast<ssize_t>(op.data.size());
    }
    case MountKind::kTmpfs:
      return mkdir_ok(t, 0755) &&
             ::mount("tmpfs", t, "tmpfs", MS_NOSUID | MS_NODEV, op.data.c_str()) == 0;
    case MountKind::kOverlay:
      return mkdir_ok(t, 0755) &&
             ::mount("overlay", t, "overlay", MS_NOSUID | MS_NODEV, op.data.c_str()) == 0;
    case MountKind::kProc:
      return mkdir_ok(t, 0555) &&
             ::mount("proc", t, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0;
    case MountKind::kDevpts:
      return mkdir_ok(t, 0755) && ::mount("devpts", t, "devpts", MS_NOSUID | MS_NOEXEC,
                                          "newinstance,ptmxmode=0666,mode=620") == 0;
    case MountKind::kProtect:
      return protect(op);
    case MountKind::kSeal:
      return seal(ops, at);
    case MountKind::kRemountRoot:
      return ::mount(nullptr, t, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                     nullptr) == 0;
  }
  errno = EINVAL;
  return false;
}

bool loopback_up() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    return false;
  }
  struct ifreq ifr {};
  std::memcpy(ifr.ifr_name, "lo", 3);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    ok = ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  }
  int saved = errno;
  ::close(s);
  errno = saved;
  return ok;
}

constexpr int kMaxFdsPerMsg = 1 + kMaxNetworkExtraFds;  // the tap and the hook's sockets

// One message with `count` fds (SCM_RIGHTS) on `sock`; false with errno on failure.
bool send_fds(int sock, const int* fds, int count, Msg m) {
  iovec iov{&m, sizeof m};
  alignas(cmsghdr) char buf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMsg)] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (count > 0) {
    mh.msg_control = buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<size_t>(count));
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<size_t>(count));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<size_t>(count));
  }
  return ::sendmsg(sock, &mh, MSG_NOSIGNAL) >= 0;
}

void send_fd(const Prepared& p, int fd, MsgType type, SetupStage stage) {
  if (!send_fds(p.ctl, &fd, 1, Msg{type, 0, 0, -1})) {
    fail(p, stage, errno);
  }
}

// Opens the box's own pty (from the devpts instance mounted at /dev/pts) and hands the master to
// the supervisor. Returns the slave.
int open_pty(const Prepared& p) {
  int master = ::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) {
    fail(p, SetupStage::kPty, errno);
  }
  int unlock = 0;
  if (::ioctl(master, TIOCSPTLCK, &unlock) != 0) {
    fail(p, SetupStage::kPty, errno);
  }
  int slave = ::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) {
    fail(p, SetupStage::kPty, errno);
  }
  if (p.termios) {
    ::tcsetattr(slave, TCSANOW, &*p.termios);
  }
  if (p.winsize) {
    ::ioctl(slave, TIOCSWINSZ, &*p.winsize);
  }
  send_fd(p, master, MsgType::kPtyMaster, SetupStage::kPty);
  ::close(master);
  return slave;
}

[[noreturn]] void run_program(const Prepared& p, int slave) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::setsid() < 0) {
    fail(p, SetupStage::kSetsid, errno);
  }
  if (slave >= 0) {
    if (::ioctl(slave, TIOCSCTTY, 0) != 0) {
      fail(p, SetupStage::kControllingTty, errno);
    }
    for (int fd = 0; fd < 3; ++fd) {
      if (::dup2(slave, fd) < 0) {
        fail(p, SetupStage::kControllingTty, errno);
      }
    }
    if (slave > 2) {
      ::close(slave);
    }
  }
  // Nothing but 0-2 may reach the program. CLOEXEC rather than close: the control socket must
  // stay open until execve succeeds, to report its failure.
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    fail(p, SetupStage::kCloseFds, errno);
  }
  // ---- confinement hook: Landlock, capabilities, no_new_privs, seccomp, rlimits ----
  base::startup_trace::stamp("prog");
  if (p.confinement != nullptr) {
    ConfineResult e = p.confinement->apply();
    if (e.err != 0) {
      fail(p, e.stage == SetupStage::kNone ? SetupStage::kConfine : e.stage, e.err);
    }
  }
  base::startup_trace::stamp("prog.confined");
  int err = ENOENT;
  bool denied = false;
  const uint64_t cookie = p.confinement != nullptr ? p.confinement->exec_cookie() : 0;
  for (const auto& path : p.exec_candidates) {
    ::syscall(SYS_execve, path.c_str(), p.argv.data(), p.envp.data(), 0, 0, cookie);
    err = errno;
    if (err == EACCES) {
      denied = true;
    } else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ELOOP &&
               err != ENAMETOOLONG) {
      break;
    }
  }
  if (denied && (err == ENOENT || err == ENOTDIR)) {
    err = EACCES;  // as execvp: "permission denied" beats "not found" further along the PATH
  }
  Msg m{MsgType::kFailure, static_cast<uint16_t>(SetupStage::kExec), err, -1};
  [[maybe_unused]] ssize_t n = ::send(p.ctl, &m, sizeof m, MSG_NOSIGNAL);
  ::_exit((err == ENOENT || err == ENOTDIR) ? 127 : 126);
}

int64_t monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

// The program's autogroup nice, retried while the kernel's rate limit (EAGAIN) holds, at most
// every 20 ms and for at most a second; then given up (the box's autogroup stays at nice 0, its
// processes at their nice).
struct AutogroupNice {
  int nice = -1;
  int64_t next_ms = 0;
  int64_t until_ms = 0;
  [[nodiscard]] bool pending() const { return nice >= 0; }
  void attempt(pid_t program) {
    int64_t now = monotonic_ms();
    if (until_ms == 0) {
      until_ms = now + 1000;
    }
    if (now < next_ms) {
      return;
    }
    next_ms = now + 20;
    // EACCES: init wakes from the vfork in the middle of the program's execve, while the new
    // image is still non-dumpable as init is (so /proc/PID is not the user's); a moment later
    // it is.
    int err = set_autogroup_nice(program, nice);
    if ((err != EAGAIN && err != EACCES) || now >= until_ms) {
      nice = -1;
    }
  }
};

// pid 1: reap everything, forward signals to the program's process group, mirror its status.
// The socket factory's wake-up (F_SETSIG): a queued real-time signal carrying the fd, so that
// init's one sigwaitinfo() serves it; a box that sends this signal to init only makes it find
// no request.
int factory_signal() {
  return SIGRTMAX - 1;
}

// Answers every request waiting on the socket factory with a new TCP socket of the box's
// network namespace (init's), or the errno that socket(2) gave.
void serve_factory(int factory) {
  char req = 0;
  for (int i = 0; i < 256 && ::recv(factory, &req, 1, MSG_DONTWAIT) == 1; ++i) {
    int s =
        ::socket(req == '6' ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    Msg m{MsgType::kSocket, 0, s < 0 ? errno : 0, -1};
    [[maybe_unused]] bool sent = send_fds(factory, &s, s < 0 ? 0 : 1, m);
    if (s >= 0) {
      ::close(s);
    }
  }
}

[[noreturn]] void init_loop(pid_t program, int report_fd, int autogroup_nice, int factory) {
  ExitReport report;
  sigset_t all;
  sigfillset(&all);
  AutogroupNice ag{.nice = autogroup_nice};
  while (true) {
    siginfo_t si{};
    if (ag.pending()) {
      ag.attempt(program);
    }
    const timespec wait{0, 20'000'000};
    int sig = ag.pending() ? ::sigtimedwait(&all, &si, &wait) : ::sigwaitinfo(&all, &si);
    if (sig < 0) {
      continue;
    }
    if (factory >= 0 && (sig == factory_signal() || (sig == SIGIO && si.si_fd == factory))) {
      serve_factory(factory);  // SIGIO: the real-time signal's queue was full
      continue;
    }
    if (sig == SIGCHLD) {
      int status = 0;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
        if (WIFSIGNALED(status)) {
          report.died_of_sigxfsz += WTERMSIG(status) == SIGXFSZ ? 1 : 0;
          report.died_of_sigxcpu += WTERMSIG(status) == SIGXCPU ? 1 : 0;
        }
        if (pid == program) {
          report.program_status = status;
          if (report_fd >= 0) {  // one write of a few bytes to a pipe: atomic
            [[maybe_unused]] ssize_t n = ::write(report_fd, &report, sizeof report);
          }
          ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
      }
      continue;
    }
    if (::kill(-program, sig) != 0) {
      ::kill(program, sig);
    }
  }
}

// The program's process: posix_spawn's way, CLONE_VM|CLONE_VFORK on a stack of its own, so the
// kernel neither copies init's page tables (init is a copy of the whole supervisor) nor tears the
// copy down again at execve. init is suspended until the program has executed or failed; the
// child only makes system calls (run_program and the confinement hook allocate nothing), and init
// has no signal handlers that could run on the shared memory. Under AddressSanitizer (the
// sanitizer job), a plain fork: ASan cannot follow the switch to another stack and would print
// warnings into the box's stderr.
#if defined(__SANITIZE_ADDRESS__)
#define AGENTBOX_SPAWN_BY_FORK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AGENTBOX_SPAWN_BY_FORK 1
#endif
#endif
pid_t spawn_program(const Prepared& p, int slave) {
#ifdef AGENTBOX_SPAWN_BY_FORK
  pid_t child = ::fork();
  if (child == 0) {
    run_program(p, slave);
  }
  return child;
#else
  constexpr size_t kStack = size_t{256} * 1024;
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    return -1;
  }
  struct Args {
    const Prepared* p;
    int slave;
  } args{&p, slave};
  pid_t pid = ::clone(
      [](void* a) -> int {
        const auto* in = static_cast<const Args*>(a);
        run_program(*in->p, in->slave);
      },
      static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int saved = errno;
  ::munmap(stack, kStack);  // the child has executed or exited: its stack is ours again
  errno = saved;
  return pid;
#endif
}

// `lo` up, then the network hook; on a second thread of init while the first one mounts (init
// was cloned from the single-threaded supervisor, so glibc's state is a fork's: creating a thread
// is allowed, and each thread has its own errno and malloc cache for libnl).
struct NetSetup {
  explicit NetSetup(const Prepared& prepared) : p(prepared) {}
  const Prepared& p;
  NetworkSetupResult result;
  pthread_t thread{};
  bool threaded = false;

  int netns = -1;  // the box's network namespace, for the main thread's setns

  void run() noexcept {
    base::startup_trace::stamp("net");
    // The box's network namespace is made here rather than by clone3: creating one is most of
    // clone3's cost (~0.6 ms of pernet set-up, more while the kernel still cleans up a previous
    // box's), and here it overlaps the mount tree. The main thread joins it before the program
    // starts; until then it holds no socket and makes no network call.
    if (::unshare(CLONE_NEWNET) != 0) {
      result = {SetupStage::kNetns, errno, -1};
      return;
    }
    netns = ::open("/oldroot/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (netns < 0) {
      result = {SetupStage::kNetns, errno, -1};
      return;
    }
    if (!loopback_up()) {
      result = {SetupStage::kLoopback, errno, -1};
      return;
    }
    if (p.network != nullptr) {
      result = p.network->setup("/oldroot");
      if (result.err != 0 && result.stage == SetupStage::kNone) {
        result.stage = SetupStage::kTapConfigure;
      }
    }
  }
  void run_traced() noexcept {
    run();
    base::startup_trace::stamp("net.done");
  }
  void start() noexcept {
    threaded = ::pthread_create(
                   &thread, nullptr,
                   [](void* self) -> void* {
                     static_cast<NetSetup*>(self)->run_traced();
                     return nullptr;
                   },
                   this) == 0;
  }
  // Without a thread (pthread_create failed: EAGAIN under a thread limit), inline.
  void join() noexcept {
    if (threaded) {
      ::pthread_join(thread, nullptr);
    } else {
      run();
    }
  }
};

// Drops what the supervisor had open (its end of the control socket, epoll, signalfd, the audit
// log) but `p.keep`: init needs none of it, and its liveness check needs the supervisor's end of
// the socket to be held by the supervisor alone.
void close_inherited(const Prepared& p) {
  unsigned from = 3;
  for (int keep : p.keep) {
    auto k = static_cast<unsigned>(keep);
    if (k >= from && k > from && ::syscall(SYS_close_range, from, k - 1, 0U) != 0) {
      fail(p, SetupStage::kCloseFds, errno);
    }
    from = std::max(from, k + 1);
  }
  if (::syscall(SYS_close_range, from, ~0U, 0U) != 0) {
    fail(p, SetupStage::kCloseFds, errno);
  }
}

[[noreturn]] void box_init(const Prepared& p) {
  base::startup_trace::stamp("init");
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    fail(p, SetupStage::kPdeathsig, errno);
  }
  close_inherited(p);
  // The supervisor may have died before PR_SET_PDEATHSIG took effect: its end of the control
  // socket is then closed.
  pollfd pfd{p.ctl, POLLRDHUP, 0};
  if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLRDHUP)) != 0) {
    ::_exit(125);
  }
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);

  write_own_maps(p);
  base::startup_trace::stamp("init.maps");
  // init holds every capability in the box's new user namespace, CAP_SYS_RESOURCE included, which
  // is what these files ask of a writer; the program will hold none, and /proc/sys is read-only.
  // (/proc/sys is not per process: init's dumpability does not change who owns it.)
  for (const auto& [path, value] : p.userns_limits) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    bool ok =
        fd >= 0 && ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
    int err = errno;
    if (fd >= 0) {
      ::close(fd);
    }
    if (!ok && err != ENOENT) {
      fail(p, SetupStage::kUserLimits, err);
    }
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    fail(p, SetupStage::kMountPrivate, errno);
  }
  if (::mount("tmpfs", kStaging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0 ||
      ::chdir(kStaging) != 0 || ::mkdir("oldroot", 0755) != 0 || ::mkdir("newroot", 0755) != 0 ||
      ::mount("tmpfs", "newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m") != 0) {
    fail(p, SetupStage::kStaging, errno);
  }
  if (::syscall(SYS_pivot_root, ".", "oldroot") != 0 || ::chdir("/") != 0) {
    fail(p, SetupStage::kPivotStaging, errno);
  }
  // The network (`lo`, the tap made and configured over netlink) is independent of the mount
  // tree and about as long to set up: a second thread does it meanwhile, joined before the host's
  // tree goes away (it reaches /dev/net/tun and /proc/sys through /oldroot).
  NetSetup net(p);
  net.start();
  if (!make_file(kEmptyFile, 0444)) {
    fail(p, SetupStage::kStaging, errno);
  }
  for (size_t i = 0; i < p.ops.size(); ++i) {
    if (!run_op(p.ops, i)) {
      fail(p, SetupStage::kMountOp, errno, static_cast<int>(i));
    }
  }
  base::startup_trace::stamp("init.mounts");
  if (::sethostname(p.hostname.data(), p.hostname.size()) != 0) {
    fail(p, SetupStage::kHostname, errno);
  }
  net.join();
  base::startup_trace::stamp("init.joined");
  if (net.result.err != 0) {
    fail(p, net.result.stage, net.result.err);
  }
  if (::setns(net.netns, CLONE_NEWNET) != 0) {
    fail(p, SetupStage::kNetns, errno);
  }
  ::close(net.netns);
  if (p.network != nullptr) {
    int fds[kMaxFdsPerMsg];
    fds[0] = net.result.fd;
    int extra = std::clamp(net.result.extra_count, 0, kMaxNetworkExtraFds);
    std::copy_n(net.result.extra, extra, fds + 1);
    if (!send_fds(p.ctl, fds, 1 + extra, Msg{MsgType::kTap, 0, 0, -1})) {
      fail(p, SetupStage::kTapSend, errno);
    }
    // The supervisor's copies keep them alive; the program never sees them.
    for (int i = 0; i < 1 + extra; ++i) {
      ::close(fds[i]);
    }
  }
  // The socket factory wakes init (now in the box's network namespace) with a queued signal.
  if (p.factory >= 0 && (::fcntl(p.factory, F_SETOWN, ::getpid()) != 0 ||
                         ::fcntl(p.factory, F_SETSIG, factory_signal()) != 0 ||
                         ::fcntl(p.factory, F_SETFL, O_ASYNC | O_NONBLOCK) != 0)) {
    fail(p, SetupStage::kTapSend, errno);
  }
  // Into the box: pivot_root(".", ".") stacks the staging root on top of the new one; detaching
  // it takes the staging tmpfs and the whole host tree (/oldroot) out of this namespace.
  int old_root = ::open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (old_root < 0 || ::chdir("/newroot") != 0 || ::syscall(SYS_pivot_root, ".", ".") != 0 ||
      ::fchdir(old_root) != 0 || ::umount2(".", MNT_DETACH) != 0 || ::chdir("/") != 0) {
    fail(p, SetupStage::kPivotRoot, errno);
  }
  ::close(old_root);
  if (::chdir(p.cwd.c_str()) != 0) {
    fail(p, SetupStage::kChdir, errno);
  }
  base::startup_trace::stamp("init.pivot");
  int slave = p.pty ? open_pty(p) : -1;
  pid_t program = spawn_program(p, slave);
  if (program < 0) {
    fail(p, SetupStage::kForkProgram, errno);
  }
  if (slave >= 0) {
    ::close(slave);
  }
  ::close(p.ctl);  // the supervisor sees EOF once the program has executed (or failed)
  init_loop(program, p.exit_report, p.autogroup_nice, p.factory);
}

// The socket factory's pair (LaunchSpec::socket_factory): init keeps `theirs`.
base::Status socket_factory_pair(Prepared& p, UniqueFd& ours, UniqueFd& theirs) {
  int fv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fv) != 0) {
    return Error::sys(errno, "socketpair", "socket factory");
  }
  ours = UniqueFd(fv[0]);
  theirs = UniqueFd(fv[1]);
  p.factory = theirs.get();
  p.keep.push_back(p.factory);
  return base::ok();
}

// The fds of one SCM_RIGHTS message, owned.
std::vector<UniqueFd> received_fds(const cmsghdr* c) {
  size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
  std::vector<UniqueFd> fds;
  for (size_t i = 0; i < count; ++i) {
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
    fds.emplace_back(fd);
  }
  return fds;
}

// The box's init: clone3, or clone(2) under a seccomp filter that answers clone3 with ENOSYS
// (`call` then names it). The child returns 0, as from fork.
long clone_box(clone_args& args, int& pidfd, const char*& call) {
#ifdef AGENTBOX_FAULT_BOX_START
  // The test-only agentbox-broken-start (tests/CMakeLists.txt), never the shipped binary: every
  // start fails the way a refused user namespace looks, the one cause the tests may skip on.
  static_cast<void>(args);
  long pid = -1;
  errno = EPERM;
#else
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
#endif
  if (pid < 0 && errno == ENOSYS) {
    call = "clone";
    // Under a seccomp filter that answers clone3 with ENOSYS (an agentbox box does, so that libc
    // falls back to the clone(2) its rules can read): the same call through clone(2), which
    // writes the pidfd through parent_tid. A box that denies new namespaces refuses it (EPERM).
    pid = ::syscall(SYS_clone, args.flags | SIGCHLD, nullptr, &pidfd, nullptr, nullptr);
  }
  return pid;
}

}  // namespace

Result<Box> Box::start(const LaunchSpec& spec, LaunchFailure* failure) {
  if (spec.argv.empty()) {
    return Error::msg("no command to run");
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return Error::sys(errno, "socketpair");
  }
  UniqueFd ours(sv[0]);
  UniqueFd theirs(sv[1]);
  std::vector<std::string> argv_store;
  std::vector<std::string> env_store;
  Prepared p = prepare(spec, argv_store, env_store);
  p.ctl = theirs.get();
  p.keep.push_back(p.ctl);
  UniqueFd factory_ours;
  UniqueFd factory_theirs;
  if (spec.socket_factory) {
    AGENTBOX_TRY(socket_factory_pair(p, factory_ours, factory_theirs));
  }
  std::sort(p.keep.begin(), p.keep.end());
  base::startup_trace::stamp("clone");

  int pidfd = -1;
  clone_args args{};
  // No CLONE_NEWNET: init's network thread makes the box's network namespace (box_init).
  args.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
               CLONE_NEWCGROUP | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);  // NOLINT: the kernel ABI takes an address
  args.exit_signal = SIGCHLD;
  const char* call = "clone3";
  long pid = clone_box(args, pidfd, call);
  if (pid < 0) {
    int err = errno;
    if (spec.after_clone) {
      spec.after_clone();
    }
    if (failure != nullptr) {
      *failure = LaunchFailure{SetupStage::kNone, err, -1};
    }
    return Error::sys(err, call, "new user, mount, pid, ipc, uts and cgroup namespaces")
        .context("creating the box");
  }
  if (pid == 0) {
    // No destructors in the child: it leaves through _exit or execve. box_init closes every
    // inherited fd but 0-2 and its end of the control socket.
    [[maybe_unused]] int inherited = ours.release();
    [[maybe_unused]] int factory_end = factory_ours.release();
    box_init(p);
  }
  Box box(UniqueFd(pidfd), static_cast<pid_t>(pid));
  base::startup_trace::stamp("cloned");
  if (spec.after_clone) {
    spec.after_clone();  // init is building the box meanwhile
  }
  theirs.reset();
  factory_theirs.reset();
  box.factory_ = std::move(factory_ours);

  // Read reports until EOF (program executed) or a failure.
  while (true) {
    Msg m{};
    iovec iov{&m, sizeof m};
    alignas(cmsghdr) char buf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMsg)] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = buf;
    mh.msg_controllen = sizeof buf;
    ssize_t n = base::retry_eintr([&] { return ::recvmsg(ours.get(), &mh, MSG_CMSG_CLOEXEC); });
    if (n < 0) {
      return Error::sys(errno, "recvmsg", "control socket").context("starting the box");
    }
    if (n == 0) {
      break;
    }
    if (static_cast<size_t>(n) != sizeof m) {
      return Error::msg("short message on the box's control socket");
    }
    if (m.type == MsgType::kPtyMaster || m.type == MsgType::kTap) {
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      if (c == nullptr || c->cmsg_type != SCM_RIGHTS) {
        return Error::msg("fd message without a file descriptor");
      }
      std::vector<UniqueFd> fds = received_fds(c);
      if (fds.empty()) {
        return Error::msg("fd message without a file descriptor");
      }
      (m.type == MsgType::kTap ? box.tap_ : box.pty_master_) = std::move(fds[0]);
      if (m.type == MsgType::kTap) {
        std::move(fds.begin() + 1, fds.end(), std::back_inserter(box.extra_));
      }
      continue;
    }
    LaunchFailure f{static_cast<SetupStage>(m.stage), m.err, m.index};
    if (failure != nullptr) {
      *failure = f;
    }
    [[maybe_unused]] auto reaped = box.reap(true);
    if (f.stage == SetupStage::kExec) {
      return Error::sys(f.err, "execve", spec.argv[0]).context("running the command");
    }
    std::string what = setup_stage_name(f.stage);
    if (f.stage == SetupStage::kMountOp && f.index >= 0 &&
        static_cast<size_t>(f.index) < spec.mounts.size()) {
      what = spec.mounts[static_cast<size_t>(f.index)].describe();
    }
    return Error(what, f.err).context("setting up the box");
  }
  return box;
}

Box::Box(Box&& other) noexcept
    : pidfd_(std::move(other.pidfd_)),
      pid_(other.pid_),
      pty_master_(std::move(other.pty_master_)),
      tap_(std::move(other.tap_)),
      extra_(std::move(other.extra_)),
      factory_(std::move(other.factory_)),
      reaped_(other.reaped_) {
  other.reaped_ = true;
}

Box::~Box() {
  if (!reaped_ && pidfd_.valid()) {
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    siginfo_t info{};
    base::retry_eintr(
        [&] { return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED); });
  }
}

base::Status Box::signal(int sig) const {
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0) {
    return Error::sys(errno, "pidfd_send_signal");
  }
  return base::ok();
}

Result<std::optional<int>> Box::reap(bool block) {
  siginfo_t info{};
  int r = base::retry_eintr([&] {
    return ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info,
                    WEXITED | (block ? 0 : WNOHANG));
  });
  if (r != 0) {
    return Error::sys(errno, "waitid");
  }
  if (info.si_pid == 0) {
    return std::optional<int>();
  }
  reaped_ = true;
  int code = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
  return std::optional<int>(code);
}

}  // namespace agentbox::sandbox
