// Worker pool with loop completions, and the asynchronous upstream resolver (resolver.hpp).
#include "agentbox/net/resolver.hpp"

#include <fmt/core.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace agentbox::net {

struct Worker::State {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<std::function<void()>, std::function<void()>>> queue;
  std::vector<std::function<void()>> finished;  // completions for the loop
  size_t running = 0;
  size_t idle = 0;
  size_t threads = 0;
  size_t max_threads = 2;
  size_t max_queue = 256;
  bool closed = false;
  base::UniqueFd event;  // eventfd: the loop's wake-up
};

namespace {

void thread_main(std::shared_ptr<Worker::State> st) {
  std::unique_lock lock(st->mu);
  for (;;) {
    ++st->idle;
    st->cv.wait(lock, [&] { return st->closed || !st->queue.empty(); });
    --st->idle;
    if (st->closed) {
      return;
    }
    auto [job, done] = std::move(st->queue.front());
    st->queue.pop_front();
    ++st->running;
    lock.unlock();
    try {
      job();
    } catch (...) {
      // A job reports through what it captured; an exception only loses that report.
    }
    lock.lock();
    --st->running;
    if (st->closed) {
      return;
    }
    st->finished.push_back(std::move(done));
    const uint64_t one = 1;
    (void)!::write(st->event.get(), &one, sizeof one);
  }
}

}  // namespace

base::Result<std::unique_ptr<Worker>> Worker::create(event::Loop& loop, Options options) {
  std::unique_ptr<Worker> w(new Worker());
  w->loop_ = &loop;
  w->state_ = std::make_shared<State>();
  w->state_->max_threads = std::max<size_t>(1, options.threads);
  w->state_->max_queue = std::max<size_t>(1, options.max_queue);
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    return base::Error::sys(errno, "eventfd", "worker");
  }
  w->state_->event = base::UniqueFd(fd);
  return w;
}

Worker::~Worker() {
  if (loop_ != nullptr && watch_ != 0) {
    loop_->unwatch(watch_);
  }
  if (!state_) {
    return;
  }
  std::lock_guard lock(state_->mu);
  state_->closed = true;
  state_->queue.clear();
  state_->finished.clear();
  state_->cv.notify_all();
  // The threads were detached when started; each ends after its current job.
}

size_t Worker::threads() const {
  std::lock_guard lock(state_->mu);
  return state_->threads;
}

bool Worker::post(std::function<void()> job, std::function<void()> done) {
  if (watch_ == 0) {
    // Watched from the first job on: a session that never needs the worker has no watch and
    // no thread.
    auto w = loop_->watch_fd(state_->event.get(), EPOLLIN, [this](uint32_t) { on_ready(); });
    if (!w) {
      return false;
    }
    watch_ = *w;
  }
  std::lock_guard lock(state_->mu);
  if (state_->queue.size() + state_->running >= state_->max_queue) {
    return false;
  }
  if (state_->idle <= state_->queue.size() && state_->threads < state_->max_threads) {
    // Started with every signal blocked: the supervisor takes its signals through the loop's
    // signalfd, and a worker thread must never be the one the kernel picks to deliver them to.
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      std::thread(thread_main, state_).detach();
      ++state_->threads;
    } catch (const std::system_error&) {
      // No thread: the queue is still served by the threads there are (or refused below).
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (state_->threads == 0) {
      return false;
    }
  }
  state_->queue.emplace_back(std::move(job), std::move(done));
  state_->cv.notify_one();
  return true;
}

void Worker::on_ready() noexcept {
  uint64_t n = 0;
  (void)!::read(state_->event.get(), &n, sizeof n);
  std::vector<std::function<void()>> done;
  {
    std::lock_guard lock(state_->mu);
    done.swap(state_->finished);
  }
  for (auto& d : done) {
    try {
      d();
    } catch (...) {
      // A completion must not take the loop down; its owner notices the missing answer by
      // its own timeout.
    }
  }
}

// --- AsyncResolver ---------------------------------------------------------------------------

base::Result<std::unique_ptr<AsyncResolver>> AsyncResolver::create(event::Loop& loop,
                                                                   Options options) {
  AGENTBOX_ASSIGN_OR_RETURN(auto worker, Worker::create(loop, {.threads = options.threads,
                                                               .max_queue = options.max_queue}));
  return std::unique_ptr<AsyncResolver>(
      new AsyncResolver(loop, std::move(options), std::move(worker)));
}

AsyncResolver::AsyncResolver(event::Loop& loop, Options options, std::unique_ptr<Worker> worker)
    : loop_(loop), options_(std::move(options)), worker_(std::move(worker)) {}

