// Parsing and printing of sizes and durations; strict so that a typo is an error, not a zero.
#include "agentbox/config/units.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <vector>

namespace agentbox::config {

namespace {

// Reads a decimal number at the front of `s`; nullopt if there is none or it overflows.
std::optional<uint64_t> take_number(std::string_view& s) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0) {
    uint64_t d = static_cast<uint64_t>(s[i] - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      return std::nullopt;
    }
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) {
    return std::nullopt;
  }
  s.remove_prefix(i);
  return v;
}

std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  if (b != 0 && a > std::numeric_limits<uint64_t>::max() / b) {
    return std::nullopt;
  }
  return a * b;
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view s) {
  auto n = take_number(s);
  if (!n) {
    return std::nullopt;
  }
  // A bare number is refused (but 0): `home_size = 12` meant megabytes or gigabytes, never 12
  // bytes, and guessing a unit would hide the typo.
  if (s.empty()) {
    return *n == 0 ? n : std::nullopt;
  }
  uint64_t mult = 1;
  {
    switch (std::toupper(static_cast<unsigned char>(s.front()))) {
      case 'K':
        mult = 1ull << 10;
        break;
      case 'M':
        mult = 1ull << 20;
        break;
      case 'G':
        mult = 1ull << 30;
        break;
      case 'T':
        mult = 1ull << 40;
        break;
      case 'B':
        mult = 1;
        break;
      default:
        return std::nullopt;
    }
    if (std::toupper(static_cast<unsigned char>(s.front())) != 'B') {
      s.remove_prefix(1);
      if (!s.empty() && s.front() == 'i') {
        s.remove_prefix(1);
      }
    }
    if (!s.empty() && (s.front() == 'B' || s.front() == 'b')) {
      s.remove_prefix(1);
    }
    if (!s.empty()) {
      return std::nullopt;
    }
  }
  return checked_mul(*n, mult);
}

std::optional<uint64_t> parse_duration(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  uint64_t total = 0;
  bool bare = true;
  while (!s.empty()) {
    auto n = take_number(s);
    if (!n) {
      return std::nullopt;
    }
    uint64_t unit = 1;
    if (!s.empty()) {
      bare = false;
      switch (s.front()) {
        case 'd':
          unit = 86400;
          break;
        case 'h':
          unit = 3600;
          break;
        case 'm':
          unit = 60;
          break;
        case 's':
          unit = 1;
          break;
        default:
          return std::nullopt;
      }
      s.remove_prefix(1);
    } else if (!bare) {
      return std::nullopt;  // "1h30": a unit is missing
    }
    auto part = checked_mul(*n, unit);
    if (!part || total > std::numeric_limits<uint64_t>::max() - *part) {
      return std::nullopt;
    }
    total += *part;
  }
  if (total == 0) {
    return std::nullopt;
  }
  return total;
}

std::string format_size(uint64_t bytes) {
  static constexpr struct {
    uint64_t mult;
    const char* suffix;
  } kUnits[] = {{1ull << 40, "T"}, {1ull << 30, "G"}, {1ull << 20, "M"}, {1ull << 10, "K"}};
  for (const auto& u : kUnits) {
    if (bytes >= u.mult && bytes % u.mult == 0) {
      return fmt::format("{}{}", bytes / u.mult, u.suffix);
    }
  }
  return fmt::format("{}", bytes);
}

std::string format_duration(uint64_t seconds) {
  std::string out;
  for (auto [unit, name] : {std::pair<uint64_t, char>{86400, 'd'}, {3600, 'h'}, {60, 'm'}}) {
    if (seconds >= unit) {
      out += fmt::format("{}{}", seconds / unit, name);
      seconds %= unit;
    }
  }
  if (seconds != 0 || out.empty()) {
    out += fmt::format("{}s", seconds);
  }
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace agentbox::config
