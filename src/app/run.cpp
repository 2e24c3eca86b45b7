// `agentbox run`: policy -> specs -> box -> exit status, with the audit log and the summary.
#include "agentbox/app/run.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>

#include "agentbox/app/agent_answers.hpp"
#include "agentbox/app/agent_state.hpp"
#include "agentbox/app/doctor.hpp"
#include "agentbox/app/program_install.hpp"
#include "agentbox/app/session_confinement.hpp"
#include "agentbox/app/session_control.hpp"
#include "agentbox/app/session_dirs.hpp"
#include "agentbox/app/session_git.hpp"
#include "agentbox/app/session_network.hpp"
#include "agentbox/app/session_proxy.hpp"
#include "agentbox/app/session_review.hpp"
#include "agentbox/app/session_telemetry.hpp"
#include "agentbox/app/terminal.hpp"
#include "agentbox/audit/audit.hpp"
#include "agentbox/audit/summary.hpp"
#include "agentbox/base/log.hpp"
#include "agentbox/base/startup_trace.hpp"
#include "agentbox/config/defaults.hpp"
#include "agentbox/event/loop.hpp"
#include "agentbox/sandbox/launcher.hpp"
#include "agentbox/sandbox/protect.hpp"
#include "agentbox/sandbox/workspace.hpp"

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

std::string sessions_dir(const std::map<std::string, std::string>& env, const std::string& home) {
  return agentbox_state_dir(env, home) + "/sessions";
}

std::string describe_exit(int code) {
  if (code > 128 && code < 128 + 65) {
    const char* name = sigabbrev_np(code - 128);
    return fmt::format("killed by signal {} (SIG{})", code - 128, name ? name : "?");
  }
  return fmt::format("exited with status {}", code);
}

