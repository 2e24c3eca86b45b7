// UsageMeter (usage.hpp): token usage read incrementally from a model API response body.
//
// The wire formats it knows (the member each carries, at nesting depth 1 or 2):
//   Anthropic Messages  JSON: usage {input_tokens, output_tokens, cache_read_input_tokens,
//                       cache_creation_input_tokens}, model. SSE: message_start.message.{usage,
//                       model}, then message_delta.usage (cumulative output_tokens).
//   OpenAI Responses    JSON: usage {input_tokens, output_tokens, input_tokens_details.
//                       cached_tokens}, model. SSE: response.completed.response.{usage, model}.
//   Chat Completions    JSON: usage {prompt_tokens, completion_tokens, prompt_tokens_details.
//                       cached_tokens}, model; streamed: the last chunk (stream_options.
//                       include_usage), earlier chunks have "usage": null.
//   Gemini              usageMetadata {promptTokenCount, candidatesTokenCount,
//                       cachedContentTokenCount, thoughtsTokenCount}, modelVersion; streamed as
//                       SSE (alt=sse) or as one JSON array of chunks, each cumulative.
#include "agentbox/proxy/usage.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace agentbox::proxy {

namespace {

constexpr size_t kMaxKey = 16;     // longer than every wanted member name
constexpr size_t kMaxModel = 128;  // a model name kept (printable subset)

bool wanted(std::string_view key) {
  return key == "usage" || key == "usageMetadata" || key == "model" || key == "modelVersion";
}

// Whether `text` holds `"usage` or `"model` (the start of all four wanted names) at `at`.
bool names_at(std::string_view text, size_t at) {
  const auto six = text.substr(at, 6);
  return six == "\"usage" || six == "\"model";
}

// Where the first `"usage` or `"model` (the start of all four wanted names) at or after `at`
// lies in `text` (its size: none). Sixteen positions at a time, four blocks per step (GCC/clang
// vector extensions: SSE2 or NEON): a quote followed by `u` or `m` is a candidate, checked
// exactly; in JSON text such pairs are rare, so most steps cost a few instructions per block.
size_t first_name_portable(std::string_view text, size_t at) {
  using V = unsigned char __attribute__((vector_size(16)));
  const char* p = text.data();
  const size_t n = text.size();
  auto candidates = [p](size_t i) {
    V a;
    V b;
    std::memcpy(&a, p + i, 16);
    std::memcpy(&b, p + i + 1, 16);
    return (a == '"') & ((b == 'u') | (b == 'm'));
  };
  auto none = [](const auto& hit) {
    uint64_t lanes[2];
    std::memcpy(lanes, &hit, sizeof lanes);
    return (lanes[0] | lanes[1]) == 0;
  };
  size_t i = at;
  for (; i + 65 <= n; i += 64) {
    if (!none(candidates(i) | candidates(i + 16) | candidates(i + 32) | candidates(i + 48))) {
      break;  // a candidate in these 64 bytes: the loop below finds it
    }
  }
  for (; i + 17 <= n; i += 16) {
    const auto hit = candidates(i);
    if (none(hit)) {
      continue;
    }
    for (size_t j = 0; j < 16; ++j) {
      if (hit[j] != 0 && names_at(text, i + j)) {
        return i + j;
      }
    }
  }
  for (; i < n; ++i) {
    if (p[i] == '"' && names_at(text, i)) {
      return i;
    }
  }
  return n;
}

#if defined(__x86_64__)
// Quote-u/quote-m pairs starting in the 32 positions from `p` (a byte per position: 0xff a pair).
// `u` or `m` in one compare: a byte equals the table's entry at its low nibble only when it is one
// of the two (every other entry's low nibble differs from its index; a byte with its top bit set
// looks up 0).
__attribute__((target("avx2"))) inline __m256i name_candidates(const char* p) {
  const __m256i um_table = _mm256_setr_epi8(1, 0, 0, 0, 0, 'u', 0, 0, 0, 0, 0, 0, 0, 'm', 0, 0, 1,
                                            0, 0, 0, 0, 'u', 0, 0, 0, 0, 0, 0, 0, 'm', 0, 0);
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 1));
  const __m256i um = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(um_table, b), b);
  return _mm256_and_si256(_mm256_cmpeq_epi8(a, _mm256_set1_epi8('"')), um);
}

