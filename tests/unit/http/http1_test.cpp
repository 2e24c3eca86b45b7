// HTTP/1.1 parser: framing, smuggling defences, limits, responses, chunked and serialization.
#include "agentbox/http/http1.hpp"

#include <gtest/gtest.h>

#include <string>

namespace agentbox::http {
namespace {

std::span<const std::byte> B(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

Parsed<Request> req(const std::string& s) {
  return parse_request(B(s));
}

TEST(Classify, FirstBytes) {
  EXPECT_EQ(classify_stream(B("")), StreamKind::kNeedMore);
  EXPECT_EQ(classify_stream(B("GE")), StreamKind::kNeedMore);
  EXPECT_EQ(classify_stream(B("GET /")), StreamKind::kHttp1);
  EXPECT_EQ(classify_stream(B("M-SEARCH *")), StreamKind::kHttp1);
  EXPECT_EQ(classify_stream(B("\x16")), StreamKind::kNeedMore);
  EXPECT_EQ(classify_stream(B("\x16\x03\x01")), StreamKind::kTls);
  EXPECT_EQ(classify_stream(B("SSH-2.0-OpenSSH")), StreamKind::kOther);
  EXPECT_EQ(classify_stream(B("get / HTTP/1.1")), StreamKind::kOther);
  EXPECT_EQ(classify_stream(B(" GET")), StreamKind::kOther);
  EXPECT_EQ(classify_stream(B(std::string(30, 'A'))), StreamKind::kOther);
}

TEST(Request, SimpleGet) {
  const std::string s =
      "GET /repos?x=1 HTTP/1.1\r\nHost: API.GitHub.com\r\nUser-Agent: t\r\n\r\nNEXT";
  const auto p = req(s);
  ASSERT_EQ(p.status, ParseStatus::kOk) << p.reason;
  EXPECT_EQ(p.head_bytes, s.size() - 4);
  EXPECT_EQ(p.message.method, "GET");
  EXPECT_EQ(p.message.target, "/repos?x=1");
  EXPECT_EQ(p.message.host, "api.github.com");
  EXPECT_FALSE(p.message.port.has_value());
  EXPECT_EQ(p.message.framing, Framing::kNone);
  EXPECT_TRUE(p.message.keep_alive);
  EXPECT_EQ(p.message.header("user-agent"), "t");
}

TEST(Request, EveryPrefixNeedsMore) {
  const std::string s = "POST /x HTTP/1.1\r\nHost: a.example:8443\r\nContent-Length: 5\r\n\r\n";
  for (size_t n = 0; n < s.size(); ++n) {
    EXPECT_EQ(req(s.substr(0, n)).status, ParseStatus::kNeedMore) << n;
  }
  const auto p = req(s);
  ASSERT_EQ(p.status, ParseStatus::kOk);
  EXPECT_EQ(p.message.framing, Framing::kContentLength);
  EXPECT_EQ(p.message.content_length, 5u);
  EXPECT_EQ(p.message.port, 8443);
}

struct Bad {
  const char* name;
  std::string head;
  int status;
};

TEST(Request, SmugglingDefences) {
  const std::string h = "Host: a.example\r\n";
  const Bad cases[] = {
      {"bare LF", "GET / HTTP/1.1\n" + h + "\r\n", 400},
      {"bare LF in field", "GET / HTTP/1.1\r\n" + h + "X: y\n\r\n", 400},
      {"bare CR", "GET / HTTP/1.1\r\nX: a\rb\r\n" + h + "\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\n" + h + "X: a\r\n  b\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\n" + h + "Content-Length : 3\r\n\r\n", 400},
      {"CL conflict", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 4\r\n\r\n",
       400},
      {"CL list conflict", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3, 4\r\n\r\n", 400},
      {"CL sign", "POST / HTTP/1.1\r\n" + h + "Content-Length: +3\r\n\r\n", 400},
      {"CL hex", "POST / HTTP/1.1\r\n" + h + "Content-Length: 0x3\r\n\r\n", 400},
      {"CL empty", "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n", 400},
      {"CL huge", "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999\r\n\r\n", 400},
      {"CL+TE",
       "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"TE gzip", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"TE chunked twice",
       "POST / HTTP/1.1\r\n" + h +
           "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
       501},
      {"TE xchunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n", 501},
      {"TE in 1.0", "POST / HTTP/1.0\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n", 400},
      {"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
      {"two Hosts", "GET / HTTP/1.1\r\n" + h + h + "\r\n", 400},
      {"Host NUL", std::string("GET / HTTP/1.1\r\nHost: a.com\0.b.com\r\n\r\n", 38), 400},
      {"Host userinfo", "GET / HTTP/1.1\r\nHost: u@a.com\r\n\r\n", 400},
      {"Host percent", "GET / HTTP/1.1\r\nHost: a%2e.com\r\n\r\n", 400},
      {"Host bad port", "GET / HTTP/1.1\r\nHost: a.com:99999\r\n\r\n", 400},
      {"absolute-form mismatch", "GET http://b.example/ HTTP/1.1\r\n" + h + "\r\n", 400},
      {"NUL in value", std::string("GET / HTTP/1.1\r\nX: a\0b\r\n") + h + "\r\n", 400},
      {"two spaces", "GET  / HTTP/1.1\r\n" + h + "\r\n", 400},
      {"lowercase version", "GET / http/1.1\r\n" + h + "\r\n", 400},
      {"HTTP/2", "GET / HTTP/2.0\r\n" + h + "\r\n", 505},
      {"relative target", "GET x HTTP/1.1\r\n" + h + "\r\n", 400},
      {"asterisk GET", "GET * HTTP/1.1\r\n" + h + "\r\n", 400},
  };
  for (const auto& c : cases) {
    const auto p = req(c.head);
    EXPECT_EQ(p.status, ParseStatus::kError) << c.name;
    EXPECT_EQ(p.http_status, c.status) << c.name << ": " << p.reason;
  }
}

TEST(Request, AcceptedVariants) {
  auto p =
      req("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kOk) << p.reason;
  EXPECT_EQ(p.message.content_length, 3u);
  p = req("POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: Chunked\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kOk);
  EXPECT_EQ(p.message.framing, Framing::kChunked);
  p = req("GET http://a.example:80/x HTTP/1.1\r\nHost: a.example:80\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kOk) << p.reason;
  EXPECT_EQ(p.message.host, "a.example");
  p = req("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kOk);
  EXPECT_FALSE(p.message.keep_alive);
  p = req("GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kOk);
  EXPECT_EQ(p.message.host, "");
  EXPECT_FALSE(p.message.keep_alive);
  p =
      req("GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, Upgrade\r\n"
          "Upgrade: websocket\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kOk);
  EXPECT_TRUE(p.message.wants_upgrade);
  EXPECT_TRUE(p.message.expect_continue);
}

TEST(Request, RefusedMethods) {
  for (const char* m : {"CONNECT", "TRACE", "TRACK"}) {
    const std::string target = std::string(m) == "CONNECT" ? "a.example:443" : "/";
    const auto p = req(std::string(m) + " " + target + " HTTP/1.1\r\nHost: a.example" +
                       (std::string(m) == "CONNECT" ? ":443" : "") + "\r\n\r\n");
    ASSERT_EQ(p.status, ParseStatus::kOk) << m << p.reason;
    EXPECT_TRUE(p.message.refused_method()) << m;
  }
  EXPECT_FALSE(req("GET / HTTP/1.1\r\nHost: a\r\n\r\n").message.refused_method());
}

TEST(Request, Limits) {
  Limits small{.max_line = 32, .max_head = 256, .max_headers = 3};
  const std::string long_line = "GET /" + std::string(40, 'a') + " HTTP/1.1\r\n";
  auto p = parse_request(B(long_line.substr(0, 38)), small);
  EXPECT_EQ(p.http_status, 414);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 4; ++i) {
    many += "X" + std::to_string(i) + ": v\r\n";
  }
  p = parse_request(B(many + "\r\n"), small);
  EXPECT_EQ(p.http_status, 431);
  p = parse_request(B("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(300, 'v')), small);
  EXPECT_EQ(p.http_status, 431);
}

TEST(Response, Framing) {
  auto r = parse_response(B("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"), {});
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.message.framing, Framing::kContentLength);
  EXPECT_EQ(r.message.content_length, 12u);
  r = parse_response(B("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"), {.head = true});
  EXPECT_EQ(r.message.framing, Framing::kNone);
  r = parse_response(B("HTTP/1.1 204 No Content\r\n\r\n"), {});
  EXPECT_EQ(r.message.framing, Framing::kNone);
  r = parse_response(B("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), {});
  EXPECT_EQ(r.message.framing, Framing::kNone);
  r = parse_response(B("HTTP/1.1 100 Continue\r\n\r\n"), {});
  EXPECT_TRUE(r.message.interim());
  EXPECT_EQ(r.message.framing, Framing::kNone);
  r = parse_response(B("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), {});
  EXPECT_EQ(r.message.framing, Framing::kChunked);
  r = parse_response(B("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), {});
  EXPECT_EQ(r.message.framing, Framing::kUntilClose);
  EXPECT_FALSE(r.message.keep_alive);
  r = parse_response(B("HTTP/1.1 200 OK\r\n\r\n"), {});
  EXPECT_EQ(r.message.framing, Framing::kUntilClose);
  r = parse_response(B("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
                     {.asked_upgrade = true});
  EXPECT_EQ(r.message.framing, Framing::kTunnel);
  r = parse_response(B("HTTP/1.1 101 Switching Protocols\r\n\r\n"), {});
  EXPECT_EQ(r.status, ParseStatus::kError);
  r = parse_response(B("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), {});
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.message.status, 200);
  EXPECT_EQ(r.message.reason, "");
  EXPECT_TRUE(r.message.keep_alive);
}

TEST(Response, Errors) {
  for (const std::string s :
       {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 099 X\r\n\r\n", "HTTP/1.1 200 O\x01K\r\n\r\n",
        "ICY 200 OK\r\n\r\n", "HTTP/1.1 200 OK\n\n"}) {
    const auto r = parse_response(B(s), {});
    EXPECT_EQ(r.status, ParseStatus::kError) << s;
    EXPECT_EQ(r.http_status, 502);
  }
}

TEST(Serialize, RewritesPreservingOrder) {
  auto p =
      req("GET / HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer x\r\nX-A: 1\r\n"
          "authorization: again\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kOk);
  p.message.set_header("Authorization", "Bearer real");
  p.message.set_header("X-New", "n");
  EXPECT_EQ(serialize_head(p.message),
            "GET / HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer real\r\nX-A: 1\r\n"
            "X-New: n\r\n\r\n");
  EXPECT_EQ(p.message.remove_header("x-a"), 1u);
  // Round trip: what we write parses to the same message.
  const std::string out = serialize_head(p.message);
  const auto again = req(out);
  ASSERT_EQ(again.status, ParseStatus::kOk);
  EXPECT_EQ(again.head_bytes, out.size());
  EXPECT_EQ(again.message.headers.size(), 3u);
  Response resp;
  resp.status = 404;
  resp.reason = "Not Found";
  resp.headers = {{"Content-Length", "0"}};
  EXPECT_EQ(serialize_head(resp), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

TEST(Chunked, DecodesAcrossEverySplit) {
  const std::string body = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\nNEXT";
  for (size_t split = 0; split <= body.size(); ++split) {
    ChunkedDecoder d;
    std::string out;
    size_t used = d.feed(B(body.substr(0, split)), out);
    EXPECT_EQ(used, std::min(split, body.size() - 4));
    used += d.feed(B(body.substr(used)), out);
    ASSERT_EQ(d.state(), ChunkedDecoder::State::kDone) << split << d.error();
    EXPECT_EQ(out, "hello world");
    EXPECT_EQ(used, body.size() - 4);
    ASSERT_EQ(d.trailers().size(), 1u);
    EXPECT_EQ(d.trailers()[0].value, "v");
  }
}

TEST(Chunked, Errors) {
  for (const std::string s :
       {"x\r\n", "5\nhello\r\n", "5\r\nhelloX\r\n", "5 x\r\n", "10000000000000000\r\n",
        "0\r\nbad trailer\r\n\r\n", "0\r\n: v\r\n\r\n", "5\r\nhello\r\r", "3;a\x01\r\n"}) {
    ChunkedDecoder d;
    std::string out;
    d.feed(B(s), out);
    EXPECT_EQ(d.state(), ChunkedDecoder::State::kError) << s;
  }
  ChunkedDecoder capped({.max_size_line = 8, .max_trailers = 16, .max_body = 4});
  std::string out;
  capped.feed(B("5\r\nhello\r\n"), out);
  EXPECT_EQ(capped.state(), ChunkedDecoder::State::kError);
  ChunkedDecoder long_line({.max_size_line = 8});
  long_line.feed(B("1;aaaaaaaaaaaaaaaaaa"), out);
  EXPECT_EQ(long_line.state(), ChunkedDecoder::State::kError);
}

}  // namespace
}  // namespace agentbox::http

namespace agentbox::http {
namespace {

std::span<const std::byte> Bv(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

TEST(BodyReader, ContentLengthStopsAtTheEnd) {
  BodyReader r(Framing::kContentLength, 5);
  std::string out;
  EXPECT_EQ(r.feed(Bv("hel"), out), 3u);
  EXPECT_FALSE(r.done());
  EXPECT_EQ(r.feed(Bv("loGET /"), out), 2u);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(out, "hello");
  BodyReader cut(Framing::kContentLength, 5);
  (void)cut.feed(Bv("he"), out);
  cut.finish_eof();
  EXPECT_TRUE(cut.failed());
}

TEST(BodyReader, ChunkedUntilCloseNoneTunnel) {
  std::string out;
  BodyReader c(Framing::kChunked, 0);
  EXPECT_EQ(c.feed(Bv("3\r\nabc\r\n0\r\n\r\nX"), out), 13u);
  EXPECT_TRUE(c.done());
  EXPECT_EQ(out, "abc");
  BodyReader u(Framing::kUntilClose, 0);
  EXPECT_EQ(u.feed(Bv("all of it"), out), 9u);
  EXPECT_FALSE(u.done());
  u.finish_eof();
  EXPECT_TRUE(u.done());
  EXPECT_TRUE(BodyReader(Framing::kNone, 0).done());
  EXPECT_TRUE(BodyReader(Framing::kContentLength, 0).done());
  EXPECT_TRUE(BodyReader(Framing::kTunnel, 0).failed());
}

TEST(ChunkEncoding, RoundTripsThroughTheDecoder) {
  const std::string data(300, 'z');
  const std::string wire =
      encode_chunk(data) + encode_chunk("") + encode_chunk("!") + std::string(kLastChunk);
  EXPECT_EQ(wire.substr(0, 5), "12c\r\n");
  ChunkedDecoder d;
  std::string out;
  EXPECT_EQ(d.feed(Bv(wire), out), wire.size());
  EXPECT_EQ(d.state(), ChunkedDecoder::State::kDone);
  EXPECT_EQ(out, data + "!");
}

TEST(Denial, TellsTheAgentWhyAndCannotBeSplit) {
  const std::string r =
      denial_response(403, "request blocked: credential github sent to evil.example\r\nX: y");
  auto p = parse_response(Bv(r), {});
  ASSERT_EQ(p.status, ParseStatus::kOk) << p.reason;
  EXPECT_EQ(p.message.status, 403);
  EXPECT_EQ(p.message.header("x-agentbox-denied"), "1");
  EXPECT_FALSE(p.message.keep_alive);
  EXPECT_EQ(p.message.count("x"), 0u);
  const std::string body = r.substr(p.head_bytes);
  EXPECT_EQ(body.size(), p.message.content_length);
  EXPECT_EQ(body, "agentbox: request blocked: credential github sent to evil.example??X: y\n");
}

}  // namespace
}  // namespace agentbox::http
