// LimitWatch: counts a real process tree's tasks, reads VmPeak, sees a full tmpfs, and claims
// nothing it did not see.
#include "agentbox/sandbox/limit_watch.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace agentbox::sandbox {
namespace {

// A tree of our own: `root` with `kids` sleeping children, one of which maps `mib` MiB.
struct Tree {
  pid_t root = -1;
  explicit Tree(int kids, size_t mib) {
    int ready[2];
    EXPECT_EQ(::pipe(ready), 0);
    root = ::fork();
    if (root == 0) {
      for (int i = 0; i < kids; ++i) {
        if (::fork() == 0) {
          ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // gone with `root`, never left behind
          if (i == 0 && mib > 0) {
            void* p = ::mmap(nullptr, mib << 20, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
              ::_exit(1);
            }
          }
          ::pause();
          ::_exit(0);
        }
      }
      ::sleep(1);  // the children have mapped what they map
      (void)!::write(ready[1], "x", 1);
      ::pause();
      ::_exit(0);
    }
    char c;
    (void)!::read(ready[0], &c, 1);
    ::close(ready[0]);
    ::close(ready[1]);
  }
  ~Tree() {
    ::kill(root, SIGKILL);
    ::waitpid(root, nullptr, 0);
  }
};

TEST(LimitWatch, CountsTasksAndNamesTheProcessLimitOnlyWhenReached) {
  {
    Tree t(5, 0);  // 6 processes (the children die with nobody to reap them: harmless)
    LimitWatch w = LimitWatch::start({.init = t.root, .nproc = 6});
    w.sample();
    EXPECT_EQ(w.max_tasks(), 6u);
    auto hits = w.finish(std::nullopt);
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].key, "pids");
    EXPECT_EQ(hits[0].phrase, "process limit (RLIMIT_NPROC 6: 6 tasks at once)");
  }
  {
    Tree t(5, 0);
    LimitWatch w = LimitWatch::start({.init = t.root, .nproc = 7});
    w.sample();
    EXPECT_TRUE(w.finish(std::nullopt).empty()) << "6 tasks under a limit of 7: nothing reached";
  }
  LimitWatch none = LimitWatch::start({.init = ::getpid()});
  none.sample();
  EXPECT_EQ(none.max_tasks(), 0u) << "no rlimit on tasks or memory: no walk";
}

TEST(LimitWatch, AddressSpacePeakWithinTheSlackIsNamed) {
  Tree t(2, 48);
  // Far above any user address space (128 TiB): under ASan each process's shadow mapping alone
  // makes VmPeak tens of TiB.
  LimitWatch w = LimitWatch::start({.init = t.root, .address_space = uint64_t{1} << 56});
  w.sample();
  EXPECT_GE(w.max_vm_peak(), uint64_t{48} << 20);
  EXPECT_TRUE(w.finish(std::nullopt).empty()) << "far below 64 PiB";
  LimitWatch near = LimitWatch::start({.init = t.root, .address_space = w.max_vm_peak() + 4096});
  near.sample();
  auto hits = near.finish(std::nullopt);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].key, "memory");
}

TEST(LimitWatch, FileSizeOnlyFromInitsReport) {
  LimitWatch w = LimitWatch::start({.file_size = uint64_t{4} << 20});
  ExitReport r;
  EXPECT_TRUE(w.finish(r).empty());
  r.died_of_sigxfsz = 1;
  auto hits = w.finish(r);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].phrase,
            "file size limit (RLIMIT_FSIZE 4 MiB: 1 process(es) killed by SIGXFSZ)");
}

TEST(LimitWatch, HumanBytes) {
  EXPECT_EQ(human_bytes(8u << 20), "8 MiB");
  EXPECT_EQ(human_bytes(uint64_t{2} << 30), "2 GiB");
  EXPECT_EQ(human_bytes((63u << 20) + (1u << 19)), "63.5 MiB");
}

}  // namespace
}  // namespace agentbox::sandbox
