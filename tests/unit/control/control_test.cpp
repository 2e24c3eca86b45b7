// The control plane's pieces without a box: the protocol's strict codec, the runtime folder's
// checks, and the server on a real event loop with a real client over a unix socket.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "agentbox/control/client.hpp"
#include "agentbox/control/protocol.hpp"
#include "agentbox/control/runtime_dir.hpp"
#include "agentbox/control/server.hpp"

namespace agentbox::control {
namespace {

TEST(Protocol, AcceptsAWellFormedRequest) {
  auto r = parse_request(R"({"v":1,"verb":"allow","args":{"rule":"example.com:443"}})");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->verb, "allow");
  EXPECT_EQ(r->arg("rule"), "example.com:443");
  EXPECT_EQ(r->arg("missing", "x"), "x");
  auto again =
      parse_request(std::string_view(encode_request(*r)).substr(0, encode_request(*r).size() - 1));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->args, r->args);
}

TEST(Protocol, RefusesEverythingElse) {
  for (const char* bad : {
           "",
           "[]",
           "1",
           "{}",
           R"({"verb":"ps"})",
           R"({"v":2,"verb":"ps"})",
           R"({"v":"1","verb":"ps"})",
           R"({"v":1.0,"verb":"ps"})",
           R"({"v":1})",
           R"({"v":1,"verb":"PS"})",
           R"({"v":1,"verb":"ps","extra":1})",
           R"({"v":1,"verb":"ps","args":[]})",
           R"({"v":1,"verb":"ps","args":{"a":1}})",
           R"({"v":1,"verb":"ps","args":{"A B":"x"}})",
           R"({"v":1,"verb":7})",
           R"({"v":1,"verb":"ps"} trailing)",
           "{\"v\":1,\"verb\":\"p\\u0000s\"}",
       }) {
    EXPECT_FALSE(parse_request(bad)) << bad;
  }
  EXPECT_FALSE(parse_request(std::string(kMaxLine + 1, ' ')));
  std::string big =
      R"({"v":1,"verb":"ps","args":{"a":")" + std::string(kMaxArgValue + 1, 'x') + "\"}}";
  EXPECT_FALSE(parse_request(big));
}

TEST(Protocol, AnswersAreOneLineEvenForHostileText) {
  std::string e = encode_error("bad \xff\n\x1b[31m");
  EXPECT_EQ(e.find('\n'), e.size() - 1) << e;
  EXPECT_EQ(e.find('\x1b'), std::string::npos) << e;
}

TEST(RuntimeDir, ShortIds) {
  EXPECT_EQ(short_id("a1b2c3"), "a1b2c3");
  EXPECT_EQ(short_id("20260101T120000Z-a1b2c3"), "a1b2c3");
  EXPECT_FALSE(short_id("A1B2C3"));
  EXPECT_FALSE(short_id("../x.sock"));
  EXPECT_FALSE(short_id("20260101T120000Z_a1b2c3"));
  EXPECT_FALSE(short_id(""));
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/control_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { [[maybe_unused]] int rc = std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
};

TEST_F(TempDir, RuntimeDirIsCreatedPrivateAndCheckedWhenItExists) {
  std::map<std::string, std::string> env = {{"XDG_RUNTIME_DIR", dir_}};
  auto d = runtime_dir(env, true);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(*d, dir_ + "/agentbox");
  struct stat st {};
  ASSERT_EQ(::stat(d->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::chmod(d->c_str(), 0755), 0);
  auto open = runtime_dir(env, false);
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().message().find("not private"), std::string::npos);
  ASSERT_EQ(::rmdir(d->c_str()), 0);
  ASSERT_EQ(::symlink("/tmp", d->c_str()), 0);  // a planted link is refused, not followed
  EXPECT_FALSE(runtime_dir(env, true));
}

TEST_F(TempDir, ServerAnswersOnTheLoopAndNamesThePeer) {
  auto loop = event::Loop::create();
  ASSERT_TRUE(loop);
  std::string path = socket_path(dir_, "abcdef");
  auto server = Server::listen(*loop, path);
  ASSERT_TRUE(server) << server.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Peer seen;
  (*server)->on("echo", [&](const Request& r, const Peer& p) -> base::Result<nlohmann::json> {
    seen = p;
    return nlohmann::json{{"said", r.arg("text")}};
  });
  EXPECT_EQ(list_sessions(dir_), std::vector<std::string>{"abcdef"});
  // A second server on the same path is refused while the first one lives.
  EXPECT_FALSE(Server::listen(*loop, path));

  std::string said, unknown, bad;
  std::thread client([&] {
    auto c = Client::connect(path);
    if (!c) {
      return;
    }
    auto r = c->call({.verb = "echo", .args = {{"text", "hi"}}});
    said = r ? r->value("said", "") : r.error().message();
    auto u = c->call({.verb = "nope", .args = {}});
    unknown = u ? "ok" : u.error().message();
  });
  for (int i = 0; i < 100 && (said.empty() || unknown.empty()); ++i) {
    ASSERT_TRUE(loop->run_once(std::chrono::milliseconds(50)));
  }
  client.join();
  EXPECT_EQ(said, "hi");
  EXPECT_EQ(unknown, "unknown verb `nope`");
  EXPECT_EQ(seen.uid, ::geteuid());
  EXPECT_EQ(seen.pid, ::getpid());
  server->reset();
  EXPECT_NE(::stat(path.c_str(), &st), 0) << "the socket outlived its server";
}

// A handler that throws answers that request with why, and the server (the supervisor) goes on:
// before, the exception met answer()'s noexcept and std::terminate took the box down.
TEST_F(TempDir, AHandlerThatThrowsAnswersWithWhyAndTheServerGoesOn) {
  auto loop = event::Loop::create();
  ASSERT_TRUE(loop);
  std::string path = socket_path(dir_, "abcdef");
  auto server = Server::listen(*loop, path);
  ASSERT_TRUE(server) << server.error().message();
  (*server)->on("boom", [](const Request&, const Peer&) -> base::Result<nlohmann::json> {
    return nlohmann::json(nlohmann::json(1).get<std::string>());  // a type_error
  });
  (*server)->on("echo", [](const Request& r, const Peer&) -> base::Result<nlohmann::json> {
    return nlohmann::json{{"said", r.arg("text")}};
  });
  std::string boom, said;
  std::thread client([&] {
    auto c = Client::connect(path);
    if (!c) {
      return;
    }
    auto b = c->call({.verb = "boom", .args = {}});
    boom = b ? "ok" : b.error().message();
    auto r = c->call({.verb = "echo", .args = {{"text", "still here"}}});
    said = r ? r->value("said", "") : r.error().message();
  });
  for (int i = 0; i < 100 && (boom.empty() || said.empty()); ++i) {
    ASSERT_TRUE(loop->run_once(std::chrono::milliseconds(50)));
  }
  client.join();
  EXPECT_NE(boom.find("`boom` failed: "), std::string::npos) << boom;
  EXPECT_NE(boom.find("type must be string"), std::string::npos) << boom;
  EXPECT_EQ(said, "still here");
}

TEST(Server, PeerChecks) {
  EXPECT_TRUE(check_peer({.uid = ::geteuid(), .pid = ::getpid()}));
  auto other = check_peer({.uid = ::geteuid() + 1, .pid = ::getpid()});
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message().find("is not the session's uid"), std::string::npos);
  EXPECT_FALSE(check_peer({.uid = ::geteuid(), .pid = 0x3fffffff}));  // unverifiable: refused
}

}  // namespace
}  // namespace agentbox::control
