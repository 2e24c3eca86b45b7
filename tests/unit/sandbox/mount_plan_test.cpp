// The mount plan: what is mounted, how, and in which order (against a fake host).
#include "agentbox/sandbox/mount_plan.hpp"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace agentbox::sandbox {
namespace {

class FakeHost final : public HostFs {
 public:
  std::map<std::string, Kind> kinds;
  std::map<std::string, std::string> links;
  Kind kind(const std::string& p) const override {
    auto it = kinds.find(p);
    return it == kinds.end() ? Kind::kMissing : it->second;
  }
  Kind kind_follow(const std::string& p) const override {
    Kind k = kind(p);
    return k == Kind::kSymlink ? Kind::kDir : k;
  }
  std::string read_link(const std::string& p) const override {
    auto it = links.find(p);
    return it == links.end() ? std::string() : it->second;
  }
};

// A merged-/usr Debian host.
FakeHost debian() {
  FakeHost h;
  h.kinds = {{"/usr", HostFs::Kind::kDir},
             {"/bin", HostFs::Kind::kSymlink},
             {"/lib", HostFs::Kind::kSymlink},
             {"/lib64", HostFs::Kind::kSymlink},
             {"/sbin", HostFs::Kind::kSymlink},
             {"/etc/ssl", HostFs::Kind::kDir},
             {"/etc/ld.so.cache", HostFs::Kind::kFile},
             {"/etc/localtime", HostFs::Kind::kSymlink},
             {"/etc/shadow", HostFs::Kind::kFile},
             {"/etc/passwd", HostFs::Kind::kFile},
             {"/etc/ssh/ssh_config", HostFs::Kind::kFile},
             {"/etc/ssh/ssh_host_rsa_key", HostFs::Kind::kFile},
             {"/home/a/.gitconfig", HostFs::Kind::kFile},
             {"/home/a/.cache/pip", HostFs::Kind::kDir}};
  h.links = {{"/bin", "usr/bin"},
             {"/lib", "usr/lib"},
             {"/lib64", "usr/lib64"},
             {"/sbin", "usr/sbin"},
             {"/etc/localtime", "/usr/share/zoneinfo/Etc/UTC"}};
  return h;
}

MountSpec spec() {
  return MountSpec{.workspace = "/home/a/src/proj",
                   .home = "/home/a",
                   .home_size = 1 << 20,
                   .tmp_size = 2 << 20,
                   .shm_size = 3 << 20,
                   .home_inodes = 256,
                   .tmp_inodes = 512,
                   .shm_inodes = 768,
                   .grants = {{"/home/a/.gitconfig", false},
                              {"/home/a/.cache/pip", true},
                              {"/nonexistent", false}},
                   .protected_paths = {".git/hooks", ".envrc"},
                   .etc_passwd = "root:x:0:0::/root:/bin/sh\n"};
}

const MountOp* find(const std::vector<MountOp>& ops, MountKind k, const std::string& target) {
  for (const auto& op : ops) {
    if (op.kind == k && op.target == target) {
      return &op;
    }
  }
  return nullptr;
}

size_t index_of(const std::vector<MountOp>& ops, const std::string& target) {
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].target == target && ops[i].kind != MountKind::kMkdir) {
      return i;
    }
  }
  return ops.size();
}

TEST(MountPlan, SystemTreesReadOnlyAndMergedUsrLinksRecreated) {
  auto ops = build_mount_plan(spec(), debian());
  const MountOp* usr = find(ops, MountKind::kBindDir, "/usr");
  ASSERT_NE(usr, nullptr);
  EXPECT_TRUE(usr->read_only);
  EXPECT_EQ(usr->source, "/usr");
  const MountOp* bin = find(ops, MountKind::kSymlink, "/bin");
  ASSERT_NE(bin, nullptr);
  EXPECT_EQ(bin->source, "usr/bin");
  EXPECT_EQ(find(ops, MountKind::kBindDir, "/opt"), nullptr);  // missing on the host: absent
  EXPECT_EQ(index_of(ops, "/run"), ops.size());
  EXPECT_EQ(index_of(ops, "/sys"), ops.size());
}

