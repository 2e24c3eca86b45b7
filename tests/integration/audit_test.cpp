// The audit log's integrity end to end (issue 14): a full or filling state filesystem is reported
// and can fail closed, a denied-name flood is coalesced and capped, open flows get close lines,
// old session folders are pruned but never a running one; the hash chain verifies a real log
// and names the first bad line of a tampered copy. As root and as the user.
#include <fcntl.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;

// Sends N DNS queries for NAME (or nI.NAME when distinct) to the box's resolver, one at a time,
// and prints how many were answered.
constexpr const char* kDnsFlood = R"(
import socket, struct, sys
name, n, distinct = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1'
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
got = 0
for i in range(n):
    q = f"n{i}.{name}" if distinct else name
    pkt = struct.pack('>HHHHHH', i & 0xffff, 0x0100, 1, 0, 0, 0)
    pkt += b''.join(bytes([len(l)]) + l.encode() for l in q.split('.')) + b'\0'
    s.sendto(pkt + struct.pack('>HH', 1, 1), ('10.0.2.3', 53))
    try:
        s.recv(512)
        got += 1
    except socket.timeout:
        pass
print('answered', got)
)";

class AuditTest : public WorldTest {
 protected:
  void SetUp() override {
    if (!enter_world()) {
      return;
    }
    if (std::string no = cannot_box(w_, run(w_, {"run", "-q", "--", "true"})); !no.empty()) {
      skip(no);
    }
  }
  void TearDown() override {
    if (made_) {
      destroy_world(w_);
    }
  }
  // A user config with `toml` (XDG_CONFIG_HOME inside the world, never the real home).
  // The state dir becomes a tmpfs of `size` bytes, owned by the variant's user, in a private
  // mount namespace of the agentbox process, filled by root until `free_bytes` are left.
  RunOptions small_state(size_t size, size_t free_bytes) {
    RunOptions o;
    std::string opts = fmt::format("size={},uid={},gid={},mode=0700", size, w_.as.uid, w_.as.gid);
    std::string state = w_.state;
    std::string fill = w_.state + "/fill";
    size_t to_write = size - free_bytes;
    o.before_exec = [opts, state, fill, to_write] {
      if (::unshare(CLONE_NEWNS) != 0 ||
          ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          ::mount("tmpfs", state.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
        return false;
      }
      int fd = ::open(fill.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      static char block[4096];
      for (size_t done = 0; fd >= 0 && done < to_write;) {
        ssize_t w = ::write(fd, block, std::min(sizeof block, to_write - done));
        if (w <= 0) {
          break;  // full
        }
        done += static_cast<size_t>(w);
      }
      return fd >= 0 && ::close(fd) == 0;
    };
    return o;
  }
  bool can_mount() {
    if (::geteuid() != 0) {
      skip("needs root: the test mounts a small tmpfs as the state folder");
      return false;
    }
    return true;
  }
};

// The state filesystem is full before the session starts: the box runs, and the summary says
// the log lost its lines; with --audit-required nothing runs and the status is 125.
TEST_P(AuditTest, FullStateFilesystemIsReportedOrFailsClosed) {
  if (!can_mount()) {
    return;
  }
  RunOptions o = small_state(64 * 1024, 0);
  Output r = run(w_, {"run", "--", "sh", "-c", "touch ran-1"}, o);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(w_.ws + "/ran-1"));
  EXPECT_NE(r.err.find("the audit log lost "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No space left on device (ENOSPC)"), std::string::npos) << r.err;

  Output req = run(w_, {"run", "--audit-required", "--", "sh", "-c", "touch ran-2"}, o);
  EXPECT_EQ(req.status, 125) << req.err;
  EXPECT_FALSE(std::filesystem::exists(w_.ws + "/ran-2"));
  EXPECT_NE(req.err.find("agentbox: error: the audit log lost "), std::string::npos) << req.err;
  EXPECT_NE(req.err.find("audit.required"), std::string::npos) << req.err;
}

// The filesystem fills while the box runs (denied names of its own making): the loss is
// counted; with audit.required the box is stopped before it finishes, status 125.
TEST_P(AuditTest, StateFilesystemFillingMidSessionStopsARequiredSession) {
  if (!can_mount()) {
    return;
  }
  RunOptions o = small_state(256 * 1024, 24 * 1024);
  Output r = run(w_,
                 {"run", "--", "sh", "-c", "python3 -c \"$0\" fill.test 3000 1 && touch finished-1",
                  kDnsFlood},
                 o);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(w_.ws + "/finished-1"));
  EXPECT_NE(r.err.find("the audit log lost "), std::string::npos) << r.err;

  Output req = run(w_,
                   {"run", "--audit-required", "--", "sh", "-c",
                    "python3 -c \"$0\" fill.test 3000 1 && touch finished-2", kDnsFlood},
                   o);
  EXPECT_EQ(req.status, 125) << req.err;
  EXPECT_FALSE(std::filesystem::exists(w_.ws + "/finished-2"));
  EXPECT_NE(req.err.find("its audit log could not be written (status 125)"), std::string::npos)
      << req.err;
}

// One denied name asked thousands of times: a line per second and counts that add up to the
// answers; thousands of distinct names under a 64K cap: the log stops at the cap with a
// truncation line, and the summary says so.
TEST_P(AuditTest, DeniedNameFloodIsCoalescedAndCapped) {
  Output r = run(w_, {"run", "--", "python3", "-c", kDnsFlood, "flood.test", "4000", "0"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string line = r.line_starting("answered ");
  ASSERT_FALSE(line.empty()) << r.out;
  uint64_t answered = std::stoull(line.substr(9));
  EXPECT_GT(answered, 3000u);
  std::string log = audit_log_of(r);
  uint64_t seen = 0;
  size_t lines = 0;
  std::istringstream in(log);
  std::regex rep(R"("type":"audit.repeated","of":"dns.query","key":"flood.test/1","count":(\d+))");
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (std::regex_search(l, m, rep)) {
      seen += std::stoull(m[1].str());
      ++lines;
    } else if (l.find(R"("type":"dns.query","name":"flood.test")") != std::string::npos) {
      ++seen;
      ++lines;
    }
  }
  // Every query the resolver answered is in the log, as a line or in a count (a query whose
  // answer came after the client's 1 s timeout is counted but not answered).
  EXPECT_GE(seen, answered);
  EXPECT_LE(seen, 4000u);
  EXPECT_LE(lines, 60u) << "two lines a second at most";
  EXPECT_LT(log.size(), 32u * 1024) << "4000 denials used to be ~1 MB";

  RunOptions o = with_user_config(w_, "[audit]\nmax_size = \"64K\"\n");
  Output big = run(w_, {"run", "--", "python3", "-c", kDnsFlood, "many.test", "3000", "1"}, o);
  ASSERT_EQ(big.status, 0) << big.err;
  std::string capped = audit_log_of(big);
  EXPECT_LE(capped.size(), 64u * 1024 + 1024);
  EXPECT_NE(capped.find(R"("type":"audit.truncated","max_bytes":65536)"), std::string::npos);
  EXPECT_NE(capped.find(R"("type":"session.end")"), std::string::npos);
  EXPECT_NE(big.err.find("the audit log reached its size cap of 65536 bytes"), std::string::npos)
      << big.err;
}

// A connection the box still holds when it ends gets its net.close line.
TEST_P(AuditTest, OpenFlowsAtExitGetCloseLines) {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
  ASSERT_EQ(::listen(lfd, 64), 0);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sin), &len);
  std::string port = std::to_string(ntohs(sin.sin_port));
  // Three connections held by a process that outlives the program's own exit.
  std::string py = fmt::format(
      "import socket,time\nss=[socket.create_connection(('held.test',{}))for _ in "
      "range(3)]\nprint('held',flush=True)\ntime.sleep(30)",
      port);
  Output r = run(w_, {"run", "--allow", "held.test:" + port, "--connect-to",
                      "held.test:" + port + ":127.0.0.1:" + port, "--", "sh", "-c",
                      "python3 -c \"$0\" & sleep 2; exit 0", py});
  ::close(lfd);
  ASSERT_EQ(r.status, 0) << r.err;
  std::string log = audit_log_of(r);
  std::set<std::string> opened;
  std::set<std::string> closed;
  std::istringstream in(log);
  std::regex id(R"("id":(\d+))");
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (!std::regex_search(l, m, id)) {
      continue;
    }
    if (l.find(R"("type":"net.connect")") != std::string::npos) {
      opened.insert(m[1].str());
    } else if (l.find(R"("type":"net.close")") != std::string::npos) {
      closed.insert(m[1].str());
    }
  }
  EXPECT_EQ(opened.size(), 3u) << log;
  EXPECT_EQ(opened, closed) << log;
}

