// TLS ClientHello reader: SNI, ALPN and ECH presence from the first bytes of a stream (pure).
//
// Theory of operation: the proxy accumulates the first bytes a box connection sends and calls
// parse_client_hello() on the whole prefix each time more arrive (a re-parse of a few hundred
// bytes is cheaper than keeping parser state). Stages, in order:
//   1. records: TLS plaintext records of type handshake(22), version 3.x, length <= 2^14
//      (RFC 8446 5.1), concatenated until the handshake message is complete; any other record
//      type before that, or a message longer than the cap, is malformed;
//   2. handshake header: type client_hello(1) and a 24-bit length;
//   3. ClientHello body: version, random, session id, cipher suites, compression methods and the
//      extension block, every vector bounds-checked, no trailing bytes, no duplicate extension;
//   4. extensions: server_name (one host_name, strict hostname grammar, normalized), ALPN
//      (protocol list), encrypted_client_hello (0xfe0d) and the draft ESNI (0xffce) flagged.
// The parser never allocates more than the result and never reads past the span.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace agentbox::http {

enum class HelloStatus {
  kNeedMore,   // a valid prefix of a ClientHello: read more bytes and call again
  kNotTls,     // the stream does not start with a TLS handshake record
  kMalformed,  // starts like TLS but breaks the grammar (or exceeds the caps)
  kOk,         // a complete ClientHello was parsed
};

struct ClientHello {
  bool has_sni = false;
  std::string sni;                // canonical hostname (lowercase, no trailing dot) when has_sni
  std::vector<std::string> alpn;  // offered protocols, in order, raw bytes
  bool has_ech = false;           // encrypted_client_hello (outer SNI is only the public name)
  bool has_esni = false;          // draft-ietf-tls-esni encrypted_server_name (0xffce)
  bool offers_tls13 = false;      // supported_versions lists 0x0304
  uint16_t legacy_version = 0;
  std::vector<uint16_t> extensions;  // extension types in wire order (for audit/fingerprints)
  size_t record_bytes = 0;           // bytes of the stream the ClientHello records occupy
};

struct HelloResult {
  HelloStatus status = HelloStatus::kNeedMore;
  ClientHello hello;   // filled when status == kOk
  std::string reason;  // why, when kMalformed / kNotTls (never contains raw box bytes)
};

// Default cap on the reassembled handshake message: real ClientHellos are < 2 KiB, post-quantum
// key shares bring them to ~1.8-3 KiB; 64 KiB leaves room and bounds memory per connection.
inline constexpr size_t kMaxClientHello = size_t{64} * 1024;

[[nodiscard]] HelloResult parse_client_hello(std::span<const std::byte> stream,
                                             size_t max_hello = kMaxClientHello);

}  // namespace agentbox::http
