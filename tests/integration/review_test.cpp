// Review mode (`run --review`, `diff`, `apply`, `discard`; docs/REVIEW.md): the real binary, as
// root and as an unprivileged user. The oracle is the real workspace read from outside the box.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <string>

#include "harness.hpp"

namespace agentbox::it {
namespace {

namespace fs = std::filesystem;
using Args = std::vector<std::string>;

// Every entry of `root`: path, type, permission bits, and the bytes or link text.
std::string tree_of(const std::string& root) {
  std::string out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    const std::string p = it->path().string();
    if (::lstat(p.c_str(), &st) != 0) {
      continue;
    }
    out += fmt::format("{} {:o} ", p.substr(root.size()), st.st_mode);
    if (S_ISREG(st.st_mode)) {
      out += slurp(p);
    } else if (S_ISLNK(st.st_mode)) {
      out += fs::read_symlink(it->path(), ec).string();
    }
    out += "\n";
  }
  return out;
}

class ReviewTest : public BoxWorldTest {
 protected:
  void SetUp() override {
    BoxWorldTest::SetUp();
    if (!made_ || IsSkipped()) {
      return;
    }
    write_file(w_.ws + "/a.txt", "one\n");
    write_file(w_.ws + "/b.txt", "bee\n");
    write_file(w_.ws + "/c.txt", "sea sea sea\n");
    write_file(w_.ws + "/run.sh", "echo run\n");
    fs::create_directories(w_.ws + "/dir");
    write_file(w_.ws + "/dir/keep.txt", "keep\n");
    chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  }
  Output review_sh(const std::string& script, const RunOptions& o = {}) {
    return run(w_, {"run", "--review", "--", "/bin/sh", "-c", script}, o);
  }
  // The short id the summary names: "... agentbox diff|apply|discard ID".
  static std::string session_of(const Output& o) {
    const std::string key = "agentbox diff|apply|discard ";
    auto pos = o.err.find(key);
    if (pos == std::string::npos) {
      return {};
    }
    pos += key.size();
    return o.err.substr(pos, o.err.find_first_of(" \n", pos) - pos);
  }
  // The (only) session's replaced/ directory: the files apply replaced, kept until discard.
  std::string replaced_dir() {
    std::string kept;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(w_.state + "/agentbox/review", ec)) {
      kept = e.path().string() + "/replaced";
    }
    return kept;
  }
  std::string review_dirs() {
    std::string out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(w_.state + "/agentbox/review", ec)) {
      out += e.path().filename().string() + "\n";
    }
    return out;
  }
};

constexpr const char* kAgent =
    "echo two >> a.txt && rm b.txt && mv c.txt d.txt && chmod +x run.sh && echo new > new.txt && "
    "rm -r dir && mkdir dir && echo fresh > dir/fresh.txt && "
    "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/ci.yml && "
    "printf '#!/bin/sh\\n' > tool && chmod 755 tool && ln -s /etc/passwd leak && "
    "echo '* filter=x' > .gitattributes && touch \"$(printf 'esc\\033]0;pwned\\007')\" && "
    "echo 'ref: refs/heads/evil' > .git/HEAD && "
    "{ (echo /tmp > .git/commondir) 2>/dev/null && echo commondir-planted; "
    "(echo x > .git/hooks/pre-commit) 2>/dev/null && echo hook-planted; cat a.txt; }";

