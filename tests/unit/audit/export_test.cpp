// Telemetry export: the OTLP logs JSON shape, the endpoint grammar, the journal's native
// datagrams, the exporter's bounded queue, and the per-host/credential summary of a log.
#include "agentbox/audit/export.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agentbox/audit/audit.hpp"
#include "agentbox/audit/summary.hpp"

namespace agentbox::audit {
namespace {

using nlohmann::json;

std::string line_of(const Event& e) {
  return render_line(e, "sess-1");
}

// The value of attribute `key` in an OTLP attribute list (null when absent).
json attr(const json& list, const std::string& key) {
  for (const auto& kv : list) {
    if (kv.at("key") == key) {
      return kv.at("value");
    }
  }
  return nullptr;
}

TEST(Otlp, PayloadHasTheLogsShapeAndSemanticConventionNames) {
  std::vector<std::string> creds = {"github"};
  std::vector<std::string> lines = {
      line_of(Event("http.request")
                  .num("id", 7)
                  .str("host", "api.example.test")
                  .str("scheme", "https")
                  .str("method", "GET")
                  .str("path", "/x")
                  .num("status", 200)
                  .strs("credentials", creds)
                  .str("decision", "allowed")),
      line_of(Event("net.deny").str("name", "evil.test").num("port", 443)),
      line_of(Event("model.usage")
                  .str("model", "claude-x")
                  .num("input_tokens", 10)
                  .num("output_tokens", 5)
                  .num("cached_tokens", 2)),
      line_of(Event("dns.query").str("name", "x.test").str("result", "denied")), "not json\n"};
  json p = json::parse(otlp_payload(lines, {{"service.name", "agentbox"}, {"host.name", "h"}}));
  ASSERT_EQ(p.at("resourceLogs").size(), 1u);
  const json& rl = p["resourceLogs"][0];
  EXPECT_EQ(attr(rl.at("resource").at("attributes"), "service.name"),
            json({{"stringValue", "agentbox"}}));
  const json& sl = rl.at("scopeLogs").at(0);
  EXPECT_EQ(sl.at("scope").at("name"), "agentbox.audit");
  const json& recs = sl.at("logRecords");
  ASSERT_EQ(recs.size(), 5u);
  const json& r0 = recs[0];
  ASSERT_TRUE(r0.at("timeUnixNano").is_string());  // proto3 JSON: 64-bit integers as strings
  EXPECT_GT(std::stoll(r0["timeUnixNano"].get<std::string>()), 1700000000000000000LL);
  EXPECT_EQ(r0.at("severityNumber"), 9);
  EXPECT_EQ(r0.at("body").at("stringValue"), lines[0].substr(0, lines[0].size() - 1));
  const json& a0 = r0.at("attributes");
  EXPECT_EQ(attr(a0, "event.name"), json({{"stringValue", "agentbox.http.request"}}));
  EXPECT_EQ(attr(a0, "server.address"), json({{"stringValue", "api.example.test"}}));
  EXPECT_EQ(attr(a0, "http.request.method"), json({{"stringValue", "GET"}}));
  EXPECT_EQ(attr(a0, "url.path"), json({{"stringValue", "/x"}}));
  EXPECT_EQ(attr(a0, "http.response.status_code"), json({{"intValue", "200"}}));
  EXPECT_EQ(attr(a0, "agentbox.id"), json({{"intValue", "7"}}));
  EXPECT_EQ(attr(a0, "agentbox.credentials"),
            json({{"arrayValue", {{"values", {{{"stringValue", "github"}}}}}}}));
  EXPECT_TRUE(attr(a0, "agentbox.session").is_null());  // a resource attribute instead
  EXPECT_EQ(recs[1].at("severityText"), "WARN");
  EXPECT_EQ(attr(recs[1]["attributes"], "server.port"), json({{"intValue", "443"}}));
  EXPECT_EQ(attr(recs[2]["attributes"], "gen_ai.usage.input_tokens"), json({{"intValue", "10"}}));
  EXPECT_EQ(attr(recs[2]["attributes"], "gen_ai.request.model"),
            json({{"stringValue", "claude-x"}}));
  EXPECT_EQ(attr(recs[3]["attributes"], "dns.question.name"), json({{"stringValue", "x.test"}}));
  EXPECT_EQ(recs[3].at("severityNumber"), 13);  // a denied name
  EXPECT_EQ(recs[4], json({{"body", {{"stringValue", "not json"}}}}));
}

TEST(Otlp, EndpointGrammar) {
  auto e = parse_endpoint("http://127.0.0.1:4318/v1/logs");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 4318);
  EXPECT_EQ(e->path, "/v1/logs");
  auto v6 = parse_endpoint("http://[::1]:9/x");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 9);
  auto bare = parse_endpoint("http://collector");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->port, 4318);
  EXPECT_EQ(bare->path, "/v1/logs");
  EXPECT_FALSE(e->tls);
  auto tls = parse_endpoint("https://collector.example:443/otlp/v1/logs");
  ASSERT_TRUE(tls);
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(tls->host, "collector.example");
  EXPECT_EQ(tls->port, 443);
  EXPECT_EQ(tls->path, "/otlp/v1/logs");
  auto tls_bare = parse_endpoint("https://[::1]");
  ASSERT_TRUE(tls_bare);
  EXPECT_EQ(tls_bare->host, "::1");
  EXPECT_EQ(tls_bare->port, 4318);
  for (const char* bad :
       {"ftp://c/v1/logs", "HTTPS://c/", "https:/c/", "c:4318", "http://:1/x", "http://c:0/",
        "http://c:70000/", "http://c:12a/", "http://a b/", "http://u@c/"}) {
    EXPECT_FALSE(parse_endpoint(bad)) << bad;
  }
}