// The first 128-byte step from `i` (i, i + 128, ...) that holds a candidate pair, or the first
// whose end passes n - 1. A leaf with nothing but the vector step in its loop, so the offset stays
// in a register (in first_name_avx2's loop, beside the calls of the candidates' check, the
// compiler kept it on the stack: a store and a load per step on the loop's critical path).
__attribute__((target("avx2"))) size_t candidate_step(const char* p, size_t i, size_t n) {
  for (; i + 129 <= n; i += 128) {
    const __m256i any =
        _mm256_or_si256(_mm256_or_si256(name_candidates(p + i), name_candidates(p + i + 32)),
                        _mm256_or_si256(name_candidates(p + i + 64), name_candidates(p + i + 96)));
    if (_mm256_testz_si256(any, any) == 0) {
      break;
    }
  }
  return i;
}

// first_name with AVX2, 128 positions a step (four blocks of 32 before one branch): in a bulk
// stream this search is most of what the meter costs (one pass over every byte). A step with a
// candidate is read again block by block, and only real quote-u/quote-m pairs are checked.
__attribute__((target("avx2"))) size_t first_name_avx2(std::string_view text, size_t at) {
  const char* p = text.data();
  const size_t n = text.size();
  size_t i = at;
  for (;;) {
    i = candidate_step(p, i, n);
    if (i + 129 > n) {
      break;
    }
    for (size_t block = i; block < i + 128; block += 32) {
      auto mask = static_cast<uint32_t>(_mm256_movemask_epi8(name_candidates(p + block)));
      for (; mask != 0; mask &= mask - 1) {
        const size_t j = block + static_cast<size_t>(__builtin_ctz(mask));
        if (names_at(text, j)) {
          return j;
        }
      }
    }
    i += 128;
  }
  return first_name_portable(text, i);
}
#endif

#if defined(__x86_64__)
bool has_avx2() {
  static const bool avx2 = __builtin_cpu_supports("avx2") != 0;
  return avx2;
}
#endif

size_t first_name(std::string_view text, size_t at) {
#if defined(__x86_64__)
  if (has_avx2()) {
    return first_name_avx2(text, at);
  }
#endif
  return first_name_portable(text, at);
}

bool line_end(char ch) {
  return ch == '\n' || ch == '\r';
}

// Whether `ch`, after `prev`, ends an empty line as sse_byte reads them between events: a line
// end right after a line end, the two not one CRLF (a terminator always starts a new line).
bool ends_event(char prev, char ch) {
  return line_end(ch) && line_end(prev) && !(prev == '\r' && ch == '\n');
}

#if defined(__x86_64__)
// ends_event for the 32 positions from `p` (bit k: p[k] after p[k - 1]; p[-1] is read): the
// walks to an event's end are one vector step per 32 bytes, not a loop over them (in bulk pieces
// they run at every piece's end, for the event the piece cuts).
__attribute__((target("avx2"))) uint32_t event_ends_avx2(const char* p) {
  const __m256i at = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i before = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p - 1));
  const __m256i lf = _mm256_cmpeq_epi8(at, _mm256_set1_epi8('\n'));
  const __m256i end = _mm256_or_si256(lf, _mm256_cmpeq_epi8(at, _mm256_set1_epi8('\r')));
  const __m256i cr_before = _mm256_cmpeq_epi8(before, _mm256_set1_epi8('\r'));
  const __m256i end_before =
      _mm256_or_si256(cr_before, _mm256_cmpeq_epi8(before, _mm256_set1_epi8('\n')));
  const __m256i both = _mm256_and_si256(end, end_before);
  return static_cast<uint32_t>(
      _mm256_movemask_epi8(_mm256_andnot_si256(_mm256_and_si256(cr_before, lf), both)));
}
#endif