namespace {

// Where a setting came from, for messages ("--rw", "profile.toml:3:1"). Local, so that the app
// does not depend on the config library's implementation for one string.
std::string origin_text(const config::Origin& o) {
  if (o.line > 0) {
    return fmt::format("{}:{}:{}", o.source, o.line, o.column);
  }
  return o.source.empty() ? std::string("built-in") : o.source;
}

// " (from profile.toml:3:1)" for grants out of a file; nothing for command-line flags.
std::string from_text(const config::Origin& o) {
  if (o.source.rfind("--", 0) == 0) {
    return {};
  }
  return fmt::format(" (from {})", origin_text(o));
}

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

// Everything prepared before the clone.
struct Session {
  sb::UserInfo user;
  std::string cwd;
  std::string workspace;
  std::vector<sb::Grant> grants;
  ProgramInstall program;  // what of the command's installation the box is shown
  sb::ProtectedSet protect;
  GitGuard git;                  // the repository's layout; the session-end scan
  sb::ProtectedSet git_protect;  // a linked worktree's main repository
  sb::LaunchSpec launch;
  std::string id;
  std::string dir;
  base::UniqueFd lock;  // flock on dir/lock while the session runs (session_dirs.hpp)
  std::unique_ptr<SessionTelemetry> telemetry;  // observes the sink: declared first, outlives it
  std::unique_ptr<audit::JsonlSink> sink;
  std::unique_ptr<SessionConfinement> confinement;  // Landlock, caps, seccomp, rlimits, cgroup
  std::unique_ptr<SessionProxy> proxy;              // credentials, session CA, L7 handler
  std::unique_ptr<SessionNetwork> network;          // the tap in the box, the stack out here
  std::string state_dir;                            // STATE/agentbox
  PersistSpec persist;                              // the agent state kept (agent_state.hpp)
  std::vector<sb::Overlay> answers;                 // persist.answers (agent_answers.hpp)
  std::optional<SessionReview> review;              // --review (session_review.hpp)
};

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

// The profile's agent state: the state directories bound into HOME (agent_state.hpp).
Result<std::vector<sb::Overlay>> keep_state(const config::Policy& policy, Session& s) {
  s.persist = {.scope = policy.state_scope, .workspace = s.workspace};
  for (const auto& p : policy.persist) {
    s.persist.paths.push_back(p.value);
  }
  for (const auto& d : policy.persist_drop) {
    s.persist.drop.push_back(d.value);
  }
  s.persist.strip = policy.persist_strip;
  auto binds = prepare_persist(s.state_dir, s.persist, s.user.home);
  if (!binds) {
    return std::move(binds)
        .error()
        .context("keeping the agent's state")
        .hint("`agentbox state rm PROFILE` starts it afresh");
  }
  if (!binds->empty()) {
    s.sink->emit(audit::Event("state.persist")
                     .str("profile", s.persist.scope)
                     .str("dir", scope_dir(s.state_dir, s.persist))
                     .strs("paths", s.persist.paths));
  }
  auto answers = prepare_answers(policy.persist_answers, s.user.home, s.workspace, s.dir);
  if (!answers) {
    return std::move(answers).error();
  }
  s.answers = std::move(*answers);
  if (!s.answers.empty()) {
    std::vector<std::string> files;
    for (const auto& [file, a] : policy.persist_answers) {
      files.push_back(file);
    }
    s.sink->emit(
        audit::Event("state.answers").str("profile", s.persist.scope).strs("files", files));
  }
  return binds;
}

Result<Session> prepare(const RunRequest& req, const std::map<std::string, std::string>& env) {
  Session s;
  s.user = who_runs(env);
  char cwd_buf[PATH_MAX];
  if (::getcwd(cwd_buf, sizeof cwd_buf) == nullptr) {
    return Error::sys(errno, "getcwd");
  }
  AGENTBOX_ASSIGN_OR_RETURN(s.cwd, real_path(cwd_buf));
  AGENTBOX_ASSIGN_OR_RETURN(s.workspace, workspace_for(req.policy, s.user.home, s.cwd));
  AGENTBOX_ASSIGN_OR_RETURN(s.grants, resolve_grants(req.policy, s.user.home, s.workspace, s.cwd));
  s.program = resolve_for_box(req.command[0], env, s.cwd, s.workspace, s.grants);
  base::startup_trace::stamp("prep.paths");

  std::vector<std::string> rels = sb::default_protected_paths();
  for (const auto& p : req.policy.protected_paths) {
    rels.push_back(p.value);
  }
  AGENTBOX_ASSIGN_OR_RETURN(s.git, GitGuard::prepare(s.workspace, s.user.home));
  rels.insert(rels.end(), s.git.workspace_paths().begin(), s.git.workspace_paths().end());
  // Placeholders are recycled through agentbox's state dir (see protect.hpp: start-up cost).
  std::string stash = sessions_dir(env, s.user.home);
  stash.replace(stash.rfind('/') + 1, std::string::npos, "placeholders");
  AGENTBOX_ASSIGN_OR_RETURN(s.protect, sb::prepare_protected(s.workspace, rels, stash));
  if (!s.git.common_dir().empty()) {
    // A linked worktree: its repository's objects and refs are the box's to write.
    s.grants.push_back({s.git.common_dir(), true});
    AGENTBOX_ASSIGN_OR_RETURN(
        s.git_protect, sb::prepare_protected(s.git.common_dir(), s.git.common_paths(), stash));
  }

  base::startup_trace::stamp("prep.protect");
  s.id = new_session_id();
  std::string root = sessions_dir(env, s.user.home);
  s.dir = root + "/" + s.id;
  AGENTBOX_ASSIGN_OR_RETURN(s.lock, make_session_dir(s.dir));
  const config::AuditSettings& as = req.policy.audit;
  auto sink = audit::JsonlSink::open(s.dir + "/audit.jsonl", s.id,
                                     {.max_bytes = as.max_size.value, .coalesce = true});
  if (!sink) {
    return std::move(sink).error().context("opening the audit log");
  }
  s.sink = std::make_unique<audit::JsonlSink>(std::move(*sink));
  AGENTBOX_ASSIGN_OR_RETURN(s.telemetry,
                            SessionTelemetry::attach(req.policy.telemetry,
                                                     {.session = s.id,
                                                      .profile = req.policy.state_scope,
                                                      .workspace = s.workspace,
                                                      .user = s.user.name,
                                                      .labels = req.policy.labels},
                                                     *s.sink));
  // Old folders go while init builds the box: the supervisor would only wait then (BENCHMARKS.md).
  s.launch.after_clone =
      [root, id = s.id, sink = s.sink.get(),
       r = Retention{.keep = as.keep_sessions.value, .max_age_seconds = as.max_age_seconds.value}] {
        prune_and_report(root, id, r, std::time(nullptr), *sink);
      };

  base::startup_trace::stamp("prep.session");
  s.state_dir = agentbox_state_dir(env, s.user.home);
  if (req.policy.review.value) {
    AGENTBOX_ASSIGN_OR_RETURN(
        s.review, start_review(s.state_dir, s.id, s.workspace, s.git.common_dir(), s.protect.paths,
                               s.grants, *s.sink));
  }
  AGENTBOX_ASSIGN_OR_RETURN(std::vector<sb::Overlay> persisted, keep_state(req.policy, s));
  std::string key;
  if (!req.policy.credentials.empty() || !req.policy.token_files.empty()) {
    auto k = placeholder_key(s.state_dir);
    if (!k) {
      base::log::warn("{}: placeholders are new this session", k.error().message());
    }
    key = k ? std::move(*k) : std::string();
  }
  // Credentials and trust before the mount plan and the environment: the box is shown the
  // merged trust bundle and given placeholders, never the real values.
  auto proxy = SessionProxy::create(req.policy, env, s.user.home, s.dir, *s.sink, key);
  if (!proxy) {
    return std::move(proxy).error().context("preparing the proxy");
  }
  s.proxy = std::move(*proxy);
  base::startup_trace::stamp("prep.proxy");

  const std::string& hostname = req.policy.hostname.value;
  const config::Policy& pol = req.policy;
  sb::MountSpec ms{.workspace = s.workspace,
                   .home = s.user.home,
                   .home_size = tmpfs_cap(pol.home_size.value),
                   .tmp_size = tmpfs_cap(pol.tmp_size.value),
                   .shm_size = tmpfs_cap(pol.shm_size.value),
                   .home_inodes = inode_cap(pol.home_size, pol.home_inodes),
                   .tmp_inodes = inode_cap(pol.tmp_size, pol.tmp_inodes),
                   .shm_inodes = inode_cap(pol.shm_size, pol.shm_inodes),
                   .mount_sys = req.policy.mount_sys.value,
                   .grants = s.grants,
                   .protected_paths = s.protect.paths,
                   .git_common = s.git.common_dir(),
                   .git_common_protected = s.git_protect.paths,
                   .etc_passwd = sb::make_etc_passwd(s.user),
                   .etc_group = sb::make_etc_group(s.user),
                   .etc_hosts = sb::make_etc_hosts(hostname),
                   .etc_hostname = hostname + "\n",
                   .etc_resolv_conf = "nameserver 10.0.2.3\n"};
  ms.overlays = s.proxy->overlays();
  ms.overlays.insert(ms.overlays.end(), s.answers.begin(), s.answers.end());
  if (s.review) {
    ms.review_upper = s.review->review.upper;
    ms.review_work = s.review->review.work;
  }
  ms.persisted = std::move(persisted);
  for (const auto& l : s.program.links) {
    ms.links.push_back({l.path, l.text});
  }
  sb::RealHostFs host;
  s.launch.mounts = sb::build_mount_plan(ms, host);
  base::startup_trace::stamp("prep.mounts");

  bool tty = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1;
  sb::EnvInputs ein{.caller = env, .user = s.user, .tty = tty, .pass = s.program.pass_env};
  ein.path_prepend = s.program.path_dirs;
  for (const auto& e : req.policy.env) {
    if (s.proxy->secret_env_sources().count(e.value) != 0) {
      base::log::warn(
          "--env {}{}: it holds the real value of a credential; the box gets its "
          "placeholder instead",
          e.value, from_text(e.origin));
      continue;
    }
    ein.pass.push_back(e.value);
  }
  for (const auto& [name, value] : req.policy.setenv) {
    ein.set.emplace_back(name, expand_home(value.value, s.user.home));  // CLAUDE_CONFIG_DIR=~/x
  }
  // Last, so they win over a pass-through or setenv of the same name.
  for (auto& kv : s.proxy->box_env()) {
    ein.set.push_back(std::move(kv));
  }
  s.launch.env = sb::build_environment(ein);
  s.launch.argv = req.command;
  s.launch.cwd = sb::box_cwd(s.cwd, s.workspace);
  s.launch.hostname = hostname;
  for (const auto& [name, limit] :
       {std::pair{"max_inotify_instances", &pol.limits.inotify_instances},
        std::pair{"max_inotify_watches", &pol.limits.inotify_watches}}) {
    if (auto v = config::imposed(*limit)) {
      s.launch.userns_limits.emplace_back(name, *v);
    }
  }
  s.launch.uid = s.user.uid;
  s.launch.gid = s.user.gid;
  s.launch.pty = tty;
  if (tty) {
    struct termios t {};
    if (::tcgetattr(STDIN_FILENO, &t) == 0) {
      s.launch.termios = t;
    }
    struct winsize w {};
    if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &w) == 0) {
      s.launch.winsize = w;
    }
  }

  ConfineInputs ci{.session_id = s.id,
                   .workspace = s.workspace,
                   .home = s.user.home,
                   .mount_sys = req.policy.mount_sys.value,
                   .limits = req.policy.limits};
  for (const auto& g : s.grants) {
    (g.writable ? ci.rw : ci.ro).push_back(g.path);
  }
  for (const auto& rel : s.protect.paths) {
    ci.protected_abs.push_back(fmt::format("{}/{}", s.workspace, rel));
  }
  for (const auto& rel : s.git_protect.paths) {
    ci.protected_abs.push_back(fmt::format("{}/{}", s.git.common_dir(), rel));
  }
  ci.seccomp_allow = req.policy.seccomp_allow;
  ci.exec_rules = req.policy.exec_rules;
  ci.exec_log = req.policy.exec_log.value;
  ci.command = req.command;
  auto confinement = SessionConfinement::create(ci, *s.sink);
  if (!confinement) {
    return std::move(confinement).error().context("preparing the confinement");
  }
  s.confinement = std::move(*confinement);
  s.launch.confinement = s.confinement.get();
  s.launch.keep_fds = s.confinement->child_fds();
  s.launch.exit_report_fd = s.confinement->exit_report_fd();
  s.launch.autogroup_nice = s.confinement->autogroup_nice();
  base::startup_trace::stamp("prep.confine");
  if (req.policy.network_none.value) {
    if (!req.policy.host_ports.empty() || !req.policy.publish.empty()) {
      const auto& first =
          req.policy.host_ports.empty() ? req.policy.publish[0] : req.policy.host_ports[0];
      return Error::msg(
          fmt::format("{} `{}`: host services need the filtered network, not "
                      "network mode `none`",
                      first.origin.describe(), first.value));
    }
    return s;  // the box's own network namespace with only `lo`: no tap, no stack
  }
  auto network = SessionNetwork::create(req.policy, s.user.gid, *s.sink);
  if (!network) {
    return std::move(network).error().context("preparing the network");
  }
  s.network = std::move(*network);
  s.network->use_handler_factory(
      [proxy = s.proxy.get()](event::Loop& loop, const policy::EgressPolicy& policy,
                              const std::vector<net::ConnectTo>& overrides) {
        return proxy->make_handler(loop, policy, overrides);
      });
  s.launch.network = s.network->box_hook();
  s.launch.socket_factory = s.network->needs_socket_factory();
  return s;
}

