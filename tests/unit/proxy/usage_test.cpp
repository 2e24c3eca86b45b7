// UsageMeter and SessionBudget: token usage read from every wire format, whatever the split.
#include "agentbox/proxy/usage.hpp"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "agentbox/proxy/session_budget.hpp"

namespace agentbox::proxy {
namespace {

using Format = UsageMeter::Format;

struct Case {
  const char* name;
  Format format;
  std::string body;
  std::string model;
  Tokens want;
};

std::vector<Case> cases() {
  return {
      {"anthropic_json",
       Format::kJson,
       R"({"id":"msg_1","type":"message","model":"claude-sonnet-4-5","content":[{"type":"text",)"
       R"("text":"usage: {\"model\":\"x\"}"}],"usage":{"input_tokens":12,"output_tokens":34,)"
       R"("cache_read_input_tokens":5,"cache_creation_input_tokens":7}})",
       "claude-sonnet-4-5",
       {24, 34, 5}},
      {"anthropic_sse",
       Format::kSse,
       "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"model\":"
       "\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":100,\"output_tokens\":1,"
       "\"cache_read_input_tokens\":40}}}\r\n\r\n"
       "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":"
       "{\"text\":\"data: {\\\"usage\\\":{\\\"output_tokens\\\":999}}\"}}\r\n\r\n"
       ": a comment line\r\n\r\n"
       "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":"
       "57}}\r\n\r\nevent: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
       "claude-haiku-4-5",
       {140, 57, 40}},
      {"responses_json",
       Format::kJson,
       R"({"id":"resp_1","object":"response","model":"gpt-5-2025-08-07","output":[{"content":)"
       R"([{"text":"hi","usage":{"input_tokens":1}}]}],"usage":{"input_tokens":300,)"
       R"("input_tokens_details":{"cached_tokens":128},"output_tokens":20,)"
       R"("output_tokens_details":{"reasoning_tokens":8},"total_tokens":320}})",
       "gpt-5-2025-08-07",
       {300, 20, 128}},
      {"responses_sse",
       Format::kSse,
       "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":"
       "\"gpt-5-mini\",\"usage\":null}}\n\n"
       "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","
       "\"delta\":\"}}}\"}\n\n"
       "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\""
       ":\"gpt-5-mini\",\"usage\":{\"input_tokens\":50,\"input_tokens_details\":{\"cached_tokens"
       "\":0},\"output_tokens\":9}}}\n\n",
       "gpt-5-mini",
       {50, 9, 0}},
      {"chat_json",
       Format::kJson,
       R"({"object":"chat.completion","model":"gpt-4o-mini","choices":[],"usage":)"
       R"({"prompt_tokens":19,"completion_tokens":10,"prompt_tokens_details":{"cached_tokens":3}}})",
       "gpt-4o-mini",
       {19, 10, 3}},
      {"chat_sse",
       Format::kSse,
       "data: {\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":"
       "{\"content\":\"a\"}}],\"usage\":null}\n\n"
       "data: {\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":"
       "{\"prompt_tokens\":8,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\""
       ":0}}}\n\ndata: [DONE]\n\n",
       "gpt-4o",
       {8, 2, 0}},
      {"gemini_json",
       Format::kJson,
       R"({"candidates":[{"content":{"parts":[{"text":"x"}]}}],"usageMetadata":{"promptTokenCount")"
       R"(:11,"candidatesTokenCount":6,"cachedContentTokenCount":4,"thoughtsTokenCount":3,)"
       R"("totalTokenCount":20},"modelVersion":"gemini-2.5-flash"})",
       "gemini-2.5-flash",
       {11, 9, 4}},
      {"gemini_stream_array",
       Format::kJson,
       "[{\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":11,\"candidatesTokenCount\":"
       "2},\"modelVersion\":\"gemini-2.5-pro\"}\r\n,\r\n{\"candidates\":[],\"usageMetadata\":{"
       "\"promptTokenCount\":11,\"candidatesTokenCount\":7},\"modelVersion\":\"gemini-2.5-pro\"}]",
       "gemini-2.5-pro",
       {11, 7, 0}},
      {"gemini_sse",
       Format::kSse,
       "data: {\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1},"
       "\"modelVersion\":\"gemini-2.5-flash\"}\r\rdata: {\"usageMetadata\":{\"promptTokenCount\":"
       "4,\"candidatesTokenCount\":5},\"modelVersion\":\"gemini-2.5-flash\"}",
       "gemini-2.5-flash",
       {4, 5, 0}},
  };
}

UsageMeter::Reading read_in_pieces(const Case& c, const std::vector<size_t>& cuts) {
  UsageMeter m(c.format);
  size_t at = 0;
  for (size_t cut : cuts) {
    m.feed(std::string_view(c.body).substr(at, cut - at));
    at = cut;
  }
  m.feed(std::string_view(c.body).substr(at));
  return m.finish();
}

void expect(const Case& c, const UsageMeter::Reading& r, const std::string& how) {
  EXPECT_TRUE(r.seen) << c.name << how;
  EXPECT_EQ(r.model, c.model) << c.name << how;
  EXPECT_EQ(r.tokens.input, c.want.input) << c.name << how;
  EXPECT_EQ(r.tokens.output, c.want.output) << c.name << how;
  EXPECT_EQ(r.tokens.cached, c.want.cached) << c.name << how;
}

TEST(UsageMeter, ReadsEachWireFormatWhole) {
  for (const auto& c : cases()) {
    expect(c, read_in_pieces(c, {}), " whole");
  }
}

// The class, not an example: every split point, and every pair of split points (an event, a
// line end or a value cut in three), gives the reading of the whole body.
TEST(UsageMeter, AnySplitGivesTheSameReading) {
  for (const auto& c : cases()) {
    for (size_t i = 0; i <= c.body.size(); ++i) {
      expect(c, read_in_pieces(c, {i}), " split at " + std::to_string(i));
      for (size_t j = i; j <= c.body.size(); j += 13) {
        const auto r = read_in_pieces(c, {i, j});
        ASSERT_EQ(r.tokens.input, c.want.input) << c.name << " cut at " << i << "," << j;
        ASSERT_EQ(r.tokens.output, c.want.output) << c.name << " cut at " << i << "," << j;
      }
    }
    std::vector<size_t> every;
    for (size_t i = 1; i < c.body.size(); ++i) {
      every.push_back(i);
    }
    expect(c, read_in_pieces(c, every), " byte by byte");
  }
}

// A stream that mixes what the fast path passes over (text deltas, comments, lone `event:`
// lines, names that only look like members) with what it must hand to the scanner (usage in
// the first and last events, a member name split across data lines, a key in a string), over
// LF, CRLF and CR line ends.
std::string mixed_stream() {
  std::string s =
      "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":"
      "{\"model\":\"claude-opus-4-1\",\"usage\":{\"input_tokens\":70,"
      "\"cache_creation_input_tokens\":3,\"output_tokens\":1}}}\r\n\r\n";
  for (int i = 0; i < 12; ++i) {
    const char* eol = i % 3 == 0 ? "\n" : (i % 3 == 1 ? "\r\n" : "\r");
    s += fmt::format(
        "event: content_block_delta{0}data: {{\"type\":\"content_block_delta\","
        "\"delta\":{{\"text\":\"tok{1} usage model\"}}}}{0}{0}",
        eol, i);
    if (i == 4) {
      s += ": keep-alive\n\n";
    }
    if (i == 7) {  // names a member in text, and splits one across two data lines: no report
      s += "data: {\"delta\":{\"text\":\"{\\\"usage\\\":{\\\"output_tokens\\\":9}}\"}}\n\n"
           "data: {\"us\ndata: age\":{\"output_tokens\":8}}\n\n";
    }
  }
  s += "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens"
       "\":61}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
  return s;
}

// The fast path (events passed over whole, cut ones held until their end) reads what the byte
// scanner alone reads (UsageMeter::scanner_only): fed whole, byte by byte, cut once at every
// point, or cut at every pair of points 7 apart, the reading is the same and the text deltas
// were passed over.
TEST(UsageMeter, FastPathReadsWhatTheScannerReadsAtEverySplit) {
  std::vector<Case> all = cases();
  all.push_back({"mixed", Format::kSse, mixed_stream(), "claude-opus-4-1", {73, 61, 0}});
  for (const auto& c : all) {
    std::vector<size_t> every;
    for (size_t i = 1; i < c.body.size(); ++i) {
      every.push_back(i);
    }
    const auto scanner = read_in_pieces(c, every);
    expect(c, scanner, " byte by byte");
    for (size_t i = 0; i <= c.body.size(); ++i) {
      expect(c, read_in_pieces(c, {i}), " split at " + std::to_string(i));
      if (i + 7 <= c.body.size()) {
        expect(c, read_in_pieces(c, {i, i + 7}), " cut at " + std::to_string(i) + "+7");
      }
    }
  }
  // Whole: the events between the first and the one whose text names `"usage` (the deltas, the
  // comment), then those up to message_delta, are passed over: most of the stream.
  UsageMeter whole(Format::kSse);
  whole.feed(mixed_stream());
  EXPECT_GT(whole.bytes_passed_over(), mixed_stream().size() / 2);
  EXPECT_EQ(whole.finish().tokens.output, 61U);
  // Byte by byte: each event is held until its end, then passed over as when whole; the
  // scanner alone passes over nothing and reads the same.
  UsageMeter bytewise(Format::kSse);
  auto scanner_only = UsageMeter::scanner_only(Format::kSse);
  for (char ch : mixed_stream()) {
    bytewise.feed(std::string_view(&ch, 1));
    scanner_only.feed(std::string_view(&ch, 1));
  }
  // (within the LF of a CRLF that ended a scanned event: passed over or read as it falls)
  EXPECT_GE(bytewise.bytes_passed_over() + 2, whole.bytes_passed_over());
  EXPECT_EQ(bytewise.finish().tokens.output, 61U);
  EXPECT_EQ(scanner_only.bytes_passed_over(), 0U);
  EXPECT_EQ(scanner_only.finish().tokens.output, 61U);
}

// A long stream as the proxy reads it in bulk (many events per piece): deltas whose text holds
// quote-u and quote-m pairs that are not member names (`"um`, `"mode`, `"usag`), a key named
// `"usages` (scanned, not a report), a cumulative report in the middle (overwritten by the last),
// over LF, CRLF and CR; two events longer than a held start. In pieces of every size from 1 to
// 300 bytes, and of sizes up to 4 KiB, the reading is the byte scanner's alone.
TEST(UsageMeter, BulkPiecesOfEverySizeReadWhatTheScannerReads) {
  std::string body =
      "event: message_start\ndata: {\"message\":{\"model\":\"m-1\",\"usage\":"
      "{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
  for (int i = 0; i < 120; ++i) {
    const char* eol = i % 3 == 0 ? "\n" : (i % 3 == 1 ? "\r\n" : "\r");
    body += fmt::format(
        "event: content_block_delta{0}data: {{\"delta\":{{\"text\":\"\\\"um {1}\\\" \\\"m\","
        "\"mode\":\"usag\"}}}}{0}{0}",
        eol, i);
    if (i == 60) {
      body += "data: {\"usage\":{\"input_tokens\":10,\"output_tokens\":30}}\n\n";
    }
    if (i == 90) {
      body += "data: {\"usages\":{\"output_tokens\":99}}\r\r";
    }
    // Longer than a held event start (UsageMeter::kMaxHeld): one plain, one a report.
    if (i == 30) {
      const std::string text(1500, 'x');
      body += fmt::format("data: {{\"delta\":{{\"text\":\"{0}\"}}}}\n\n", text);
      body += fmt::format("data: {{\"delta\":{{\"text\":\"{0}\"}},\"usage\":{{", text) +
              "\"cache_read_input_tokens\":5}}\n\n";
    }
  }
  body += "data: {\"usage\":{\"output_tokens\":121}}\r\n\r\n";
  const Case c{"bulk", Format::kSse, body, "m-1", {15, 121, 5}};
  std::vector<size_t> every;
  for (size_t i = 1; i < body.size(); ++i) {
    every.push_back(i);
  }
  auto scanner_only = UsageMeter::scanner_only(Format::kSse);
  scanner_only.feed(body);
  expect(c, scanner_only.finish(), " by the scanner alone");
  expect(c, read_in_pieces(c, every), " byte by byte");
  expect(c, read_in_pieces(c, {}), " whole");
  for (size_t size = 1; size <= 4096; size += size < 300 ? 1 : 37) {
    std::vector<size_t> cuts;
    for (size_t at = size; at < body.size(); at += size) {
      cuts.push_back(at);
    }
    expect(c, read_in_pieces(c, cuts), " in pieces of " + std::to_string(size));
  }
  UsageMeter whole(Format::kSse);
  whole.feed(body);
  EXPECT_GT(whole.bytes_passed_over(), body.size() * 8 / 10);  // all but five events
}

// In bulk pieces the byte scanner reads only the events that name a member: an event cut by a
// piece's end is held until its end arrives and then passed over whole like the others (a name
// cut in two, `"usa` + `ge"`, is whole again when the event is). Exactly the two reporting
// events' bytes are not passed over, at every piece size from 160 bytes (an event's size) up.
TEST(UsageMeter, BulkPiecesPassOverEveryEventThatNamesNoMember) {
  const std::string start =
      "event: message_start\ndata: {\"message\":{\"model\":\"m-2\",\"usage\":"
      "{\"input_tokens\":7,\"output_tokens\":1}}}\n\n";
  const std::string last = "event: message_delta\ndata: {\"usage\":{\"output_tokens\":300}}\n\n";
  std::string body = start;
  for (int i = 0; i < 300; ++i) {
    body += fmt::format(
        "event: content_block_delta\ndata: {{\"delta\":{{\"text\":\" tok {} \\\"um\\\" "
        "\\\"modest\\\"\"}}}}\n\n",
        i);
  }
  body += last;
  body += "event: message_stop\ndata: {}\n\n";
  for (size_t size = 160; size <= 2000; size += 7) {
    UsageMeter m(Format::kSse);
    for (size_t at = 0; at < body.size(); at += size) {
      m.feed(std::string_view(body).substr(at, size));
    }
    EXPECT_EQ(m.bytes_passed_over(), body.size() - start.size() - last.size())
        << "in pieces of " << size;
    const auto r = m.finish();
    EXPECT_EQ(r.model, "m-2") << "in pieces of " << size;
    EXPECT_EQ(r.tokens.output, 300U) << "in pieces of " << size;
  }
}

// The walks to an event's end (back from a name or a piece's end, forward through a held event)
// go 32 bytes a step where the CPU has a vector unit: empty lines at every offset of a step and
// across two, by LF, CRLF, CR and a mix (a CRLF cut between steps is one line end, CR CR and
// LF CR are two), in pieces of every size up to 70 bytes and a few larger. Every event but the
// two reports is passed over, and the reading is the byte scanner's.
TEST(UsageMeter, EventEndsAtEveryOffsetOfAVectorStep) {
  const char* kinds[] = {"\n", "\r\n", "\r", "mixed"};
  for (const std::string kind : kinds) {
    for (size_t pad = 0; pad < 40; ++pad) {
      auto eol = [&](size_t i) -> std::string {
        if (kind != "mixed") {
          return kind;
        }
        return i % 3 == 0 ? "\n" : (i % 3 == 1 ? "\r\n" : "\r");
      };
      const std::string start =
          "data: {\"model\":\"m-3\",\"usage\":{\"input_tokens\":4}}" + eol(0) + eol(0);
      std::string body = start;
      for (size_t i = 0; i < 13; ++i) {  // in the mix, i % 3 == 2 joins two events by a CRLF
        body += (i % 2 == 0 ? "event: e" + eol(i) : std::string()) + "data: {\"t\":\"" +
                std::string(pad + i * 7 % 33, 'x') + "\"}" + eol(i) + eol(i + 1);
      }
      const std::string last =
          "data: {\"usage\":{\"output_tokens\":" + std::to_string(pad) + "}}" + eol(2) + eol(2);
      body += last;
      const Case c{"ends", Format::kSse, body, "m-3", {4, pad, 0}};
      // The scanner ends a report at its empty line's CR; the LF after it is passed over.
      const size_t lf_after = kind == "\r\n" ? 2 : 0;
      auto scanner_only = UsageMeter::scanner_only(Format::kSse);
      scanner_only.feed(body);
      const std::string how =
          " (" + std::to_string(kind.size()) + "-byte ends, pad " + std::to_string(pad) + ")";
      expect(c, scanner_only.finish(), " by the scanner alone" + how);
      for (size_t size : {1, 2, 3, 5, 8, 13, 21, 31, 32, 33, 34, 55, 64, 65, 70, 97, 160, 4096}) {
        UsageMeter m(Format::kSse);
        for (size_t at = 0; at < body.size(); at += size) {
          m.feed(std::string_view(body).substr(at, size));
        }
        EXPECT_EQ(m.bytes_passed_over(), body.size() - start.size() - last.size() + lf_after)
            << "in pieces of " << size << how;
        expect(c, m.finish(), " in pieces of " + std::to_string(size) + how);
      }
    }
  }
}

TEST(UsageMeter, FormatFromContentType) {
  EXPECT_EQ(UsageMeter::format_for("text/event-stream; charset=utf-8"), Format::kSse);
  EXPECT_EQ(UsageMeter::format_for("Application/JSON"), Format::kJson);
  EXPECT_EQ(UsageMeter::format_for("application/problem+json"), Format::kJson);
  EXPECT_FALSE(UsageMeter::format_for("text/html"));
  EXPECT_FALSE(UsageMeter::format_for(""));
}

TEST(UsageMeter, BrokenInputCountsNothingAndNextEventStillCounts) {
  UsageMeter m(Format::kSse);
  m.feed("data: {\"usage\":{\"input_tokens\":5,\"output_tokens\":\n\n");              // value cut
  m.feed("data: }}}}]]]{\"usage\":1}\n\n");                                           // not JSON
  m.feed("data: {\"usage\":{\"input_tokens\":" + std::string(5000, '1') + "}}\n\n");  // over cap
  auto none = m.finish();
  EXPECT_FALSE(none.seen);
  UsageMeter n(Format::kSse);
  n.feed("data: {\"usage\":{\"input_tokens\":5,\"output_tokens\":\n\n");
  n.feed("data: {\"usage\":{\"input_tokens\":6,\"output_tokens\":2}}\n\n");
  auto r = n.finish();
  EXPECT_TRUE(r.seen);
  EXPECT_EQ(r.tokens.input, 6U);
  EXPECT_EQ(r.tokens.output, 2U);
}

TEST(UsageMeter, DeepUsageMembersAreNotReports) {
  UsageMeter m(Format::kJson);
  m.feed(R"({"a":{"b":{"usage":{"input_tokens":9}}}})");
  EXPECT_FALSE(m.finish().seen);
  UsageMeter deep(Format::kJson);
  deep.feed(std::string(100, '[') + std::string(100, ']') + R"({"usage":{"input_tokens":1}})");
  EXPECT_FALSE(deep.finish().seen);  // past kMaxDepth the body is not read further
}

TEST(SessionBudget, PricesByExactNameThenDatedPrefix) {
  PriceTable t{{"claude-sonnet-4-5", {3, 15, 0.3}}, {"claude-sonnet-4", {1, 1, 1}}};
  ASSERT_NE(find_price(t, "claude-sonnet-4-5-20250929"), nullptr);
  EXPECT_EQ(find_price(t, "claude-sonnet-4-5-20250929")->input, 3);
  EXPECT_EQ(find_price(t, "claude-sonnet-4")->input, 1);
  EXPECT_EQ(find_price(t, "claude-sonnet-45"), nullptr);
  EXPECT_DOUBLE_EQ(cost({3, 15, 0.3}, {1'000'000, 100'000, 200'000}), 2.4 + 0.06 + 1.5);
}

UsageMeter::Reading reading(const char* model, uint64_t in, uint64_t out) {
  UsageMeter::Reading r;
  r.model = model;
  r.tokens = {in, out, 0};
  r.seen = true;
  return r;
}

TEST(SessionBudget, SpendCapRefusesModelHostsOnceReached) {
  SessionBudget b({.spend = 1.0}, {{"m", {1, 2, 0}}}, nullptr);
  EXPECT_EQ(b.admit("api.openai.com").limit, SessionLimit::kNone);
  b.record("api.openai.com", {"openai"}, reading("m", 400'000, 200'000));  // $0.80
  EXPECT_EQ(b.admit("api.openai.com").limit, SessionLimit::kNone);
  b.record("api.openai.com", {"openai"}, reading("m", 200'000, 0));  // $1.00
  const auto r = b.admit("api.openai.com");
  EXPECT_EQ(r.limit, SessionLimit::kSpend);
  EXPECT_NE(r.why.find("spend = $1.0000 reached"), std::string::npos) << r.why;
  EXPECT_EQ(b.admit("example.com").limit, SessionLimit::kNone);  // not a model host
  EXPECT_EQ(b.credentials().at("openai").tokens.input, 600'000U);
  EXPECT_EQ(b.set("spend", "2"), "");
  EXPECT_EQ(b.admit("api.openai.com").limit, SessionLimit::kNone);
  EXPECT_NE(b.set("spend", "-1"), "");
  EXPECT_NE(b.set("tokens", "1"), "");
}

TEST(SessionBudget, UnpricedModelFailsClosedUnderASpendCap) {
  SessionBudget open({}, {}, nullptr);
  open.record("llm.example", {}, reading("mystery", 10, 10));
  EXPECT_EQ(open.admit("llm.example").limit, SessionLimit::kNone);  // no cap: counted only
  EXPECT_FALSE(open.models().at("mystery").dollars);
  SessionBudget capped({.spend = 100}, {}, nullptr);
  capped.record("llm.example", {}, reading("mystery", 10, 10));
  const auto r = capped.admit("llm.example");  // the host reported usage: a model host now
  EXPECT_EQ(r.limit, SessionLimit::kSpend);
  EXPECT_NE(r.why.find("[pricing.\"mystery\"]"), std::string::npos) << r.why;
}

TEST(SessionBudget, RequestsPerHostAndEgressRefuseAtTheBoundary) {
  SessionBudget b({.egress = 1000, .requests_per_host = 2}, {}, nullptr);
  b.count_request("a.example");
  EXPECT_EQ(b.admit("a.example").limit, SessionLimit::kNone);
  b.count_request("a.example");
  EXPECT_EQ(b.admit("a.example").limit, SessionLimit::kRequestsPerHost);
  EXPECT_EQ(b.admit("b.example").limit, SessionLimit::kNone);
  b.count_egress(7, 600);
  b.flow_closed(7, 650);  // 50 bytes of TLS records not seen live
  EXPECT_EQ(b.egress(), 650U);
  EXPECT_EQ(b.admit_flow("b.example").limit, SessionLimit::kNone);
  b.flow_closed(8, 350);  // a spliced flow, counted at close
  EXPECT_EQ(b.admit_flow("b.example").limit, SessionLimit::kEgress);
  EXPECT_EQ(b.set("egress", "none"), "");
  EXPECT_EQ(b.admit_flow("b.example").limit, SessionLimit::kNone);
  EXPECT_EQ(b.refused().at(SessionLimit::kEgress), 1U);
}

// Any 60 s span admits at most the budget; a refused connection is not counted (a client
// retrying does not keep it spent); the slot of a second is reused 61 s later.
TEST(SessionBudget, ConnectionsPerMinuteIsASlidingWindow) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  SessionBudget b({.connections_per_minute = 3}, {}, nullptr);
  const std::chrono::steady_clock::time_point t0{seconds(1000) + milliseconds(900)};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(b.admit_connection("a.example", t0).limit, SessionLimit::kNone);
  }
  for (int s : {0, 1, 30, 59}) {
    const auto r = b.admit_connection("b.example", t0 + seconds(s));
    EXPECT_EQ(r.limit, SessionLimit::kConnectionsPerMinute) << s;
    EXPECT_NE(r.why.find("connections_per_minute = 3 reached"), std::string::npos) << r.why;
  }
  EXPECT_EQ(b.connections_last_minute(t0 + seconds(59)), 3U);
  // 59.9 s later the three still count; 60.1 s later (their whole second 61 s ago) they do not.
  EXPECT_EQ(b.admit_connection("a.example", t0 + milliseconds(59900)).limit,
            SessionLimit::kConnectionsPerMinute);
  EXPECT_EQ(b.admit_connection("a.example", t0 + milliseconds(60100)).limit, SessionLimit::kNone);
  EXPECT_EQ(b.connections_last_minute(t0 + seconds(61)), 1U);
  EXPECT_EQ(b.refused().at(SessionLimit::kConnectionsPerMinute), 5U);
  EXPECT_EQ(b.set("connections_per_minute", "none"), "");
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(b.admit_connection("a.example", t0 + seconds(62)).limit, SessionLimit::kNone);
  }
  EXPECT_EQ(b.set("connections_per_minute", "101"), "");
  EXPECT_EQ(b.admit_connection("a.example", t0 + seconds(62)).limit,
            SessionLimit::kConnectionsPerMinute);
  EXPECT_NE(b.set("connections_per_minute", "1.5"), "");
  const auto lines = b.summary();
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "6 connections refused over the session budget `connections_per_minute`"),
            lines.end());
}

}  // namespace
}  // namespace agentbox::proxy
