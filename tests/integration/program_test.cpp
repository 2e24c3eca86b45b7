// The program where users install it (issue 15 item 1), and credential precedence and repeated
// --profile (item 5): the real binary, as root and as the unprivileged user.
//
// Each layout is built in a private HOME exactly as its installer lays it out (npm's prefix under
// HOME, npm prefix ~/.local, claude's native installer, nvm, volta, bun), with the real node and
// a small JS cli that, inside the box, reports what it can see and tries to write to itself.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <regex>

#include "harness.hpp"

namespace agentbox::it {
namespace {

using Args = std::vector<std::string>;
namespace fs = std::filesystem;

// The cli: prints who runs it, then probes HOME. `dep` (e.g. `require('./lib/hello.js')`) makes
// it need its package directory (or, for a hoisted install, a sibling package).
std::string cli_js(const std::string& dep) {
  return fmt::format(R"(#!/usr/bin/env node
const fs = require('fs');
const path = require('path');
const dep = {};
const home = process.env.HOME;
const say = (k, v) => console.log(k + ' ' + v);
say('agent', dep.msg + ' ' + process.argv.slice(2).join(' '));
say('node', process.execPath);
const err = (f) => {{ try {{ f(); return 'ok'; }} catch (e) {{ return e.code; }} }};
say('ssh', err(() => fs.readFileSync(path.join(home, '.ssh', 'id_rsa'))));
say('home', fs.readdirSync(home).sort().join(','));
say('write-self', err(() => fs.appendFileSync(fs.realpathSync(__filename), '//x')));
if (process.env.LIST) say('list', fs.readdirSync(process.env.LIST).sort().join(','));
say('plant', err(() => fs.writeFileSync(path.join(path.dirname(fs.realpathSync(__filename)),
                                                  'planted'), 'x')));
)",
                     dep);
}

class ProgramTest : public BoxWorldTest {
 protected:
  void SetUp() override {
    BoxWorldTest::SetUp();
    if (!made_ || HasFatalFailure() || IsSkipped()) {
      return;
    }
    if (::access("/usr/bin/node", X_OK) != 0) {
      skip("node is not installed (/usr/bin/node; scripts/deps.txt lists nodejs)");
      return;
    }
    home_ = w_.root + "/h";
    ::mkdir(home_.c_str(), 0700);
    fs::create_directories(home_ + "/.ssh");
    write_file(home_ + "/.ssh/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n", 0600);
  }

  // A package at DIR (package.json, cli.js needing lib/hello.js); returns cli.js's path.
  std::string package(const std::string& dir,
                      const std::string& dep = "require('./lib/hello.js')") {
    fs::create_directories(dir + "/lib");
    write_file(dir + "/package.json", R"({"name":"@acme/agent","bin":{"agent":"cli.js"}})");
    write_file(dir + "/lib/hello.js", "module.exports = { msg: 'agent-ok' };\n");
    write_file(dir + "/cli.js", cli_js(dep), 0755);
    return dir + "/cli.js";
  }
  void link(const std::string& text, const std::string& at) {
    fs::create_directories(fs::path(at).parent_path());
    fs::create_symlink(text, at);
  }
  void real_node(const std::string& at) {
    fs::create_directories(fs::path(at).parent_path());
    fs::copy_file("/usr/bin/node", at);
  }

  // The shipped profiles beside the binary the tests run (w_.root/bin), owned like the rest.
  void install_profiles() {
    std::string profiles = w_.root + "/share/agentbox/profiles";
    fs::create_directories(profiles);
    fs::copy(fs::path(AGENTBOX_BIN).parent_path().parent_path() / "share/agentbox/profiles",
             profiles, fs::copy_options::recursive);
  }

  RunOptions opts(const std::string& path_front) {
    RunOptions o;
    o.env["HOME"] = home_;
    o.env["PATH"] = path_front + ":/usr/local/bin:/usr/bin:/bin";
    o.timeout_ms = 60000;
    return o;
  }

