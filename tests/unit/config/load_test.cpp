// Config loading: every key, layering and origins, golden errors, flags, workspace narrowing.
#include "agentbox/config/load.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "agentbox/base/sys.hpp"
#include "agentbox/config/append.hpp"
#include "agentbox/config/defaults.hpp"
#include "agentbox/config/units.hpp"

namespace agentbox::config {
namespace {

namespace fs = std::filesystem;
const std::string kData = AGENTBOX_TEST_DATA;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/agentbox-config-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string write(const std::string& rel, const std::string& text) const {
    fs::path p = fs::path(path_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

LoadOptions isolated(const TempDir& dir) {
  LoadOptions o;
  o.system_file = dir.path() + "/system.toml";
  o.user_dir = dir.path() + "/user";
  o.profile_dirs = {dir.path() + "/profiles"};
  return o;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

TEST(Units, Sizes) {
  EXPECT_FALSE(parse_size("512"));  // a bare number asks for a unit
  EXPECT_EQ(parse_size("512B"), 512u);
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("4k"), 4096u);
  EXPECT_EQ(parse_size("2G"), 2ull << 30);
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("2GB"), 2ull << 30);
  EXPECT_EQ(parse_size("1T"), 1ull << 40);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("G"));
  EXPECT_FALSE(parse_size("12X"));
  EXPECT_FALSE(parse_size("1.5G"));
  EXPECT_FALSE(parse_size("-1"));
  EXPECT_FALSE(parse_size("99999999999999999999"));
  EXPECT_FALSE(parse_size("99999999999T"));
  EXPECT_EQ(format_size(512ull << 20), "512M");
  EXPECT_EQ(format_size(1000), "1000");
}

TEST(Units, Durations) {
  EXPECT_EQ(parse_duration("90"), 90u);
  EXPECT_EQ(parse_duration("90s"), 90u);
  EXPECT_EQ(parse_duration("5m"), 300u);
  EXPECT_EQ(parse_duration("1h30m"), 5400u);
  EXPECT_EQ(parse_duration("1d"), 86400u);
  EXPECT_FALSE(parse_duration("1h30"));
  EXPECT_FALSE(parse_duration("0s"));
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("5x"));
  EXPECT_FALSE(parse_duration("m"));
  EXPECT_EQ(format_duration(5400), "1h30m");
  EXPECT_EQ(format_duration(59), "59s");
}

TEST(Load, BuiltinsOnly) {
  TempDir dir;
  auto r = load(isolated(dir));
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_TRUE(r->files_read.empty());
  EXPECT_EQ(r->policy.protected_paths.size(), 17u);
  EXPECT_EQ(r->policy.protected_paths[0].value, ".claude/settings.json");
  EXPECT_EQ(r->policy.protected_paths[0].origin.describe(), "built-in");
  EXPECT_EQ(r->policy.home_size.value, 1ull << 30);
  EXPECT_EQ(r->policy.shm_size.value, 256ull << 20);
  // The resource defaults (defaults.hpp): never unlimited unless said so.
  EXPECT_EQ(r->policy.limits.pids->value, kDefaultPids);
  ASSERT_TRUE(r->policy.limits.memory_bytes);
  EXPECT_GT(r->policy.limits.memory_bytes->value, 0u);
  EXPECT_EQ(r->policy.limits.memory_bytes->origin.describe(), "built-in: half the RAM");
}

TEST(Load, ResourceDefaultsComeFromTheHostFacts) {
  Policy p;
  apply_resource_defaults(
      p, {.mem_total = 16ull << 30, .inotify_instances = 128, .inotify_watches = 65536});
  EXPECT_EQ(p.limits.memory_bytes->value, 8ull << 30);
  EXPECT_EQ(p.limits.inotify_instances->value, 64u);
  EXPECT_EQ(p.limits.inotify_watches->value, 32768u);
  Policy unknown;
  apply_resource_defaults(unknown, {});
  EXPECT_FALSE(unknown.limits.memory_bytes);
  EXPECT_FALSE(unknown.limits.inotify_instances);
  EXPECT_EQ(unknown.limits.pids->value, kDefaultPids);
  EXPECT_EQ(default_inodes(1ull << 30), 262144u);
  EXPECT_EQ(default_inodes(kUnlimited), kUnlimited);
}

TEST(Load, UnlimitedIsSpelledOut) {
  TempDir dir;
  dir.write("c.toml",
            "[sandbox]\nhome_size = \"unlimited\"\nshm_inodes = \"unlimited\"\n"
            "[limits]\nmemory = \"unlimited\"\npids = \"unlimited\"\n"
            "inotify_instances = \"unlimited\"\n");
  LoadOptions o = isolated(dir);
  o.system_file = dir.path() + "/c.toml";
  o.flags.memory = "unlimited";
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_EQ(r->policy.home_size.value, kUnlimited);
  EXPECT_EQ(r->policy.shm_inodes->value, kUnlimited);
  EXPECT_EQ(r->policy.limits.memory_bytes->value, kUnlimited);
  EXPECT_EQ(r->policy.limits.memory_bytes->origin.describe(), "--memory");
  EXPECT_EQ(r->policy.limits.pids->value, kUnlimited);
  EXPECT_FALSE(imposed(r->policy.limits.pids));
  EXPECT_FALSE(imposed(r->policy.limits.inotify_instances));
  std::string text = explain(*r);
  EXPECT_NE(text.find("unlimited"), std::string::npos) << text;
  dir.write("zero.toml", "[sandbox]\ntmp_size = 0\n");
  o.system_file = dir.path() + "/zero.toml";
  auto zero = load(o);
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().render().find("must not be 0"), std::string::npos);
}

TEST(Load, UnprotectDropsABuiltInButNeverGitMetadata) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.system_file = dir.write("sys.toml", "[sandbox]\nunprotect = [\".vscode/\", \".envrc\"]\n");
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  for (const auto& p : r->policy.protected_paths) {
    EXPECT_NE(p.value, ".vscode");
    EXPECT_NE(p.value, ".envrc");
  }
  EXPECT_EQ(r->policy.protected_paths.size(), 15u);
  dir.write("sys.toml", "[sandbox]\nunprotect = [\".git/config\", \"nope\"]\n");
  auto bad = load(o);
  ASSERT_FALSE(bad);
  std::string msg = bad.error().render();
  EXPECT_NE(msg.find("`.git/config` is git metadata, always protected"), std::string::npos) << msg;
  EXPECT_NE(msg.find("`nope` is not protected"), std::string::npos) << msg;
}

