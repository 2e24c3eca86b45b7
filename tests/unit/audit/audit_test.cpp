// The audit line format: versioned, one object per line, hostile bytes cannot break it.
#include "agentbox/audit/audit.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "temp_file.hpp"

namespace agentbox::audit {
namespace {

TEST(Audit, LineHasSchemaTimestampSessionAndFields) {
  MemorySink sink("s1");
  std::vector<std::string> hosts{"a.example", "b.example"};
  sink.emit(Event("net.connect")
                .str("host", "a.example")
                .num("port", 443)
                .boolean("allowed", true)
                .strs("hosts", hosts));
  std::regex re(
      R"(\{"v":1,"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","session":"s1","type":"net.connect","host":"a.example","port":443,"allowed":true,"hosts":\["a.example","b.example"\]\}\n)");
  EXPECT_TRUE(std::regex_match(sink.lines(), re)) << sink.lines();
  EXPECT_EQ(sink.tally().count("net.connect"), 1u);
  EXPECT_EQ(sink.tally().count("other"), 0u);
}

// Sinks that summarise read fields back: a value can never be mistaken for a key.
TEST(Audit, FieldReadsBackStringsAndNumbers) {
  std::vector<std::string> list{"name", "x"};
  Event ev("dns.query");
  ev.str("reason", R"(a","name":"fake)")
      .strs("list", list)
      .str("name", "evil\".example\x1b")
      .num("port", 443)
      .boolean("reset", true);
  EXPECT_EQ(ev.field("name"), R"(evil\".example\u001b)");
  EXPECT_EQ(ev.field("port"), "443");
  EXPECT_EQ(ev.field("reset"), "true");
  EXPECT_EQ(ev.field("reason"), R"(a\",\"name\":\"fake)");
  EXPECT_FALSE(ev.field("list"));
  EXPECT_FALSE(ev.field("missing"));
  EXPECT_FALSE(ev.field("ame"));
}

TEST(Audit, EscapesControlQuotesAndInvalidUtf8) {
  std::string out;
  json_escape(std::string("a\"b\\c\n\x01\xff\xc3\xa9\xed\xa0\x80", 13), out);
  EXPECT_EQ(out, "a\\\"b\\\\c\\n\\u0001\\ufffd\xc3\xa9\\ufffd\\ufffd\\ufffd");
}

TEST(Audit, NulByteCannotTruncate) {
  std::string out;
  json_escape(std::string("x\0y", 3), out);
  EXPECT_EQ(out, "x\\u0000y");
}

// A temporary audit file, removed at the end of the test.
struct TempLog : TempFile {
  [[nodiscard]] std::vector<std::string> ids() const {  // the "n" field of each line, in order
    std::ifstream in(path);
    std::vector<std::string> out;
    std::string line;
    std::regex n(R"("n":(\d+))");
    while (std::getline(in, line)) {
      std::smatch m;
      out.push_back(std::regex_search(line, m, n) ? m[1].str() : "?");
    }
    return out;
  }
};

Event numbered(int n) {
  Event e("test.n");
  e.num("n", n);
  return e;
}

TEST(AuditHold, HeldLinesGoOutAtReleaseInOrder) {
  TempLog log;
  auto sink = JsonlSink::open(log.path, "s");
  ASSERT_TRUE(sink);
  sink->emit(numbered(1));
  EXPECT_EQ(log.ids(), (std::vector<std::string>{"1"})) << "not held: written at once";
  sink->hold();
  sink->emit(numbered(2));
  sink->emit(numbered(3));
  EXPECT_EQ(log.ids(), (std::vector<std::string>{"1"})) << "held until release";
  sink->release();
  EXPECT_EQ(log.ids(), (std::vector<std::string>{"1", "2", "3"}));
  sink->emit(numbered(4));
  EXPECT_EQ(log.ids(), (std::vector<std::string>{"1", "2", "3", "4"})) << "released: at once";
  EXPECT_EQ(sink->write_errors(), 0u);
  EXPECT_EQ(sink->tally().count("test.n"), 4u);
}

TEST(AuditHold, MoreThanTheBufferKeepsEveryLineInOrder) {
  TempLog log;
  auto sink = JsonlSink::open(log.path, "s");
  ASSERT_TRUE(sink);
  sink->hold();
  std::string pad(900, 'p');
  for (int i = 0; i < 300; ++i) {  // ~300 KiB: the 64 KiB buffer fills several times
    Event e = numbered(i);
    e.str("pad", pad);
    sink->emit(e);
  }
  Event big = numbered(300);
  big.str("pad", std::string(100 * 1024, 'b'));  // larger than the buffer: written directly
  sink->emit(big);
  sink->emit(numbered(301));
  sink->release();
  auto ids = log.ids();
  ASSERT_EQ(ids.size(), 302u);
  for (int i = 0; i < 302; ++i) {
    EXPECT_EQ(ids[static_cast<size_t>(i)], std::to_string(i));
  }
}

TEST(AuditHold, DestructorWritesWhatIsHeld) {
  TempLog log;
  {
    auto sink = JsonlSink::open(log.path, "s");
    ASSERT_TRUE(sink);
    JsonlSink moved(std::move(*sink));  // the session keeps it on the heap after a move
    moved.hold();
    moved.emit(numbered(7));
    moved.emit(numbered(8));
    EXPECT_TRUE(log.ids().empty());
  }
  EXPECT_EQ(log.ids(), (std::vector<std::string>{"7", "8"}));
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

// A supervisor that crashes mid-iteration still leaves every emitted line in the log.
TEST(AuditHold, FatalSignalWritesWhatIsHeld) {
  for (int sig : {SIGSEGV, SIGABRT}) {
    TempLog log;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto sink = JsonlSink::open(log.path, "s");
      if (!sink) {
        ::_exit(3);
      }
      sink->hold();
      sink->emit(numbered(1));
      sink->emit(numbered(2));
      ::raise(sig);
      ::_exit(4);  // not reached: the default disposition ends the process
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    // Killed by the signal. Under ASan the previous disposition is the sanitizer's handler,
    // which reports the crash and then aborts (abort_on_error=1) or exits non-zero.
    const bool by_signal = WIFSIGNALED(status) && WTERMSIG(status) == sig;
    const bool by_sanitizer = kAsan && ((WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) ||
                                        (WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
                                         WEXITSTATUS(status) != 3 && WEXITSTATUS(status) != 4));
    EXPECT_TRUE(by_signal || by_sanitizer) << "signal " << sig << ", status " << status;
    EXPECT_EQ(log.ids(), (std::vector<std::string>{"1", "2"})) << "signal " << sig;
  }
}

// ---- integrity (issue 14): losses counted, a cap, coalesced repeats --------------------------

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

bool is_line(const std::string& l) {  // a whole line of ours: one object, nothing torn
  return l.rfind("{\"v\":1,", 0) == 0 && !l.empty() && l.back() == '}';
}

// /dev/full answers every write with ENOSPC: each line lost is counted, and the app is told once.
TEST(AuditIntegrity, FailedWritesAreCountedInLines) {
  auto sink = JsonlSink::open("/dev/full", "s");
  ASSERT_TRUE(sink);
  int told = 0;
  sink->on_loss([&] { ++told; });
  sink->emit(numbered(1));
  sink->emit(numbered(2));
  sink->hold();
  for (int i = 0; i < 5; ++i) {
    sink->emit(numbered(3 + i));
  }
  sink->release();
  Losses l = sink->losses();
  EXPECT_EQ(l.failed_lines, 7u);
  EXPECT_EQ(l.first_errno, ENOSPC);
  EXPECT_TRUE(l.lost());
  EXPECT_EQ(told, 1);
  int late = 0;  // set after the loss: told at once
  sink->on_loss([&] { ++late; });
  EXPECT_EQ(late, 1);
}

// A write cut short by the file size limit leaves a torn line; the next line still starts on a
// line of its own, and the torn one is counted as lost.
TEST(AuditIntegrity, TornWriteIsEndedBeforeTheNextLine) {
  TempLog log;
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    auto sink = JsonlSink::open(log.path, "s");
    if (!sink) {
      ::_exit(3);
    }
    rlimit rl{};
    ::getrlimit(RLIMIT_FSIZE, &rl);
    rlimit small = rl;
    small.rlim_cur = 220;  // inside the second line (each is ~150 bytes with its chain link)
    ::setrlimit(RLIMIT_FSIZE, &small);
    sink->emit(numbered(1));
    sink->emit(numbered(2));
    sink->emit(numbered(3));
    ::setrlimit(RLIMIT_FSIZE, &rl);
    sink->emit(numbered(4));
    Losses l = sink->losses();
    ::_exit(l.failed_lines == 2 && l.first_errno == EFBIG ? 0 : 5);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto lines = lines_of(log.path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(is_line(lines[0]));
  EXPECT_FALSE(is_line(lines[1])) << "the torn line";
  EXPECT_TRUE(is_line(lines[2]));
  EXPECT_NE(lines[2].find("\"n\":4"), std::string::npos);
}

TEST(AuditIntegrity, SizeCapEndsWithATruncationLineAndTheFinalLine) {
  TempLog log;
  {
    auto sink = JsonlSink::open(log.path, "s", {.max_bytes = 4096, .coalesce = true});
    ASSERT_TRUE(sink);
    int told = 0;
    sink->on_loss([&] { ++told; });
    sink->hold();
    for (int i = 0; i < 1000; ++i) {
      sink->emit(numbered(i));
    }
    sink->release();
    sink->final(Event("session.end").num("exit", 0));
    Losses l = sink->losses();
    EXPECT_EQ(l.failed_lines, 0u);
    EXPECT_GT(l.truncated_lines, 900u);
    EXPECT_EQ(told, 1);
  }
  auto lines = lines_of(log.path);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_NE(lines[lines.size() - 2].find("\"type\":\"audit.truncated\",\"max_bytes\":4096"),
            std::string::npos);
  EXPECT_NE(lines.back().find("\"type\":\"session.end\""), std::string::npos);
  size_t bytes = 0;
  for (size_t i = 0; i + 2 < lines.size(); ++i) {
    bytes += lines[i].size() + 1;
  }
  EXPECT_LE(bytes, 4096u);
  EXPECT_EQ(std::count_if(lines.begin(), lines.end(), is_line),
            static_cast<ptrdiff_t>(lines.size()));
}

// 1000 denials of one name: a line for the first of each second, the rest in counts that add up.
TEST(AuditIntegrity, RepeatsAreCoalescedPerKeyPerSecond) {
  TempLog log;
  {
    auto sink = JsonlSink::open(log.path, "s");
    ASSERT_TRUE(sink);
    for (int i = 0; i < 1000; ++i) {
      sink->emit(Event("dns.query").str("name", "x.example").coalesce("x.example"));
      if (i % 100 == 0) {
        sink->emit(Event("dns.query").str("name", "y.example").coalesce("y.example"));
        sink->emit(numbered(i));  // not coalescable: always written
      }
    }
    EXPECT_GE(sink->losses().coalesced, 1000u - 10u);
    EXPECT_FALSE(sink->losses().lost());
  }
  std::map<std::string, uint64_t> seen;
  size_t numbered_lines = 0;
  std::regex rep(R"re("type":"audit.repeated","of":"dns.query","key":"([a-z.]+)","count":(\d+))re");
  std::regex name(R"re("type":"dns.query","name":"([a-z.]+)")re");
  auto lines = lines_of(log.path);
  for (const auto& l : lines) {
    std::smatch m;
    if (std::regex_search(l, m, rep)) {
      seen[m[1].str()] += std::stoull(m[2].str());
    } else if (std::regex_search(l, m, name)) {
      seen[m[1].str()] += 1;
    } else if (l.find("test.n") != std::string::npos) {
      ++numbered_lines;
    }
  }
  EXPECT_EQ(seen["x.example"], 1000u);
  EXPECT_EQ(seen["y.example"], 10u);
  EXPECT_EQ(numbered_lines, 10u);
  EXPECT_LE(lines.size(), 40u) << "1020 events, a few seconds at most";
}

}  // namespace
}  // namespace agentbox::audit
