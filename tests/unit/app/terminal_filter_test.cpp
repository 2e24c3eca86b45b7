// The terminal filter: what passes, what is dropped, read boundaries, 8-bit and UTF-8 forms.
#include "agentbox/app/terminal_filter.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace agentbox::app {
namespace {

std::string once(std::string_view in, TerminalFilterOptions o = {}) {
  TerminalFilter f(std::move(o));
  std::string out;
  f.feed(in, out);
  f.finish();
  return out;
}

// Every split point and byte-by-byte give what one read gives.
std::string split_everywhere(std::string_view in, TerminalFilterOptions o = {}) {
  const std::string whole = once(in, o);
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    TerminalFilter f(o);
    std::string out;
    f.feed(in.substr(0, cut), out);
    f.feed(in.substr(cut), out);
    f.finish();
    EXPECT_EQ(out, whole) << "cut at " << cut;
  }
  TerminalFilter f(o);
  std::string out;
  for (char c : in) {
    f.feed(std::string_view(&c, 1), out);
  }
  f.finish();
  EXPECT_EQ(out, whole) << "byte by byte";
  return whole;
}

TEST(TerminalFilter, OrdinaryOutputPassesUnchanged) {
  const std::vector<std::string> pass = {
      "hello, world\r\n",
      "\x1b[1;31mred\x1b[0m",                 // SGR
      "\x1b[38;2;10;20;30mtrue\x1b[m",        // true colour
      "\x1b[38:5:196mcolon\x1b[m",            // sub-parameters
      "\x1b[?1049h\x1b[H\x1b[2J\x1b[?1049l",  // alternate screen, home, clear
      "\x1b[?2004h\x1b[?1000h\x1b[?1006h",    // bracketed paste, mouse modes
      "\x1b[?25l\x1b[?25h\x1b[5;10r\x1b[3A\x1b[K",
      "\x1b[6n\x1b[c\x1b[>c\x1b[?u\x1b[?2026$p\x1b[18t\x1b[14t\x1b[22;0t\x1b[23;0t",  // reports
      "\x1b"
      "7\x1b"
      "8\x1b(B\x1b)0\x1b=\x1b>\x1b"
      "c\x1bM",                                                            // ESC sequences
      "\x1b]0;my title\x07\x1b]2;title \xc3\xa9\x1b\\",                    // titles (BEL and ST)
      "\x1b]4;1;rgb:ff/00/00\x07\x1b]11;?\x07\x1b]104\x07\x1b]112\x1b\\",  // colours
      "caf\xc3\xa9 \xe2\x94\x80\xe2\x95\x90 \xf0\x9f\x98\x80 \xc4\x9d\xc4\x9c",  // UTF-8
      std::string("nul\0bell\x07tab\t\x0e\x0f", 16),
      "\x1b[1\n2m",  // a C0 control inside a CSI is executed in place and kept
  };
  for (const auto& s : pass) {
    EXPECT_EQ(split_everywhere(s), s) << testing::PrintToString(s);
  }
}

TEST(TerminalFilter, DropsWhatTypesBackOrActsOutsideTheScreen) {
  struct Case {
    std::string in;
    Filtered why;
  };
  const std::vector<Case> cases = {
      {"\x1b]52;c;aGVsbG8=\x07", Filtered::kClipboard},
      {"\x1b]52;c;?\x1b\\", Filtered::kClipboard},
      {"\x1b]052;p;aGk=\x07", Filtered::kClipboard},
      {"\x1b[21t", Filtered::kTitleReport},
      {"\x1b[20t", Filtered::kTitleReport},
      {"\x1b[021;0t", Filtered::kTitleReport},
      {"\x1b[1;1;2;2;1;1*y", Filtered::kScreenReport},
      {"\x1b[5i", Filtered::kPrinter},
      {"\x1b[?5i", Filtered::kPrinter},
      {"\x1b]8;;https://example.test\x1b\\link\x1b]8;;\x1b\\", Filtered::kOsc},
      {"\x1b]50;?\x07", Filtered::kOsc},
      {"\x1b]7;file://host/tmp\x07", Filtered::kOsc},
      {"\x1b]1337;File=name=eA==:AAAA\x07", Filtered::kOsc},
      {"\x1b]777;notify;a;b\x07", Filtered::kOsc},
      {"\x1b];no number\x07", Filtered::kOsc},
      {"\x1bP$qm\x1b\\", Filtered::kDcs},                        // DECRQSS
      {"\x1bP+q544e\x1b\\", Filtered::kDcs},                     // XTGETTCAP
      {"\x1bP0;1|17/6563686f\x1b\\", Filtered::kDcs},            // DECUDK
      {"\x1bPtmux;hello\x1b\\", Filtered::kDcs},                 // tmux passthrough
      {"\x1b_Ga=t,t=f;L2V0Yy9wYXNzd2Q=\x1b\\", Filtered::kApc},  // kitty graphics, file
      {"\x1b^privacy\x1b\\", Filtered::kPmSos},
      {"\x1bXsos\x1b\\", Filtered::kPmSos},
  };
  for (const auto& c : cases) {
    TerminalFilter f;
    std::string out;
    f.feed("a" + c.in + "b", out);
    f.finish();
    // The link text of OSC 8 is text and stays.
    std::string want = c.in.find("link") != std::string::npos ? "alinkb" : "ab";
    EXPECT_EQ(out, want) << testing::PrintToString(c.in);
    EXPECT_EQ(f.count(c.why), c.why == Filtered::kOsc && want == "alinkb" ? 2u : 1u)
        << testing::PrintToString(c.in) << " as " << filtered_name(c.why);
    EXPECT_EQ(split_everywhere("a" + c.in + "b"), want);
  }
}

