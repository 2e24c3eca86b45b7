// One connection of the OTLP exporter to its collector, plain TCP or TLS (OpenSSL 3), on a
// non-blocking socket whose every wait is a poll bounded by a Deadline (docs/TELEMETRY.md).
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "agentbox/audit/export.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/base/unique_fd.hpp"

namespace agentbox::audit::otlp {

using Clock = std::chrono::steady_clock;

// When a wait must end: the POST's own deadline, or earlier once the exporter stops (`cutoff`,
// re-read at least every 100 ms, so a stop() cuts short even a handshake that never finishes).
struct Deadline {
  Clock::time_point own;
  const std::atomic<Clock::rep>* cutoff = nullptr;  // 0: no cutoff yet
  [[nodiscard]] Clock::time_point at() const;
};

// Why a POST failed: worth another attempt (the network, a timeout, a torn answer), or not (the
// collector's certificate was refused: retrying cannot change it).
enum class Failure { kRetry, kFinal };

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

// A client context that verifies the collector: against `ca_file` alone when it is set (a
// private collector CA), else against OpenSSL's default paths (the system trust store).
[[nodiscard]] base::Result<SslCtxPtr> make_tls_context(const std::string& ca_file);

class Conn {
 public:
  // Connects (and, with `tls`, handshakes and verifies the peer's name). `failure` says whether
  // an error is worth retrying.
  [[nodiscard]] static base::Result<Conn> open(const Endpoint& e, SSL_CTX* tls,
                                               const Deadline& deadline, Failure& failure);
  [[nodiscard]] base::Status write_all(std::string_view data, const Deadline& deadline);
  // Some bytes of the answer; 0 when the collector closed the connection.
  [[nodiscard]] base::Result<size_t> read_some(std::span<char> buf, const Deadline& deadline);

 private:
  base::Status handshake(const Endpoint& e, const Deadline& deadline, Failure& failure);
  base::UniqueFd fd_;
  SslPtr ssl_;
};

}  // namespace agentbox::audit::otlp
