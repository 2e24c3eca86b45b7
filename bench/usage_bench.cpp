// Usage accounting's cost on a streamed model response (issue 17: "<= 2% proxy CPU"). A model's
// SSE stream reaches the proxy one event per TLS record; per record the proxy at least decrypts
// it (upstream), decodes the chunk, and encrypts it again (box). This bench replays that floor
// (AES-128-GCM open + seal of each event's record, through one EVP context each way, as the TLS
// channels do) with and without the UsageMeter fed each event, in alternating rounds (paired:
// the same stream, the same machine minutes), and prints the thread CPU of both and the ratio.
// The proxy's real per-event work also has reads, writes, an epoll wake and the scrubber, so the
// ratio printed is an upper bound of what the meter adds to the proxy's CPU.
//
//   build/bench/usage_bench [events per stream] [rounds]     (defaults 2000 and 9)
#include <fmt/core.h>
#include <openssl/evp.h>
#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "agentbox/proxy/usage.hpp"
#include "model_stream.hpp"

namespace {

using agentbox::proxy::UsageMeter;

double cpu_now() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Aead {
  EVP_CIPHER_CTX* seal = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX* open = EVP_CIPHER_CTX_new();
  unsigned char key[16] = {1, 2, 3};
  unsigned char iv[12] = {4, 5, 6};
  std::string out;
  std::string back;
  Aead() {
    EVP_EncryptInit_ex(seal, EVP_aes_128_gcm(), nullptr, key, iv);
    EVP_DecryptInit_ex(open, EVP_aes_128_gcm(), nullptr, key, iv);
  }
  ~Aead() {
    EVP_CIPHER_CTX_free(seal);
    EVP_CIPHER_CTX_free(open);
  }
  Aead(const Aead&) = delete;
  Aead& operator=(const Aead&) = delete;
  // One record each way: sealed (as the upstream sent it), opened (the proxy), sealed again.
  void record(const std::string& plain) {
    int n = 0;
    out.resize(plain.size() + 16);
    back.resize(plain.size() + 16);
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    auto* b = reinterpret_cast<unsigned char*>(back.data());
    const auto* p = reinterpret_cast<const unsigned char*>(plain.data());
    const int len = static_cast<int>(plain.size());
    EVP_EncryptInit_ex(seal, nullptr, nullptr, nullptr, iv);
    EVP_EncryptUpdate(seal, o, &n, p, len);
    EVP_EncryptFinal_ex(seal, o + n, &n);
    EVP_DecryptInit_ex(open, nullptr, nullptr, nullptr, iv);
    EVP_DecryptUpdate(open, b, &n, o, len);
    EVP_EncryptInit_ex(seal, nullptr, nullptr, nullptr, iv);
    EVP_EncryptUpdate(seal, o, &n, b, len);
    EVP_EncryptFinal_ex(seal, o + n, &n);
  }
};

// One stream through the record floor, metered or not; returns the thread CPU seconds.
double run(Aead& aead, const std::vector<std::string>& stream, bool meter, uint64_t& tokens) {
  const double t0 = cpu_now();
  UsageMeter m(UsageMeter::Format::kSse);
  for (const auto& ev : stream) {
    aead.record(ev);
    if (meter) {
      m.feed(ev);
    }
  }
  if (meter) {
    tokens += m.finish().tokens.output;
  }
  return cpu_now() - t0;
}

}  // namespace

int main(int argc, char** argv) {
  const int events = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 9;
  const auto stream = agentbox::bench::anthropic_events(events);
  size_t bytes = 0;
  for (const auto& e : stream) {
    bytes += e.size();
  }
  Aead aead;
  uint64_t tokens = 0;
  std::vector<double> off;
  std::vector<double> on;
  std::vector<double> ratio;
  for (int r = 0; r < rounds; ++r) {
    // Alternate which goes first, so a change of load mid-pair hits both sides alike.
    double a = 0;
    double b = 0;
    for (int i = 0; i < 20; ++i) {
      if ((r + i) % 2 == 0) {
        a += run(aead, stream, false, tokens);
        b += run(aead, stream, true, tokens);
      } else {
        b += run(aead, stream, true, tokens);
        a += run(aead, stream, false, tokens);
      }
    }
    off.push_back(a / 20);
    on.push_back(b / 20);
    ratio.push_back(b / a);
  }
  std::sort(ratio.begin(), ratio.end());
  std::sort(off.begin(), off.end());
  std::sort(on.begin(), on.end());
  const size_t mid = ratio.size() / 2;
  fmt::print(
      "stream: {} events, {} bytes; per stream (median of {} rounds, thread CPU): record floor "
      "{:.1f} us, with the meter {:.1f} us; ratio median {:.4f} (min {:.4f}, max {:.4f}); "
      "meter alone ~{:.2f} ns/byte; tokens read {}\n",
      stream.size(), bytes, rounds, off[mid] * 1e6, on[mid] * 1e6, ratio[mid], ratio.front(),
      ratio.back(), (on[mid] - off[mid]) * 1e9 / static_cast<double>(bytes), tokens);
  return 0;
}
