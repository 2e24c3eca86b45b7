// app::Session, before the clone: who runs and where, the session folder and its log, the
// proxy, the mount plan, the environment, the confinement and the network (session.hpp).
#include <grp.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>

#include "agentbox/app/agent_answers.hpp"
#include "agentbox/app/session.hpp"
#include "agentbox/app/session_dirs.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/base/startup_trace.hpp"
#include "agentbox/config/defaults.hpp"
#include "agentbox/proxy/tls_ca.hpp"
#include "agentbox/sandbox/workspace.hpp"
#include "session_internal.hpp"

extern char** environ;

namespace agentbox::app {

using base::Error;
using base::Result;
namespace sb = sandbox;

std::string expand_home(const std::string& path, const std::string& home) {
  if (path == "~") {
    return home;
  }
  if (path.rfind("~/", 0) == 0) {
    return home + path.substr(1);
  }
  return path;
}

policy::SourceSpec expand_home(policy::SourceSpec from, const std::string& home) {
  if (from.kind == policy::SourceKind::kFile) {
    from.arg = expand_home(from.arg, home);
  }
  return from;
}

std::string sessions_dir(const std::map<std::string, std::string>& env, const std::string& home) {
  return agentbox_state_dir(env, home) + "/sessions";
}

namespace detail {

std::string origin_text(const config::Origin& o) {
  if (o.line > 0) {
    return fmt::format("{}:{}:{}", o.source, o.line, o.column);
  }
  return o.source.empty() ? std::string("built-in") : o.source;
}

std::string from_text(const config::Origin& o) {
  if (o.source.rfind("--", 0) == 0) {
    return {};
  }
  return fmt::format(" (from {})", origin_text(o));
}

}  // namespace detail

namespace {

using detail::from_text;
using detail::origin_text;

Result<std::string> real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    return Error::sys(errno, "realpath", path);
  }
  return std::string(buf);
}

sb::UserInfo who_runs(const std::map<std::string, std::string>& env) {
  sb::UserInfo u;
  u.uid = ::getuid();
  u.gid = ::getgid();
  struct passwd pw {};
  struct passwd* pwp = nullptr;
  char buf[4096];
  if (::getpwuid_r(u.uid, &pw, buf, sizeof buf, &pwp) == 0 && pwp != nullptr) {
    u.name = pw.pw_name;
    u.gecos = pw.pw_gecos != nullptr ? pw.pw_gecos : "";
    u.home = pw.pw_dir;
    u.shell = pw.pw_shell != nullptr ? pw.pw_shell : "";
  } else {
    u.name = fmt::format("user{}", u.uid);
  }
  // $HOME wins: it is where the user's tools look, and tests point it elsewhere.
  auto home = env.find("HOME");
  if (home != env.end() && !home->second.empty() && home->second[0] == '/') {
    u.home = home->second;
  }
  if (u.home.empty()) {
    u.home = "/";
  }
  if (auto canon = real_path(u.home)) {
    u.home = *canon;
  }
  struct group gr {};
  struct group* grp = nullptr;
  if (::getgrgid_r(u.gid, &gr, buf, sizeof buf, &grp) == 0 && grp != nullptr) {
    u.group = gr.gr_name;
  } else {
    u.group = fmt::format("group{}", u.gid);
  }
  // The shell must exist in the box (system trees only); otherwise /bin/sh.
  bool shell_ok = false;
  for (const auto& t : sb::system_trees()) {
    shell_ok = shell_ok || sb::path_within(u.shell, t);
  }
  if (!shell_ok || ::access(u.shell.c_str(), X_OK) != 0) {
    u.shell = "/bin/sh";
  }
  return u;
}

// A tmpfs size or inode cap as the mount option wants it (0: none).
uint64_t tmpfs_cap(uint64_t v) {
  return v == config::kUnlimited ? 0 : v;
}

