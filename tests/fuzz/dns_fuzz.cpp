// Fuzz target: DNS queries through the full responder (parser, policy, pool, reply builder).
#include <cstddef>
#include <cstdint>

#include "agentbox/net/dns.hpp"

using namespace agentbox;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto policy = *policy::EgressPolicy::parse({"example.com", "*.example.com"});
  static net::SyntheticPool pool(net::ip4(198, 18, 0, 0), 15, 1024);
  audit::MemorySink sink;
  net::DnsResponder dns(policy, pool, sink);
  auto reply = dns.answer({reinterpret_cast<const std::byte*>(data), size});
  if (reply.size() > 512) {
    __builtin_trap();  // a reply must always fit a plain UDP message
  }
  return 0;
}