TEST(Load, EveryKeyOfAValidFile) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.system_file = kData + "/good.toml";
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  const Policy& p = r->policy;
  EXPECT_EQ(p.workspace->value, "/srv/work");
  EXPECT_EQ(p.workspace->origin.describe(), kData + "/good.toml:4:13");
  EXPECT_EQ(p.ro.at(0).value, "~/.gitconfig");
  EXPECT_EQ(p.rw.at(0).value, "~/.cache/pip");
  EXPECT_EQ(p.env.at(0).value, "ANTHROPIC_BASE_URL");
  EXPECT_EQ(p.setenv.at("EDITOR").value, "vi");
  EXPECT_EQ(p.protected_paths.back().value, "Makefile.local");
  EXPECT_EQ(p.home_size.value, 512ull << 20);
  EXPECT_EQ(p.tmp_size.value, 2ull << 30);
  EXPECT_EQ(p.hostname.value, "box");
  EXPECT_EQ(p.limits.timeout_seconds->value, 5400u);
  EXPECT_EQ(p.limits.memory_bytes->value, 4ull << 30);
  EXPECT_EQ(p.limits.pids->value, 512u);
  EXPECT_DOUBLE_EQ(p.limits.cpus->value, 1.5);
  EXPECT_EQ(p.limits.nofile->value, 4096u);
  EXPECT_EQ(p.limits.file_size_bytes->value, 10ull << 30);
  EXPECT_EQ(p.seccomp_allow.at(0).value, "ptrace");
  ASSERT_EQ(p.net_allow.size(), 3u);
  EXPECT_EQ(p.raw_tcp.at(0).value, "github.com:22");
  EXPECT_EQ(p.connect_to.at(0).value, "api.example.com:443:127.0.0.1:8443");
  EXPECT_EQ(p.upstream_ca.at(0).value, "/etc/corp/root.pem");
  EXPECT_EQ(p.trust_ca.at(0).value, "/srv/test/ca.pem");
  ASSERT_EQ(p.http_rules.size(), 1u);
  EXPECT_EQ(p.http_rules[0].host, "docs.rs");
  EXPECT_EQ(p.http_rules[0].methods, (std::vector<std::string>{"GET", "HEAD"}));
  EXPECT_EQ(p.http_rules[0].max_body, 1u << 20);
  const Credential& gh = p.credentials.at("github");
  EXPECT_EQ(gh.env, "GITHUB_TOKEN");
  EXPECT_EQ(gh.from.to_string(), "env:GITHUB_TOKEN");
  EXPECT_EQ(gh.hosts.size(), 2u);
  EXPECT_EQ(gh.inject.to_string(), "basic");
  EXPECT_EQ(gh.ttl_seconds, 600u);
  ASSERT_EQ(p.token_files.size(), 1u);
  EXPECT_EQ(p.token_files[0].json_fields.at(0), "oauth.access_token");
}

TEST(Load, GoldenErrorsReportEveryProblemInFileOrder) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.system_file = kData + "/bad.toml";
  auto r = load(o);
  ASSERT_FALSE(r);
  std::string got = replace_all(r.error().render(), kData + "/", "DATA/");
  auto expected = base::read_file(kData + "/bad.expected");
  ASSERT_TRUE(expected);
  EXPECT_EQ(got, *expected);
}

TEST(Load, TomlSyntaxErrorHasLineAndColumn) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.system_file = dir.write("system.toml", "[sandbox]\nro = [\"/a\",\n  oops ]\n");
  auto r = load(o);
  ASSERT_FALSE(r);
  std::string msg = r.error().render();
  EXPECT_NE(msg.find(dir.path() + "/system.toml:3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid TOML"), std::string::npos) << msg;
}

TEST(Load, WrongTypeSaysWhatWasExpected) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.system_file = dir.write("system.toml", "[sandbox]\nro = \"/a\"\n");
  auto r = load(o);
  ASSERT_FALSE(r);
  EXPECT_NE(
      r.error().message().find(":2:6: `sandbox.ro` must be an array of strings, found a string"),
      std::string::npos)
      << r.error().message();
}

TEST(Load, LayersAccumulateListsOverrideScalarsAndKeepOrigins) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml", "[sandbox]\nro = [\"/sys-ro\"]\nhostname = \"sys\"\n");
  dir.write("user/config.toml", "[sandbox]\nro = [\"/user-ro\"]\nhostname = \"user\"\n");
  dir.write("profiles/p.toml", "[sandbox]\nro = [\"/prof-ro\"]\n[limits]\npids = 10\n");
  o.flags.profiles = {"p"};
  o.flags.ro = {"/flag-ro"};
  o.flags.pids = "20";
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  const Policy& p = r->policy;
  ASSERT_EQ(p.ro.size(), 4u);
  EXPECT_EQ(p.ro[0].value, "/sys-ro");
  EXPECT_EQ(p.ro[1].value, "/user-ro");
  EXPECT_EQ(p.ro[2].value, "/prof-ro");
  EXPECT_EQ(p.ro[3].value, "/flag-ro");
  EXPECT_EQ(p.ro[3].origin.describe(), "--ro");
  EXPECT_EQ(p.ro[1].origin.describe(), dir.path() + "/user/config.toml:2:7");
  EXPECT_EQ(p.hostname.value, "user");
  EXPECT_EQ(p.limits.pids->value, 20u);
  EXPECT_EQ(p.limits.pids->origin.describe(), "--pids");
  EXPECT_EQ(r->files_read.size(), 3u);
}

constexpr const char* kCred =
    "[credentials.anthropic]\nenv = \"ANTHROPIC_API_KEY\"\nfrom = \"{}\"\nhosts = "
    "[\"api.anthropic.com\"]\ninject = \"header:x-api-key\"\n";

std::string cred_from(const std::string& from) {
  return replace_all(kCred, "{}", from);
}

// A credential's `from` is parsed once (policy::SourceSpec); the message says what is wrong with
// it, at the value's file:line:col, and a missing `from` is named as missing.
TEST(Load, CredentialSourceErrorsNameTheValue) {
  const std::pair<const char*, const char*> cases[] = {
      {"vault:x", ":3:8: `from`: `vault:x` is not env:NAME, file:PATH or cmd:COMMAND"},
      {"env:1X", ":3:8: `from`: `env:1X`: `1X` is not a variable name"},
      {"file:key", ":3:8: `from`: `file:key`: the path must be absolute or start with ~"},
      {"cmd:", ":3:8: `from`: `cmd:`: names no command"},
  };
  for (const auto& [from, message] : cases) {
    TempDir dir;
    LoadOptions o = isolated(dir);
    o.system_file = dir.write("system.toml", cred_from(from));
    auto r = load(o);
    ASSERT_FALSE(r) << from;
    EXPECT_NE(r.error().message().find(message), std::string::npos) << r.error().message();
    EXPECT_EQ(r.error().message().find("needs `from`"), std::string::npos) << r.error().message();
  }
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.system_file = dir.write("system.toml", "[credentials.k]\nenv = \"K\"\nhosts = [\"a.test\"]\n");
  auto r = load(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("[credentials.k] needs `from`"), std::string::npos)
      << r.error().message();
}

