// Result<T>: std::expected-shaped value-or-Error, so a later switch to std::expected is a typedef.
#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

#include "agentbox/base/error.hpp"

namespace agentbox::base {

template <class T>
class [[nodiscard]] Result {
 public:
  using value_type = T;
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  [[nodiscard]] bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  Error& error() & { return std::get<1>(v_); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  [[nodiscard]] bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const { assert(ok_); }
  Error& error() & { return error_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok() {
  return {};
}

}  // namespace agentbox::base

#define AGENTBOX_CONCAT_INNER(a, b) a##b
#define AGENTBOX_CONCAT(a, b) AGENTBOX_CONCAT_INNER(a, b)

// Returns the error of `expr` (a Result) from the enclosing function.
#define AGENTBOX_TRY(expr)                       \
  do {                                           \
    auto&& agentbox_try_r_ = (expr);             \
    if (!agentbox_try_r_) {                      \
      return std::move(agentbox_try_r_).error(); \
    }                                            \
  } while (0)

// AGENTBOX_ASSIGN_OR_RETURN(auto fd, open_thing()); declares/assigns lhs or returns the error.
#define AGENTBOX_ASSIGN_OR_RETURN(lhs, expr) \
  AGENTBOX_ASSIGN_OR_RETURN_IMPL(AGENTBOX_CONCAT(agentbox_r_, __LINE__), lhs, expr)
// NOLINTBEGIN(bugprone-macro-parentheses): `lhs` is a declaration and `tmp` a name, neither can
// be parenthesized.
#define AGENTBOX_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp) {                                          \
    return std::move(tmp).error();                     \
  }                                                    \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
