// Review mode's git (docs/REVIEW.md, "Commits"): a box commits inside a real repository, then
// `apply --refs` lands the commits as objects and refs only. The real binary and the host's real
// git, as root and as an unprivileged user. Oracles outside the box: the host's git, the bytes of
// the real .git/config and hooks, and marker files a planted hook or fsmonitor would create.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <filesystem>
#include <string>

#include "harness.hpp"

namespace agentbox::it {
namespace {

namespace fs = std::filesystem;

// The host's git, configured by nothing but the test (no system or global config).
std::string host_git(const std::string& ws, const std::string& args) {
  return fmt::format(
      "cd '{}' && env -i PATH=/usr/bin:/bin HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1 git -c "
      "safe.directory='*' -c user.name=Host -c user.email=host@example.invalid {}",
      ws, args);
}

// The output of `cmd` (a fixed shell line), "" when it fails.
std::string out_of(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return out;
  }
  std::array<char, 4096> buf{};
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) {
    out.append(buf.data(), n);
  }
  return ::pclose(p) == 0 ? out : std::string();
}

std::string listing(const std::string& dir) {
  std::string out;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    out += e.path().string() + " " + slurp(e.path().string()) + "\n";
  }
  return out;
}

constexpr const char* kBoxGit = "git -c user.name=Box -c user.email=box@example.invalid";

class ReviewGitTest : public BoxWorldTest {
 protected:
  void SetUp() override {
    BoxWorldTest::SetUp();
    if (!made_ || IsSkipped()) {
      return;
    }
    fs::remove_all(w_.ws + "/.git");
    write_file(w_.ws + "/a.txt", "one\n");
    ASSERT_EQ(sh(host_git(w_.ws, "init -q -b main && ") + host_git(w_.ws, "add a.txt && ") +
                 host_git(w_.ws, "commit -qm init")),
              0);
    markers_ = w_.root + "/markers";
    fs::create_directories(markers_);
    ::chmod(markers_.c_str(), 0777);  // the test's own directory: the user's git may write here
    chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  }
  std::string rev(const std::string& ref) {
    std::string s = out_of(host_git(w_.ws, "rev-parse --verify -q " + ref));
    return s.empty() ? s : s.substr(0, s.size() - 1);
  }
  std::string upper() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(w_.state + "/agentbox/review", ec)) {
      return e.path().string() + "/upper";
    }
    return {};
  }
  static std::string session_of(const Output& o) {
    const std::string key = "agentbox diff|apply|discard ";
    auto pos = o.err.find(key);
    return pos == std::string::npos
               ? std::string()
               : o.err.substr(pos + key.size(),
                              o.err.find_first_of(" \n", pos + key.size()) - pos - key.size());
  }
  // What a box that got past every protection could leave in its upper .git: hooks for every
  // command apply runs or the user runs next, an fsmonitor and hooksPath in its config, an
  // alternates file, and a loose object whose bytes are not its name.
  void plant(const std::string& up) {
    const std::string hook = fmt::format("#!/bin/sh\ntouch {}/hook-$(basename $0)\n", markers_);
    fs::create_directories(up + "/.git/hooks");
    for (const char* h : {"reference-transaction", "post-checkout", "post-index-change",
                          "pre-commit", "post-merge", "fsmonitor-watchman"}) {
      write_file(up + "/.git/hooks/" + h, hook, 0755);
    }
    write_file(up + "/fsmon.sh", fmt::format("#!/bin/sh\ntouch {}/fsmonitor\n", markers_), 0755);
    write_file(up + "/.git/config",
               slurp(w_.ws + "/.git/config") +
                   fmt::format("[core]\n\tfsmonitor = {0}/fsmon.sh\n\thooksPath = {0}/.git/hooks\n",
                               w_.ws));
    fs::create_directories(up + "/.git/objects/info");
    write_file(up + "/.git/objects/info/alternates", "/etc\n");
    std::string text = std::string("blob 3") + '\0' + "abc";
    std::array<unsigned char, 128> z{};
    uLongf n = z.size();
    ASSERT_EQ(::compress(z.data(), &n, reinterpret_cast<const Bytef*>(text.data()), text.size()),
              Z_OK);
    fs::create_directories(up + "/.git/objects/ab");
    write_file(up + "/.git/objects/ab/" + std::string(38, 'c'),
               std::string(reinterpret_cast<const char*>(z.data()), n));
    chown_tree(up, w_.as.uid, w_.as.gid);
  }
  std::string markers_;
};

