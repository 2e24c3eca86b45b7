// Streaming chunked-body decoder (RFC 9112 7.1) with caps on every line it buffers.
#include <algorithm>

#include "agentbox/http/http1.hpp"
#include "agentbox/http/text.hpp"
#include "byte_reader.hpp"

namespace agentbox::http {

using detail::hex_value;

namespace {}  // namespace

bool ChunkedDecoder::fail(std::string why) {
  state_ = State::kError;
  error_ = std::move(why);
  return false;
}

// chunk-size [ chunk-ext ] CRLF; line_ holds the line without its CRLF.
bool ChunkedDecoder::end_size_line() {
  uint64_t size = 0;
  size_t i = 0;
  for (; i < line_.size() && hex_value(line_[i]) >= 0; ++i) {
    if (size > (UINT64_MAX >> 4)) {
      return fail("chunk size overflows");
    }
    size = (size << 4) | static_cast<uint64_t>(hex_value(line_[i]));
  }
  if (i == 0) {
    return fail("chunk size is not hex");
  }
  std::string_view ext = std::string_view(line_).substr(i);
  while (!ext.empty() && (ext.front() == ' ' || ext.front() == '\t')) {
    ext.remove_prefix(1);
  }
  if (!ext.empty() && ext.front() != ';') {
    return fail("junk after the chunk size");
  }
  for (char c : ext) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) {
      return fail("control character in a chunk extension");
    }
  }
  if (size > caps_.max_body - decoded_) {
    return fail("chunked body larger than the limit");
  }
  remaining_ = size;
  step_ = size == 0 ? Step::kTrailer : Step::kData;
  return true;
}

bool ChunkedDecoder::end_trailer_line() {
  if (line_.empty()) {
    step_ = Step::kDone;
    state_ = State::kDone;
    return true;
  }
  const size_t colon = line_.find(':');
  if (colon == std::string::npos || colon == 0 || line_[0] == ' ' || line_[0] == '\t') {
    return fail("malformed trailer field");
  }
  const std::string_view name = std::string_view(line_).substr(0, colon);
  std::string_view value = std::string_view(line_).substr(colon + 1);
  const bool name_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return c > 0x20 && c < 0x7f &&
           std::string_view("\"(),/:;<=>?@[\\]{}").find(c) == std::string_view::npos;
  });
  if (!name_ok) {
    return fail("malformed trailer field name");
  }
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
    value.remove_suffix(1);
  }
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) {
      return fail("control character in a trailer value");
    }
  }
  trailers_.push_back({std::string(name), std::string(value)});
  return true;
}

size_t ChunkedDecoder::feed(std::span<const std::byte> in, std::string& out) {
  const auto s = detail::as_chars(in);
  size_t i = 0;
  while (i < s.size() && state_ == State::kMore) {
    const char c = s[i];
    switch (step_) {
      case Step::kData: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, s.size() - i));
        out.append(s.substr(i, n));
        i += n;
        remaining_ -= n;
        decoded_ += n;
        if (remaining_ == 0) {
          step_ = Step::kDataCr;
        }
        continue;
      }
      case Step::kDataCr:
        if (c != '\r') {
          fail("chunk data not followed by CRLF");
          continue;
        }
        step_ = Step::kDataLf;
        break;
      case Step::kDataLf:
        if (c != '\n') {
          fail("chunk data not followed by CRLF");
          continue;
        }
        step_ = Step::kSize;
        break;
      case Step::kSize:
      case Step::kTrailer: {
        const size_t cap = step_ == Step::kSize ? caps_.max_size_line : caps_.max_trailers;
        if (c == '\n') {
          if (line_.empty() || line_.back() != '\r') {
            fail("bare LF in chunked framing");
            continue;
          }
          line_.pop_back();
          trailer_bytes_ += step_ == Step::kTrailer ? line_.size() + 2 : 0;
          const bool ok = step_ == Step::kSize ? end_size_line() : end_trailer_line();
          line_.clear();
          if (ok && trailer_bytes_ > caps_.max_trailers) {
            fail("trailers larger than the limit");
          }
          break;
        }
        if (!line_.empty() && line_.back() == '\r') {
          fail("bare CR in chunked framing");
          continue;
        }
        if (line_.size() >= cap) {
          fail("chunk size line or trailer too long");
          continue;
        }
        line_.push_back(c);
        break;
      }
      case Step::kDone:
        break;
    }
    ++i;
  }
  return i;
}

}  // namespace agentbox::http