TEST(MountPlan, EtcIsSelectiveAndSynthesized) {
  auto ops = build_mount_plan(spec(), debian());
  EXPECT_NE(find(ops, MountKind::kBindDir, "/etc/ssl"), nullptr);
  EXPECT_NE(find(ops, MountKind::kBindFile, "/etc/ld.so.cache"), nullptr);
  EXPECT_NE(find(ops, MountKind::kBindFile, "/etc/ssh/ssh_config"), nullptr);
  EXPECT_NE(find(ops, MountKind::kMkdir, "/etc/ssh"), nullptr);
  EXPECT_EQ(index_of(ops, "/etc/ssh/ssh_host_rsa_key"), ops.size());
  EXPECT_EQ(index_of(ops, "/etc/shadow"), ops.size());
  EXPECT_EQ(find(ops, MountKind::kBindFile, "/etc/passwd"), nullptr);  // never the host's
  const MountOp* passwd = find(ops, MountKind::kWriteFile, "/etc/passwd");
  ASSERT_NE(passwd, nullptr);
  EXPECT_EQ(passwd->data, "root:x:0:0::/root:/bin/sh\n");
  for (const char* f : {"/etc/group", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}) {
    EXPECT_NE(find(ops, MountKind::kWriteFile, f), nullptr) << f;
  }
  const MountOp* tz = find(ops, MountKind::kSymlink, "/etc/localtime");
  ASSERT_NE(tz, nullptr);
  EXPECT_EQ(tz->source, "/usr/share/zoneinfo/Etc/UTC");
  for (const auto& e : etc_entries()) {
    EXPECT_EQ(e.find("shadow"), std::string::npos);
    EXPECT_EQ(e.find("sudoers"), std::string::npos);
    EXPECT_EQ(e.find("_key"), std::string::npos);
  }
}

TEST(MountPlan, ProcDevAndTmp) {
  auto ops = build_mount_plan(spec(), debian());
  EXPECT_NE(find(ops, MountKind::kProc, "/proc"), nullptr);
  // The writable parts of /proc are read-only in the mount layer too (not only by Landlock).
  for (const char* p : {"sys", "sysrq-trigger", "irq", "bus"}) {
    auto it = std::find_if(ops.begin(), ops.end(), [&](const MountOp& op) {
      return op.kind == MountKind::kProtect && op.target == "/proc" && op.source == p;
    });
    ASSERT_NE(it, ops.end()) << p;
    EXPECT_TRUE(it->read_only && it->optional) << p;
    EXPECT_GT(static_cast<size_t>(it - ops.begin()), index_of(ops, "/proc")) << p;
  }
  EXPECT_NE(find(ops, MountKind::kTmpfs, "/dev"), nullptr);
  EXPECT_NE(find(ops, MountKind::kDevpts, "/dev/pts"), nullptr);
  const MountOp* ptmx = find(ops, MountKind::kSymlink, "/dev/ptmx");
  ASSERT_NE(ptmx, nullptr);
  EXPECT_EQ(ptmx->source, "pts/ptmx");
  for (const char* d :
       {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}) {
    const MountOp* op = find(ops, MountKind::kBindFile, d);
    ASSERT_NE(op, nullptr) << d;
    EXPECT_TRUE(op->devices) << d;
  }
  EXPECT_LT(index_of(ops, "/dev"), index_of(ops, "/dev/null"));
  const MountOp* tmp = find(ops, MountKind::kTmpfs, "/tmp");
  ASSERT_NE(tmp, nullptr);
  EXPECT_EQ(tmp->mode, 01777u);
  EXPECT_EQ(tmp->size_bytes, 2u << 20);
  EXPECT_EQ(tmp->inodes, 512u);
  // /dev/shm has a size and an inode cap of its own (it shared /tmp's size before).
  const MountOp* shm = find(ops, MountKind::kTmpfs, "/dev/shm");
  ASSERT_NE(shm, nullptr);
  EXPECT_EQ(shm->size_bytes, 3u << 20);
  EXPECT_EQ(shm->inodes, 768u);
}

