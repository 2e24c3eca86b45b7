// ByteReader: a bounds-checked cursor over untrusted bytes (never reinterpret_cast guest data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace agentbox::http::detail {

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> data) : data_(data) {}

  [[nodiscard]] size_t remaining() const { return data_.size() - pos_; }
  [[nodiscard]] bool empty() const { return remaining() == 0; }
  [[nodiscard]] size_t pos() const { return pos_; }

  std::optional<uint8_t> u8() {
    if (remaining() < 1) {
      return std::nullopt;
    }
    return std::to_integer<uint8_t>(data_[pos_++]);
  }
  std::optional<uint16_t> u16() {
    if (remaining() < 2) {
      return std::nullopt;
    }
    const auto v = static_cast<uint16_t>((std::to_integer<unsigned>(data_[pos_]) << 8) |
                                         std::to_integer<unsigned>(data_[pos_ + 1]));
    pos_ += 2;
    return v;
  }
  std::optional<uint32_t> u24() {
    if (remaining() < 3) {
      return std::nullopt;
    }
    const uint32_t v = (std::to_integer<uint32_t>(data_[pos_]) << 16) |
                       (std::to_integer<uint32_t>(data_[pos_ + 1]) << 8) |
                       std::to_integer<uint32_t>(data_[pos_ + 2]);
    pos_ += 3;
    return v;
  }
  std::optional<std::span<const std::byte>> bytes(size_t n) {
    if (remaining() < n) {
      return std::nullopt;
    }
    auto s = data_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  // A vector with a 1- or 2-byte length prefix (TLS presentation language `opaque x<..>`).
  std::optional<std::span<const std::byte>> vec8() {
    auto n = u8();
    return n ? bytes(*n) : std::nullopt;
  }
  std::optional<std::span<const std::byte>> vec16() {
    auto n = u16();
    return n ? bytes(*n) : std::nullopt;
  }

 private:
  std::span<const std::byte> data_;
  size_t pos_ = 0;
};

inline std::string_view as_chars(std::span<const std::byte> s) {
  return {reinterpret_cast<const char*>(s.data()), s.size()};  // NOLINT: bytes viewed as chars
}

}  // namespace agentbox::http::detail
