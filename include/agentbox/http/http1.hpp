// HTTP/1.1 message heads, body framing and chunked decoding for the MITM path (pure).
//
// Theory of operation: the proxy keeps the bytes a side has sent in a buffer and calls
// parse_request()/parse_response() on it until the head is complete (a re-scan of a few KiB).
// Parsing is strict on purpose, because whatever this parser and the upstream server disagree on
// is a request-smuggling channel (RFC 9112 11.2):
//   * CRLF only: a bare LF or bare CR anywhere in the head is refused;
//   * no obs-fold, no whitespace between a field name and its colon, no CTLs in values;
//   * Content-Length: digits only; repeated with different values refused; with
//     Transfer-Encoding refused; Transfer-Encoding on a request must be exactly `chunked`;
//   * limits on the request line, the number of fields and the size of the head.
// The body is then framed by Framing: nothing, a length, chunked (ChunkedDecoder streams it
// with caps on the size line and the trailers), until close (responses only) or a tunnel after
// 101 Switching Protocols. serialize_head() writes a (possibly rewritten) head back out with the
// fields in their original order and spelling, CRLF everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace agentbox::http {

// What a box stream starts with (first bytes of a TCP connection).
enum class StreamKind { kNeedMore, kTls, kHttp1, kOther };
[[nodiscard]] StreamKind classify_stream(std::span<const std::byte> first);

struct Header {
  std::string name;   // as sent (case preserved); compare with iequals()
  std::string value;  // OWS trimmed
};

enum class Framing {
  kNone,           // no body
  kContentLength,  // exactly content_length bytes
  kChunked,        // Transfer-Encoding: chunked
  kUntilClose,     // response body delimited by the connection closing
  kTunnel,         // 101 Switching Protocols: raw bytes both ways from here on
};

struct Limits {
  size_t max_line = size_t{8} * 1024;   // request line / status line
  size_t max_head = size_t{64} * 1024;  // the whole head including the empty line
  size_t max_headers = 128;             // number of fields
};

struct Message {
  std::vector<Header> headers;
  Framing framing = Framing::kNone;
  uint64_t content_length = 0;  // when framing == kContentLength
  int version_minor = 1;        // HTTP/1.<minor>, 0 or 1
  bool keep_alive = true;       // connection persists after this message

  // First value of the field `name` (case-insensitive).
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
  [[nodiscard]] size_t count(std::string_view name) const;
  // Replaces every value of `name` with one field (kept at the first one's position, or
  // appended). remove_header() drops all fields of that name; returns how many.
  void set_header(std::string_view name, std::string value);
  size_t remove_header(std::string_view name);
};

struct Request : Message {
  std::string method;  // case-sensitive token, e.g. "GET"
  std::string target;  // request-target as sent (origin-form, absolute-form, '*')
  std::string host;    // canonical hostname from Host (or absolute-form), "" if an IP literal
  std::optional<uint16_t> port;  // explicit port of the Host field
  bool expect_continue = false;  // Expect: 100-continue
  bool wants_upgrade = false;    // Connection: upgrade + Upgrade present
  // CONNECT, TRACE and TRACK: the proxy refuses them (relayed CONNECT bypasses the allowlist,
  // TRACE/TRACK echo credentials back into the box).
  [[nodiscard]] bool refused_method() const;
};

struct Response : Message {
  int status = 0;
  std::string reason;
  [[nodiscard]] bool interim() const { return status >= 100 && status < 200 && status != 101; }
};

enum class ParseStatus { kNeedMore, kOk, kError };

template <class T>
struct Parsed {
  ParseStatus status = ParseStatus::kNeedMore;
  T message;
  size_t head_bytes = 0;  // bytes of the buffer the head took (when kOk)
  int http_status = 0;    // when kError: the status to answer with (400, 431, 501, 505, 502)
  std::string reason;     // when kError: human-readable, never echoes raw bytes
};

[[nodiscard]] Parsed<Request> parse_request(std::span<const std::byte> buf,
                                            const Limits& limits = {});

// What the response answers: its framing depends on the request (RFC 9112 6.3).
struct RequestContext {
  bool head = false;           // request method was HEAD
  bool asked_upgrade = false;  // the request carried Upgrade; a 101 without it is an error
};
[[nodiscard]] Parsed<Response> parse_response(std::span<const std::byte> buf,
                                              const RequestContext& ctx, const Limits& limits = {});