  // Runs `cmd hi` in the box and checks everything item 1 asks for. `shown` must be listed as
  // shown read-only, `self` is the real cli file (unchanged on the host afterwards).
  void expect_runs(const std::string& cmd, const std::string& path_front, const std::string& shown,
                   const std::string& self, const std::string& node = "/usr/bin/node",
                   bool dir_shown = true) {
    chown_tree(home_, w_.as.uid, w_.as.gid);
    std::string before = slurp(self);
    Output r = run(w_, {"run", "-v", "--", cmd, "hi"}, opts(path_front));
    ASSERT_EQ(r.status, 0) << r.err << r.out;
    EXPECT_TRUE(r.has_line("agent agent-ok hi")) << r.out;
    EXPECT_TRUE(r.has_line("node " + node)) << r.out;
    EXPECT_TRUE(r.has_line("ssh ENOENT")) << r.out;
    EXPECT_EQ(r.line_starting("home ").find(".ssh"), std::string::npos) << r.out;
    std::string ws = r.line_starting("write-self ");
    EXPECT_TRUE(ws == "write-self EROFS" || ws == "write-self EACCES") << r.out;
    // A file shown alone sits in a directory of the private HOME: planting there stays in the box.
    std::string pl = r.line_starting("plant ");
    EXPECT_TRUE(pl == "plant EROFS" || pl == "plant EACCES" || (!dir_shown && pl == "plant ok"))
        << r.out;
    EXPECT_EQ(slurp(self), before);
    EXPECT_FALSE(fs::exists(fs::path(self).parent_path() / "planted"));
    EXPECT_NE(r.err.find("program: shown read-only: " + shown), std::string::npos) << r.err;
    Output e = run(w_, {"explain", "--", cmd}, opts(path_front));
    ASSERT_EQ(e.status, 0) << e.err;
    EXPECT_NE(e.out.find("[program]"), std::string::npos) << e.out;
    EXPECT_NE(e.out.find("shown read-only: " + shown), std::string::npos) << e.out;
  }

  std::string home_;
};

TEST_P(ProgramTest, NpmGlobalPrefixUnderHome) {
  std::string pkg = home_ + "/.npm-global/lib/node_modules/@acme/agent";
  std::string self = package(pkg);
  link("../lib/node_modules/@acme/agent/cli.js", home_ + "/.npm-global/bin/agent");
  expect_runs("agent", home_ + "/.npm-global/bin", pkg, self);
}

TEST_P(ProgramTest, NpmPrefixLocal) {
  std::string pkg = home_ + "/.local/lib/node_modules/@acme/agent";
  std::string self = package(pkg);
  link("../lib/node_modules/@acme/agent/cli.js", home_ + "/.local/bin/agent");
  write_file(home_ + "/.local/bin/other-tool", "#!/bin/sh\necho other\n", 0755);
  expect_runs("agent", home_ + "/.local/bin", pkg, self);
  // Only the program's link: the rest of ~/.local/bin stays out.
  Output r = run(w_, {"run", "-q", "--env", "LIST=" + home_ + "/.local/bin", "--", "agent", "x"},
                 opts(home_ + "/.local/bin"));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.has_line("list agent")) << r.out;
  EXPECT_TRUE(r.has_line("home .local")) << r.out;
}

// claude's native installer: ~/.local/bin/claude -> ~/.local/share/claude/versions/X (one file).
TEST_P(ProgramTest, ClaudeNativeInstaller) {
  std::string versions = home_ + "/.local/share/claude/versions";
  fs::create_directories(versions);
  write_file(versions + "/2.1.197", cli_js("{ msg: 'agent-ok' }"), 0755);
  write_file(versions + "/2.1.100", "old version\n", 0755);
  link(versions + "/2.1.197", home_ + "/.local/bin/claude");
  expect_runs("claude", home_ + "/.local/bin", versions + "/2.1.197", versions + "/2.1.197",
              "/usr/bin/node", false);
}

