// Fuzz target: the audit chain verifier (`agentbox log --verify`) on arbitrary logs, and the
// chain's promise on lines built from the input: what seal() wrote verifies to its head, and any
// one byte changed in a line but the last breaks it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/audit/chain.hpp"

namespace {

using namespace agentbox::audit;

std::vector<std::string_view> split(std::string_view s) {  // each line keeps its newline
  std::vector<std::string_view> out;
  for (size_t at = 0; at < s.size();) {
    size_t nl = s.find('\n', at);
    size_t end = nl == std::string_view::npos ? s.size() : nl + 1;
    out.push_back(s.substr(at, end - at));
    at = end;
  }
  return out;
}

template <class Lines>
std::optional<ChainBreak> verify(const Lines& lines, std::string& head) {
  ChainVerifier v;
  for (const auto& l : lines) {
    if (!v.feed(l)) {
      break;
    }
  }
  head = v.head();
  auto b = v.finish();
  if (b && (b->reason.empty() || b->line > v.lines())) {
    std::abort();
  }
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> raw = split(in);
  std::string head;
  (void)verify(raw, head);

  Digest nonce{};
  Chain chain(nonce);
  std::vector<std::string> sealed;
  for (std::string_view l : raw) {
    std::string line = render_line(Event("fuzz.line").str("data", l), "s");
    chain.seal(line);
    sealed.push_back(std::move(line));
  }
  if (!sealed.empty() && (verify(sealed, head) || head != chain.head())) {
    std::abort();  // what the sink wrote must verify, to its head
  }
  if (sealed.size() >= 2 && size >= 2) {
    size_t which = data[0] % (sealed.size() - 1);
    std::string& victim = sealed[which];
    victim[data[1] % victim.size()] ^= static_cast<char>(1 + data[size - 1] % 255);
    if (!verify(sealed, head)) {
      std::abort();  // an edited line before the last went unnoticed
    }
  }
  return 0;
}