// Issue 15 item 5: the user's credential is not replaced by a shipped profile's of the same name.
TEST(Load, UsersCredentialWinsOverAShippedProfile) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("user/config.toml", cred_from("file:~/.anthropic-key"));
  dir.write("profiles/claude.toml", cred_from("env:ANTHROPIC_API_KEY"));
  o.flags.profiles = {"claude"};
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  const Credential& c = r->policy.credentials.at("anthropic");
  EXPECT_EQ(c.from.to_string(), "file:~/.anthropic-key");
  EXPECT_EQ(c.origin.describe(), dir.path() + "/user/config.toml:1:1");
  ASSERT_EQ(r->notes.size(), 1u);
  EXPECT_NE(r->notes[0].find("credential `anthropic`: yours (" + dir.path() +
                             "/user/config.toml:1:1) is kept; profile `claude`'s (" + dir.path() +
                             "/profiles/claude.toml:1:1) is dropped"),
            std::string::npos)
      << r->notes[0];
  EXPECT_NE(explain(*r).find("is dropped"), std::string::npos);
}

TEST(Load, UsersOwnProfileStillReplacesACredential) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("user/config.toml", cred_from("file:~/.anthropic-key"));
  dir.write("user/profiles/mine.toml", cred_from("cmd:print-key"));
  o.flags.profiles = {"mine"};
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_EQ(r->policy.credentials.at("anthropic").from.to_string(), "cmd:print-key");
  EXPECT_TRUE(r->notes.empty());
}

TEST(Load, RepeatedProfilesLayerInOrder) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("profiles/a.toml",
            "[sandbox]\nro = [\"/a\"]\nhostname = \"a\"\n" + cred_from("env:A_KEY"));
  dir.write("profiles/b.toml",
            "[sandbox]\nro = [\"/b\"]\nhostname = \"b\"\n" + cred_from("env:B_KEY"));
  o.flags.profiles = {"a", "b"};
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  ASSERT_EQ(r->policy.ro.size(), 2u);
  EXPECT_EQ(r->policy.ro[0].value, "/a");
  EXPECT_EQ(r->policy.ro[1].value, "/b");
  EXPECT_EQ(r->policy.hostname.value, "b");
  EXPECT_EQ(r->policy.credentials.at("anthropic").from.to_string(),
            "env:B_KEY");  // shipped over shipped
  EXPECT_TRUE(r->notes.empty());
  EXPECT_EQ(r->files_read.size(), 2u);
  o.flags.profiles = {"b", "a"};
  r = load(o);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->policy.hostname.value, "a");
  o.flags.profiles = {"a", "nope"};
  EXPECT_FALSE(load(o));
}

TEST(Load, NoConfigSkipsSystemAndUserFiles) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml", "[sandbox]\nro = [\"/sys-ro\"]\n");
  o.no_user_config = true;
  auto r = load(o);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->policy.ro.empty());
}

TEST(Load, UnknownProfileSuggestsTheClosest) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("profiles/claude.toml", "");
  dir.write("profiles/codex.toml", "");
  o.flags.profiles = {"claud"};
  auto r = load(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().render(),
            "agentbox: error: --profile: no profile named `claud`\n      did you mean `claude`?\n");
  o.flags.profiles = {"../../etc/passwd"};
  r = load(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("available: claude, codex"), std::string::npos);
}

TEST(Load, BadFlagsNameTheFlag) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.flags.memory = "2X";
  o.flags.timeout = "soon";
  o.flags.env = {"1BAD"};
  o.flags.allow = {"bad host"};
  o.flags.connect_to = {"a.example:443:127.0.0.1"};
  o.flags.pids = "-3";
  auto r = load(o);
  ASSERT_FALSE(r);
  std::string m = r.error().render();
  for (const char* needle :
       {"--memory: invalid size `2X`", "--timeout: invalid duration `soon`",
        "--env: `1BAD` is not a variable name",
        "--allow: ", "--connect-to: `a.example:443:127.0.0.1`: expected HOST:PORT:ADDR:PORT",
        "--pids: invalid count `-3`"}) {
    EXPECT_NE(m.find(needle), std::string::npos) << needle << "\n" << m;
  }
}

TEST(Load, EnvFlagPassesOrSets) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.flags.env = {"FOO", "BAR=baz=qux"};
  auto r = load(o);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->policy.env.at(0).value, "FOO");
  EXPECT_EQ(r->policy.setenv.at("BAR").value, "baz=qux");
}

// Issue 14 item 9: an allow entry may be a table naming a host to inspect.
TEST(Load, AllowTablesMarkHostsToInspect) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml",
            "[network]\nallow = [\"a.example\", { host = \"cdn.example:443\", inspect = true },"
            " { host = \"b.example\" }]\n");
  o.flags.inspect_all = true;
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  const Policy& p = r->policy;
  ASSERT_EQ(p.net_allow.size(), 3u);
  EXPECT_EQ(p.net_allow[0].value, "cdn.example:443");  // tables first, then the strings
  ASSERT_EQ(p.inspect.size(), 1u);
  EXPECT_EQ(p.inspect[0].value, "cdn.example:443");
  EXPECT_TRUE(p.inspect_all.value);
  for (const char* bad : {"allow = [{ inspect = true }]", "allow = [{ host = \"x y\" }]",
                          "allow = [{ host = \"a.example\", inspect = 1 }]",
                          "allow = [{ host = \"a.example\", inspekt = true }]"}) {
    dir.write("system.toml", std::string("[network]\n") + bad + "\n");
    auto e = load(isolated(dir));
    EXPECT_FALSE(e) << bad;
  }
  dir.write("system.toml", "[network]\nallow = [\"a.example\"]\n");
  auto w = load(isolated(dir));
  ASSERT_TRUE(w);
  std::string ws = dir.write("ws/.agentbox.toml",
                             "[network]\nallow = [{ host = \"a.example\", inspect = true }]\n");
  auto st = narrow_with_workspace_file(*w, ws);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("cannot be set by a workspace file"), std::string::npos);
}

TEST(Narrow, WorkspaceFileMayKeepASubsetLowerLimitsAndProtectMore) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml",
            "[sandbox]\nrw = [\"/a\", \"/b\"]\n[network]\nallow = [\"x.example\", \"y.example\"]\n"
            "[limits]\nmemory = \"4G\"\n");
  auto r = load(o);
  ASSERT_TRUE(r);
  std::string ws = dir.write("ws/.agentbox.toml",
                             "[sandbox]\nrw = [\"/a\"]\nprotected = [\"build.sh\"]\n"
                             "[network]\nallow = [\"y.example\"]\n[limits]\nmemory = \"1G\"\n"
                             "timeout = \"10m\"\n");
  ASSERT_TRUE(narrow_with_workspace_file(*r, ws));
  const Policy& p = r->policy;
  ASSERT_EQ(p.rw.size(), 1u);
  EXPECT_EQ(p.rw[0].value, "/a");
  ASSERT_EQ(p.net_allow.size(), 1u);
  EXPECT_EQ(p.net_allow[0].value, "y.example");
  EXPECT_EQ(p.limits.memory_bytes->value, 1ull << 30);
  EXPECT_EQ(p.limits.timeout_seconds->value, 600u);
  EXPECT_EQ(p.protected_paths.back().value, "build.sh");
  EXPECT_TRUE(narrow_with_workspace_file(*r, dir.path() + "/missing.toml"));
}

