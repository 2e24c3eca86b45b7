// The terminal filter end to end: the box prints every sequence that would type back into its
// input or act outside the screen; the test plays your terminal (a pty it owns) and answers
// every query it sees as a terminal would. Judged outside the box: the bytes that reached the
// terminal, and what the box got back on its input. As root and as the unprivileged user.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "outer_terminal.hpp"

namespace agentbox::it {
namespace {

// A query the box sends, and how a terminal that honours it answers.
struct Query {
  std::string ask;
  std::string answer;
};

const std::vector<Query>& queries() {
  static const std::vector<Query> q = {
      {"\x1b]52;c;?\x07", "\x1b]52;c;c2VjcmV0LWNsaXA=\x1b\\"},  // your clipboard, typed back
      {"\x1b[21t", "\x1b]levil;id\x1b\\"},                      // the title the box set
      {"\x1b[20t", "\x1b]Licon\x1b\\"},
      {"\x1bP$qm\x1b\\", "\x1bP1$r0m\x1b\\"},            // DECRQSS
      {"\x1bP+q544e\x1b\\", "\x1bP1+r544e=3234\x1b\\"},  // XTGETTCAP
      {"\x1b]50;?\x07", "\x1b]50;fixed\x07"},            // font
      {"\x1b[1;1;1;1;2;2*y", "\x1bP1!~ABCD\x1b\\"},      // DECRQCRA: what is on your screen
      {"\xc2\x9d"
       "52;c;?\xc2\x9c",
       "\x1b]52;c;c2VjcmV0LWNsaXA=\x1b\\"},                            // 8-bit, UTF-8 C1
      {"\x1b_Ga=q,t=f;L2V0Yy9wYXNzd2Q=\x1b\\", "\x1b_Gi=1;OK\x1b\\"},  // kitty reads a file
  };
  return q;
}
// Sequences that act without an answer.
const std::vector<std::string> kActions = {
    "\x1b]52;c;aGVsbG8=\x07",                     // clipboard write
    "\x1bP0;1|17/6563686f\x1b\\",                 // DECUDK: F6 types `echo`
    "\x1b]8;;https://example.test/\x1b\\",        // hyperlink
    "\x1b]1337;File=name=eA==;inline=0:eA==\x07"  // iTerm2 file download
};
const std::string kHarmless = "\x1b[1mBOLD\x1b[0m\x1b]2;evil;id\x07";
const std::string kCursorQuery = "\x1b[6n";  // passes: the answer is digits
const std::string kCursorAnswer = "\x1b[7;9R";

std::string hex(const std::string& s) {
  std::string h;
  for (unsigned char c : s) {
    h += fmt::format("{:02x}", c);
  }
  return h;
}

// The program in the box: prints everything, then reports what came back on its input.
const char* kBoxProgram = R"(
import os, select, sys, time, tty
tty.setraw(0)
data = bytes.fromhex(sys.argv[1])
os.write(1, b"<start>" + data + b"<sent>")
got = b""
end = time.time() + 1.5
while time.time() < end:
    if select.select([0], [], [], 0.1)[0]:
        got += os.read(0, 4096)
os.write(1, b"<typed-back:" + got.hex().encode() + b">\r\n")
)";

class TerminalTest : public BoxWorldTest {
 protected:
  // `[terminal]` for this run ("" for none), through XDG_CONFIG_HOME.
  RunOptions with_config(const std::string& terminal) {
    RunOptions o;
    std::string dir = w_.root + "/xdg";
    std::filesystem::create_directories(dir + "/agentbox");
    write_file(dir + "/agentbox/config.toml", terminal.empty() ? "" : "[terminal]\n" + terminal);
    chown_tree(dir, w_.as.uid, w_.as.gid);
    o.env["XDG_CONFIG_HOME"] = dir;
    return o;
  }
  // Runs the box program under a terminal that answers every query once. Returns what reached
  // the terminal and fills `typed_back` with what the box read on its input.
  std::string session(RunOptions o, std::string& typed_back) {
    std::string all;
    for (const auto& q : queries()) {
      all += q.ask;
    }
    for (const auto& a : kActions) {
      all += a;
    }
    all += kHarmless + kCursorQuery;
    OuterTerminal t;
    EXPECT_TRUE(t.ok());
    std::vector<bool> answered(queries().size() + 1, false);
    t.on_output = [&](const std::string& seen) {
      for (size_t i = 0; i < queries().size(); ++i) {
        if (!answered[i] && seen.find(queries()[i].ask) != std::string::npos) {
          answered[i] = true;
          t.type(queries()[i].answer);
        }
      }
      if (!answered.back() && seen.find(kCursorQuery) != std::string::npos) {
        answered.back() = true;
        t.type(kCursorAnswer);
      }
    };
    pid_t pid =
        t.start(w_, {"run", "-q", "--", "python3", "-c", kBoxProgram, hex(all)}, std::move(o));
    EXPECT_GT(pid, 0);
    EXPECT_TRUE(t.wait_for_text("\r\n", 30000)) << t.seen();
    EXPECT_EQ(t.finish(), 0) << t.seen();
    const std::string& seen = t.seen();
    size_t at = seen.find("<typed-back:");
    size_t end = seen.find('>', at);
    EXPECT_NE(at, std::string::npos) << seen;
    typed_back = at == std::string::npos ? "" : seen.substr(at + 12, end - at - 12);
    return seen;
  }
};

TEST_P(TerminalTest, FilteredSequencesNeverReachTheTerminalAndNothingIsTypedBack) {
  std::string typed_back;
  std::string seen = session(with_config(""), typed_back);
  for (const auto& q : queries()) {
    EXPECT_EQ(seen.find(q.ask), std::string::npos) << hex(q.ask) << " reached the terminal";
  }
  for (const auto& a : kActions) {
    EXPECT_EQ(seen.find(a), std::string::npos) << hex(a) << " reached the terminal";
  }
  EXPECT_EQ(seen.find("]52;"), std::string::npos) << hex(seen);
  // What ordinary programs print arrives unchanged, and the one answer that may come back
  // (the cursor position) is the only thing the box read.
  EXPECT_NE(seen.find("<start>" + kHarmless + kCursorQuery + "<sent>"), std::string::npos)
      << hex(seen);
  EXPECT_EQ(typed_back, hex(kCursorAnswer));
  std::string log = all_audit_logs(w_);
  EXPECT_NE(log.find("\"type\":\"terminal.filtered\",\"clipboard\":2,\"title_report\":2,"
                     "\"screen_report\":1,\"osc\":4,\"dcs\":3,\"apc\":1"),
            std::string::npos)
      << log;
}

// The oracle works: with the filter off the same terminal types your clipboard into the box.
TEST_P(TerminalTest, WithTheFilterOffTheTerminalTypesBack) {
  std::string typed_back;
  std::string seen = session(with_config("filter = false\n"), typed_back);
  for (const auto& q : queries()) {
    EXPECT_NE(seen.find(q.ask), std::string::npos) << hex(q.ask);
  }
  EXPECT_NE(typed_back.find(hex("c2VjcmV0LWNsaXA=")), std::string::npos) << typed_back;
  EXPECT_NE(typed_back.find(hex("evil;id")), std::string::npos) << typed_back;
}

TEST_P(TerminalTest, AllowListPassesLinksAndClipboardWritesButNeverAClipboardRead) {
  std::string typed_back;
  std::string seen = session(with_config("allow = [\"osc8\", \"osc52\"]\n"), typed_back);
  EXPECT_NE(seen.find(kActions[0]), std::string::npos) << hex(seen);  // clipboard write
  EXPECT_NE(seen.find(kActions[2]), std::string::npos) << hex(seen);  // hyperlink
  EXPECT_EQ(seen.find(queries()[0].ask), std::string::npos) << hex(seen);
  EXPECT_EQ(seen.find(kActions[1]), std::string::npos) << hex(seen);
  EXPECT_EQ(typed_back, hex(kCursorAnswer));
}

// A curses program of the box's own: colours, a box, a title, the alternate screen.
const char* kCursesProgram = R"(
import curses
def main(w):
    curses.start_color(); curses.use_default_colors()
    curses.init_pair(1, curses.COLOR_RED, -1)
    w.border(); w.addstr(2, 3, "curses in a box", curses.color_pair(1) | curses.A_BOLD)
    w.addstr(4, 3, "press q"); w.refresh()
    while w.getch() != ord("q"): pass
curses.wrapper(main)
)";