namespace agentbox::http {

BodyReader::BodyReader(Framing framing, uint64_t content_length, ChunkedDecoder::Caps caps)
    : framing_(framing), remaining_(content_length), chunked_(caps) {
  if (framing_ == Framing::kNone || (framing_ == Framing::kContentLength && remaining_ == 0)) {
    state_ = ChunkedDecoder::State::kDone;
  } else if (framing_ == Framing::kTunnel) {
    state_ = ChunkedDecoder::State::kError;
    error_ = "a tunnel has no body framing";
  }
}

size_t BodyReader::feed(std::span<const std::byte> in, std::string& out) {
  if (state_ != ChunkedDecoder::State::kMore) {
    return 0;
  }
  switch (framing_) {
    case Framing::kContentLength: {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
      out.append(detail::as_chars(in.first(n)));
      remaining_ -= n;
      if (remaining_ == 0) {
        state_ = ChunkedDecoder::State::kDone;
      }
      return n;
    }
    case Framing::kChunked: {
      const size_t n = chunked_.feed(in, out);
      state_ = chunked_.state();
      error_ = chunked_.error();
      return n;
    }
    case Framing::kUntilClose:
      out.append(detail::as_chars(in));
      return in.size();
    case Framing::kNone:
    case Framing::kTunnel:
      break;
  }
  return 0;
}

size_t BodyReader::verbatim_limit(size_t available) const {
  if (state_ != ChunkedDecoder::State::kMore || !verbatim()) {
    return 0;
  }
  return framing_ == Framing::kContentLength
             ? static_cast<size_t>(std::min<uint64_t>(remaining_, available))
             : available;
}

void BodyReader::skip(size_t n) {
  if (state_ != ChunkedDecoder::State::kMore || framing_ != Framing::kContentLength) {
    return;
  }
  remaining_ -= std::min<uint64_t>(n, remaining_);
  if (remaining_ == 0) {
    state_ = ChunkedDecoder::State::kDone;
  }
}

void BodyReader::finish_eof() {
  if (state_ != ChunkedDecoder::State::kMore) {
    return;
  }
  if (framing_ == Framing::kUntilClose) {
    state_ = ChunkedDecoder::State::kDone;
    return;
  }
  state_ = ChunkedDecoder::State::kError;
  error_ = "connection closed before the end of the body";
}

std::string encode_chunk(std::string_view data) {
  if (data.empty()) {
    return {};  // an empty chunk would read as the last chunk
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  size_t n = data.size();
  std::string size;
  do {
    size.insert(size.begin(), kHex[n & 15]);
    n >>= 4;
  } while (n != 0);
  out.reserve(size.size() + data.size() + 4);
  out += size;
  out += "\r\n";
  out += data;
  out += "\r\n";
  return out;
}

std::string denial_response(int status, std::string_view why) {
  std::string body = "agentbox: ";
  for (char c : why) {
    const auto u = static_cast<unsigned char>(c);
    body.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  body += '\n';
  const char* reason = status == 403   ? "Forbidden"
                       : status == 400 ? "Bad Request"
                       : status == 502 ? "Bad Gateway"
                       : status == 405 ? "Method Not Allowed"
                       : status == 408 ? "Request Timeout"
                       : status == 413 ? "Content Too Large"
                       : status == 414 ? "URI Too Long"
                       : status == 429 ? "Too Many Requests"
                       : status == 431 ? "Request Header Fields Too Large"
                       : status == 501 ? "Not Implemented"
                       : status == 505 ? "HTTP Version Not Supported"
                                       : "Blocked";
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
         std::to_string(body.size()) +
         "\r\nX-Agentbox-Denied: 1\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n" + body;
}

}  // namespace agentbox::http
