// The audit log's hash chain: what the sink writes verifies, and every kind of edit after the
// fact (a byte, a removed line, two lines swapped, a line appended or cut) breaks it at the
// first line it reaches, named.
#include "agentbox/audit/chain.hpp"

#include <gtest/gtest.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "temp_file.hpp"

namespace agentbox::audit {
namespace {

std::vector<std::string> sealed_lines(size_t n, Chain& chain) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    std::string line = render_line(Event("test.n").num("n", static_cast<int64_t>(i)), "s");
    chain.seal(line);
    out.push_back(line);
  }
  return out;
}

// Feeds `lines` (each with its newline, or not); the break, or nullopt when intact.
std::optional<ChainBreak> check(const std::vector<std::string>& lines,
                                std::string* head = nullptr) {
  ChainVerifier v;
  for (const auto& l : lines) {
    if (!v.feed(l)) {
      break;
    }
  }
  if (head != nullptr) {
    *head = v.head();
  }
  return v.finish();
}

std::string sha256_hex(const std::string& s) {
  Digest d{};
  ::SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return hex(d);
}

TEST(AuditChain, LinksAreTheNonceThenTheSha256OfThePreviousLine) {
  Digest nonce{};
  nonce.fill(0xab);
  Chain chain(nonce);
  auto lines = sealed_lines(3, chain);
  EXPECT_TRUE(lines[0].ends_with(",\"nonce\":\"" + hex(nonce) + "\"}\n")) << lines[0];
  EXPECT_TRUE(lines[1].ends_with(",\"prev\":\"" + sha256_hex(lines[0]) + "\"}\n")) << lines[1];
  EXPECT_TRUE(lines[2].ends_with(",\"prev\":\"" + sha256_hex(lines[1]) + "\"}\n")) << lines[2];
  EXPECT_EQ(chain.head(), sha256_hex(lines[2]));
  EXPECT_EQ(lines[1].rfind("{\"v\":1,", 0), 0u) << "the line is still the same object";
  std::string head;
  EXPECT_EQ(check(lines, &head), std::nullopt);
  EXPECT_EQ(head, chain.head());
}

// The links are SHA-256 (FIPS 180-2's vectors, one block, two blocks, a million bytes), whatever
// implementation Hasher uses.
TEST(AuditChain, HasherIsSha256) {
  Hasher h;
  Digest d{};
  ASSERT_TRUE(h.digest("", d));
  EXPECT_EQ(hex(d), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ASSERT_TRUE(h.digest("abc", d));
  EXPECT_EQ(hex(d), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  ASSERT_TRUE(h.digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", d));
  EXPECT_EQ(hex(d), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  ASSERT_TRUE(h.digest(std::string(1000000, 'a'), d));
  EXPECT_EQ(hex(d), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(AuditChain, NoncesDiffer) {
  auto a = Chain::start();
  auto b = Chain::start();
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->head(), b->head());
  EXPECT_EQ(a->head().size(), 64u);
}

class AuditChainTamper : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Chain::start();
    ASSERT_TRUE(c);
    lines_ = sealed_lines(6, *c);
    ASSERT_EQ(check(lines_), std::nullopt);
  }
  std::vector<std::string> lines_;
};

TEST_F(AuditChainTamper, EveryByteChangedBreaksTheChain) {
  // Each byte of line 3 (index 2), its newline included: the break is at line 4, or at line 3
  // when the change hits its own link.
  for (size_t i = 0; i < lines_[2].size(); ++i) {
    auto t = lines_;
    t[2][i] = static_cast<char>(t[2][i] ^ 0x01);
    auto b = check(t);
    ASSERT_TRUE(b) << "byte " << i;
    EXPECT_TRUE(b->line == 3 || b->line == 4) << "byte " << i << ": line " << b->line;
  }
  auto t = lines_;
  t[2][20] = 'X';
  auto b = check(t);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->line, 4u);
  EXPECT_NE(b->reason.find("line 3 was changed"), std::string::npos) << b->reason;
}

TEST_F(AuditChainTamper, ARemovedLineBreaksIt) {
  for (size_t drop = 0; drop + 1 < lines_.size(); ++drop) {  // the last: only the head shows it
    auto t = lines_;
    t.erase(t.begin() + static_cast<ptrdiff_t>(drop));
    auto b = check(t);
    ASSERT_TRUE(b) << "line " << drop + 1 << " removed";
    EXPECT_EQ(b->line, drop == 0 ? 1u : drop + 1) << b->reason;
  }
  auto t = lines_;
  t.pop_back();
  std::string head;
  EXPECT_EQ(check(t, &head), std::nullopt) << "a cut at the end verifies...";
  std::string full;
  ASSERT_EQ(check(lines_, &full), std::nullopt);
  EXPECT_NE(head, full) << "...to another head";
}

TEST_F(AuditChainTamper, SwappedLinesBreakIt) {
  for (size_t i = 0; i + 1 < lines_.size(); ++i) {
    auto t = lines_;
    std::swap(t[i], t[i + 1]);
    auto b = check(t);
    ASSERT_TRUE(b) << "lines " << i + 1 << " and " << i + 2 << " swapped";
    EXPECT_EQ(b->line, i + 1) << b->reason;
  }
}

TEST_F(AuditChainTamper, AnAppendedLineWithAWrongLinkBreaksIt) {
  auto t = lines_;
  Digest other{};
  Chain forged(other);
  auto extra = sealed_lines(2, forged);
  t.push_back(extra[1]);  // a prev link, to a line that is not ours
  auto b = check(t);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->line, 7u);
  t.back() = extra[0];  // a second nonce
  b = check(t);
  ASSERT_TRUE(b);
  EXPECT_NE(b->reason.find("second chain"), std::string::npos) << b->reason;
  t.back() = "{\"v\":1,\"type\":\"forged\"}\n";  // no link at all
  b = check(t);
  ASSERT_TRUE(b);
  EXPECT_NE(b->reason.find("chain link"), std::string::npos) << b->reason;
}

TEST_F(AuditChainTamper, ACutInsideALineAndAnEmptyLogBreakIt) {
  auto t = lines_;
  t.back().resize(t.back().size() / 2);
  auto b = check(t);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->line, 6u);
  EXPECT_NE(b->reason.find("without a newline"), std::string::npos);
  b = check({});
  ASSERT_TRUE(b);
  EXPECT_EQ(b->line, 0u);
}