uint64_t inode_cap(const config::Sourced<uint64_t>& size,
                   const std::optional<config::Sourced<uint64_t>>& inodes) {
  return tmpfs_cap(inodes ? inodes->value : config::default_inodes(size.value));
}

// Grants are resolved to their real paths, except that a path inside the workspace must stay
// inside it: the workspace's content may have been written by an agent, and a link it planted
// there (`cache -> ~/.ssh`) must not turn a grant of a workspace folder into one of a secret.
Result<std::vector<sb::Grant>> resolve_grants(const config::Policy& policy, const std::string& home,
                                              const std::string& workspace,
                                              const std::string& cwd) {
  std::vector<sb::Grant> out;
  auto add = [&](const std::vector<config::Sourced<std::string>>& list, bool writable) {
    for (const auto& g : list) {
      std::string p = expand_home(g.value, home);
      auto canon = real_path(p);
      if (!canon) {
        base::log::warn("{} `{}`{}: {}: not shown in the box", writable ? "--rw" : "--ro", g.value,
                        from_text(g.origin), std::strerror(canon.error().err()));
        continue;
      }
      std::string abs =
          sb::lexically_normal_abs(p.empty() || p[0] != '/' ? fmt::format("{}/{}", cwd, p) : p);
      if (sb::path_within(abs, workspace) && !sb::path_within(*canon, workspace)) {
        base::log::warn("{} `{}`{}: a link inside the workspace leads to `{}`: not shown",
                        writable ? "--rw" : "--ro", g.value, from_text(g.origin), *canon);
        continue;
      }
      out.push_back({*canon, writable});
    }
  };
  add(policy.ro, false);
  add(policy.rw, true);
  return out;
}

// The command's installation (program_install.hpp), its shown paths added as read-only grants;
// said at -v.
ProgramInstall resolve_for_box(const std::string& command,
                               const std::map<std::string, std::string>& env,
                               const std::string& cwd, const std::string& workspace,
                               std::vector<sb::Grant>& grants) {
  std::vector<std::string> visible = sb::system_trees();
  if (!workspace.empty()) {
    visible.push_back(workspace);
  }
  for (const auto& g : grants) {
    visible.push_back(g.path);
  }
  ProgramInstall p = resolve_program(command, env, cwd, visible, sb::kDefaultPath);
  for (const auto& line : p.resolution) {
    base::log::debug("program {}", line);
  }
  for (const auto& line : describe(p)) {
    base::log::debug("program: {}", line);
  }
  for (const auto& path : p.shown) {
    grants.push_back({path, false});
  }
  return p;
}

Result<std::string> workspace_for(const config::Policy& policy, const std::string& home,
                                  const std::string& cwd) {
  std::string workspace;
  if (policy.workspace) {
    std::string ws = expand_home(policy.workspace->value, home);
    auto canon = real_path(ws);
    if (!canon) {
      return std::move(canon).error().context(
          fmt::format("workspace ({})", origin_text(policy.workspace->origin)));
    }
    workspace = *canon;
  } else {
    workspace = sb::detect_workspace(cwd, sb::dir_has_git);
  }
  if (auto problem = sb::workspace_problem(workspace, home); !problem.empty()) {
    return Error::msg(fmt::format("refusing the workspace `{}`: {}", workspace, problem))
        .hint("cd into a project directory or pass `--workspace DIR`");
  }
  return workspace;
}

// Whether the session will use OpenSSL (state folder's hash, placeholders' keyed hash, the CA,
// trust files, review's objects): only then is it set up first (proxy::prepare_openssl), which
// alone costs a plain run ~0.3 ms (bare C program). One missed here only forgoes that set-up.
bool uses_openssl(const config::Policy& p) {
  return p.review.value || !p.persist.empty() || !p.credentials.empty() || !p.token_files.empty() ||
         !p.trust_ca.empty() || !p.http_rules.empty() || !p.inspect.empty() ||
         p.inspect_all.value || p.learn.value;
}

}  // namespace