TEST(MountPlan, HomeIsAPrivateTmpfsMountedBeforeWhatLivesInIt) {
  auto ops = build_mount_plan(spec(), debian());
  const MountOp* home = find(ops, MountKind::kTmpfs, "/home/a");
  ASSERT_NE(home, nullptr);
  EXPECT_EQ(home->mode, 0700u);
  EXPECT_EQ(home->size_bytes, 1u << 20);
  EXPECT_EQ(home->inodes, 256u);
  const MountOp* ws = find(ops, MountKind::kBindDir, "/home/a/src/proj");
  ASSERT_NE(ws, nullptr);
  EXPECT_FALSE(ws->read_only);
  EXPECT_LT(index_of(ops, "/home/a"), index_of(ops, "/home/a/src/proj"));
  EXPECT_LT(index_of(ops, "/home/a"), index_of(ops, "/home/a/.gitconfig"));
  // The directories between the home tmpfs and the workspace are created inside it, in order.
  size_t mk = ops.size();
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind == MountKind::kMkdir && ops[i].target == "/home/a/src") {
      mk = i;
    }
  }
  EXPECT_LT(index_of(ops, "/home/a"), mk);
  EXPECT_LT(mk, index_of(ops, "/home/a/src/proj"));
}

TEST(MountPlan, GrantsKeepTheirModeAndMissingOnesAreSkipped) {
  auto ops = build_mount_plan(spec(), debian());
  const MountOp* gc = find(ops, MountKind::kBindFile, "/home/a/.gitconfig");
  ASSERT_NE(gc, nullptr);
  EXPECT_TRUE(gc->read_only);
  const MountOp* pip = find(ops, MountKind::kBindDir, "/home/a/.cache/pip");
  ASSERT_NE(pip, nullptr);
  EXPECT_FALSE(pip->read_only);
  EXPECT_EQ(index_of(ops, "/nonexistent"), ops.size());
}

TEST(MountPlan, WorkspaceUnderTmpComesAfterTheTmpTmpfs) {
  MountSpec s = spec();
  s.workspace = "/tmp/x/ws";
  auto ops = build_mount_plan(s, debian());
  EXPECT_LT(index_of(ops, "/tmp"), index_of(ops, "/tmp/x/ws"));
}

TEST(MountPlan, GrantInsideTheWorkspaceComesAfterIt) {
  MountSpec s = spec();
  s.grants = {{"/home/a/src/proj/secrets", false}};
  FakeHost h = debian();
  h.kinds["/home/a/src/proj/secrets"] = HostFs::Kind::kDir;
  auto ops = build_mount_plan(s, h);
  EXPECT_LT(index_of(ops, "/home/a/src/proj"), index_of(ops, "/home/a/src/proj/secrets"));
}

TEST(MountPlan, ProtectedPathsAfterTheWorkspaceAndRootReadOnlyLast) {
  auto ops = build_mount_plan(spec(), debian());
  size_t ws = index_of(ops, "/home/a/src/proj");
  std::vector<std::string> protected_paths;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind == MountKind::kProtect && ops[i].target != "/proc") {
      EXPECT_GT(i, ws);
      EXPECT_EQ(ops[i].target, "/home/a/src/proj");
      protected_paths.push_back(ops[i].source);
      EXPECT_EQ(ops[i].read_only, ops[i].source != ".git") << ops[i].source;  // .git: pinned
    }
  }
  EXPECT_EQ(protected_paths, (std::vector<std::string>{".git", ".git/hooks", ".envrc"}));
  EXPECT_EQ(ops.back().kind, MountKind::kRemountRoot);
}

// Review mode: overlayfs replaces the workspace's read-write bind, and the protections still
// come after it, on top of the overlay.
TEST(MountPlan, ReviewMountsTheWorkspaceAsAnOverlayUnderTheProtections) {
  MountSpec s = spec();
  s.review_upper = "/home/a/.local/state/agentbox/review/x/upper";
  s.review_work = "/home/a/.local/state/agentbox/review/x/work";
  auto ops = build_mount_plan(s, debian());
  EXPECT_EQ(find(ops, MountKind::kBindDir, "/home/a/src/proj"), nullptr) << "no live bind";
  const MountOp* ov = find(ops, MountKind::kOverlay, "/home/a/src/proj");
  ASSERT_NE(ov, nullptr);
  EXPECT_EQ(ov->source, "/home/a/src/proj");
  EXPECT_EQ(ov->data, s.review_upper);
  EXPECT_EQ(ov->work, s.review_work);
  size_t ws = index_of(ops, "/home/a/src/proj");
  size_t hooks = ops.size();
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind == MountKind::kProtect && ops[i].source == ".git/hooks") {
      hooks = i;
    }
  }
  EXPECT_LT(ws, hooks);
  EXPECT_NE(hooks, ops.size());
  EXPECT_EQ(ov->describe(),
            fmt::format("mount overlay `/home/a/src/proj` (upper `{}`)", s.review_upper));
}

