// The control plane end to end (docs/CONTROL.md): a real box, steered from outside by the
// agentbox verbs, as root and as the user agentbox-test. The oracle is outside the box: the
// test's own servers on loopback, the audit log, the process table and the socket file.
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "control_fixture.hpp"

namespace agentbox::it {
namespace {

// A program in the box retries a denied host; `allow` from outside makes the next attempt
// succeed, and the audit log names who allowed it.
TEST_P(ControlTest, AllowMakesTheNextAttemptSucceed) {
  Http http(false);
  std::string script = fmt::format(
      "for i in $(seq 1 600); do if curl -s --max-time 2 http://data.test:{}/ >/tmp/o; then "
      "cat /tmp/o; echo ok; exit 0; fi; sleep 0.05; done; exit 3",
      http.port());
  std::string id = start(reach(http.port()), {"/bin/sh", "-c", script});
  ASSERT_FALSE(id.empty()) << box_err();
  // At least one attempt was denied first.
  for (int i = 0; i < 200 && all_audit_logs(w_).find("\"net.deny\"") == std::string::npos &&
                  all_audit_logs(w_).find("\"result\":\"denied\"") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(http.accepted, 0);
  Output a = agentbox({"allow", id, fmt::format("data.test:{}", http.port())});
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_NE(a.out.find("allowed `data.test:"), std::string::npos) << a.out;
  ASSERT_EQ(finish(), 0) << box_err();
  EXPECT_NE(box_out().find("hello\nok"), std::string::npos) << box_out();
  EXPECT_GE(http.accepted, 1);
  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find(fmt::format("\"type\":\"control.allow\",\"by_uid\":{}", w_.as.uid)),
            std::string::npos)
      << log;
  EXPECT_NE(box_err().find(fmt::format("session {}", id)), std::string::npos) << box_err();
}

// `deny` cuts a live download at once and the policy shows who denied what.
TEST_P(ControlTest, DenyCutsALiveDownload) {
  Http http(true);
  std::string id =
      start({"--allow", fmt::format("data.test:{}", http.port()), "--connect-to",
             fmt::format("data.test:{0}:127.0.0.1:{0}", http.port())},
            {"/bin/sh", "-c",
             fmt::format("curl -s -o /dev/null http://data.test:{}/; echo curl=$?; sleep 3",
                         http.port())});
  ASSERT_FALSE(id.empty()) << box_err();
  for (int i = 0; i < 400 && http.sent < (1u << 20); ++i) {
    std::this_thread::sleep_for(25ms);
  }
  ASSERT_GE(http.sent, 1u << 20) << "the download never started";
  auto t0 = std::chrono::steady_clock::now();
  Output d = agentbox({"deny", id, "data.test"});
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_NE(d.out.find("denied `data.test:*`; 1 live"), std::string::npos) << d.out;
  Output p = agentbox({"policy", id});
  EXPECT_NE(p.out.find("deny   \"data.test:*\""), std::string::npos) << p.out;
  EXPECT_NE(p.out.find(fmt::format("agentbox deny by uid {}", w_.as.uid)), std::string::npos)
      << p.out;
  EXPECT_NE(p.out.find("# --allow"), std::string::npos) << p.out;
  ASSERT_EQ(finish(), 0) << box_err();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 20.0);
  EXPECT_EQ(box_out().find("curl=0"), std::string::npos) << box_out();
  EXPECT_TRUE(http.cut) << "the server's connection was not cut";
}

// `kill` ends the box and everything in it; the socket goes with it.
TEST_P(ControlTest, KillEndsTheBoxWithNothingLeftBehind) {
  // Distinct arguments per parameter: the root and user cases may run at once (ctest -j).
  const std::string a = sleep_arg(987), b = sleep_arg(986);
  std::string id = start({}, {"/bin/sh", "-c", fmt::format("sleep {} & sleep {}; wait", a, b)});
  ASSERT_FALSE(id.empty()) << box_err();
  Output k = agentbox({"kill", id});
  ASSERT_EQ(k.status, 0) << k.err;
  int st = finish(10000);
  EXPECT_EQ(st, 128 + SIGKILL) << box_err();
  EXPECT_TRUE(gone(a));
  EXPECT_TRUE(gone(b));
  struct stat sb {};
  EXPECT_NE(::stat(fmt::format("{}/agentbox/{}.sock", runtime_, id).c_str(), &sb), 0);
  EXPECT_EQ(agentbox({"ps"}).out.find(id), std::string::npos);
  Output again = agentbox({"kill", id});
  EXPECT_EQ(again.status, 125);
  EXPECT_NE(again.err.find(fmt::format("no running session `{}`", id)), std::string::npos)
      << again.err;
}

// `stop`: TERM first; a program that ignores it is killed after the grace period.
TEST_P(ControlTest, StopTermsThenKills) {
  const std::string a = sleep_arg(985);
  std::string id = start({}, {"/bin/sh", "-c", fmt::format("trap '' TERM; sleep {}", a)});
  ASSERT_FALSE(id.empty()) << box_err();
  auto t0 = std::chrono::steady_clock::now();
  Output s = agentbox({"stop", "--grace", "1", id});
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_NE(finish(15000), -1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 12s);
  EXPECT_TRUE(gone(a));
  EXPECT_NE(all_audit_logs(w_).find("\"type\":\"control.stop\""), std::string::npos);
}

// From inside the box: the runtime folder is not there, the socket cannot be connected to by
// its path, and no abstract socket of agentbox exists in any namespace the box can see.
TEST_P(ControlTest, TheBoxCannotFindOrReachTheSocket) {
  std::string id = start({}, {"/bin/sleep", "60"});
  ASSERT_FALSE(id.empty()) << box_err();
  std::string sock = fmt::format("{}/agentbox/{}.sock", runtime_, id);
  struct stat sb {};
  ASSERT_EQ(::stat(sock.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  std::string py = fmt::format(
      "import os,socket\n"
      "for p in ['{0}', '{1}', '/run/user', '/tmp/agentbox-{2}']:\n"
      "    print('exists' if os.path.exists(p) else 'absent', p)\n"
      "for a in ['{0}', '\\0{0}', '\\0agentbox']:\n"
      "    s = socket.socket(socket.AF_UNIX)\n"
      "    try:\n"
      "        s.connect(a); print('connected', repr(a))\n"
      "    except OSError as e:\n"
      "        print('refused', e.errno)\n"
      "print('unix', sum(1 for l in open('/proc/net/unix') if 'agentbox' in l))\n",
      sock, runtime_, w_.as.uid);
  Output in = run(w_, {"run", "-q", "--", "/usr/bin/python3", "-c", py}, env());
  ASSERT_EQ(in.status, 0) << in.err;
  EXPECT_EQ(in.out.find("exists"), std::string::npos) << in.out;
  EXPECT_EQ(in.out.find("connected"), std::string::npos) << in.out;
  EXPECT_TRUE(in.has_line("unix 0")) << in.out;
  // Outside: the supervisor has no abstract socket either (its own /proc/net/unix).
  std::string unix = slurp("/proc/net/unix");
  EXPECT_EQ(unix.find("@agentbox"), std::string::npos);
  EXPECT_NE(unix.find(sock), std::string::npos) << "the socket is not listed at all?";
  Output k = agentbox({"kill", id});
  EXPECT_EQ(k.status, 0) << k.err;
  finish(10000);
}

// Another user cannot use the socket: the directory and the socket's mode stop it, and when
// they cannot (root), SO_PEERCRED does.
TEST_P(ControlTest, AnotherUserIsRefused) {
  if (::geteuid() != 0) {
    skip("needs root to act as another user");
    return;
  }
  std::string id = start({}, {"/bin/sleep", "60"});
  ASSERT_FALSE(id.empty()) << box_err();
  std::string sock = fmt::format("{}/agentbox/{}.sock", runtime_, id);
  if (w_.as.uid == 0) {
    // The box is root's: the unprivileged user tries the socket and the verb.
    std::string as_user = "setpriv --reuid=agentbox-test --regid=agentbox-test --clear-groups ";
    EXPECT_NE(
        sh(as_user + fmt::format("python3 -c \"import socket; s=socket.socket(socket.AF_UNIX);"
                                 " s.connect('{}')\" 2>/dev/null",
                                 sock)),
        0);
    EXPECT_NE(sh(as_user + fmt::format("env XDG_RUNTIME_DIR={} {} kill {} 2>/dev/null", runtime_,
                                       w_.agentbox, id)),
              0);
  } else {
    // The box is the user's: root (who passes every file permission) is refused by uid.
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, sock.c_str(), sock.size() + 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    std::string req = "{\"v\":1,\"verb\":\"kill\"}\n";
    // The server refuses at accept: it writes its answer and closes without reading, so the
    // send may meet a closed socket (EPIPE); the answer is still there to read.
    ssize_t sent = ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    ASSERT_TRUE(sent == static_cast<ssize_t>(req.size()) || errno == EPIPE || errno == ECONNRESET)
        << std::strerror(errno);
    std::string reply;
    char buf[512];
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 5000) > 0) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        break;
      }
      reply.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    EXPECT_NE(reply.find("refused: uid 0 is not the session's uid"), std::string::npos) << reply;
  }
  // Still running: nothing the other user did reached it.
  Output ps = agentbox({"ps"});
  EXPECT_NE(ps.out.find(id), std::string::npos) << ps.out;
  EXPECT_EQ(agentbox({"kill", id}).status, 0);
  finish(10000);
  if (w_.as.uid != 0) {
    EXPECT_NE(all_audit_logs(w_).find("\"type\":\"control.refused\",\"by_uid\":0"),
              std::string::npos);
  }
}

INSTANTIATE_TEST_SUITE_P(Users, ControlTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
