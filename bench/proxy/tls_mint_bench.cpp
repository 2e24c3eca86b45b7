// Measures session CA creation, first-use leaf minting and cached leaf lookup.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "agentbox/proxy/tls_ca.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double median_us(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double since_us(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 50;
  using agentbox::proxy::SessionCa;
  std::vector<double> create, mint, cached;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    auto ca = SessionCa::create({.hosts = {"*.bench.example", "api.github.com"}});
    create.push_back(since_us(t0));
    if (!ca) {
      fmt::print(stderr, "bench: {}\n", ca.error().message());
      return 1;
    }
    for (int i = 0; i < 20; ++i) {
      const std::string host = fmt::format("h{}.bench.example", i);
      t0 = Clock::now();
      if (!ca->leaf_for(host)) {
        return 1;
      }
      mint.push_back(since_us(t0));
      t0 = Clock::now();
      if (!ca->leaf_for(host)) {
        return 1;
      }
      cached.push_back(since_us(t0));
    }
  }
  fmt::print("session CA create (2 P-256 keys + CA cert): median {:.0f} us over {} runs\n",
             median_us(create), create.size());
  fmt::print("leaf mint (first use of a name):            median {:.0f} us over {} runs\n",
             median_us(mint), mint.size());
  fmt::print("leaf lookup (cached):                        median {:.2f} us over {} runs\n",
             median_us(cached), cached.size());
  return 0;
}