// Runs `cmd` in the box in a tmux pane of 100x30 (tmux is the terminal), waits for `ready` on
// the screen, and returns the screen with its attributes (capture-pane -e) before `quit`.
std::string tmux_screen(const World& w, RunOptions o, const std::vector<std::string>& cmd,
                        const std::string& ready, const std::string& quit) {
  const std::string sock = w.root + "/tmux.sock";
  const std::string as =
      w.as.uid == 0
          ? ""
          : fmt::format("setpriv --reuid={} --regid={} --clear-groups ", w.as.uid, w.as.gid);
  const std::string tmux = as + "tmux -S " + sock + " ";
  o.wrapper = {"/usr/bin/tmux", "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x",
               "100",           "-y", "30"};
  std::vector<std::string> args = {"run", "-q", "--"};
  args.insert(args.end(), cmd.begin(), cmd.end());
  EXPECT_EQ(run(w, args, o).status, 0);
  const std::string shot = w.root + "/screen.txt";
  std::string screen;
  for (int i = 0; i < 200; ++i) {  // 20 s at most
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    sh(tmux + "capture-pane -p -e > " + shot + " 2>/dev/null");
    screen = slurp(shot);
    if (screen.find(ready) != std::string::npos) {
      break;
    }
  }
  // Settled: the screen no longer changes (vim redraws after its terminal queries time out).
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sh(tmux + "capture-pane -p -e > " + shot + " 2>/dev/null");
    std::string again = slurp(shot);
    if (again == screen) {
      break;
    }
    screen = again;
  }
  sh(tmux + "send-keys " + quit + " 2>/dev/null");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  sh(tmux + "kill-server 2>/dev/null");
  return screen;
}

