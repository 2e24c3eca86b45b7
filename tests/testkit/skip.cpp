// The one skip helper (skip.hpp): the verdict (failure, skip, not applicable) and the skip log.
#include "testkit/skip.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/landlock.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace agentbox::testkit {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

// A typo in CI's declaration must not quietly declare nothing: junk fails the test that asks.
int declared_landlock_abi() {
  std::string v = env("AGENTBOX_REQUIRE_LANDLOCK_ABI");
  if (v.empty()) {
    return 0;
  }
  char* end = nullptr;
  long n = std::strtol(v.c_str(), &end, 10);
  if (*end != '\0' || n < 1 || n > 1000) {
    ADD_FAILURE() << "AGENTBOX_REQUIRE_LANDLOCK_ABI=" << v << " is not a Landlock ABI version";
    return 0;
  }
  return static_cast<int>(n);
}

namespace {

std::string declared_cgroup() {
  std::string v = env("AGENTBOX_REQUIRE_CGROUP");
  if (!v.empty() && v != "v1" && v != "v2") {
    ADD_FAILURE() << "AGENTBOX_REQUIRE_CGROUP=" << v << " is neither v1 nor v2";
    return {};
  }
  return v;
}

// One line per skip, appended with one write(2) (O_APPEND: tests run in parallel).
void log_skip(std::string_view verdict, std::string_view why) {
  std::string path = env("AGENTBOX_SKIP_LOG");
  if (path.empty()) {
    return;
  }
  const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = t != nullptr ? std::string(t->test_suite_name()) + "." + t->name() : "?";
  std::string line = name + "\t" + std::string(verdict) + ": " + std::string(why);
  std::replace(line.begin(), line.end(), '\n', ' ');  // one line per skip
  line += '\n';
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    ADD_FAILURE() << "cannot open AGENTBOX_SKIP_LOG=" << path << ": " << std::strerror(errno);
    return;
  }
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    ADD_FAILURE() << "cannot write AGENTBOX_SKIP_LOG=" << path;
  }
  ::close(fd);
}

}  // namespace

bool must_work() {
  return env("AGENTBOX_MUST_WORK") == "1";
}

int landlock_abi() {
  long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi > 0 ? static_cast<int>(abi) : 0;
}

Need Need::landlock_abi(int abi) {
  return {Kind::kLandlockAbi, abi};
}
Need Need::cgroup_v1() {
  return {Kind::kCgroupV1, 1};
}
Need Need::cgroup_v2() {
  return {Kind::kCgroupV2, 1};
}
Need Need::build_without_asan() {
  return {Kind::kBuild, 0};
}

Need Need::feature(std::string name, std::string what) {
  Need n{Kind::kFeature, 0};
  n.name_ = std::move(name);
  n.what_ = std::move(what);
  return n;
}

bool Need::declared() const {
  switch (kind_) {
    case Kind::kLandlockAbi:
      return level_ <= declared_landlock_abi();
    case Kind::kCgroupV1:
      return declared_cgroup() == "v1";
    case Kind::kCgroupV2:
      return declared_cgroup() == "v2";
    case Kind::kBuild:
      return false;
    case Kind::kFeature:
      return env(("AGENTBOX_REQUIRE_" + name_).c_str()) == "1";
  }
  return false;
}

std::string Need::describe() const {
  switch (kind_) {
    case Kind::kLandlockAbi:
      return "Landlock ABI " + std::to_string(level_);
    case Kind::kCgroupV1:
      return "a cgroup v1 session cgroup (AGENTBOX_REQUIRE_CGROUP=v1)";
    case Kind::kCgroupV2:
      return "a delegated cgroup v2 session cgroup (AGENTBOX_REQUIRE_CGROUP=v2)";
    case Kind::kBuild:
      return "a build without AddressSanitizer";
    case Kind::kFeature:
      return what_ + " (AGENTBOX_REQUIRE_" + name_ + "=1)";
  }
  return {};
}

void skip(std::string_view why) {
  if (::testing::Test::HasFailure()) {
    return;  // already failed (e.g. cannot_box() recorded why): no skip line for a failed test
  }
  if (must_work()) {
    FAIL() << "AGENTBOX_MUST_WORK=1 and this would be skipped: " << why;
  }
  log_skip("skipped", why);
  GTEST_SKIP() << "skipped: " << why;
}

void skip(const Need& need, std::string_view why) {
  if (::testing::Test::HasFailure()) {
    return;
  }
  if (need.declared()) {
    FAIL() << "this machine declares " << need.describe()
           << " (AGENTBOX_REQUIRE_LANDLOCK_ABI=" << env("AGENTBOX_REQUIRE_LANDLOCK_ABI")
           << ", AGENTBOX_REQUIRE_CGROUP=" << env("AGENTBOX_REQUIRE_CGROUP") << "), but: " << why;
  }
  log_skip("not applicable", why);
  GTEST_SKIP() << "not applicable here: " << why << " (needs " << need.describe() << ")";
}

}  // namespace agentbox::testkit