TEST_P(ReviewTest, WorkspaceUntouchedUntilApplyAndDangerousHeldUnlessNamed) {
  const std::string before = tree_of(w_.ws);
  Output box = review_sh(kAgent);
  ASSERT_EQ(box.status, 0) << box.err;
  EXPECT_TRUE(box.has_line("one")) << box.out;
  EXPECT_TRUE(box.has_line("two")) << "the box reads its own writes:\n" << box.out;
  EXPECT_EQ(box.out.find("planted"), std::string::npos) << "protections apply on top:\n" << box.out;
  EXPECT_EQ(tree_of(w_.ws), before) << "review mode wrote to the real workspace";
  EXPECT_NE(box.err.find("DANGEROUS: git metadata"), std::string::npos) << box.err;
  EXPECT_EQ(box.err.find('\033'), std::string::npos) << "a file name drove the terminal";
  EXPECT_NE(box.err.find("esc\\x1b]0;pwned\\x07"), std::string::npos) << box.err;
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;

  Output stat = run(w_, {"diff", "--stat", id});
  ASSERT_EQ(stat.status, 0) << stat.err;
  for (const char* want :
       {"modified a.txt", "deleted  b.txt", "renamed  d.txt  (from c.txt",
        "mode     run.sh  (644 -> 755)  DANGEROUS: a new executable", "added    new.txt",
        "dir  (directory, made anew", "deleted  dir/keep.txt", "added    dir/fresh.txt",
        ".github/workflows/ci.yml  (9 B)  DANGEROUS: CI configuration",
        "tool  (10 B)  DANGEROUS: a new executable", "DANGEROUS: symlink out of the workspace",
        ".gitattributes", ".git/HEAD  (21 B -> 21 B)  DANGEROUS: git metadata"}) {
    EXPECT_NE(stat.out.find(want), std::string::npos) << want << " in:\n" << stat.out;
  }
  EXPECT_EQ(stat.out.find("commondir"), std::string::npos) << stat.out;
  Output diff = run(w_, {"diff", id, "a.txt", "./new.txt"});
  ASSERT_EQ(diff.status, 0) << diff.err;
  EXPECT_TRUE(diff.has_line("--- a/a.txt")) << diff.out;
  EXPECT_TRUE(diff.has_line("+two")) << diff.out;
  EXPECT_TRUE(diff.has_line("+new")) << diff.out;
  EXPECT_TRUE(diff.has_line("--- /dev/null")) << "an added file's old side:\n" << diff.out;
  EXPECT_EQ(diff.out.find("run.sh"), std::string::npos) << "only the named paths:\n" << diff.out;

  Output apply = run(w_, {"apply", id});
  ASSERT_EQ(apply.status, 0) << apply.out << apply.err;
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "one\ntwo\n");
  EXPECT_FALSE(fs::exists(w_.ws + "/b.txt"));
  EXPECT_FALSE(fs::exists(w_.ws + "/c.txt"));
  EXPECT_EQ(slurp(w_.ws + "/d.txt"), "sea sea sea\n");
  EXPECT_FALSE(fs::exists(w_.ws + "/dir/keep.txt"));
  EXPECT_EQ(slurp(w_.ws + "/dir/fresh.txt"), "fresh\n");
  struct stat st {};
  ASSERT_EQ(::stat((w_.ws + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "an x bit gained is held like a new executable";
  for (const char* held : {".github/workflows/ci.yml", "tool", "leak", ".gitattributes"}) {
    struct stat hs {};
    EXPECT_NE(::lstat((w_.ws + "/" + held).c_str(), &hs), 0) << held << " landed unnamed";
    EXPECT_NE(apply.out.find(fmt::format("held     {}", held)), std::string::npos) << apply.out;
  }
  EXPECT_EQ(slurp(w_.ws + "/.git/HEAD"), "ref: refs/heads/main\n");

  Output named = run(w_, {"apply", id, ".git/HEAD", "run.sh"});
  ASSERT_EQ(named.status, 0) << named.err;
  EXPECT_EQ(slurp(w_.ws + "/.git/HEAD"), "ref: refs/heads/evil\n");
  ASSERT_EQ(::stat((w_.ws + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  Output left = run(w_, {"diff", "--stat", id});
  EXPECT_EQ(left.out.find("a.txt"), std::string::npos) << "applied changes leave:\n" << left.out;
  EXPECT_NE(left.out.find("tool"), std::string::npos) << left.out;

  ASSERT_NE(review_dirs(), "");
  Output gone = run(w_, {"discard", id});
  ASSERT_EQ(gone.status, 0) << gone.err;
  EXPECT_EQ(review_dirs(), "") << "discard removes the upper directory";
  EXPECT_NE(run(w_, {"diff", id}).status, 0);
}

// `diff --patch` against the host's git: the patch applied by `git apply` to a copy of the
// workspace gives the same tree as `agentbox apply` gives the workspace, for every kind of change
// (text, no final newline, binary added and changed, deleted, empty, symlink, a name with a
// space, an x bit named), and a dangerous change is left out unless named.
TEST_P(ReviewTest, PatchAppliedByGitGivesTheSameTreeAsApply) {
  write_file(w_.ws + "/blob.bin", std::string("\x01\x00\x02 old", 7));
  write_file(w_.ws + "/gone.txt", "bye\n");
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  const std::string copy = w_.root + "/copy";
  ASSERT_EQ(sh(fmt::format("cp -a '{}' '{}'", w_.ws, copy)), 0);
  Output box = review_sh(
      "echo two >> a.txt && printf 'no newline' > b.txt && rm gone.txt && : > empty.txt && "
      "printf '\\000\\001\\002\\003 new %0200d' 7 > blob.bin && "
      "{ printf '\\000'; head -c 3000 /dev/urandom; } > new.bin && ln -s a.txt link && echo sp > "
      "'with space.txt' && "
      "chmod +x run.sh && mkdir -p .github/workflows && echo 'on: push' > "
      ".github/workflows/ci.yml");
  ASSERT_EQ(box.status, 0) << box.err;
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;

  Output held = run(w_, {"diff", "--patch", id});
  EXPECT_EQ(held.status, 1) << held.err;
  EXPECT_NE(held.err.find("held .github/workflows/ci.yml (dangerous: CI configuration)"),
            std::string::npos)
      << held.err;
  EXPECT_EQ(held.out.find("ci.yml"), std::string::npos) << held.out;

  const Args all = {"a.txt",   "b.txt", "gone.txt",       "empty.txt", "blob.bin",
                    "new.bin", "link",  "with space.txt", "run.sh"};
  Args diff_args = {"diff", "--patch", id};
  Args apply_args = {"apply", id};
  diff_args.insert(diff_args.end(), all.begin(), all.end());
  apply_args.insert(apply_args.end(), all.begin(), all.end());
  Output patch = run(w_, diff_args);
  ASSERT_EQ(patch.status, 0) << patch.err;
  EXPECT_NE(patch.out.find("GIT binary patch"), std::string::npos) << patch.out;
  write_file(w_.root + "/p.patch", patch.out);
  Output named = run(w_, apply_args);
  ASSERT_EQ(named.status, 0) << named.out << named.err;
  ASSERT_EQ(sh(fmt::format("cd '{}' && env -i PATH=/usr/bin:/bin GIT_CONFIG_NOSYSTEM=1 "
                           "HOME=/nonexistent git apply --verbose '{}/p.patch' >&2",
                           copy, w_.root)),
            0)
      << patch.out;
  EXPECT_EQ(tree_of(copy), tree_of(w_.ws)) << patch.out;
}

TEST_P(ReviewTest, DiscardOlderThanIsTheRetentionAndKeepsYoungerSessions) {
  Output box = review_sh("echo kept > a.txt");
  ASSERT_EQ(box.status, 0) << box.err;
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;
  Output young = run(w_, {"discard", "--older-than", "1h"});
  ASSERT_EQ(young.status, 0) << young.err;
  EXPECT_EQ(young.out, "") << "a session younger than the age stays";
  EXPECT_NE(review_dirs(), "");
  Output listed = run(w_, {"diff"});
  EXPECT_NE(listed.out.find(id + "  1 changes  "), std::string::npos) << listed.out;
  Output bad = run(w_, {"discard", "--older-than", "soon"});
  EXPECT_EQ(bad.status, 125);
  EXPECT_NE(bad.err.find("--older-than: invalid duration `soon`"), std::string::npos) << bad.err;
  Output both = run(w_, {"discard", "--older-than", "1s", id});
  EXPECT_EQ(both.status, 125) << both.err;
  ::sleep(2);  // the session's start is the ctime of its `started` file, in whole seconds here
  Output old = run(w_, {"discard", "--older-than", "1s"});
  ASSERT_EQ(old.status, 0) << old.err;
  EXPECT_NE(old.out.find("discarded review session " + id), std::string::npos) << old.out;
  EXPECT_EQ(review_dirs(), "");
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "one\n") << "discarding never touches the workspace";
}

TEST_P(ReviewTest, ApplyRefusesARealFileChangedSinceTheStartUnlessForced) {
  // review = true in a profile, not the flag.
  const std::string dir = w_.root + "/config";
  fs::create_directories(dir + "/agentbox/profiles");
  write_file(dir + "/agentbox/profiles/rev.toml", "[sandbox]\nreview = true\n");
  chown_tree(dir, w_.as.uid, w_.as.gid);
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = dir;
  Output box = run(
      w_,
      {"run", "--profile", "rev", "--", "/bin/sh", "-c", "echo box > a.txt && echo box > b.txt"},
      o);
  ASSERT_EQ(box.status, 0) << box.err;
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "one\n");
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;
  write_file(w_.ws + "/a.txt", "user edit\n");  // the user's own edit after the start

  Output refused = run(w_, {"apply", id});
  EXPECT_EQ(refused.status, 1) << refused.err;
  EXPECT_NE(refused.err.find("a.txt: changed in the workspace since the session started"),
            std::string::npos)
      << refused.err;
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "user edit\n");
  EXPECT_EQ(slurp(w_.ws + "/b.txt"), "box\n") << "the other file is applied";
  Output forced = run(w_, {"apply", "--force", id});
  ASSERT_EQ(forced.status, 0) << forced.err;
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "box\n");
}

TEST_P(ReviewTest, TwoConcurrentSessionsEachKeepTheirOwnChanges) {
  const std::string before = tree_of(w_.ws);
  int out1 = -1;
  int err1 = -1;
  RunOptions o;
  pid_t first = spawn(w_,
                      {"run", "--review", "--", "/bin/sh", "-c",
                       "echo first > a.txt; echo 1 > one.txt; sleep 1; cat a.txt"},
                      o, &out1, &err1);
  Output second = review_sh("echo second > a.txt; echo 2 > two.txt; sleep 1; cat a.txt");
  std::string err_first;
  char buf[4096];
  for (ssize_t n; (n = ::read(err1, buf, sizeof buf)) > 0;) {
    err_first.append(buf, size_t(n));
  }
  ::close(out1);
  ::close(err1);
  ASSERT_EQ(wait_for(first, 30000), 0) << err_first;
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_TRUE(second.has_line("second")) << second.out;
  EXPECT_EQ(tree_of(w_.ws), before);
  Output o1{.status = 0, .err = err_first};
  const std::string id1 = session_of(o1);
  const std::string id2 = session_of(second);
  ASSERT_FALSE(id1.empty()) << err_first;
  ASSERT_NE(id1, id2);

  ASSERT_EQ(run(w_, {"apply", id1}).status, 0);
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "first\n");
  EXPECT_EQ(slurp(w_.ws + "/one.txt"), "1\n");
  EXPECT_FALSE(fs::exists(w_.ws + "/two.txt")) << "one session's apply leaves the other's";
  Output other = run(w_, {"apply", id2});
  EXPECT_EQ(other.status, 1) << "a.txt changed since the second session started: " << other.err;
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "first\n");
  EXPECT_EQ(slurp(w_.ws + "/two.txt"), "2\n");
}