// A protected parent of protected paths keeps its read-only mount; it is not pinned read-write.
TEST(MountPlan, ProtectedParentIsReadOnlyNotPinned) {
  MountSpec s = spec();
  s.protected_paths = {".git/hooks", ".git", "a/b/c"};
  auto ops = build_mount_plan(s, debian());
  std::vector<std::pair<std::string, bool>> got;
  for (const auto& op : ops) {
    if (op.kind == MountKind::kProtect && op.target != "/proc") {
      got.emplace_back(op.source, op.read_only);
    }
  }
  EXPECT_EQ(
      got,
      (std::vector<std::pair<std::string, bool>>{
          {"a", false}, {"a/b", false}, {".git/hooks", true}, {".git", true}, {"a/b/c", true}}));
}

TEST(MountPlan, SysOnlyWhenAsked) {
  MountSpec s = spec();
  s.mount_sys = true;
  auto ops = build_mount_plan(s, debian());
  const MountOp* sys = find(ops, MountKind::kBindDir, "/sys");
  ASSERT_NE(sys, nullptr);
  EXPECT_TRUE(sys->read_only);
}

TEST(MountPlan, OverlaysComeAfterTheUserTreesReadOnly) {
  MountSpec s = spec();
  s.overlays = {{.target = "/etc/ssl/certs/ca-certificates.crt", .source = "/state/s1/bundle.pem"},
                {.target = "/etc/agentbox/certs", .source = "/state/s1/certs", .dir = true},
                {.target = "/home/a/.config/tool/auth.json", .source = "/state/s1/auth.json"}};
  auto ops = build_mount_plan(s, debian());
  auto at = [&](const std::string& target) {
    return std::find_if(ops.begin(), ops.end(),
                        [&](const MountOp& o) { return o.target == target; }) -
           ops.begin();
  };
  const auto bundle = at("/etc/ssl/certs/ca-certificates.crt");
  const auto certs = at("/etc/agentbox/certs");
  const auto auth = at("/home/a/.config/tool/auth.json");
  ASSERT_LT(bundle, static_cast<long>(ops.size()));
  ASSERT_LT(certs, static_cast<long>(ops.size()));
  ASSERT_LT(auth, static_cast<long>(ops.size()));
  EXPECT_EQ(ops[bundle].kind, MountKind::kBindFile);
  EXPECT_EQ(ops[bundle].source, "/state/s1/bundle.pem");
  EXPECT_TRUE(ops[bundle].read_only);
  EXPECT_EQ(ops[certs].kind, MountKind::kBindDir);
  EXPECT_TRUE(ops[auth].read_only);
  // After the HOME tmpfs and the /etc/ssl bind they sit in, with their parents created first.
  EXPECT_GT(auth, at("/home/a"));
  EXPECT_GT(bundle, at("/etc/ssl"));
  EXPECT_LT(at("/home/a/.config/tool"), auth);
  EXPECT_LT(at("/home/a/.config"), at("/home/a/.config/tool"));
  EXPECT_LT(auth, at("/"));  // the root is remounted read-only last
}

// The program's launcher links (app/program_install.hpp) are made in the private HOME, after it
// and the grants, their parents created there.
TEST(MountPlan, ProgramLinksAreMadeInTheHomeTmpfs) {
  MountSpec s = spec();
  s.links = {{.target = "/home/a/.npm-global/bin/claude",
              .text = "../lib/node_modules/@anthropic-ai/claude-code/cli.js"}};
  auto ops = build_mount_plan(s, debian());
  auto it = std::find_if(ops.begin(), ops.end(), [](const MountOp& o) {
    return o.target == "/home/a/.npm-global/bin/claude";
  });
  ASSERT_NE(it, ops.end());
  EXPECT_EQ(it->kind, MountKind::kSymlink);
  EXPECT_EQ(it->source, "../lib/node_modules/@anthropic-ai/claude-code/cli.js");
  auto home =
      std::find_if(ops.begin(), ops.end(), [](const MountOp& o) { return o.target == "/home/a"; });
  auto bin = std::find_if(ops.begin(), ops.end(),
                          [](const MountOp& o) { return o.target == "/home/a/.npm-global/bin"; });
  EXPECT_LT(home, bin);
  EXPECT_LT(bin, it);
  EXPECT_EQ(bin->kind, MountKind::kMkdir);
}

