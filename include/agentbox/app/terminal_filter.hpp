// What the box prints, made safe for your terminal: a streaming ECMA-48 filter (pure).
//
// Theory of operation. Every byte the box writes to its pty passes through feed() on its way to
// your terminal. A state machine after ECMA-48 and the DEC/xterm parsers (ground, ESC, CSI, and
// the control strings OSC, DCS, SOS, PM, APC) recognises each control sequence, holds its bytes
// until it is complete, then either appends it unchanged or drops it whole. Text and C0 controls
// pass at once. The output is the input with whole sequences removed (a subsequence), the same
// for any split of the input into reads; memory is bounded (kMaxSequence).
//
// What is dropped, and why (docs/CONFINEMENT.md, "Terminal", has the table):
// * anything that makes the terminal answer with text the box chose, or with host data other
//   than the terminal's own geometry, modes and colours: the title/icon report (CSI 20 t,
//   CSI 21 t), DECRQCRA (CSI ... * y, checksums of what is on your screen), every DCS (DECRQSS,
//   XTGETTCAP, DECUDK that reprograms your function keys, tmux passthrough), OSC 52 reads;
// * anything that acts outside the terminal's screen: OSC 52 (clipboard), media copy (CSI i),
//   every OSC but titles and colours (hyperlinks, notifications, cwd, fonts, iTerm2 and kitty
//   extensions, file transfers), APC (kitty graphics, which reads files), PM and SOS.
// Reports whose answer is digits and fixed letters (CSI 6n, DA, DECRQM, window size) pass:
// TUIs need them, and the answer carries nothing the box did not already know.
//
// Bytes 0x80-0x9F are C1 controls (0x9B CSI, 0x9D OSC, 0x90 DCS, ...) when they stand outside a
// well-formed UTF-8 character (a terminal that reads raw bytes takes them so), and so are the
// UTF-8 encodings U+0080-U+009F (C2 80-C2 9F), which xterm and VTE execute. The same bytes as
// continuation bytes of a well-formed character are text. A control string introduced or ended
// by an 8-bit C1 is dropped even when its kind is allowed: only 7-bit forms pass.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace agentbox::app {

// Why a sequence was dropped (the counts of the audit log's `terminal.filtered`).
enum class Filtered : uint8_t {
  kClipboard,     // OSC 52: write or read your clipboard
  kTitleReport,   // CSI 20 t, CSI 21 t: the terminal types back a title the box set
  kScreenReport,  // CSI ... * y (DECRQCRA): checksums of what is on your screen
  kPrinter,       // CSI ... i (media copy): printer controller mode, print screen
  kOsc,           // any other OSC not allowed (links, notifications, cwd, font, extensions)
  kDcs,           // DECRQSS, XTGETTCAP, DECUDK, tmux passthrough, sixel, soft fonts
  kApc,           // kitty graphics and other application commands
  kPmSos,         // privacy messages, start of string
  kTooLong,       // an allowed sequence longer than kMaxSequence
};
inline constexpr size_t kFilteredKinds = 9;
std::string_view filtered_name(Filtered f);

struct TerminalFilterOptions {
  // OSC numbers passed beyond the defaults (titles 0-2, colours 4, 5, 10-19, their resets 104,
  // 105, 110-119), from `[terminal] allow` ("osc8" -> 8). A clipboard read (OSC 52 with `?`)
  // never passes.
  std::set<uint32_t> osc;
};

class TerminalFilter {
 public:
  // Longest sequence held while deciding (an allowed OSC 52 holds its whole payload).
  static constexpr size_t kMaxSequence = size_t{1} << 20;

  explicit TerminalFilter(TerminalFilterOptions options = {});
  // Appends to `out` what may reach the terminal of `in`, the box's next bytes. Bytes of a
  // sequence not yet complete are held (at most kMaxSequence) for a later call.
  void feed(std::string_view in, std::string& out);
  // The box is gone: a sequence left incomplete is dropped (a terminal would not act on it).
  void finish() noexcept;

  [[nodiscard]] uint64_t count(Filtered f) const { return counts_[static_cast<size_t>(f)]; }
  [[nodiscard]] uint64_t total() const;

 private:
  enum class State : uint8_t { kGround, kEscape, kCsi, kString };
  enum class Kind : uint8_t { kOsc, kDcs, kPmSos, kApc };
  // A byte as a terminal decoding UTF-8 sees it: text, a held C2, a C1 control, or a lone C2
  // (text) after which the byte is looked at anew.
  enum class Class : uint8_t { kText, kHold, kC1, kRedo };

  Class classify(uint8_t b, uint8_t& c1) noexcept;
  void step(uint8_t b, std::string& out);
  void ground(uint8_t b, std::string& out);
  void escape(uint8_t b, std::string& out);
  void csi(uint8_t b, std::string& out);
  size_t csi_parameters(const uint8_t* p, size_t n);
  void string(uint8_t b, std::string& out);
  void string_text(uint8_t b);
  void start_c1(uint8_t c1, bool pair, std::string& out);
  void start_string(Kind kind, bool eight_bit);
  void decide_osc(bool number_ended);
  void end_string(bool seven_bit, uint8_t terminator, std::string& out);
  void end_csi(std::string& out);
  void drop(Filtered why);
  void abort_sequence() noexcept;
  void reset_utf8() noexcept;

  std::set<uint32_t> osc_allowed_;
  State state_ = State::kGround;
  Kind kind_ = Kind::kOsc;
  std::string seq_;            // the held bytes of the current sequence, while it may pass
  bool keep_ = false;          // the current sequence may pass (its bytes are in seq_)
  bool bad_ = false;           // the current sequence is being dropped
  bool intermediate_ = false;  // ESC or CSI: an intermediate byte (0x20-0x2F) was seen
  bool string_esc_ = false;    // in a string, an ESC was seen (ST if '\' follows)
  bool osc_number_ = true;     // still reading the OSC's number
  uint32_t osc_digits_ = 0;
  uint32_t osc_ = 0;
  // UTF-8: continuation bytes still expected, the range of the next one, a held C2.
  uint8_t cont_ = 0;
  uint8_t lo_ = 0x80;
  uint8_t hi_ = 0xBF;
  bool held_c2_ = false;
  std::array<uint64_t, kFilteredKinds> counts_{};
};

}  // namespace agentbox::app
