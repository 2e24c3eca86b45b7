// What programs in the box trust (issue 15 item 6), through the real `agentbox run` as root and
// as the unprivileged user, against the loopback TLS upstream (its own private CA):
//   * Java's HttpClient reaches an intercepted host: the JVM's cacerts is the session's
//     PKCS#12 truststore (system roots + session CA);
//   * strict verifiers accept the session CA and its leaves: Python with VERIFY_X509_STRICT,
//     `openssl verify -x509_strict -purpose sslserver` of the chain the box is shown;
//   * --trust-ca makes the box trust a private CA for a passed-through host (curl, python,
//     Java), which fails without it; --upstream-ca alone says it does not apply there;
//   * the trust files are removed from the kept session folder when the box is gone.
#include <filesystem>
#include <sstream>

#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kRealApi = "ghp_RealJavaTrustTokenAAA0123456789abcdWXYZ";

bool have(const std::string& tool) {
  return sh("command -v " + tool + " >/dev/null 2>&1") == 0;
}

// A Java HttpClient GET (single-file source launch: `java Get.java URL`), with the placeholder
// when API_TOKEN is set. Prints "java STATUS BODY", or the exception's class and message.
constexpr const char* kJavaGet = R"(import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Get {
  public static void main(String[] args) throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(args[0]));
    String token = System.getenv("API_TOKEN");
    if (token != null && !token.isEmpty()) {
      b.header("Authorization", "Bearer " + token);
    }
    try {
      HttpResponse<String> r =
          HttpClient.newHttpClient().send(b.build(), HttpResponse.BodyHandlers.ofString());
      System.out.println("java " + r.statusCode() + " " + r.body());
    } catch (Exception e) {
      System.out.println("java failed: " + e);
      System.exit(1);
    }
  }
}
)";

// A urllib GET with VERIFY_X509_STRICT on the default context (the box's trust store).
constexpr const char* kStrictGet = R"(import os, ssl, sys, urllib.request
ctx = ssl.create_default_context()
if os.environ.get("STRICT", "1") == "1":
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
req = urllib.request.Request(sys.argv[1])
if os.environ.get("API_TOKEN"):
    req.add_header("Authorization", "Bearer " + os.environ["API_TOKEN"])
try:
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        print("py", r.status, r.read().decode().strip(), "strict" if ctx.verify_flags & ssl.VERIFY_X509_STRICT else "")
except Exception as e:
    print("py failed:", e)
    sys.exit(1)
)";

class ProxyTrustTest : public UpstreamFixture {
 protected:
  // api: intercepted (a credential names it); local: allowed and passed through, as a local
  // HTTPS test server with a private CA would be.
  std::vector<std::string> hosts() const override {
    return {"api.example.test", "local.example.test"};
  }
  std::vector<std::string> secrets() const override { return {kRealApi}; }
  std::map<std::string, std::string> env() const override { return {{"REAL_API", kRealApi}}; }
  std::string config() const override {
    return "[network]\n"
           "allow = [\"api.example.test\", \"local.example.test\"]\n"
           "[credentials.api]\n"
           "env = \"API_TOKEN\"\n"
           "from = \"env:REAL_API\"\n"
           "hosts = [\"api.example.test\"]\n";
  }
  void prepare() override {
    write_file(w_.ws + "/Get.java", kJavaGet);
    write_file(w_.ws + "/strict_get.py", kStrictGet);
    ASSERT_EQ(sh(fmt::format("cp {}/ca.pem {}/ca-other.pem", up_, w_.ws)), 0);
    chown_tree(w_.ws, w_.as.uid, w_.as.gid);
  }
  // The placeholder the box was given (the line "token=..." of the script).
  static std::string token_of(const Output& r) { return r.line_starting("token=").substr(6); }
};

