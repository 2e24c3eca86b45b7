// Go and cargo programs work untouched in the box (issue 5 item 3), through the real
// `agentbox run` as root and as the unprivileged user, against the loopback TLS upstream:
//   * a Go program built outside the box (`go build`, no network, no dependencies) makes an
//     HTTPS GET with the placeholder; Go's own TLS stack trusts the session CA through the bound
//     system bundle, and the upstream sees the real token;
//   * cargo builds a project whose one dependency comes from a git-index registry served over
//     HTTPS by the upstream (git smart HTTP for the index, the `dl` endpoint for the .crate),
//     with no proxy or CA setting of its own: the registry is named in the workspace's
//     .cargo/config.toml (project config, as a company mirror would be). Debian's cargo 0.66
//     has no stable sparse registries, hence the git index.
#include "proxy_fixture.hpp"

namespace agentbox::it {
namespace {

const std::string kRealApi = "ghp_RealGoLangTokenAAA0123456789abcdefWXYZ";

bool have(const std::string& tool) {
  return sh("command -v " + tool + " >/dev/null 2>&1") == 0;
}

// Built once per test process, outside the box, offline, with its caches in its own folder
// (both variants run the same binary). Empty on failure (the log is in go_dir()/build.log).
const std::string& go_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/agentbox-go-XXXXXX";
    return std::string(::mkdtemp(tmpl) != nullptr ? tmpl : "");
  }();
  // Removed when the test process ends (the Go build cache is tens of MiB).
  static const struct Cleanup {
    ~Cleanup() {
      if (!dir.empty()) {
        (void)sh("rm -rf " + dir);
      }
    }
  } cleanup;
  return dir;
}

std::string go_program() {
  static const std::string built = [] {
    const std::string& src = go_dir();
    if (src.empty()) {
      return std::string();
    }
    write_file(src + "/go.mod", "module agentboxgo\n\ngo 1.19\n");
    write_file(src + "/main.go",
               "package main\n\n"
               "import (\n\t\"fmt\"\n\t\"io\"\n\t\"net/http\"\n\t\"os\"\n)\n\n"
               "func main() {\n"
               "\treq, _ := http.NewRequest(\"GET\", os.Args[1], nil)\n"
               "\treq.Header.Set(\"Authorization\", \"Bearer \"+os.Getenv(\"API_TOKEN\"))\n"
               "\tresp, err := http.DefaultClient.Do(req)\n"
               "\tif err != nil {\n\t\tfmt.Println(\"go error\", err)\n\t\tos.Exit(1)\n\t}\n"
               "\tbody, _ := io.ReadAll(resp.Body)\n"
               "\tfmt.Printf(\"go %d %s\", resp.StatusCode, body)\n"
               "}\n");
    const int rc =
        sh(fmt::format("cd {0} && env -i PATH=/usr/bin:/bin HOME={0} GOCACHE={0}/cache "
                       "GOPATH={0}/gopath GOFLAGS=-mod=mod GOPROXY=off CGO_ENABLED=0 "
                       "go build -o {0}/gohello . >{0}/build.log 2>&1",
                       src));
    return rc == 0 ? src + "/gohello" : std::string();
  }();
  return built;
}

class ProxyLangTest : public UpstreamFixture {
 protected:
  std::vector<std::string> hosts() const override {
    return {"api.example.test", "cargo.example.test"};
  }
  std::vector<std::string> secrets() const override { return {kRealApi}; }
  std::map<std::string, std::string> env() const override { return {{"REAL_API", kRealApi}}; }
  std::string config() const override {
    return "[network]\n"
           "allow = [\"api.example.test\", \"cargo.example.test\"]\n"
           // The registry: read-only (git fetches POST to git-upload-pack), so intercepted.
           "[[network.rule]]\n"
           "host = \"cargo.example.test\"\n"
           "methods = [\"GET\", \"HEAD\", \"POST\"]\n"
           "paths = [\"/pub/**\", \"/cargo/dl/**\"]\n"
           "[credentials.api]\n"
           "env = \"API_TOKEN\"\n"
           "from = \"env:REAL_API\"\n"
           "hosts = [\"api.example.test\"]\n";
  }
  void prepare() override {
    ASSERT_EQ(sh(fmt::format("python3 {}/cargo_registry.py {} cargo.example.test >/dev/null",
                             AGENTBOX_TEST_DATA, up_)),
              0);
  }
};

TEST_P(ProxyLangTest, GoProgramReachesTheHostWithTheRealToken) {
  if (!have("go")) {
    skip("go is not installed (Debian package golang-go)");
    return;
  }
  const std::string bin = go_program();
  ASSERT_FALSE(bin.empty()) << "go build failed: " << slurp(go_dir() + "/build.log");
  ASSERT_EQ(sh(fmt::format("cp {} {}/gohello", bin, w_.ws)), 0);
  chown_tree(w_.ws + "/gohello", w_.as.uid, w_.as.gid);
  Output r =
      box("env | grep -ci '_proxy=' ; echo \"token=$API_TOKEN\"; "
          "./gohello https://api.example.test/echo/go");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_TRUE(r.has_line("0")) << "no proxy variables: " << r.out;
  const std::string token = r.line_starting("token=").substr(6);
  ASSERT_EQ(token.size(), kRealApi.size()) << r.out;
  EXPECT_NE(seen().find("GET /echo/go Bearer " + kRealApi), std::string::npos) << seen();
  EXPECT_TRUE(r.has_line("go 200 you sent: Bearer " + token)) << r.out;
}

TEST_P(ProxyLangTest, CargoFetchesADependencyFromAnHttpsRegistry) {
  if (!have("cargo") || ::access("/usr/bin/cargo", X_OK) != 0) {
    skip("cargo is not installed (Debian package cargo)");
    return;
  }
  const std::string proj = w_.ws + "/cargoproj";
  ASSERT_EQ(::mkdir(proj.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((proj + "/src").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((proj + "/.cargo").c_str(), 0755), 0);
  write_file(proj + "/Cargo.toml",
             "[package]\nname = \"cargoproj\"\nversion = \"0.1.0\"\nedition = \"2018\"\n\n"
             "[dependencies]\nagentboxdemo = \"0.1.0\"\n");
  write_file(proj + "/src/main.rs",
             "fn main() {\n    println!(\"cargo says {}\", agentboxdemo::greeting());\n}\n");
  // Source replacement: crates.io is served by the test's registry (a mirror, as companies run).
  write_file(proj + "/.cargo/config.toml",
             "[source.crates-io]\nreplace-with = \"demo\"\n\n"
             "[source.demo]\nregistry = \"https://cargo.example.test/pub/index.git\"\n");
  chown_tree(proj, w_.as.uid, w_.as.gid);
  Output r =
      box("env | grep -ci '_proxy=' ; cd cargoproj && /usr/bin/cargo build -q 2>&1 && "
          "./target/debug/cargoproj",
          180000);
  EXPECT_TRUE(r.has_line("0")) << "no proxy variables: " << r.out;
  EXPECT_TRUE(r.has_line("cargo says hello from the registry")) << r.out << r.err;
  const std::string s = seen();
  EXPECT_NE(s.find("/pub/index.git/"), std::string::npos) << s;
  EXPECT_NE(s.find("GET /cargo/dl/agentboxdemo/0.1.0/download"), std::string::npos) << s;
}

INSTANTIATE_TEST_SUITE_P(As, ProxyLangTest, ::testing::Values("root", "user"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace agentbox::it