// Real TUIs render the same screen with the filter as without it: vim, less and a curses
// program, in tmux. (claude, codex and gemini are not installed here: the agents' own tests.)
TEST_P(TerminalTest, TuisRenderTheSameWithAndWithoutTheFilter) {
  if (sh("command -v tmux >/dev/null && command -v vim >/dev/null && command -v less "
         ">/dev/null") != 0) {
    skip("tmux, vim or less is not installed (scripts/deps.txt)");
    return;
  }
  std::string text;
  for (int i = 0; i < 60; ++i) {
    text += fmt::format("line {} \u2500\u2502 caf\u00e9 {}\n", i, std::string(i % 90, 'x'));
  }
  write_file(w_.ws + "/file.txt", text);
  write_file(w_.ws + "/box_curses.py", kCursesProgram);
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  struct Tui {
    std::vector<std::string> cmd;
    std::string ready;
    std::string quit;
  };
  const std::vector<Tui> tuis = {
      {{"vim", "-N", "-i", "NONE", "-c", "set number ruler", "file.txt"},
       "line 10",
       "Escape :q! Enter"},
      {{"less", "file.txt"}, "line 10", "q"},
      {{"python3", "box_curses.py"}, "press q", "q"},
  };
  for (const auto& tui : tuis) {
    std::string on = tmux_screen(w_, with_config(""), tui.cmd, tui.ready, tui.quit);
    std::string off =
        tmux_screen(w_, with_config("filter = false\n"), tui.cmd, tui.ready, tui.quit);
    EXPECT_NE(on.find(tui.ready), std::string::npos) << tui.cmd[0] << ":\n" << on;
    EXPECT_EQ(on, off) << tui.cmd[0] << " renders differently with the filter";
  }
}

INSTANTIATE_TEST_SUITE_P(As, TerminalTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