// [budget] from a file (issue 17; the integration tests set budgets by flag): every key loads
// with its origin, and a workspace file may lower a budget, never raise one.
TEST(Budget, KeysLoadAndAWorkspaceFileMayOnlyLowerThem) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml",
            "[budget]\negress = \"500M\"\nrequests_per_host = 100\nspend = 5\n"
            "connections_per_minute = 600\n");
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  const Budget& b = r->policy.budget;
  EXPECT_EQ(b.egress->value, 500ull << 20);
  EXPECT_EQ(b.requests_per_host->value, 100u);
  EXPECT_DOUBLE_EQ(b.spend->value, 5.0);
  EXPECT_EQ(b.connections_per_minute->value, 600u);
  EXPECT_NE(b.spend->origin.describe().find("system.toml"), std::string::npos);
  std::string ok = dir.write("ok/.agentbox.toml", "[budget]\nspend = 1.5\negress = \"1M\"\n");
  ASSERT_TRUE(narrow_with_workspace_file(*r, ok));
  EXPECT_DOUBLE_EQ(r->policy.budget.spend->value, 1.5);
  EXPECT_EQ(r->policy.budget.egress->value, 1ull << 20);
  for (const char* bad : {"[budget]\nspend = 6\n", "[budget]\nrequests_per_host = 101\n",
                          "[budget]\nconnections_per_minute = 601\n"}) {
    std::string ws = dir.write("bad/.agentbox.toml", bad);
    EXPECT_FALSE(narrow_with_workspace_file(*r, ws)) << bad;
  }
}

TEST(Audit, KeysLoadAndAWorkspaceFileMayOnlyRequireTheLog) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml", "[audit]\nmax_size = \"1M\"\nkeep_sessions = 5\nmax_age = \"2d\"\n");
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  const AuditSettings& a = r->policy.audit;
  EXPECT_FALSE(a.required.value);
  EXPECT_EQ(a.max_size.value, 1u << 20);
  EXPECT_EQ(a.keep_sessions.value, 5u);
  EXPECT_EQ(a.max_age_seconds.value, 2u * 86400);
  std::string ok = dir.write("ok/.agentbox.toml", "[audit]\nrequired = true\n");
  ASSERT_TRUE(narrow_with_workspace_file(*r, ok));
  EXPECT_TRUE(r->policy.audit.required.value);
  for (const char* bad : {"[audit]\nmax_size = \"64K\"\n", "[audit]\nkeep_sessions = 1\n",
                          "[audit]\nmax_age = \"1s\"\n", "[audit]\nrequired = false\n"}) {
    std::string ws = dir.write("bad/.agentbox.toml", bad);
    auto st = narrow_with_workspace_file(*r, ws);
    ASSERT_FALSE(st) << bad;
    EXPECT_NE(st.error().render().find("cannot be set by a workspace file"), std::string::npos)
        << st.error().render();
  }
  dir.write("system.toml", "[audit]\nmax_size = \"1K\"\n");
  auto small = load(o);
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().render().find("`audit.max_size` must be at least 64K"),
            std::string::npos);
  o.flags.audit_required = true;
  dir.write("system.toml", "");
  auto flag = load(o);
  ASSERT_TRUE(flag);
  EXPECT_TRUE(flag->policy.audit.required.value);
  EXPECT_EQ(flag->policy.audit.required.origin.source, "--audit-required");
}

TEST(Narrow, WorkspaceFileCannotWiden) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml", "[limits]\nmemory = \"1G\"\n[network]\nallow = [\"x.example\"]\n");
  auto r = load(o);
  ASSERT_TRUE(r);
  std::string ws = dir.write(".agentbox.toml",
                             "[network]\nallow = [\"evil.example\"]\nconnect_to = "
                             "[\"x.example:443:127.0.0.1:1\"]\n[limits]\nmemory = \"8G\"\n"
                             "[sandbox]\nsetenv = { A = \"b\" }\nrw = [\"/home\"]\n"
                             "[credentials.x]\nenv = \"X\"\nfrom = \"env:X\"\nhosts = [\"a.b\"]\n");
  Policy before = r->policy;
  auto st = narrow_with_workspace_file(*r, ws);
  ASSERT_FALSE(st);
  std::string m = st.error().render();
  for (const char* needle :
       {":2:10: `network.allow`: `evil.example` is not granted",
        ":3:1: `network.connect_to` cannot be set by a workspace file",
        ":5:10: `limits.memory` may only be lowered", ":7:1: `sandbox.setenv` cannot be set",
        ":8:7: `sandbox.rw`: `/home` is not granted", "`credentials` cannot be set"}) {
    EXPECT_NE(m.find(needle), std::string::npos) << needle << "\n" << m;
  }
}

TEST(Terminal, FilterOnByDefaultAllowListValidatedAndOnlyNarrowedByTheWorkspace) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  auto plain = load(o);
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->policy.terminal_filter.value);
  EXPECT_TRUE(plain->policy.terminal_allow.empty());

  dir.write("system.toml", "[terminal]\nallow = [\"osc8\", \"osc52\", \"osc133\"]\n");
  auto r = load(o);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->policy.terminal_allow.size(), 3u);
  EXPECT_EQ(r->policy.terminal_allow[2].value, "osc133");
  std::string ws = dir.write("ws/.agentbox.toml", "[terminal]\nallow = [\"osc8\"]\n");
  ASSERT_TRUE(narrow_with_workspace_file(*r, ws));
  ASSERT_EQ(r->policy.terminal_allow.size(), 1u);
  ws = dir.write("ws/.agentbox.toml", "[terminal]\nfilter = false\nallow = [\"osc52\"]\n");
  auto st = narrow_with_workspace_file(*r, ws);
  ASSERT_FALSE(st);
  std::string m = st.error().render();
  EXPECT_NE(m.find(":2:1: `terminal.filter = false` cannot be set by a workspace file"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("`terminal.allow`: `osc52` is not granted"), std::string::npos) << m;

  dir.write("system.toml", "[terminal]\nfilter = \"no\"\nallow = [\"links\", \"osc70000\"]\n");
  auto bad = load(o);
  ASSERT_FALSE(bad);
  m = bad.error().render();
  EXPECT_NE(m.find("`terminal.filter` must be true or false, found a string"), std::string::npos)
      << m;
  EXPECT_NE(m.find("`terminal.allow`: `links` is not an OSC kind"), std::string::npos) << m;
  EXPECT_NE(m.find("`osc70000` is not an OSC kind"), std::string::npos) << m;

  dir.write("system.toml", "[terminal]\nfilter = false\n");
  auto off = load(o);
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->policy.terminal_filter.value);
  EXPECT_NE(explain(*off).find("[terminal]\n  filter            false"), std::string::npos)
      << explain(*off);
}