TEST(MountPlan, EveryParentIsCreatedBeforeItsChild) {
  auto ops = build_mount_plan(spec(), debian());
  std::set<std::string> made = {"/"};
  for (const auto& op : ops) {
    if (op.kind == MountKind::kProtect || op.kind == MountKind::kRemountRoot) {
      continue;
    }
    std::string parent = op.target.substr(0, op.target.rfind('/'));
    if (parent.empty()) {
      parent = "/";
    }
    EXPECT_TRUE(made.count(parent)) << op.describe();
    made.insert(op.target);
  }
}

TEST(Paths, NormalAndWithin) {
  EXPECT_EQ(lexically_normal_abs("/a/./b/../c//d/"), "/a/c/d");
  EXPECT_EQ(lexically_normal_abs("/.."), "/");
  EXPECT_EQ(lexically_normal_abs("rel"), "");
  EXPECT_TRUE(path_within("/a/b", "/a"));
  EXPECT_TRUE(path_within("/a", "/a"));
  EXPECT_FALSE(path_within("/ab", "/a"));
  EXPECT_TRUE(path_within("/x", "/"));
}

TEST(MountOp, DescribeNamesTheObject) {
  MountOp op{.kind = MountKind::kBindDir, .target = "/usr", .source = "/usr", .read_only = true};
  EXPECT_EQ(op.describe(), "bind `/usr` (read-only)");
  MountOp t{.kind = MountKind::kTmpfs, .target = "/tmp"};
  EXPECT_EQ(t.describe(), "mount tmpfs `/tmp`");
}

// /etc's read-only binds are restricted by one recursive seal of /etc (a tmpfs of its own),
// which comes after everything else mounted under /etc, before the root's remount.
TEST(MountPlan, EtcBindsAreSealedByOneCall) {
  MountSpec s = spec();
  s.overlays = {{.target = "/etc/ssl/certs/ca-certificates.crt", .source = "/s/bundle.pem"}};
  auto ops = build_mount_plan(s, debian());
  const MountOp* etc = find(ops, MountKind::kTmpfs, "/etc");
  ASSERT_NE(etc, nullptr);
  EXPECT_EQ(find(ops, MountKind::kMkdir, "/etc"), nullptr);
  size_t seals = 0;
  for (const auto& op : ops) {
    seals += op.kind == MountKind::kSeal ? 1 : 0;
    if (op.kind == MountKind::kBindDir || op.kind == MountKind::kBindFile) {
      EXPECT_EQ(op.sealed, path_within(op.target, "/etc")) << op.describe();
      EXPECT_TRUE(!op.sealed || op.read_only) << op.describe();
    }
  }
  ASSERT_EQ(seals, 1u);
  ASSERT_GE(ops.size(), 2u);
  EXPECT_EQ(ops[ops.size() - 2].kind, MountKind::kSeal);
  EXPECT_EQ(ops[ops.size() - 2].target, "/etc");
  EXPECT_EQ(ops.back().kind, MountKind::kRemountRoot);
}

// Something writable under /etc (a --rw grant, a workspace there): no seal, which would make it
// read-only; each bind is restricted on its own, /etc a directory of the root.
TEST(MountPlan, EtcIsNotSealedOverAWritableMount) {
  for (const bool workspace : {false, true}) {
    MountSpec s = spec();
    FakeHost h = debian();
    if (workspace) {
      s.workspace = "/etc/proj";
    } else {
      s.grants.push_back({"/etc/app.d", true});
    }
    h.kinds["/etc/app.d"] = HostFs::Kind::kDir;
    auto ops = build_mount_plan(s, h);
    EXPECT_NE(find(ops, MountKind::kMkdir, "/etc"), nullptr) << workspace;
    EXPECT_EQ(find(ops, MountKind::kTmpfs, "/etc"), nullptr) << workspace;
    for (const auto& op : ops) {
      EXPECT_NE(op.kind, MountKind::kSeal);
      EXPECT_FALSE(op.sealed) << op.describe();
    }
  }
}

}  // namespace
}  // namespace agentbox::sandbox
