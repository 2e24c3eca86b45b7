// Token usage read from model API responses as they stream through the proxy (docs/PROXY.md,
// "Model spend").
//
// Theory of operation, per response body (UsageMeter):
//   1. framing   kSse (text/event-stream): lines are split incrementally (LF, CRLF or CR); the
//                payload of each `data:` line goes to the scanner, an empty line ends the event
//                and resets the scanner (a broken event never spoils the next). kJson: the whole
//                body is one scanner input (an object, or Gemini's streamed array of objects).
//   1b. fast     (SSE) at an event's start, one vector pass finds the piece's first `"usage` or
//                `"model`; the events that lie whole within the piece before it (found by a
//                short walk back to the last empty line) are passed over at once, never
//                scanned: the text deltas of a stream cost about one pass of a vector compare.
//                The event naming a member, and one cut across feeds, go through the scanner;
//                the reading is the same either way.
//   2. scanner   a byte-at-a-time JSON tokenizer that keeps only its nesting (no tree): at
//                nesting depth 1 or 2 the members `usage`, `usageMetadata`, `model` and
//                `modelVersion` have their raw value text captured, at most kMaxCapture bytes
//                (a longer value is dropped). Everything else passes without being stored.
//   3. readings  a captured value is parsed (nlohmann, no exceptions) and its known fields
//                overwrite the response's running reading (the wire formats report cumulative
//                counts: Anthropic's message_delta, Gemini's chunks), so the last report wins.
// Memory is fixed per response (a few hundred bytes plus one capture); a byte that does not
// parse counts nothing and never stops the flow. The reading's `input` includes cached input
// (Anthropic's input_tokens + cache_read + cache_creation; OpenAI's and Gemini's prompt counts
// already do), `cached` is the cached-read part, `output` includes reasoning/thinking tokens.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace agentbox::proxy {

struct Tokens {
  uint64_t input = 0;   // every input token, cached ones included
  uint64_t output = 0;  // generated tokens (thinking/reasoning included)
  uint64_t cached = 0;  // input tokens read from a prompt cache
  Tokens& operator+=(const Tokens& o) {
    input += o.input;
    output += o.output;
    cached += o.cached;
    return *this;
  }
};

class UsageMeter {
 public:
  enum class Format { kJson, kSse };
  static constexpr size_t kMaxCapture = 4096;  // bytes of one captured member value
  static constexpr int kMaxDepth = 64;         // deeper nesting stops the scan of that input
  static constexpr size_t kMaxHeld = 1024;     // bytes of an event cut by a piece's end, held

  // The format of a response by its Content-Type (nullopt: not a body usage is read from).
  [[nodiscard]] static std::optional<Format> format_for(std::string_view content_type);

  explicit UsageMeter(Format f) : format_(f) {}
  // A meter whose every byte goes through the byte scanner (no event passed over): the reference
  // the fast path is checked against (tests, the fuzzer).
  [[nodiscard]] static UsageMeter scanner_only(Format f) {
    UsageMeter m(f);
    m.fast_ = false;
    return m;
  }
  // Any split of the body into pieces gives the same reading.
  void feed(std::string_view bytes) noexcept;
  struct Reading {
    std::string model;  // as the response named it (empty: not named)
    Tokens tokens;
    bool seen = false;  // a usage report was read
  };
  // Ends the body (a last event without its blank line counts) and returns what was read.
  [[nodiscard]] Reading finish() noexcept;
  // SSE bytes passed over by the fast path (no byte scan): for tests and benchmarks.
  [[nodiscard]] uint64_t bytes_passed_over() const { return passed_over_; }

 private:
  // The raw usage fields seen (each overwritten by a later report).
  struct Raw {
    std::optional<uint64_t> input, output, cache_read, cache_write, cached_detail;  // Messages,
                                                                                    // Responses
    std::optional<uint64_t> prompt, completion, prompt_cached;             // Chat Completions
    std::optional<uint64_t> g_prompt, g_candidates, g_cached, g_thoughts;  // Gemini
  };
  enum class Line { kStart, kField, kData, kSkip };
  [[nodiscard]] size_t take_held(std::string_view bytes);
  void read_piece(std::string_view bytes, bool may_hold);
  [[nodiscard]] size_t skip_events(std::string_view bytes, size_t at, bool may_hold);
  [[nodiscard]] size_t skippable(std::string_view bytes, size_t at) const;
  void sse_byte(char ch);
  void json_byte(char ch);
  void reset_scan();
  void end_capture();
  void apply(std::string_view key, std::string_view value);

  Format format_;
  // SSE line state
  Line line_ = Line::kStart;
  bool after_cr_ = false;
  bool data_in_event_ = false;  // a data line was fed since the event began (joined with LF)
  std::string field_;           // the field name so far (at most 5 bytes: "data:")
  bool skip_space_ = false;     // after "data:", one space is not payload
  bool scan_event_ = false;     // this event goes through the byte scanner (not the fast path)
  bool fast_ = true;  // events without a member name are passed over (scanner_only: never)
  uint64_t passed_over_ = 0;
  std::string held_;  // the start of an SSE event cut by a piece's end (fast path), unread yet
  // scanner state
  int depth_ = 0;
  uint64_t object_levels_ = 0;  // bit d: the container at depth d+1 is an object
  bool in_string_ = false;
  bool escape_ = false;
  bool expect_key_ = false;  // the next string at this level is a member name
  bool broken_ = false;      // the input stopped parsing: ignored until the next reset
  std::string key_;          // the member name being read (capped), at depth <= 2
  bool key_capped_ = false;
  std::string last_key_;  // the member name whose value comes next
  // capture of a wanted member's value
  int capture_depth_ = -1;  // the object depth the member belongs to (-1: none)
  std::string capture_key_;
  std::string capture_;
  bool capture_over_ = false;
  Raw raw_;
  std::string model_;
};

}  // namespace agentbox::proxy