Result<std::unique_ptr<Session>> Session::prepare(const RunRequest& req, const Env& env,
                                                  base::UniqueFd parent,
                                                  std::chrono::steady_clock::time_point t0) {
  std::unique_ptr<Session> s(new Session(req, env));
  s->parent_ = std::move(parent);
  s->t0_ = t0;
  AGENTBOX_TRY(s->prepare_paths());
  base::startup_trace::stamp("prep.protect");
  AGENTBOX_TRY(s->open_log());
  base::startup_trace::stamp("prep.session");
  s->state_dir_ = agentbox_state_dir(env, s->user_.home);
  if (uses_openssl(req.policy) && !proxy::prepare_openssl()) {
    base::log::debug("OpenSSL was used before the session: its default random generator stays");
  }
  if (req.policy.review.value) {
    AGENTBOX_ASSIGN_OR_RETURN(
        s->review_, start_review(s->state_dir_, s->id_, s->workspace_, s->git_.common_dir(),
                                 s->protect_.paths, s->grants_, *s->sink_));
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::vector<sb::Overlay> persisted, s->keep_state());
  AGENTBOX_TRY(s->prepare_proxy());
  base::startup_trace::stamp("prep.proxy");
  s->plan_mounts(std::move(persisted));
  base::startup_trace::stamp("prep.mounts");
  s->plan_environment();
  AGENTBOX_TRY(s->prepare_confinement());
  base::startup_trace::stamp("prep.confine");
  AGENTBOX_TRY(s->prepare_network());
  return s;
}

// Who runs and where: the workspace, the grants, the program's installation, protected paths.
base::Status Session::prepare_paths() {
  user_ = who_runs(env_);
  char cwd_buf[PATH_MAX];
  if (::getcwd(cwd_buf, sizeof cwd_buf) == nullptr) {
    return Error::sys(errno, "getcwd");
  }
  AGENTBOX_ASSIGN_OR_RETURN(cwd_, real_path(cwd_buf));
  AGENTBOX_ASSIGN_OR_RETURN(workspace_, workspace_for(req_.policy, user_.home, cwd_));
  AGENTBOX_ASSIGN_OR_RETURN(grants_, resolve_grants(req_.policy, user_.home, workspace_, cwd_));
  program_ = resolve_for_box(req_.command[0], env_, cwd_, workspace_, grants_);
  base::startup_trace::stamp("prep.paths");

  std::vector<std::string> rels = sb::default_protected_paths();
  for (const auto& p : req_.policy.protected_paths) {
    rels.push_back(p.value);
  }
  AGENTBOX_ASSIGN_OR_RETURN(git_, GitGuard::prepare(workspace_, user_.home));
  rels.insert(rels.end(), git_.workspace_paths().begin(), git_.workspace_paths().end());
  // Placeholders are recycled through agentbox's state dir (see protect.hpp: start-up cost).
  std::string stash = sessions_dir(env_, user_.home);
  stash.replace(stash.rfind('/') + 1, std::string::npos, "placeholders");
  AGENTBOX_ASSIGN_OR_RETURN(protect_, sb::prepare_protected(workspace_, rels, stash));
  if (!git_.common_dir().empty()) {
    // A linked worktree: its repository's objects and refs are the box's to write.
    grants_.push_back({git_.common_dir(), true});
    AGENTBOX_ASSIGN_OR_RETURN(git_protect_,
                              sb::prepare_protected(git_.common_dir(), git_.common_paths(), stash));
  }
  return base::ok();
}