TEST_P(ReviewTest, NoOverlayIsOneClearErrorAndNothingRuns) {
  // The workspace already under two overlayfs levels (a container in a container): the kernel
  // stacks at most two, so the review overlay on top is refused. Made in a private mount
  // namespace of the agentbox process only (before_exec, still root there).
  const std::string layers = w_.root + "/layers";
  for (const char* d : {"", "/u1", "/w1", "/u2", "/w2"}) {
    ::mkdir((layers + d).c_str(), 0755);
  }
  chown_tree(layers, w_.as.uid, w_.as.gid);  // the merged root takes the upper root's owner
  const std::string ws = w_.ws;
  const std::string one = fmt::format("lowerdir={0},upperdir={1}/u1,workdir={1}/w1", ws, layers);
  const std::string two = fmt::format("lowerdir={0},upperdir={1}/u2,workdir={1}/w2", ws, layers);
  RunOptions o;
  o.before_exec = [&] {
    return ::unshare(CLONE_NEWNS) == 0 &&
           ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
           ::mount("overlay", ws.c_str(), "overlay", 0, one.c_str()) == 0 &&
           ::mount("overlay", ws.c_str(), "overlay", 0, two.c_str()) == 0;
  };
  Output box = review_sh("echo ran > ran.txt", o);
  ASSERT_NE(box.status, 120) << "the test's own overlay mounts failed";
  EXPECT_EQ(box.status, 125) << box.err;
  EXPECT_NE(box.err.find("agentbox: error: setting up the box: mount overlay"), std::string::npos)
      << box.err;
  EXPECT_NE(box.err.find("hint: --review shows the workspace only through overlayfs"),
            std::string::npos)
      << box.err;
  EXPECT_FALSE(fs::exists(w_.ws + "/ran.txt")) << "no fallback to live writes";
  EXPECT_FALSE(fs::exists(layers + "/u2/ran.txt")) << "no fallback to live writes";
  EXPECT_EQ(review_dirs(), "") << "nothing kept of a session that never started";
}