bool exec_asks(const config::Policy& p) {
  return std::any_of(p.exec_rules.begin(), p.exec_rules.end(),
                     [](const policy::ExecRule& r) { return r.action == policy::ExecAction::ask; });
}

std::vector<std::pair<std::string, std::string>> label_pairs(const config::Policy& p) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, v] : p.labels) {
    out.emplace_back(k, v.value);
  }
  return out;
}

void log_start(Session& s, const RunRequest& req) {
  std::vector<std::string> ro;
  std::vector<std::string> rw;
  for (const auto& g : s.grants) {
    (g.writable ? rw : ro).push_back(g.path);
  }
  audit::Event ev("session.start");
  ev.strs("argv", req.command)
      .str("workspace", s.workspace)
      .str("cwd", s.launch.cwd)
      .strs("ro", ro)
      .strs("rw", rw)
      .strs("protected", s.protect.paths)
      .strs("program", describe(s.program))
      .strs("config", req.config_files)
      .boolean("tty", s.launch.pty)
      .num("uid", s.user.uid)
      .str("profile", req.policy.state_scope);
  for (const auto& [k, v] : req.policy.labels) {
    ev.str("label." + k, v.value);  // keys are [a-z0-9_.-] (config::label_problem)
  }
  s.sink->emit(ev);
}