// The offset of the last empty line's terminator in [at, end), npos when there is none. `at`
// is a line start not right after a CR (the state sse_byte is in between events), so a line end
// there is an empty line; further on, ends_event.
size_t last_event_end(std::string_view bytes, size_t at, size_t end) {
  const char* d = bytes.data();
#if defined(__x86_64__)
  if (has_avx2()) {
    for (; end >= at + 33; end -= 32) {  // the block's first byte has its previous in range
      const uint32_t m = event_ends_avx2(d + end - 32);
      if (m != 0) {
        return end - 32 + static_cast<size_t>(31 - __builtin_clz(m));
      }
    }
  }
#endif
  for (size_t i = end; i > at;) {
    --i;
    if (i == at ? line_end(d[i]) : ends_event(d[i - 1], d[i])) {
      return i;
    }
  }
  return std::string_view::npos;
}

// The offset of the first empty line's terminator in `bytes`, which go on an event whose last
// byte so far is `before` (a line end at 0 ends it when `before` is one), npos when none does.
size_t next_event_end(std::string_view bytes, char before) {
  const char* d = bytes.data();
  const size_t n = bytes.size();
  if (n == 0) {
    return std::string_view::npos;
  }
  if (ends_event(before, d[0])) {
    return 0;
  }
  size_t i = 1;
#if defined(__x86_64__)
  if (has_avx2()) {
    for (; i + 32 <= n; i += 32) {
      const uint32_t m = event_ends_avx2(d + i);
      if (m != 0) {
        return i + static_cast<size_t>(__builtin_ctz(m));
      }
    }
  }
#endif
  for (; i < n; ++i) {
    if (ends_event(d[i - 1], d[i])) {
      return i;
    }
  }
  return std::string_view::npos;
}

std::optional<uint64_t> tokens_at(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(it->get<int64_t>());
}

std::optional<uint64_t> nested(const nlohmann::json& obj, const char* outer, const char* key) {
  auto it = obj.find(outer);
  return it != obj.end() && it->is_object() ? tokens_at(*it, key) : std::nullopt;
}

// A present field overwrites the one kept (reports are cumulative); an absent one keeps it.
void take(std::optional<uint64_t>& slot, std::optional<uint64_t> v) {
  if (v) {
    slot = v;
  }
}

std::string clean_model(std::string_view s) {
  std::string out;
  for (char ch : s.substr(0, kMaxModel)) {
    const auto u = static_cast<unsigned char>(ch);
    if (std::isalnum(u) != 0 || ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '/' ||
        ch == '@') {
      out.push_back(ch);
    }
  }
  if (out.rfind("models/", 0) == 0) {  // Gemini's resource name form
    out.erase(0, 7);
  }
  return out;
}

// Between events, the byte after a CR as sse_byte reads it (an LF there ends no line), so the
// fast path goes on after an event that ended with a CR (`cr`: UsageMeter::after_cr_; `passed`:
// its passed_over_). Returns where the next event starts.
size_t past_cr(bool& cr, uint64_t& passed, std::string_view bytes, size_t at) {
  if (!cr || at == bytes.size()) {
    return at;
  }
  cr = false;
  if (bytes[at] != '\n') {
    return at;
  }
  ++passed;
  return at + 1;
}

}  // namespace

std::optional<UsageMeter::Format> UsageMeter::format_for(std::string_view content_type) {
  std::string media(content_type.substr(0, content_type.find(';')));
  std::transform(media.begin(), media.end(), media.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) {
    media.pop_back();
  }
  if (media == "text/event-stream") {
    return Format::kSse;
  }
  if (media == "application/json" ||
      (media.size() > 5 && media.compare(media.size() - 5, 5, "+json") == 0)) {
    return Format::kJson;
  }
  return std::nullopt;
}