TEST_P(ReviewTest, AReviewDirectoryInsideTheWorkspaceIsRefused) {
  RunOptions o;
  o.env["XDG_STATE_HOME"] = w_.ws + "/state";
  Output box = review_sh("echo ran > ran.txt", o);
  EXPECT_EQ(box.status, 125) << box.err;
  EXPECT_NE(box.err.find("lies inside the workspace"), std::string::npos) << box.err;
  EXPECT_NE(box.err.find("hint: set XDG_STATE_HOME"), std::string::npos) << box.err;
  EXPECT_FALSE(fs::exists(w_.ws + "/ran.txt"));
}

// apply moves the upper file in (no copy) and keeps the file it replaced under the review's
// replaced/ until discard; what lands is what a copy would give: new bytes, the mode without
// set-id bits, stamped now (a build sees it as new), no overlayfs extended attribute.
TEST_P(ReviewTest, ApplyKeepsTheReplacedFileAndLandsAPlainNewOne) {
  Output box = review_sh(
      "sleep 1.1; echo two >> a.txt && printf x > dir/keep.txt && chmod 4755 "
      "dir/keep.txt && echo new > dir/new.txt");
  ASSERT_EQ(box.status, 0) << box.err;
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;
  ::sleep(1);
  struct timespec before {};
  ::clock_gettime(CLOCK_REALTIME, &before);
  Output apply = run(w_, {"apply", id, "a.txt", "dir/keep.txt", "dir/new.txt"});
  ASSERT_EQ(apply.status, 0) << apply.out << apply.err;
  EXPECT_EQ(slurp(w_.ws + "/a.txt"), "one\ntwo\n");
  EXPECT_EQ(slurp(w_.ws + "/dir/new.txt"), "new\n");
  const std::string kept = replaced_dir();
  EXPECT_EQ(slurp(kept + "/a.txt"), "one\n") << "the replaced bytes are kept until discard";
  EXPECT_EQ(slurp(kept + "/dir/keep.txt"), "keep\n");
  for (const char* f : {"a.txt", "dir/keep.txt", "dir/new.txt"}) {
    struct stat st {};
    ASSERT_EQ(::stat((w_.ws + "/" + f).c_str(), &st), 0) << f;
    EXPECT_GE(st.st_mtim.tv_sec, before.tv_sec) << f << ": stamped at the apply";
    EXPECT_EQ(st.st_uid, w_.as.uid) << f;
    EXPECT_EQ(st.st_mode & 07000, 0u) << f;
    std::array<char, 1024> names{};
    EXPECT_LE(::listxattr((w_.ws + "/" + f).c_str(), names.data(), names.size()), 0)
        << f << ": " << std::string(names.data());
  }
  EXPECT_EQ(run(w_, {"diff", "--stat", id}).out, "") << "applied entries leave the session";
  ASSERT_EQ(run(w_, {"discard", id}).status, 0);
  EXPECT_EQ(review_dirs(), "");
}

