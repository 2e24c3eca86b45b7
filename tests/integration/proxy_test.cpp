// The L7 proxy end to end: real programs in the box (curl, python, node, git) against a TLS
// upstream the test starts on loopback with its own CA, reached with --connect-to. The upstream
// records what it received; the box's output and files are searched for the real secrets.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

// Same shape as GitHub tokens; the box must only ever see placeholders of them.
const std::string kRealApi = "ghp_RealApiTokenAAAA0123456789abcdefWXYZ";
const std::string kRealGit = "ghp_RealGitTokenBBBB0123456789abcdefWXYZ";
const std::string kRealFile = "sk-ant-oat01-RealFileTokenCCCC0123456789abcdef";

class ProxyTest : public WorldTest {
 protected:
  void SetUp() override {
    if (!enter_world()) {
      return;
    }
    up_ = w_.root + "/upstream";
    ASSERT_EQ(::mkdir(up_.c_str(), 0755), 0);
    // The upstream's own CA and a certificate for every test host.
    ASSERT_TRUE(
        make_upstream_certs(up_, {"api.example.test", "git.example.test", "rules.example.test",
                                  "pypi.example.test", "npm.example.test", "pass.example.test"}));
    // A bare repository with one commit, pushable over smart HTTP.
    ASSERT_EQ(sh(fmt::format("(cd {0} && git init -q --bare git/repo.git && "
                             "git -C git/repo.git config http.receivepack true && "
                             "git init -q seed && cd seed && git -c user.name=t -c user.email=t@t "
                             "commit -q --allow-empty -m seed && git push -q ../git/repo.git "
                             "HEAD:refs/heads/main && git -C ../git/repo.git symbolic-ref HEAD "
                             "refs/heads/main) >/dev/null 2>&1",
                             up_)),
              0);
    ASSERT_TRUE(start_upstream(up_, kRealGit, port_, server_)) << "the upstream did not start";

    cfg_ = w_.root + "/cfg";
    ASSERT_EQ(::mkdir(cfg_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((cfg_ + "/agentbox").c_str(), 0755), 0);
    write_file(cfg_ + "/agentbox/config.toml",
               "[network]\n"
               "allow = [\"api.example.test\", \"git.example.test\", \"rules.example.test\",\n"
               "         \"pypi.example.test\", \"npm.example.test\", \"pass.example.test\"]\n"
               // Package registries: read-only (and so intercepted, under the session CA).
               "[[network.rule]]\n"
               "host = \"pypi.example.test\"\n"
               "methods = [\"GET\", \"HEAD\"]\n"
               "[[network.rule]]\n"
               "host = \"npm.example.test\"\n"
               "methods = [\"GET\", \"HEAD\"]\n"
               "[[network.rule]]\n"
               "host = \"rules.example.test\"\n"
               "methods = [\"GET\"]\n"
               "paths = [\"/v1/**\"]\n"
               "[credentials.api]\n"
               "env = \"API_TOKEN\"\n"
               "from = \"env:REAL_API_TOKEN\"\n"
               "hosts = [\"api.example.test\"]\n"
               "inject = \"header:Authorization\"\n"
               "[credentials.git]\n"
               "env = \"GIT_TOKEN\"\n"
               "from = \"env:REAL_GIT_TOKEN\"\n"
               "hosts = [\"git.example.test\"]\n"
               "inject = \"basic\"\n");
    // An agent's auth file holding a token: shown in the box with the token masked.
    auth_ = w_.root + "/auth.json";
    write_file(auth_,
               "{\n  \"oauth\": {\"access_token\": \"" + kRealFile + "\", \"expires\": 99}\n}\n");
    ASSERT_EQ(::chown(auth_.c_str(), w_.as.uid, w_.as.gid), 0);
    std::ofstream(cfg_ + "/agentbox/config.toml", std::ios::app)
        << "[[token_file]]\npath = \"" << auth_
        << "\"\njson_fields = [\"oauth.access_token\"]\nhosts = [\"api.example.test\"]\n";
    chown_tree(cfg_, w_.as.uid, w_.as.gid);
  }
  void TearDown() override {
    if (server_ > 0) {
      ::kill(server_, SIGKILL);
      ::waitpid(server_, nullptr, 0);
    }
    if (made_) {
      // The real secrets are in no file agentbox wrote (audit logs, session folders).
      if (!all_audit_logs(w_).empty()) {  // a test whose set-up failed ran no session
        expect_tree_lacks(w_.state, {kRealApi, kRealGit, kRealFile}, R"("type":"session.start")");
      }
      destroy_world(w_);
    }
  }
  // `agentbox run` with the test's network config, `sh -c SCRIPT` inside.
  Output box(const std::string& script, int timeout_ms = 60000) {
    Args a = {"run", "-q", "--upstream-ca", up_ + "/ca.pem"};
    for (const char* host : {"api", "git", "rules", "pypi", "npm", "pass"}) {
      a.push_back("--connect-to");
      a.push_back(fmt::format("{}.example.test:443:127.0.0.1:{}", host, port_));
    }
    a.insert(a.end(), {"--", "sh", "-c", script});
    RunOptions o;
    o.env = {{"XDG_CONFIG_HOME", cfg_}, {"REAL_API_TOKEN", kRealApi}, {"REAL_GIT_TOKEN", kRealGit}};
    o.timeout_ms = timeout_ms;
    Output r = run(w_, a, o);
    // Whatever the box printed, the real secrets were never in it.
    EXPECT_EQ(r.out.find(kRealApi), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(kRealGit), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(kRealFile), std::string::npos) << r.out;
    EXPECT_EQ(r.err.find(kRealApi), std::string::npos) << r.err;
    return r;
  }
  std::string seen() { return slurp(up_ + "/seen.log"); }
  // Every audit line of every session this world ran.
  std::string audit() { return all_audit_logs(w_); }

  std::string up_;
  std::string cfg_;
  std::string auth_;
  uint16_t port_ = 0;
  pid_t server_ = -1;
};

TEST_P(ProxyTest, CurlReachesTheHostWithTheRealTokenWhileTheBoxHoldsAPlaceholder) {
  Output r =
      box("echo \"token=$API_TOKEN\"; "
          "curl -sS https://api.example.test/echo -H \"Authorization: Bearer $API_TOKEN\"; "
          // Everything in the box that could hold it: environments, files it can write or read.
          // Each search is run for the placeholder too, which must be found (a file of it is
          // planted in HOME), so a search that reads nothing cannot pass.
          "printf '%s\\n' \"$API_TOKEN\" > \"$HOME/placeholder-marker\"; "
          "envs() { cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'; }; "
          "echo \"environ=$(envs | grep -c RealApiToken)\"; "
          "echo \"environ_ph=$(envs | grep -cF \"$API_TOKEN\")\"; "
          "files() { grep -rlF \"$1\" \"$HOME\" /tmp /etc . 2>/dev/null; }; "
          "echo \"files=$(files RealApiToken | wc -l)\"; "
          // A file the box's user cannot read is no channel for it; any other error fails.
          "echo \"files_err=$(grep -rlF RealApiToken \"$HOME\" /tmp /etc . 2>&1 >/dev/null | "
          "grep -vc 'Permission denied')\"; "
          "echo \"files_ph=$(files \"$API_TOKEN\" | wc -l)\"");
  ASSERT_EQ(r.status, 0) << r.err;
  std::string token = r.line_starting("token=").substr(6);
  ASSERT_EQ(token.size(), kRealApi.size()) << r.out;
  EXPECT_EQ(token.substr(0, 4), "ghp_");
  EXPECT_NE(token, kRealApi);
  // The upstream saw the real token; its echo of it came back into the box as the placeholder.
  EXPECT_NE(seen().find("GET /echo Bearer " + kRealApi), std::string::npos) << seen();
  EXPECT_TRUE(r.has_line("you sent: Bearer " + token)) << r.out;
  EXPECT_TRUE(r.has_line("environ=0")) << r.out;
  EXPECT_FALSE(r.has_line("environ_ph=0")) << "control: the placeholder is in an environment";
  EXPECT_TRUE(r.line_starting("environ_ph=").size() > 11) << r.out;
  EXPECT_TRUE(r.has_line("files=0")) << r.out;
  EXPECT_TRUE(r.has_line("files_err=0")) << "grep failed other than on unreadable files: " << r.out;
  EXPECT_FALSE(r.has_line("files_ph=0")) << "control: the planted placeholder file is found";
  EXPECT_TRUE(r.line_starting("files_ph=").size() > 9) << r.out;
}

TEST_P(ProxyTest, ATokenFileIsShownMaskedAndItsTokenWorksUpstream) {
  Output r = box(fmt::format(
      "cat {0}; tok=$(python3 -c 'import json; print(json.load(open(\"{0}\"))[\"oauth\"]"
      "[\"access_token\"])'); echo \"token=$tok\"; "
      "curl -sS https://api.example.test/echo/tokenfile -H \"Authorization: Bearer $tok\"; "
      "(echo x > {0}) 2>/dev/null && echo writable || echo read-only",
      auth_));
  ASSERT_EQ(r.status, 0) << r.err;
  std::string token = r.line_starting("token=").substr(6);
  ASSERT_EQ(token.size(), kRealFile.size()) << r.out;
  EXPECT_EQ(token.substr(0, 13), "sk-ant-oat01-") << "the placeholder keeps the token's shape";
  EXPECT_NE(r.out.find("\"expires\": 99"), std::string::npos) << "the rest is unchanged: " << r.out;
  EXPECT_NE(seen().find("GET /echo/tokenfile Bearer " + kRealFile), std::string::npos) << seen();
  EXPECT_TRUE(r.has_line("you sent: Bearer " + token)) << r.out;
  EXPECT_TRUE(r.has_line("read-only")) << r.out;
  EXPECT_NE(slurp(auth_).find(kRealFile), std::string::npos) << "the real file is untouched";
}

TEST_P(ProxyTest, PythonNodeAndRequestsTrustTheSessionWithoutProxyVariables) {
  Output r = box(
      "env | grep -ci '_proxy=' ; "
      "python3 -c 'import os, urllib.request as u; r = u.Request(\"https://api.example.test/"
      "echo/urllib\", headers={\"Authorization\": \"token \" + os.environ[\"API_TOKEN\"]}); "
      "print(\"urllib\", u.urlopen(r).status)'; "
      "python3 -c 'import os, requests; print(\"requests\", requests.get(\"https://api.example."
      "test/echo/requests\", headers={\"Authorization\": \"token \" + "
      "os.environ[\"API_TOKEN\"]}).status_code)'; "
      "node -e 'fetch(\"https://api.example.test/echo/node\", {headers: {Authorization: \"token "
      "\" + process.env.API_TOKEN}}).then(r => console.log(\"node\", r.status))' 2>/dev/null");
  EXPECT_TRUE(r.has_line("0")) << "no proxy variables: " << r.out;
  EXPECT_TRUE(r.has_line("urllib 200")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("requests 200")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("node 200")) << r.out << r.err;
  for (const char* who : {"urllib", "requests", "node"}) {
    EXPECT_NE(seen().find(fmt::format("GET /echo/{} token {}", who, kRealApi)), std::string::npos)
        << who << "\n"
        << seen();
  }
}

// Package managers, untouched: no proxy variable, no CA flag; they trust the session through
// the variables agentbox sets (PIP_CERT, NPM_CONFIG_CAFILE) and the bound system bundle.
TEST_P(ProxyTest, PipAndNpmFetchFromRegistriesWithoutProxySettings) {
  Output r =
      box("cd /tmp && python3 -m pip download -q --no-deps --disable-pip-version-check "
          "--index-url https://pypi.example.test/simple/ -d dl demo-pkg && ls dl; "
          // npm asks only the loopback registry (no update check: it would go nowhere anyway).
          "if command -v npm >/dev/null; then echo \"npm $(npm view demo-pkg version "
          "--no-update-notifier --registry https://npm.example.test/ 2>&1 | tail -1)\"; "
          "else echo npm missing; fi",
          120000);
  EXPECT_TRUE(r.has_line("demo_pkg-1.0-py3-none-any.whl")) << r.out << r.err;
  EXPECT_NE(seen().find("GET /files/demo_pkg-1.0-py3-none-any.whl"), std::string::npos) << seen();
  if (r.has_line("npm missing")) {
    skip("npm is not installed (scripts/deps.txt lists it); pip was checked");
    return;
  }
  EXPECT_TRUE(r.has_line("npm 1.0.0")) << r.out << r.err;
  EXPECT_NE(seen().find("GET /demo-pkg"), std::string::npos) << seen();
}

TEST_P(ProxyTest, APlaceholderSentToAnotherHostIsBlocked) {
  Output r =
      box("curl -sS -w ' %{http_code}\\n' https://rules.example.test/v1/steal "
          "-H \"Authorization: Bearer $API_TOKEN\"");
  EXPECT_NE(r.out.find("credential api sent to rules.example.test"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" 403"), std::string::npos) << r.out;
  EXPECT_EQ(seen().find("/v1/steal"), std::string::npos) << "the upstream got it: " << seen();
}

TEST_P(ProxyTest, HttpRulesDenyMethodsAndPaths) {
  Output r = box(
      "curl -sS -o /dev/null -w 'post %{http_code}\\n' -X POST https://rules.example.test/v1/x; "
      "curl -sS -w ' %{http_code}\\n' https://rules.example.test/v2/x; "
      "curl -sS -o /dev/null -w 'get %{http_code}\\n' https://rules.example.test/v1/ok");
  EXPECT_TRUE(r.has_line("post 403")) << r.out;
  EXPECT_NE(r.out.find("agentbox: GET https://rules.example.test/v2/x denied by rule"),
            std::string::npos)
      << r.out;
  EXPECT_TRUE(r.has_line("get 404")) << "allowed, and answered by the upstream: " << r.out;
  EXPECT_NE(seen().find("GET /v1/ok"), std::string::npos) << seen();
  EXPECT_EQ(seen().find("/v2/x"), std::string::npos) << seen();
  EXPECT_EQ(seen().find("POST"), std::string::npos) << seen();
}

TEST_P(ProxyTest, GitClonesAndPushesOverHttpsWithAPlaceholderToken) {
  Output r = box(
      "cd /tmp && git clone -q https://git.example.test/git/repo.git r && cd r && "
      "git -c user.name=box -c user.email=box@example.test commit -q --allow-empty -m from-box && "
      "git push -q origin HEAD:main && echo pushed",
      120000);
  ASSERT_TRUE(r.has_line("pushed")) << r.out << r.err;
  // The upstream repository has the box's commit, and it was authorized with the real token.
  EXPECT_EQ(sh(fmt::format("git --git-dir={}/git/repo.git log --format=%s main | grep -qx from-box",
                           up_)),
            0);
  std::string basic = "Basic " + std::string("eC1hY2Nlc3MtdG9rZW46") /* x-access-token: */;
  EXPECT_NE(seen().find("POST /git/repo.git/git-receive-pack Basic"), std::string::npos) << seen();
  EXPECT_EQ(seen().find(kRealGit), std::string::npos) << "Basic is base64: " << seen();
  EXPECT_NE(seen().find(basic), std::string::npos) << seen();
}

TEST_P(ProxyTest, FrontingConnectAndUnknownBytesAreRefused) {
  Output r = box(
      // SNI api, Host rules: domain fronting.
      "curl -sS -o /dev/null -w 'fronted %{http_code}\\n' https://api.example.test/echo/front "
      "-H 'Host: rules.example.test'; "
      // DNS name rules (its synthetic address), SNI api.
      "curl -sS -o /dev/null -w 'sni %{http_code}\\n' --connect-to "
      "api.example.test:443:rules.example.test:443 https://api.example.test/echo/sni "
      "2>/dev/null || echo sni refused; "
      // CONNECT through the proxy to anywhere.
      "curl -sS -o /dev/null -w 'connect %{http_code}\\n' -p -x http://api.example.test:443 "
      "https://elsewhere.example/ 2>/dev/null || echo connect refused; "
      // Bytes that are neither TLS nor HTTP to port 443.
      "python3 -c 'import socket; s = socket.create_connection((\"api.example.test\", 443), 5); "
      "s.sendall(b\"hello there, not tls\\n\"); s.settimeout(5); print(\"raw\", len(s.recv(100)))' "
      "2>/dev/null || echo raw refused; "
      // DNS over HTTPS to resolvers nobody allowed: by name (no DNS answer) and by address (no
      // rule for it; a documentation address, so nothing could leave even by mistake).
      "curl -sS -m 5 -o /dev/null 'https://doh.example.test/dns-query?name=x' 2>/dev/null || "
      "echo doh-name refused; "
      "curl -sS -m 5 -o /dev/null -k 'https://192.0.2.53/dns-query?name=x' 2>/dev/null || "
      "echo doh-ip refused");
  EXPECT_FALSE(r.has_line("fronted 200")) << r.out;
  EXPECT_TRUE(r.has_line("sni refused")) << r.out;
  EXPECT_FALSE(r.has_line("connect 200")) << r.out;
  EXPECT_TRUE(r.has_line("raw 0") || r.has_line("raw refused")) << r.out;
  EXPECT_TRUE(r.has_line("doh-name refused")) << r.out;
  EXPECT_TRUE(r.has_line("doh-ip refused")) << r.out;
  // Each refusal is in the audit log.
  std::string log = audit();
  EXPECT_NE(log.find("\"type\":\"proxy.drop\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"type\":\"net.deny\""), std::string::npos) << log;
  EXPECT_NE(log.find("doh.example.test"), std::string::npos) << log;
  EXPECT_NE(log.find("192.0.2.53"), std::string::npos) << log;
  for (const char* path : {"/echo/front", "/echo/sni", "elsewhere"}) {
    EXPECT_EQ(seen().find(path), std::string::npos) << path << "\n" << seen();
  }
}

TEST_P(ProxyTest, ServerSentEventsArriveAsTheyAreSent) {
  Output r =
      box("python3 -c 'import time, urllib.request as u\n"
          "t0 = time.monotonic()\n"
          "for line in u.urlopen(\"https://api.example.test/sse\"):\n"
          "    if line.startswith(b\"data:\"): print(\"at\", round(time.monotonic() - t0, 2), "
          "line.decode().strip())\n'");
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<double> at;
  std::istringstream in(r.out);
  std::string word;
  double t = 0;
  while (in >> word) {
    if (word == "at" && in >> t) {
      at.push_back(t);
    }
  }
  ASSERT_EQ(at.size(), 3u) << r.out;
  // 600 ms apart upstream: buffering the stream would bunch them at the end.
  EXPECT_GT(at[2] - at[0], 0.8) << r.out;
}

TEST_P(ProxyTest, WebSocketEchoThroughInterception) {
  Output r = box(
      "python3 -c 'import base64, os, socket, ssl\n"
      "s = ssl.create_default_context().wrap_socket(socket.create_connection((\"api.example.test\""
      ", 443), 10), server_hostname=\"api.example.test\")\n"
      "key = base64.b64encode(os.urandom(16)).decode()\n"
      "s.sendall((\"GET /ws HTTP/1.1\\r\\nHost: api.example.test\\r\\nUpgrade: websocket\\r\\n"
      "Connection: Upgrade\\r\\nSec-WebSocket-Key: \" + key + \"\\r\\nSec-WebSocket-Version: "
      "13\\r\\n\\r\\n\").encode())\n"
      "head = b\"\"\n"
      "while b\"\\r\\n\\r\\n\" not in head: head += s.recv(1)\n"
      "print(head.split(b\"\\r\\n\")[0].decode())\n"
      "mask = os.urandom(4); msg = b\"hello websocket\"\n"
      "s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in "
      "enumerate(msg)))\n"
      "h = s.recv(2); print(s.recv(h[1]).decode())\n'");
  EXPECT_TRUE(r.has_line("HTTP/1.1 101 Switching Protocols")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("echo: hello websocket")) << r.out << r.err;
}

// Size of the large transfers: 1 GiB, as the issue asks (AGENTBOX_PROXY_BIG_MIB overrides).
uint64_t big_bytes() {
  const char* v = std::getenv("AGENTBOX_PROXY_BIG_MIB");
  return (v != nullptr ? std::strtoull(v, nullptr, 10) : 1024) << 20;
}

TEST_P(ProxyTest, LargeUploadAndDownloadThroughInterceptionKeepTheirChecksums) {
  uint64_t n = big_bytes();
  Output r = box(
      fmt::format("python3 -c 'import hashlib, http.client, ssl\n"
                  "N = {0}\n"
                  "pattern = bytes(range(256)) * 256\n"
                  "def chunks():\n"
                  "    left = N\n"
                  "    while left > 0:\n"
                  "        part = pattern[:min(left, len(pattern))]; left -= len(part); yield "
                  "part\n"
                  "want = hashlib.sha256()\n"
                  "for c in chunks(): want.update(c)\n"
                  "c = http.client.HTTPSConnection(\"api.example.test\", "
                  "context=ssl.create_default_context(), timeout=120)\n"
                  "c.request(\"POST\", \"/upload\", body=chunks(), headers={{\"Content-Length\": "
                  "str(N)}})\n"
                  "print(\"up\", c.getresponse().read().decode().strip() == want.hexdigest())\n"
                  "c.request(\"GET\", \"/download?n=\" + str(N))\n"
                  "resp = c.getresponse(); got = hashlib.sha256(); total = 0\n"
                  "while True:\n"
                  "    b = resp.read(1 << 20)\n"
                  "    if not b: break\n"
                  "    got.update(b); total += len(b)\n"
                  "print(\"down\", total == N and got.hexdigest() == want.hexdigest())\n'",
                  n),
      300000);
  EXPECT_TRUE(r.has_line("up True")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("down True")) << r.out << r.err;
}

// A host with no credential and no rule is passthrough: the box verifies the upstream's own
// certificate (only the upstream CA is trusted here, so a session-CA leaf would fail), and once
// the ClientHello is checked the flow is handed back to the stack (`handed_back` in net.close)
// and still carries 32 MiB each way intact.
TEST_P(ProxyTest, PassthroughIsNotDecryptedAndIsHandedBackToTheStack) {
  ASSERT_EQ(sh(fmt::format("cp {}/ca.pem {}/upstream-ca.pem && chmod 644 {}/upstream-ca.pem", up_,
                           w_.ws, w_.ws)),
            0);
  Output r = box(
      "python3 -c 'import hashlib, http.client, ssl\n"
      "N = 32 << 20\n"
      "pattern = bytes(range(256)) * 256\n"
      "def chunks():\n"
      "    left = N\n"
      "    while left > 0:\n"
      "        part = pattern[:min(left, len(pattern))]; left -= len(part); yield part\n"
      "want = hashlib.sha256()\n"
      "for c in chunks(): want.update(c)\n"
      "ctx = ssl.create_default_context(cafile=\"upstream-ca.pem\")\n"
      "c = http.client.HTTPSConnection(\"pass.example.test\", context=ctx, timeout=60)\n"
      "c.request(\"POST\", \"/upload\", body=chunks(), headers={\"Content-Length\": str(N)})\n"
      "print(\"up\", c.getresponse().read().decode().strip() == want.hexdigest())\n"
      "c.request(\"GET\", \"/download?n=\" + str(N))\n"
      "got = hashlib.sha256(c.getresponse().read())\n"
      "print(\"down\", got.hexdigest() == want.hexdigest())\n"
      "print(\"issuer\", dict(x[0] for x in c.sock.getpeercert()[\"issuer\"])[\"commonName\"])\n'",
      120000);
  EXPECT_TRUE(r.has_line("up True")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("down True")) << r.out << r.err;
  EXPECT_TRUE(r.has_line("issuer upstream test CA")) << r.out;
  const std::string log = audit();
  EXPECT_NE(log.find(R"("host":"pass.example.test","port":443,"mode":"passthrough")"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(R"("handed_back":true)"), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(As, ProxyTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
