// Nothing the box writes changes what the host's git runs, and files whose purpose is to run
// code outside the box are read-only: a hostile script inside plants each attack, then the
// HOST's git (status, commit) runs in the workspace with marker-writing commands planted, and
// no marker may appear. As root and as the unprivileged user.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

class GitGuardTest : public WorldTest {
 protected:
  void SetUp() override {
    if (!enter_world()) {
      return;
    }
    if (sh("git --version >/dev/null 2>&1") != 0) {
      skip("git is not installed");
      return;
    }
    if (std::string no = cannot_box(w_, run(w_, {"run", "-q", "--", "true"})); !no.empty()) {
      skip(no);
      return;
    }
    marks_ = w_.root + "/marks";
    home_ = w_.root + "/oracle-home";
    ::mkdir(marks_.c_str(), 0777);
    ::chmod(marks_.c_str(), 0777);
    ::mkdir(home_.c_str(), 0755);
    chown_tree(home_, w_.as.uid, w_.as.gid);
    // A real repository with one commit, made by the variant's user.
    ASSERT_EQ(sh(fmt::format("rm -rf '{0}/.git' && {1} init -q '{0}' && echo a > '{0}/a' && "
                             "{1} -C '{0}' add a && {1} -C '{0}' commit -qm first",
                             w_.ws, git())),
              0);
    chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  }
  void TearDown() override {
    if (made_) {
      destroy_world(w_);
    }
  }
  // The host's git as the variant's user, with a clean HOME and no system config.
  std::string git() const {
    std::string as = w_.as.uid == 0 ? std::string()
                                    : fmt::format("setpriv --reuid={} --regid={} --clear-groups ",
                                                  w_.as.uid, w_.as.gid);
    return fmt::format(
        "{}env -i HOME='{}' PATH=/usr/bin:/bin GIT_CONFIG_NOSYSTEM=1 git -c user.name=o "
        "-c user.email=o@example.com",
        as, home_);
  }
  // `sh -c SCRIPT` inside the box, in the workspace.
  Output in_box(const std::string& script, RunOptions o = {}) {
    o.timeout_ms = 120000;  // several git commands in a box on a shared, loaded machine
    return run(w_, {"run", "-q", "--", "/bin/sh", "-c", script}, o);
  }
  // The oracle: the host's git status and commit in `dir`; then the markers that appeared.
  std::vector<std::string> host_git_markers(const std::string& dir) {
    sh(
        fmt::format("cd '{0}' && {1} -C '{0}' status >/dev/null 2>&1; {1} -C '{0}' commit -q "
                    "--allow-empty -m oracle >/dev/null 2>&1; {1} -C '{0}' log -1 >/dev/null 2>&1",
                    dir, git()));
    std::vector<std::string> found;
    for (const char* m : {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}) {
      if (exists(marks_ + "/" + m)) {
        found.push_back(m);
      }
    }
    return found;
  }
  std::string mark(const char* m) const { return marks_ + "/" + m; }

  std::string marks_;
  std::string home_;
};

