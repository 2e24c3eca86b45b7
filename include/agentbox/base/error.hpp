// Error: one value type carried through every fallible call, wrapped with context on the way up.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agentbox::base {

// An error as the user will read it:
//   <context outermost>: ...: <what>: <strerror> (<ENAME>)
//   hint: <hint>
// `what` already names the operation and its object, e.g. "open `/etc/passwd`".
class Error {
 public:
  Error() = default;
  explicit Error(std::string what, int err = 0) : what_(std::move(what)), errno_(err) {}

  // A failed system call: op is the call (or action), object what it acted on (may be empty).
  [[nodiscard]] static Error sys(int err, std::string_view op, std::string_view object = {});
  // A failure with no errno (bad input, protocol violation).
  [[nodiscard]] static Error msg(std::string what) { return Error(std::move(what)); }

  // Adds an outer layer of context ("setting up the mount tree"). Returns *this for chaining.
  Error& context(std::string ctx) & {
    context_.push_back(std::move(ctx));
    return *this;
  }
  Error&& context(std::string ctx) && {
    context_.push_back(std::move(ctx));
    return std::move(*this);
  }
  Error& hint(std::string h) & {
    hint_ = std::move(h);
    return *this;
  }
  Error&& hint(std::string h) && {
    hint_ = std::move(h);
    return std::move(*this);
  }

  [[nodiscard]] int err() const { return errno_; }
  [[nodiscard]] const std::string& what() const { return what_; }
  [[nodiscard]] const std::string& hint() const { return hint_; }
  [[nodiscard]] const std::vector<std::string>& contexts() const { return context_; }

  // One line, no "agentbox: error:" prefix and no hint.
  [[nodiscard]] std::string message() const;
  // The full diagnostic as printed on stderr: "agentbox: error: ...\nhint: ...\n".
  [[nodiscard]] std::string render() const;

 private:
  std::string what_;
  int errno_ = 0;
  std::vector<std::string> context_;  // innermost first
  std::string hint_;
};

// "ENOENT" for ENOENT; "E<n>" for numbers glibc does not name.
[[nodiscard]] std::string errno_name(int err);

}  // namespace agentbox::base