// nvm: node and the package's link in ~/.nvm/versions/node/vX/bin; the `env node` the cli asks
// for is nvm's node, found first on the caller's PATH.
TEST_P(ProgramTest, Nvm) {
  std::string prefix = home_ + "/.nvm/versions/node/v20.11.0";
  real_node(prefix + "/bin/node");
  std::string pkg = prefix + "/lib/node_modules/@acme/agent";
  std::string self = package(pkg);
  link("../lib/node_modules/@acme/agent/cli.js", prefix + "/bin/agent");
  write_file(home_ + "/.nvm/nvm.sh", "# nvm\n");
  expect_runs("agent", prefix + "/bin", pkg, self, prefix + "/bin/node");
}

// volta: ~/.volta/bin/TOOL -> ~/.volta/bin/volta-shim, which runs the image's node on the
// package (the shim here is a shell stand-in for volta's binary, reading the same layout).
TEST_P(ProgramTest, Volta) {
  std::string v = home_ + "/.volta";
  real_node(v + "/tools/image/node/20.11.0/bin/node");
  std::string pkg = v + "/tools/image/packages/@acme/agent/lib/node_modules/@acme/agent";
  std::string self = package(pkg);
  fs::create_directories(v + "/tools/user/bins");
  fs::create_directories(v + "/bin");
  write_file(v + "/tools/user/bins/agent.json",
             R"({"name":"agent","package":"@acme/agent","platform":{"node":"20.11.0"}})");
  write_file(v + "/bin/volta-shim",
             "#!/bin/sh\nv=\"${VOLTA_HOME:-$HOME/.volta}\"\n"
             "exec \"$v/tools/image/node/20.11.0/bin/node\" "
             "\"$v/tools/image/packages/@acme/agent/lib/node_modules/@acme/agent/cli.js\" \"$@\"\n",
             0755);
  link(v + "/bin/volta-shim", v + "/bin/agent");
  expect_runs("agent", v + "/bin", v, self, v + "/tools/image/node/20.11.0/bin/node");
}

// bun: ~/.bun/bin/TOOL -> ../install/global/node_modules/PKG/BIN, dependencies hoisted beside it.
TEST_P(ProgramTest, Bun) {
  std::string global = home_ + "/.bun/install/global";
  fs::create_directories(global);
  write_file(global + "/package.json", R"({"dependencies":{"@acme/agent":"1.0.0"}})");
  fs::create_directories(global + "/node_modules/acme-hello");
  write_file(global + "/node_modules/acme-hello/index.js",
             "module.exports = { msg: 'agent-ok' };\n");
  std::string self = package(global + "/node_modules/@acme/agent", "require('acme-hello')");
  link("../install/global/node_modules/@acme/agent/cli.js", home_ + "/.bun/bin/agent");
  expect_runs("agent", home_ + "/.bun/bin", global + "/node_modules", self);
}