AsyncResolver::~AsyncResolver() {
  *alive_ = false;
  for (auto& [name, p] : pending_) {
    if (p.timer != 0) {
      loop_.unwatch(p.timer);
    }
  }
}

std::optional<AsyncResolver::Addrs> AsyncResolver::cached(const std::string& name) {
  auto it = cache_.find(name);
  if (it == cache_.end()) {
    return std::nullopt;
  }
  if (std::chrono::steady_clock::now() >= it->second.expires) {
    cache_.erase(it);
    return std::nullopt;
  }
  ++counters_.cache_hits;
  return it->second.addrs;
}

void AsyncResolver::store(const std::string& name, const Addrs& addrs) {
  if (cache_.size() >= options_.max_cache && cache_.find(name) == cache_.end()) {
    // Expired entries first; if none, the map's first key (bounded, not LRU: names are few).
    const auto now = std::chrono::steady_clock::now();
    for (auto it = cache_.begin(); it != cache_.end();) {
      it = it->second.expires <= now ? cache_.erase(it) : std::next(it);
    }
    if (cache_.size() >= options_.max_cache) {
      cache_.erase(cache_.begin());
    }
  }
  const auto expires =
      std::chrono::steady_clock::now() + (addrs ? options_.ttl : options_.negative_ttl);
  cache_.insert_or_assign(name, Cached{addrs, expires});
}

uint64_t AsyncResolver::resolve(const std::string& name, Done done) {
  const uint64_t ticket = next_ticket_++;
  tickets_[ticket] = name;
  auto it = pending_.find(name);
  if (it != pending_.end() && !it->second.timed_out) {
    ++counters_.shared;
    it->second.waiters.emplace_back(ticket, std::move(done));
    return ticket;
  }
  Pending& p = pending_[name];
  p = Pending{};
  p.waiters.emplace_back(ticket, std::move(done));
  auto result = std::make_shared<Addrs>(base::Error::msg("not resolved"));
  std::weak_ptr<bool> alive = alive_;
  auto resolve = options_.resolve;
  const bool posted = worker_->post([result, resolve, name] { *result = resolve(name); },
                                    [this, alive, result, name] {
                                      if (auto a = alive.lock(); a && *a) {
                                        finish(name, *result, false);
                                      }
                                    });
  if (!posted) {
    ++counters_.refused;
    // Answered on the loop's next turn, as every answer is (never inside resolve()).
    auto t = loop_.add_timer(std::chrono::milliseconds(1), std::chrono::milliseconds(0),
                             [this, alive, name](uint64_t) {
                               if (auto a = alive.lock(); a && *a) {
                                 finish(name, base::Error::msg("resolver queue full"), true);
                               }
                             });
    p.timer = t ? *t : 0;
    p.timed_out = true;  // no job will answer
    return ticket;
  }
  ++counters_.lookups;
  auto t = loop_.add_timer(
      options_.timeout, std::chrono::milliseconds(0), [this, alive, name](uint64_t) {
        if (auto a = alive.lock(); a && *a) {
          ++counters_.timeouts;
          finish(name,
                 base::Error::msg(fmt::format("resolving `{}` took longer than {} ms", name,
                                              options_.timeout.count())),
                 true);
        }
      });
  p.timer = t ? *t : 0;
  return ticket;
}

void AsyncResolver::finish(const std::string& name, const Addrs& addrs, bool from_timeout) {
  if (!from_timeout) {
    store(name, addrs);  // a late answer still fills the cache
  }
  auto it = pending_.find(name);
  if (it == pending_.end()) {
    return;
  }
  if (!from_timeout && it->second.timed_out && it->second.waiters.empty()) {
    pending_.erase(it);
    return;
  }
  Pending p = std::move(it->second);
  pending_.erase(it);
  if (p.timer != 0) {
    loop_.unwatch(p.timer);  // also a fired one-shot: it stays registered until unwatched
  }
  if (from_timeout) {
    // The job is still running: keep a marker so its answer is only cached, and new lookups of
    // the name start afresh.
    pending_[name] = Pending{.waiters = {}, .timer = 0, .timed_out = true};
  }
  for (auto& [ticket, done] : p.waiters) {
    if (tickets_.erase(ticket) > 0 && done) {
      done(addrs);
    }
  }
}

void AsyncResolver::cancel(uint64_t ticket) {
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) {
    return;
  }
  auto p = pending_.find(it->second);
  if (p != pending_.end()) {
    auto& w = p->second.waiters;
    w.erase(std::remove_if(w.begin(), w.end(), [&](const auto& x) { return x.first == ticket; }),
            w.end());
  }
  tickets_.erase(it);
}

}  // namespace agentbox::net
