// The OTLP/HTTP exporter: a bounded queue filled under the audit sink's lock, drained by a worker
// thread of its own that POSTs batches over plain HTTP/1.1 (audit/export.hpp). The worker's
// socket is its own and every wait on it is bounded (poll with the POST's deadline), so a slow
// collector stalls only the worker; the session's loop only ever copies a line into the queue.
#include <fmt/core.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "agentbox/audit/export.hpp"
#include "agentbox/base/error.hpp"

namespace agentbox::audit {

using base::Error;
using base::Result;
using Clock = std::chrono::steady_clock;

Result<Endpoint> parse_endpoint(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) {
    return Error::msg(fmt::format("`{}` is not an http:// URL", url))
        .hint(
            "the exporter speaks plain HTTP/1.1 (OTLP/HTTP JSON), e.g. "
            "http://127.0.0.1:4318/v1/logs; reach a TLS collector through a local one");
  }
  std::string_view rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  Endpoint e;
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
    return Error::msg(fmt::format("`{}` is not a collector URL (http://HOST[:PORT]/PATH)", url));
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
  ExportStats stats;
  std::thread worker;
};

OtlpExporter::OtlpExporter(OtlpOptions options) : st_(std::make_unique<State>()) {
  st_->opt = std::move(options);
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

void OtlpExporter::run() noexcept {
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

// Waits for `events` on fd until `deadline`; false on timeout or error.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return false;
    }
    struct pollfd p {
      fd, events, 0
    };
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) {
      return true;
    }
    if (n < 0 && errno != EINTR) {
      return false;
    }
  }
}

Result<base::UniqueFd> connect_to(const Endpoint& e, Clock::time_point deadline) {
  struct addrinfo hints {};
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* res = nullptr;
  std::string port = std::to_string(e.port);
  if (int rc = ::getaddrinfo(e.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Error::msg(fmt::format("resolve `{}`: {}", e.host, ::gai_strerror(rc)));
  }
  Error last = Error::msg(fmt::format("no address for `{}`", e.host));
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    base::UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      last = Error::sys(errno, "socket");
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = Error::sys(errno, "connect", fmt::format("{}:{}", e.host, e.port));
      continue;
    }
    int err = ETIMEDOUT;
    socklen_t len = sizeof err;
    if (wait_fd(fd.get(), POLLOUT, deadline)) {
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (err == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    last = Error::sys(err, "connect", fmt::format("{}:{}", e.host, e.port));
  }
  ::freeaddrinfo(res);
  return last;
}

// One POST; the response's status code, or an error (connect, timeout, a torn response).
Result<int> post(const OtlpOptions& o, const std::string& body, Clock::time_point deadline) {
  AGENTBOX_ASSIGN_OR_RETURN(base::UniqueFd fd, connect_to(o.endpoint, deadline));
  std::string req = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n"
      "Content-Length: {}\r\nConnection: close\r\nUser-Agent: agentbox\r\n",
      o.endpoint.path, o.endpoint.host, o.endpoint.port, body.size());
  for (const auto& [k, v] : o.headers) {
    req += fmt::format("{}: {}\r\n", k, v);
  }
  req += "\r\n";
  req += body;
  for (size_t off = 0; off < req.size();) {
    ssize_t n = ::send(fd.get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return Error::sys(errno, "send");
    } else if (!wait_fd(fd.get(), POLLOUT, deadline)) {
      return Error::msg("the collector did not read the request in time");
    }
  }
  // The status line is all we need: "HTTP/1.1 200 OK".
  std::string resp;
  while (resp.find("\r\n") == std::string::npos && resp.size() < 4096) {
    if (!wait_fd(fd.get(), POLLIN, deadline)) {
      return Error::msg("the collector did not answer in time");
    }
    char buf[1024];
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n == 0) {
      break;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return Error::sys(errno, "recv");
    }
    resp.append(buf, static_cast<size_t>(std::max<ssize_t>(n, 0)));
  }
  int status = 0;
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12 ||
      std::from_chars(resp.data() + 9, resp.data() + 12, status).ec != std::errc()) {
    return Error::msg("the collector's answer is not HTTP");
  }
  return status;
}

// OTLP/HTTP: 429, 502, 503 and 504 are worth retrying; other 4xx/5xx are not.
bool retryable(int status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

}  // namespace

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
    Result<int> r = post(s.opt, body, deadline);
    std::unique_lock lock(s.mu);
    ++s.stats.posts;
    if (r && *r / 100 == 2) {
      s.stats.sent += batch.size();
      return true;
    }
    s.stats.last_error = r ? fmt::format("the collector answered {}", *r) : r.error().message();
    if (r && !retryable(*r)) {
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
