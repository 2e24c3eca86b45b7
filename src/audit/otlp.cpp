// The OTLP/HTTP exporter: a bounded queue filled under the audit sink's lock, drained by a worker
// thread of its own that POSTs batches over HTTP/1.1, plain or TLS (audit/export.hpp). The
// worker's connection is its own and every wait on it is bounded (otlp_conn.hpp), so a slow
// collector stalls only the worker; the session's loop only ever copies a line into the queue.
#include <fmt/core.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "agentbox/audit/export.hpp"
#include "agentbox/base/error.hpp"
#include "otlp_conn.hpp"

namespace agentbox::audit {

using base::Error;
using base::Result;
using Clock = std::chrono::steady_clock;

Result<Endpoint> parse_endpoint(std::string_view url) {
  Endpoint e;
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
    e.tls = true;
  } else {
    return Error::msg(fmt::format("`{}` is not an http:// or https:// URL", url))
        .hint(
            "the exporter speaks OTLP/HTTP (JSON), e.g. http://127.0.0.1:4318/v1/logs or "
            "https://collector.example:4318/v1/logs");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  e.path = slash == std::string_view::npos ? "/v1/logs" : std::string(rest.substr(slash));
  size_t colon = authority.rfind(':');
  if (!authority.empty() && authority.front() == '[') {  // [::1]:4318
    size_t close = authority.find(']');
    colon = close != std::string_view::npos && close + 1 < authority.size()
                ? close + 1
                : std::string_view::npos;
  }
  e.host = std::string(authority.substr(0, colon));
  if (colon != std::string_view::npos) {
    std::string_view p = authority.substr(colon + 1);
    unsigned v = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc() || end != p.data() + p.size() || v == 0 || v > 65535) {
      return Error::msg(fmt::format("`{}`: `{}` is not a port", url, p));
    }
    e.port = static_cast<uint16_t>(v);
  }
  if (e.host.size() > 2 && e.host.front() == '[') {
    e.host = e.host.substr(1, e.host.size() - 2);
  }
  bool bad = e.host.empty() || e.path.find_first_of(" \r\n\t") != std::string::npos ||
             e.host.find_first_of(" \r\n\t/@") != std::string::npos;
  if (bad) {
    return Error::msg(fmt::format("`{}` is not a collector URL (http[s]://HOST[:PORT]/PATH)", url));
  }
  return e;
}

struct OtlpExporter::State {
  OtlpOptions opt;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue;
  size_t queue_bytes = 0;
  bool stopping = false;
  Clock::time_point drain_until{};
  std::atomic<Clock::rep> cutoff{0};  // drain_until, for waits begun before stop() (Deadline)
  otlp::SslCtxPtr tls;                // https:// only
  ExportStats stats;
  std::thread worker;
};

OtlpExporter::OtlpExporter(OtlpOptions options) : st_(std::make_unique<State>()) {
  st_->opt = std::move(options);
}

Result<std::unique_ptr<OtlpExporter>> OtlpExporter::make(OtlpOptions options) {
  otlp::SslCtxPtr tls;
  if (options.endpoint.tls) {
    AGENTBOX_ASSIGN_OR_RETURN(tls, otlp::make_tls_context(options.ca_file));
  }
  auto x = std::make_unique<OtlpExporter>(std::move(options));
  x->st_->tls = std::move(tls);
  return x;
}

OtlpExporter::~OtlpExporter() {
  stop(std::chrono::milliseconds(0));
}

void OtlpExporter::push(std::string_view line) noexcept {
  State& s = *st_;
  std::lock_guard lock(s.mu);
  ++s.stats.queued;
  if (s.stopping && !s.worker.joinable()) {
    ++s.stats.dropped;
    return;
  }
  try {
    s.queue.emplace_back(line);
    s.queue_bytes += line.size();
  } catch (...) {
    ++s.stats.dropped;
    return;
  }
  // Drop the oldest: the newest lines (how the session ends) are the ones worth sending.
  while (s.queue_bytes > s.opt.max_queue_bytes && !s.queue.empty()) {
    s.queue_bytes -= s.queue.front().size();
    s.queue.pop_front();
    ++s.stats.dropped;
  }
  if (s.queue.size() >= s.opt.max_batch) {
    s.cv.notify_one();
  }
}

base::Status OtlpExporter::start() {
  try {
    st_->worker = std::thread([this] { run(); });
  } catch (const std::system_error& e) {
    return Error::sys(e.code().value(), "start the OTLP exporter thread");
  }
  return base::ok();
}

ExportStats OtlpExporter::stop(std::chrono::milliseconds drain) {
  State& s = *st_;
  {
    std::lock_guard lock(s.mu);
    if (!s.stopping) {
      s.stopping = true;
      s.drain_until = Clock::now() + drain;
      s.cutoff.store(s.drain_until.time_since_epoch().count(), std::memory_order_relaxed);
    }
  }
  s.cv.notify_all();
  if (s.worker.joinable()) {
    s.worker.join();
  }
  std::lock_guard lock(s.mu);
  s.stats.dropped += s.queue.size();
  s.queue.clear();
  s.queue_bytes = 0;
  return s.stats;
}

