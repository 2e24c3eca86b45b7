// The audit line format: versioned, one object per line, hostile bytes cannot break it.
#include "agentbox/audit/audit.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

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
struct TempLog {
  std::string path;
  TempLog() {
    char tmpl[] = "/tmp/agentbox-audit-test-XXXXXX";
    int fd = ::mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    ::close(fd);
    path = tmpl;
  }
  ~TempLog() { ::unlink(path.c_str()); }
  TempLog(const TempLog&) = delete;
  TempLog& operator=(const TempLog&) = delete;
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

}  // namespace
}  // namespace agentbox::audit
