// The attack suite: one named test per escape, exfiltration, persistence, terminal or DoS attempt,
// run by the real agentbox as root and as an unprivileged user. Each asserts three things:
//   1. the block: what the attack saw inside the box (agentbox-attack prints "<name> <result>");
//   2. the ground truth outside: the host file unchanged, the sentinel alive, nothing left behind;
//   3. a control: the same attack run without the box (directly, or in `unshare -Urmn` for the
//      privileged ones so the host is never touched) gets through, so the test can fail.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <linux/landlock.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "../integration/harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;

enum class Control {
  kDirect,  // the attack binary as the same user, outside any box
  kUserns,  // in `unshare -Urmn --fork` (root of a throwaway namespace; the host is untouched)
  kRoot,    // directly as root, for both variants (an unprivileged user is refused by the kernel)
};

struct Fixture;

struct Attack {
  const char* name;
  const char* category;
  std::function<Args(Fixture&)> args;  // attack name and arguments
  std::set<std::string> blocked;       // results that mean "blocked" inside the box; empty: any
  Control control;
  // Ground truth after the box run: "" when the host is intact, else what went wrong.
  std::function<std::string(Fixture&)> truth = nullptr;
  const char* audit_syscall = nullptr;              // expect a seccomp.deny event for it
  std::function<void(Fixture&)> restore = nullptr;  // undoes what the control did to the host
  // Extra environment of `agentbox run` (AGENTBOX_UNSAFE_BENCH_UNCONFINED=1 tests one layer alone,
  // with the test-only build agentbox-unconfined).
  std::map<std::string, std::string> box_env = {};
  // When not empty: the results that mean "blocked" for the root variant (stricter than `blocked`,
  // e.g. EROFS only, where the user variant is refused by file permissions first).
  std::set<std::string> blocked_as_root = {};
  Args box_flags = {};  // extra `agentbox run` flags (limits)
  // The exit summary must contain this, as root (cgroup here) and as a user (rlimits only).
  const char* summary = nullptr;
  // ... and the audit log's "limits" event list this in "hit" ("timeout": session.end's reason).
  const char* audit_hit = nullptr;
  const char* config = nullptr;  // the user's config.toml for the run (XDG_CONFIG_HOME)
  // What the control (without the box) must print: the attack got through. "ok" unless the
  // attack passes the kernel's permission check on purpose and then fails on a harmless argument.
  std::set<std::string> control_gets = {"ok"};
  // Control results that mean this kernel has no such attack surface (a foreign ABI compiled out,
  // no virtual console), with the reason: the attack is then reported not applicable.
  std::map<std::string, std::string> not_applicable = {};
  // The control's arguments when they differ from the box's (a host device the box cannot see).
  std::function<Args(Fixture&)> control_args = nullptr;
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Per-test world and the bait the attacks go for.
struct Fixture {
  World w;
  std::string attack_bin;
  std::string secret_dir;  // a sibling of the workspace
  std::string host_tmp;    // a file in the host's /tmp
  std::string unix_path;   // a listening unix socket (like SSH_AUTH_SOCK)
  std::string abstract_name;
  int unix_fd = -1, abstract_fd = -1, tcp_fd = -1;
  int tcp_port = 0;
  pid_t sentinel = -1;                        // a process of the same user outside the box
  std::string marker;                         // unique string for processes the box leaves behind
  std::map<std::string, std::string> before;  // host files as they were before the attack

  std::string home(const std::string& rel) const { return w.as.home + "/" + rel; }
  std::string ws(const std::string& rel) const { return w.ws + "/" + rel; }

