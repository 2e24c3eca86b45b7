// Telemetry: the audit log's lines shipped as they are accepted (docs/TELEMETRY.md).
//
// Theory of operation: JsonlSink::observe() hands each accepted line, sealed, to the exporters
// below, under the sink's lock; they only copy it.
//  - OtlpExporter queues the line (bounded in bytes; the oldest line is dropped and counted when
//    full) and a worker thread of its own batches the queue into OTLP/HTTP JSON log records
//    (otlp_payload) and POSTs them to the collector (over TLS for https://), retrying with
//    backoff. The session's loop never waits for the network: a slow, dead or never-handshaking
//    collector costs dropped lines, counted.
//  - JournaldWriter sends one datagram per line, in the journal's native protocol, with
//    MSG_DONTWAIT: a full journal socket drops the line (counted), never blocks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::audit {

using Attributes = std::vector<std::pair<std::string, std::string>>;

// Where an OTLP/HTTP collector listens: `http://HOST[:PORT]/PATH`, or `https://` for HTTP/1.1
// over TLS (the peer verified, its name checked).
struct Endpoint {
  bool tls = false;
  std::string host;
  uint16_t port = 4318;
  std::string path = "/v1/logs";
};
[[nodiscard]] base::Result<Endpoint> parse_endpoint(std::string_view url);

// The OTLP logs JSON body (ExportLogsServiceRequest) for `lines` (JSONL lines of the audit log):
// one resource with `resource` as string attributes, one scope, one log record per line; the
// line itself is the body, its fields attributes named by the OpenTelemetry semantic conventions
// where one exists (server.address, http.request.method, gen_ai.usage.input_tokens, ...), else
// `agentbox.<field>`. A line that does not parse becomes a record with only its body.
[[nodiscard]] std::string otlp_payload(std::span<const std::string> lines,
                                       const Attributes& resource);

struct OtlpOptions {
  Endpoint endpoint;
  Attributes headers;   // sent with every POST (an API key of the collector, say)
  std::string ca_file;  // https: the only CAs trusted (PEM); empty: the system trust store
  Attributes resource;  // resource attributes
  size_t max_queue_bytes = 2u << 20;
  size_t max_batch = 512;  // lines per POST
  std::chrono::milliseconds flush_every{1000};
  std::chrono::milliseconds timeout{5000};  // per POST: connect, send, response
  int max_attempts = 4;                     // per batch, then its lines are dropped
  std::chrono::milliseconds backoff{250};   // doubled per retry, at most 8 s
};

struct ExportStats {
  uint64_t queued = 0;   // lines handed to the exporter
  uint64_t sent = 0;     // lines a collector accepted (2xx)
  uint64_t dropped = 0;  // lines lost: queue full, retries exhausted, rejected, left at stop
  uint64_t posts = 0;    // POSTs attempted
  std::string last_error;
};

class OtlpExporter {
 public:
  explicit OtlpExporter(OtlpOptions options);
  // The exporter, with its TLS context for an https:// endpoint (an unreadable CA file or one
  // without certificates is an error here, at start, not a drop later).
  [[nodiscard]] static base::Result<std::unique_ptr<OtlpExporter>> make(OtlpOptions options);
  ~OtlpExporter();
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;
  // Copies the line into the queue; drops the oldest line(s) when over max_queue_bytes.
  void push(std::string_view line) noexcept;
  // Starts the worker (after the box is cloned: no thread exists while the supervisor forks).
  [[nodiscard]] base::Status start();
  // Sends what it can within `drain`, then drops the rest (counted) and joins the worker.
  ExportStats stop(std::chrono::milliseconds drain);
  [[nodiscard]] ExportStats stats() const;

 private:
  struct State;
  // Only std::bad_alloc can leave these (fmt's format strings are checked at compile time, the
  // payload is built under try): std::terminate is then the loud end a thread has anyway.
  void run() noexcept;                                        // NOLINT(bugprone-exception-escape)
  bool send_batch(std::vector<std::string>& batch) noexcept;  // NOLINT(bugprone-exception-escape)
  std::unique_ptr<State> st_;
};

// The journal's native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL): one datagram per line with
// MESSAGE (the line), PRIORITY, SYSLOG_IDENTIFIER, AGENTBOX_SESSION, AGENTBOX_EVENT and `fields`.
[[nodiscard]] std::string journald_datagram(std::string_view line, const Attributes& fields);

class JournaldWriter {
 public:
  // /run/systemd/journal/socket, or $AGENTBOX_JOURNAL_SOCKET (for tests only). An error when
  // the socket is absent or refuses the connection.
  [[nodiscard]] static base::Result<JournaldWriter> open(std::string path, Attributes fields);
  [[nodiscard]] static std::string socket_path();
  void send(std::string_view line) noexcept;
  [[nodiscard]] uint64_t sent() const { return sent_; }
  [[nodiscard]] uint64_t dropped() const { return dropped_; }

 private:
  JournaldWriter(base::UniqueFd fd, Attributes fields)
      : fd_(std::move(fd)), fields_(std::move(fields)) {}
  base::UniqueFd fd_;
  Attributes fields_;
  uint64_t sent_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace agentbox::audit
