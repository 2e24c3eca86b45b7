// Model spend and session budgets end to end (issue 17), through the real `agentbox run` as root
// and as the unprivileged user, against the mock model API of tests/integration/data/model_api.py
// (Anthropic Messages, OpenAI Responses and Chat Completions, Gemini; streamed in 7-byte chunks
// and not): the token counts in the audit log, the exit summary and `agentbox ps --json` are
// exactly what the mock reported; `--budget-spend` refuses the next model request with 429 and
// a "budget" event (reached through each wire format's streamed shape, every request past it
// refused and none reaching the upstream), fails closed on a model without a price, and
// `agentbox budget` raises it live; `requests_per_host` and `egress` refuse at their boundary.
#include <fcntl.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

using namespace std::chrono_literals;

const std::string kRealA = "ghp_RealAnthropicKeyAA0123456789abcdefWXYZ";
const std::string kRealO = "ghp_RealOpenAIKeyBBBBB0123456789abcdefWXYZ";
const std::string kRealG = "ghp_RealGeminiKeyCCCCC0123456789abcdefWXYZ";

// One model request from the box; prints "code=N" (and "refused=<body>" when not 200).
std::string call(const std::string& host, const std::string& path, const std::string& json_body,
                 const std::string& key_header, const std::string& var) {
  return fmt::format(
      "c=$(curl -sS -o body -w '%{{http_code}}' -H \"{3}: ${4}\" -H 'content-type: "
      "application/json' -d '{2}' 'https://{0}{1}'); echo \"code=$c\"; "
      "[ \"$c\" = 200 ] || echo \"refused=$(cat body)\"; ",
      host, path, json_body, key_header, var);
}

std::string claude(bool stream, const std::string& model = "mock-claude") {
  return call("claude.model.test", "/v1/messages",
              fmt::format(R"({{"model":"{}","stream":{},"max_tokens":5}})", model, stream),
              "x-api-key", "ANTHROPIC_KEY");
}

std::string openai(const std::string& path, const std::string& model, bool stream) {
  return call("openai.model.test", path,
              fmt::format(R"({{"model":"{}","stream":{}}})", model, stream), "Authorization",
              "OPENAI_KEY");
}

std::string gemini(const std::string& method) {
  return call("gemini.model.test", "/v1beta/models/mock-gemini:" + method, R"({"contents":[]})",
              "x-goog-api-key", "GEMINI_KEY");
}

class ModelSpendTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override {
    return {"claude.model.test", "openai.model.test", "gemini.model.test"};
  }
  std::vector<std::string> secrets() const override { return {kRealA, kRealO, kRealG}; }
  std::map<std::string, std::string> env() const override {
    return {{"REAL_A", kRealA},
            {"REAL_O", kRealO},
            {"REAL_G", kRealG},
            {"XDG_RUNTIME_DIR", w_.root + "/run"}};
  }
  void prepare() override {
    const std::string run = w_.root + "/run";
    ASSERT_EQ(::mkdir(run.c_str(), 0700), 0);
    ASSERT_EQ(::chown(run.c_str(), w_.as.uid, w_.as.gid), 0);
  }
  std::string config() const override {
    return "[network]\n"
           "allow = [\"claude.model.test\", \"openai.model.test\", \"gemini.model.test\"]\n"
           "[credentials.anthropic]\nenv = \"ANTHROPIC_KEY\"\nfrom = \"env:REAL_A\"\n"
           "hosts = [\"claude.model.test\"]\ninject = \"header:x-api-key\"\n"
           "[credentials.openai]\nenv = \"OPENAI_KEY\"\nfrom = \"env:REAL_O\"\n"
           "hosts = [\"openai.model.test\"]\ninject = \"header:Authorization\"\n"
           "[credentials.gemini]\nenv = \"GEMINI_KEY\"\nfrom = \"env:REAL_G\"\n"
           "hosts = [\"gemini.model.test\"]\ninject = \"header:x-goog-api-key\"\n"
           "[pricing.\"mock-claude\"]\ninput = 3.0\noutput = 15.0\ncached = 0.3\n"
           "[pricing.\"mock-gpt\"]\ninput = 1.25\noutput = 10.0\ncached = 0.125\n"
           "[pricing.\"mock-chat\"]\ninput = 0.15\noutput = 0.6\ncached = 0.075\n"
           "[pricing.\"mock-gemini\"]\ninput = 0.3\noutput = 2.5\ncached = 0.03\n";
  }
  Output agentbox(const Args& args) {
    RunOptions o;
    o.env = env();
    o.timeout_ms = 20000;
    return run(w_, args, o);
  }
  // `agentbox run FLAGS -- sh -c SCRIPT` in the background, its output to box.out.
  pid_t start_box(const std::string& script, const Args& flags) {
    Args a = {"run", "-q", "--upstream-ca", up_ + "/ca.pem"};
    a.insert(a.end(), flags.begin(), flags.end());
    for (const auto& h : hosts()) {
      a.insert(a.end(), {"--connect-to", fmt::format("{}:443:127.0.0.1:{}", h, port_)});
    }
    a.insert(a.end(), {"--", "sh", "-c", script});
    RunOptions o;
    o.env = env();
    o.env["XDG_CONFIG_HOME"] = cfg_;
    out_fd_ =
        ::open((w_.root + "/box.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    o.stdout_fd = out_fd_;
    o.stderr_fd = out_fd_;
    int unused_out = -1;
    int unused_err = -1;  // spawn writes them; -1 when not captured
    return out_fd_ < 0 ? -1 : spawn(w_, a, o, &unused_out, &unused_err);
  }
  // The running session as `ps --json` shows it once `ready` holds (null after 30 s).
  nlohmann::json session_when(const std::function<bool(const nlohmann::json&)>& ready) {
    for (int i = 0; i < 600; ++i) {
      auto all = nlohmann::json::parse(agentbox({"ps", "--json"}).out, nullptr, false);
      if (all.is_array() && !all.empty() && ready(all[0])) {
        return all[0];
      }
      std::this_thread::sleep_for(50ms);
    }
    return nullptr;
  }
  // Lets the box go on (the file `go`), waits for it; its exit status and output.
  std::pair<int, std::string> finish_box(pid_t pid) {
    write_file(w_.ws + "/go", "");
    int st = wait_for(pid, 60000);
    if (st == -1) {
      ::kill(pid, SIGKILL);
      wait_for(pid, 5000);
    }
    ::close(out_fd_);
    return {st, slurp(w_.root + "/box.out")};
  }
  int out_fd_ = -1;
};

// Each wire format, streamed and not: the audit log has one model.usage event per response with
// exactly the mock's counts, and the summary sums them per model with the spend.
TEST_P(ModelSpendTest, TokenCountsMatchWhatEachWireFormatReported) {
  const std::string script =
      claude(false) + claude(true) + "tail -c 80 body | grep -q message_stop && echo sse-intact; " +
      openai("/v1/responses", "mock-gpt", false) + openai("/v1/responses", "mock-gpt", true) +
      openai("/v1/chat/completions", "mock-chat", false) +
      openai("/v1/chat/completions", "mock-chat", true) + gemini("generateContent") +
      gemini("streamGenerateContent") + gemini("streamGenerateContent?alt=sse");
  Output r = box(script, 120000, {}, /*quiet=*/false);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 9u) << r.out;
  EXPECT_NE(r.out.find("sse-intact"), std::string::npos) << r.out;
  const std::string log = audit();
  // Anthropic: input = 1000 + cache_read 200 + cache_creation 50; output the last report.
  EXPECT_EQ(count_of(log, R"("model":"mock-claude","input_tokens":1250,"output_tokens":300,)"
                          R"("cached_tokens":200)"),
            2u)
      << log;
  EXPECT_EQ(count_of(log, R"("model":"mock-gpt","input_tokens":800,"output_tokens":250,)"
                          R"("cached_tokens":100)"),
            2u)
      << log;
  EXPECT_EQ(count_of(log, R"("model":"mock-chat","input_tokens":600,"output_tokens":120,)"
                          R"("cached_tokens":64)"),
            2u)
      << log;
  // Gemini: output = candidates 90 + thoughts 10, the last cumulative chunk of each stream.
  EXPECT_EQ(count_of(log, R"("model":"mock-gemini","input_tokens":400,"output_tokens":100,)"
                          R"("cached_tokens":40)"),
            3u)
      << log;
  // (1050 * 3 + 200 * 0.3 + 300 * 15) / 1e6 = $0.00771 a response.
  EXPECT_NE(r.err.find("model mock-claude: 2 responses, 2500 input tokens (400 cached), 600 "
                       "output tokens, spend $0.0154"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("model mock-gemini: 3 responses, 1200 input tokens (120 cached), 300 "
                       "output tokens"),
            std::string::npos)
      << r.err;
}

TEST_P(ModelSpendTest, TheSpendCapRefusesTheNextModelRequestWith429) {
  // $0.00771 a response: two pass a $0.01 cap, the third is refused before it leaves.
  Output r = box(claude(false) + claude(true) + claude(false), 90000, {"--budget-spend", "0.01"},
                 /*quiet=*/false);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 2u) << r.out;
  EXPECT_NE(r.out.find("code=429\nrefused=agentbox: request blocked: session budget spend = "
                       "$0.0100 reached ($0.0154 spent on model usage)\n"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(count_of(seen(), "POST /v1/messages "), 2u) << seen();
  EXPECT_NE(audit().find(R"("type":"budget","budget":"spend","host":"claude.model.test")"),
            std::string::npos)
      << audit();
  EXPECT_NE(r.err.find("1 request refused over the session budget `spend`"), std::string::npos)
      << r.err;
}

// `n` requests from the box's client, one after the other whatever each gets back, so a request
// after the cap is reached is tried too (and must be refused, as the first was).
std::string repeat(int n, const std::string& body) {
  return fmt::format("for i in $(seq {}); do {}done; ", n, body);
}

// The cap reached through a wire format other than Anthropic's: of `sent` streamed requests,
// `passed` reach the upstream (its own log is the oracle: `upstream_line` counted) and get 200;
// every later one gets the 429 naming the budget, and is audited and summed.
void expect_capped(const Output& r, const std::string& seen_log, const std::string& audit_log,
                   int passed, int sent, const std::string& upstream_line,
                   const std::string& refusal, const std::string& host) {
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), static_cast<size_t>(passed)) << r.out;
  EXPECT_EQ(count_of(r.out, "code=429\nrefused=agentbox: request blocked: " + refusal),
            static_cast<size_t>(sent - passed))
      << r.out;
  EXPECT_EQ(count_of(seen_log, upstream_line), static_cast<size_t>(passed)) << seen_log;
  EXPECT_EQ(
      count_of(audit_log, fmt::format(R"("type":"budget","budget":"spend","host":"{}")", host)),
      static_cast<size_t>(sent - passed))
      << audit_log;
  EXPECT_NE(
      r.err.find(fmt::format("{} requests refused over the session budget `spend`", sent - passed)),
      std::string::npos)
      << r.err;
}