TEST_P(GitGuardTest, HostGitRunsNothingTheBoxPlanted) {
  const std::string ws = w_.ws;
  // A submodule-like git dir, a linked worktree and a config include, all made on the host.
  ASSERT_EQ(sh(fmt::format("mkdir -p '{0}/.git/modules/m/hooks' && printf '[core]\\n' > "
                           "'{0}/.git/modules/m/config' && {1} -C '{0}' worktree add -q '{2}/wt1' "
                           "&& {1} -C '{0}' config include.path ../.gitinclude",
                           ws, git(), w_.root)),
            0);
  chown_tree(w_.root, w_.as.uid, w_.as.gid);
  std::string script = fmt::format(
      // 1. commondir naming a directory the box controls, objects/refs linked back (status clean).
      "mkdir -p .git/evil/hooks; printf '[core]\\n\\tfsmonitor = touch {a}\\n' > .git/evil/config;"
      "printf '#!/bin/sh\\ntouch {b}\\n' > .git/evil/hooks/pre-commit; chmod +x "
      ".git/evil/hooks/pre-commit; ln -s ../objects .git/evil/objects; ln -s ../refs "
      ".git/evil/refs; cp .git/HEAD .git/evil/HEAD; echo evil > .git/commondir;"
      // 2. a nested repository with fsmonitor, added to the outer index as a gitlink.
      "git init -q sub && git -C sub config core.fsmonitor 'touch {c}' && git -C sub -c "
      "user.name=x -c user.email=x@x commit -q --allow-empty -m x && git update-index --add "
      "--cacheinfo 160000,$(git -C sub rev-parse HEAD),sub;"
      // 3. the submodule's config and hooks, and a new module.
      "printf '[core]\\n\\tfsmonitor = touch {d}\\n' > .git/modules/m/config;"
      "printf '#!/bin/sh\\ntouch {d}\\n' > .git/modules/m/hooks/post-checkout;"
      "mkdir -p .git/modules/n; printf '[core]\\n\\tpager = touch {d}\\n' > .git/modules/n/config;"
      // 4. the linked worktree's metadata.
      "printf '[core]\\n\\tfsmonitor = touch {e}\\n' > .git/worktrees/wt1/config.worktree;"
      "echo ../../evil > .git/worktrees/wt1/commondir;"
      // 5. alternates naming another object store.
      "echo /tmp > .git/objects/info/alternates;"
      // 6. the config's include (missing until now) and hooks path.
      "printf '[core]\\n\\tfsmonitor = touch {f}\\n' > .gitinclude;"
      "printf '#!/bin/sh\\ntouch {g}\\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit;"
      "git config core.hooksPath /tmp; exit 0",
      fmt::arg("a", mark("a")), fmt::arg("b", mark("b")), fmt::arg("c", mark("c")),
      fmt::arg("d", mark("d")), fmt::arg("e", mark("e")), fmt::arg("f", mark("f")),
      fmt::arg("g", mark("g")));
  Output r = in_box(script);
  ASSERT_EQ(r.status, 0) << r.err;
  // Ground truth on the host: no redirect, no alternates, nothing new in the protected places.
  EXPECT_FALSE(exists(ws + "/.git/commondir")) << "commondir reached the host";
  EXPECT_FALSE(exists(ws + "/.git/objects/info/alternates"));
  EXPECT_FALSE(exists(ws + "/.git/modules/n"));
  EXPECT_FALSE(exists(ws + "/.gitinclude"));
  EXPECT_EQ(slurp(ws + "/.git/modules/m/config"), "[core]\n");
  EXPECT_FALSE(exists(ws + "/.git/modules/m/hooks/post-checkout"));
  EXPECT_FALSE(exists(ws + "/.git/worktrees/wt1/config.worktree"));
  EXPECT_EQ(slurp(ws + "/.git/worktrees/wt1/commondir"), "../..\n");
  // The oracle: the host's git in the workspace and in the linked worktree runs none of it.
  EXPECT_EQ(host_git_markers(ws), std::vector<std::string>{}) << r.err;
  EXPECT_EQ(host_git_markers(w_.root + "/wt1"), std::vector<std::string>{});
  // The nested repository was reported and quarantined.
  EXPECT_NE(r.err.find("core.fsmonitor = touch " + mark("c")), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not registered in .gitmodules"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(ws + "/sub/.git")) << r.err;
}

// Programs the host's git config names inside the workspace (a project's `.githooks`, a filter
// script) are protected too, existing or not.
TEST_P(GitGuardTest, ProgramsTheConfigNamesInTheWorkspaceAreProtected) {
  ASSERT_EQ(sh(fmt::format("{0} -C '{1}' config core.hooksPath .githooks && mkdir -p "
                           "'{1}/.githooks' && {0} -C '{1}' config filter.x.clean ./tools/clean.sh "
                           "&& echo '* filter=x' > '{1}/.gitattributes'",
                           git(), w_.ws)),
            0);
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  Output r = in_box(fmt::format(
      "printf '#!/bin/sh\ntouch {0}\n' > .githooks/pre-commit; chmod +x .githooks/pre-commit;"
      "mkdir -p tools; printf '#!/bin/sh\ntouch {1}\ncat\n' > tools/clean.sh; chmod +x "
      "tools/clean.sh; exit 0",
      mark("a"), mark("b")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(exists(w_.ws + "/.githooks/pre-commit"));
  EXPECT_FALSE(exists(w_.ws + "/tools/clean.sh"));
  sh(fmt::format("echo b > '{0}/b' && {1} -C '{0}' add b >/dev/null 2>&1", w_.ws, git()));
  EXPECT_EQ(host_git_markers(w_.ws), std::vector<std::string>{});
}

TEST_P(GitGuardTest, CommondirOnTheHostRefusesTheStart) {
  write_file(w_.ws + "/.git/commondir", "/tmp/elsewhere\n");
  Output r = in_box("touch ran");
  EXPECT_EQ(r.status, 125);
  EXPECT_NE(r.err.find(".git/commondir` exists and names `/tmp/elsewhere`"), std::string::npos)
      << r.err;
  EXPECT_FALSE(exists(w_.ws + "/ran"));
}

TEST_P(GitGuardTest, SessionEndReportsAndQuarantinesAPlantedRepository) {
  Output r = in_box(fmt::format(
      "git init -q vendor/lib && git -C vendor/lib config core.pager 'touch {}' && "
      "git init -q vendor/clean && mkdir -p bare/objects bare/refs && echo 'ref: refs/heads/x' > "
      "bare/HEAD && printf '[core]\\n\\tsshCommand = touch {}\\n' > bare/config",
      mark("h"), mark("i")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("config `" + w_.ws + "/vendor/lib/.git/config`: core.pager = touch"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("quarantined"), std::string::npos) << r.err;
  EXPECT_FALSE(exists(w_.ws + "/vendor/lib/.git"));
  EXPECT_FALSE(exists(w_.ws + "/bare/HEAD"));
  // A plain clone-like repository is reported, not moved.
  EXPECT_TRUE(exists(w_.ws + "/vendor/clean/.git"));
  EXPECT_NE(r.err.find("vendor/clean/.git`: a git repository appeared"), std::string::npos)
      << r.err;
  EXPECT_NE(all_audit_logs(w_).find("\"type\":\"git.planted\""), std::string::npos);
  // The host's git in them runs nothing.
  EXPECT_EQ(host_git_markers(w_.ws + "/vendor/lib"), std::vector<std::string>{});
  EXPECT_EQ(host_git_markers(w_.ws + "/bare"), std::vector<std::string>{});
}

TEST_P(GitGuardTest, FilesThatRunCodeOutsideAreReadOnly) {
  const std::string ws = w_.ws;
  // Some exist (with content the box must not change), some are missing, one is a symlink.
  ::mkdir((ws + "/.claude").c_str(), 0755);
  write_file(ws + "/.claude/settings.json", "{}\n");
  ::mkdir((w_.root + "/elsewhere").c_str(), 0755);
  ASSERT_EQ(::symlink((w_.root + "/elsewhere").c_str(), (ws + "/.codex").c_str()), 0);
  chown_tree(w_.root, w_.as.uid, w_.as.gid);
  ASSERT_EQ(::lchown((ws + "/.codex").c_str(), w_.as.uid, w_.as.gid), 0);
  const std::vector<std::string> targets = {".claude/settings.json",
                                            ".claude/settings.local.json",
                                            ".claude/hooks/x.sh",
                                            ".mcp.json",
                                            ".agentbox/x",
                                            ".codex/config.toml",
                                            ".gemini/settings.json",
                                            ".cursor/mcp.json",
                                            ".windsurf/x",
                                            ".kiro/x",
                                            ".continue/x",
                                            ".pre-commit-config.yaml",
                                            ".husky/pre-commit",
                                            ".devcontainer/devcontainer.json",
                                            ".envrc",
                                            ".vscode/tasks.json",
                                            ".idea/workspace.xml",
                                            ".gitmodules"};
  std::string script;
  for (const auto& t : targets) {
    script +=
        fmt::format("(echo 'touch {}' > '{}') 2>/dev/null && echo 'wrote {}';", mark("j"), t, t);
  }
  script += "echo done";
  Output r = in_box(script);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("done")) << r.out;
  for (const auto& t : targets) {
    EXPECT_FALSE(r.has_line("wrote " + t)) << t;
  }
  EXPECT_EQ(slurp(ws + "/.claude/settings.json"), "{}\n");
  EXPECT_FALSE(exists(w_.root + "/elsewhere/config.toml"));
  for (const char* missing : {".mcp.json", ".gemini", ".husky", ".envrc", ".pre-commit-config.yaml",
                              ".claude/settings.local.json", ".devcontainer"}) {
    EXPECT_FALSE(exists(ws + "/" + missing)) << missing << " outlived the session";
  }
}

TEST_P(GitGuardTest, UnprotectIsTheUsersAndNeverCoversGit) {
  std::string cfg = w_.root + "/cfg";
  ::mkdir(cfg.c_str(), 0755);
  ::mkdir((cfg + "/agentbox").c_str(), 0755);
  write_file(cfg + "/agentbox/config.toml", "[sandbox]\nunprotect = [\".vscode\"]\n");
  chown_tree(cfg, w_.as.uid, w_.as.gid);
  RunOptions o;
  o.env["XDG_CONFIG_HOME"] = cfg;
  Output r = in_box("mkdir .vscode && echo x > .vscode/tasks.json && echo wrote", o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("wrote")) << r.err;
  EXPECT_EQ(slurp(w_.ws + "/.vscode/tasks.json"), "x\n");

  write_file(cfg + "/agentbox/config.toml", "[sandbox]\nunprotect = [\".git/hooks\"]\n");
  Output git = in_box("true", o);
  EXPECT_EQ(git.status, 125);
  EXPECT_NE(git.err.find("is git metadata, always protected"), std::string::npos) << git.err;
  // The workspace's own file may not unprotect anything.
  write_file(cfg + "/agentbox/config.toml", "");
  write_file(w_.ws + "/.agentbox.toml", "[sandbox]\nunprotect = [\".envrc\"]\n");
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  Output narrow = in_box("true", o);
  EXPECT_EQ(narrow.status, 125) << narrow.err;
}

TEST_P(GitGuardTest, LinkedWorktreeIsAWorkspace) {
  const std::string wt = w_.root + "/wt";
  ASSERT_EQ(sh(fmt::format("{} -C '{}' worktree add -q '{}'", git(), w_.ws, wt)), 0);
  chown_tree(w_.root, w_.as.uid, w_.as.gid);
  RunOptions o;
  o.cwd = wt;
  Output r =
      in_box(fmt::format("git status --short && echo b > b && git add b && git -c user.name=x -c "
                         "user.email=x@x commit -qm inbox && echo committed; git config x.y z || "
                         "echo config-refused; (echo 'touch {}' > {}/.git/hooks/pre-commit) "
                         "2>/dev/null || echo hooks-refused",
                         mark("a"), w_.ws),
             o);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("committed")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("config-refused")) << r.out;
  EXPECT_TRUE(r.has_line("hooks-refused")) << r.out;
  // The commit is in the main repository (its objects and refs were writable).
  EXPECT_EQ(sh(fmt::format("{} -C '{}' log -1 --format=%s wt | grep -qx inbox", git(), w_.ws)), 0);
  EXPECT_EQ(host_git_markers(wt), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(As, GitGuardTest, ::testing::Values("root", "user"));

}  // namespace
}  // namespace agentbox::it