// Head bytes for a (possibly rewritten) message, fields in order, CRLF line ends.
[[nodiscard]] std::string serialize_head(const Request& r);
[[nodiscard]] std::string serialize_head(const Response& r);

// Streaming decoder of a chunked body (RFC 9112 7.1). Feed it any split of the bytes; decoded
// data is appended to `out`. Trailer fields are validated and kept in trailers().
class ChunkedDecoder {
 public:
  enum class State { kMore, kDone, kError };
  struct Caps {
    size_t max_size_line = 4096;              // chunk-size + extensions
    size_t max_trailers = size_t{16} * 1024;  // trailer section bytes
    uint64_t max_body = UINT64_MAX;           // decoded bytes in total
  };
  ChunkedDecoder() = default;
  explicit ChunkedDecoder(Caps caps) : caps_(caps) {}

  // Consumes bytes of `in` up to the end of the body; returns how many were used. Bytes past
  // the end (a pipelined next message) are left for the caller.
  size_t feed(std::span<const std::byte> in, std::string& out);
  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] const std::vector<Header>& trailers() const { return trailers_; }
  [[nodiscard]] uint64_t decoded() const { return decoded_; }

 private:
  enum class Step { kSize, kData, kDataCr, kDataLf, kTrailer, kDone };
  bool fail(std::string why);
  bool end_size_line();
  bool end_trailer_line();
  Caps caps_;
  State state_ = State::kMore;
  Step step_ = Step::kSize;
  std::string line_;
  uint64_t remaining_ = 0;
  uint64_t decoded_ = 0;
  size_t trailer_bytes_ = 0;
  std::vector<Header> trailers_;
  std::string error_;
};

// Streams a message body by its framing: kContentLength counts down, kChunked decodes (caps as
// ChunkedDecoder), kUntilClose takes everything until finish_eof(), kNone is done at once.
// kTunnel is not a body (the caller splices raw bytes) and is an error here.
class BodyReader {
 public:
  BodyReader(Framing framing, uint64_t content_length, ChunkedDecoder::Caps caps = {});
  // Appends decoded body bytes of `in` to `out`; returns bytes consumed (the rest belongs to
  // the next message).
  size_t feed(std::span<const std::byte> in, std::string& out);
  // The peer closed: fine for kUntilClose, truncation (error) for the others if not done.
  void finish_eof();
  // kContentLength and kUntilClose bodies are their raw bytes: the caller may use them where
  // they are (no copy). verbatim_limit(n): how many of n available bytes belong to the body;
  // skip(k) (k <= that) counts them as consumed, as feed() would have.
  [[nodiscard]] bool verbatim() const {
    return framing_ == Framing::kContentLength || framing_ == Framing::kUntilClose;
  }
  [[nodiscard]] size_t verbatim_limit(size_t available) const;
  void skip(size_t n);
  [[nodiscard]] bool done() const { return state_ == ChunkedDecoder::State::kDone; }
  [[nodiscard]] bool failed() const { return state_ == ChunkedDecoder::State::kError; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  Framing framing_;
  uint64_t remaining_;
  ChunkedDecoder chunked_;
  ChunkedDecoder::State state_ = ChunkedDecoder::State::kMore;
  std::string error_;
};

// Chunked encoding of `data` as one chunk (nothing for empty data), and the last chunk.
[[nodiscard]] std::string encode_chunk(std::string_view data);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// A complete response the proxy sends instead of forwarding: `status`, a plain-text body that
// tells the agent why (agents read it and adapt), `X-Agentbox-Denied: 1`, Connection: close.
// The body is one line, "agentbox: " + `why` (e.g. "POST https://h/p denied by rule R"). CTLs
// in `why` are replaced, so text derived from box input cannot split the response.
[[nodiscard]] std::string denial_response(int status, std::string_view why);

// Case-insensitive ASCII comparison of field names and tokens.
[[nodiscard]] bool iequals(std::string_view a, std::string_view b);

// Every non-empty item of every field `name` (comma-separated lists, OWS trimmed), in order.
[[nodiscard]] std::vector<std::string_view> list_items(const Message& m, std::string_view name);

}  // namespace agentbox::http