// The supervisor's part once the box runs: relay, signals, timeout, reap.
struct Outcome {
  int code = 125;
  std::string reason;
  std::string terminal;  // what the terminal filter dropped, for the summary
};

// A pidfd of the process that started agentbox (invalid when there is none to watch): when it
// ends, the box ends too, as bubblewrap's --die-with-parent. A pidfd rather than
// PR_SET_PDEATHSIG, which fires when the parent *thread* that forked us exits (a worker thread of
// a CI runner or a Python pool), not the parent process.
base::UniqueFd watch_parent(const config::Policy& policy) {
  if (!policy.die_with_parent.value) {
    return {};
  }
  pid_t parent = ::getppid();
  base::UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, parent, 0)));
  if (!fd || ::getppid() != parent) {  // gone already: we were reparented before the open
    base::log::debug("parent {} not watched: {}", parent, fd ? "already gone" : "pidfd_open");
    return {};
  }
  return fd;
}

Outcome supervise(sb::Box& box, event::Loop& loop, const RunRequest& req, event::WatchId& signals,
                  audit::Sink& sink, int parent) {
  int exit_code = 125;
  std::unique_ptr<RawMode> raw;
  std::unique_ptr<PtyRelay> relay;
  base::UniqueFd master = box.take_pty_master();
  if (master) {
    raw = std::make_unique<RawMode>(STDIN_FILENO);
    relay = std::make_unique<PtyRelay>(loop, STDIN_FILENO, STDOUT_FILENO, master.get(),
                                       terminal_filter_options(req.policy));
    if (auto r = relay->start(); !r) {
      base::log::warn("terminal relay: {}", r.error().message());
    }
  }
  event::WatchId kill_timer = 0;
  auto arm_kill = [&] {
    if (kill_timer != 0) {
      return;
    }
    auto t = loop.add_timer(std::chrono::seconds(3), std::chrono::milliseconds(0),
                            [&](uint64_t) { [[maybe_unused]] auto r = box.signal(SIGKILL); });
    kill_timer = t ? *t : 0;
  };
  std::string ended_by = "exit";
  loop.unwatch(signals);
  auto sig = loop.watch_signals({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2},
                                [&](const signalfd_siginfo& si) {
                                  int n = static_cast<int>(si.ssi_signo);
                                  if (n == SIGWINCH) {
                                    if (relay) {
                                      relay->resize();
                                    }
                                    return;
                                  }
                                  [[maybe_unused]] auto r = box.signal(n);
                                  if (n == SIGTERM || n == SIGHUP) {
                                    ended_by = n == SIGTERM ? "SIGTERM" : "SIGHUP";
                                    arm_kill();
                                  }
                                });
  if (sig) {
    signals = *sig;
  }
  event::WatchId parent_watch = 0;
  if (parent >= 0) {
    auto w = loop.watch_fd(parent, EPOLLIN, [&](uint32_t) {
      base::log::info("the process that started agentbox has ended: stopping the box");
      ended_by = "parent ended";
      [[maybe_unused]] auto r = box.signal(SIGTERM);
      arm_kill();
      loop.unwatch(parent_watch);
    });
    parent_watch = w ? *w : 0;
  }
  if (auto& t = req.policy.limits.timeout_seconds) {
    [[maybe_unused]] auto timer =
        loop.add_timer(std::chrono::seconds(t->value), std::chrono::milliseconds(0), [&](uint64_t) {
          base::log::info("timeout of {}s reached ({}): stopping the box", t->value,
                          origin_text(t->origin));
          ended_by = "timeout";
          [[maybe_unused]] auto r = box.signal(SIGTERM);
          arm_kill();
        });
  }
  [[maybe_unused]] auto child = loop.watch_child(box.pidfd(), [&] {
    auto r = box.reap(true);
    exit_code = r && r->has_value() ? **r : 125;
    if (relay) {
      relay->drain();
    }
    loop.stop();
  });
  if (auto r = loop.run(); !r) {
    base::log::warn("event loop: {}", r.error().message());
  }
  if (!box.reaped()) {
    [[maybe_unused]] auto k = box.signal(SIGKILL);
    auto r = box.reap(true);
    exit_code = r && r->has_value() ? **r : 125;
  }
  std::string terminal = relay ? relay->report(sink) : std::string();
  relay.reset();
  raw.reset();  // the user's terminal is cooked again before anything else is printed
  return {exit_code, ended_by, std::move(terminal)};
}

