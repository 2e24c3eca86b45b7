// The audit log's hash chain: sealing lines as the sink accepts them, and checking a log's lines
// (`agentbox log --verify`). The link is the last field of a line, so both sides find it by its
// fixed-size suffix and never parse the JSON before it.
#include "agentbox/audit/chain.hpp"

#include <fmt/core.h>
#include <sys/random.h>

// SHA256_Init/Update/Final: see Hasher below for why these and not an EVP_MD.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <cerrno>
#include <stdexcept>

namespace agentbox::audit {

namespace {

constexpr std::string_view kPrevField = ",\"prev\":\"";
constexpr std::string_view kNonceField = ",\"nonce\":\"";
constexpr std::string_view kEnd = "\"}";
constexpr size_t kHex = 2 * kDigestBytes;

enum class Link { kNone, kNonce, kPrev };

bool is_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// The link at the end of `body` (a line without its newline) and its 64 hex digits.
Link link_of(std::string_view body, std::string_view& value) {
  if (!body.ends_with(kEnd) || body.size() < kEnd.size() + kHex) {
    return Link::kNone;
  }
  value = body.substr(body.size() - kEnd.size() - kHex, kHex);
  std::string_view before = body.substr(0, body.size() - kEnd.size() - kHex);
  if (before.ends_with(kPrevField)) {
    return Link::kPrev;
  }
  return before.ends_with(kNonceField) && is_hex(value) ? Link::kNonce : Link::kNone;
}

}  // namespace

std::string hex(const Digest& d) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(kHex, '0');
  for (size_t i = 0; i < d.size(); ++i) {
    out[2 * i] = kDigits[d[i] >> 4];
    out[2 * i + 1] = kDigits[d[i] & 0xf];
  }
  return out;
}

// SHA-256 through OpenSSL's own SHA-256 functions rather than an EVP_MD: the first EVP fetch
// initialises OpenSSL's library context (reads openssl.cnf, loads the default provider, builds
// its name maps and, at exit, frees them again), ~3.6 ms of CPU and ~60 page faults on the start
// path of every box (docs/BENCHMARKS.md, start-up call by call); these functions are the same
// SHA-256 with none of that. Deprecated in OpenSSL 3.0 (for the provider API), not removed.
struct Hasher::Impl {};

Hasher::Hasher() = default;
Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

bool Hasher::digest(std::string_view data, Digest& out) {
  SHA256_CTX c;
  return SHA256_Init(&c) == 1 && SHA256_Update(&c, data.data(), data.size()) == 1 &&
         SHA256_Final(out.data(), &c) == 1;
}

base::Result<Chain> Chain::start() {
  Digest nonce{};
  size_t got = 0;
  while (got < nonce.size()) {
    ssize_t n = ::getrandom(nonce.data() + got, nonce.size() - got, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return base::Error::sys(n < 0 ? errno : EIO, "getrandom", "the audit chain's nonce");
    }
    got += static_cast<size_t>(n);
  }
  return Chain(nonce);
}

Chain::Chain(const Digest& nonce) : head_(nonce) {}

void Chain::seal(std::string& line) {
  // Room first, so that a failed allocation leaves the line as it was.
  line.reserve(line.size() + kNonceField.size() + kHex + kEnd.size());
  size_t rendered = line.size();
  line.resize(rendered - 2);  // "}\n"
  line += lines_ == 0 ? kNonceField : kPrevField;
  line += hex(head_);
  line += kEnd;
  line += '\n';
  Digest next{};
  if (!hasher_.digest(line, next)) {
    line.resize(rendered - 2);
    line += "}\n";
    throw std::runtime_error("SHA-256 failed");
  }
  head_ = next;
  ++lines_;
}

bool ChainVerifier::fail(std::string reason) {
  broken_ = ChainBreak{.line = lines_, .reason = std::move(reason)};
  return false;
}

bool ChainVerifier::feed(std::string_view line) {
  if (broken_) {
    return false;
  }
  ++lines_;
  if (!line.ends_with('\n')) {
    return fail("it ends without a newline: the log was cut inside this line");
  }
  std::string_view value;
  switch (link_of(line.substr(0, line.size() - 1), value)) {
    case Link::kNone:
      return fail(
          "it does not end with a chain link (\"prev\" or \"nonce\"): written by an agentbox "
          "without the chain, torn by a failed write, or edited");
    case Link::kNonce:
      if (lines_ != 1) {
        return fail(
            "it starts a second chain (a nonce after line 1): two logs joined, or the lines "
            "before it replaced");
      }
      nonce_ = std::string(value);
      break;
    case Link::kPrev:
      if (lines_ == 1) {
        return fail("it links to a line before it, but it is the first: lines were removed");
      }
      if (value != hex(head_)) {
        return fail(fmt::format(
            "its \"prev\" is not the SHA-256 of line {}: line {} was changed, or lines were "
            "removed or moved between them",
            lines_ - 1, lines_ - 1));
      }
      break;
  }
  if (!hasher_.digest(line, head_)) {
    return fail("SHA-256 failed (OpenSSL)");
  }
  return true;
}

std::optional<ChainBreak> ChainVerifier::finish() const {
  if (broken_) {
    return broken_;
  }
  if (lines_ == 0) {
    return ChainBreak{.line = 0, .reason = "the log is empty"};
  }
  return std::nullopt;
}

}  // namespace agentbox::audit
