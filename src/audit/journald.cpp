// Audit lines to the systemd journal over its native protocol (audit/export.hpp): a datagram of
// `FIELD=value\n` entries (a value with a newline: `FIELD\n`, its length as 64-bit little endian,
// the value, `\n`). Written by hand rather than with sd_journal_sendv(3): the protocol is small
// and stable (systemd.io/JOURNAL_NATIVE_PROTOCOL), the datagram is sent with MSG_DONTWAIT from
// the audit sink's lock (libsystemd's send may block on a full socket), and the tests point it at
// a socket of their own, which sd_journal_sendv cannot do.
#include <fmt/core.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agentbox/audit/export.hpp"
#include "agentbox/base/error.hpp"

namespace agentbox::audit {

using base::Error;
using base::Result;

namespace {

void add_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  if (value.find('\n') == std::string_view::npos) {
    out += '=';
    out += value;
  } else {
    out += '\n';
    uint64_t n = value.size();
    for (int i = 0; i < 8; ++i) {
      out += static_cast<char>((n >> (8 * i)) & 0xff);
    }
    out += value;
  }
  out += '\n';
}

// The value of a top-level string field as written in the line (the sink's own rendering:
// "type" and "session" are trusted literals, never escaped).
std::string_view line_field(std::string_view line, std::string_view key) {
  std::string needle = fmt::format("\"{}\":\"", key);
  size_t at = line.find(needle);
  if (at == std::string_view::npos) {
    return {};
  }
  at += needle.size();
  size_t end = line.find('"', at);
  return end == std::string_view::npos ? std::string_view() : line.substr(at, end - at);
}

bool warning(std::string_view type, std::string_view line) {
  return type.ends_with(".deny") || type.ends_with(".drop") || type.ends_with(".fail") ||
         type.ends_with(".blocked") || type.ends_with(".budget") || type == "audit.truncated" ||
         type == "git.planted" || line.find("\"result\":\"denied\"") != std::string_view::npos;
}

}  // namespace

std::string journald_datagram(std::string_view line, const Attributes& fields) {
  if (!line.empty() && line.back() == '\n') {
    line.remove_suffix(1);
  }
  std::string_view type = line_field(line, "type");
  std::string out;
  out.reserve(line.size() + 256);
  add_field(out, "MESSAGE", line);
  add_field(out, "PRIORITY", warning(type, line) ? "4" : "6");  // LOG_WARNING, LOG_INFO
  add_field(out, "SYSLOG_IDENTIFIER", "agentbox");
  add_field(out, "AGENTBOX_SESSION", line_field(line, "session"));
  add_field(out, "AGENTBOX_EVENT", type);
  for (const auto& [k, v] : fields) {
    add_field(out, k, v);
  }
  return out;
}

std::string JournaldWriter::socket_path() {
  const char* p = std::getenv("AGENTBOX_JOURNAL_SOCKET");  // tests only (docs/TELEMETRY.md)
  return p != nullptr && *p != '\0' ? p : "/run/systemd/journal/socket";
}

Result<JournaldWriter> JournaldWriter::open(std::string path, Attributes fields) {
  struct sockaddr_un sun {};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    return Error::msg(fmt::format("`{}`: a socket path this long cannot be used", path));
  }
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return Error::sys(errno, "socket", "AF_UNIX");
  }
  if (::connect(fd.get(), reinterpret_cast<const struct sockaddr*>(&sun), sizeof sun) != 0) {
    return Error::sys(errno, "connect", path);
  }
  return JournaldWriter(std::move(fd), std::move(fields));
}

void JournaldWriter::send(std::string_view line) noexcept {
  try {
    std::string d = journald_datagram(line, fields_);
    if (::send(fd_.get(), d.data(), d.size(), MSG_DONTWAIT | MSG_NOSIGNAL) ==
        static_cast<ssize_t>(d.size())) {
      ++sent_;
      return;
    }
  } catch (...) {
  }
  ++dropped_;  // EAGAIN (a full journal), EMSGSIZE (a line past the datagram limit), gone
}

}  // namespace agentbox::audit