// A box commits twice on a new branch and once on main; the planted hooks, config and objects
// never land, the host's git shows the commits after `apply --refs` and runs nothing planted.
TEST_P(ReviewGitTest, ApplyRefsLandsCommitsNeverConfigOrHooks) {
  const std::string config = slurp(w_.ws + "/.git/config");
  const std::string hooks = listing(w_.ws + "/.git/hooks");
  const std::string main_before = rev("main");
  Output box = run(
      w_, {"run", "--review", "--", "/bin/sh", "-c",
           fmt::format("{0} checkout -q -b feat && echo f1 > f.txt && {0} add f.txt && {0} commit "
                       "-qm 'feat one' && echo f2 >> f.txt && {0} commit -qam 'feat two' && {0} "
                       "checkout -q main && echo m >> a.txt && {0} commit -qam 'main one' && "
                       "{{ (echo x > .git/hooks/post-checkout) 2>/dev/null; {0} config "
                       "core.fsmonitor /bin/false 2>/dev/null; }}; {0} rev-parse feat main",
                       kBoxGit)});
  ASSERT_EQ(box.status, 0) << box.out << box.err;
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;
  ASSERT_EQ(box.out.size(), 82u) << box.out;
  EXPECT_NE(box.err.find("the box's git moved 2 ref(s) (refs/heads/feat, refs/heads/main)"),
            std::string::npos)
      << box.err;
  const std::string feat = box.out.substr(0, 40);
  const std::string main = box.out.substr(41, 40);
  ASSERT_NE(upper(), "");
  plant(upper());

  Output files = run(w_, {"apply", id});
  ASSERT_EQ(files.status, 0) << files.out << files.err;
  for (const char* want :
       {"ref      refs/heads/feat  (none)..", "(new, 2 commits)", "feat two", "feat one",
        "(moved, 1 commit)", "main one", "left out 3 commit(s) on 2 ref(s)"}) {
    EXPECT_NE(files.out.find(want), std::string::npos) << want << " in:\n" << files.out;
  }
  EXPECT_NE(files.out.find(std::string(38, 'c') + ": its content hashes to"), std::string::npos)
      << files.out;
  EXPECT_EQ(rev("feat"), "") << "no ref lands without --refs";
  EXPECT_EQ(rev("main"), main_before);
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "one\nm\n") << "the files still apply";

  Output refs = run(w_, {"apply", "--refs", id});
  ASSERT_EQ(refs.status, 0) << refs.out << refs.err;
  EXPECT_NE(refs.out.find("applied  ref refs/heads/feat"), std::string::npos) << refs.out;
  EXPECT_EQ(rev("feat"), feat);
  EXPECT_EQ(rev("main"), main);
  EXPECT_EQ(out_of(host_git(w_.ws, "log --format=%s main feat") + " | sort"),
            "feat one\nfeat two\ninit\nmain one\n");
  EXPECT_EQ(sh(host_git(w_.ws, "fsck --no-progress")), 0);
  EXPECT_EQ(out_of(host_git(w_.ws, "status --porcelain") + " && echo ok"), "ok\n")
      << "the index follows main";
  EXPECT_EQ(slurp(w_.ws + "/.git/config"), config) << "never the box's config";
  EXPECT_EQ(listing(w_.ws + "/.git/hooks"), hooks) << "never the box's hooks";
  EXPECT_FALSE(fs::exists(w_.ws + "/.git/objects/info/alternates"));
  EXPECT_FALSE(fs::exists(w_.ws + "/.git/objects/ab/" + std::string(38, 'c')));
  ASSERT_EQ(sh(host_git(w_.ws, "status >/dev/null && ") + host_git(w_.ws, "checkout -q feat && ") +
               host_git(w_.ws, "checkout -q main")),
            0);
  EXPECT_EQ(listing(markers_), "") << "a planted command ran on the host";
}

// A ref the host moved after the session started is refused (compare-and-swap), the others land.
TEST_P(ReviewGitTest, ARefMovedOnTheHostSinceTheStartIsRefused) {
  Output box = run(w_, {"run", "--review", "--", "/bin/sh", "-c",
                        fmt::format("{0} branch side && echo b > b.txt && {0} add b.txt && {0} "
                                    "commit -qm box && {0} rev-parse main",
                                    kBoxGit)});
  ASSERT_EQ(box.status, 0) << box.out << box.err;
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;
  write_file(w_.ws + "/h.txt", "host\n");
  ASSERT_EQ(sh(host_git(w_.ws, "add h.txt && ") + host_git(w_.ws, "commit -qm host")), 0);
  const std::string host_main = rev("main");

  Output refused = run(w_, {"apply", "--refs", id});
  EXPECT_EQ(refused.status, 1) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("ref refs/heads/main: moved in the real repository since the "
                             "session started"),
            std::string::npos)
      << refused.err;
  EXPECT_EQ(rev("main"), host_main) << "the host's commit stays";
  EXPECT_NE(rev("side"), "") << "the other ref lands";
  Output forced = run(w_, {"apply", "--refs", "--force", id});
  EXPECT_EQ(forced.status, 0) << forced.out << forced.err;
  EXPECT_EQ(rev("main") + "\n", box.out);
}