// Bytes that end a run the scanner does not need to look at one by one: inside a string that is
// neither captured nor a member name, only a quote, a backslash or a line end matter (a raw line
// end cannot occur in JSON text, so it is the SSE line's); on a skipped SSE line, a line end.
size_t UsageMeter::skippable(std::string_view bytes, size_t at) const {
  const bool sse = format_ == Format::kSse;
  if (sse && line_ == Line::kSkip && !after_cr_) {
    while (at < bytes.size() && bytes[at] != '\n' && bytes[at] != '\r') {
      ++at;
    }
    return at;
  }
  const bool plain_string = (!sse || line_ == Line::kData) && !skip_space_ && in_string_ &&
                            !escape_ && !broken_ && capture_depth_ < 0 &&
                            !(expect_key_ && depth_ <= 2) && !after_cr_;
  if (!plain_string) {
    return at;
  }
  while (at < bytes.size()) {
    const char ch = bytes[at];
    if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\r') {
      break;
    }
    ++at;
  }
  return at;
}

// The fast path (SSE): at an event's start, the events that lie whole within this piece before
// its first `"usage` or `"model` cannot carry a member the scanner captures (a member name is
// matched on its raw bytes, and the scanner starts each event afresh), so they are passed over
// at once, without the byte scanner: one vector pass finds the first name, a short walk back
// from it the last empty line before it, and only that empty line goes through sse_byte. The
// event after it is the scanner's when it names a member; when it is cut by the piece's end
// with no name in its start, that start (at most kMaxHeld bytes) is held, and take_held decides
// on the whole event once its end arrives. Returns where the byte scanner resumes.
size_t UsageMeter::skip_events(std::string_view bytes, size_t at, bool may_hold) {
  if (!fast_ || line_ != Line::kStart || data_in_event_ || scan_event_) {
    return at;
  }
  at = past_cr(after_cr_, passed_over_, bytes, at);  // an event ended with a CR before
  const size_t name = first_name(bytes, at);
  const size_t end = last_event_end(bytes, at, name);
  if (end != std::string_view::npos) {
    sse_byte(bytes[end]);  // the empty line: the event ends (as if read byte by byte)
    passed_over_ += end + 1 - at;
    at = past_cr(after_cr_, passed_over_, bytes, end + 1);
  }
  if (may_hold && name == bytes.size() && at < bytes.size() && !after_cr_ &&
      bytes.size() - at <= kMaxHeld) {
    held_.assign(bytes.substr(at));
    return bytes.size();
  }
  scan_event_ = at < bytes.size();  // the byte scanner reads the next event (to its empty line)
  return at;
}

// The held start of an event (skip_events) and the start of `bytes`: the rest of the event, up
// to its empty line, is appended (no more), and the whole event read as one piece, so the fast
// path passes over it unless it names a member (a name cut in two is whole again). An event
// longer than kMaxHeld is read on by the byte scanner from its start. Returns the bytes of
// `bytes` used.
size_t UsageMeter::take_held(std::string_view bytes) {
  const std::string_view room = bytes.substr(0, kMaxHeld - std::min(held_.size(), kMaxHeld));
  const size_t end = next_event_end(room, held_.back());
  if (end == std::string_view::npos && room.size() == bytes.size()) {
    held_.append(bytes);
    return bytes.size();  // still cut: held on
  }
  const size_t take = end == std::string_view::npos ? room.size() : end + 1;
  held_.append(room.substr(0, take));
  read_piece(held_, /*may_hold=*/false);  // never holds: held_ is not written while read
  held_.clear();                          // its buffer is kept for the next piece's cut event
  return take;
}

void UsageMeter::feed(std::string_view bytes) noexcept {
  try {
    if (!held_.empty()) {
      bytes.remove_prefix(take_held(bytes));
    }
    read_piece(bytes, /*may_hold=*/true);
  } catch (...) {
    held_.clear();
    broken_ = true;  // out of memory for a capture: this input counts nothing more
  }
}