TEST(TerminalFilter, EightBitAndUtf8C1FormsAreControls) {
  // 0x9D OSC, 0x9B CSI, 0x90 DCS, 0x9F APC, 0x9C ST: raw, and as U+0080-U+009F (C2 xx).
  EXPECT_EQ(split_everywhere("a\x9d"
                             "52;c;aGk=\x9c"
                             "b"),
            "ab");
  EXPECT_EQ(split_everywhere("a\xc2\x9d"
                             "52;c;aGk=\xc2\x9c"
                             "b"),
            "ab");
  EXPECT_EQ(split_everywhere("a\x9b"
                             "21tb"),
            "ab");
  EXPECT_EQ(split_everywhere("a\xc2\x9b"
                             "21tb"),
            "ab");
  EXPECT_EQ(split_everywhere("a\x90$qm\x9c"
                             "b"),
            "ab");
  EXPECT_EQ(split_everywhere("a\xc2\x9f"
                             "Gx\xc2\x9c"
                             "b"),
            "ab");
  // Allowed kinds pass only in their 7-bit form: an 8-bit OSC title or ST is dropped.
  EXPECT_EQ(split_everywhere("a\x9d"
                             "2;t\x07"
                             "b"),
            "ab");
  EXPECT_EQ(split_everywhere("a\x1b]2;t\xc2\x9c"
                             "b"),
            "ab");
  // An 8-bit CSI that is allowed passes as it came; a lone C1 that starts nothing too.
  EXPECT_EQ(split_everywhere("a\x9b"
                             "1mb"),
            "a\x9b"
            "1mb");
  EXPECT_EQ(split_everywhere("a\xc2\x85"
                             "b"),
            "a\xc2\x85"
            "b");
  // Continuation bytes 80-9F of a well-formed character are text: U+011D is C4 9D.
  EXPECT_EQ(split_everywhere("\xc4\x9d"
                             "52;c;aGk=\xc4\x9c"),
            "\xc4\x9d"
            "52;c;aGk=\xc4\x9c");
  // ... but not after a lead that cannot take them (E0 needs A0-BF): 9D is then an OSC.
  EXPECT_EQ(split_everywhere("\xe0\x9d"
                             "52;c;aGk=\x07"
                             "b"),
            "\xe0"
            "b");
  // A lone C2 is text, and what follows it is read anew.
  EXPECT_EQ(split_everywhere("\xc2"
                             "A\xc2\x1b[21tB"),
            "\xc2"
            "A\xc2"
            "B");
}

TEST(TerminalFilter, AbortedSequencesNeverLeaveAPrefix) {
  // A dangling ESC kept in the output would turn the text after a dropped sequence into a new
  // sequence at the terminal ("ESC" + "]52;..." as text).
  EXPECT_EQ(split_everywhere("\x1b\x1b]52;c;aGk=\x07]52;c;aGk=\x07"), "]52;c;aGk=\x07");
  EXPECT_EQ(split_everywhere("\x1b[1\x1b[21t"), "");
  EXPECT_EQ(split_everywhere("\x1b[1\x18"
                             "x"),
            "\x18"
            "x");                                         // CAN cancels; the CAN passes
  EXPECT_EQ(split_everywhere("\x1b]2;abc\x1b[21t"), "");  // ESC ends the title unfinished
  EXPECT_EQ(split_everywhere("\x1b]2;abc\x1b"
                             "7x"),
            "\x1b"
            "7x");
  // C0 between ESC and its introducer: the terminal executes it and still reads a CSI.
  EXPECT_EQ(split_everywhere("\x1b\n[21t"), "");
  EXPECT_EQ(split_everywhere("\x1b\nP$qm\x1b\\"), "");
  // A parameter after an intermediate: terminals ignore the whole CSI; so does the filter.
  EXPECT_EQ(split_everywhere("\x1b[ 1qx"), "x");
  // tmux's passthrough doubles the inner ESC; to a terminal the first ESC ends the DCS, the
  // second starts the OSC 52: both dropped, and the lone ST left over is harmless.
  EXPECT_EQ(split_everywhere("\x1bPtmux;\x1b\x1b]52;c;aGk=\x07\x1b\\"), "\x1b\\");
  // A sequence still open when the box ends is dropped.
  EXPECT_EQ(split_everywhere("x\x1b]2;unfinished"), "x");
  EXPECT_EQ(split_everywhere("x\x1b["), "x");
}