// Every key docs/CONFIG.md ("The workspace file") lists as refused, one file each so that each
// refusal is shown alone: the error names the key at its line, and the policy keeps its grants.
TEST(Narrow, WorkspaceFileRefusesEveryGrantOnlyKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"[sandbox]\nworkspace = \"/tmp\"\n", ":2:1: `sandbox.workspace` cannot be set"},
      {"[sandbox]\nsetenv = { A = \"b\" }\n", ":2:1: `sandbox.setenv` cannot be set"},
      {"[sandbox]\nsys = true\n", ":2:1: `sandbox.sys = true` cannot be set"},
      {"[network]\nconnect_to = [\"x.example:443:127.0.0.1:1\"]\n",
       ":2:1: `network.connect_to` cannot be set"},
      {"[network]\nhost_ports = [\"3000\"]\n", ":2:1: `network.host_ports` cannot be set"},
      {"[network]\npublish = [\"8000\"]\n", ":2:1: `network.publish` cannot be set"},
      {"[network]\nupstream_ca = [\"/tmp/ca.pem\"]\n", ":2:1: `network.upstream_ca` cannot be set"},
      {"[network]\ntrust_ca = [\"/tmp/ca.pem\"]\n", ":2:1: `network.trust_ca` cannot be set"},
      {"[[network.rule]]\nhost = \"x.example\"\n", ":1:1: `network.rule` cannot be set"},
      {"[credentials.x]\nenv = \"X\"\nfrom = \"env:X\"\nhosts = [\"x.example\"]\n",
       ":1:1: `credentials` cannot be set"},
      {"[[token_file]]\npath = \"/tmp/t.json\"\nhosts = [\"x.example\"]\n",
       ":1:1: `token_file` cannot be set"},
  };
  for (const auto& [text, needle] : cases) {
    TempDir dir;
    LoadOptions o = isolated(dir);
    dir.write("system.toml", "[network]\nallow = [\"x.example\"]\n");
    auto r = load(o);
    ASSERT_TRUE(r);
    auto st = narrow_with_workspace_file(*r, dir.write(".agentbox.toml", text));
    ASSERT_FALSE(st) << text;
    std::string m = st.error().render();
    EXPECT_NE(m.find(std::string(".agentbox.toml") + needle), std::string::npos) << text << "\n"
                                                                                 << m;
  }
}

// sandbox.review: a workspace file may turn review mode on (narrower), never off.
TEST(Narrow, WorkspaceFileMayTurnReviewOnNeverOff) {
  {
    TempDir dir;
    LoadOptions o = isolated(dir);
    auto r = load(o);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->policy.review.value);
    ASSERT_TRUE(
        narrow_with_workspace_file(*r, dir.write(".agentbox.toml", "[sandbox]\nreview = true\n")));
    EXPECT_TRUE(r->policy.review.value);
  }
  TempDir dir;
  LoadOptions o = isolated(dir);
  o.flags.review = true;
  auto r = load(o);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->policy.review.value);
  EXPECT_EQ(r->policy.review.origin.source, "--review");
  auto st =
      narrow_with_workspace_file(*r, dir.write(".agentbox.toml", "[sandbox]\nreview = false\n"));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("`sandbox.review = false` cannot be set"), std::string::npos)
      << st.error().render();
}

TEST(Narrow, WorkspaceFileThatIsALinkIsRefusedWithoutReadingTheTarget) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  auto r = load(o);
  ASSERT_TRUE(r);
  // A planted link to a secret must not be parsed (its lines would be quoted in errors).
  std::string secret = dir.write("secret.txt", "ghp_realsecretvalue = 1\n");
  std::string link = dir.path() + "/.agentbox.toml";
  ASSERT_EQ(::symlink(secret.c_str(), link.c_str()), 0);
  auto st = narrow_with_workspace_file(*r, link);
  ASSERT_FALSE(st);
  std::string m = st.error().render();
  EXPECT_NE(m.find("not a link"), std::string::npos) << m;
  EXPECT_EQ(m.find("ghp_realsecretvalue"), std::string::npos) << m;
}

TEST(Narrow, WorkspaceFileTooLargeIsRefused) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  auto r = load(o);
  ASSERT_TRUE(r);
  std::string big = dir.write(".agentbox.toml", std::string(300 * 1024, '#'));
  auto st = narrow_with_workspace_file(*r, big);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("at most 256 KiB"), std::string::npos);
}

TEST(Explain, EachLineNamesItsOrigin) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml", "[sandbox]\nro = [\"/etc/extra\"]\n");
  o.flags.rw = {"/data"};
  o.flags.allow = {"api.example.com"};
  auto r = load(o);
  ASSERT_TRUE(r);
  std::string e = explain(*r);
  auto line_with = [&](const std::string& needle) {
    size_t pos = e.find(needle);
    EXPECT_NE(pos, std::string::npos) << needle << "\n" << e;
    size_t end = e.find('\n', pos);
    size_t start = e.rfind('\n', pos) + 1;
    return e.substr(start, end - start);
  };
  EXPECT_NE(line_with("/etc/extra").find("# " + dir.path() + "/system.toml:2:7"),
            std::string::npos);
  EXPECT_NE(line_with("/data").find("# --rw"), std::string::npos);
  EXPECT_NE(line_with("api.example.com").find("# --allow"), std::string::npos);
  EXPECT_NE(line_with(".git/hooks").find("# built-in"), std::string::npos);
}

TEST(Profiles, EveryShippedProfileLoads) {
  auto names = available_profiles({std::string(AGENTBOX_SOURCE_DIR) + "/profiles"});
  ASSERT_GE(names.size(), 5u);
  TempDir dir;
  for (const auto& n : names) {
    LoadOptions o = isolated(dir);
    o.profile_dirs = {std::string(AGENTBOX_SOURCE_DIR) + "/profiles"};
    o.flags.profiles = {n};
    auto r = load(o);
    EXPECT_TRUE(r) << n << ": " << (r ? "" : r.error().render());
  }
}

