// Landlock: a forked child restricted to a temp dir cannot write outside it; older ABIs degrade
// as documented (rename across dirs at ABI 1, truncate before ABI 3); scoping from ABI 6.
#include "agentbox/sandbox/landlock.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "child.hpp"
#include "testkit/skip.hpp"

namespace agentbox::sandbox {
namespace {

using testing::describe;
using testing::errno_of;
using testing::run_in_child;

// Returns from the test after testkit::skip when the kernel's Landlock ABI is below `abi`: a
// failure where the machine declares that ABI (AGENTBOX_REQUIRE_LANDLOCK_ABI), else not
// applicable here.
#define REQUIRE_LANDLOCK_ABI(abi)                                                      \
  do {                                                                                 \
    if (landlock_abi() < (abi)) {                                                      \
      testkit::skip(testkit::Need::landlock_abi(abi),                                  \
                    "the kernel's Landlock ABI is " + std::to_string(landlock_abi())); \
      return;                                                                          \
    }                                                                                  \
  } while (0)
#define REQUIRE_LANDLOCK() REQUIRE_LANDLOCK_ABI(1)

// CI declares the ABI its kernel offers: below it this fails even if no test needs that level.
TEST(LandlockMachine, KernelOffersTheDeclaredAbi) {
  const int declared = testkit::declared_landlock_abi();
  if (declared == 0) {
    testkit::skip(testkit::Need::landlock_abi(1),
                  "no Landlock ABI declared (AGENTBOX_REQUIRE_LANDLOCK_ABI unset)");
    return;
  }
  EXPECT_GE(landlock_abi(), declared) << "AGENTBOX_REQUIRE_LANDLOCK_ABI=" << declared;
  EXPECT_EQ(testkit::landlock_abi(), landlock_abi()) << "the helper and the module disagree";
}

class LandlockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-landlock-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    inside_ = root_ + "/inside";
    outside_ = root_ + "/outside";
    readonly_ = root_ + "/readonly";
    for (const auto& d : {inside_, outside_, readonly_, inside_ + "/d1", inside_ + "/d2"}) {
      ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
    }
    write_file(inside_ + "/d1/x", "move me");
    write_file(readonly_ + "/file", "0123456789");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  static void write_file(const std::string& path, const std::string& data) {
    FILE* f = fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs(data.c_str(), f);
    fclose(f);
  }
  static int create(const std::string& path) {
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
      return errno;
    }
    close(fd);
    return 0;
  }
  LandlockPlan plan(int abi_cap = 0) {
    auto p =
        plan_landlock({"/usr", "/lib", "/lib64", "/bin", "/etc", readonly_}, {inside_}, abi_cap);
    EXPECT_TRUE(p) << p.error().render();
    return std::move(p).value();
  }
  // Runs `probe` in a child, after enforcing `p` unless `enforce` is false (the control run).
  template <class F>
  testing::ChildResult run(const LandlockPlan& p, bool enforce, F probe) {
    return run_in_child([&] {
      if (enforce) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
          return 200;
        }
        if (int err = apply_landlock(p); err != 0) {
          return 201;
        }
      }
      return probe();
    });
  }

  std::string root_, inside_, outside_, readonly_;
};

TEST_F(LandlockTest, ReportsAbi) {
  REQUIRE_LANDLOCK();
  EXPECT_GE(landlock_abi(), 1);
  EXPECT_EQ(plan().abi, landlock_abi());
}

TEST_F(LandlockTest, WritesOnlyInsideTheGrant) {
  REQUIRE_LANDLOCK();
  LandlockPlan p = plan();
  auto probe = [&] {
    if (create(inside_ + "/new") != 0) {
      return 10;
    }
    int outside = create(outside_ + "/new");
    int etc = errno_of(open("/etc/passwd", O_WRONLY | O_CLOEXEC));
    int read_ok = errno_of(open("/etc/passwd", O_RDONLY | O_CLOEXEC) < 0 ? -1 : 0);
    if (read_ok != 0) {
      return 11;
    }
    return outside == EACCES && etc == EACCES ? 0 : (outside == 0 ? 1 : 2);
  };
  auto with = run(p, true, probe);
  EXPECT_TRUE(with.exited && with.code == 0) << describe(with);
  // Control: without Landlock the same process may write outside (so the test can fail).
  auto without = run(p, false, [&] { return create(outside_ + "/control"); });
  EXPECT_TRUE(without.exited && without.code == 0) << describe(without);
  struct stat st {};
  EXPECT_NE(stat((outside_ + "/new").c_str(), &st), 0) << "ground truth: file appeared outside";
}