// The session folder, its lock and audit log, telemetry, and old sessions pruned.
base::Status Session::open_log() {
  id_ = new_session_id();
  std::string root = sessions_dir(env_, user_.home);
  dir_ = root + "/" + id_;
  AGENTBOX_ASSIGN_OR_RETURN(lock_, make_session_dir(dir_));
  const config::AuditSettings& as = req_.policy.audit;
  auto sink = audit::JsonlSink::open(dir_ + "/audit.jsonl", id_,
                                     {.max_bytes = as.max_size.value, .coalesce = true});
  if (!sink) {
    return std::move(sink).error().context("opening the audit log");
  }
  sink_ = std::make_unique<audit::JsonlSink>(std::move(*sink));
  AGENTBOX_ASSIGN_OR_RETURN(telemetry_,
                            SessionTelemetry::attach(req_.policy.telemetry,
                                                     {.session = id_,
                                                      .profile = req_.policy.state_scope,
                                                      .workspace = workspace_,
                                                      .user = user_.name,
                                                      .labels = req_.policy.labels,
                                                      .home = user_.home},
                                                     *sink_));
  // Old folders go while init builds the box: the supervisor would only wait then (BENCHMARKS.md).
  launch_.after_clone =
      [root, id = id_, sink = sink_.get(),
       r = Retention{.keep = as.keep_sessions.value, .max_age_seconds = as.max_age_seconds.value}] {
        prune_and_report(root, id, r, std::time(nullptr), *sink);
      };
  return base::ok();
}

// The profile's agent state: the state directories bound into HOME (agent_state.hpp).
Result<std::vector<sb::Overlay>> Session::keep_state() {
  const config::Policy& policy = req_.policy;
  persist_ = {.scope = policy.state_scope, .workspace = workspace_};
  for (const auto& p : policy.persist) {
    persist_.paths.push_back(p.value);
  }
  for (const auto& d : policy.persist_drop) {
    persist_.drop.push_back(d.value);
  }
  persist_.strip = policy.persist_strip;
  auto binds = prepare_persist(state_dir_, persist_, user_.home);
  if (!binds) {
    return std::move(binds)
        .error()
        .context("keeping the agent's state")
        .hint("`agentbox state rm PROFILE` starts it afresh");
  }
  if (!binds->empty()) {
    sink_->emit(audit::Event("state.persist")
                    .str("profile", persist_.scope)
                    .str("dir", scope_dir(state_dir_, persist_))
                    .strs("paths", persist_.paths));
  }
  AGENTBOX_ASSIGN_OR_RETURN(answers_,
                            prepare_answers(policy.persist_answers, user_.home, workspace_, dir_));
  if (!answers_.empty()) {
    std::vector<std::string> files;
    for (const auto& [file, a] : policy.persist_answers) {
      files.push_back(file);
    }
    sink_->emit(audit::Event("state.answers").str("profile", persist_.scope).strs("files", files));
  }
  return binds;
}

// Credentials and trust before the mount plan and the environment: the box is shown the merged
// trust bundle and given placeholders, never the real values.
base::Status Session::prepare_proxy() {
  std::string key;
  if (!req_.policy.credentials.empty() || !req_.policy.token_files.empty()) {
    auto k = placeholder_key(state_dir_);
    if (!k) {
      base::log::warn("{}: placeholders are new this session", k.error().message());
    }
    key = k ? std::move(*k) : std::string();
  }
  auto proxy = SessionProxy::create(req_.policy, env_, user_.home, dir_, *sink_, key);
  if (!proxy) {
    return std::move(proxy).error().context("preparing the proxy");
  }
  proxy_ = std::move(*proxy);
  return base::ok();
}