// Chat Completions streamed (usage in the last chunk, `"usage": null` before): $0.0001572 a
// response (536 * 0.15 + 64 * 0.075 + 120 * 0.6 per million); four pass a $0.0005 cap.
TEST_P(ModelSpendTest, TheSpendCapRefusesPastItThroughStreamedChatCompletions) {
  Output r = box(repeat(7, openai("/v1/chat/completions", "mock-chat", true)), 120000,
                 {"--budget-spend", "0.0005"}, /*quiet=*/false);
  expect_capped(r, seen(), audit(), 4, 7, "POST /v1/chat/completions ",
                "session budget spend = $0.0005 reached ($0.0006 spent on model usage)\n",
                "openai.model.test");
}

// The Responses API streamed (usage in response.completed): $0.0033875 a response; three pass
// a $0.01 cap.
TEST_P(ModelSpendTest, TheSpendCapRefusesPastItThroughStreamedResponses) {
  Output r = box(repeat(6, openai("/v1/responses", "mock-gpt", true)), 120000,
                 {"--budget-spend", "0.01"}, /*quiet=*/false);
  expect_capped(r, seen(), audit(), 3, 6, "POST /v1/responses ",
                "session budget spend = $0.0100 reached ($0.0102 spent on model usage)\n",
                "openai.model.test");
}