// apply keeps a replaced file by hard-linking it under replaced/; a file the caller may not link
// (another owner's, not writable: fs.protected_hardlinks) is exchanged instead, and kept all the
// same. As the user, other.txt (nobody's, 0644) takes that second path; as root, the first.
TEST_P(ReviewTest, ApplyOverAFileItMayNotLinkStillKeepsTheOldOne) {
  write_file(w_.ws + "/other.txt", "theirs\n");
  ASSERT_EQ(::chown((w_.ws + "/other.txt").c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod((w_.ws + "/other.txt").c_str(), 0644), 0);
  Output box = review_sh("sleep 1.1; rm -f other.txt && echo mine > other.txt");
  ASSERT_EQ(box.status, 0) << box.err;
  const std::string id = session_of(box);
  ASSERT_FALSE(id.empty()) << box.err;
  Output apply = run(w_, {"apply", id, "other.txt"});
  ASSERT_EQ(apply.status, 0) << apply.out << apply.err;
  EXPECT_EQ(slurp(w_.ws + "/other.txt"), "mine\n");
  const std::string kept = replaced_dir();
  EXPECT_EQ(slurp(kept + "/other.txt"), "theirs\n") << "the replaced bytes are kept";
  EXPECT_EQ(run(w_, {"diff", "--stat", id}).out, "") << "the applied entry left the session";
  ASSERT_EQ(run(w_, {"discard", id}).status, 0);
}

INSTANTIATE_TEST_SUITE_P(As, ReviewTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
