// The audit line format: versioned, one object per line, hostile bytes cannot break it.
#include "agentbox/audit/audit.hpp"

#include <gtest/gtest.h>

#include <regex>

namespace agentbox::audit {
namespace {

TEST(Audit, LineHasSchemaTimestampSessionAndFields) {
  MemorySink sink("s1");
  std::vector<std::string> hosts{"a.example", "b.example"};
  sink.emit(Event("net.connect")
                .str("host", "a.example")
                .num("port", 443)
                .boolean("allowed", true)
                .strs("hosts", hosts));
  std::regex re(
      R"(\{"v":1,"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","session":"s1","type":"net.connect","host":"a.example","port":443,"allowed":true,"hosts":\["a.example","b.example"\]\}\n)");
  EXPECT_TRUE(std::regex_match(sink.lines(), re)) << sink.lines();
  EXPECT_EQ(sink.tally().count("net.connect"), 1u);
  EXPECT_EQ(sink.tally().count("other"), 0u);
}

// Sinks that summarise read fields back: a value can never be mistaken for a key.
TEST(Audit, FieldReadsBackStringsAndNumbers) {
  std::vector<std::string> list{"name", "x"};
  Event ev("dns.query");
  ev.str("reason", R"(a","name":"fake)")
      .strs("list", list)
      .str("name", "evil\".example\x1b")
      .num("port", 443)
      .boolean("reset", true);
  EXPECT_EQ(ev.field("name"), R"(evil\".example\u001b)");
  EXPECT_EQ(ev.field("port"), "443");
  EXPECT_EQ(ev.field("reset"), "true");
  EXPECT_EQ(ev.field("reason"), R"(a\",\"name\":\"fake)");
  EXPECT_FALSE(ev.field("list"));
  EXPECT_FALSE(ev.field("missing"));
  EXPECT_FALSE(ev.field("ame"));
}

TEST(Audit, EscapesControlQuotesAndInvalidUtf8) {
  std::string out;
  json_escape(std::string("a\"b\\c\n\x01\xff\xc3\xa9\xed\xa0\x80", 13), out);
  EXPECT_EQ(out, "a\\\"b\\\\c\\n\\u0001\\ufffd\xc3\xa9\\ufffd\\ufffd\\ufffd");
}

TEST(Audit, NulByteCannotTruncate) {
  std::string out;
  json_escape(std::string("x\0y", 3), out);
  EXPECT_EQ(out, "x\\u0000y");
}

}  // namespace
}  // namespace agentbox::audit
