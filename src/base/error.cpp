// Error formatting: one line for the user, hint on its own line.
#include "agentbox/base/error.hpp"

#include <fmt/core.h>

#include <cstring>

namespace agentbox::base {

Error Error::sys(int err, std::string_view op, std::string_view object) {
  std::string what(op);
  if (!object.empty()) {
    what += fmt::format(" `{}`", object);
  }
  return Error(std::move(what), err);
}

std::string errno_name(int err) {
  if (const char* name = strerrorname_np(err)) {
    return name;
  }
  return fmt::format("E{}", err);
}

std::string Error::message() const {
  std::string out;
  for (auto it = context_.rbegin(); it != context_.rend(); ++it) {
    out += *it;
    out += ": ";
  }
  out += what_;
  if (errno_ != 0) {
    out += fmt::format(": {} ({})", std::strerror(errno_), errno_name(errno_));
  }
  return out;
}

std::string Error::render() const {
  std::string out = "agentbox: error: " + message() + "\n";
  if (!hint_.empty()) {
    out += "hint: " + hint_ + "\n";
  }
  return out;
}

}  // namespace agentbox::base
