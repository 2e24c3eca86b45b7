// The terminal filter: ECMA-48 sequences the box prints, passed whole or dropped whole.
#include "agentbox/app/terminal_filter.hpp"

#include <algorithm>
#include <cstring>

namespace agentbox::app {

namespace {

constexpr uint8_t kEsc = 0x1B;
constexpr uint8_t kBel = 0x07;
constexpr uint8_t kCan = 0x18;
constexpr uint8_t kSub = 0x1A;
constexpr uint8_t kDel = 0x7F;
constexpr uint8_t kC2 = 0xC2;
constexpr size_t kMaxEscape = 64;  // ESC, intermediates, final: a handful of bytes in practice
constexpr size_t kMaxCsi = 256;    // parameters of real sequences are far shorter
constexpr uint32_t kMaxOsc = 65535;

// OSC numbers that pass by default: titles (0-2), palette and dynamic colours (4, 5, 10-19) and
// their resets. Their answers (colour queries) are `rgb:` and hex digits.
bool default_osc(uint32_t n) {
  return n <= 2 || n == 4 || n == 5 || (n >= 10 && n <= 19) || n == 104 || n == 105 ||
         (n >= 110 && n <= 119);
}

// True when none of the 8 bytes at `p` is ESC or has its high bit set.
bool plain8(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  const uint64_t esc = w ^ (kOnes * kEsc);
  return ((w & kHigh) | ((esc - kOnes) & ~esc & kHigh)) == 0;
}

// The length of a well-formed UTF-8 character of 2-4 bytes at `p` (lead byte p[0] >= 0xC2) that a
// terminal shows as text, or 0: not well-formed, cut by the end of the read, or C2 80-9F (a C1
// control). The first continuation byte's range depends on the lead, as in classify().
size_t utf8_text(const uint8_t* p, size_t n) {
  const uint8_t b = p[0];
  const size_t len = b <= 0xDF ? 2 : b <= 0xEF ? 3 : 4;
  if (b > 0xF4 || len > n) {
    return 0;
  }
  const uint8_t lo = b == 0xC2 ? 0xA0 : b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
  const uint8_t hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
  if (p[1] < lo || p[1] > hi) {
    return 0;
  }
  for (size_t k = 2; k < len; ++k) {
    if (p[k] < 0x80 || p[k] > 0xBF) {
      return 0;
    }
  }
  return len;
}

// The length of a complete CSI sequence at `p` (ESC '[') that passes whatever its parameters
// say: parameter bytes only (no intermediates, no C0 in between), at most kMaxCsi bytes before
// the final, and a final other than 't' (a title report?) and 'i' (media copy), which csi() and
// end_csi() decide. 0 for anything else, to go through the state machine.
size_t plain_csi(const uint8_t* p, size_t n) {
  const size_t end = std::min(n, kMaxCsi + 1);
  if (end < 3 || p[1] != '[') {
    return 0;
  }
  size_t j = 2;
  while (j < end && p[j] >= 0x30 && p[j] < 0x40) {
    ++j;
  }
  if (j == end || p[j] < 0x40 || p[j] > 0x7E || p[j] == 't' || p[j] == 'i') {
    return 0;
  }
  return j + 1;
}

// How many bytes from `p` pass unchanged in the ground state with no UTF-8 character begun: text,
// C0 controls but ESC, whole well-formed UTF-8 characters, the high bytes a terminal shows as
// U+FFFD (A0-BF, C0, C1, F5-FF outside a character) and plain CSI sequences (colours, cursor
// moves). Stops before any other ESC, a C1 control (80-9F, C2 80-9F) and a character or CSI not
// complete in this read: those go through the state machine.
size_t text_run(const uint8_t* p, size_t n) {
  size_t j = 0;
  while (j < n) {
    while (j + 8 <= n && plain8(p + j)) {
      j += 8;
    }
    if (j == n) {
      break;
    }
    const uint8_t b = p[j];
    if (b < 0x80) {
      if (b != kEsc) {
        ++j;
        continue;
      }
      const size_t len = plain_csi(p + j, n - j);
      if (len == 0) {
        return j;
      }
      j += len;
    } else if (b <= 0x9F) {
      return j;
    } else if (b <= 0xC1 || b >= 0xF5) {
      ++j;
    } else {
      const size_t len = utf8_text(p + j, n - j);
      if (len == 0) {
        return j;
      }
      j += len;
    }
  }
  return j;
}

}  // namespace

std::string_view filtered_name(Filtered f) {
  switch (f) {
    case Filtered::kClipboard:
      return "clipboard";
    case Filtered::kTitleReport:
      return "title_report";
    case Filtered::kScreenReport:
      return "screen_report";
    case Filtered::kPrinter:
      return "printer";
    case Filtered::kOsc:
      return "osc";
    case Filtered::kDcs:
      return "dcs";
    case Filtered::kApc:
      return "apc";
    case Filtered::kPmSos:
      return "pm_sos";
    case Filtered::kTooLong:
      return "too_long";
  }
  return "?";
}

TerminalFilter::TerminalFilter(TerminalFilterOptions options)
    : osc_allowed_(std::move(options.osc)) {}

uint64_t TerminalFilter::total() const {
  uint64_t n = 0;
  for (uint64_t c : counts_) {
    n += c;
  }
  return n;
}

void TerminalFilter::feed(std::string_view in, std::string& out) {
  const auto* p = reinterpret_cast<const uint8_t*>(in.data());
  const size_t n = in.size();
  size_t i = 0;
  while (i < n) {
    if (state_ == State::kGround && cont_ == 0 && !held_c2_) {
      // Text passes in runs, copied at once; only sequences and the bytes a run cannot decide
      // alone go through the state machine (measured in docs/BENCHMARKS.md, "terminal filter").
      const size_t run = text_run(p + i, n - i);
      out.append(in.data() + i, run);
      i += run;
      if (i == n) {
        break;
      }
    } else if (state_ == State::kCsi && !intermediate_) {
      i += csi_parameters(p + i, n - i);
      if (i == n) {
        break;
      }
    }
    step(p[i++], out);
  }
}

// A run of CSI parameter bytes (0-9 ; : < = > ?) before any intermediate, held at once: what
// csi() does with each of them, for the run.
size_t TerminalFilter::csi_parameters(const uint8_t* p, size_t n) {
  size_t j = 0;
  while (j < n && p[j] >= 0x30 && p[j] < 0x40) {
    ++j;
  }
  if (keep_ && j > 0) {
    seq_.append(reinterpret_cast<const char*>(p), j);
    if (seq_.size() > kMaxCsi) {
      drop(Filtered::kTooLong);
    }
  }
  return j;
}

void TerminalFilter::finish() noexcept {
  abort_sequence();
}

void TerminalFilter::reset_utf8() noexcept {
  cont_ = 0;
  lo_ = 0x80;
  hi_ = 0xBF;
  held_c2_ = false;
}

void TerminalFilter::abort_sequence() noexcept {
  seq_.clear();
  keep_ = false;
  bad_ = false;
  string_esc_ = false;
  intermediate_ = false;
  state_ = State::kGround;
  reset_utf8();
}

// UTF-8 as the Unicode standard's table of well-formed sequences has it (the first continuation
// byte's range depends on the lead: E0 A0-BF, ED 80-9F, F0 90-BF, F4 80-8F).
TerminalFilter::Class TerminalFilter::classify(uint8_t b, uint8_t& c1) noexcept {
  if (held_c2_) {
    held_c2_ = false;
    if (b >= 0x80 && b <= 0x9F) {
      c1 = b;  // C2 80-9F: the code points U+0080-U+009F, executed as C1 controls
      return Class::kC1;
    }
    return b >= 0xA0 && b <= 0xBF ? Class::kText : Class::kRedo;
  }
  if (cont_ > 0) {
    const bool fits = b >= lo_ && b <= hi_;
    lo_ = 0x80;
    hi_ = 0xBF;
    if (fits) {
      --cont_;
      return Class::kText;
    }
    cont_ = 0;  // the character was cut short: a terminal shows U+FFFD and reads b anew
  }
  if (b < 0x80 || (b >= 0xA0 && b <= 0xBF) || b == 0xC0 || b == 0xC1 || b >= 0xF5) {
    return Class::kText;
  }
  if (b <= 0x9F) {
    c1 = b;  // not inside a character: a terminal reading raw bytes takes it as C1
    return Class::kC1;
  }
  if (b == kC2) {
    held_c2_ = true;  // C2 80-9F would be a C1 control: held until the next byte says
    return Class::kHold;
  }
  cont_ = b <= 0xDF ? 1 : b <= 0xEF ? 2 : 3;
  lo_ = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
  hi_ = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
  return Class::kText;
}

void TerminalFilter::step(uint8_t b, std::string& out) {
  switch (state_) {
    case State::kGround:
      ground(b, out);
      return;
    case State::kEscape:
      escape(b, out);
      return;
    case State::kCsi:
      csi(b, out);
      return;
    case State::kString:
      string(b, out);
      return;
  }
}

void TerminalFilter::ground(uint8_t b, std::string& out) {
  const bool pair = held_c2_;
  uint8_t c1 = 0;
  switch (classify(b, c1)) {
    case Class::kHold:
      return;
    case Class::kRedo:
      out.push_back(static_cast<char>(kC2));  // a lone C2 is text (U+FFFD)
      ground(b, out);
      return;
    case Class::kC1:
      start_c1(c1, pair, out);
      return;
    case Class::kText:
      break;
  }
  if (pair) {
    out.push_back(static_cast<char>(kC2));
  }
  if (b == kEsc) {
    state_ = State::kEscape;
    seq_.assign(1, static_cast<char>(kEsc));
    keep_ = true;
    bad_ = false;
    intermediate_ = false;
    return;
  }
  out.push_back(static_cast<char>(b));
}

void TerminalFilter::start_c1(uint8_t c1, bool pair, std::string& out) {
  seq_.clear();
  if (pair) {
    seq_.push_back(static_cast<char>(kC2));
  }
  seq_.push_back(static_cast<char>(c1));
  switch (c1) {
    case 0x9B:
      state_ = State::kCsi;
      keep_ = true;
      bad_ = false;
      intermediate_ = false;
      return;
    case 0x9D:
      start_string(Kind::kOsc, true);
      return;
    case 0x90:
      start_string(Kind::kDcs, true);
      return;
    case 0x98:
    case 0x9E:
      start_string(Kind::kPmSos, true);
      return;
    case 0x9F:
      start_string(Kind::kApc, true);
      return;
    default:
      out += seq_;  // a C1 control that starts nothing (NEL, IND, ST on its own, ...)
      seq_.clear();
      return;
  }
}

void TerminalFilter::start_string(Kind kind, bool eight_bit) {
  state_ = State::kString;
  kind_ = kind;
  string_esc_ = false;
  osc_number_ = true;
  osc_digits_ = 0;
  osc_ = 0;
  keep_ = kind == Kind::kOsc && !eight_bit;
  bad_ = false;
  if (keep_) {
    return;
  }
  switch (kind) {
    case Kind::kOsc:
      drop(Filtered::kOsc);
      return;
    case Kind::kDcs:
      drop(Filtered::kDcs);
      return;
    case Kind::kApc:
      drop(Filtered::kApc);
      return;
    case Kind::kPmSos:
      drop(Filtered::kPmSos);
      return;
  }
}

void TerminalFilter::drop(Filtered why) {
  if (bad_) {
    return;  // counted once per sequence
  }
  bad_ = true;
  keep_ = false;
  seq_.clear();
  ++counts_[static_cast<size_t>(why)];
}

// The ESC already seen is in seq_.
void TerminalFilter::escape(uint8_t b, std::string& out) {
  if (b >= 0x80) {
    abort_sequence();  // no terminal completes ESC with a non-ASCII byte
    ground(b, out);
    return;
  }
  if (b == kEsc) {
    abort_sequence();
    ground(b, out);
    return;
  }
  if (b == kCan || b == kSub) {
    abort_sequence();  // cancels the sequence; the control itself still reaches the terminal
    out.push_back(static_cast<char>(b));
    return;
  }
  const bool first = !intermediate_;  // C0 controls in between do not count (executed)
  seq_.push_back(static_cast<char>(b));
  if (b < 0x20 || b == kDel) {
    if (seq_.size() > kMaxEscape) {
      abort_sequence();
    }
    return;  // executed (or ignored) by the terminal in the middle of the sequence: kept in place
  }
  if (first) {
    switch (b) {
      case '[':
        state_ = State::kCsi;
        intermediate_ = false;
        return;
      case ']':
        start_string(Kind::kOsc, false);
        return;
      case 'P':
        start_string(Kind::kDcs, false);
        return;
      case 'X':
      case '^':
        start_string(Kind::kPmSos, false);
        return;
      case '_':
        start_string(Kind::kApc, false);
        return;
      default:
        break;
    }
  }
  if (b < 0x30) {
    intermediate_ = true;
  } else {  // the final byte: ESC sequences change modes and character sets only
    out += seq_;
    seq_.clear();
    state_ = State::kGround;
    return;
  }
  if (seq_.size() > kMaxEscape) {
    abort_sequence();
  }
}

void TerminalFilter::csi(uint8_t b, std::string& out) {
  if (b >= 0x80 || b == kEsc) {
    abort_sequence();  // ESC and C1 start a new sequence in every terminal
    ground(b, out);
    return;
  }
  if (b == kCan || b == kSub) {
    abort_sequence();
    out.push_back(static_cast<char>(b));
    return;
  }
  if (keep_) {
    seq_.push_back(static_cast<char>(b));
  }
  if (b < 0x20 || b == kDel) {
    return;
  }
  if (b < 0x30) {
    intermediate_ = true;
  } else if (b < 0x40) {
    if (intermediate_) {
      keep_ = false;  // a parameter after an intermediate: terminals ignore the whole sequence
      bad_ = true;
      seq_.clear();
    }
  } else {
    end_csi(out);
    return;
  }
  if (keep_ && seq_.size() > kMaxCsi) {
    drop(Filtered::kTooLong);
  }
}

void TerminalFilter::end_csi(std::string& out) {
  state_ = State::kGround;
  intermediate_ = false;
  if (!keep_) {
    seq_.clear();
    bad_ = false;
    return;
  }
  // Parameters, intermediates and final, skipping the C0 controls executed in between.
  size_t i = static_cast<uint8_t>(seq_[0]) == 0x9B ? 1 : 2;
  char priv = 0;
  uint32_t first = 0;
  bool in_first = true;
  bool star = false;
  bool intermediates = false;
  const char final = seq_.back();
  for (; i + 1 < seq_.size(); ++i) {
    const char ch = seq_[i];
    if (ch >= '<' && ch <= '?' && first == 0 && in_first) {
      priv = ch;
    } else if (ch >= '0' && ch <= '9' && in_first) {
      first = first > 100000 ? first : first * 10 + static_cast<uint32_t>(ch - '0');
    } else if (ch == ';' || ch == ':') {
      in_first = false;
    } else if (ch >= 0x20 && ch < 0x30) {
      intermediates = true;
      star = star || ch == '*';
    }
  }
  if (final == 't' && priv == 0 && !intermediates && (first == 20 || first == 21)) {
    drop(Filtered::kTitleReport);
  } else if (final == 'y' && star) {
    drop(Filtered::kScreenReport);
  } else if (final == 'i' && !intermediates) {
    drop(Filtered::kPrinter);
  } else {
    out += seq_;
  }
  seq_.clear();
  keep_ = false;
  bad_ = false;
}

void TerminalFilter::string(uint8_t b, std::string& out) {
  if (string_esc_) {
    string_esc_ = false;
    if (b == '\\') {
      end_string(true, b, out);
      return;
    }
    // ESC not followed by '\' ends the string unfinished and starts a sequence of its own.
    abort_sequence();
    seq_.assign(1, static_cast<char>(kEsc));
    state_ = State::kEscape;
    keep_ = true;
    escape(b, out);
    return;
  }
  const bool pair = held_c2_;
  uint8_t c1 = 0;
  switch (classify(b, c1)) {
    case Class::kHold:
      return;
    case Class::kRedo:
      string_text(kC2);
      string(b, out);
      return;
    case Class::kC1:
      if (c1 == 0x9C) {
        end_string(false, 0, out);  // ST in its 8-bit form
        return;
      }
      abort_sequence();  // any other C1 ends the string and starts what it starts
      start_c1(c1, pair, out);
      return;
    case Class::kText:
      break;
  }
  if (pair) {
    string_text(kC2);
  }
  if (b == kEsc) {
    string_esc_ = true;
    if (keep_) {
      seq_.push_back(static_cast<char>(kEsc));
    }
    return;
  }
  if (b == kBel && kind_ == Kind::kOsc) {
    end_string(true, b, out);
    return;
  }
  if (b == kCan || b == kSub) {
    abort_sequence();
    out.push_back(static_cast<char>(b));
    return;
  }
  string_text(b);
}

// A byte of a string's content.
void TerminalFilter::string_text(uint8_t b) {
  if (!keep_) {
    return;
  }
  if (b < 0x20 || b == kDel) {
    drop(osc_ == 52 ? Filtered::kClipboard : Filtered::kOsc);  // controls in a title? no
    return;
  }
  seq_.push_back(static_cast<char>(b));
  if (osc_number_) {
    if (b >= '0' && b <= '9' && osc_ <= kMaxOsc) {
      osc_ = osc_ * 10 + static_cast<uint32_t>(b - '0');
      ++osc_digits_;
    } else {
      osc_number_ = false;
      decide_osc(b == ';');
    }
  }
  if (keep_ && seq_.size() > kMaxSequence) {
    drop(Filtered::kTooLong);
  }
}

// The OSC's number is read (`number_ended`: it ended with ';' as it should).
void TerminalFilter::decide_osc(bool number_ended) {
  const bool known = number_ended && osc_digits_ > 0 && osc_ <= kMaxOsc;
  if (!known || !(default_osc(osc_) || osc_allowed_.count(osc_) != 0)) {
    drop(known && osc_ == 52 ? Filtered::kClipboard : Filtered::kOsc);
  }
}

void TerminalFilter::end_string(bool seven_bit, uint8_t terminator, std::string& out) {
  if (keep_ && osc_number_) {
    osc_number_ = false;
    decide_osc(true);  // `OSC 104 BEL`: a number alone
  }
  if (keep_ && !seven_bit) {
    drop(osc_ == 52 ? Filtered::kClipboard : Filtered::kOsc);
  }
  if (keep_ && osc_ == 52) {
    // OSC 52 ; selections ; data. Data `?` asks the terminal to type the clipboard back.
    const size_t sel = seq_.find(';');
    const size_t data = sel == std::string::npos ? sel : seq_.find(';', sel + 1);
    if (data == std::string::npos || data + 1 >= seq_.size() || seq_[data + 1] == '?') {
      drop(Filtered::kClipboard);
    }
  }
  if (keep_) {
    seq_.push_back(static_cast<char>(terminator));
    out += seq_;
  }
  abort_sequence();
}

}  // namespace agentbox::app