// `network.mode`: "none" from any layer (a workspace file too: it narrows), never back to
// "filtered" from a workspace file; the flag wins; junk names the key and the flag.
TEST(Network, ModeNoneNarrowsAndFilteredIsNotAWorkspaceChoice) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  auto r = load(o);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->policy.network_none.value);
  std::string none = dir.write("a/.agentbox.toml", "[network]\nmode = \"none\"\n");
  ASSERT_TRUE(narrow_with_workspace_file(*r, none));
  EXPECT_TRUE(r->policy.network_none.value);

  dir.write("system.toml", "[network]\nmode = \"none\"\n");
  auto sys = load(o);
  ASSERT_TRUE(sys);
  EXPECT_TRUE(sys->policy.network_none.value);
  std::string back = dir.write("b/.agentbox.toml", "[network]\nmode = \"filtered\"\n");
  auto st = narrow_with_workspace_file(*sys, back);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("cannot be set by a workspace file"), std::string::npos)
      << st.error().render();

  o.flags.network = "filtered";
  auto flag = load(o);
  ASSERT_TRUE(flag);
  EXPECT_FALSE(flag->policy.network_none.value);
  EXPECT_EQ(flag->policy.network_none.origin.source, "--network");

  dir.write("system.toml", "[network]\nmode = \"off\"\n");
  o.flags.network.reset();
  auto junk = load(o);
  ASSERT_FALSE(junk);
  EXPECT_NE(junk.error().render().find("`network.mode`: `off`"), std::string::npos)
      << junk.error().render();
  dir.write("system.toml", "");
  o.flags.network = "offline";
  auto junk_flag = load(o);
  ASSERT_FALSE(junk_flag);
  EXPECT_NE(junk_flag.error().render().find("--network"), std::string::npos)
      << junk_flag.error().render();
}

// [persist] (issue 15): HOME-relative directories only; the profile's name scopes the state.
TEST(Persist, PathsDropsStripsAndTheProfileScope) {
  TempDir dir;
  dir.write("profiles/p.toml",
            "[persist]\npaths = [\"~/.agent\", \"~/.config/x/\"]\n"
            "drop = [\"~/.agent/hooks.json\"]\n"
            "strip = { \"~/.agent/cfg.json\" = [\"hooks\", \"projects.*.mcp\"] }\n");
  LoadOptions o = isolated(dir);
  auto none = load(o);
  ASSERT_TRUE(none) << none.error().render();
  EXPECT_EQ(none->policy.state_scope, "default");
  o.flags.profiles = {"p"};
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_EQ(r->policy.state_scope, "p");
  ASSERT_EQ(r->policy.persist.size(), 2u);
  EXPECT_EQ(r->policy.persist[0].value, "~/.agent");
  ASSERT_EQ(r->policy.persist_drop.size(), 1u);
  ASSERT_EQ(r->policy.persist_strip.count("~/.agent/cfg.json"), 1u);
  EXPECT_EQ(r->policy.persist_strip.at("~/.agent/cfg.json").size(), 2u);
  for (const char* bad : {"/etc", "~", "~/", "~/../x", "~/a/./b", "~user/x", "rel"}) {
    dir.write("profiles/p.toml", std::string("[persist]\npaths = [\"") + bad + "\"]\n");
    auto e = load(o);
    ASSERT_FALSE(e) << bad;
    EXPECT_NE(e.error().message().find("persist.paths"), std::string::npos) << e.error().message();
  }
}

// Issue 15, item 2: what the shipped agent profiles must say for an interactive start.
TEST(Profiles, ShippedAgentsKeepTheirStateAndStartWithoutDialogs) {
  TempDir dir;
  auto profile = [&](const char* name) {
    LoadOptions o = isolated(dir);
    o.profile_dirs = {std::string(AGENTBOX_SOURCE_DIR) + "/profiles"};
    o.flags.profiles = {name};
    auto r = load(o);
    EXPECT_TRUE(r) << name;
    return r ? r->policy : Policy{};
  };
  auto has = [](const std::vector<Sourced<std::string>>& l, const std::string& v) {
    return std::any_of(l.begin(), l.end(), [&](const auto& e) { return e.value == v; });
  };
  const Policy claude = profile("claude");
  EXPECT_TRUE(has(claude.persist, "~/.claude"));
  EXPECT_TRUE(has(claude.persist_drop, "~/.claude/settings.json"));
  EXPECT_EQ(claude.setenv.at("IS_SANDBOX").value, "1");
  EXPECT_EQ(claude.setenv.at("CLAUDE_CONFIG_DIR").value, "~/.claude");
  EXPECT_TRUE(has(claude.net_allow, "platform.claude.com"));
  EXPECT_FALSE(has(claude.net_allow, "statsig.anthropic.com"));
  EXPECT_TRUE(std::any_of(claude.http_rules.begin(), claude.http_rules.end(), [](const auto& r) {
    return r.methods == std::vector<std::string>{"HEAD"} &&
           r.paths == std::vector<std::string>{"/"};
  }));
  const Policy codex = profile("codex");
  EXPECT_TRUE(has(codex.persist, "~/.codex"));
  EXPECT_FALSE(has(codex.env, "CODEX_HOME")) << "the caller's CODEX_HOME names a hidden directory";
  EXPECT_EQ(codex.setenv.at("CODEX_HOME").value, "~/.codex");
  ASSERT_FALSE(codex.http_rules.empty());
  EXPECT_FALSE(codex.http_rules[0].paths.empty());
  const Policy gemini = profile("gemini");
  EXPECT_TRUE(has(gemini.persist, "~/.gemini"));
  EXPECT_EQ(gemini.setenv.at("GEMINI_CLI_TRUST_WORKSPACE").value, "true");
  EXPECT_FALSE(has(gemini.ro, "~/.gemini/settings.json")) << "gemini writes its auth choice there";
  EXPECT_TRUE(has(profile("aider").persist, "~/.aider"));
}

// limits.cpu_priority: background by default; the user's file, a profile or --cpu-priority may say
// normal; a workspace file may only keep background; anything else names the key or the flag.
TEST(Limits, CpuPriorityIsBackgroundByDefaultAndOnlyKeptByAWorkspaceFile) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_TRUE(r->policy.limits.cpu_background.value);
  EXPECT_EQ(r->policy.limits.cpu_background.origin.source, "built-in");
  dir.write("system.toml", "[limits]\ncpu_priority = \"normal\"\n");
  r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_FALSE(r->policy.limits.cpu_background.value);
  std::string keep = dir.write("ok/.agentbox.toml", "[limits]\ncpu_priority = \"background\"\n");
  ASSERT_TRUE(narrow_with_workspace_file(*r, keep));
  EXPECT_TRUE(r->policy.limits.cpu_background.value);
  std::string widen = dir.write("bad/.agentbox.toml", "[limits]\ncpu_priority = \"normal\"\n");
  auto st = narrow_with_workspace_file(*r, widen);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().render().find("cannot be set by a workspace file"), std::string::npos)
      << st.error().render();
  dir.write("system.toml", "[limits]\ncpu_priority = \"idle\"\n");
  auto bad = load(o);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().render().find(
                R"(`limits.cpu_priority`: `idle` is neither "background" nor "normal")"),
            std::string::npos)
      << bad.error().render();
  dir.write("system.toml", "");
  o.flags.cpu_priority = "normal";
  auto flag = load(o);
  ASSERT_TRUE(flag);
  EXPECT_FALSE(flag->policy.limits.cpu_background.value);
  EXPECT_EQ(flag->policy.limits.cpu_background.origin.source, "--cpu-priority");
  o.flags.cpu_priority = "low";
  auto bad_flag = load(o);
  ASSERT_FALSE(bad_flag);
  EXPECT_NE(bad_flag.error().render().find("--cpu-priority"), std::string::npos);
}