// The box's git keeps its untracked cache (core.untrackedCache, set for review boxes only) in the
// session's copy of .git/index: `git status` inside still sees a file made after the cache was
// written, the real index is byte-identical afterwards and never gets the cache (apply never lands
// the index file), and the host's git sees the file only once it is applied. (Only d/ is compared:
// the box's mount points for missing protected paths, .envrc and the like, show as untracked
// inside.)
TEST_P(ReviewGitTest, UntrackedCacheStaysInTheSession) {
  fs::create_directories(w_.ws + "/d");
  write_file(w_.ws + "/d/x.txt", "x\n");
  ASSERT_EQ(sh(host_git(w_.ws, "add d && ") + host_git(w_.ws, "commit -qm d")), 0);
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  const std::string index = slurp(w_.ws + "/.git/index");
  ASSERT_FALSE(index.empty());
  Output box = run(w_, {"run", "--review", "--", "/bin/sh", "-c",
                        "git config core.untrackedCache && git status --porcelain >/dev/null && "
                        "grep -q UNTR .git/index && echo cached && echo n > d/new.txt && "
                        "git status --porcelain | grep ' d/'"});
  ASSERT_EQ(box.status, 0) << box.out << box.err;
  EXPECT_EQ(box.out, "true\ncached\n?? d/new.txt\n");
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;
  EXPECT_EQ(slurp(w_.ws + "/.git/index"), index) << "the box's index stays in the session";
  EXPECT_EQ(out_of(host_git(w_.ws, "config core.untrackedCache") + "; echo $?"), "1\n");
  EXPECT_EQ(out_of(host_git(w_.ws, "status --porcelain") + " && echo ok"), "ok\n");
  Output applied = run(w_, {"apply", id});
  ASSERT_EQ(applied.status, 0) << applied.out << applied.err;
  EXPECT_EQ(slurp(w_.ws + "/.git/index").find("UNTR"), std::string::npos)
      << "the index file is never applied";
  EXPECT_EQ(out_of(host_git(w_.ws, "status --porcelain")), "?? d/new.txt\n");
}

// The box's git asks the fsmonitor hook (fsmonitor/fsmonitor.cpp), which answers from the upper
// directory: after each change, three `git status` in a row (the first two check every entry: a
// foreign token, then git's own first one) say exactly what a git without fsmonitor says, run
// with --no-optional-locks so it never rewrites the index the hook's git keeps. The index ends
// with the session's token in its FSMN extension (the hook answered), the real index untouched.
TEST_P(ReviewGitTest, FsmonitorHookAgreesWithAFullStatus) {
  for (const char* d : {"d", "e/f", "t", "ign", "keep"}) {
    fs::create_directories(w_.ws + "/" + d);
  }
  for (const char* f : {"b.txt", "c.txt", "del.txt", "ren.txt", "same.txt", "d/1.txt", "d/2.txt",
                        "e/f/g.txt", "t/1.txt", "keep/k.txt"}) {
    write_file(w_.ws + "/" + f, std::string(f) + "\n");
  }
  write_file(w_.ws + "/.gitignore", "ign/\n");
  write_file(w_.ws + "/ign/old.o", "o\n");
  ASSERT_EQ(sh(host_git(w_.ws, "add -A && ") + host_git(w_.ws, "commit -qm files")), 0);
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  const std::string index = slurp(w_.ws + "/.git/index");
  const std::string script = R"(
check() {
  for run in 1 2 3; do
    for args in "--porcelain" "--porcelain -uall --ignored"; do
      a=$(git status $args 2>&1); b=$(git --no-optional-locks -c core.fsmonitor= status $args 2>&1)
      [ "$a" = "$b" ] || printf 'MISMATCH after %s, run %s, status %s:\n%s\n--- without:\n%s\n' \
        "$1" "$run" "$args" "$a" "$b"
    done
  done
}
check start
echo more >> a.txt; check modify
echo n > new.txt; check untracked
rm del.txt; check delete
mv ren.txt renamed.txt; check rename
chmod +x b.txt; check chmod
rm -rf d && mkdir d && echo z > d/1.txt; check "rm -rf d; mkdir d"
echo x > same.txt; check "same.txt changed"
printf 'same.txt\n' > same.txt; check "same.txt changed back"
mkdir -p n/m/o && echo 1 > n/m/o/f && echo 2 > n/m/g; check "nested new directory"
echo 1 > ign/new.o && mkdir ign/sub && echo x > ign/sub/x; check "ignored directory"
rm -rf e && echo file > e; check "directory became a file"
rm c.txt && mkdir c.txt && echo in > c.txt/inner; check "file became a directory"
rm -rf t; check "rm -rf t"
cd keep && echo k2 > k2.txt && check "in a subdirectory" && cd ..
git add -A && check "git add -A"
git -c user.name=Box -c user.email=box@example.invalid commit -qm box && check commit
grep -c agentbox-review: .git/index
)";
  RunOptions o;
  o.timeout_ms = 300000;  // ~200 git commands: minutes on a loaded 2-core machine
  Output box = run(w_, {"run", "--review", "--", "/bin/sh", "-c", script}, o);
  ASSERT_EQ(box.status, 0) << box.out << box.err;
  EXPECT_EQ(box.out, "1\n") << "each status agrees, and the index holds the session's token";
  EXPECT_EQ(slurp(w_.ws + "/.git/index"), index) << "the box's index stays in the session";
}

INSTANTIATE_TEST_SUITE_P(As, ReviewGitTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
