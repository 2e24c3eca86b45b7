// Git metadata readers: config syntax as git reads it, the keys that run code, index gitlinks.
#include "agentbox/sandbox/git_meta.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace agentbox::sandbox {
namespace {

std::vector<std::string> keys(const std::string& text) {
  std::vector<std::string> out;
  for (const auto& e : parse_git_config(text)) {
    out.push_back(e.key + "=" + e.value);
  }
  return out;
}

TEST(GitConfig, EverySpellingGitAccepts) {
  EXPECT_EQ(keys("[core]\n\tfsmonitor = touch /x\n"),
            (std::vector<std::string>{"core.fsmonitor=touch /x"}));
  EXPECT_EQ(keys("[CoRe]\nFSMonitor=\"touch  /x\" # c\n"),
            (std::vector<std::string>{"core.fsmonitor=touch  /x"}));
  EXPECT_EQ(keys("[core] fsmonitor = a \\\n b\n"),
            (std::vector<std::string>{"core.fsmonitor=a  b"}));
  EXPECT_EQ(keys("[filter \"Lfs\"]\n\tsmudge = x ; comment\n"),
            (std::vector<std::string>{"filter.Lfs.smudge=x"}));
  EXPECT_EQ(keys("[includeIf \"gitdir:~/w/\"]\npath = ../x\n[include]\npath=y\n"),
            (std::vector<std::string>{"includeif.gitdir:~/w/.path=../x", "include.path=y"}));
  EXPECT_EQ(keys("[alias.Sub]\nx = !sh\n"), (std::vector<std::string>{"alias.sub.x=!sh"}));
  EXPECT_EQ(keys("[core]\nbare\n; c\n# c\nnot a key here\n"),
            (std::vector<std::string>{"core.bare="}));
  EXPECT_EQ(keys("fsmonitor = outside any section\n[broken\n"), std::vector<std::string>{});
}

TEST(GitConfig, KeysThatRunCode) {
  for (const char* k : {"core.fsmonitor", "core.hookspath", "core.pager", "core.sshcommand",
                        "core.editor", "diff.external", "credential.helper", "sequence.editor",
                        "include.path", "includeif.onbranch:x.path", "filter.lfs.process",
                        "diff.x.textconv", "merge.x.driver", "credential.https://h.helper",
                        "pager.log", "gpg.ssh.program", "remote.origin.uploadpack"}) {
    EXPECT_TRUE(git_key_runs_code(k, "x")) << k;
  }
  EXPECT_TRUE(git_key_runs_code("alias.st", " !touch /x"));
  EXPECT_FALSE(git_key_runs_code("alias.st", "status"));
  EXPECT_TRUE(git_key_runs_code("remote.o.url", "ext::sh -c touch% /x"));
  EXPECT_FALSE(git_key_runs_code("remote.o.url", "https://example.com/r.git"));
  EXPECT_TRUE(git_key_runs_code("submodule.s.update", "!touch /x"));
  EXPECT_FALSE(git_key_runs_code("submodule.s.update", "rebase"));
  for (const char* k : {"core.bare", "user.name", "branch.main.remote", "core.autocrlf"}) {
    EXPECT_FALSE(git_key_runs_code(k, "x")) << k;
  }
}

// An index as git writes it: entries (path, mode) in `version`, SHA-1 names.
std::string index_of(const std::vector<std::pair<std::string, uint32_t>>& entries, int version) {
  std::string b = "DIRC";
  auto u32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) {
      b += static_cast<char>((v >> s) & 0xff);
    }
  };
  u32(static_cast<uint32_t>(version));
  u32(static_cast<uint32_t>(entries.size()));
  std::string prev;
  for (const auto& [path, mode] : entries) {
    size_t start = b.size();
    for (int i = 0; i < 6; ++i) {
      u32(0);
    }
    u32(mode);
    for (int i = 0; i < 3; ++i) {
      u32(0);
    }
    b.append(20, '\xab');
    b += static_cast<char>((path.size() >> 8) & 0x0f);
    b += static_cast<char>(path.size() & 0xff);
    if (version == 4) {
      size_t common = 0;
      while (common < prev.size() && common < path.size() && prev[common] == path[common]) {
        ++common;
      }
      b += static_cast<char>(prev.size() - common);  // < 128 here: one varint byte
      b += path.substr(common);
      b += '\0';
    } else {
      b += path;
      b += '\0';
      while ((b.size() - start) % 8 != 0) {
        b += '\0';
      }
    }
    prev = path;
  }
  b.append(20, '\0');  // the checksum
  return b;
}