// The supervisor holds the real secrets and the session CA key from prepare() on: no core file
// of it (RLIMIT_CORE 0, inherited by the `cmd:` credential helpers it starts, which print
// secrets) and no ptrace or /proc/PID/mem by other processes of your uid (not dumpable; this
// also makes /proc/PID of the supervisor root's, see launcher.cpp's write_own_maps). The hard
// limit is left alone: the box's programs get RLIMIT_CORE 0 from their own confinement.
void keep_out_of_dumps() {
  if (::prctl(PR_SET_DUMPABLE, 0) != 0) {
    base::log::warn("prctl PR_SET_DUMPABLE 0: {}", std::strerror(errno));
  }
  struct rlimit core {};
  if (::getrlimit(RLIMIT_CORE, &core) == 0) {
    core.rlim_cur = 0;
    ::setrlimit(RLIMIT_CORE, &core);
  }
}

// One line each for lines the audit log lost (issue 14): never only the path of a log that is
// silently incomplete.
std::vector<std::string> audit_losses(const audit::Losses& l, const std::string& path,
                                      const config::AuditSettings& as) {
  std::vector<std::string> out;
  if (l.failed_lines != 0 || l.first_errno != 0) {
    out.push_back(
        fmt::format("the audit log lost {} line{}: write `{}`: {} ({})", l.failed_lines,
                    l.failed_lines == 1 ? "" : "s", path, std::strerror(l.first_errno),
                    strerrorname_np(l.first_errno) ? strerrorname_np(l.first_errno) : "?"));
  }
  if (l.truncated_lines != 0) {
    out.push_back(fmt::format(
        "the audit log reached its size cap of {} bytes (audit.max_size, {}): {} later line{} "
        "dropped",
        as.max_size.value, origin_text(as.max_size.origin), l.truncated_lines,
        l.truncated_lines == 1 ? " was" : "s were"));
  }
  return out;
}

}  // namespace

