// The box's environment is built from scratch; the synthesized /etc files.
#include "agentbox/sandbox/environment.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace agentbox::sandbox {
namespace {

UserInfo alice() {
  return {.uid = 1000,
          .gid = 1000,
          .name = "alice",
          .group = "staff",
          .gecos = "Alice",
          .home = "/home/alice",
          .shell = "/bin/bash"};
}

bool has(const std::vector<std::string>& env, const std::string& entry) {
  return std::find(env.begin(), env.end(), entry) != env.end();
}

bool has_name(const std::vector<std::string>& env, const std::string& name) {
  return std::any_of(env.begin(), env.end(),
                     [&](const std::string& e) { return e.rfind(name + "=", 0) == 0; });
}

TEST(Environment, NothingOfTheCallerLeaksUnlessNamed) {
  EnvInputs in{.caller = {{"SSH_AUTH_SOCK", "/run/ssh"},
                          {"AWS_SECRET_ACCESS_KEY", "s"},
                          {"DBUS_SESSION_BUS_ADDRESS", "unix:x"},
                          {"DISPLAY", ":0"},
                          {"PATH", "/home/alice/bin:/usr/bin"},
                          {"HOME", "/elsewhere"},
                          {"LD_PRELOAD", "/x.so"},
                          {"TERM", "xterm-kitty"}},
               .user = alice()};
  auto env = build_environment(in);
  for (const char* n : {"SSH_AUTH_SOCK", "AWS_SECRET_ACCESS_KEY", "DBUS_SESSION_BUS_ADDRESS",
                        "DISPLAY", "LD_PRELOAD"}) {
    EXPECT_FALSE(has_name(env, n)) << n;
  }
  EXPECT_TRUE(has(env, std::string("PATH=") + kDefaultPath));
  EXPECT_TRUE(has(env, "HOME=/home/alice"));
  EXPECT_TRUE(has(env, "USER=alice"));
  EXPECT_TRUE(has(env, "LOGNAME=alice"));
  EXPECT_TRUE(has(env, "SHELL=/bin/bash"));
  EXPECT_TRUE(has(env, "TERM=xterm-kitty"));
  EXPECT_TRUE(std::is_sorted(env.begin(), env.end()));
}

TEST(Environment, LocaleTimezoneAndColorComeAlong) {
  EnvInputs in{.caller = {{"LANG", "de_DE.UTF-8"},
                          {"LC_TIME", "C"},
                          {"LANGUAGE", "de"},
                          {"TZ", "Europe/Berlin"},
                          {"COLORTERM", "truecolor"},
                          {"LCX", "no"}},
               .user = alice()};
  auto env = build_environment(in);
  EXPECT_TRUE(has(env, "LANG=de_DE.UTF-8"));
  EXPECT_TRUE(has(env, "LC_TIME=C"));
  EXPECT_TRUE(has(env, "LANGUAGE=de"));
  EXPECT_TRUE(has(env, "TZ=Europe/Berlin"));
  EXPECT_TRUE(has(env, "COLORTERM=truecolor"));
  EXPECT_FALSE(has_name(env, "LCX"));
}

TEST(Environment, PassAndSetFromThePolicy) {
  EnvInputs in{.caller = {{"GOFLAGS", "-mod=mod"}, {"PATH", "/evil"}},
               .user = alice(),
               .pass = {"GOFLAGS", "NOT_SET_IN_CALLER", "BAD=NAME", ""},
               .set = {{"CI", "1"}, {"PATH", "/opt/tool/bin:/usr/bin"}}};
  auto env = build_environment(in);
  EXPECT_TRUE(has(env, "GOFLAGS=-mod=mod"));
  EXPECT_FALSE(has_name(env, "NOT_SET_IN_CALLER"));
  EXPECT_TRUE(has(env, "CI=1"));
  EXPECT_TRUE(has(env, "PATH=/opt/tool/bin:/usr/bin"));  // set wins over the default
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) { return e.rfind("PATH=", 0) == 0; }),
            1);
}