ExportStats OtlpExporter::stats() const {
  std::lock_guard lock(st_->mu);
  return st_->stats;
}

void OtlpExporter::run() noexcept {  // NOLINT(bugprone-exception-escape): export.hpp
  State& s = *st_;
  std::vector<std::string> batch;
  while (true) {
    {
      std::unique_lock lock(s.mu);
      s.cv.wait_for(lock, s.opt.flush_every,
                    [&] { return s.stopping || s.queue.size() >= s.opt.max_batch; });
      if (s.queue.empty() && s.stopping) {
        return;
      }
      if (s.stopping && Clock::now() >= s.drain_until) {
        return;  // stop() counts what is left
      }
      while (!s.queue.empty() && batch.size() < s.opt.max_batch) {
        s.queue_bytes -= s.queue.front().size();
        batch.push_back(std::move(s.queue.front()));
        s.queue.pop_front();
      }
    }
    if (!batch.empty() && !send_batch(batch)) {
      std::lock_guard lock(s.mu);
      s.stats.dropped += batch.size();
    }
    batch.clear();
  }
}

namespace {

// What one POST came to: the collector's status code, or why there is none and whether another
// attempt could help.
struct Answer {
  int status = 0;
  std::string error;
  otlp::Failure failure = otlp::Failure::kRetry;
};

// One POST; `Connection: close`, so a batch is one connection (and one TLS handshake).
Answer post(const OtlpOptions& o, SSL_CTX* tls, const std::string& body,
            const otlp::Deadline& deadline) {
  Answer a;
  auto conn = otlp::Conn::open(o.endpoint, tls, deadline, a.failure);
  if (!conn) {
    a.error = conn.error().message();
    return a;
  }
  std::string req = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n"
      "Content-Length: {}\r\nConnection: close\r\nUser-Agent: agentbox\r\n",
      o.endpoint.path, o.endpoint.host, o.endpoint.port, body.size());
  for (const auto& [k, v] : o.headers) {
    req += fmt::format("{}: {}\r\n", k, v);
  }
  req += "\r\n";
  req += body;
  if (auto w = conn->write_all(req, deadline); !w) {
    a.error = w.error().message();
    return a;
  }
  // The status line is all we need: "HTTP/1.1 200 OK".
  std::string resp;
  while (resp.find("\r\n") == std::string::npos && resp.size() < 4096) {
    char buf[1024];
    auto n = conn->read_some(buf, deadline);
    if (!n) {
      a.error = n.error().message();
      return a;
    }
    if (*n == 0) {
      break;
    }
    resp.append(buf, *n);
  }
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12 ||
      std::from_chars(resp.data() + 9, resp.data() + 12, a.status).ec != std::errc()) {
    a.status = 0;
    a.error = "the collector's answer is not HTTP";
  }
  return a;
}

// OTLP/HTTP: 429, 502, 503 and 504 are worth retrying; other 4xx/5xx are not.
bool retryable(int status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

}  // namespace

// NOLINTNEXTLINE(bugprone-exception-escape): export.hpp
bool OtlpExporter::send_batch(std::vector<std::string>& batch) noexcept {
  State& s = *st_;
  std::string body;
  try {
    body = otlp_payload(batch, s.opt.resource);
  } catch (...) {
    return false;
  }
  auto backoff = s.opt.backoff;
  for (int attempt = 1; attempt <= s.opt.max_attempts; ++attempt) {
    auto deadline = Clock::now() + s.opt.timeout;
    {
      std::lock_guard lock(s.mu);  // stopping: a slow collector gets what is left of the drain
      deadline = s.stopping ? std::min(deadline, s.drain_until) : deadline;
    }
    Answer r = post(s.opt, s.tls.get(), body, {.own = deadline, .cutoff = &s.cutoff});
    std::unique_lock lock(s.mu);
    ++s.stats.posts;
    if (r.error.empty() && r.status / 100 == 2) {
      s.stats.sent += batch.size();
      return true;
    }
    s.stats.last_error =
        r.error.empty() ? fmt::format("the collector answered {}", r.status) : r.error;
    bool again = r.error.empty() ? retryable(r.status) : r.failure == otlp::Failure::kRetry;
    if (!again) {
      return false;
    }
    // Back off; a stop() cuts the wait short, and past its drain deadline the batch is given up.
    s.cv.wait_for(lock, backoff, [&] { return s.stopping; });
    if (s.stopping && Clock::now() >= s.drain_until) {
      return false;
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
  }
  return false;
}

}  // namespace agentbox::audit
