// A byte queue for the proxy's data path: bytes are appended at the back and consumed from the
// front by moving an offset (no memmove per consume, as std::string::erase(0, n) does), and
// space at the back can be written in place (prepare/commit), so read(2), SSL_read_ex and the
// TLS write BIO put bytes straight where they are consumed from. Not zero-initialised on growth
// (every byte handed out by data() was written by someone first).
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace agentbox::proxy {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& o) noexcept
      : mem_(std::move(o.mem_)), cap_(o.cap_), head_(o.head_), tail_(o.tail_) {
    o.cap_ = o.head_ = o.tail_ = 0;
  }
  ByteBuffer& operator=(ByteBuffer&& o) noexcept {
    if (this != &o) {
      mem_ = std::move(o.mem_);
      cap_ = o.cap_;
      head_ = o.head_;
      tail_ = o.tail_;
      o.cap_ = o.head_ = o.tail_ = 0;
    }
    return *this;
  }
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;

  [[nodiscard]] size_t size() const { return tail_ - head_; }
  [[nodiscard]] bool empty() const { return tail_ == head_; }
  [[nodiscard]] char* data() { return mem_.get() + head_; }
  [[nodiscard]] const char* data() const { return mem_.get() + head_; }
  [[nodiscard]] std::string_view view() const { return {data(), size()}; }
  [[nodiscard]] std::span<const std::byte> bytes() const {
    return std::as_bytes(std::span(data(), size()));
  }

  void append(std::string_view s) {
    if (!s.empty()) {
      reserve_back(s.size());
      std::memcpy(mem_.get() + tail_, s.data(), s.size());
      tail_ += s.size();
    }
  }
  // `s` goes before the bytes held now (rare: a body read whole to check, then forwarded).
  void prepend(std::string_view s) {
    if (s.size() <= head_) {
      head_ -= s.size();
      std::memcpy(mem_.get() + head_, s.data(), s.size());
      return;
    }
    ByteBuffer b;
    b.reserve_back(s.size() + size());
    b.append(s);
    b.append(view());
    *this = std::move(b);
  }
  // Drops the first n bytes (n <= size()).
  void consume(size_t n) {
    head_ += n;
    if (head_ == tail_) {
      head_ = tail_ = 0;
    }
  }
  void clear() { head_ = tail_ = 0; }
  // At least n writable bytes after the data; commit(k) appends the first k of them.
  [[nodiscard]] std::span<char> prepare(size_t n) {
    reserve_back(n);
    return {mem_.get() + tail_, cap_ - tail_};
  }
  void commit(size_t k) { tail_ += k; }
  // Frees the memory of an empty buffer that grew large (an idle kept-alive connection should
  // not keep a download's buffers).
  void shrink_if_empty(size_t keep) {
    if (empty() && cap_ > keep) {
      mem_.reset();
      cap_ = head_ = tail_ = 0;
    }
  }
  // Frees what the bytes held do not use (all of it when empty): a stalled flow keeps its bytes,
  // not the room a burst grew. Returns the bytes freed.
  size_t shrink_to_fit() {
    const size_t live = size();
    if (cap_ - live < kSlack) {
      return 0;
    }
    const size_t before = cap_;
    std::unique_ptr<char[]> mem(live > 0 ? new char[live] : nullptr);
    if (live > 0) {
      std::memcpy(mem.get(), mem_.get() + head_, live);
    }
    mem_ = std::move(mem);
    cap_ = tail_ = live;
    head_ = 0;
    return before - live;
  }
  [[nodiscard]] size_t capacity() const { return cap_; }

 private:
  void reserve_back(size_t n) {
    if (cap_ - tail_ >= n) {
      return;
    }
    const size_t live = size();
    if (cap_ - live >= n) {
      // Enough room once the consumed front is reclaimed (consumers take most of what they
      // are given, so few bytes move).
      std::memmove(mem_.get(), mem_.get() + head_, live);
      head_ = 0;
      tail_ = live;
      return;
    }
    size_t cap = cap_ < 4096 ? 4096 : cap_;
    while (cap - live < n) {
      cap *= 2;
    }
    std::unique_ptr<char[]> mem(new char[cap]);
    if (live > 0) {
      std::memcpy(mem.get(), mem_.get() + head_, live);
    }
    mem_ = std::move(mem);
    cap_ = cap;
    head_ = 0;
    tail_ = live;
  }

  static constexpr size_t kSlack = 1024;  // less unused room than this is not worth a copy

  std::unique_ptr<char[]> mem_;
  size_t cap_ = 0;
  size_t head_ = 0;
  size_t tail_ = 0;
};

}  // namespace agentbox::proxy