void Session::plan_mounts(std::vector<sb::Overlay> persisted) {
  const config::Policy& pol = req_.policy;
  const std::string& hostname = pol.hostname.value;
  sb::MountSpec ms{.workspace = workspace_,
                   .home = user_.home,
                   .home_size = tmpfs_cap(pol.home_size.value),
                   .tmp_size = tmpfs_cap(pol.tmp_size.value),
                   .shm_size = tmpfs_cap(pol.shm_size.value),
                   .home_inodes = inode_cap(pol.home_size, pol.home_inodes),
                   .tmp_inodes = inode_cap(pol.tmp_size, pol.tmp_inodes),
                   .shm_inodes = inode_cap(pol.shm_size, pol.shm_inodes),
                   .mount_sys = pol.mount_sys.value,
                   .grants = grants_,
                   .protected_paths = protect_.paths,
                   .git_common = git_.common_dir(),
                   .git_common_protected = git_protect_.paths,
                   .etc_passwd = sb::make_etc_passwd(user_),
                   .etc_group = sb::make_etc_group(user_),
                   .etc_hosts = sb::make_etc_hosts(hostname),
                   .etc_hostname = hostname + "\n",
                   .etc_resolv_conf = "nameserver 10.0.2.3\n"};
  ms.overlays = proxy_->overlays();
  ms.overlays.insert(ms.overlays.end(), answers_.begin(), answers_.end());
  if (review_) {
    ms.review_upper = review_->review.upper;
    ms.review_work = review_->review.work;
    ms.overlays.insert(ms.overlays.end(), review_->overlays.begin(), review_->overlays.end());
  }
  ms.persisted = std::move(persisted);
  for (const auto& l : program_.links) {
    ms.links.push_back({l.path, l.text});
  }
  sb::RealHostFs host;
  launch_.mounts = sb::build_mount_plan(ms, host);
}

// The environment, argv, cwd, user namespace limits, ids and the terminal.
void Session::plan_environment() {
  const config::Policy& pol = req_.policy;
  bool tty = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1;
  sb::EnvInputs ein{.caller = env_, .user = user_, .tty = tty, .pass = program_.pass_env};
  ein.path_prepend = program_.path_dirs;
  for (const auto& e : pol.env) {
    if (proxy_->secret_env_sources().count(e.value) != 0) {
      base::log::warn(
          "--env {}{}: it holds the real value of a credential; the box gets its "
          "placeholder instead",
          e.value, from_text(e.origin));
      continue;
    }
    ein.pass.push_back(e.value);
  }
  for (const auto& [name, value] : pol.setenv) {
    ein.set.emplace_back(name, expand_home(value.value, user_.home));  // CLAUDE_CONFIG_DIR=~/x
  }
  // Last, so they win over a pass-through or setenv of the same name.
  sb::add_box_env(ein, proxy_->box_env());
  if (review_) {
    // Every lstat() through overlayfs costs more than through a bind mount (docs/REVIEW.md,
    // "Cost"); git's untracked cache saves `git status` its readdir of every directory. The
    // cache lives in the session's copy of .git/index, which apply never lands.
    sb::add_git_config(ein, "core.untrackedCache", "true");
    if (!review_->fsmonitor.empty()) {
      // git skips the lstat() of each entry the hook does not name (docs/REVIEW.md, "git
      // status"); it writes its FSMN extension into the session's copy of .git/index too.
      sb::add_git_config(ein, "core.fsmonitor", review_->fsmonitor);
      sb::add_git_config(ein, "core.fsmonitorHookVersion", "2");
    }
  }
  launch_.env = sb::build_environment(ein);
  launch_.argv = req_.command;
  launch_.cwd = sb::box_cwd(cwd_, workspace_);
  launch_.hostname = pol.hostname.value;
  for (const auto& [name, limit] :
       {std::pair{"max_inotify_instances", &pol.limits.inotify_instances},
        std::pair{"max_inotify_watches", &pol.limits.inotify_watches}}) {
    if (auto v = config::imposed(*limit)) {
      launch_.userns_limits.emplace_back(name, *v);
    }
  }
  launch_.uid = user_.uid;
  launch_.gid = user_.gid;
  launch_.pty = tty;
  if (tty) {
    struct termios t {};
    if (::tcgetattr(STDIN_FILENO, &t) == 0) {
      launch_.termios = t;
    }
    struct winsize w {};
    if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &w) == 0) {
      launch_.winsize = w;
    }
  }
}

