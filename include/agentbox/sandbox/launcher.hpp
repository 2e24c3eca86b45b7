// Starting the box: clone3 into new namespaces, the box's init (pid 1), the program.
//
// Theory of operation:
//   supervisor  prepares everything (paths with staging prefixes, argv, envp, candidate paths
//               for the PATH search, /proc/self/*_map contents), then clone3(CLONE_NEWUSER|NEWNS|
//               NEWPID|NEWIPC|NEWUTS|NEWCGROUP|CLONE_PIDFD) and reads the control socket.
//   init (pid 1) PR_SET_PDEATHSIG(SIGKILL) and a check that the supervisor still lives; maps its
//               own uid/gid 1:1 (setgroups=deny first); makes mounts private; mounts a staging
//               tmpfs on /tmp and pivots into it (the host stays reachable at /oldroot); starts
//               the network thread (unshare(CLONE_NEWNET): the box's network namespace; lo up;
//               the BoxNetwork hook, whose tap fd goes to the supervisor over SCM_RIGHTS);
//               meanwhile builds the box's root at /newroot by running the MountPlan and sets
//               the hostname; joins the thread and setns()es into its network namespace; pivots
//               into /newroot and detaches the old root; chdir; with a terminal, opens the box's
//               own /dev/ptmx and sends the master to the supervisor (SCM_RIGHTS); starts the
//               program (clone CLONE_VM|CLONE_VFORK, as posix_spawn); then reaps, forwards
//               signals to the program's process group, and exits with the program's status
//               (128+N for signal N); gives the program's session autogroup its nice; with
//               LaunchSpec::socket_factory, makes sockets of the box's network namespace for
//               the supervisor on request (--publish).
//   program     empty signal mask; setsid (no controlling terminal of the user's, ever); the pty
//               slave as ctty and fds 0-2 when there is a terminal; fds >= 3 marked
//               close-on-exec (close_range); the Confinement hook; execve along the PATH.
// Every failure in init or the program is one {stage, errno, index} message on the control
// socket (SOCK_SEQPACKET, close-on-exec), so the supervisor can print one precise line. EOF on
// the socket without a failure means the program was executed.
#pragma once

#include <sys/ioctl.h>
#include <sys/types.h>
#include <termios.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"
#include "agentbox/sandbox/box_network.hpp"
#include "agentbox/sandbox/confinement.hpp"
#include "agentbox/sandbox/mount_plan.hpp"