TEST_P(ProxyTrustTest, JavaHttpClientReachesAnInterceptedHost) {
  if (!have("java")) {
    skip("java is not installed (Debian package default-jdk-headless)");
    return;
  }
  Output r =
      box("echo \"token=$API_TOKEN\"; java Get.java https://api.example.test/echo/java", 240000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string token = token_of(r);
  ASSERT_EQ(token.size(), kRealApi.size()) << r.out;
  EXPECT_TRUE(r.has_line("java 200 you sent: Bearer " + token)) << r.out;
  EXPECT_NE(seen().find("GET /echo/java Bearer " + kRealApi), std::string::npos) << seen();
}

// The box's trust files live in the session folder, which is kept (its audit log) after the box
// is gone: they go with the box, so no truststore outlives its session.
TEST_P(ProxyTrustTest, TheTrustFilesGoWithTheBox) {
  Output r =
      box("test -s /etc/agentbox/ca-bundle.pem && echo bundle=yes; "
          "test -s /etc/agentbox/cacerts.p12 && echo java=yes; true");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  ASSERT_TRUE(r.has_line("bundle=yes")) << r.out;
  const std::string root = w_.state + "/agentbox/sessions";
  int sessions = 0;
  for (const auto& e : std::filesystem::directory_iterator(root)) {
    ++sessions;
    EXPECT_TRUE(std::filesystem::exists(e.path() / "audit.jsonl")) << e.path();
    for (const char* name : {"ca-bundle.pem", "cacerts.p12", "certs"}) {
      EXPECT_FALSE(std::filesystem::exists(e.path() / name)) << e.path() / name;
    }
  }
  EXPECT_GE(sessions, 1);
}

TEST_P(ProxyTrustTest, StrictPythonAcceptsTheSessionCa) {
  Output r =
      box("echo \"token=$API_TOKEN\"; python3 strict_get.py https://api.example.test/echo/py");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("py 200 you sent: Bearer " + token_of(r) + " strict")) << r.out;
}