TEST(TerminalFilter, AllowListPassesNamedOscButNeverAClipboardRead) {
  TerminalFilterOptions o;
  o.osc = {8, 52};
  const std::string link = "\x1b]8;;https://example.test\x1b\\text\x1b]8;;\x1b\\";
  EXPECT_EQ(split_everywhere(link, o), link);
  const std::string copy = "\x1b]52;c;aGVsbG8=\x07";
  EXPECT_EQ(split_everywhere(copy, o), copy);
  EXPECT_EQ(split_everywhere("\x1b]52;c;?\x07", o), "");
  EXPECT_EQ(split_everywhere("\x1b]52;c;?x\x1b\\", o), "");
  EXPECT_EQ(split_everywhere("\x1b]52;c\x07", o), "");
  EXPECT_EQ(split_everywhere("\x1b]9;notify\x07", o), "");
}

// The bulk paths (runs of text and of well-formed UTF-8, runs of CSI parameters) against the
// state machine alone: fed one byte at a time, a read never holds a whole character or run, so
// every byte goes through it. Random outputs drawn from the bytes that matter (ESC, the
// introducers, C1, UTF-8 leads and continuations, CSI parameters and finals), fixed seeds.
TEST(TerminalFilter, BulkPathsMatchTheByteByByteStateMachine) {
  const std::string alphabet =
      std::string("\x1b\x1b\x1b[[]P_^X\\\x07\x18\x1a\n\x7f 0123456789;:<=>?!\"*$mtyiHABC") +
      "\x80\x90\x9b\x9c\x9d\x9f\xa0\xbf\xc0\xc1\xc2\xc3\xdf\xe0\xe2\xed\xef\xf0\xf4"
      "\xf5\xff\x94\x80\x8f\x9f";
  // A read that ends where a run of eight plain bytes ends: nothing after it is looked at.
  for (std::string_view after : {"ZZZZZZZZ", "\x1b[31m", "\xe2\x94\x80"}) {
    const std::string buf = std::string("abcdefgh") + std::string(after);
    TerminalFilter f;
    std::string out;
    f.feed(std::string_view(buf).substr(0, 8), out);
    EXPECT_EQ(out, "abcdefgh");
  }
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int round = 0; round < 3000; ++round) {
    std::string in;
    const size_t len = 1 + next() % 200;
    for (size_t k = 0; k < len; ++k) {
      const uint64_t r = next();
      in.push_back(r % 4 == 0 ? static_cast<char>('a' + r % 26)
                              : alphabet[(r >> 8) % alphabet.size()]);
    }
    TerminalFilterOptions o;
    if (round % 3 == 0) {
      o.osc = {8, 52};
    }
    TerminalFilter bytewise(o);
    std::string slow;
    for (char c : in) {
      bytewise.feed(std::string_view(&c, 1), slow);
    }
    bytewise.finish();
    TerminalFilter whole(o);
    std::string fast;
    whole.feed(in, fast);
    whole.finish();
    ASSERT_EQ(fast, slow) << testing::PrintToString(in);
    ASSERT_EQ(whole.total(), bytewise.total()) << testing::PrintToString(in);
  }
}

TEST(TerminalFilter, MemoryIsBoundedAndLongStringsAreDropped) {
  TerminalFilter f;
  std::string out;
  // An unterminated OSC title longer than the cap: dropped, and what follows the terminator
  // passes again.
  f.feed("\x1b]2;", out);
  const std::string chunk(1 << 16, 'x');
  for (size_t i = 0; i < (TerminalFilter::kMaxSequence >> 16) + 4; ++i) {
    f.feed(chunk, out);
  }
  f.feed(
      "\x07"
      "after",
      out);
  EXPECT_EQ(out, "after");
  EXPECT_EQ(f.count(Filtered::kTooLong), 1u);
  // A dropped DCS holds nothing however long it is.
  out.clear();
  f.feed("\x1bP", out);
  for (int i = 0; i < 64; ++i) {
    f.feed(chunk, out);
  }
  f.feed("\x1b\\ok", out);
  EXPECT_EQ(out, "ok");
  std::string long_csi = "\x1b[" + std::string(1000, '1') + "m";
  out.clear();
  f.feed(long_csi + "z", out);
  EXPECT_EQ(out, "z");
}

}  // namespace
}  // namespace agentbox::app