// The sink seals what it accepts in file order, through every path: held and not, the buffer
// overflowing, repeats folded, the size cap's truncation line and the final line past it.
std::vector<std::string> file_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  std::vector<std::string> out;
  for (size_t at = 0; at < all.size();) {
    size_t nl = all.find('\n', at);
    size_t end = nl == std::string::npos ? all.size() : nl + 1;
    out.push_back(all.substr(at, end - at));
    at = end;
  }
  return out;
}

TEST(AuditChainSink, EveryWritePathKeepsTheChain) {
  TempFile log;
  std::string head;
  {
    auto sink = JsonlSink::open(log.path, "s", {.max_bytes = 300 * 1024, .coalesce = true});
    ASSERT_TRUE(sink);
    sink->emit(Event("session.start"));
    sink->hold();
    for (int i = 0; i < 2000; ++i) {  // past the 64 KiB buffer, then past the cap
      sink->emit(Event("test.n").num("n", i).str("pad", std::string(100, 'p')));
      if (i % 100 == 0) {
        sink->emit(Event("dns.deny").str("name", "x.example").coalesce("x.example"));
        sink->release();
        sink->hold();
      }
    }
    sink->release();
    sink->final(Event("session.end").num("exit", 0));
    head = sink->chain_head();
    EXPECT_GT(sink->losses().truncated_lines, 0u);
  }
  auto lines = file_lines(log.path);
  ASSERT_GT(lines.size(), 1000u);
  EXPECT_NE(lines[lines.size() - 2].find("audit.truncated"), std::string::npos);
  std::string got;
  auto b = check(lines, &got);
  EXPECT_EQ(b, std::nullopt) << "line " << b->line << ": " << b->reason;
  EXPECT_EQ(got, head) << "the summary's head is the last line's";
}

// The crash handler writes held lines as they were sealed: the log still verifies.
TEST(AuditChainSink, LinesWrittenByTheCrashHandlerVerify) {
  TempFile log;
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto sink = JsonlSink::open(log.path, "s");
    if (!sink) {
      ::_exit(3);
    }
    sink->emit(Event("session.start"));
    sink->hold();
    sink->emit(Event("test.n").num("n", 1));
    sink->emit(Event("test.n").num("n", 2));
    ::raise(SIGSEGV);
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  auto lines = file_lines(log.path);
  ASSERT_EQ(lines.size(), 3u);
  auto b = check(lines);
  EXPECT_EQ(b, std::nullopt) << "line " << b->line << ": " << b->reason;
}

}  // namespace
}  // namespace agentbox::audit