TEST(GitIndex, GitlinksInEveryVersion) {
  std::vector<std::pair<std::string, uint32_t>> e = {
      {"a.txt", 0100644}, {"lib/sub", 0160000}, {"lib/subway.c", 0100644}, {"z", 0160000}};
  for (int v : {2, 3, 4}) {
    EXPECT_EQ(index_gitlinks(index_of(e, v), 20), (std::vector<std::string>{"lib/sub", "z"}))
        << "version " << v;
  }
  EXPECT_EQ(index_gitlinks("DIRC\0\0\0\x02\0\0\0\x05", 20), std::vector<std::string>{});
  EXPECT_EQ(index_gitlinks("garbage", 20), std::vector<std::string>{});
  std::string cut = index_of(e, 2);
  EXPECT_EQ(index_gitlinks(cut.substr(0, cut.size() / 2), 20), std::vector<std::string>{"lib/sub"});
}

TEST(GitFile, Target) {
  EXPECT_EQ(gitfile_target("gitdir: ../.git/modules/x\n", "/w/sub"), "/w/.git/modules/x");
  EXPECT_EQ(gitfile_target("gitdir: /abs/wt\n", "/w"), "/abs/wt");
  EXPECT_EQ(gitfile_target("not a gitfile", "/w"), "");
}

class Layout : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-gitmeta-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    char real[PATH_MAX];
    ASSERT_NE(::realpath(tmpl, real), nullptr);
    d_ = real;
  }
  void TearDown() override { std::filesystem::remove_all(d_); }
  void put(const std::string& rel, const std::string& text) {
    std::filesystem::path p = d_ + "/" + rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string d_;
};

TEST_F(Layout, ARepositoryAndItsCommondir) {
  put("ws/.git/HEAD", "ref: refs/heads/main\n");
  auto ok = inspect_git(d_ + "/ws");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->kind, GitLayout::Kind::kDir);
  put("ws/.git/commondir", ".\n");  // our placeholder, left by a killed session
  EXPECT_TRUE(inspect_git(d_ + "/ws"));
  put("ws/.git/commondir", "evil\n");
  auto bad = inspect_git(d_ + "/ws");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("commondir` exists and names `evil`"), std::string::npos);
}

TEST_F(Layout, ALinkedWorktreeOnlyWhenBothWaysAgree) {
  put("main/.git/HEAD", "ref: refs/heads/main\n");
  put("main/.git/worktrees/wt/commondir", "../..\n");
  put("main/.git/worktrees/wt/gitdir", d_ + "/wt/.git\n");
  put("wt/.git", "gitdir: " + d_ + "/main/.git/worktrees/wt\n");
  auto ok = inspect_git(d_ + "/wt");
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->kind, GitLayout::Kind::kLinkedWorktree);
  EXPECT_EQ(ok->common, d_ + "/main/.git");
  // Another project's worktree metadata: its gitdir does not point back here.
  put("other/.git", "gitdir: " + d_ + "/main/.git/worktrees/wt\n");
  EXPECT_FALSE(inspect_git(d_ + "/other"));
  // A planted git directory that claims a commondir elsewhere.
  put("evil/commondir", d_ + "/main/.git\n");
  put("evil/gitdir", d_ + "/ws2/.git\n");
  put("ws2/.git", "gitdir: ../evil\n");
  EXPECT_FALSE(inspect_git(d_ + "/ws2"));
}

}  // namespace
}  // namespace agentbox::sandbox
