// Telemetry and attribution end to end (issue 17, items 4 and 5), as root and as the user: the
// audit lines reach an OTLP/HTTP receiver of the test (Python, loopback) in the OTLP logs JSON
// shape and reach a journal socket the test binds, with no secret or placeholder in any payload;
// a slow or dead collector costs counted drops, never the box's network; --label is validated,
// recorded and shown by `agentbox ps`; `log --summary` and the exit summary agree on the numbers
// of a known session; `log --head` checks the chain. Over https:// (a TLS receiver with a CA of the
// test's): the payload arrives with a header read from a file; a wrong CA, a wrong name and a
// handshake that never finishes each cost counted drops with one clear line, never the box.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kReal = "ghp_RealTelemetryTokenA0123456789abcdefWXYZ";
const std::string kAuth = "Bearer otlp-collector-token-7f3a9c0e5b";
const std::string kData = AGENTBOX_TEST_DATA;

enum class Collector { kOk, kSlow, kDead, kTlsOk, kTlsWrongCa, kTlsWrongName, kTlsStall };

bool is_tls(Collector c) {
  switch (c) {
    case Collector::kOk:
    case Collector::kSlow:
    case Collector::kDead:
      return false;
    case Collector::kTlsOk:
    case Collector::kTlsWrongCa:
    case Collector::kTlsWrongName:
    case Collector::kTlsStall:
      return true;
  }
  return false;
}

// The collector's own CA (cca.pem) and two certificates it signed: ip.pem for IP:127.0.0.1 and
// name.pem for another name only (DNS:collector.other.test).
bool make_collector_certs(const std::string& dir) {
  auto leaf = [&](const std::string& name, const std::string& san) {
    return fmt::format(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {0}.key "
        "-out {0}.csr -subj /CN=collector && echo 'subjectAltName={1}' > {0}.cnf && "
        "openssl x509 -req -in {0}.csr -CA cca.pem -CAkey cca.key -CAcreateserial -out {0}.pem "
        "-days 2 -extfile {0}.cnf",
        name, san);
  };
  return sh(fmt::format("(cd {} && openssl req -x509 -newkey ec -pkeyopt "
                        "ec_paramgen_curve:P-256 -nodes -keyout cca.key -out cca.pem -days 2 "
                        "-subj '/CN=collector test CA' && {} && {} && chmod 644 cca.pem) "
                        ">/dev/null 2>&1",
                        dir, leaf("ip", "IP:127.0.0.1"),
                        leaf("name", "DNS:collector.other.test"))) == 0;
}