TEST(Telemetry, KeysAndLabelsLoadAndAWorkspaceFileMaySetNeither) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml",
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/logs\"\n"
            "otlp_headers = { \"x-api-key\" = \"k\" }\notlp_queue = \"1M\"\njournald = true\n"
            "[labels]\nteam = \"infra\"\npipeline = \"1\"\n");
  o.flags.labels = {"pipeline=42", "ci.job=build-7"};
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  const Policy& p = r->policy;
  EXPECT_EQ(p.telemetry.otlp_endpoint->value, "http://127.0.0.1:4318/v1/logs");
  ASSERT_EQ(p.telemetry.otlp_headers.size(), 1u);
  EXPECT_EQ(p.telemetry.otlp_headers[0].first, "x-api-key");
  EXPECT_EQ(p.telemetry.otlp_queue.value, 1u << 20);
  EXPECT_TRUE(p.telemetry.journald.value);
  ASSERT_EQ(p.labels.size(), 3u);
  // toml11 does not keep a table's order: look the labels up by key.
  auto label = [&](const std::string& k) {
    auto it =
        std::find_if(p.labels.begin(), p.labels.end(), [&](const auto& l) { return l.first == k; });
    return it == p.labels.end() ? nullptr : &it->second;
  };
  ASSERT_NE(label("team"), nullptr);
  ASSERT_NE(label("pipeline"), nullptr);
  EXPECT_EQ(label("pipeline")->value, "42");  // the flag wins over the file
  EXPECT_EQ(label("pipeline")->origin.source, "--label");
  ASSERT_NE(label("ci.job"), nullptr);
  for (const char* bad : {"[telemetry]\notlp_endpoint = \"http://evil.test/\"\n",
                          "[telemetry]\njournald = false\n", "[labels]\nteam = \"x\"\n"}) {
    std::string ws = dir.write("bad/.agentbox.toml", bad);
    auto st = narrow_with_workspace_file(*r, ws);
    ASSERT_FALSE(st) << bad;
    EXPECT_NE(st.error().render().find("cannot be set by a workspace file"), std::string::npos)
        << st.error().render();
  }
}

TEST(Telemetry, BadLabelsAndKeysAreReportedWithWhere) {
  EXPECT_FALSE(label_problem("pipeline", "1234"));
  EXPECT_FALSE(label_problem("ci.job-id_2", ""));
  for (const char* key : {"", "Pipeline", "1abc", "a b", "a=b", "é"}) {
    EXPECT_TRUE(label_problem(key, "v")) << key;
  }
  EXPECT_TRUE(label_problem(std::string(64, 'a'), "v"));
  EXPECT_FALSE(label_problem(std::string(63, 'a'), "v"));
  EXPECT_TRUE(label_problem("k", std::string(257, 'v')));
  EXPECT_TRUE(label_problem("k", "a\nb"));
  EXPECT_TRUE(label_problem("k", std::string("a\x7f")));
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml",
            "[labels]\nBad = \"x\"\n[telemetry]\notlp_queue = \"1K\"\njournald = 1\n"
            "otlp_headers = { \"a b\" = \"x\" }\n");
  o.flags.labels = {"nokey"};
  auto r = load(o);
  ASSERT_FALSE(r);
  std::string msg = r.error().render();
  EXPECT_NE(msg.find("system.toml:2:7: `labels.Bad`: a label key is"), std::string::npos) << msg;
  EXPECT_NE(msg.find("`telemetry.otlp_queue` must be at least 16K"), std::string::npos) << msg;
  EXPECT_NE(msg.find("`telemetry.journald` must be true or false"), std::string::npos) << msg;
  EXPECT_NE(msg.find("`telemetry.otlp_headers.a b` is not a header"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--label: `nokey` is not KEY=VALUE"), std::string::npos) << msg;
}

// HTTPS export: a CA file and header values read from a source (never written in the config);
// a bad source, a header name with a colon and a relative CA path are each reported; a workspace
// file may set neither.
TEST(Telemetry, TlsKeysLoadAndAreChecked) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml",
            "[telemetry]\notlp_endpoint = \"https://collector.example:4318/v1/logs\"\n"
            "otlp_ca = \"~/.config/agentbox/collector-ca.pem\"\n"
            "otlp_headers_from = { Authorization = \"file:~/.otlp-token\", x-k = \"env:K\" }\n");
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  const auto& t = r->policy.telemetry;
  ASSERT_TRUE(t.otlp_ca);
  EXPECT_EQ(t.otlp_ca->value, "~/.config/agentbox/collector-ca.pem");
  ASSERT_EQ(t.otlp_headers_from.size(), 2u);
  for (const auto& [k, v] : t.otlp_headers_from) {
    EXPECT_EQ(v.value.to_string(), k == "x-k" ? "env:K" : "file:~/.otlp-token") << k;
  }
  for (const char* bad : {"[telemetry]\notlp_ca = \"/etc/ca.pem\"\n",
                          "[telemetry]\notlp_headers_from = { a = \"env:A\" }\n"}) {
    std::string ws = dir.write("bad/.agentbox.toml", bad);
    auto st = narrow_with_workspace_file(*r, ws);
    ASSERT_FALSE(st) << bad;
    EXPECT_NE(st.error().render().find("cannot be set by a workspace file"), std::string::npos)
        << st.error().render();
  }
  TempDir bad_dir;
  LoadOptions b = isolated(bad_dir);
  bad_dir.write("system.toml",
                "[telemetry]\notlp_ca = \"ca.pem\"\n"
                "otlp_headers_from = { \"a:b\" = \"env:A\", c = \"token\", d = 1 }\n");
  auto e = load(b);
  ASSERT_FALSE(e);
  std::string msg = e.error().render();
  EXPECT_NE(msg.find("`telemetry.otlp_ca`: `ca.pem` must be an absolute path or start with ~"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("`telemetry.otlp_headers_from.a:b` is not a header"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("`telemetry.otlp_headers_from.c`: `token` is not env:NAME, file:PATH or "
                     "cmd:COMMAND"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("telemetry.otlp_headers_from.d"), std::string::npos) << msg;
}

TEST(Exec, RulesLoadInLayerOrderAndAWorkspaceFileMayOnlyAddDenyOrAsk) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml",
            "[[exec.rule]]\nprogram = \"npm\"\nargs = [\"publish\"]\naction = \"ask\"\n");
  dir.write("user/config.toml",
            "[exec]\nlog = true\n[[exec.rule]]\nprogram = \"git\"\nargs = [\"push\", "
            "\"--force*|-f\"]\naction = \"deny\"\n");
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  EXPECT_TRUE(r->policy.exec_log.value);
  ASSERT_EQ(r->policy.exec_rules.size(), 2u);
  EXPECT_EQ(r->policy.exec_rules[0].describe(), "git push --force*|-f");  // the user's first
  EXPECT_EQ(r->policy.exec_rules[0].origin, dir.path() + "/user/config.toml:3:1");
  EXPECT_EQ(r->policy.exec_rules[1].action, policy::ExecAction::ask);
  std::string ok = dir.write(
      "ok/.agentbox.toml", "[[exec.rule]]\nprogram = \"rm\"\nargs = [\"-r\"]\naction = \"deny\"\n");
  ASSERT_TRUE(narrow_with_workspace_file(*r, ok));
  EXPECT_EQ(r->policy.exec_rules[0].program, "rm");
  for (const char* bad :
       {"[exec]\nlog = false\n", "[[exec.rule]]\nprogram = \"git\"\naction = \"allow\"\n"}) {
    std::string ws = dir.write("bad/.agentbox.toml", bad);
    auto st = narrow_with_workspace_file(*r, ws);
    ASSERT_FALSE(st) << bad;
    EXPECT_NE(st.error().render().find("cannot be set by a workspace file"), std::string::npos)
        << st.error().render();
  }
  dir.write("user/config.toml", "[[exec.rule]]\nprogram = \"git\"\naction = \"maybe\"\n");
  auto bad = load(o);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().render().find("[[exec.rule]]"), std::string::npos) << bad.error().render();
}