// keep_sessions = 2: old folders go, the running session's folder stays however old.
TEST_P(AuditTest, RetentionPrunesOldSessionsButNotARunningOne) {
  RunOptions o = with_user_config(w_, "[audit]\nkeep_sessions = 2\nmax_age = \"7d\"\n");
  std::string dir = w_.state + "/agentbox/sessions";
  std::set<std::string> before;  // the set-up's own session
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    before.insert(e.path().filename());
  }
  int out_fd = -1;
  int err_fd = -1;
  pid_t running = spawn(w_, {"run", "-q", "--", "sleep", "30"}, o, &out_fd, &err_fd);
  ASSERT_GT(running, 0);
  std::string running_id;
  // Its session.start is written after its own pruning: the fake folders come after that.
  for (int i = 0; i < 500 && running_id.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      std::string name = e.path().filename();
      if (before.count(name) == 0 &&
          slurp(dir + "/" + name + "/audit.jsonl").find("session.start") != std::string::npos) {
        running_id = name;
      }
    }
  }
  std::vector<std::string> fake = {"20200101T000000Z-000001", "20200102T000000Z-000002"};
  for (const auto& f : fake) {
    std::filesystem::create_directories(dir + "/" + f);
    write_file(dir + "/" + f + "/audit.jsonl", "{}\n");
    chown_tree(dir + "/" + f, w_.as.uid, w_.as.gid);
  }
  for (int i = 0; i < 3; ++i) {
    Output r = run(w_, {"run", "-q", "--", "true"}, o);
    ASSERT_EQ(r.status, 0) << r.err;
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // ids differ by the second
  }
  std::set<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    left.insert(e.path().filename());
  }
  ::kill(running, SIGTERM);
  EXPECT_GE(wait_for(running, 10000), 0);
  std::string all;
  for (const auto& n : left) {
    all += n + " ";
  }
  char buf[4096];
  ssize_t n = ::read(err_fd, buf, sizeof buf);
  std::string err(buf, n > 0 ? static_cast<size_t>(n) : 0);
  EXPECT_EQ(left.count(running_id), 1u) << "the running session's folder is kept: " << running_id
                                        << " left: " << all << " err: " << err;
  for (const auto& f : fake) {
    EXPECT_EQ(left.count(f), 0u) << f;
  }
  EXPECT_EQ(left.size(), 3u) << "the running one and the two newest";
  ::close(out_fd);
  ::close(err_fd);
  EXPECT_NE(all_audit_logs(w_).find(R"("type":"session.prune")"), std::string::npos);
}