TEST(Otlp, QueueIsBoundedInBytesAndDropsTheOldest) {
  OtlpOptions o{.endpoint = {.host = "127.0.0.1", .port = 9, .path = "/"}, .max_queue_bytes = 1000};
  OtlpExporter x(o);  // never started: nothing leaves the queue
  std::string line(100, 'x');
  for (int i = 0; i < 50; ++i) {
    x.push(line);
  }
  ExportStats s = x.stats();
  EXPECT_EQ(s.queued, 50u);
  EXPECT_EQ(s.dropped, 40u);  // 10 lines of 100 bytes fit
  s = x.stop(std::chrono::milliseconds(0));
  EXPECT_EQ(s.dropped, 50u);  // what was left at stop is counted too
  EXPECT_EQ(s.sent, 0u);
}

// A CA file that cannot be read, or holds no certificate, is refused when the exporter is made
// (at the session's start, with the key's place), not discovered as drops later.
TEST(Otlp, TlsExporterNeedsAReadableCaFile) {
  OtlpOptions o{.endpoint = {.tls = true, .host = "127.0.0.1", .port = 9, .path = "/"}};
  EXPECT_TRUE(OtlpExporter::make(o));  // the system trust store
  o.ca_file = "/nonexistent/ca.pem";
  auto missing = OtlpExporter::make(o);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("/nonexistent/ca.pem"), std::string::npos)
      << missing.error().message();
  o.ca_file = "/dev/null";
  auto empty = OtlpExporter::make(o);
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message().find("load CA certificates from `/dev/null`"),
            std::string::npos)
      << empty.error().message();
}

// Native protocol: FIELD=value lines; a value with a newline as FIELD\n<le64 size><value>\n.
TEST(Journald, DatagramFields) {
  std::string line = line_of(Event("net.deny").str("name", "evil.test"));
  std::string d = journald_datagram(line, {{"AGENTBOX_LABEL_CI", "a\nb"}});
  EXPECT_NE(d.find("MESSAGE=" + line), std::string::npos) << d;  // the line's own newline ends it
  EXPECT_NE(d.find("\nPRIORITY=4\n"), std::string::npos);
  EXPECT_NE(d.find("\nSYSLOG_IDENTIFIER=agentbox\n"), std::string::npos);
  EXPECT_NE(d.find("\nAGENTBOX_SESSION=sess-1\n"), std::string::npos);
  EXPECT_NE(d.find("\nAGENTBOX_EVENT=net.deny\n"), std::string::npos);
  std::string binary =
      std::string("AGENTBOX_LABEL_CI\n") + std::string("\x03\0\0\0\0\0\0\0", 8) + "a\nb\n";
  EXPECT_TRUE(d.ends_with(binary));
  std::string info = journald_datagram(line_of(Event("net.connect")), {});
  EXPECT_NE(info.find("\nPRIORITY=6\n"), std::string::npos);
}

TEST(Summary, CountsPerHostCredentialAndModel) {
  std::vector<std::string> cred = {"gh"};
  LogSummary s;
  s.feed(line_of(Event("net.connect").str("name", "api.test").num("port", 443)));
  s.feed(line_of(Event("http.request")
                     .str("host", "api.test")
                     .num("bytes_up", 10)
                     .num("bytes_down", 20)
                     .strs("credentials", cred)
                     .str("decision", "allowed")));
  s.feed(line_of(Event("http.request")
                     .str("host", "api.test")
                     .num("bytes_up", 1)
                     .num("bytes_down", 2)
                     .strs("credentials", cred)
                     .str("decision", "denied")));
  s.feed(line_of(
      Event("net.close").str("name", "api.test").num("bytes_up", 300).num("bytes_down", 400)));
  s.feed(
      line_of(Event("dns.query").str("name", "no.test").str("qtype", "A").str("result", "denied")));
  s.feed(line_of(
      Event("dns.query").str("name", "no.test").str("qtype", "AAAA").str("result", "denied")));
  s.feed(line_of(Event("credential.blocked").str("credential", "gh").str("host", "x.test")));
  s.feed(line_of(Event("model.usage")
                     .str("host", "api.test")
                     .str("model", "m1")
                     .num("input_tokens", 100)
                     .num("output_tokens", 7)
                     .str("cost", "0.012500")
                     .strs("credentials", std::vector<std::string>{"gh"})));
  s.feed("garbage");
  std::vector<std::string> want = {
      "host \"api.test\": 1 connections, 2 requests, 300 bytes up, 400 bytes down, 1 denials, "
      "tokens 100 in, 7 out, 0 cached, $0.0125",
      "host \"no.test\": 0 connections, 0 requests, 0 bytes up, 0 bytes down, 1 denials",
      "host \"x.test\": 0 connections, 0 requests, 0 bytes up, 0 bytes down, 1 denials",
      "credential \"gh\": 2 requests, 11 bytes up, 22 bytes down, 2 denials, tokens 100 in, 7 "
      "out, 0 cached, $0.0125",
      "model \"m1\": 1 requests, 0 bytes up, 0 bytes down, 0 denials, tokens 100 in, 7 out, 0 "
      "cached, $0.0125"};
  EXPECT_EQ(s.render(), want);
}

}  // namespace
}  // namespace agentbox::audit
