// Checks on an intercepted exchange that keep the scrubber's view whole (proxy_conn.hpp):
//   request   Upgrade only to websocket (no h2c, TLS/x or foreign tunnel past the checks), its
//             extensions stripped (permessage-deflate frames could not be scanned); Range and
//             If-Range refused where a credential is injected into bodies (a stored secret read
//             back in pieces); Accept-Encoding: identity and no TE, so the answer is scannable.
//   response  a content or transfer coding other than identity/chunked, or a 206 where a
//             credential is injected into bodies: refused with 502 (the box never gets bytes
//             the scrubber could not read). The coding is named in the refusal, which goes to
//             the box and the audit log: scrubbed first (the upstream chose those bytes).
#include <algorithm>

#include "proxy_conn.hpp"

namespace agentbox::proxy {

namespace {

bool body_injected(ProxyHandler::Internals& in, const Conn& c) {
  return in.credentials != nullptr && !in.credentials->body_injector(c.info.name, !c.tls).empty();
}

// An upstream's own bytes quoted in a refusal, scrubbed like the response they came in.
std::string quoted(ProxyHandler::Internals& in, std::string_view text) {
  cred::Scrubber s = in.credentials->scrubber();
  std::string out = s.feed(text);  // two statements: feed runs before finish
  out += s.finish();
  return out;
}

}  // namespace

Refusal guard_request(ProxyHandler::Internals& in, Conn& c, http::Request& r) {
  if (r.target.find('#') != std::string::npos) {
    return {400, "a fragment (#) in the request target (servers disagree on what it means)"};
  }
  if (r.count("upgrade") > 0) {
    const auto tokens = http::list_items(r, "upgrade");
    const bool websocket = tokens.size() == 1 && http::iequals(tokens[0], "websocket");
    if (!websocket) {
      std::string named;
      for (auto t : tokens) {
        named += (named.empty() ? "" : ", ") + std::string(t);
      }
      return {403, "Upgrade `" + named +
                       "` refused: agentbox relays only websocket upgrades (an upgraded "
                       "connection would skip every HTTP check)"};
    }
    // Frames stay plain, so the proxy can read them both ways (websocket.cpp).
    (void)r.remove_header("sec-websocket-extensions");
  }
  if (in.credentials == nullptr) {
    return {};
  }
  if ((r.count("range") > 0 || r.count("if-range") > 0) && body_injected(in, c)) {
    return {403, "Range requests refused on " + c.info.name +
                     ": a credential is injected into request bodies there, and a stored "
                     "secret read back in pieces would pass the scrubber"};
  }
  r.set_header("Accept-Encoding", "identity");  // so the response can be scrubbed
  (void)r.remove_header("te");
  return {};
}

Refusal guard_response(ProxyHandler::Internals& in, const Conn& c, const http::Response& r) {
  if (r.framing == http::Framing::kTunnel) {
    const auto tokens = http::list_items(r, "upgrade");
    if (tokens.size() != 1 || !http::iequals(tokens[0], "websocket") ||
        r.count("sec-websocket-extensions") > 0) {
      return {502, "101 from " + c.info.name +
                       " refused: only a websocket upgrade without extensions is relayed"};
    }
  }
  if (in.credentials == nullptr || r.framing == http::Framing::kNone ||
      r.framing == http::Framing::kTunnel) {
    return {};
  }
  for (auto coding : http::list_items(r, "content-encoding")) {
    if (!http::iequals(coding, "identity")) {
      return {502, "response from " + c.info.name + " refused: Content-Encoding `" +
                       quoted(in, coding) +
                       "` (identity was asked for; the proxy scans only what it can read)"};
    }
  }
  for (auto coding : http::list_items(r, "transfer-encoding")) {
    if (!http::iequals(coding, "chunked")) {
      return {502, "response from " + c.info.name + " refused: Transfer-Encoding `" +
                       quoted(in, coding) + "` (the proxy scans only what it can read)"};
    }
  }
  if (r.status == 206 && body_injected(in, c)) {
    return {502, "partial response (206) from " + c.info.name +
                     " refused: a credential is injected into request bodies there"};
  }
  return {};
}

}  // namespace agentbox::proxy