// The hash chain end to end (issue 17): a real session's log verifies, by id and by path, to
// the head the exit summary printed; a copy with one byte changed, a line removed, two lines
// swapped, a line appended with a wrong link or its last line cut fails, naming the line.
TEST_P(AuditTest, ChainVerifiesARealLogAndNamesTheFirstBadLine) {
  // A few events beyond start and end: a denied connection and a denied name.
  Output r = run(w_, {"run", "--", "sh", "-c",
                      "python3 -c \"import socket; s=socket.socket(); s.settimeout(2); "
                      "s.connect_ex(('192.0.2.1', 80)); socket.getaddrinfo('x.invalid', 80)\" "
                      "2>/dev/null; true"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("audit chain head ([0-9a-f]{64})"))) << r.err;
  const std::string head = m[1];
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("session ([0-9a-f]{6}); audit log: (\\S+)")))
      << r.err;
  const std::string id = m[1];
  const std::string path = m[2];
  std::vector<std::string> lines;
  {
    std::istringstream in(slurp(path));
    for (std::string l; std::getline(in, l);) {
      lines.push_back(l + "\n");
    }
  }
  ASSERT_GE(lines.size(), 4u) << slurp(path);

  Output v = run(w_, {"log", "--verify", id});
  EXPECT_EQ(v.status, 0) << v.err;
  EXPECT_NE(v.out.find("intact, " + std::to_string(lines.size()) + " lines, chain head " + head),
            std::string::npos)
      << v.out;
  v = run(w_, {"log", "--verify", "--head", head, path});
  EXPECT_EQ(v.status, 0) << v.err;
  Output shown = run(w_, {"log", id});  // readable: the links are left out (--json keeps them)
  EXPECT_NE(shown.out.find("session.start"), std::string::npos) << shown.out;
  EXPECT_EQ(shown.out.find("prev="), std::string::npos) << shown.out;
  EXPECT_EQ(shown.out.find("nonce="), std::string::npos) << shown.out;
  EXPECT_NE(run(w_, {"log", "--json", path}).out.find("\"prev\":\""), std::string::npos);

  // Copies, each with one kind of damage: (lines, the line --verify must name).
  auto copy_with = [&](const std::vector<std::string>& ls) {
    std::string p = w_.root + "/copy.jsonl";
    std::string all;
    for (const auto& l : ls) {
      all += l;
    }
    write_file(p, all, 0644);
    return p;
  };
  auto expect_bad = [&](const std::vector<std::string>& ls, size_t line, const char* what,
                        const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"log", "--verify"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(copy_with(ls));
    Output b = run(w_, args);
    EXPECT_EQ(b.status, 1) << what << ": " << b.out << b.err;
    EXPECT_NE(b.err.find(fmt::format("line {}: ", line)), std::string::npos)
        << what << ": " << b.err;
    EXPECT_NE(b.err.find("agentbox: error: log --verify: "), std::string::npos) << b.err;
  };
  auto changed = lines;
  changed[1][20] = changed[1][20] == 'x' ? 'y' : 'x';
  expect_bad(changed, 3, "one byte changed in line 2");
  auto removed = lines;
  removed.erase(removed.begin() + 1);
  expect_bad(removed, 2, "line 2 removed");
  auto swapped = lines;
  std::swap(swapped[1], swapped[2]);
  expect_bad(swapped, 2, "lines 2 and 3 swapped");
  auto appended = lines;
  std::string forged = lines.back();
  forged.replace(forged.size() - 67, 64, std::string(64, '0'));  // its prev link, zeroed
  appended.push_back(forged);
  expect_bad(appended, lines.size() + 1, "a line appended with a wrong link");
  auto cut = lines;
  cut.pop_back();
  Output c = run(w_, {"log", "--verify", copy_with(cut)});
  EXPECT_EQ(c.status, 0) << "a cut at the end alone verifies: " << c.err;
  c = run(w_, {"log", "--verify", "--head", head, copy_with(cut)});
  EXPECT_EQ(c.status, 1) << "but not against the summary's head: " << c.out;
  EXPECT_NE(c.err.find("removed from its end"), std::string::npos) << c.err;
}

INSTANTIATE_TEST_SUITE_P(As, AuditTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