TEST_F(LandlockTest, MissingPathsAreSkippedAndFilesGetFileRights) {
  REQUIRE_LANDLOCK();
  auto p = plan_landlock({"/usr", "/lib", "/lib64", "/nonexistent/agentbox"},
                         {readonly_ + "/file", "/also/missing"});
  ASSERT_TRUE(p) << p.error().render();
  auto r = run(*p, true, [&] {
    int fd = open((readonly_ + "/file").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      return 10;  // the file grant (rw narrowed to file rights) must allow writing it
    }
    close(fd);
    return create(readonly_ + "/sibling") == EACCES ? 0 : 11;
  });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

TEST_F(LandlockTest, RelativeGrantIsAnError) {
  EXPECT_FALSE(plan_landlock({"usr"}, {}));
}

// ABI 1 cannot express "rename within the grant": every cross-directory rename is EXDEV.
TEST_F(LandlockTest, Abi1ForbidsRenameAcrossDirectories) {
  REQUIRE_LANDLOCK();
  auto rename_probe = [&] {
    return errno_of(rename((inside_ + "/d1/x").c_str(), (inside_ + "/d2/x").c_str()));
  };
  auto v1 = run(plan(1), true, rename_probe);
  EXPECT_TRUE(v1.exited && v1.code == EXDEV) << describe(v1);
  if (landlock_abi() >= 2) {
    auto v2 = run(plan(2), true, rename_probe);
    EXPECT_TRUE(v2.exited && v2.code == 0) << describe(v2);
  }
}

// TRUNCATE is handled from ABI 3: before, truncating a read-only-granted file is not restricted.
TEST_F(LandlockTest, TruncateRestrictedFromAbi3) {
  REQUIRE_LANDLOCK_ABI(3);
  auto probe = [&] { return errno_of(truncate((readonly_ + "/file").c_str(), 1)); };
  auto v3 = run(plan(3), true, probe);
  EXPECT_TRUE(v3.exited && v3.code == EACCES) << describe(v3);
  auto v2 = run(plan(2), true, probe);
  EXPECT_TRUE(v2.exited && v2.code == 0) << describe(v2);
}

TEST_F(LandlockTest, ScopedSignalsFromAbi6) {
  REQUIRE_LANDLOCK_ABI(6);
  auto probe = [] { return errno_of(kill(getppid(), 0)); };
  auto with = run(plan(), true, probe);
  EXPECT_TRUE(with.exited && with.code == EPERM) << describe(with);
  auto without = run(plan(), false, probe);
  EXPECT_TRUE(without.exited && without.code == 0) << describe(without);
  auto v5 = run(plan(5), true, probe);
  EXPECT_TRUE(v5.exited && v5.code == 0) << "ABI 5 has no scoping: " << describe(v5);
}

TEST_F(LandlockTest, CopiedPlanPointsIntoItsOwnStrings) {
  REQUIRE_LANDLOCK();
  LandlockPlan copy;
  {
    LandlockPlan original = plan();
    copy = original;
  }
  ASSERT_EQ(copy.rules.size(), copy.paths.size());
  for (size_t i = 0; i < copy.rules.size(); ++i) {
    EXPECT_EQ(copy.rules[i].path, copy.paths[i].c_str());
  }
  auto r = run(copy, true, [&] { return create(outside_ + "/x") == EACCES ? 0 : 1; });
  EXPECT_TRUE(r.exited && r.code == 0) << describe(r);
}

// A nested sandbox's first steps (user and mount namespace, uid map, a mount) after Landlock:
// 0 when they all work, else the errno of the first that failed (+100 when it was not the mount).
int nested_sandbox_steps() {
  std::string uid = "0 " + std::to_string(getuid()) + " 1";
  std::string gid = "0 " + std::to_string(getgid()) + " 1";
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
    return 100 + errno;
  }
  for (const auto& [path, data] :
       {std::pair<const char*, std::string>{"/proc/self/setgroups", "deny"},
        {"/proc/self/uid_map", uid},
        {"/proc/self/gid_map", gid}}) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
      return 100 + errno;
    }
    close(fd);
  }
  return mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 ? 0 : errno;
}

int nested_after(LandlockFs fs) {
  auto plan = plan_landlock({}, {"/"}, 0, fs);  // every right everywhere: only the mount hooks bite
  if (!plan || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return 200;
  }
  if (int err = apply_landlock(*plan); err != 0) {
    return 210;
  }
  return nested_sandbox_steps();
}

// The true cause of "bwrap fails under --allow-syscalls userns": a Landlock domain that handles
// filesystem rights refuses every mount (EPERM) even when its rules grant everything; a domain
// with only the scopes (what a `userns` box keeps) does not.
TEST(LandlockNested, FilesystemDomainRefusesMountsScopesOnlyDoesNot) {
  REQUIRE_LANDLOCK();
  auto control = run_in_child([] { return nested_sandbox_steps(); });
  if (!control.exited || control.code != 0) {
    testkit::skip("no user namespace here even without Landlock (" + describe(control) + ")");
    return;
  }
  auto rules = run_in_child([] { return nested_after(LandlockFs::kRules); });
  EXPECT_TRUE(rules.exited && rules.code == EPERM) << describe(rules);
  auto scopes = run_in_child([] { return nested_after(LandlockFs::kScopesOnly); });
  EXPECT_TRUE(scopes.exited && scopes.code == 0) << describe(scopes);
  auto plan = plan_landlock({"/usr"}, {"/"}, 0, LandlockFs::kScopesOnly);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->handled_fs, 0u);
  EXPECT_TRUE(plan->rules.empty());
}

}  // namespace
}  // namespace agentbox::sandbox
