// The proxy on a thread of its own, as the supervisor runs it: its event loop, handler and a
// loopback Acceptor (every accepted connection is a box flow named `host`) live and die there.
// Shared by bench_proxy, bench_usage_proxy and bench_h2_proxy; thread() gives its CPU clock.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "../../tests/unit/proxy/proxy_rig.hpp"

namespace agentbox::proxy::testing {

// The benches' one credential: `name`, injected as the header `header` on `host`, its real key
// an Anthropic-shaped constant ("sk-ant-api03-" and 80 'r'); the box sends its placeholder.
inline base::Result<cred::CredentialSet> bench_credential(const std::string& host,
                                                          const std::string& name,
                                                          const std::string& header) {
  return cred::CredentialSet::load(
      {{.name = name,
        .env = "KEY",
        .from = policy::SourceSpec::env("KEY"),
        .hosts = {host},
        .inject = policy::InjectSpec::header(header)}},
      cred::SecretSource([](const std::string&) -> std::optional<std::string> {
        return std::string("sk-ant-api03-") + std::string(80, 'r');
      }),
      nullptr);
}

// Options that send `host`:443 to the loopback upstream on `port`, trusting `ca_file` for it.
inline ProxyOptions bench_options(const std::string& host, uint16_t port,
                                  const std::string& ca_file) {
  ProxyOptions options;
  options.connect_to.push_back(
      *net::parse_connect_to(host + ":443:127.0.0.1:" + std::to_string(port)));
  options.upstream_ca = {ca_file};
  return options;
}

// Serves (the caller's threads run) until the script that started the bench closes its stdin.
inline void serve_until_stdin_closes() {
  char c = 0;
  while (read(0, &c, 1) > 0) {
  }
}

class ProxyThread {
 public:
  // Everything passed must outlive the thread (stop() or the destructor joins it).
  ProxyThread(const policy::EgressPolicy& policy, const ProxyOptions& options,
              cred::CredentialSet* credentials, SessionCa* ca, audit::Sink& audit,
              std::string host) {
    thread_ = std::thread([this, &policy, &options, credentials, ca, &audit, host] {
      pthread_setname_np(pthread_self(), "proxy");  // for perf --comm and top -H
      auto loop = event::Loop::create();
      auto handler = ProxyHandler::create(*loop, policy, options, credentials, ca, audit);
      if (!handler) {
        std::fprintf(stderr, "proxy: %s\n", handler.error().message().c_str());
        std::exit(1);
      }
      Acceptor acc(*loop, **handler, host);
      port_ = acc.port();
      while (!stop_) {
        (void)loop->run_once(std::chrono::milliseconds(20));
      }
    });
    while (port_ == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~ProxyThread() { stop(); }
  ProxyThread(const ProxyThread&) = delete;
  ProxyThread& operator=(const ProxyThread&) = delete;
  void stop() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] pthread_t thread() { return thread_.native_handle(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint16_t> port_{0};
  std::thread thread_;
};

}  // namespace agentbox::proxy::testing