base::Status Session::prepare_confinement() {
  ConfineInputs ci{.session_id = id_,
                   .workspace = workspace_,
                   .home = user_.home,
                   .mount_sys = req_.policy.mount_sys.value,
                   .limits = req_.policy.limits};
  for (const auto& g : grants_) {
    (g.writable ? ci.rw : ci.ro).push_back(g.path);
  }
  for (const auto& rel : protect_.paths) {
    ci.protected_abs.push_back(fmt::format("{}/{}", workspace_, rel));
  }
  for (const auto& rel : git_protect_.paths) {
    ci.protected_abs.push_back(fmt::format("{}/{}", git_.common_dir(), rel));
  }
  ci.seccomp_allow = req_.policy.seccomp_allow;
  ci.exec_rules = req_.policy.exec_rules;
  ci.exec_log = req_.policy.exec_log.value;
  ci.command = req_.command;
  auto confinement = SessionConfinement::create(ci, *sink_);
  if (!confinement) {
    return std::move(confinement).error().context("preparing the confinement");
  }
  confinement_ = std::move(*confinement);
  launch_.confinement = confinement_.get();
  launch_.keep_fds = confinement_->child_fds();
  launch_.exit_report_fd = confinement_->exit_report_fd();
  launch_.autogroup_nice = confinement_->autogroup_nice();
  return base::ok();
}

base::Status Session::prepare_network() {
  const config::Policy& pol = req_.policy;
  if (pol.network_none.value) {
    if (!pol.host_ports.empty() || !pol.publish.empty()) {
      const auto& first = pol.host_ports.empty() ? pol.publish[0] : pol.host_ports[0];
      return Error::msg(
          fmt::format("{} `{}`: host services need the filtered network, not "
                      "network mode `none`",
                      first.origin.describe(), first.value));
    }
    return base::ok();  // the box's own network namespace with only `lo`: no tap, no stack
  }
  auto network = SessionNetwork::create(pol, user_.gid, *sink_);
  if (!network) {
    return std::move(network).error().context("preparing the network");
  }
  network_ = std::move(*network);
  network_->use_handler_factory(
      [proxy = proxy_.get()](event::Loop& loop, const policy::EgressPolicy& policy,
                             const std::vector<net::ConnectTo>& overrides) {
        return proxy->make_handler(loop, policy, overrides);
      });
  launch_.network = network_->box_hook();
  launch_.socket_factory = network_->needs_socket_factory();
  return base::ok();
}

Result<std::string> resolve_workspace(const config::Policy& policy) {
  auto env = sb::parse_environ(environ);
  sb::UserInfo user = who_runs(env);
  char cwd_buf[PATH_MAX];
  if (::getcwd(cwd_buf, sizeof cwd_buf) == nullptr) {
    return Error::sys(errno, "getcwd");
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::string cwd, real_path(cwd_buf));
  return workspace_for(policy, user.home, cwd);
}

std::vector<std::string> explain_program(const config::Policy& policy, const std::string& command) {
  auto env = sb::parse_environ(environ);
  sb::UserInfo user = who_runs(env);
  char cwd_buf[PATH_MAX];
  auto cwd = ::getcwd(cwd_buf, sizeof cwd_buf) != nullptr ? real_path(cwd_buf)
                                                          : Result<std::string>(Error::msg("cwd"));
  auto ws = cwd ? workspace_for(policy, user.home, *cwd) : Result<std::string>(cwd.error());
  std::vector<sb::Grant> grants;
  if (ws) {
    grants = resolve_grants(policy, user.home, *ws, *cwd).value_or(std::vector<sb::Grant>{});
  }
  ProgramInstall p = resolve_for_box(command, env, cwd ? *cwd : "/", ws ? *ws : "", grants);
  std::vector<std::string> out = p.resolution;
  if (out.empty()) {
    out.push_back(
        fmt::format("`{}`: not found on your PATH (the box looks on its own PATH)", command));
  }
  for (auto& line : describe(p)) {
    out.push_back(std::move(line));
  }
  return out;
}

}  // namespace agentbox::app