void UsageMeter::read_piece(std::string_view bytes, bool may_hold) {
  size_t at = 0;
  while (at < bytes.size()) {
    if (format_ == Format::kSse) {
      at = skip_events(bytes, at, may_hold);
      if (at == bytes.size()) {
        break;
      }
    }
    at = skippable(bytes, at);
    if (at == bytes.size()) {
      break;
    }
    if (format_ == Format::kSse) {
      sse_byte(bytes[at]);
    } else {
      json_byte(bytes[at]);
    }
    ++at;
  }
}

// SSE (WHATWG HTML, "Parsing an event stream"): a line ends at CRLF, LF or CR; `data:` lines
// are joined with LF; an empty line dispatches the event; a line starting with ':' is a comment.
void UsageMeter::sse_byte(char ch) {
  if (after_cr_) {
    after_cr_ = false;
    if (ch == '\n') {
      return;
    }
  }
  if (ch == '\r' || ch == '\n') {
    after_cr_ = ch == '\r';
    if (line_ == Line::kStart) {  // an empty line: the event ends
      reset_scan();
      data_in_event_ = false;
      scan_event_ = false;
    } else if (line_ == Line::kField && field_ == "data") {  // "data" alone: an empty data line
      if (data_in_event_) {
        json_byte('\n');
      }
      data_in_event_ = true;
    }
    line_ = Line::kStart;
    return;
  }
  switch (line_) {
    case Line::kStart:
      field_.clear();
      line_ = Line::kField;
      [[fallthrough]];
    case Line::kField:
      if (ch == ':') {
        line_ = field_ == "data" ? Line::kData : Line::kSkip;
        if (line_ == Line::kData) {
          skip_space_ = true;
          if (data_in_event_) {
            json_byte('\n');
          }
          data_in_event_ = true;
        }
      } else if (field_.size() < 4) {
        field_.push_back(ch);
      } else {
        line_ = Line::kSkip;
      }
      return;
    case Line::kData:
      if (skip_space_) {
        skip_space_ = false;
        if (ch == ' ') {
          return;
        }
      }
      json_byte(ch);
      return;
    case Line::kSkip:
      return;
  }
}

void UsageMeter::reset_scan() {
  depth_ = 0;
  object_levels_ = 0;
  in_string_ = false;
  escape_ = false;
  expect_key_ = false;
  broken_ = false;
  key_.clear();
  key_capped_ = false;
  last_key_.clear();
  capture_depth_ = -1;
  capture_.clear();
  capture_over_ = false;
}

void UsageMeter::end_capture() {
  if (!capture_over_) {
    apply(capture_key_, capture_);
  }
  capture_depth_ = -1;
  capture_.clear();
  capture_over_ = false;
}

