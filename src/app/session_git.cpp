// Git metadata around a session: checks and extra protection before, the scan after.
#include "agentbox/app/session_git.hpp"

#include <dirent.h>
#include <fmt/core.h>
#include <sys/stat.h>

#include <algorithm>

#include "agentbox/base/log.hpp"
#include "agentbox/sandbox/git_scan.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::app {

namespace sb = agentbox::sandbox;

namespace {

// Printed even with -q: the user must see this before running git on the host.
void loud(const std::string& line) {
  fmt::print(stderr, "agentbox: warning: {}\n", line);
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

bool worktree_config_on(const std::string& config) {
  for (const auto& e : sb::parse_git_config(sb::read_small_file(config))) {
    if (e.key == "extensions.worktreeconfig" && e.value != "false" && e.value != "0" &&
        e.value != "no" && e.value != "off") {
      return true;
    }
  }
  return false;
}

void add_rel(std::vector<std::string>& out, const std::string& abs, const std::string& root) {
  if (sb::path_within(abs, root) && abs != root) {
    std::string rel = abs.substr(root.size() + 1);
    if (std::find(out.begin(), out.end(), rel) == out.end()) {
      out.push_back(rel);
    }
  }
}

// The other linked worktrees' metadata directories, protected whole (their commondir and
// config.worktree decide what git runs there).
void other_worktrees(const std::string& common, const std::string& mine,
                     std::vector<std::string>& rels) {
  DIR* d = ::opendir((common + "/worktrees").c_str());
  if (d == nullptr) {
    return;
  }
  for (int i = 0; i < 4096; ++i) {
    struct dirent* e = ::readdir(d);
    if (e == nullptr) {
      break;
    }
    std::string name = e->d_name;
    if (name != "." && name != ".." && fmt::format("{}/worktrees/{}", common, name) != mine) {
      rels.push_back("worktrees/" + name);
    }
  }
  ::closedir(d);
}

// Programs inside the workspace that the host's git configs name: `core.hooksPath = .githooks`
// (a common project set-up), `filter.x.clean = ./tools/clean`, `!./scripts/x` aliases. Git runs
// them from the top of the worktree, so a relative path is taken from the workspace. The
// configs read are those git on the host reads: system, global, the repository's, its includes.
void programs_in_workspace(const std::vector<std::string>& configs, const std::string& workspace,
                           std::vector<std::string>& rels) {
  for (const auto& file : configs) {
    for (const auto& e : sb::parse_git_config(sb::read_small_file(file))) {
      if (!sb::git_key_runs_code(e.key, e.value) || e.key == "include.path" ||
          e.key.rfind("includeif.", 0) == 0) {
        continue;
      }
      std::string v = e.value;
      size_t b = v.find_first_not_of(" \t!");
      if (b == std::string::npos) {
        continue;
      }
      std::string word = v.substr(b, v.find_first_of(" \t", b) - b);
      if (word[0] == '~' || word[0] == '$') {
        continue;  // in HOME (not the box's to write) or the caller's environment
      }
      if (word.find('/') == std::string::npos && e.key != "core.hookspath") {
        continue;  // a program found on PATH
      }
      std::string abs =
          sb::lexically_normal_abs(word[0] == '/' ? word : fmt::format("{}/{}", workspace, word));
      if (abs != workspace && abs != workspace + "/.git") {
        add_rel(rels, abs, workspace);
      }
    }
  }
}

std::vector<std::string> host_configs(const std::string& home) {
  std::vector<std::string> out = {"/etc/gitconfig"};
  if (!home.empty()) {
    out.push_back(home + "/.gitconfig");
    out.push_back(home + "/.config/git/config");
  }
  return out;
}

}  // namespace

base::Result<GitGuard> GitGuard::prepare(const std::string& workspace, const std::string& home) {
  GitGuard g;
  g.ws_ = workspace;
  g.since_ = ::time(nullptr) - 1;  // ctimes are coarse: rather one second too early
  AGENTBOX_ASSIGN_OR_RETURN(g.layout_, sb::inspect_git(workspace));
  using Kind = sb::GitLayout::Kind;
  switch (g.layout_.kind) {
    case Kind::kNone:
      return g;
    case Kind::kOtherGitfile:
      if (!g.layout_.gitdir.empty() && !sb::path_within(g.layout_.gitdir, workspace)) {
        base::log::warn(
            "`{}/.git` names `{}`, which is not shown in the box (only a linked worktree's "
            "repository is): git inside sees no repository",
            workspace, g.layout_.gitdir);
      }
      return g;
    case Kind::kDir: {
      const std::string config = g.layout_.common + "/config";
      if (exists(g.layout_.common + "/config.worktree") || worktree_config_on(config)) {
        g.ws_rels_.push_back(".git/config.worktree");
      }
      std::vector<std::string> configs = host_configs(home);
      configs.push_back(config);
      for (const auto& inc : sb::git_config_includes(config, home)) {
        add_rel(g.ws_rels_, inc, workspace);
        configs.push_back(inc);
      }
      programs_in_workspace(configs, workspace, g.ws_rels_);
      return g;
    }
    case Kind::kLinkedWorktree:
      break;
  }
  const std::string& c = g.layout_.common;
  g.common_ = c;
  std::string mine = g.layout_.gitdir.substr(c.size() + 1);  // worktrees/NAME
  g.common_rels_ = {"config",
                    "hooks",
                    "commondir",
                    "modules",
                    "objects/info/alternates",
                    mine + "/commondir",
                    mine + "/gitdir"};
  if (exists(c + "/config.worktree") || worktree_config_on(c + "/config")) {
    g.common_rels_.push_back("config.worktree");
    g.common_rels_.push_back(mine + "/config.worktree");
  }
  other_worktrees(c, g.layout_.gitdir, g.common_rels_);
  std::vector<std::string> configs = host_configs(home);
  configs.push_back(c + "/config");
  for (const auto& inc : sb::git_config_includes(c + "/config", home)) {
    add_rel(g.ws_rels_, inc, workspace);
    add_rel(g.common_rels_, inc, c);
    configs.push_back(inc);
  }
  programs_in_workspace(configs, workspace, g.ws_rels_);
  return g;
}

size_t GitGuard::finish(const std::string& session, audit::Sink& sink) const {
  if (ws_.empty()) {
    return 0;
  }
  sb::GitScan scan = sb::scan_git_plants(ws_, layout_.gitdir, since_, session);
  for (const auto& f : scan.findings) {
    audit::Event ev("git.planted");
    ev.str("kind", sb::git_finding_name(f.kind)).str("path", f.path).str("detail", f.detail);
    if (!f.quarantined_as.empty()) {
      ev.str("quarantined_as", f.quarantined_as);
    }
    sink.emit(ev);
    loud(fmt::format(
        "git: the box left {} `{}`: {}{}", sb::git_finding_name(f.kind), f.path, f.detail,
        f.quarantined_as.empty() ? std::string()
                                 : " (quarantined: renamed to `" + f.quarantined_as + "`)"));
  }
  if (!scan.findings.empty()) {
    loud(
        "git: check these before running git in the workspace: git on the host would run what a "
        "config key or hook names (docs/CONFINEMENT.md, \"Git metadata\")");
  }
  if (scan.truncated) {
    loud(fmt::format("git: the workspace scan stopped after {} entries; the rest was not checked",
                     scan.entries));
  }
  audit::Event sum("git.scan");
  sum.num("findings", static_cast<int64_t>(scan.findings.size()))
      .num("entries", static_cast<int64_t>(scan.entries))
      .boolean("truncated", scan.truncated);
  sink.emit(sum);
  return scan.findings.size();
}

}  // namespace agentbox::app
