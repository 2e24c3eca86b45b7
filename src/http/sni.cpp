// TLS ClientHello reader (see sni.hpp for the stages).
#include "agentbox/http/sni.hpp"

#include <algorithm>
#include <optional>

#include "agentbox/policy/host.hpp"
#include "byte_reader.hpp"

namespace agentbox::http {

namespace {

using detail::ByteReader;

constexpr uint8_t kRecordHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxPlaintext = 1u << 14;  // RFC 8446 5.1: TLSPlaintext.length <= 2^14
// Real clients send one record; a handful covers any split. Bounds the re-parse work too.
constexpr size_t kMaxRecords = 8;
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint16_t kExtSupportedVersions = 43;
constexpr uint16_t kExtEch = 0xfe0d;
constexpr uint16_t kExtEsni = 0xffce;

HelloResult fail(HelloStatus s, std::string reason) {
  HelloResult r;
  r.status = s;
  r.reason = std::move(reason);
  return r;
}

// RFC 6066 3: ServerNameList; exactly one host_name allowed.
std::optional<std::string> parse_server_name(std::span<const std::byte> data, ClientHello& out) {
  ByteReader r(data);
  auto list = r.vec16();
  if (!list || !r.empty() || list->empty()) {
    return "server_name: bad list length";
  }
  ByteReader names(*list);
  while (!names.empty()) {
    auto type = names.u8();
    auto name = names.vec16();
    if (!type || !name) {
      return "server_name: truncated entry";
    }
    if (*type != 0) {
      continue;  // unknown NameType: skip (none are defined besides host_name)
    }
    if (out.has_sni) {
      return "server_name: more than one host_name";
    }
    auto canon = policy::normalize_name(detail::as_chars(*name));
    if (!canon) {
      return "server_name: not a valid hostname";
    }
    out.has_sni = true;
    out.sni = std::move(*canon);
  }
  return std::nullopt;
}

// RFC 7301 3.1: ProtocolNameList protocol_name_list<2..2^16-1>, ProtocolName<1..2^8-1>.
std::optional<std::string> parse_alpn(std::span<const std::byte> data, ClientHello& out) {
  ByteReader r(data);
  auto list = r.vec16();
  if (!list || !r.empty() || list->size() < 2) {
    return "alpn: bad list length";
  }
  ByteReader protos(*list);
  while (!protos.empty()) {
    auto p = protos.vec8();
    if (!p || p->empty()) {
      return "alpn: bad protocol name";
    }
    out.alpn.emplace_back(detail::as_chars(*p));
  }
  return std::nullopt;
}

std::optional<std::string> parse_supported_versions(std::span<const std::byte> data,
                                                    ClientHello& out) {
  ByteReader r(data);
  auto list = r.vec8();
  if (!list || !r.empty() || list->size() < 2 || list->size() % 2 != 0) {
    return "supported_versions: bad list length";
  }
  ByteReader v(*list);
  while (!v.empty()) {
    const uint16_t version = *v.u16();  // even length checked above
    out.offers_tls13 = out.offers_tls13 || version == 0x0304;
  }
  return std::nullopt;
}

std::optional<std::string> parse_extensions(ByteReader& body, ClientHello& out) {
  auto block = body.vec16();
  if (!block || !body.empty()) {
    return "extensions: bad block length or trailing bytes";
  }
  ByteReader exts(*block);
  while (!exts.empty()) {
    auto type = exts.u16();
    auto data = exts.vec16();
    if (!type || !data) {
      return "extensions: truncated extension";
    }
    if (std::find(out.extensions.begin(), out.extensions.end(), *type) != out.extensions.end()) {
      return "extensions: duplicate extension";  // RFC 8446 4.2
    }
    out.extensions.push_back(*type);
    std::optional<std::string> err;
    switch (*type) {
      case kExtServerName:
        err = parse_server_name(*data, out);
        break;
      case kExtAlpn:
        err = parse_alpn(*data, out);
        break;
      case kExtSupportedVersions:
        err = parse_supported_versions(*data, out);
        break;
      case kExtEch:
        out.has_ech = true;
        break;
      case kExtEsni:
        out.has_esni = true;
        break;
      default:
        break;
    }
    if (err) {
      return err;
    }
  }
  return std::nullopt;
}

std::optional<std::string> parse_hello_body(std::span<const std::byte> msg, ClientHello& out) {
  ByteReader r(msg);
  auto version = r.u16();
  auto random = r.bytes(32);
  auto session_id = r.vec8();
  auto suites = r.vec16();
  auto compression = r.vec8();
  if (!version || !random || !session_id || !suites || !compression) {
    return "client_hello: truncated fixed fields";
  }
  if (session_id->size() > 32 || suites->size() < 2 || suites->size() % 2 != 0 ||
      compression->empty()) {
    return "client_hello: bad session id, cipher suites or compression methods";
  }
  out.legacy_version = *version;
  if (r.empty()) {
    return std::nullopt;  // no extension block (pre-TLS 1.2 clients): no SNI, no ALPN
  }
  return parse_extensions(r, out);
}

}  // namespace

HelloResult parse_client_hello(std::span<const std::byte> stream, size_t max_hello) {
  if (stream.empty()) {
    return {};
  }
  if (std::to_integer<uint8_t>(stream[0]) != kRecordHandshake) {
    return fail(HelloStatus::kNotTls, "first byte is not a TLS handshake record");
  }
  if (stream.size() >= 2 && std::to_integer<uint8_t>(stream[1]) != 3) {
    return fail(HelloStatus::kNotTls, "record version is not 3.x");
  }
  // Stage 1: reassemble the handshake message from consecutive handshake records. The common
  // case (one record) uses the stream in place; only a split message is copied.
  std::vector<std::byte> joined;
  std::span<const std::byte> hs;
  size_t pos = 0;
  size_t records = 0;
  for (;;) {
    ByteReader rec(stream.subspan(pos));
    auto type = rec.u8();
    auto version = rec.u16();
    auto length = rec.u16();
    if (!type || !version || !length) {
      return {};  // header incomplete
    }
    if (*type != kRecordHandshake || (*version >> 8) != 3 || (*version & 0xff) > 4) {
      return fail(HelloStatus::kMalformed, "unexpected record type or version inside ClientHello");
    }
    if (*length == 0 || *length > kMaxPlaintext) {
      return fail(HelloStatus::kMalformed, "record length 0 or over 2^14");
    }
    auto fragment = rec.bytes(*length);
    if (!fragment) {
      // Record incomplete. Judge the handshake header early when it is already here, so a
      // hostile length is refused before the proxy buffers up to it.
      if (records == 0 && rec.remaining() >= 4) {
        const auto msg_type = *rec.u8();
        if (msg_type != kHandshakeClientHello || *rec.u24() > max_hello) {
          return fail(HelloStatus::kMalformed, "not a ClientHello, or larger than the cap");
        }
      }
      return {};
    }
    pos += kRecordHeader + *length;
    if (++records > kMaxRecords) {
      return fail(HelloStatus::kMalformed, "ClientHello split over too many records");
    }
    if (records == 1) {
      hs = *fragment;
    } else {
      if (records == 2) {
        joined.assign(hs.begin(), hs.end());
      }
      joined.insert(joined.end(), fragment->begin(), fragment->end());
      hs = joined;
    }
    if (hs.size() >= 4) {
      ByteReader h(hs);
      const auto msg_type = *h.u8();
      const auto msg_len = *h.u24();
      if (msg_type != kHandshakeClientHello) {
        return fail(HelloStatus::kMalformed, "first handshake message is not a ClientHello");
      }
      if (msg_len > max_hello) {
        return fail(HelloStatus::kMalformed, "ClientHello larger than the cap");
      }
      if (hs.size() > 4 + msg_len) {
        return fail(HelloStatus::kMalformed, "bytes after the ClientHello in its records");
      }
      if (hs.size() == 4 + msg_len) {
        break;
      }
    }
    if (hs.size() > max_hello + 4) {
      return fail(HelloStatus::kMalformed, "ClientHello larger than the cap");
    }
  }
  // Stages 2-4.
  HelloResult res;
  res.hello.record_bytes = pos;
  if (auto err = parse_hello_body(hs.subspan(4), res.hello)) {
    return fail(HelloStatus::kMalformed, std::move(*err));
  }
  res.status = HelloStatus::kOk;
  return res;
}

}  // namespace agentbox::http