int run(const RunRequest& req) {
  base::startup_trace::stamp("run");
  keep_out_of_dumps();
  auto t0 = std::chrono::steady_clock::now();
  // fds 0-2 must be open: otherwise the next socket or pipe would land there and reach the box
  // as its stdin/stdout/stderr.
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int n = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);  // NOLINT: lands on fd, kept
      if (n != fd && n >= 0) {
        ::close(n);
      }
    }
  }
  // First: a parent that ends while agentbox prepares is seen once the loop runs.
  base::UniqueFd parent = watch_parent(req.policy);
  auto env = sb::parse_environ(environ);
  if (req.command.empty()) {
    fmt::print(stderr, "{}",
               Error::msg("no command given: agentbox run [options] -- CMD ARGS...").render());
    return 125;
  }
  auto prepared = prepare(req, env);
  if (!prepared) {
    fmt::print(stderr, "{}", prepared.error().render());
    return 125;
  }
  Session& s = *prepared;
  base::startup_trace::stamp("prepared");
  log_start(s, req);
  const bool audit_required = req.policy.audit.required.value;
  if (audit_required && s.sink->losses().lost()) {
    for (const auto& line : audit_losses(s.sink->losses(), s.sink->path(), req.policy.audit)) {
      fmt::print(stderr, "{}",
                 Error::msg(line).hint("audit.required is set: the box did not start").render());
    }
    return 125;
  }
  base::log::debug("workspace {}, cwd {}, {} mount operations, session {}", s.workspace,
                   s.launch.cwd, s.launch.mounts.size(), s.id);

  auto loop = event::Loop::create();
  if (!loop) {
    fmt::print(stderr, "{}", loop.error().render());
    return 125;
  }
  // Block the signals before the clone so none is lost while the box starts.
  auto signals = loop->watch_signals({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2},
                                     [](const signalfd_siginfo&) {});
  if (!signals) {
    fmt::print(stderr, "{}", signals.error().render());
    return 125;
  }
  event::WatchId sig_watch = *signals;
  // Audit lines emitted during one loop iteration go out in one write at its end (a short
  // connection's net.connect, proxy.open and net.close: three writes before); the sink writes
  // what it holds on exit paths and fatal signals too (audit.hpp).
  loop->set_dispatch_hooks([&s] { s.sink->hold(); }, [&s] { s.sink->release(); });

  sb::LaunchFailure failure;
  auto box = sb::Box::start(s.launch, &failure);
  base::startup_trace::stamp("started");
  const bool started = box.has_value();
  int code;
  std::string reason;
  std::string error;
  bool net_failed = false;
  std::string terminal;
  if (!box) {
    Error err = std::move(box).error();
    bool userns =
        failure.stage == sb::SetupStage::kNone || failure.stage == sb::SetupStage::kUidMap ||
        failure.stage == sb::SetupStage::kGidMap || failure.stage == sb::SetupStage::kSetgroups;
    std::string nested =
        ((userns || failure.stage == sb::SetupStage::kMountOp) && failure.err == EPERM) ||
                (failure.stage == sb::SetupStage::kUserLimits && failure.err == EROFS)
            ? nested_box_hint()
            : "";
    if (!nested.empty()) {
      err.hint(nested);
    } else if (userns && (failure.err == EPERM || failure.err == EACCES || failure.err == ENOSPC ||
                          failure.err == EINVAL)) {
      err.hint(userns_hint(failure.err) + "; `agentbox doctor` checks this machine");
    } else if (failure.stage == sb::SetupStage::kUserLimits && failure.err == EROFS) {
      err.hint(proc_fix() + "; `agentbox doctor` checks this machine");
    } else if (failure.stage == sb::SetupStage::kHostname && failure.err == EPERM) {
      err.hint(hostname_fix() + "; `agentbox doctor` checks this machine");
    } else if (failure.stage == sb::SetupStage::kTunOpen) {
      err.hint(tun_fix(failure.err) + "; `agentbox doctor` checks this machine");
    } else if (failure.stage == sb::SetupStage::kTapCreate) {
      err.hint(
          "the kernel refused a tap device in the box's own network namespace (a security "
          "module or a container policy?); `agentbox doctor` checks /dev/net/tun");
    } else if (failure.stage == sb::SetupStage::kExec && failure.err == ENOENT) {
      err.hint(req.command[0].find('/') == std::string::npos
                   ? "the box's PATH is " + std::string(sb::kDefaultPath) +
                         "; show more with `--ro DIR` or set PATH with `--env PATH=...`"
                   : "the box shows system directories, the workspace and what --ro/--rw grant");
    }
    if (std::string h = s.review ? review_mount_hint(s.launch.mounts, failure) : ""; !h.empty()) {
      err.hint(h);
    }
    fmt::print(stderr, "{}", err.render());
    code = sb::launch_exit_code(failure);
    reason = failure.stage == sb::SetupStage::kExec ? "exec failed" : "setup failed";
    error = err.message();
  } else {
    base::log::debug("box started in {} us", std::chrono::duration_cast<std::chrono::microseconds>(
                                                 std::chrono::steady_clock::now() - t0)
                                                 .count());
    s.confinement->started(*loop, box->pid());
    s.telemetry->started();
    if (audit_required) {  // fail closed: a lost line stops the box (pidfd: any thread may call)
      s.sink->on_loss([&box] { [[maybe_unused]] auto k = box->signal(SIGKILL); });
    }
    auto control =
        SessionControl::start(*loop,
                              {.id = s.id,
                               .argv = req.command,
                               .workspace = s.workspace,
                               .config_files = req.config_files,
                               .profile = req.policy.state_scope,
                               .labels = label_pairs(req.policy),
                               .session_dir = s.dir,
                               .pid = box->pid(),
                               .signal = [&box](int n) { return box->signal(n); },
                               .ask_timeout = std::chrono::seconds(req.policy.ask_timeout.value),
                               .exec_asks = exec_asks(req.policy),
                               .learn = req.policy.learn.value},
                              env, *s.sink, s.network.get(), *s.proxy);
    if (control) {
      base::log::debug("session {}: control socket {}", short_id(s.id), (*control)->socket_path());
      // Before the loop first runs: no exec notification is read before this.
      s.confinement->use_approver((*control)->approver());
    } else {
      base::log::warn("no control socket: {}", control.error().message());
    }
    // After the control socket: the network's first DNS question may already need its queue.
    if (auto r = s.network ? s.network->start(box->take_tap(), *loop, box->take_network_extra(),
                                              box->take_socket_factory())
                           : base::Status{};
        !r) {
      Error e = std::move(r).error().context("starting the network");
      fmt::print(stderr, "{}", e.render());
      error = e.message();
      [[maybe_unused]] auto k = box->signal(SIGKILL);
      net_failed = true;
    }
    Outcome out = supervise(*box, *loop, req, sig_watch, *s.sink, parent.get());
    base::startup_trace::stamp("reaped");
    s.confinement->use_approver(nullptr);  // the queue goes with `control`
    s.sink->on_loss({});
    code = out.code;
    reason = out.reason;
    terminal = std::move(out.terminal);
    if (reason == "timeout") {
      code = 124;  // as timeout(1): the status itself says the time ran out
    }
    if (std::string hit = s.confinement->finished(); !hit.empty()) {
      reason = reason == "timeout" ? reason : hit;
      base::log::info("the box reached its {}", hit);
    }
  }
  // The stack goes before the loop does; its summary comes just before the exit line.
  std::vector<std::string> net_summary =
      s.network ? s.network->finish() : std::vector<std::string>{};
  for (auto& line : s.proxy->finish()) {
    net_summary.push_back(std::move(line));
  }
  if (!terminal.empty()) {
    net_summary.push_back(std::move(terminal));
  }
  s.sink->release();
  for (auto& line : audit::summarize_log(s.sink->path()).render()) {
    net_summary.push_back(std::move(line));  // per host and credential, as `log --summary`
  }
  if (!req.quiet) {
    for (const auto& line : net_summary) {
      base::log::info("{}", line);
    }
  }
  if (net_failed) {
    code = 125;
    reason = "setup failed";
  }
  s.protect.placeholders.remove();
  s.git_protect.placeholders.remove();
  if (!s.persist.paths.empty()) {
    // Again now, so what the box left for its next session is checked before anyone reads it.
    auto removed = sanitize_persist(s.state_dir, s.persist);
    if (removed && !removed->empty()) {
      s.sink->emit(audit::Event("state.sanitize").strs("removed", *removed));
    }
  }
  if (started) {
    s.git.finish(s.id, *s.sink);
  }
  for (const auto& line :
       s.review ? finish_review(*s.review, started, *s.sink) : std::vector<std::string>{}) {
    if (!req.quiet) {
      base::log::info("{}", line);
    }
  }
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  audit::Event end("session.end");
  audit::Losses lost = s.sink->losses();
  if (audit_required && lost.lost() && started) {
    code = 125;
    reason = "audit failed";
  }
  end.num("exit", code).str("reason", reason).num("duration_ms", static_cast<int64_t>(secs * 1000));
  if (!error.empty()) {
    end.str("error", error);
  }
  if (lost.lost()) {
    end.num("audit_lines_lost", static_cast<int64_t>(lost.failed_lines + lost.truncated_lines));
  }
  s.telemetry->report(*s.sink);
  s.sink->final(end);
  for (const auto& line : s.telemetry->finish()) {
    if (!req.quiet) {
      base::log::info("{}", line);
    }
  }
  for (const auto& line : audit_losses(s.sink->losses(), s.sink->path(), req.policy.audit)) {
    if (audit_required) {
      fmt::print(stderr, "{}",
                 Error::msg(line)
                     .hint("audit.required is set: the session ended with status 125")
                     .render());
    } else {
      base::log::warn("{}", line);
    }
  }
  if (!req.quiet) {
    std::string what =
        !started                   ? fmt::format("did not run (status {})", code)
        : reason == "timeout"      ? "was stopped by --timeout (status 124)"
        : reason == "audit failed" ? "was stopped: its audit log could not be written (status 125)"
        : s.confinement->program_exited() ? fmt::format("exited with status {}", code)
                                          : describe_exit(code);
    // The head, kept on the user's terminal, is what shows a log cut at its end or rewritten whole.
    base::log::info("audit chain head {} (`agentbox log --verify --head HEAD {}` checks the log)",
                    s.sink->chain_head(), short_id(s.id));
    base::log::info("`{}` {} after {:.1f}s; session {}; audit log: {}/audit.jsonl", req.command[0],
                    what, secs, short_id(s.id), s.dir);
  }
  base::startup_trace::stamp("end");
  return code;
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
