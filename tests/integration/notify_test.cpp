// Approvals as desktop notifications (docs/CONTROL.md, "Desktop notifications"): the test starts
// its own session bus (dbus-daemon) and a notification server written for it
// (notify_server.py, which logs every call and can click a button), then a real box whose
// program retries a loopback upstream under `--ask`. "Allow for this session" admits it, "Deny"
// denies it, an answer through `agentbox approve` closes the notification, and a session bus
// that is not there leaves the terminal queue as it was. As root and as agentbox-test; the
// oracles are outside: the upstream's count, the server's log, the audit log.
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sstream>

#include "control_fixture.hpp"

namespace agentbox::it {
namespace {

// A session bus and a notification server on it, both as the variant's user (the bus accepts
// only its own uid), gone with this object.
class Desktop {
 public:
  Desktop(const World& w, const std::string& act, const std::string& stall = "0")
      : dir_(w.root + "/desktop") {
    ::mkdir(dir_.c_str(), 0700);
    chown_tree(dir_, w.as.uid, w.as.gid);
    address_ = "unix:path=" + dir_ + "/bus";
    bus_ = launch(
        w,
        {"/usr/bin/dbus-daemon", "--session", "--nofork", "--nopidfile", "--address=" + address_},
        "/bus.log");
    for (int i = 0; i < 200 && ::access((dir_ + "/bus").c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(25ms);
    }
    // A copy the variant's user can read (the source tree may be closed to it).
    write_file(dir_ + "/server.py", slurp(AGENTBOX_NOTIFY_SERVER), 0644);
    server_ = launch(w,
                     {"/usr/bin/python3", dir_ + "/server.py", "--address", address_, "--log",
                      log(), "--act", act, "--stall", stall},
                     "/server.err");
    for (int i = 0; i < 400 && slurp(log()).find("\"ready\"") == std::string::npos; ++i) {
      std::this_thread::sleep_for(25ms);
    }
  }
  ~Desktop() {
    for (pid_t p : {server_, bus_}) {
      if (p > 0) {
        ::kill(p, SIGTERM);
        wait_for(p, 5000);
      }
    }
  }
  [[nodiscard]] bool ready() const { return slurp(log()).find("\"ready\"") != std::string::npos; }
  [[nodiscard]] std::string why() const {
    return slurp(dir_ + "/bus.log") + slurp(dir_ + "/server.err");
  }
  [[nodiscard]] std::string log() const { return dir_ + "/calls.jsonl"; }
  [[nodiscard]] const std::string& address() const { return address_; }
  // Waits (bounded) until the server's log holds `needle`.
  [[nodiscard]] bool logged(const std::string& needle) const {
    for (int i = 0; i < 600; ++i) {
      if (slurp(log()).find(needle) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

 private:
  pid_t launch(const World& w, const std::vector<std::string>& args, const std::string& err) {
    std::vector<char*> argv;
    for (const auto& a : args) {
      argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    const std::string err_path = dir_ + err;
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      if (::setgroups(0, nullptr) != 0 || ::setgid(w.as.gid) != 0 || ::setuid(w.as.uid) != 0) {
        ::_exit(120);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    return pid;
  }
  std::string dir_;
  std::string address_;
  pid_t bus_ = -1;
  pid_t server_ = -1;
};

class NotifyTest : public ControlTest {
 protected:
  void SetUp() override {
    ControlTest::SetUp();
    if (!made_ || HasFatalFailure() || IsSkipped()) {
      return;
    }
    if (::access("/usr/bin/dbus-daemon", X_OK) != 0 ||
        sh("/usr/bin/python3 -c 'import dbus, gi' 2>/dev/null") != 0) {
      skip("dbus-daemon or python3-dbus/python3-gi is not installed (scripts/install-deps)");
      return;
    }
    cfg_ = w_.root + "/cfg";
    ASSERT_EQ(::mkdir(cfg_.c_str(), 0700), 0);
    ASSERT_EQ(::mkdir((cfg_ + "/agentbox").c_str(), 0700), 0);
    write_file(cfg_ + "/agentbox/config.toml", "[network]\nask_timeout = 20\n", 0600);
    chown_tree(cfg_, w_.as.uid, w_.as.gid);
    extra_env_["XDG_CONFIG_HOME"] = cfg_;
  }
  // A desktop for `run` and the verbs: the test's bus and a display name (nothing draws on it).
  void use(const Desktop& d) {
    extra_env_["DBUS_SESSION_BUS_ADDRESS"] = d.address();
    extra_env_["DISPLAY"] = ":97";
  }
  // The box retries `data.test` under `--ask` (each try waits for its DNS answer), then says
  // how the tries went.
  std::string box(const Http& http) {
    const uint16_t p = http.port();
    const std::string get = fmt::format(
        "RES_OPTIONS='timeout:30 attempts:1' curl -s --max-time 40 http://data.test:{}/ "
        ">/dev/null",
        p);
    Args flags = {"--ask", fmt::format("data.test:{}", p)};
    Args r = reach(p);
    flags.insert(flags.end(), r.begin(), r.end());
    return start(
        flags, {"/bin/sh", "-c", fmt::format("for i in 1 2 3; do {0}; echo try$i=$?; done", get)});
  }
  // The id of the first waiting question ("" after a short wait when none waits).
  std::string waiting(const std::string& id) {
    Output o = agentbox({"approve", id, "--json"});
    if (auto at = o.out.find("\"id\": \"q"); at != std::string::npos) {
      return o.out.substr(at + 7, o.out.find('"', at + 7) - (at + 7));
    }
    std::this_thread::sleep_for(50ms);
    return "";
  }
  // Runs box() to its end; its short id ("" after a failure already reported).
  std::string tries(const Http& http) {
    std::string id = box(http);
    EXPECT_FALSE(id.empty()) << box_err();
    if (id.empty() || !box_said("try3=")) {
      ADD_FAILURE() << box_out() << box_err();
      return "";
    }
    EXPECT_EQ(finish(), 0) << box_err();
    return id;
  }
  bool box_said(const std::string& what) {
    for (int i = 0; i < 600; ++i) {
      if (box_out().find(what) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
  std::string cfg_;
};

// "Allow for this session" on the notification: the held try and the later ones reach the
// upstream, with one question and one notification naming the session, the program and the name.
TEST_P(NotifyTest, AllowForThisSessionAdmitsTheRetries) {
  Desktop d(w_, "session");
  ASSERT_TRUE(d.ready()) << d.why();
  use(d);
  Http http(false);
  std::string id = tries(http);
  ASSERT_FALSE(id.empty());
  EXPECT_NE(box_out().find("try1=0\ntry2=0\ntry3=0"), std::string::npos) << box_out();
  EXPECT_EQ(http.accepted, 3);

  std::string calls = slurp(d.log());
  EXPECT_NE(calls.find("\"method\": \"GetCapabilities\""), std::string::npos) << calls;
  EXPECT_NE(calls.find(fmt::format("session {} asks", id)), std::string::npos) << calls;
  EXPECT_NE(calls.find(fmt::format("/bin/sh wants to connect to data.test")), std::string::npos)
      << calls;
  EXPECT_NE(
      calls.find(
          R"("actions": ["once", "Allow once", "session", "Allow for this session", "deny", "Deny"])"),
      std::string::npos)
      << calls;
  EXPECT_NE(calls.find("\"expire\": 20000"), std::string::npos) << calls;
  size_t shown = 0;
  std::istringstream lines(calls);
  for (std::string line; std::getline(lines, line);) {
    shown += line.find("\"method\": \"Notify\"") != std::string::npos;
  }
  EXPECT_EQ(shown, 1u) << calls;
  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find(R"("answer":"session")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("by":"desktop notification")"), std::string::npos) << log;
}

// "Deny": the held try fails without reaching the upstream; each later try is asked (and
// denied) anew.
TEST_P(NotifyTest, DenyDenies) {
  Desktop d(w_, "deny");
  ASSERT_TRUE(d.ready()) << d.why();
  use(d);
  Http http(false);
  ASSERT_FALSE(tries(http).empty());
  EXPECT_EQ(box_out().find("=0\n"), std::string::npos) << box_out();
  EXPECT_EQ(http.accepted, 0);
  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find(R"("answer":"deny","by_uid")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("by":"desktop notification")"), std::string::npos) << log;
}

// What the box hands over reaches the desktop without its placeholder, the real value, or a
// control character: an exec rule asks about `/bin/echo PLACEHOLDER ESC[2J`, Deny fails it.
TEST_P(NotifyTest, TheTextCarriesNoPlaceholderNoSecretNoControlBytes) {
  write_file(cfg_ + "/agentbox/config.toml",
             "[network]\nask_timeout = 20\nallow = [\"api.example.test\"]\n"
             "[credentials.gh]\nenv = \"GH_TOKEN\"\nfrom = \"env:REAL_GH\"\n"
             "hosts = [\"api.example.test\"]\ninject = \"header:Authorization\"\n"
             "[[exec.rule]]\nprogram = \"echo\"\naction = \"ask\"\n",
             0600);
  chown_tree(cfg_, w_.as.uid, w_.as.gid);
  const std::string real = "ghp_RealNotifyTokenAAA0123456789abcdefWXYZ";
  extra_env_["REAL_GH"] = real;
  Desktop d(w_, "deny");
  ASSERT_TRUE(d.ready()) << d.why();
  use(d);
  std::string id = start({}, {"/bin/sh", "-c",
                              "echo \"token=$GH_TOKEN\"; /bin/echo \"$GH_TOKEN\" "
                              "\"$(printf '\\033[2J')\"; echo echo=$?"});
  ASSERT_FALSE(id.empty()) << box_err();
  ASSERT_TRUE(box_said("echo=")) << box_out() << box_err();
  ASSERT_EQ(finish(), 0) << box_err();
  EXPECT_EQ(box_out().find("echo=0"), std::string::npos) << box_out();
  const std::string out = box_out();
  const auto at = out.find("token=");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string placeholder = out.substr(at + 6, out.find('\n', at) - at - 6);
  ASSERT_EQ(placeholder.size(), real.size()) << out;
  ASSERT_NE(placeholder, real);
  std::string calls = slurp(d.log());
  EXPECT_NE(calls.find("wants to run /bin/echo [placeholder]"), std::string::npos) << calls;
  EXPECT_EQ(calls.find(placeholder), std::string::npos) << calls;
  EXPECT_EQ(calls.find(real), std::string::npos) << calls;
  EXPECT_EQ(calls.find("\\u001b"), std::string::npos) << calls;  // json.dumps writes ESC so
}

// Answered in the terminal instead: the notification is closed (CloseNotification with the id
// the server gave it).
TEST_P(NotifyTest, ApproveInTheTerminalClosesTheNotification) {
  Desktop d(w_, "");
  ASSERT_TRUE(d.ready()) << d.why();
  use(d);
  Http http(false);
  std::string id = box(http);
  ASSERT_FALSE(id.empty()) << box_err();
  ASSERT_TRUE(d.logged("\"method\": \"Notify\", \"id\": 1")) << slurp(d.log()) << box_err();
  std::string q;
  for (int i = 0; i < 200 && q.empty(); ++i) {
    q = waiting(id);
  }
  ASSERT_FALSE(q.empty());
  ASSERT_EQ(agentbox({"approve", id, q, "session"}).status, 0);
  EXPECT_TRUE(d.logged("\"method\": \"CloseNotification\", \"id\": 1")) << slurp(d.log());
  ASSERT_EQ(finish(), 0) << box_err();
  EXPECT_EQ(http.accepted, 3);
}

// A server that hangs: given up after its 5 s bound (one audit line); the question was never
// held for it, and the terminal answers it.
TEST_P(NotifyTest, AHangingServerIsGivenUpAndTheTerminalAnswers) {
  Desktop d(w_, "session", "12");
  ASSERT_TRUE(d.ready()) << d.why();
  use(d);
  Http http(false);
  std::string id = box(http);
  ASSERT_FALSE(id.empty()) << box_err();
  std::string q;
  for (int i = 0; i < 200 && q.empty(); ++i) {
    q = waiting(id);
  }
  ASSERT_FALSE(q.empty()) << box_err();
  // The control socket answers at once while the notifier waits for the server.
  const auto asked = std::chrono::steady_clock::now();
  ASSERT_EQ(agentbox({"approve", id, "--json"}).status, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 3s);
  for (int i = 0;
       i < 200 && all_audit_logs(w_).find("approval.notify\",\"state\":\"off") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(agentbox({"approve", id, q, "session"}).status, 0);
  ASSERT_TRUE(box_said("try3=")) << box_out() << box_err();
  ASSERT_EQ(finish(), 0) << box_err();
  EXPECT_NE(box_out().find("try1=0\ntry2=0\ntry3=0"), std::string::npos) << box_out();
  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find("approval.notify\",\"state\":\"off"), std::string::npos) << log;
  EXPECT_EQ(slurp(d.log()).find("\"method\": \"Notify\""), std::string::npos);
}

// A session bus that is not there: one audit line, and the terminal queue works as before.
TEST_P(NotifyTest, NoBusLeavesTheTerminalQueue) {
  extra_env_["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=" + w_.root + "/no-such-bus";
  extra_env_["DISPLAY"] = ":97";
  Http http(false);
  std::string id = box(http);
  ASSERT_FALSE(id.empty()) << box_err();
  std::string q;
  for (int i = 0; i < 200 && q.empty(); ++i) {
    q = waiting(id);
  }
  ASSERT_FALSE(q.empty()) << box_err();
  ASSERT_EQ(agentbox({"approve", id, q, "session"}).status, 0);
  ASSERT_EQ(finish(), 0) << box_err();
  EXPECT_NE(box_out().find("try1=0\ntry2=0\ntry3=0"), std::string::npos) << box_out();
  std::string log = all_audit_logs(w_);
  const auto off = log.find(R"("type":"approval.notify")");
  ASSERT_NE(off, std::string::npos) << log;
  const std::string line = log.substr(off, log.find('\n', off) - off);
  EXPECT_NE(line.find(R"("state":"off")"), std::string::npos) << line;
  EXPECT_NE(line.find("no-such-bus"), std::string::npos) << line;
}

INSTANTIATE_TEST_SUITE_P(Users, NotifyTest, ::testing::Values("root", "user"));

}  // namespace
}  // namespace agentbox::it