TEST_P(ProxyTrustTest, OpensslStrictVerifiesTheChainTheBoxIsShown) {
  // The leaf as served in the box; the session CA from the hashed directory; each verified
  // strictly as a TLS server certificate for its name, and the CA alone as a root.
  Output r =
      box("openssl s_client -connect api.example.test:443 -servername api.example.test </dev/null "
          "2>/dev/null | openssl x509 -out leaf.pem && cat /etc/agentbox/certs/*.0 > ca.pem && "
          "openssl verify -x509_strict -purpose sslserver -verify_hostname api.example.test "
          "-CAfile ca.pem leaf.pem && openssl verify -x509_strict -CAfile ca.pem ca.pem && "
          "openssl x509 -in ca.pem -noout -text && openssl x509 -in leaf.pem -noout -text");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("leaf.pem: OK")) << r.out;
  EXPECT_TRUE(r.has_line("ca.pem: OK")) << r.out;
  // Both certificates carry both key identifiers (an oracle independent of OpenSSL's checks).
  size_t aki = 0, ski = 0;
  for (size_t p = 0; (p = r.out.find("X509v3 Authority Key Identifier", p)) != std::string::npos;
       ++p) {
    ++aki;
  }
  for (size_t p = 0; (p = r.out.find("X509v3 Subject Key Identifier", p)) != std::string::npos;
       ++p) {
    ++ski;
  }
  EXPECT_EQ(aki, 2u) << r.out;
  EXPECT_EQ(ski, 2u) << r.out;
  EXPECT_NE(r.out.find("X509v3 Basic Constraints: critical"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TLS Web Server Authentication"), std::string::npos) << r.out;
}

// The passthrough host is verified by the box's clients against the box's trust store.
const char* const kPassthroughScript =
    "curl -sS https://local.example.test/echo/curl; rc=$?; echo; echo curl=$rc; "
    // The test CA (openssl req -x509) has no keyUsage: strict mode would refuse it.
    "STRICT=0 python3 strict_get.py https://local.example.test/echo/py; echo py=$?";

TEST_P(ProxyTrustTest, TrustCaLetsTheBoxReachAPassthroughHostWithAPrivateCa) {
  std::string script = kPassthroughScript;
  const bool java = have("java");
  if (java) {
    script += "; java Get.java https://local.example.test/echo/java; echo java=$?";
  }
  Output r = box(script, 240000, {"--trust-ca", up_ + "/ca.pem"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("you sent: ")) << r.out;  // curl's body ("no Authorization")
  EXPECT_TRUE(r.has_line("curl=0")) << r.out;
  EXPECT_TRUE(r.has_line("py=0")) << r.out;
  EXPECT_TRUE(!java || r.has_line("java=0")) << r.out;
  // Passed through: the upstream saw the box's TLS, not the proxy's (no interception counted).
  EXPECT_NE(seen().find("GET /echo/curl"), std::string::npos) << seen();
  EXPECT_NE(seen().find("GET /echo/py"), std::string::npos) << seen();
}

TEST_P(ProxyTrustTest, WithoutTrustCaThePassthroughHostIsRefusedAndTheWarningSaysWhy) {
  Output r = box(kPassthroughScript, 60000, {}, /*quiet=*/false);
  EXPECT_TRUE(r.has_line("curl=60")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("py=1")) << r.out << r.err;
  EXPECT_EQ(seen().find("GET /echo/"), std::string::npos) << seen();
  EXPECT_NE(r.err.find("does not apply to `local.example.test`"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--trust-ca"), std::string::npos) << r.err;
  // The intercepted host is not named: --upstream-ca does apply there.
  EXPECT_EQ(r.err.find("does not apply to `api.example.test`"), std::string::npos) << r.err;
}

// A client in the box that trusts another CA only (its own bundle, not the box's): the proxy's
// handshake with it ends in an alert (unknown_ca), and the exit summary names the host and the
// fix in one line. Two clients, two TLS stacks: curl and Python.
TEST_P(ProxyTrustTest, AClientThatRejectsTheSessionCaIsNamedInTheSummaryWithTheFix) {
  Output r =
      box("curl -sS --cacert ca-other.pem https://api.example.test/echo/curl; echo curl=$?; "
          "python3 -c 'import ssl, urllib.request as u; "
          "u.urlopen(\"https://api.example.test/echo/py\", "
          "context=ssl.create_default_context(cafile=\"ca-other.pem\"))'; echo py=$?",
          60000, {}, /*quiet=*/false);
  EXPECT_TRUE(r.has_line("curl=60")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("py=1")) << r.out << r.err;
  EXPECT_EQ(seen().find("GET /echo/"), std::string::npos) << seen();
  std::string line;
  std::istringstream err(r.err);
  for (std::string l; std::getline(err, l);) {
    if (l.find("rejected the session CA") != std::string::npos) {
      EXPECT_TRUE(line.empty()) << "one line, not one per connection: " << r.err;
      line = l;
    }
  }
  EXPECT_NE(line.find("for api.example.test (2 TLS connections)"), std::string::npos) << r.err;
  for (const char* fix : {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
                          "/etc/agentbox/ca-bundle.pem", "cacerts", "stop intercepting"}) {
    EXPECT_NE(line.find(fix), std::string::npos) << fix << ": " << line;
  }
}

TEST_P(ProxyTrustTest, ATrustingClientGetsNoRejectionLine) {
  Output r = box("curl -sS https://api.example.test/echo/curl; echo curl=$?", 60000, {},
                 /*quiet=*/false);
  EXPECT_TRUE(r.has_line("curl=0")) << r.out << r.err;
  EXPECT_EQ(r.err.find("rejected the session CA"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("1 TLS connection intercepted"), std::string::npos) << r.err;
}

// The proxy still verifies the upstream it intercepts (its system roots are read on the first
// interception now): without --upstream-ca the test server's private CA is refused, the box gets
// a 502 and the request never reaches the server.
TEST_P(ProxyTrustTest, AnInterceptedUpstreamWithAnUnknownCaIsRefused) {
  Args a = {"run",
            "-q",
            "--connect-to",
            fmt::format("api.example.test:443:127.0.0.1:{}", port_),
            "--",
            "sh",
            "-c",
            "curl -sS -o /dev/null -w 'code=%{http_code}\\n' https://api.example.test/echo/bad"};
  RunOptions o;
  o.env = env();
  o.env["XDG_CONFIG_HOME"] = cfg_;
  Output r = run(w_, a, o);
  EXPECT_TRUE(r.has_line("code=502")) << r.out << r.err;
  EXPECT_EQ(seen().find("GET /echo/bad"), std::string::npos) << seen();
  EXPECT_NE(audit().find("certificate verification failed"), std::string::npos) << audit();
}

INSTANTIATE_TEST_SUITE_P(As, ProxyTrustTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