// network.host_ports / network.publish: PORT[:PORT] strings, each bad one at its position.
TEST(Network, HostPortsAndPublishComeFromTheConfig) {
  TempDir dir;
  LoadOptions o = isolated(dir);
  dir.write("system.toml",
            "[network]\nhost_ports = [\"3000\", \"5433:5432\"]\npublish = [\"8000\"]\n");
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().render();
  ASSERT_EQ(r->policy.host_ports.size(), 2u);
  EXPECT_EQ(r->policy.host_ports[1].value, "5433:5432");
  EXPECT_EQ(r->policy.publish.at(0).value, "8000");
  EXPECT_NE(explain(*r).find("box localhost:5433 -> host loopback :5432"), std::string::npos)
      << explain(*r);
  dir.write("system.toml", "[network]\nhost_ports = [\"3000\", \"web\"]\npublish = [\"0\"]\n");
  auto bad = load(o);
  ASSERT_FALSE(bad);
  std::string m = bad.error().render();
  EXPECT_NE(m.find("system.toml:2:23: `network.host_ports`: `web`"), std::string::npos) << m;
  EXPECT_NE(m.find("system.toml:3:12: `network.publish`: `0`"), std::string::npos) << m;
}

// Approvals: network.ask (a granted list), network.unlisted and network.ask_timeout, and the
// flags; a workspace file may not ask.
TEST(Load, AskKeysAndFlags) {
  TempDir dir;
  dir.write("user/config.toml",
            "[network]\nask = [\"*.example.com\"]\nunlisted = \"ask\"\nask_timeout = 5\n");
  auto o = isolated(dir);
  o.flags.ask = {"api.test:8443"};
  auto r = load(o);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->policy.ask.size(), 2u);
  EXPECT_EQ(r->policy.ask[1].value, "api.test:8443");
  EXPECT_EQ(r->policy.ask[1].origin.describe(), "--ask");
  EXPECT_TRUE(r->policy.unlisted_ask.value);
  EXPECT_EQ(r->policy.ask_timeout.value, 5u);
  dir.write("user/config.toml", "[network]\nunlisted = \"maybe\"\nask_timeout = 0\n");
  auto bad = load(isolated(dir));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("`network.unlisted`: `maybe`"), std::string::npos);
  EXPECT_NE(bad.error().message().find("network.ask_timeout"), std::string::npos);
  dir.write("user/config.toml", "");
  auto base = load(isolated(dir));
  ASSERT_TRUE(base);
  EXPECT_FALSE(base->policy.unlisted_ask.value);
  EXPECT_EQ(base->policy.ask_timeout.value, 60u);
  EXPECT_TRUE(base->policy.ask_desktop.value);  // desktop notifications unless turned off
  dir.write("user/config.toml", "[network]\nask_desktop = false\n");
  auto off = load(isolated(dir));
  ASSERT_TRUE(off) << off.error().message();
  EXPECT_FALSE(off->policy.ask_desktop.value);
  EXPECT_NE(explain(*off).find("ask_desktop       false"), std::string::npos) << explain(*off);
  dir.write("user/config.toml", "[network]\nask_desktop = \"no\"\n");
  auto wrong = load(isolated(dir));
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message().find("`network.ask_desktop` must be true or false"),
            std::string::npos);
  dir.write("user/config.toml", "");
  std::string ws = dir.write("ws/.agentbox.toml", "[network]\nask = [\"x.test\"]\n");
  EXPECT_FALSE(narrow_with_workspace_file(*base, ws));
}

// `approve ... always`: one table appended, the user's text untouched; a file that would not
// parse with it (an inline `allow = [...]`) is left as it was.
TEST(AppendAllow, AppendsAndStillLoads) {
  TempDir dir;
  std::string text =
      "# mine\n[network]\nmax_flows = 100 # keep\n[[network.allow]]\nhost = \"a.test\"";
  std::string path = dir.write("user/config.toml", text);
  ASSERT_TRUE(append_allow(path, "b.test:8443", "added by agentbox approve on D for session S"));
  std::ifstream in(path);
  std::string after((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(after, text +
                       "\n\n# added by agentbox approve on D for session S\n[[network.allow]]\n"
                       "host = \"b.test:8443\"\n");
  auto r = load(isolated(dir));
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->policy.net_allow.size(), 2u);
  EXPECT_EQ(r->policy.net_allow[1].value, "b.test:8443");

  std::string inline_list = "[network]\nallow = [\"a.test\"]\n";
  std::string p2 = dir.write("other/config.toml", inline_list);
  auto refused = append_allow(p2, "b.test", "c");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().hint().find("add \"b.test\""), std::string::npos);
  std::ifstream in2(p2);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>()),
            inline_list);
  EXPECT_FALSE(append_allow(p2, "b.test\"\n[x]", "c"));  // never anything TOML would escape

  std::string fresh = dir.path() + "/new/agentbox/config.toml";
  ASSERT_TRUE(append_allow(fresh, "c.test", "c"));
  EXPECT_TRUE(fs::exists(fresh));
  EXPECT_EQ(fs::status(fresh).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(user_config_file("", "/home/u"), "/home/u/.config/agentbox/config.toml");
  EXPECT_EQ(user_config_file("/x", "/home/u"), "/x/agentbox/config.toml");
  EXPECT_EQ(user_config_file("rel", ""), "");
}

}  // namespace
}  // namespace agentbox::config