// Item 5: the user's own credential is kept over the shipped claude profile's of the same name,
// with one line saying so; `explain` shows it.
TEST_P(ProgramTest, UsersCredentialWinsOverTheShippedProfile) {
  install_profiles();
  std::string cfg = home_ + "/.config/agentbox";
  fs::create_directories(cfg);
  write_file(cfg + "/config.toml",
             "[credentials.anthropic]\nenv = \"ANTHROPIC_API_KEY\"\nfrom = \"env:MY_CLAUDE_KEY\"\n"
             "hosts = [\"api.anthropic.com\"]\ninject = \"header:x-api-key\"\n",
             0600);
  ::chmod(cfg.c_str(), 0700);
  chown_tree(w_.root, w_.as.uid, w_.as.gid);
  RunOptions o = opts("/usr/bin");
  const std::string real = "sk-ant-api03-" + std::string(80, 'R');
  o.env["MY_CLAUDE_KEY"] = real;
  Output r = run(w_,
                 {"run", "--profile", "claude", "--", "sh", "-c",
                  "printf 'key=%s\\n' \"${ANTHROPIC_API_KEY:-none}\""},
                 o);
  ASSERT_EQ(r.status, 0) << r.err;
  std::string key = r.line_starting("key=");
  EXPECT_NE(key, "key=none") << r.out << r.err;
  EXPECT_EQ(key.size(), real.size() + 4) << key;
  EXPECT_EQ(r.out.find(real), std::string::npos);
  EXPECT_NE(r.err.find("credential `anthropic`: yours (" + cfg +
                       "/config.toml:1:1) is kept; "
                       "profile `claude`'s"),
            std::string::npos)
      << r.err;
  Output e = run(w_, {"explain", "--profile", "claude"}, o);
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_NE(e.out.find("env:MY_CLAUDE_KEY"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("is dropped"), std::string::npos) << e.out;
  // --profile twice: both files, in order, the later over the earlier.
  Output two = run(w_, {"explain", "--profile", "claude", "--profile", "node"}, o);
  ASSERT_EQ(two.status, 0) << two.err;
  std::string files = two.line_starting("# files read");
  size_t c = files.find("/claude.toml");
  size_t n = files.find("/node.toml");
  EXPECT_TRUE(c != std::string::npos && n != std::string::npos && c < n) << files;
  Output both = run(w_,
                    {"run", "-q", "--profile", "node", "--profile", "claude", "--", "sh", "-c",
                     "printf 'key=%s\\n' \"${ANTHROPIC_API_KEY:-none}\""},
                    o);
  ASSERT_EQ(both.status, 0) << both.err;
  EXPECT_NE(both.line_starting("key="), "key=none") << both.out;
}

// Issue 19 item 6: every credential source of the user's own config that fails stops the start
// with one line naming the credential and its file:line, and nothing runs; a shipped profile's
// variable that is not set only leaves the box without it (the control: same profile, no config).
TEST_P(ProgramTest, EveryFailingCredentialSourceOfYourConfigStopsTheStartWithItsLine) {
  std::string cfg = home_ + "/.config/agentbox";
  fs::create_directories(cfg);
  ::chmod(cfg.c_str(), 0700);
  const std::string marker = w_.root + "/ran";
  struct Case {
    std::string toml;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"[credentials.k]\nenv = \"K\"\nfrom = \"env:NOT_SET_ANYWHERE\"\nhosts = [\"a.test\"]\n",
       "variable `NOT_SET_ANYWHERE` is not set"},
      {"[credentials.k]\nenv = \"K\"\nfrom = \"file:" + w_.root +
           "/absent\"\nhosts = [\"a.test\"]\n",
       "No such file or directory"},
      {"[credentials.k]\nenv = \"K\"\nfrom = \"cmd:exit 3\"\nhosts = [\"a.test\"]\n",
       "command exited with status 3"},
      {"[credentials.k]\nenv = \"K\"\nfrom = \"cmd:true\"\nhosts = [\"a.test\"]\n", "is empty"},
      {"[[token_file]]\npath = \"" + w_.root +
           "/absent.json\"\njson_fields = [\"t\"]\n"
           "hosts = [\"a.test\"]\n",
       "No such file or directory"},
  };
  for (const Case& c : cases) {
    write_file(cfg + "/config.toml", "\n" + c.toml, 0600);
    chown_tree(home_, w_.as.uid, w_.as.gid);
    Output r = run(w_, {"run", "-q", "--", "sh", "-c", "touch " + marker}, opts("/usr/bin"));
    EXPECT_EQ(r.status, 125) << c.toml << r.err;
    EXPECT_TRUE(std::regex_search(r.err, std::regex("/config\\.toml:[0-9]+:[0-9]+")))
        << c.toml << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.toml << r.err;
    EXPECT_NE(r.err.find("hint: "), std::string::npos) << r.err;
    EXPECT_NE(::access(marker.c_str(), F_OK), 0) << "the program ran: " << c.toml;
  }
  ::unlink((cfg + "/config.toml").c_str());
  install_profiles();
  chown_tree(w_.root, w_.as.uid, w_.as.gid);
  RunOptions o = opts("/usr/bin");
  o.env.erase("ANTHROPIC_API_KEY");
  Output ok = run(w_,
                  {"run", "-q", "--profile", "claude", "--", "sh", "-c",
                   "printf 'key=%s\\n' \"${ANTHROPIC_API_KEY:-none}\""},
                  o);
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(ok.line_starting("key="), "key=none") << ok.out;
}

INSTANTIATE_TEST_SUITE_P(As, ProgramTest, ::testing::Values("root", "user"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace agentbox::it