// One byte of JSON text. Only the nesting and the member names at depth <= 2 are tracked; a
// wanted member's value is copied out (capped) until the object it belongs to goes on (`,`) or
// closes. Text that is not JSON makes the scan stop until the next reset (nothing is counted
// from a value that did not complete).
void UsageMeter::json_byte(char ch) {
  if (broken_) {
    return;
  }
  const bool capturing = capture_depth_ >= 0;
  auto keep = [&] {
    if (capture_.size() < kMaxCapture) {
      capture_.push_back(ch);
    } else {
      capture_over_ = true;
    }
  };
  const bool in_object = depth_ > 0 && ((object_levels_ >> (depth_ - 1)) & 1U) != 0;
  if (in_string_) {
    if (capturing) {
      keep();
    }
    if (escape_) {
      escape_ = false;
    } else if (ch == '\\') {
      escape_ = true;
    } else if (ch == '"') {
      in_string_ = false;
      if (expect_key_) {
        last_key_ = key_capped_ ? std::string() : key_;
        expect_key_ = false;
      }
      return;
    }
    if (expect_key_ && depth_ <= 2) {
      if (key_.size() < kMaxKey) {
        key_.push_back(ch);
      } else {
        key_capped_ = true;
      }
    }
    return;
  }
  switch (ch) {
    case '"':
      in_string_ = true;
      if (expect_key_) {
        key_.clear();
        key_capped_ = false;
      }
      break;
    case ':':
      if (in_object && !capturing && depth_ <= 2 && wanted(last_key_)) {
        capture_depth_ = depth_;
        capture_key_ = last_key_;
        return;  // the value starts after the colon
      }
      last_key_.clear();
      break;
    case ',':
      if (capturing && capture_depth_ == depth_) {
        end_capture();
        expect_key_ = in_object;
        return;
      }
      expect_key_ = in_object;
      break;
    case '{':
    case '[':
      if (depth_ >= kMaxDepth) {
        broken_ = true;
        return;
      }
      if (ch == '{') {
        object_levels_ |= uint64_t{1} << depth_;
      } else {
        object_levels_ &= ~(uint64_t{1} << depth_);
      }
      ++depth_;
      expect_key_ = ch == '{';
      break;
    case '}':
    case ']':
      if (depth_ == 0) {
        broken_ = true;
        return;
      }
      if (capturing && capture_depth_ == depth_) {
        end_capture();
        --depth_;
        expect_key_ = false;
        return;
      }
      --depth_;
      expect_key_ = false;
      break;
    default:
      break;
  }
  if (capture_depth_ >= 0) {
    keep();
  }
}

void UsageMeter::apply(std::string_view key, std::string_view value) {
  try {
    const auto v = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (v.is_discarded()) {
      return;
    }
    if (key == "model" || key == "modelVersion") {
      if (v.is_string()) {
        model_ = clean_model(v.get_ref<const std::string&>());
      }
      return;
    }
    if (!v.is_object()) {
      return;  // "usage": null in the chunks before the last
    }
    take(raw_.input, tokens_at(v, "input_tokens"));
    take(raw_.output, tokens_at(v, "output_tokens"));
    take(raw_.cache_read, tokens_at(v, "cache_read_input_tokens"));
    take(raw_.cache_write, tokens_at(v, "cache_creation_input_tokens"));
    take(raw_.cached_detail, nested(v, "input_tokens_details", "cached_tokens"));
    take(raw_.prompt, tokens_at(v, "prompt_tokens"));
    take(raw_.completion, tokens_at(v, "completion_tokens"));
    take(raw_.prompt_cached, nested(v, "prompt_tokens_details", "cached_tokens"));
    take(raw_.g_prompt, tokens_at(v, "promptTokenCount"));
    take(raw_.g_candidates, tokens_at(v, "candidatesTokenCount"));
    take(raw_.g_cached, tokens_at(v, "cachedContentTokenCount"));
    take(raw_.g_thoughts, tokens_at(v, "thoughtsTokenCount"));
  } catch (const std::exception&) {
    // A value that does not have the expected shape counts nothing (never breaks the flow).
  }
}

UsageMeter::Reading UsageMeter::finish() noexcept {
  if (format_ == Format::kSse) {
    feed("\n\n");  // a last line without its end, a last event without its blank line
  }
  const Raw& r = raw_;
  auto n = [](const std::optional<uint64_t>& v) { return v.value_or(0); };
  Reading out;
  out.seen = r.input || r.output || r.cache_read || r.cache_write || r.prompt || r.completion ||
             r.g_prompt || r.g_candidates;
  out.tokens.input = n(r.input) + n(r.cache_read) + n(r.cache_write) + n(r.prompt) + n(r.g_prompt);
  out.tokens.output = n(r.output) + n(r.completion) + n(r.g_candidates) + n(r.g_thoughts);
  out.tokens.cached = n(r.cache_read) + n(r.cached_detail) + n(r.prompt_cached) + n(r.g_cached);
  try {
    out.model = model_;
  } catch (const std::exception&) {
    out.model.clear();
  }
  return out;
}

}  // namespace agentbox::proxy