// Gemini streamed, as SSE (alt=sse) and as one JSON array, alternately (usageMetadata,
// cumulative per chunk): $0.0003592 a response; three pass a $0.001 cap.
TEST_P(ModelSpendTest, TheSpendCapRefusesPastItThroughStreamedGemini) {
  const std::string one = "if [ $((i % 2)) = 1 ]; then " + gemini("streamGenerateContent?alt=sse") +
                          "else " + gemini("streamGenerateContent") + "fi; ";
  Output r = box(repeat(6, one), 120000, {"--budget-spend", "0.001"}, /*quiet=*/false);
  expect_capped(r, seen(), audit(), 3, 6, "POST /v1beta/models/mock-gemini:streamGenerateContent",
                "session budget spend = $0.0010 reached ($0.0011 spent on model usage)\n",
                "gemini.model.test");
  EXPECT_NE(r.err.find("model mock-gemini: 3 responses, 1200 input tokens (120 cached), 300 "
                       "output tokens"),
            std::string::npos)
      << r.err;
}

TEST_P(ModelSpendTest, AModelWithoutAPriceFailsClosedUnderASpendCap) {
  Output r = box(claude(false, "mock-unpriced") + claude(false, "mock-unpriced"), 90000,
                 {"--budget-spend", "5"}, /*quiet=*/false);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 1u) << r.out;
  EXPECT_NE(r.out.find("refused=agentbox: request blocked: session budget spend = $5.0000: the "
                       "spend of model mock-unpriced is unknown (no price; the user can set "
                       "[pricing.\"mock-unpriced\"])"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("model mock-unpriced: 1 response, 1250 input tokens (200 cached), 300 "
                       "output tokens, spend unknown (no price)"),
            std::string::npos)
      << r.err;
}

// `ps --json` shows the usage of a running session; `agentbox budget` raises the spent cap live
// (audited), and the next model request passes.
TEST_P(ModelSpendTest, PsShowsUsageAndTheBudgetVerbChangesItLive) {
  const std::string script = claude(false) +
                             "for i in $(seq 600); do [ -e go ] && break; sleep 0.1; done; " +
                             claude(false);
  const pid_t pid = start_box(script, {"--budget-spend", "0.005"});
  ASSERT_GT(pid, 0);
  const nlohmann::json session = session_when(
      [](const nlohmann::json& s) { return s["budget"]["models"].contains("mock-claude"); });
  ASSERT_FALSE(session.is_null()) << "ps never showed the usage";
  const auto& b = session["budget"];
  EXPECT_EQ(b["models"]["mock-claude"]["input_tokens"], 1250);
  EXPECT_EQ(b["models"]["mock-claude"]["output_tokens"], 300);
  EXPECT_EQ(b["models"]["mock-claude"]["cached_tokens"], 200);
  EXPECT_NEAR(b["models"]["mock-claude"]["cost"].get<double>(), 0.00771, 1e-9);
  EXPECT_EQ(b["credentials"]["anthropic"]["input_tokens"], 1250);
  EXPECT_NEAR(b["limits"]["spend"].get<double>(), 0.005, 1e-12);
  const auto id = session["id"].get<std::string>();
  Output bad = agentbox({"budget", id, "spend=lots"});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("not a non-negative number"), std::string::npos) << bad.err;
  Output set = agentbox({"budget", id, "spend=1"});
  EXPECT_EQ(set.status, 0) << set.err;
  // The text forms (`agentbox budget`, `agentbox ps`) show the tokens and spend per model too.
  const std::string model_line =
      "model \"mock-claude\": 1250 input tokens (200 cached), 300 output tokens, $0.0077";
  EXPECT_NE(set.out.find(model_line), std::string::npos) << set.out;
  Output ps = agentbox({"ps"});
  EXPECT_EQ(ps.status, 0) << ps.err;
  EXPECT_NE(ps.out.find(model_line), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("spend 1.0 ($0.0077 spent)"), std::string::npos) << ps.out;
  const auto [st, out] = finish_box(pid);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(count_of(out, "code=200\n"), 2u) << out;  // 429 without the raise
  EXPECT_NE(audit().find(R"("type":"control.budget")"), std::string::npos) << audit();
  EXPECT_NE(audit().find(R"("budget":"spend","value":"1")"), std::string::npos) << audit();
}