class TelemetryTest : public UpstreamFixture {
 protected:
  virtual Collector collector() const { return Collector::kOk; }
  std::vector<std::string> hosts() const override { return {"api.example.test"}; }
  std::vector<std::string> secrets() const override { return {kReal, kAuth}; }
  std::map<std::string, std::string> env() const override {
    return {{"REAL_TOKEN", kReal}, {"AGENTBOX_JOURNAL_SOCKET", journal_path_}};
  }
  void prepare() override {
    received_ = w_.root + "/received.jsonl";
    journal_path_ = w_.root + "/journal.sock";
    bind_journal();
    if (collector() == Collector::kDead) {
      port_otlp_ = free_port();  // nothing listens there
      return;
    }
    std::string cert = "-";
    if (is_tls(collector())) {
      ASSERT_TRUE(make_collector_certs(w_.root)) << "openssl could not make the test certificates";
      cert = w_.root + (collector() == Collector::kTlsWrongName ? "/name" : "/ip");
      write_file(w_.root + "/otlp-auth", kAuth + "\n");
      ASSERT_EQ(::chown((w_.root + "/otlp-auth").c_str(), w_.as.uid, w_.as.gid), 0);
      ::chmod((w_.root + "/otlp-auth").c_str(), 0600);
    }
    std::string portfile = w_.root + "/otlp.port";
    receiver_ = ::fork();
    if (receiver_ == 0) {
      const char* mode = collector() == Collector::kSlow       ? "slow"
                         : collector() == Collector::kTlsStall ? "stall"
                                                               : "ok";
      std::string script = kData + "/otlp_receiver.py";
      std::string pem = cert == "-" ? cert : cert + ".pem";
      std::string key = cert == "-" ? cert : cert + ".key";
      ::execlp("python3", "python3", script.c_str(), portfile.c_str(), received_.c_str(), mode,
               pem.c_str(), key.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && ::access(portfile.c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    port_otlp_ = static_cast<uint16_t>(std::atoi(slurp(portfile).c_str()));
    ASSERT_NE(port_otlp_, 0) << "the OTLP receiver did not start";
  }
  // A datagram socket standing in for /run/systemd/journal/socket (never the host's journal).
  void bind_journal() {
    journal_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ASSERT_GE(journal_fd_, 0);
    int big = 8 << 20;
    ::setsockopt(journal_fd_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", journal_path_.c_str());
    ASSERT_EQ(::bind(journal_fd_, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
    ::chmod(journal_path_.c_str(), 0666);  // the user variant sends to it
    // Drained while the box runs, as journald does: an unread datagram socket takes only
    // net.unix.max_dgram_qlen (10 here) before senders get EAGAIN and count a drop.
    drainer_ = std::thread([this] {
      std::string buf(1 << 20, '\0');
      while (!stop_.load()) {
        pollfd p{journal_fd_, POLLIN, 0};
        if (::poll(&p, 1, 20) <= 0) {
          continue;
        }
        ssize_t n = ::recv(journal_fd_, buf.data(), buf.size(), 0);
        if (n > 0) {
          std::lock_guard<std::mutex> g(mu_);
          drained_.emplace_back(buf.data(), static_cast<size_t>(n));
        }
      }
    });
  }
  void stop_drainer() {
    if (drainer_.joinable()) {
      stop_.store(true);
      drainer_.join();
    }
  }
  std::string config() const override {
    return fmt::format(
        "[network]\n"
        "allow = [\"api.example.test\"]\n"
        "[credentials.tok]\n"
        "env = \"TOK\"\n"
        "from = \"env:REAL_TOKEN\"\n"
        "hosts = [\"api.example.test\"]\n"
        "inject = \"header:Authorization\"\n"
        "format = \"Bearer {{}}\"\n"
        "[telemetry]\n"
        "otlp_endpoint = \"{}://127.0.0.1:{}/v1/logs\"\n"
        "otlp_queue = \"{}\"\n"
        "journald = true\n"
        "{}"
        "[labels]\n"
        "team = \"infra\"\n",
        is_tls(collector()) ? "https" : "http", port_otlp_,
        collector() == Collector::kOk || collector() == Collector::kTlsOk ? "2M" : "16K",
        tls_config());
  }
  // The collector's CA (the upstream's, another CA, for kTlsWrongCa) and the Authorization
  // header read from a file of the test's: neither value sits in the config.
  std::string tls_config() const {
    if (!is_tls(collector())) {
      return "";
    }
    std::string ca = collector() == Collector::kTlsWrongCa ? up_ + "/ca.pem" : w_.root + "/cca.pem";
    return fmt::format(
        "otlp_ca = \"{}\"\n"
        "otlp_headers_from = {{ Authorization = \"file:{}/otlp-auth\" }}\n",
        ca, w_.root);
  }
  void TearDown() override {
    stop_drainer();
    if (receiver_ > 0) {
      ::kill(receiver_, SIGKILL);
      ::waitpid(receiver_, nullptr, 0);
    }
    if (journal_fd_ >= 0) {
      ::close(journal_fd_);
    }
    UpstreamFixture::TearDown();
  }
  // Every datagram the journal socket holds, as field maps (the native protocol, both forms).
  std::vector<std::map<std::string, std::string>> journal() {
    std::vector<std::map<std::string, std::string>> out;
    stop_drainer();
    std::string buf(1 << 20, '\0');
    for (int i = 0; i < 10000; ++i) {  // what came after the drainer stopped
      ssize_t n = ::recv(journal_fd_, buf.data(), buf.size(), 0);
      if (n <= 0) {
        break;
      }
      drained_.emplace_back(buf.data(), static_cast<size_t>(n));
    }
    for (const std::string& dgram : drained_) {
      std::map<std::string, std::string> fields;
      std::string_view d(dgram);
      while (!d.empty()) {
        size_t nl = d.find('\n');
        size_t eq = d.find('=');
        if (nl == std::string_view::npos) {
          break;
        }
        if (eq < nl) {
          fields[std::string(d.substr(0, eq))] = std::string(d.substr(eq + 1, nl - eq - 1));
          d.remove_prefix(nl + 1);
        } else {  // NAME\n<le64 size><value>\n
          uint64_t len = 0;
          for (int b = 0; b < 8; ++b) {
            len |= static_cast<uint64_t>(static_cast<unsigned char>(d[nl + 1 + b])) << (8 * b);
          }
          fields[std::string(d.substr(0, nl))] = std::string(d.substr(nl + 9, len));
          d.remove_prefix(nl + 9 + len + 1);
        }
      }
      out.push_back(std::move(fields));
    }
    return out;
  }
  // "; session ID;" of the exit summary.
  static std::string session_of(const Output& r) {
    std::smatch m;
    std::regex re("; session ([0-9a-f]{6});");
    return std::regex_search(r.err, m, re) ? m[1].str() : "";
  }
  static std::string head_of(const Output& r) {
    std::smatch m;
    std::regex re("audit chain head ([0-9a-f]{64})");
    return std::regex_search(r.err, m, re) ? m[1].str() : "";
  }
  static uint64_t number_after(const std::string& text, const std::string& re_text) {
    std::smatch m;
    std::regex re(re_text);
    return std::regex_search(text, m, re) ? std::stoull(m[1].str()) : 0;
  }
  std::string received_;
  std::string journal_path_;
  int journal_fd_ = -1;
  std::thread drainer_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> drained_;
  uint16_t port_otlp_ = 0;
  pid_t receiver_ = -1;
};

TEST_P(TelemetryTest, EveryLineReachesTheCollectorAndTheJournalWithoutSecrets) {
  Output r =
      box("echo \"ph=$TOK\"; "
          "curl -sS https://api.example.test/echo/a -H \"Authorization: Bearer $TOK\"; "
          "curl -sS https://api.example.test/echo/b; "
          "curl -sS https://denied.example.test/ 2>/dev/null || true",
          60000, {"--label", "pipeline=42"}, false);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string ph = r.line_starting("ph=").substr(3);
  ASSERT_EQ(ph.size(), kReal.size()) << r.out;
  EXPECT_TRUE(r.has_line("you sent: Bearer " + ph)) << r.out;
  const std::string log = w_.root + "/audit.jsonl";  // audit_log_of() gives the lines
  write_file(log, audit_log_of(r));
  ASSERT_FALSE(slurp(log).empty()) << r.err;
  std::string cmd = fmt::format("python3 {}/otlp_check.py {} {} {} {} > {}/check.out 2>&1", kData,
                                received_, log, kReal, ph, w_.root);
  int rc = sh(cmd);
  std::string out = slurp(w_.root + "/check.out");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.rfind("ok ", 0), 0u) << out;
  for (const char* want : {
           R"(resource service.name {"stringValue": "agentbox"})",
           R"(resource agentbox.label.pipeline {"stringValue": "42"})",
           R"(resource agentbox.label.team {"stringValue": "infra"})",
           R"(attr http.request http.request.method {"stringValue": "GET"})",
           R"(attr http.request server.address {"stringValue": "api.example.test"})",
           R"(attr http.request http.response.status_code {"intValue": "200"})",
           R"(attr net.connect server.port {"intValue": "443"})",
           R"(attr session.start process.command_args {"arrayValue")",
       }) {
    EXPECT_NE(out.find(want), std::string::npos) << want << "\n" << out;
  }
  // The journal got every line, with its fields; the placeholder and the secret in none.
  auto datagrams = journal();
  std::istringstream lines(slurp(log));
  size_t n = 0;
  std::string id = session_of(r);
  for (std::string l; std::getline(lines, l); ++n) {
    ASSERT_LT(n, datagrams.size()) << "the journal got fewer datagrams than the log has lines";
    auto& f = datagrams[n];
    EXPECT_EQ(f["MESSAGE"], l);
    EXPECT_EQ(f["SYSLOG_IDENTIFIER"], "agentbox");
    EXPECT_TRUE(f["AGENTBOX_SESSION"].ends_with(id)) << f["AGENTBOX_SESSION"];
    EXPECT_EQ(f["AGENTBOX_LABEL_PIPELINE"], "42");
    EXPECT_EQ(f["AGENTBOX_PROFILE"], "default");
    EXPECT_NE(l.find("\"type\":\"" + f["AGENTBOX_EVENT"] + "\""), std::string::npos) << l;
    bool denied = l.find("\"result\":\"denied\"") != std::string::npos;
    EXPECT_TRUE(denied ? f["PRIORITY"] == "4" : f["PRIORITY"] == "4" || f["PRIORITY"] == "6")
        << l << " " << f["PRIORITY"];
    for (const auto& [k, v] : f) {
      EXPECT_EQ(v.find(kReal), std::string::npos) << k;
      EXPECT_EQ(v.find(ph), std::string::npos) << k;
    }
  }
  EXPECT_EQ(n, datagrams.size());
  EXPECT_NE(slurp(log).find(R"("profile":"default","label.team":"infra","label.pipeline":"42")"),
            std::string::npos);
  EXPECT_NE(r.err.find(fmt::format("telemetry: {} of {} events sent", n, n)), std::string::npos)
      << r.err;
}

// `log --summary SESSION` and the exit summary print the same per-host and per-credential lines;
// the numbers are the session's: two requests with the credential, one name denied.
TEST_P(TelemetryTest, LogSummaryAndExitSummaryAgreeOnAKnownSession) {
  Output r =
      box("curl -sS https://api.example.test/echo/a; curl -sS https://api.example.test/echo/b; "
          "curl -sS https://denied.example.test/ 2>/dev/null || true",
          60000, {}, false);
  ASSERT_EQ(r.status, 0) << r.err;
  std::string id = session_of(r);
  ASSERT_FALSE(id.empty()) << r.err;
  RunOptions o;
  o.env = env();
  Output s = run(w_, {"log", "--summary", id}, o);
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_NE(s.out.find("host \"api.example.test\": 2 connections, 2 requests, "), std::string::npos)
      << s.out;
  EXPECT_NE(s.out.find("credential \"tok\": 2 requests, 0 bytes up, "), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("host \"denied.example.test\": 0 connections, 0 requests, 0 bytes up, 0 "
                       "bytes down, 1 denials"),
            std::string::npos)
      << s.out;
  std::istringstream in(s.out);
  for (std::string l; std::getline(in, l);) {
    EXPECT_NE(r.err.find(l), std::string::npos) << "not in the exit summary: " << l << "\n"
                                                << r.err;
  }
  // --head implies --verify: the right head passes, another fails, a malformed one is refused.
  std::string head = head_of(r);
  ASSERT_FALSE(head.empty()) << r.err;
  Output ok = run(w_, {"log", "--head", head, id});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("intact"), std::string::npos) << ok.out;
  Output wrong = run(w_, {"log", "--head", std::string(64, '0'), id});
  EXPECT_EQ(wrong.status, 1) << wrong.out << wrong.err;
  EXPECT_NE(wrong.err.find("the chain ends at head"), std::string::npos) << wrong.err;
  Output bad = run(w_, {"log", "--head", "xyz", id});
  EXPECT_EQ(bad.status, 125);
  EXPECT_NE(bad.err.find("agentbox: error: log: --head `xyz` is not a chain head"),
            std::string::npos)
      << bad.err;
}

TEST_P(TelemetryTest, LabelsAreValidatedAndShownByPs) {
  for (const auto& [flag, why] : std::vector<std::pair<std::string, std::string>>{
           {"Bad=1", "a label key is 1 to 63 of a-z"},
           {"noequals", "is not KEY=VALUE"},
           {std::string(64, 'k') + "=v", "a label key is 1 to 63"},
           {"k=" + std::string(257, 'v'), "a label value is at most 256 bytes"},
           {"k=a\tb", "control characters"}}) {
    RunOptions bad;
    bad.env = env();
    Output r = run(w_, {"run", "--label", flag, "--", "true"}, bad);
    EXPECT_EQ(r.status, 125) << flag;
    EXPECT_NE(r.err.find("agentbox: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--label"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << flag << ": " << r.err;
  }
  RunOptions o;
  o.env = env();  // the test's journal socket, never the host's
  o.env["XDG_CONFIG_HOME"] = cfg_;
  int out_fd = -1;
  int err_fd = -1;
  pid_t pid = spawn(w_, {"run", "-q", "--label", "ci.pipeline=run-7", "--", "sleep", "30"}, o,
                    &out_fd, &err_fd);
  ASSERT_GT(pid, 0);
  std::string seen;
  for (int i = 0; i < 150 && seen.find("ci.pipeline=\"run-7\"") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    seen = run(w_, {"ps"}).out;
  }
  ::kill(pid, SIGTERM);
  wait_for(pid, 20000);
  ::close(out_fd);
  ::close(err_fd);
  EXPECT_NE(seen.find("LABELS"), std::string::npos) << seen;
  EXPECT_NE(seen.find("ci.pipeline=\"run-7\""), std::string::npos) << seen;
  EXPECT_NE(seen.find("team=\"infra\""), std::string::npos) << seen;
}

INSTANTIATE_TEST_SUITE_P(As, TelemetryTest, ::testing::Values("root", "user"),
                         [](const auto& i) { return i.param; });

// A collector that reads but never answers, and then none at all: the box's requests are served
// as usual, the lines that do not fit the bounded queue are dropped and counted (in the summary
// and in the telemetry.export line), and the session still ends promptly.
class SlowCollectorTest : public TelemetryTest {
 protected:
  Collector collector() const override { return Collector::kSlow; }
};

class DeadCollectorTest : public TelemetryTest {
 protected:
  Collector collector() const override { return Collector::kDead; }
};

// Many denied names (each a line) against a 16K queue: drops, counted; curl still works.
constexpr const char* kFlood =
    "python3 -c \"import socket\nfor i in range(400):\n  try: socket.getaddrinfo('n%d.flood.test' "
    "% i, 80)\n  except OSError: pass\"; curl -sS https://api.example.test/echo/ok";

void expect_drops_but_a_working_box(const Output& r, const std::string& log) {
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("you sent: Bearer "), std::string::npos) << r.out;
  std::smatch m;
  std::regex re(R"(telemetry: (\d+) of (\d+) events sent to \S+, (\d+) dropped)");
  ASSERT_TRUE(std::regex_search(r.err, m, re)) << r.err;
  EXPECT_EQ(m[1].str(), "0");
  EXPECT_GT(std::stoull(m[2].str()), 400u);
  EXPECT_EQ(m[3].str(), m[2].str()) << "every line counted as dropped";
  std::regex ev(R"("type":"telemetry.export".*"otlp_dropped":(\d+))");
  ASSERT_TRUE(std::regex_search(log, m, ev))
      << log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
  EXPECT_GT(std::stoull(m[1].str()), 0u);
}

TEST_P(SlowCollectorTest, LinesAreDroppedWithACountAndTheBoxIsUnaffected) {
  Output r = box(kFlood, 90000, {}, false);
  expect_drops_but_a_working_box(r, audit_log_of(r));
}

TEST_P(DeadCollectorTest, LinesAreDroppedWithACountAndTheBoxIsUnaffected) {
  Output r = box(kFlood, 90000, {}, false);
  expect_drops_but_a_working_box(r, audit_log_of(r));
  EXPECT_NE(r.err.find("Connection refused (ECONNREFUSED)"), std::string::npos) << r.err;
}

INSTANTIATE_TEST_SUITE_P(As, SlowCollectorTest, ::testing::Values("root", "user"),
                         [](const auto& i) { return i.param; });
INSTANTIATE_TEST_SUITE_P(As, DeadCollectorTest, ::testing::Values("root", "user"),
                         [](const auto& i) { return i.param; });

// https:// with the collector's CA: the payload arrives whole (checked as over http://) with the
// Authorization header read from a file, and every line is counted as sent.
class TlsCollectorTest : public TelemetryTest {
 protected:
  Collector collector() const override { return Collector::kTlsOk; }
};

TEST_P(TlsCollectorTest, EveryLineArrivesOverTlsWithTheHeaderFromAFile) {
  Output r =
      box("curl -sS https://api.example.test/echo/a; curl -sS https://api.example.test/echo/b",
          60000, {"--label", "pipeline=43"}, false);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string log = w_.root + "/audit.jsonl";
  write_file(log, audit_log_of(r));
  std::string cmd = fmt::format("python3 {}/otlp_check.py {} {} {} > {}/check.out 2>&1", kData,
                                received_, log, kReal, w_.root);
  int rc = sh(cmd);
  std::string out = slurp(w_.root + "/check.out");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(R"(resource agentbox.label.pipeline {"stringValue": "43"})"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find(R"(attr http.request http.request.method {"stringValue": "GET"})"),
            std::string::npos)
      << out;
  std::istringstream posts(slurp(received_));
  size_t n = 0;
  for (std::string doc; std::getline(posts, doc); ++n) {
    EXPECT_NE(doc.find("\"authorization\": \"" + kAuth + "\""), std::string::npos) << doc;
  }
  EXPECT_GT(n, 0u);
  std::string text = slurp(log);
  auto lines = std::count(text.begin(), text.end(), '\n');
  EXPECT_NE(
      r.err.find(fmt::format("telemetry: {} of {} events sent to https://127.0.0.1:{}/v1/logs, "
                             "0 dropped",
                             lines, lines, port_otlp_)),
      std::string::npos)
      << r.err;
}

// A collector whose certificate cannot be trusted, or that never finishes the handshake: the
// box's own requests are served, every line is counted as dropped, and the summary's one line
// says why.
class TlsWrongCaTest : public TelemetryTest {
 protected:
  Collector collector() const override { return Collector::kTlsWrongCa; }
};
class TlsWrongNameTest : public TelemetryTest {
 protected:
  Collector collector() const override { return Collector::kTlsWrongName; }
};
class TlsStallTest : public TelemetryTest {
 protected:
  Collector collector() const override { return Collector::kTlsStall; }
};

void expect_refused(const Output& r, const std::string& why) {
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("you sent: Bearer "), std::string::npos) << r.out;
  std::smatch m;
  std::regex re(
      R"(agentbox: telemetry: (\d+) of (\d+) events sent to https://\S+, (\d+) dropped \((.*)\)\n)");
  ASSERT_TRUE(std::regex_search(r.err, m, re)) << r.err;
  EXPECT_EQ(m[1].str(), "0");
  EXPECT_GT(std::stoull(m[2].str()), 3u);
  EXPECT_EQ(m[3].str(), m[2].str()) << "every line counted as dropped";
  EXPECT_EQ(m[4].str(), why) << r.err;
}

constexpr const char* kTwoRequests =
    "curl -sS https://api.example.test/echo/a -H \"Authorization: Bearer $TOK\"; sleep 2; "
    "curl -sS https://api.example.test/echo/b";

TEST_P(TlsWrongCaTest, IsRefusedAndEveryLineCountedAsDropped) {
  Output r = box(kTwoRequests, 60000, {}, false);
  expect_refused(r, fmt::format("TLS: the certificate of 127.0.0.1:{} is refused: unable to get "
                                "local issuer certificate",
                                port_otlp_));
  EXPECT_EQ(slurp(received_), "");
}

TEST_P(TlsWrongNameTest, IsRefusedAndEveryLineCountedAsDropped) {
  Output r = box(kTwoRequests, 60000, {}, false);
  expect_refused(r, fmt::format("TLS: the certificate of 127.0.0.1:{} is refused: IP address "
                                "mismatch",
                                port_otlp_));
  EXPECT_EQ(slurp(received_), "");
}

TEST_P(TlsStallTest, AHandshakeThatNeverEndsCostsDropsNotTheBox) {
  Output r = box(kTwoRequests, 60000, {}, false);
  expect_refused(r, "the collector did not finish the TLS handshake in time");
  EXPECT_NE(slurp(received_ + ".accepted"), "") << "the exporter never reached the receiver";
}

INSTANTIATE_TEST_SUITE_P(As, TlsCollectorTest, ::testing::Values("root", "user"),
                         [](const auto& i) { return i.param; });
INSTANTIATE_TEST_SUITE_P(As, TlsWrongCaTest, ::testing::Values("root", "user"),
                         [](const auto& i) { return i.param; });
INSTANTIATE_TEST_SUITE_P(As, TlsWrongNameTest, ::testing::Values("root", "user"),
                         [](const auto& i) { return i.param; });
INSTANTIATE_TEST_SUITE_P(As, TlsStallTest, ::testing::Values("root", "user"),
                         [](const auto& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