// The proxy's git settings (a credential helper per basic-auth host) come after the user's own
// GIT_CONFIG_COUNT/KEY_n/VALUE_n, never in their place; a later setting comes after both.
TEST(Environment, GitSettingsOfTheBoxFollowTheUsers) {
  EnvInputs in{.caller = {{"GIT_CONFIG_COUNT", "2"},
                          {"GIT_CONFIG_KEY_0", "user.name"},
                          {"GIT_CONFIG_VALUE_0", "Alice"},
                          {"GIT_CONFIG_KEY_1", "user.email"},
                          {"GIT_CONFIG_VALUE_1", "a@example.org"}},
               .user = alice(),
               .pass = {"GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0",
                        "GIT_CONFIG_KEY_1", "GIT_CONFIG_VALUE_1"}};
  add_box_env(in, {{"SSL_CERT_FILE", "/etc/agentbox/ca-bundle.pem"},
                   {"GIT_CONFIG_KEY_0", "credential.https://a.example.helper"},
                   {"GIT_CONFIG_VALUE_0", "!helper a"},
                   {"GIT_CONFIG_KEY_1", "credential.https://b.example.helper"},
                   {"GIT_CONFIG_VALUE_1", "!helper b"},
                   {"GIT_CONFIG_COUNT", "2"}});
  add_git_config(in, "core.untrackedCache", "true");
  auto env = build_environment(in);
  EXPECT_TRUE(has(env, "SSL_CERT_FILE=/etc/agentbox/ca-bundle.pem"));
  EXPECT_TRUE(has(env, "GIT_CONFIG_COUNT=5"));
  EXPECT_TRUE(has(env, "GIT_CONFIG_KEY_0=user.name"));
  EXPECT_TRUE(has(env, "GIT_CONFIG_VALUE_1=a@example.org"));
  EXPECT_TRUE(has(env, "GIT_CONFIG_KEY_2=credential.https://a.example.helper"));
  EXPECT_TRUE(has(env, "GIT_CONFIG_VALUE_2=!helper a"));
  EXPECT_TRUE(has(env, "GIT_CONFIG_KEY_3=credential.https://b.example.helper"));
  EXPECT_TRUE(has(env, "GIT_CONFIG_KEY_4=core.untrackedCache"));
  EXPECT_TRUE(has(env, "GIT_CONFIG_VALUE_4=true"));
}

// The program's installation directories (app/program_install.hpp) go in front, in order; a
// PATH the policy sets still wins.
TEST(Environment, ProgramDirectoriesGoInFrontOfThePath) {
  EnvInputs in{.user = alice()};
  in.path_prepend = {"/home/alice/.nvm/versions/node/v20/bin", "/home/alice/.bun/bin", "a:b"};
  EXPECT_TRUE(has(build_environment(in),
                  std::string("PATH=/home/alice/.nvm/versions/node/v20/bin:/home/alice/.bun/bin:") +
                      kDefaultPath));
  in.set = {{"PATH", "/usr/bin"}};
  EXPECT_TRUE(has(build_environment(in), "PATH=/usr/bin"));
}

TEST(Environment, TermDefaultsDependOnTheTerminal) {
  EnvInputs in{.user = alice()};
  EXPECT_TRUE(has(build_environment(in), "TERM=dumb"));
  in.tty = true;
  EXPECT_TRUE(has(build_environment(in), "TERM=xterm-256color"));
}

TEST(Environment, ParseEnviron) {
  char a[] = "A=1";
  char b[] = "B==x";
  char c[] = "A=2";
  char d[] = "noequals";
  char* envp[] = {a, b, c, d, nullptr};
  auto m = parse_environ(envp);
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m["A"], "1");
  EXPECT_EQ(m["B"], "=x");
}

TEST(EtcFiles, PasswdAndGroupHoldRootTheUserAndNobody) {
  auto passwd = make_etc_passwd(alice());
  EXPECT_EQ(passwd,
            "root:x:0:0:root:/root:/bin/sh\n"
            "alice:x:1000:1000:Alice:/home/alice:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
  EXPECT_EQ(make_etc_group(alice()), "root:x:0:\nstaff:x:1000:\nnogroup:x:65534:\n");
  UserInfo root{.uid = 0, .gid = 0, .name = "root", .group = "root", .home = "/root"};
  EXPECT_EQ(make_etc_passwd(root),
            "root:x:0:0:root:/root:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
  EXPECT_NE(make_etc_hosts("box").find("127.0.1.1\tbox\n"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::sandbox
