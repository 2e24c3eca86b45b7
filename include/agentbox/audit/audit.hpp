// The audit log: one JSON object per line, versioned schema, one shared sink per session.
//
// Every module that allows or blocks something emits an Event here (session start/end, grants,
// DNS answers, connections, requests, credential uses, denied syscalls, policy changes). The log
// is for machines and for the user afterwards; diagnostics for humans go to stderr instead.
// Schema (version 1): {"v":1,"ts":"<RFC 3339 UTC, ms>","session":"<id>","type":"<kind>", ...}
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::audit {

inline constexpr int kSchemaVersion = 1;

// Appends `s` to `out` as a JSON string body (no quotes). Invalid UTF-8 becomes U+FFFD, so
// hostile bytes from the box can never break a line of the log.
void json_escape(std::string_view s, std::string& out);

// Builder for one event. Field order is insertion order; keys are trusted literals.
class Event {
 public:
  explicit Event(std::string_view type);
  Event& str(std::string_view key, std::string_view value);
  Event& num(std::string_view key, int64_t value);
  Event& boolean(std::string_view key, bool value);
  Event& strs(std::string_view key, std::span<const std::string> values);
  // Marks the event as one of a kind a box can repeat at will (a denied name): a sink that
  // coalesces writes the first event of each (type, key) in a second and counts the rest into
  // one "audit.repeated" line. Not part of the line.
  Event& coalesce(std::string key);
  [[nodiscard]] const std::string& type() const { return type_; }
  [[nodiscard]] const std::string& coalesce_key() const { return coalesce_; }
  // The fields after "type", as `,"k":v,...` (used by sinks to build the line).
  [[nodiscard]] const std::string& fields() const { return fields_; }
  // The value of field `key` as written in the line: a string's JSON-escaped text without the
  // quotes (printable: control bytes are escaped), a number's digits. For sinks that summarise
  // (the exit summary counts hosts); nullopt when absent or not a string/number.
  [[nodiscard]] std::optional<std::string_view> field(std::string_view key) const;

 private:
  void key(std::string_view k);
  std::string type_;
  std::string fields_;
  std::string coalesce_;
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Never fails from the caller's view: an audit write error is counted and reported once.
  virtual void emit(const Event& event) noexcept = 0;
};

// Counts per event type, kept by every sink for the exit summary.
class Tally {
 public:
  void add(const std::string& type);
  [[nodiscard]] uint64_t count(std::string_view type) const;
  [[nodiscard]] std::map<std::string, uint64_t> snapshot() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, uint64_t, std::less<>> counts_;
};

// The bounds of one session's log (config [audit], docs/CONFIG.md).
struct SinkLimits {
  uint64_t max_bytes = 64ull << 20;  // then one "audit.truncated" line, the rest dropped
  bool coalesce = true;              // Event::coalesce() honoured
};

// What a sink could not write, for the exit summary and the session.end line.
struct Losses {
  uint64_t failed_lines = 0;     // lines a failed write(2) lost (whole or torn)
  int first_errno = 0;           // the first failure's errno
  uint64_t truncated_lines = 0;  // lines dropped after the size cap
  uint64_t coalesced = 0;        // repeats counted into "audit.repeated" lines (not lost)
  [[nodiscard]] bool lost() const { return failed_lines != 0 || truncated_lines != 0; }
};

// Appends lines to a file opened O_APPEND; each event is one write(2), except while held.
//
// Holding (the session's loop holds the sink for each iteration that dispatches something):
// between hold() and release() lines are kept in a fixed buffer and written with one write(2) by
// release(), or earlier when the buffer is full; a short connection's two to three events then
// cost one write instead of one each. Nothing emitted is lost on the way out: release() runs at
// the end of every loop iteration, the destructor writes what is held, and a fatal signal
// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) writes the held lines from an async-signal-safe
// handler before the previous disposition runs (installed by the first hold()). Only SIGKILL can
// take the lines of the current iteration with it.
//
// Each accepted line is sealed into the session's hash chain as it is accepted (audit/chain.hpp),
// before it is held, so the held buffer and the crash handler write chained lines only.
//
// Integrity (issue 14): a failed write is counted in lines (losses()), never silent; a write torn
// by ENOSPC is followed by a newline before the next line, so every later line parses. Past
// max_bytes one "audit.truncated" line is written and later lines are only counted; final() is
// written past the cap, so the log always says how the session ended. on_loss() runs once, at
// the first line lost either way (the session's fail-closed switch, `audit.required`).
class JsonlSink final : public Sink {
 public:
  [[nodiscard]] static base::Result<JsonlSink> open(const std::string& path, std::string session_id,
                                                    SinkLimits limits = {});
  JsonlSink(JsonlSink&&) noexcept;
  JsonlSink& operator=(JsonlSink&&) = delete;
  ~JsonlSink() override;
  void emit(const Event& event) noexcept override;
  // The session's last line: pending repeat counts first, then `event` even past the size cap.
  void final(const Event& event) noexcept;
  void hold() noexcept;
  void release() noexcept;  // writes what is held and stops holding
  // Called once, with the sink's lock held, when the first line is lost; must not emit.
  void on_loss(std::function<void()> f);
  // Called with each line as it is accepted (sealed, newline included, before it is written),
  // with the sink's lock held: a telemetry exporter (audit/export.hpp) copies it and returns,
  // never blocks and never emits.
  void observe(std::function<void(std::string_view line)> f);
  [[nodiscard]] const Tally& tally() const { return *tally_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] Losses losses() const;
  [[nodiscard]] uint64_t write_errors() const { return losses().failed_lines; }
  // The SHA-256 of the last line accepted, hex (audit/chain.hpp): the exit summary prints it.
  [[nodiscard]] std::string chain_head() const;

 private:
  JsonlSink(base::UniqueFd fd, std::string path, std::string session_id, SinkLimits limits);
  struct Held;
  void write_held() noexcept;                               // caller holds held_->mu
  void write_out(std::string_view s) noexcept;              // ditto: one write, losses counted
  void append(std::string line, bool final_line) noexcept;  // ditto: the cap, the chain, the buffer
  bool fold(const Event& event);                            // ditto: true when counted, not written
  void flush_repeats() noexcept;                            // ditto
  void lose(uint64_t lines, int err) noexcept;              // ditto
  base::UniqueFd fd_;
  std::unique_ptr<Held> held_;
  std::string path_;
  std::string session_id_;
  std::unique_ptr<Tally> tally_ = std::make_unique<Tally>();
};

// Keeps lines in memory: for tests, and before the session folder exists.
class MemorySink final : public Sink {
 public:
  explicit MemorySink(std::string session_id = "test") : session_id_(std::move(session_id)) {}
  void emit(const Event& event) noexcept override;
  [[nodiscard]] std::string lines() const;
  [[nodiscard]] const Tally& tally() const { return tally_; }

 private:
  std::string session_id_;
  mutable std::mutex mu_;
  std::string lines_;
  Tally tally_;
};

// Renders one full line (with trailing newline) for `event` at the current time.
[[nodiscard]] std::string render_line(const Event& event, std::string_view session_id);

}  // namespace agentbox::audit