TEST_P(ModelSpendTest, RequestsPerHostAndEgressRefuseAtTheBoundary) {
  const std::string get =
      "c=$(curl -sS -o body -w '%{http_code}' https://claude.model.test/echo/n); echo "
      "\"code=$c\"; ";
  Output r = box(get + get + get, 60000, {"--budget-requests-per-host", "2"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 2u) << r.out;
  EXPECT_EQ(count_of(r.out, "code=429\n"), 1u) << r.out;
  EXPECT_EQ(count_of(seen(), "GET /echo/n "), 2u) << seen();
  EXPECT_NE(audit().find(R"("type":"budget","budget":"requests_per_host")"), std::string::npos);

  const std::string post =
      "c=$(curl -sS -o body -w '%{http_code}' --data-binary @big "
      "https://openai.model.test/upload); echo \"code=$c\"; [ \"$c\" = 200 ] || cat body; ";
  Output e =
      box("head -c 30000 /dev/zero > big; " + post + post, 60000, {"--budget-egress", "20K"});
  ASSERT_EQ(e.status, 0) << e.out << e.err;
  EXPECT_EQ(count_of(e.out, "code=200\n"), 1u) << e.out;
  EXPECT_NE(e.out.find("code=429\nagentbox: request blocked: session budget egress = 20480 "
                       "bytes reached"),
            std::string::npos)
      << e.out;
  EXPECT_EQ(count_of(seen(), "POST /upload "), 1u) << seen();
}

// connections_per_minute: five new connections (curl, one each) under a budget of three: three
// reach the upstream (its own count of accepted connections is the oracle), two are answered
// 429 by the proxy without an upstream connection; a "budget" audit line each and a summary line.
TEST_P(ModelSpendTest, ConnectionsPerMinuteRefusesPastTheBudget) {
  const std::string get =
      "c=$(curl -sS -o body -w '%{http_code}' https://claude.model.test/echo/n); echo "
      "\"code=$c\"; [ \"$c\" = 200 ] || echo \"refused=$(cat body)\"; ";
  Output r = box(get + get + get + get + get, 60000, {"--budget-connections-per-minute", "3"},
                 /*quiet=*/false);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(count_of(r.out, "code=200\n"), 3u) << r.out;
  EXPECT_EQ(count_of(r.out,
                     "code=429\nrefused=agentbox: request blocked: session budget "
                     "connections_per_minute = 3 reached (3 new connections in the last "
                     "minute)"),
            2u)
      << r.out;
  EXPECT_EQ(count_of(slurp(up_ + "/accepted.log"), "accepted\n"), 3u);
  EXPECT_EQ(count_of(seen(), "GET /echo/n "), 3u) << seen();
  EXPECT_EQ(count_of(audit(), R"("type":"budget","budget":"connections_per_minute")"), 2u)
      << audit();
  EXPECT_NE(r.err.find("2 connections refused over the session budget `connections_per_minute`"),
            std::string::npos)
      << r.err;
}

// The budget is visible in `ps --json` (limit, connections in the last minute) and raised live
// with `agentbox budget`: the connection after the raise reaches the upstream.
TEST_P(ModelSpendTest, ConnectionsPerMinuteShowsInPsAndChangesLive) {
  const std::string get =
      "c=$(curl -sS -o body -w '%{http_code}' https://claude.model.test/echo/n); echo "
      "\"code=$c\"; ";
  const std::string script =
      get + get + "for i in $(seq 600); do [ -e go ] && break; sleep 0.1; done; " + get;
  const pid_t pid = start_box(script, {"--budget-connections-per-minute", "1"});
  ASSERT_GT(pid, 0);
  const nlohmann::json session = session_when([](const nlohmann::json& s) {
    return s["budget"]["refused"].contains("connections_per_minute");
  });
  ASSERT_FALSE(session.is_null()) << "ps never showed the refusal";
  EXPECT_EQ(session["budget"]["limits"]["connections_per_minute"], 1);
  EXPECT_EQ(session["budget"]["connections_last_minute"], 1);
  Output set = agentbox({"budget", session["id"].get<std::string>(), "connections_per_minute=2"});
  EXPECT_EQ(set.status, 0) << set.err;
  EXPECT_NE(set.out.find("connections_per_minute 2 (1 in the last minute)"), std::string::npos)
      << set.out;
  const auto [st, out] = finish_box(pid);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(count_of(out, "code=200\n"), 2u) << out;
  EXPECT_EQ(count_of(out, "code=429\n"), 1u) << out;
  EXPECT_EQ(count_of(slurp(up_ + "/accepted.log"), "accepted\n"), 2u);
  EXPECT_NE(audit().find(R"("budget":"connections_per_minute","value":"2")"), std::string::npos)
      << audit();
}

// The credential's entry of a `ps --json` session (null when absent).
nlohmann::json credential_of(const nlohmann::json& session, const std::string& name) {
  for (const auto& c : session.value("credentials", nlohmann::json::array())) {
    if (c.value("name", "") == name) {
      return c;
    }
  }
  return nullptr;
}

// Each credential's use against its budgets shows in `ps` (text and --json); `agentbox budget
// --credential` changes one live, audited with who changed it, and a limit set below what the
// credential already used refuses its next request with 429 (none reaches the upstream).
TEST_P(ModelSpendTest, CredentialBudgetsShowInPsAndChangeLive) {
  const std::string script = claude(false) + claude(false) +
                             "for i in $(seq 600); do [ -e go ] && break; sleep 0.1; done; " +
                             claude(false);
  const pid_t pid = start_box(script, {});
  ASSERT_GT(pid, 0);
  const nlohmann::json session = session_when([](const nlohmann::json& s) {
    const auto c = credential_of(s, "anthropic");
    return c.is_object() && c.value("requests", 0) == 2;
  });
  ASSERT_FALSE(session.is_null()) << "ps never showed the credential's two requests";
  const auto before = credential_of(session, "anthropic");
  EXPECT_GT(before["bytes"].get<uint64_t>(), 200u) << before;
  EXPECT_EQ(before["refused"], 0) << before;
  EXPECT_TRUE(before["limits"]["max_requests"].is_null()) << before;
  EXPECT_TRUE(before["limits"]["methods"].is_null()) << before;
  EXPECT_TRUE(before["limits"]["expires_in_s"].is_null()) << before;
  const auto id = session["id"].get<std::string>();

  Output bad = agentbox({"budget", id, "--credential", "anthropic", "max_requests=lots"});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("not a number of requests"), std::string::npos) << bad.err;
  Output unknown = agentbox({"budget", id, "--credential", "nope", "max_requests=1"});
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.err.find("no credential `nope`"), std::string::npos) << unknown.err;
  Output set = agentbox({"budget", id, "--credential", "anthropic", "max_requests=1"});
  EXPECT_EQ(set.status, 0) << set.err;
  EXPECT_NE(set.out.find("credential \"anthropic\": requests 2/1, bytes "), std::string::npos)
      << set.out;
  Output exp = agentbox({"budget", id, "--credential", "anthropic", "expires=2h", "--json"});
  EXPECT_EQ(exp.status, 0) << exp.err;
  const auto answer = nlohmann::json::parse(exp.out, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << exp.out;
  EXPECT_GT(answer["credential"]["limits"]["expires_in_s"].get<int64_t>(), 7100) << exp.out;
  Output ps = agentbox({"ps"});
  EXPECT_EQ(ps.status, 0) << ps.err;
  EXPECT_NE(ps.out.find("  credential \"anthropic\": requests 2/1, bytes "), std::string::npos)
      << ps.out;
  EXPECT_NE(ps.out.find("/none, methods any, expires in "), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find("  credential \"openai\": requests 0/none, bytes 0/none, methods any, "
                        "expires never, 0 refused"),
            std::string::npos)
      << ps.out;

  const auto [st, out] = finish_box(pid);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(count_of(out, "code=200\n"), 2u) << out;
  EXPECT_NE(out.find("code=429\nrefused=agentbox: request blocked: credential anthropic reached "
                     "its budget max_requests = 1\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(count_of(seen(), "POST /v1/messages "), 2u) << seen();
  const std::string log = audit();
  EXPECT_NE(log.find(fmt::format(R"("type":"control.budget","by_uid":{},)", w_.as.uid)),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("credential":"anthropic","budget":"max_requests","value":"1")"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("credential":"anthropic","budget":"expires","value":"2h")"),
            std::string::npos)
      << log;
}

// WebSocket usage end to end: each `response.completed` message is metered (the audit log, the
// summary), and once the spend cap is reached the next message ends the connection (a WebSocket
// has no status to answer with) and the next model request over HTTP is refused with 429.
TEST_P(ModelSpendTest, WebSocketUsageIsCountedAndTheSpendCapRefusesTheNext) {
  // A real WebSocket client in the box: python, RFC 6455 by hand (the test image has no
  // WebSocket library), speaking the Responses API's WebSocket mode (hostile_client.py model-ws).
  ASSERT_EQ(sh(fmt::format("cp {}/hostile_client.py {}/", AGENTBOX_TEST_DATA, w_.ws)), 0);
  chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  // $0.0033875 a response: three pass a $0.01 cap, the fourth message is refused.
  Output r =
      box("python3 hostile_client.py model-ws 6; " + openai("/v1/responses", "mock-gpt", false),
          90000, {"--budget-spend", "0.01"}, /*quiet=*/false);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("ws HTTP/1.1 101 Switching Protocols")) << r.out;
  EXPECT_EQ(count_of(r.out, "ws-usage mock-gpt 800\n"), 3u) << r.out;
  EXPECT_TRUE(r.has_line("ws-closed after 3")) << r.out;
  EXPECT_NE(r.out.find("code=429\nrefused=agentbox: request blocked: session budget spend = "
                       "$0.0100 reached ($0.0102 spent on model usage)"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(count_of(seen(), "WS {\"type\": \"response.create\""), 3u) << seen();
  EXPECT_EQ(count_of(seen(), "POST /v1/responses "), 0u) << seen();
  const std::string log = audit();
  EXPECT_EQ(count_of(log, R"("model":"mock-gpt","input_tokens":800,"output_tokens":250,)"
                          R"("cached_tokens":100)"),
            3u)
      << log;
  EXPECT_NE(r.err.find("model mock-gpt: 3 responses, 2400 input tokens (300 cached), 750 output "
                       "tokens, spend $0.0102"),
            std::string::npos)
      << r.err;
}

INSTANTIATE_TEST_SUITE_P(As, ModelSpendTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