namespace agentbox::sandbox {

struct LaunchSpec {
  std::vector<std::string> argv;  // argv[0] without '/' is searched in the box's PATH
  std::vector<std::string> env;   // NAME=value, complete
  std::string cwd;                // inside the box
  std::string hostname = "agentbox";
  unsigned uid = 0;
  unsigned gid = 0;
  std::vector<MountOp> mounts;
  // With a terminal: a pty inside the box; its initial settings copied from the user's tty.
  bool pty = false;
  std::optional<struct winsize> winsize;
  std::optional<struct termios> termios;
  const Confinement* confinement = nullptr;  // applied right before execve; may be null
  // Creates the box's tap in init (after lo is up); its fd reaches the supervisor (take_tap()).
  // Null: the box has only `lo`.
  const BoxNetwork* network = nullptr;
  // A socket factory in the box's network namespace (take_socket_factory()): the supervisor
  // sends one byte per socket it wants ('4' AF_INET, '6' AF_INET6) on a SOCK_SEQPACKET pair,
  // init answers each with a new unconnected TCP socket (SCM_RIGHTS) or an errno. Lets the
  // supervisor connect to the box's own loopback (--publish) without a TCP active open in the
  // stack. init wakes for it by a queued signal (F_SETSIG), so nothing changes when unused.
  bool socket_factory = false;
  // fds (besides 0-2) that init keeps open for the confinement hook; everything else the
  // supervisor had open is closed in init at once, and all of it is close-on-exec in the program.
  std::vector<int> keep_fds;
  // Write end of a pipe (kept by init, never seen by the program): init writes one ExitReport
  // there before it exits, so the supervisor can tell a death by signal from an exit code of
  // 128+N and see rlimit signals (SIGXFSZ, SIGXCPU) of processes init reaped. -1: none.
  int exit_report_fd = -1;
  // Limits of the box's own user namespace, written by init into /proc/sys/user/NAME (which
  // shows the writer's user namespace): {NAME, value}, e.g. {"max_inotify_instances", "64"}. The
  // kernel checks such a count at every namespace level up (ucounts), so the box is held to
  // these and the user's own limit outside still holds too.
  std::vector<std::pair<std::string, uint64_t>> userns_limits;
  // The nice init gives the program's session autogroup once the program runs (-1: left as the
  // kernel makes it, nice 0). Written from init, not the program: the kernel lets an unprivileged
  // writer change an autogroup once per 100 ms machine-wide, so init retries (for up to a second)
  // without holding up the program's start.
  int autogroup_nice = -1;
  // Run once in the supervisor as soon as the clone was tried (whether it worked or not), while
  // init builds the box and the supervisor would only wait for it: work that need not come
  // before the box (removing old session folders, which can wait on the filesystem's journal).
  std::function<void()> after_clone;
};

// What init saw of the processes it reaped (the program and orphans; not the children other
// processes of the box reap themselves).
struct ExitReport {
  int32_t program_status = 0;  // the program's raw wait status
  uint32_t died_of_sigxfsz = 0;
  uint32_t died_of_sigxcpu = 0;
};

// Why start() failed inside the box (stage kNone when it failed in the supervisor).
struct LaunchFailure {
  SetupStage stage = SetupStage::kNone;
  int err = 0;
  int index = -1;  // MountOp index for kMountOp
};

// The exit code for a failed start: 127 command not found, 126 cannot execute, 125 otherwise.
[[nodiscard]] int launch_exit_code(const LaunchFailure& failure);

// The running box: a pidfd-backed handle on its init. Destroying it kills (SIGKILL) and reaps the
// box if it was not reaped yet, so no path out of the supervisor leaves a box behind.
class Box {
 public:
  // Starts the box and waits until the program was executed (or setup failed: then `failure`
  // says where, and the Error says it for humans).
  [[nodiscard]] static base::Result<Box> start(const LaunchSpec& spec, LaunchFailure* failure);

  Box(Box&& other) noexcept;
  Box& operator=(Box&& other) noexcept = delete;
  Box(const Box&) = delete;
  ~Box();

  [[nodiscard]] int pidfd() const { return pidfd_.get(); }
  [[nodiscard]] pid_t pid() const { return pid_; }
  // The pty master (supervisor side) when spec.pty; invalid otherwise. Ownership moves out.
  [[nodiscard]] base::UniqueFd take_pty_master() { return std::move(pty_master_); }
  // The box's tap device (supervisor side) when spec.network; invalid otherwise.
  [[nodiscard]] base::UniqueFd take_tap() { return std::move(tap_); }
  // Sockets the BoxNetwork hook made besides the tap (NetworkSetupResult::extra), in its order.
  [[nodiscard]] std::vector<base::UniqueFd> take_network_extra() { return std::move(extra_); }
  // The supervisor's end of the socket factory when spec.socket_factory; invalid otherwise.
  [[nodiscard]] base::UniqueFd take_socket_factory() { return std::move(factory_); }

  // pidfd_send_signal to init (which forwards to the program's process group; SIGKILL ends the
  // whole box at once since init is pid 1 of its namespace).
  [[nodiscard]] base::Status signal(int sig) const;
  // Non-blocking when `block` is false: nullopt while still running. Returns the exit code as a
  // shell reports it (128+N for signal N).
  [[nodiscard]] base::Result<std::optional<int>> reap(bool block);
  [[nodiscard]] bool reaped() const { return reaped_; }

 private:
  Box(base::UniqueFd pidfd, pid_t pid) : pidfd_(std::move(pidfd)), pid_(pid) {}
  base::UniqueFd pidfd_;
  pid_t pid_ = -1;
  base::UniqueFd pty_master_;
  base::UniqueFd tap_;
  std::vector<base::UniqueFd> extra_;
  base::UniqueFd factory_;
  bool reaped_ = false;
};

}  // namespace agentbox::sandbox
