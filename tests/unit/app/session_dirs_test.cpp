// Retention of session directories: by count and age, never a running one (flock), never the
// current one, never a name that is not a session id.
#include "agentbox/app/session_dirs.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

namespace agentbox::app {
namespace {

std::string id_at(std::time_t t, const char* tail) {
  struct tm tm {};
  ::gmtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
  return std::string(ts) + "-" + tail;
}

struct Root {
  std::string path;
  Root() {
    char tmpl[] = "/tmp/agentbox-sessions-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~Root() { std::filesystem::remove_all(path); }
  Root(const Root&) = delete;
  Root& operator=(const Root&) = delete;
  [[nodiscard]] bool has(const std::string& name) const {
    return ::access((path + "/" + name).c_str(), F_OK) == 0;
  }
};

TEST(SessionDirs, IdsParseAndOthersDoNot) {
  std::string id = new_session_id();
  EXPECT_GT(session_start(id), 0);
  EXPECT_LE(std::abs(session_start(id) - std::time(nullptr)), 2);
  EXPECT_EQ(session_start("20260101T000000Z-abcdef"), 1767225600);
  for (const char* bad : {"notes", "20260101T000000Z-abcdeg", "20260101T000000Z_abcdef",
                          "2026010lT000000Z-abcdef", "20260101T000000Z-abcdef0", ".."}) {
    EXPECT_EQ(session_start(bad), -1) << bad;
  }
}

TEST(SessionDirs, PrunesByCountAndAgeButNeverARunningSession) {
  Root root;
  std::time_t now = std::time(nullptr);
  const std::time_t day = 86400;
  std::string current = id_at(now, "000001");
  std::string recent1 = id_at(now - 3600, "000002");
  std::string recent2 = id_at(now - 7200, "000003");
  std::string running_old = id_at(now - 90 * day, "000004");  // a very long session
  std::string old1 = id_at(now - 40 * day, "000005");
  std::string starting = id_at(now + 5, "000006");  // mkdir done, flock not yet: no lock file
  auto made = make_session_dir(root.path + "/" + current);
  ASSERT_TRUE(made) << made.error().message();
  base::UniqueFd running_lock;
  for (const auto& n : {recent1, recent2, running_old, old1}) {
    auto fd = make_session_dir(root.path + "/" + n);
    ASSERT_TRUE(fd);
    if (n == running_old) {
      running_lock = std::move(*fd);  // still held: that session runs
    }
    ::close(::open((root.path + "/" + n + "/audit.jsonl").c_str(), O_CREAT | O_WRONLY, 0600));
  }
  ::mkdir((root.path + "/" + starting).c_str(), 0700);
  ::mkdir((root.path + "/notes").c_str(), 0700);
  ASSERT_EQ(::symlink("/etc", (root.path + "/" + id_at(now - 50 * day, "000007")).c_str()), 0);

  // keep 2: current and `starting` are the newest; recent1, recent2 and old1 go.
  Pruned p = prune_sessions(root.path, current, {.keep = 2, .max_age_seconds = 30 * day}, now);
  std::sort(p.removed.begin(), p.removed.end());
  std::vector<std::string> want{old1, recent2, recent1};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(p.removed, want);
  EXPECT_EQ(p.running, 1u);
  EXPECT_EQ(p.failed, 0u);
  EXPECT_TRUE(root.has(current));
  EXPECT_TRUE(root.has(running_old));
  EXPECT_TRUE(root.has(starting));
  EXPECT_TRUE(root.has("notes"));
  EXPECT_TRUE(std::filesystem::exists("/etc/passwd")) << "a link is never followed";

  // The running session ends: its lock is gone, and age removes it.
  running_lock.reset();
  Pruned q = prune_sessions(root.path, current, {.keep = 100, .max_age_seconds = 30 * day}, now);
  EXPECT_EQ(q.removed, std::vector<std::string>{running_old});
  EXPECT_TRUE(root.has(current));
}

}  // namespace
}  // namespace agentbox::app