  void plant_home(const std::string& rel, const std::string& data) {
    std::filesystem::create_directories(std::filesystem::path(home(rel)).parent_path());
    write_file(home(rel), data, 0600);
    chown_tree(w.as.home, w.as.uid, w.as.gid);
  }
};

// The "hit" list of the audit log's "limits" event ({} without one).
std::set<std::string> limits_hit(const std::string& log) {
  std::set<std::string> out;
  size_t at = log.find(R"("type":"limits")");
  size_t hit = at == std::string::npos ? at : log.find(R"("hit":[)", at);
  size_t end = hit == std::string::npos ? hit : log.find(']', hit);
  if (end == std::string::npos) {
    return out;
  }
  std::string list = log.substr(hit + 7, end - hit - 7);
  for (size_t q = list.find('"'); q != std::string::npos; q = list.find('"', q)) {
    size_t close = list.find('"', q + 1);
    out.insert(list.substr(q + 1, close - q - 1));
    q = close + 1;
  }
  return out;
}

std::string unchanged(const std::string& path, const std::string& before) {
  std::string now = exists(path) ? slurp(path) : "<missing>";
  return now == before ? "" : fmt::format("{} changed on the host: `{}`", path, now);
}
std::string absent(const std::string& path) {
  return exists(path) ? path + " was created on the host" : "";
}

int perf_event_paranoid() {
  std::string v = slurp("/proc/sys/kernel/perf_event_paranoid");
  return v.empty() ? 3 : std::stoi(v);
}

std::vector<Attack> make_attacks() {
  std::vector<Attack> v;
  auto secret = [&](const char* name, const char* rel) {
    v.push_back({name,
                 "secret",
                 [rel](Fixture& f) {
                   f.plant_home(rel, "TOP-SECRET\n");
                   return Args{"read", f.home(rel)};
                 },
                 {"ENOENT"},
                 Control::kDirect});
  };
  secret("read_ssh_private_key", ".ssh/id_ed25519");
  secret("read_aws_credentials", ".aws/credentials");
  secret("read_gnupg_private_key", ".gnupg/private-keys-v1.d/key.key");
  secret("read_shell_history", ".bash_history");
  secret("read_netrc", ".netrc");
  secret("read_docker_config", ".docker/config.json");
  secret("read_kube_config", ".kube/config");
  secret("read_gh_token", ".config/gh/hosts.yml");
  secret("read_git_credentials", ".git-credentials");
  secret("read_npmrc_token", ".npmrc");
  v.push_back({"read_sibling_project",
               "secret",
               [](Fixture& f) {
                 return Args{"read", f.secret_dir + "/.env"};
               },
               {"ENOENT"},
               Control::kDirect});
  v.push_back({"read_host_tmp",
               "secret",
               [](Fixture& f) {
                 return Args{"read", f.host_tmp};
               },
               {"ENOENT"},
               Control::kDirect});
  v.push_back({"read_etc_shadow",
               "secret",
               [](Fixture&) {
                 return Args{"read", "/etc/shadow"};
               },
               {"ENOENT"},
               Control::kRoot});
  // /proc/1/root and /proc/self/root in the box are the box's own root (init pivoted and
  // detached the host tree): a host path through them does not exist. Outside, they reach it.
  v.push_back({"proc_root_trick",
               "secret",
               [](Fixture& f) {
                 return Args{"read_via_proc_root", f.secret_dir + "/.env"};
               },
               {"ENOENT", "EACCES"},
               Control::kDirect});
  v.push_back({"env_secret_not_inherited",
               "secret",
               [](Fixture&) {
                 return Args{"env_has", "AWS_SECRET_ACCESS_KEY"};
               },
               {"ENOENT"},
               Control::kDirect});
  v.push_back({"ssh_agent_socket",
               "secret",
               [](Fixture& f) {
                 return Args{"connect_unix", f.unix_path};
               },
               {"ENOENT", "ECONNREFUSED", "EACCES"},
               Control::kDirect});
  v.push_back({"abstract_socket_on_host",
               "secret",
               [](Fixture& f) {
                 return Args{"connect_abstract", f.abstract_name};
               },
               {"ECONNREFUSED", "EPERM"},
               Control::kDirect});
  v.push_back({"host_loopback_service",
               "secret",
               [](Fixture& f) {
                 return Args{"connect_tcp", "127.0.0.1", std::to_string(f.tcp_port)};
               },
               {"ECONNREFUSED", "ENETUNREACH", "EPERM"},
               Control::kDirect});
  v.push_back({"proc_of_sentinel",
               "secret",
               [](Fixture& f) {
                 return Args{"read", fmt::format("/proc/{}/environ", f.sentinel)};
               },
               {"ENOENT"},
               Control::kDirect});
  v.push_back({"file_handle_shocker",
               "secret",
               [](Fixture& f) {
                 return Args{"name_to_handle", f.ws(".git/HEAD")};
               },
               {"EPERM"},
               Control::kDirect,
               nullptr,
               "name_to_handle_at"});
  v.push_back({"host_device_visible",
               "secret",
               [](Fixture&) {
                 return Args{"stat", "/dev/kmsg"};
               },
               {"ENOENT"},
               Control::kDirect});
  // euid 0 without capabilities still passes the DAC check of /proc/sys (owner root): only
  // Landlock (/proc read-only) or a read-only /proc/sys mount stops the root variant.
  v.push_back({"write_global_sysctl",
               "escape",
               [](Fixture&) {
                 return Args{"write_same", "/proc/sys/kernel/printk_ratelimit"};
               },
               {"EACCES", "EROFS", "EPERM"},
               Control::kRoot});

  // The same write with seccomp and Landlock off: the mount layer alone (a read-only bind of the
  // box's /proc/sys) must stop it, as on a kernel without Landlock.
  v.push_back({"write_global_sysctl_mount_layer_only",
               "escape",
               [](Fixture&) {
                 return Args{"write_same", "/proc/sys/kernel/printk_ratelimit"};
               },
               {"EROFS", "EACCES"},
               Control::kRoot,
               nullptr,
               nullptr,
               nullptr,
               {{"AGENTBOX_UNSAFE_BENCH_UNCONFINED", "1"}},
               {"EROFS"}});
  v.push_back({"core_pattern_mount_layer_only",
               "escape",
               [](Fixture&) {
                 // Opened for writing and closed: nothing is ever written (the control runs on the
                 // host as root). kernel.core_pattern = code execution as host root.
                 return Args{"open_wronly", "/proc/sys/kernel/core_pattern"};
               },
               {"EROFS", "EACCES"},
               Control::kRoot,
               nullptr,
               nullptr,
               nullptr,
               {{"AGENTBOX_UNSAFE_BENCH_UNCONFINED", "1"}},
               {"EROFS"}});

  // Escape: namespaces, mounts, kernel interfaces.
  auto sys = [&](const char* name, Args a, std::set<std::string> blocked, Control c,
                 const char* audit) {
    v.push_back(
        {name, "escape", [a](Fixture&) { return a; }, std::move(blocked), c, nullptr, audit});
  };
  sys("unshare_user_namespace", {"unshare_user"}, {"EPERM"}, Control::kDirect, "unshare");
  v.push_back({"userns_via_copied_binary",
               "escape",
               [](Fixture& f) {
                 return Args{"userns_copy", f.w.as.home + "/agentbox-attack-copy-" + f.marker};
               },
               {"EPERM"},
               Control::kDirect,
               nullptr,
               "unshare"});
  sys("unshare_network_namespace", {"unshare_net"}, {"EPERM"}, Control::kDirect, "unshare");
  sys("clone_new_user_namespace", {"clone_newuser"}, {"EPERM"}, Control::kDirect, "clone");
  sys("clone3_new_user_namespace", {"clone3"}, {"ENOSYS"}, Control::kDirect, nullptr);
  sys("userns_then_mount", {"userns_mount", "/tmp"}, {"EPERM"}, Control::kDirect, "unshare");
  sys("mount_tmpfs", {"mount_tmpfs", "/tmp"}, {"EPERM"}, Control::kUserns, "mount");
  sys("fsopen_new_mount_api", {"fsopen"}, {"EPERM"}, Control::kUserns, "fsopen");
  sys("open_tree_clone", {"open_tree", "/tmp"}, {"EPERM"}, Control::kUserns, "open_tree");
  sys("open_tree_attr_clone", {"open_tree_attr", "/tmp"}, {"EPERM"}, Control::kUserns,
      "open_tree_attr");
  sys("chroot", {"chroot", "/tmp"}, {"EPERM"}, Control::kUserns, "chroot");
  sys("setns_network", {"setns_self_net"}, {"EPERM"}, Control::kUserns, "setns");
  sys("ptrace_attach", {"ptrace_child"}, {"EPERM"}, Control::kDirect, "ptrace");
  sys("process_vm_readv", {"vm_read_child"}, {"EPERM"}, Control::kDirect, "process_vm_readv");
  sys("pidfd_getfd_steal", {"pidfd_getfd_child"}, {"EPERM"}, Control::kDirect, "pidfd_getfd");
  sys("io_uring_bypass", {"io_uring"}, {"EPERM"}, Control::kDirect, "io_uring_setup");
  sys("userfaultfd_race", {"userfaultfd"}, {"EPERM"}, Control::kDirect, "userfaultfd");
  sys("keyring_add_key", {"add_key"}, {"EPERM"}, Control::kDirect, "add_key");
  sys("keyring_join_session", {"keyctl_join"}, {"EPERM"}, Control::kDirect, "keyctl");
  // With perf_event_paranoid >= 3 (Debian's own kernels) the kernel refuses any unprivileged
  // perf_event_open: the control then opens the same software event as root.
  sys("perf_event_open", {"perf_self"}, {"EPERM"},
      perf_event_paranoid() >= 3 ? Control::kRoot : Control::kDirect, "perf_event_open");
  sys("bpf_map_create", {"bpf_map"}, {"EPERM"}, Control::kRoot, "bpf");
  sys("raw_socket", {"raw_socket"}, {"EPERM"}, Control::kUserns, "socket");
  sys("packet_socket", {"packet_socket"}, {"EPERM"}, Control::kUserns, "socket");
  sys("netlink_audit_socket", {"netlink_audit"}, {"EPERM"}, Control::kDirect, "socket");
  sys("af_alg_socket", {"af_alg"}, {"EPERM"}, Control::kDirect, "socket");
  v.back().not_applicable = {
      {"EAFNOSUPPORT", "the kernel has no AF_ALG sockets (CONFIG_CRYPTO_USER_API unset)"}};
  sys("personality_disable_aslr", {"personality_aslr"}, {"EPERM"}, Control::kDirect, "personality");
  sys("init_module", {"init_module"}, {"EPERM"}, Control::kRoot, "init_module");
  // An empty image: past CAP_SYS_MODULE the loader refuses it (ENOEXEC), nothing is loaded.
  v.back().control_gets = {"ENOEXEC"};
  v.back().not_applicable = {
      {"ENOSYS",
       "the kernel has no loadable modules (CONFIG_MODULES unset): init_module is ENOSYS"}};
  sys("reboot", {"reboot_probe"}, {"EPERM"}, Control::kRoot, "reboot");
  // No magic numbers: past CAP_SYS_BOOT the kernel answers EINVAL and does nothing.
  v.back().control_gets = {"EINVAL"};
  sys("int80_i386_abi", {"int80"}, {"SIGSYS"}, Control::kDirect, nullptr);
  v.back().not_applicable = {
      {"SIGSEGV",
       "no i386 syscall entry (IA32 emulation off, or the hypervisor's): int 0x80 "
       "faults outside the box too"},
      {"ENOSYS", "no i386 syscalls on this kernel: int 0x80 is ENOSYS outside the box too"}};
  sys("x32_abi", {"x32"}, {"SIGSYS"}, Control::kDirect, nullptr);
  v.back().not_applicable = {
      {"ENOSYS", "the kernel has no x32 ABI (CONFIG_X86_X32_ABI unset): x32 calls are ENOSYS"}};
  sys("capabilities_held", {"has_caps"}, {"EPERM"}, Control::kUserns, nullptr);
  sys("no_new_privs_off", {"regain_privs"}, {"EPERM"}, Control::kDirect, nullptr);
  v.push_back({"kill_sentinel_outside",
               "escape",
               [](Fixture& f) {
                 return Args{"kill", std::to_string(f.sentinel)};
               },
               {"ESRCH"},
               Control::kDirect,
               [](Fixture& f) {
                 return ::kill(f.sentinel, 0) == 0 ? "" : "the sentinel outside was killed";
               }});

  // Persistence: everything that would run later, outside the box.
  auto persist = [&](const char* name, std::function<std::string(Fixture&)> target,
                     std::set<std::string> blocked) {
    v.push_back({name, "persistence",
                 [target](Fixture& f) {
                   std::string p = target(f);
                   f.before[p] = exists(p) ? slurp(p) : "<missing>";
                   return Args{"write", p};
                 },
                 std::move(blocked), Control::kDirect,
                 [target](Fixture& f) {
                   std::string p = target(f);
                   return unchanged(p, f.before[p]);
                 },
                 nullptr,
                 [target](Fixture& f) {
                   std::string p = target(f);
                   if (f.before[p] == "<missing>") {
                     ::unlink(p.c_str());
                   } else {
                     write_file(p, f.before[p]);
                   }
                 }});
  };
  persist("git_hook_pre_commit", [](Fixture& f) { return f.ws(".git/hooks/pre-commit"); },
          {"EROFS", "EACCES"});
  persist("git_hook_post_checkout", [](Fixture& f) { return f.ws(".git/hooks/post-checkout"); },
          {"EROFS", "EACCES"});
  persist("git_config_core_hookspath", [](Fixture& f) { return f.ws(".git/config"); },
          {"EROFS", "EACCES"});
  persist("gitmodules", [](Fixture& f) { return f.ws(".gitmodules"); }, {"EROFS", "EACCES"});
  // IDE configs that run tasks outside the box (the folders exist, so the control can write).
  auto ide = [](const char* dir, const char* file) {
    return [dir, file](Fixture& f) {
      std::filesystem::create_directories(f.ws(dir));
      chown_tree(f.ws(dir), f.w.as.uid, f.w.as.gid);
      return f.ws(std::string(dir) + "/" + file);
    };
  };
  persist("vscode_tasks", ide(".vscode", "tasks.json"), {"EROFS", "EACCES"});
  persist("idea_workspace", ide(".idea", "workspace.xml"), {"EROFS", "EACCES"});
  persist("direnv_envrc", [](Fixture& f) { return f.ws(".envrc"); }, {"EROFS", "EACCES", "EISDIR"});
  persist("bashrc_in_home", [](Fixture& f) { return f.home(".bashrc"); }, {});
  persist("profile_in_home", [](Fixture& f) { return f.home(".profile"); }, {});
  persist("ssh_authorized_keys", [](Fixture& f) { return f.home(".ssh/authorized_keys"); }, {});
  persist("systemd_user_unit", [](Fixture& f) { return f.home(".config/systemd/user/x.service"); },
          {});
  persist("autostart_desktop_entry",
          [](Fixture& f) { return f.home(".config/autostart/x.desktop"); }, {});
  persist("file_next_to_workspace", [](Fixture& f) { return f.w.root + "/dropped.sh"; }, {});
  v.push_back(
      {"replace_git_hooks_dir",
       "persistence",
       [](Fixture& f) {
         return Args{"rename", f.ws(".git/hooks"), f.ws(".git/hooks.old")};
       },
       {"EBUSY", "EROFS", "EACCES", "EXDEV"},
       Control::kDirect,
       [](Fixture& f) { return absent(f.ws(".git/hooks.old")); },
       nullptr,
       [](Fixture& f) { ::rename(f.ws(".git/hooks.old").c_str(), f.ws(".git/hooks").c_str()); }});
  // The parent of protected paths moved aside, to create a fresh .git/hooks where it was: the
  // parents are pinned (a mountpoint cannot be renamed).
  v.push_back({"protected_parent_renamed",
               "persistence",
               [](Fixture& f) {
                 return Args{"rename", f.ws(".git"), f.ws(".git.old")};
               },
               {"EBUSY"},
               Control::kDirect,
               [](Fixture& f) { return absent(f.ws(".git.old")); },
               nullptr,
               [](Fixture& f) { ::rename(f.ws(".git.old").c_str(), f.ws(".git").c_str()); }});
  v.push_back({"unlink_git_config",
               "persistence",
               [](Fixture& f) {
                 return Args{"unlink", f.ws(".git/config")};
               },
               {"EBUSY", "EROFS", "EACCES"},
               Control::kDirect,
               [](Fixture& f) { return unchanged(f.ws(".git/config"), "[core]\n"); },
               nullptr,
               [](Fixture& f) { write_file(f.ws(".git/config"), "[core]\n"); }});
  v.push_back(
      {"write_system_binary",
       "persistence",
       // Named per test: the control (as root, on the host) really creates it, and the
       // root and user variants may run at once.
       [](Fixture& f) {
         return Args{"write", "/usr/local/bin/agentbox-pwned-" + f.marker};
       },
       {"EROFS", "EACCES", "ENOENT"},
       Control::kRoot,
       [](Fixture& f) { return absent("/usr/local/bin/agentbox-pwned-" + f.marker); },
       nullptr,
       [](Fixture& f) { ::unlink(("/usr/local/bin/agentbox-pwned-" + f.marker).c_str()); }});
  v.push_back({"core_dump_enabled",
               "persistence",
               [](Fixture&) { return Args{"core_enabled"}; },
               {"EPERM"},
               Control::kDirect});

  // Terminal.
  v.push_back({"tiocsti_own_pty_high_bits",
               "terminal",
               [](Fixture&) { return Args{"tiocsti_own_pty"}; },
               {"EPERM"},
               Control::kDirect,
               nullptr,
               "ioctl"});
  // TIOCLINUX only means something on a virtual console: the control asks the host's current
  // one (/dev/tty0, root's CAP_SYS_ADMIN passes tioclinux()'s own check) for its shift state.
  v.push_back({"tioclinux",
               "terminal",
               [](Fixture&) { return Args{"tioclinux"}; },
               {"EPERM"},
               Control::kRoot,
               nullptr,
               "ioctl"});
  v.back().control_args = [](Fixture&) { return Args{"tioclinux", "/dev/tty0"}; };
  v.back().not_applicable = {
      {"ENOENT", "no virtual console (/dev/tty0) on this machine: TIOCLINUX has no target"},
      {"ENXIO", "no virtual console (/dev/tty0) on this machine: TIOCLINUX has no target"},
      {"ENODEV", "no virtual console (/dev/tty0) on this machine: TIOCLINUX has no target"}};

  // DoS: limits end or fail the attempt inside the box; the host and the supervisor are fine.
  auto host_ok = [](Fixture& f) {
    if (::kill(f.sentinel, 0) != 0) {
      return std::string("the sentinel outside was killed");
    }
    for (int i = 0; i < 50; ++i) {
      if (pids_with_cmdline(f.marker).empty()) {
        return std::string();
      }
      ::usleep(20000);
    }
    return std::string("processes of the attack are still running on the host");
  };
  // Each is held at its limit for a while (HOLD_MS), as a real bomb, leak or filler keeps what
  // it took: without a cgroup the supervisor learns of a limit only by sampling (LimitWatch).
  v.push_back({"fork_bomb",
               "dos",
               [](Fixture& f) {
                 return Args{"fork_bomb", "300", f.marker, "1500"};
               },
               {"EAGAIN"},
               Control::kDirect,
               host_ok,
               nullptr,
               nullptr,
               {},
               {},
               {"--pids", "32"},
               "the box reached its process limit",
               "pids"});
  v.push_back({"memory_balloon",
               "dos",
               [](Fixture& f) {
                 return Args{"balloon", "512", f.marker, "1500"};
               },
               {"ENOMEM", "SIGKILL"},
               Control::kDirect,
               host_ok,
               nullptr,
               nullptr,
               {},
               {},
               {"--memory", "64M"},
               "the box reached its memory limit",
               "memory"});
  // The box's HOME and /tmp are size-limited tmpfs (here 8 MiB from the user's config): a disk
  // filler gets ENOSPC there; the control writes the same 32 MiB to the host and removes it.
  auto fill = [&](const char* name, const char* dir, const char* summary, const char* key) {
    v.push_back({name,
                 "dos",
                 [dir](Fixture& f) {
                   std::string d = std::string(dir) == "HOME" ? f.w.as.home : std::string(dir);
                   return Args{"fill", d + "/agentbox-fill-" + f.marker, "32", "1000"};
                 },
                 {"ENOSPC"},
                 Control::kDirect,
                 [dir](Fixture& f) {
                   std::string d = std::string(dir) == "HOME" ? f.w.as.home : std::string(dir);
                   return absent(d + "/agentbox-fill-" + f.marker);
                 },
                 nullptr,
                 nullptr,
                 {},
                 {},
                 {},
                 summary,
                 key,
                 "[sandbox]\nhome_size = \"8M\"\ntmp_size = \"8M\"\n"});
  };
  fill("disk_filler_home", "HOME", "the box reached its HOME size limit", "home_size");
  fill("disk_filler_tmp", "/tmp", "the box reached its /tmp size limit", "tmp_size");
  // A file in the workspace (the host's disk) grown past limits.file_size: RLIMIT_FSIZE kills the
  // writer with SIGXFSZ, which init reports. The control grows 32 MiB on the host (unlinked).
  v.push_back({"file_size_limit",
               "dos",
               [](Fixture& f) {
                 return Args{"grow", f.ws("agentbox-grow-" + f.marker), "32"};
               },
               {"SIGXFSZ"},
               Control::kDirect,
               [](Fixture& f) { return absent(f.ws("agentbox-grow-" + f.marker)); },
               nullptr,
               nullptr,
               {},
               {},
               {},
               "the box reached its file size limit (RLIMIT_FSIZE 4 MiB",
               "file_size",
               "[limits]\nfile_size = \"4M\"\n"});
  v.push_back({"runs_past_timeout",
               "dos",
               [](Fixture&) { return Args{"sleep"}; },  // 5 s; the box allows 1 s
               {"TIMEOUT"},
               Control::kDirect,
               nullptr,
               nullptr,
               nullptr,
               {},
               {},
               {"--timeout", "1s"},
               "was stopped by --timeout (status 124)",
               "timeout"});

  // DoS: nothing outlives the box.
  v.push_back({"daemon_survives_box",
               "dos",
               [](Fixture& f) {
                 return Args{"daemonize", f.marker};
               },
               {},
               Control::kDirect,
               [](Fixture& f) {
                 for (int i = 0; i < 50; ++i) {  // init's death kills the PID namespace
                   if (pids_with_cmdline(f.marker).empty()) {
                     return std::string();
                   }
                   ::usleep(20000);
                 }
                 return std::string("a process started in the box is still running on the host");
               }});
  return v;
}

const std::vector<Attack>& attacks() {
  static const std::vector<Attack> all = make_attacks();
  return all;
}

int listen_unix(const std::string& name, bool abstract) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  size_t off = abstract ? 1 : 0;
  std::memcpy(a.sun_path + off, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + off + name.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

class AttackTest : public ::testing::TestWithParam<std::tuple<size_t, std::string>> {
 protected:
  void SetUp() override {
    std::string why;
    if (!make_world(std::get<1>(GetParam()), f_.w, why)) {
      skip(why);
      return;
    }
    made_ = true;
    World& w = f_.w;
    f_.attack_bin = w.bin + "/agentbox-attack";
    std::filesystem::copy_file(AGENTBOX_ATTACK_BIN, f_.attack_bin);
    ::chmod(f_.attack_bin.c_str(), 0755);
    f_.secret_dir = w.root + "/other-project";
    ::mkdir(f_.secret_dir.c_str(), 0755);
    write_file(f_.secret_dir + "/.env", "DB_PASSWORD=hunter2\n", 0644);
    f_.host_tmp = w.root + ".tmp-secret";
    write_file(f_.host_tmp, "host tmp secret\n", 0644);
    f_.unix_path = w.root + "/agent.sock";
    f_.unix_fd = listen_unix(f_.unix_path, false);
    ::chmod(f_.unix_path.c_str(), 0777);
    f_.abstract_name = "agentbox-attack-" + std::to_string(::getpid());
    f_.abstract_fd = listen_unix(f_.abstract_name, true);
    f_.tcp_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sin);
    ::bind(f_.tcp_fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    ::listen(f_.tcp_fd, 64);
    ::getsockname(f_.tcp_fd, reinterpret_cast<sockaddr*>(&sin), &sl);
    f_.tcp_port = ntohs(sin.sin_port);
    f_.marker = "agentbox-attack-marker-" + std::to_string(::getpid()) + "-" +
                std::to_string(::rand());  // NOLINT
    chown_tree(w.root, w.as.uid, w.as.gid);
    f_.sentinel = start_sentinel();
    // Can this machine make a box at all for this variant?
    if (std::string no = cannot_box(w, run(w, {"run", "-q", "--", "true"})); !no.empty()) {
      skip(no);
    }
  }
  void TearDown() override {
    if (f_.sentinel > 0) {
      ::kill(f_.sentinel, SIGKILL);
      ::waitpid(f_.sentinel, nullptr, 0);
    }
    for (pid_t p : pids_with_cmdline(f_.marker)) {
      ::kill(p, SIGKILL);
    }
    for (int fd : {f_.unix_fd, f_.abstract_fd, f_.tcp_fd}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
    ::unlink(f_.host_tmp.c_str());
    if (made_) {
      destroy_world(f_.w);
    }
  }
  // A `sleep` of the same user, outside the box.
  pid_t start_sentinel() {
    pid_t p = ::fork();
    if (p == 0) {
      if (::geteuid() == 0 && f_.w.as.uid != 0) {
        if (::setgid(f_.w.as.gid) != 0 || ::setuid(f_.w.as.uid) != 0) {
          _exit(1);
        }
      }
      ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
      _exit(127);
    }
    return p;
  }
  static std::string result_of(const Output& o, const std::string& attack) {
    if (o.status == 128 + SIGSYS) {
      return "SIGSYS";
    }
    if (o.status == 128 + SIGKILL) {
      return "SIGKILL";  // the OOM killer
    }
    if (o.status == 128 + SIGXFSZ) {
      return "SIGXFSZ";  // RLIMIT_FSIZE
    }
    if (o.status == 128 + SIGSEGV) {
      return "SIGSEGV";  // int 0x80 on a kernel without the i386 ABI
    }
    std::string line = o.line_starting(attack + " ");
    return line.empty() ? fmt::format("<no result, status {}: {}>", o.status, o.err)
                        : line.substr(attack.size() + 1);
  }
  std::string newest_audit_log() const {
    std::string best;
    auto t = std::filesystem::file_time_type::min();  // libstdc++ file_clock: now is < 0
    for (const auto& e : std::filesystem::recursive_directory_iterator(f_.w.state)) {
      if (e.path().filename() == "audit.jsonl" && e.last_write_time() >= t) {
        t = e.last_write_time();
        best = e.path();
      }
    }
    return best;
  }

  // The same attack without the box: as the variant's user (kDirect), as root of a throwaway
  // user namespace (kUserns) or as the harness's root (kRoot). Its result line.
  std::string run_control(const Attack& a, const Args& box_args, const RunOptions& ro) {
    World c = f_.w;
    if (a.control == Control::kRoot) {
      c.as.uid = 0;
      c.as.gid = 0;
    }
    Args args = a.control_args ? a.control_args(f_) : box_args;
    Args cargs = args;
    if (a.control == Control::kUserns) {
      c.agentbox = "/usr/bin/unshare";
      cargs = {"-Urmn", "--fork", "--", f_.attack_bin};
      cargs.insert(cargs.end(), args.begin(), args.end());
    } else {
      c.agentbox = f_.attack_bin;
    }
    RunOptions cro = ro;
    cro.timeout_ms = 60000;  // bounded, but a loaded machine is slow to touch 512 MiB
    return result_of(run(c, cargs, cro), args[0]);
  }

  Fixture f_;
  bool made_ = false;
};

// The kernel lacks the attack's surface (see Attack::not_applicable): reported not applicable,
// with the reason. Not a missing feature of the box, so AGENTBOX_MUST_WORK does not make it a
// failure; a machine that must offer the surface declares AGENTBOX_REQUIRE_KERNEL_<NAME>=1.
void not_applicable(const std::string& name, const std::string& why) {
  std::string upper;
  for (char c : name) {
    upper += std::isalnum(static_cast<unsigned char>(c)) != 0
                 ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
                 : '_';
  }
  skip(Need::feature("KERNEL_" + upper, "the kernel surface of the " + name + " attack"),
       "on this kernel: " + why);
}

TEST_P(AttackTest, IsBlocked) {
  const Attack& a = attacks()[std::get<0>(GetParam())];
  Args args = a.args(f_);
  // 1. In the box (stdin is the test's /dev/null; the attack binary is granted read-only).
  Args box = {"run", "--ro", f_.w.bin};
  if (a.summary == nullptr) {
    box.insert(box.begin() + 1, "-q");
  }
  box.insert(box.end(), a.box_flags.begin(), a.box_flags.end());
  box.push_back("--");
  box.push_back(f_.attack_bin);
  box.insert(box.end(), args.begin(), args.end());
  RunOptions ro;
  ro.env["AWS_SECRET_ACCESS_KEY"] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  ro.env["SSH_AUTH_SOCK"] = f_.unix_path;
  ro.timeout_ms = 20000;
  RunOptions box_ro = ro;
  for (const auto& [k, val] : a.box_env) {
    box_ro.env[k] = val;
  }
  if (a.config != nullptr) {
    std::string dir = f_.w.root + "/config";
    std::filesystem::create_directories(dir + "/agentbox");
    write_file(dir + "/agentbox/config.toml", a.config, 0644);
    chown_tree(dir, f_.w.as.uid, f_.w.as.gid);
    box_ro.env["XDG_CONFIG_HOME"] = dir;
  }
  if (f_.w.as.uid != 0 && a.control == Control::kRoot && ::geteuid() != 0) {
    skip(fmt::format("{}: its control must run as root", a.name));
    return;
  }
  // An attack this kernel cannot even express is not applicable: its control is asked first
  // (such controls change nothing on the host). The box still runs it and must give the block or
  // the kernel's own refusal, then the test is reported not applicable.
  std::string control;
  std::string na_why;
  std::set<std::string> blocked =
      f_.w.as.uid == 0 && !a.blocked_as_root.empty() ? a.blocked_as_root : a.blocked;
  if (!a.not_applicable.empty()) {
    control = run_control(a, args, ro);
    if (auto na = a.not_applicable.find(control); na != a.not_applicable.end()) {
      na_why = na->second;
      blocked.insert(control);
    }
  }
  // The switch is read only by the test-only build agentbox-unconfined, never by `agentbox`.
  World in_world = f_.w;
  if (a.box_env.contains("AGENTBOX_UNSAFE_BENCH_UNCONFINED")) {
    in_world.agentbox = f_.w.agentbox_unconfined;
  }
  Output in = run(in_world, box, box_ro);
  std::string got = in.status == 124 ? "TIMEOUT" : result_of(in, args[0]);
  if (blocked.empty()) {
    EXPECT_EQ(got.rfind("<no result", 0), std::string::npos) << got;
  } else {
    EXPECT_TRUE(blocked.contains(got)) << a.name << " inside the box: " << got << "\n" << in.err;
  }
  if (a.summary != nullptr) {
    EXPECT_NE(in.err.find(a.summary), std::string::npos) << in.err;
    std::string log = slurp(newest_audit_log());
    if (std::string(a.audit_hit) == "timeout") {
      EXPECT_NE(log.find(R"("type":"session.end","exit":124,"reason":"timeout")"),
                std::string::npos)
          << log;
    } else {
      EXPECT_TRUE(limits_hit(log).contains(a.audit_hit)) << log;
    }
  }
  if (a.box_env.contains("AGENTBOX_UNSAFE_BENCH_UNCONFINED")) {
    // The benchmark-only switch is never silent: a warning even with -q, and the audit log.
    EXPECT_NE(in.err.find("seccomp and Landlock are OFF"), std::string::npos) << in.err;
    std::string log = slurp(newest_audit_log());
    EXPECT_NE(log.find(R"("seccomp":"off")"), std::string::npos) << log;
    EXPECT_NE(log.find(R"("unsafe_bench_unconfined":true)"), std::string::npos) << log;
  }
  // 2. Ground truth outside.
  if (a.truth) {
    EXPECT_EQ(a.truth(f_), "") << a.name;
  }
  if (a.audit_syscall != nullptr) {
    std::string log = slurp(newest_audit_log());
    EXPECT_NE(log.find(fmt::format(R"("type":"seccomp.deny","syscall":"{}")", a.audit_syscall)),
              std::string::npos)
        << "no seccomp.deny for " << a.audit_syscall << " in the audit log:\n"
        << log;
  }
  if (!na_why.empty()) {
    not_applicable(a.name, na_why);
    return;
  }
  // 3. The control, without the box: it must get through, or the test proves nothing.
  if (control.empty()) {
    control = run_control(a, args, ro);
  }
  std::string control_truth = a.truth ? a.truth(f_) : "";
  if (a.restore) {
    a.restore(f_);
  }
  if (a.blocked.empty()) {
    EXPECT_FALSE(control_truth.empty()) << "control: the attack should work without the box";
  } else {
    EXPECT_TRUE(a.control_gets.contains(control))
        << "control without the box did not get through (" << control << ", expected "
        << fmt::format("{}", fmt::join(a.control_gets, "|")) << "): the test proves nothing";
  }
}

// Limits: what the summary claims without the attack's drama. Each case runs the same probes
// as the DoS attacks, below their limits (nothing may be claimed) and, for --cpus, at it.
class LimitTest : public WorldTest {
 protected:
  void SetUp() override {
    if (!enter_world()) {
      return;
    }
    attack_ = w_.bin + "/agentbox-attack";
    std::filesystem::copy_file(AGENTBOX_ATTACK_BIN, attack_);
    ::chmod(attack_.c_str(), 0755);
    std::string dir = w_.root + "/config";
    std::filesystem::create_directories(dir + "/agentbox");
    write_file(dir + "/agentbox/config.toml",
               "[sandbox]\nhome_size = \"8M\"\ntmp_size = \"8M\"\n[limits]\nfile_size = \"4M\"\n",
               0644);
    chown_tree(w_.root, w_.as.uid, w_.as.gid);
    opts_.env["XDG_CONFIG_HOME"] = dir;
    if (std::string no = cannot_box(w_, run(w_, {"run", "-q", "--", "true"}, opts_)); !no.empty()) {
      skip(no);
    }
  }
  void TearDown() override {
    if (made_) {
      destroy_world(w_);
    }
  }
  Output box(const Args& flags, const Args& cmd) {
    Args a = {"run", "--ro", w_.bin};
    a.insert(a.end(), flags.begin(), flags.end());
    a.push_back("--");
    a.insert(a.end(), cmd.begin(), cmd.end());
    return run(w_, a, opts_);
  }
  std::string attack_;
  RunOptions opts_;
};

// Below every limit, held as long as the attacks hold theirs: the summary names none and the
// audit log's "limits" event lists none. A program's own exit status 153 (128+SIGXFSZ) under
// RLIMIT_FSIZE is its exit code, not the limit: init's exit report tells them apart.
TEST_P(LimitTest, LimitsNotReachedAreNotClaimed) {
  struct Case {
    Args flags;
    Args cmd;
    std::string result;
  };
  const Case cases[] = {
      {{"--pids", "32"}, {attack_, "fork_bomb", "20", "-", "1000"}, "fork_bomb ok"},
      {{"--memory", "64M"}, {attack_, "balloon", "16", "-", "1000"}, "balloon ok"},
      {{}, {attack_, "fill", "/tmp/agentbox-fill", "2", "500"}, "fill ok"},
      {{}, {attack_, "fill", w_.as.home + "/agentbox-fill", "2", "500"}, "fill ok"},
      {{}, {attack_, "grow", w_.ws + "/agentbox-grow", "2"}, "grow ok"},
      {{}, {"/bin/sh", "-c", "exit 153"}, ""},
  };
  for (const auto& c : cases) {
    Output o = box(c.flags, c.cmd);
    if (!c.result.empty()) {
      EXPECT_TRUE(o.has_line(c.result)) << c.cmd[1] << ": " << o.out << o.err;
    }
    EXPECT_EQ(o.err.find("reached its"), std::string::npos) << c.cmd[1] << ": " << o.err;
    std::string log = audit_log_of(o);
    EXPECT_NE(log.find(R"("type":"limits")"), std::string::npos) << log;
    EXPECT_TRUE(limits_hit(log).empty()) << c.cmd[1] << ": " << log;
  }
  Output own = box({}, {"/bin/sh", "-c", "exit 153"});
  EXPECT_EQ(own.status, 153);
  EXPECT_NE(own.err.find("`/bin/sh` exited with status 153"), std::string::npos) << own.err;
}

// docs/CONFINEMENT.md: without a cgroup (the user variant here), RLIMIT_NPROC counts the tasks
// of the box's own user namespace (rlimits on ucounts, Linux 5.14+), so the user's other processes
// on the host do not eat into --pids: a fork bomb gets as far with 8 of them running as without.
TEST_P(LimitTest, PidsLimitIgnoresTheUsersOtherProcessesOnTheHost) {
  auto forked = [&] {
    Output o = box({"-q", "--pids", "32"}, {attack_, "fork_bomb", "100"});
    std::string line = o.line_starting("forked ");
    EXPECT_TRUE(o.has_line("fork_bomb EAGAIN")) << "the limit was not reached: " << o.out << o.err;
    return line.empty() ? -1 : std::stoi(line.substr(7));
  };
  int alone = forked();
  std::vector<pid_t> others;
  for (int i = 0; i < 8; ++i) {
    pid_t p = ::fork();
    if (p == 0) {
      if (::geteuid() == 0 && w_.as.uid != 0 &&
          (::setgid(w_.as.gid) != 0 || ::setuid(w_.as.uid) != 0)) {
        _exit(1);
      }
      ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
      _exit(127);
    }
    others.push_back(p);
  }
  int crowded = forked();
  for (pid_t p : others) {
    EXPECT_EQ(::kill(p, 0), 0) << "an other process of the user was gone during the run";
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
  }
  EXPECT_GT(alone, 20) << "--pids 32 held far fewer tasks than 32";
  EXPECT_EQ(crowded, alone) << "the user's 8 other processes counted against the box's --pids";
}

// --cpus: with a cgroup, cpu.max (v1: cfs_quota_us) throttles a busy loop, which the kernel's
// cpu.stat counts, and the summary says so; without one, nothing can limit a CPU rate, and that
// is said at the start even with -q, in the audit log and by `agentbox doctor`.
TEST_P(LimitTest, CpusIsEnforcedOrSaidNotToBe) {
  Output o = box({"-q", "--cpus", "0.05"}, {attack_, "spin", "1500"});
  ASSERT_EQ(o.status, 0) << o.err;
  std::string line = o.line_starting("spin ");
  ASSERT_NE(line, "") << o.out;
  long cpu_ms = std::stol(line.substr(5));
  std::string log = all_audit_logs(w_);
  if (log.find(R"("cpus":"cgroup")") != std::string::npos) {
    // 5% of one CPU for 1.5 s is 75 ms; unthrottled, the loop would use up to 1500 ms.
    EXPECT_LT(cpu_ms, 500) << "the busy loop was not throttled";
    Output v = box({"--cpus", "0.05"}, {attack_, "spin", "1500"});
    EXPECT_NE(v.err.find("the box reached its CPU limit (--cpus 0.05: throttled"),
              std::string::npos)
        << v.err;
    EXPECT_TRUE(limits_hit(audit_log_of(v)).contains("cpus")) << audit_log_of(v);
  } else {
    EXPECT_NE(log.find(R"("cpus":"not enforced")"), std::string::npos) << log;
    EXPECT_NE(o.err.find("--cpus 0.05 (from --cpus) is NOT enforced"), std::string::npos)
        << "the warning must show even with -q: " << o.err;
    Output doctor = run(w_, {"doctor"}, opts_);
    EXPECT_NE(doctor.out.find("--cpus is NOT enforced"), std::string::npos) << doctor.out;
    EXPECT_FALSE(limits_hit(log).contains("cpus")) << log;
  }
}

INSTANTIATE_TEST_SUITE_P(As, LimitTest, ::testing::Values(std::string("root"), std::string("user")),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// A timing attack on the protected workspace paths: inside the box one process swaps what is at
// .git/hooks, .envrc (missing before the run), .vscode (missing) and their parent .git (renamed
// aside, symlinks and fresh directories put in their place) while another keeps writing
// .git/hooks/pre-commit, .envrc, .vscode/tasks.json and .git/config, for 1.5 s. From outside:
// nothing protected was created or changed. Control: the same race in a copy of the workspace
// without the box gets its writes through.
class RaceTest : public LimitTest {};

// "" when the protected paths of workspace `ws` are as `hooks_before`/`config_before` say and
// nothing protected was created; else what changed.
std::string protected_intact(const std::string& ws, const std::set<std::string>& hooks_before,
                             const std::string& config_before) {
  std::set<std::string> hooks;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(ws + "/.git/hooks", ec)) {
    hooks.insert(e.path().filename());
  }
  if (ec) {
    return ws + "/.git/hooks: " + ec.message();
  }
  if (hooks != hooks_before) {
    return ws + "/.git/hooks has new or missing entries";
  }
  if (slurp(ws + "/.git/config") != config_before) {
    return ws + "/.git/config changed: " + slurp(ws + "/.git/config");
  }
  if (exists(ws + "/.envrc") && !slurp(ws + "/.envrc").empty()) {
    return ws + "/.envrc was written";
  }
  if (exists(ws + "/.vscode/tasks.json")) {
    return ws + "/.vscode/tasks.json was created";
  }
  for (const auto& e : std::filesystem::directory_iterator(ws, ec)) {
    std::string name = e.path().filename();
    if (name.rfind(".git.fake", 0) == 0 && exists(e.path().string() + "/hooks/pre-commit")) {
      return e.path().string() + "/hooks/pre-commit was created";
    }
  }
  return "";
}

TEST_P(RaceTest, SymlinkSwapRaceAgainstProtectedPaths) {
  std::set<std::string> hooks;
  write_file(w_.ws + "/.git/hooks/pre-push.sample", "#!/bin/sh\n", 0755);
  hooks.insert("pre-push.sample");
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  const std::string config = slurp(w_.ws + "/.git/config");
  ASSERT_FALSE(exists(w_.ws + "/.envrc"));
  ASSERT_FALSE(exists(w_.ws + "/.vscode"));

  Output in = box({"-q"}, {attack_, "race_protected", "1500"});
  std::string got = in.line_starting("race_protected ");
  EXPECT_NE(got, "") << in.out << in.err;
  EXPECT_NE(got, "race_protected ok") << "a protected write went through inside the box";
  EXPECT_EQ(protected_intact(w_.ws, hooks, config), "");
  EXPECT_TRUE(exists(w_.ws + "/.git/HEAD")) << "the real .git was moved";

  // Control: the same race in a copy of the workspace's layout, without the box.
  std::string ctl = w_.root + "/control-ws";
  std::filesystem::create_directories(ctl + "/.git/hooks");
  write_file(ctl + "/.git/config", config);
  write_file(ctl + "/.git/hooks/pre-push.sample", "#!/bin/sh\n", 0755);
  chown_tree(ctl, w_.as.uid, w_.as.gid);
  World c = w_;
  c.agentbox = attack_;
  RunOptions co;
  co.cwd = ctl;
  Output out = run(c, {"race_protected", "1500"}, co);
  EXPECT_EQ(out.line_starting("race_protected "), "race_protected ok") << out.out << out.err;
  EXPECT_NE(protected_intact(ctl, hooks, config), "")
      << "control: the race without the box should get through, or the test proves nothing";
}

INSTANTIATE_TEST_SUITE_P(As, RaceTest, ::testing::Values(std::string("root"), std::string("user")),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// The log names what the suite ran on: kernel release and the Landlock ABI it offers.
class RanOn : public ::testing::Environment {
 public:
  void SetUp() override {
    struct utsname u {};
    ::uname(&u);
    long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    std::cout << "attacks: kernel " << u.release << ", Landlock ABI "
              << (abi > 0 ? std::to_string(abi) : "none") << ", euid " << ::geteuid() << "\n";
    ::testing::Test::RecordProperty("kernel", u.release);
    ::testing::Test::RecordProperty("landlock_abi", static_cast<int>(abi > 0 ? abi : 0));
  }
};
[[maybe_unused]] const auto* const kRanOn = ::testing::AddGlobalTestEnvironment(new RanOn);

INSTANTIATE_TEST_SUITE_P(All, AttackTest,
                         ::testing::Combine(::testing::Range<size_t>(0, attacks().size()),
                                            ::testing::Values(std::string("root"),
                                                              std::string("user"))),
                         [](const ::testing::TestParamInfo<std::tuple<size_t, std::string>>& p) {
                           const Attack& a = attacks()[std::get<0>(p.param)];
                           return fmt::format("{}_{}_{}", a.category, a.name, std::get<1>(p.param));
                         });

}  // namespace
}  // namespace agentbox::it
