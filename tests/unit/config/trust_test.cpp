// Configuration files whose writer is not the user or root are refused, not obeyed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agentbox/config/load.hpp"
#include "testkit/skip.hpp"

namespace agentbox::config {
namespace {

namespace fs = std::filesystem;

class TrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-trust-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    fs::create_directories(dir_ + "/user/profiles");
    ::chmod((dir_ + "/user").c_str(), 0755);
    ::chmod((dir_ + "/user/profiles").c_str(), 0755);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& rel, mode_t mode) {
    std::string p = dir_ + "/" + rel;
    std::ofstream(p) << "[sandbox]\nro = [\"/opt\"]\n";
    ::chmod(p.c_str(), mode);
    return p;
  }
  LoadOptions options() {
    LoadOptions o;
    o.system_file = dir_ + "/system.toml";
    o.user_dir = dir_ + "/user";
    o.profile_dirs = {dir_ + "/shipped"};
    return o;
  }
  std::string dir_;
};

TEST_F(TrustTest, OwnFileIsRead) {
  write("user/config.toml", 0644);
  auto loaded = load(options());
  ASSERT_TRUE(loaded) << loaded.error().render();
  ASSERT_EQ(loaded->policy.ro.size(), 1u);
}

TEST_F(TrustTest, GroupOrWorldWritableConfigIsRefused) {
  for (mode_t mode : {0664, 0646, 0666}) {
    std::string p = write("user/config.toml", mode);
    auto loaded = load(options());
    ASSERT_FALSE(loaded) << std::oct << mode;
    std::string text = loaded.error().render();
    EXPECT_NE(text.find(p + ": refused: the file is writable by"), std::string::npos) << text;
    EXPECT_NE(text.find("chmod go-w"), std::string::npos) << text;
  }
}

TEST_F(TrustTest, WritableProfileAndDirectoryAreRefused) {
  write("user/profiles/mine.toml", 0644);
  LoadOptions o = options();
  o.flags.profiles = {"mine"};
  ASSERT_TRUE(load(o));
  ::chmod((dir_ + "/user/profiles").c_str(), 0777);
  auto loaded = load(o);
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().render().find("its directory"), std::string::npos)
      << loaded.error().render();
  // A sticky world-writable directory (like /tmp) is fine; the file's own owner still counts.
  ::chmod((dir_ + "/user/profiles").c_str(), 01777);
  EXPECT_TRUE(load(o));
}

TEST_F(TrustTest, FileOfAnotherUserIsRefused) {
  if (::geteuid() != 0) {
    testkit::skip("giving a file to another user needs root");
    return;
  }
  std::string p = write("system.toml", 0644);
  ASSERT_EQ(::chown(p.c_str(), 65534, 65534), 0);
  auto loaded = load(options());
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().render().find("owned by uid 65534"), std::string::npos)
      << loaded.error().render();
}

TEST(ProfileDirs, FoundBesideTheBinaryNeverInTheSourceTree) {
  auto dirs = default_profile_dirs();
  ASSERT_EQ(dirs.size(), 2u);
  EXPECT_EQ(dirs[0], "/etc/agentbox/profiles");
  fs::path exe = fs::read_symlink("/proc/self/exe");
  EXPECT_EQ(dirs[1], (exe.parent_path().parent_path() / "share/agentbox/profiles").string());
  for (const auto& d : dirs) {
    EXPECT_NE(d, std::string(AGENTBOX_SOURCE_DIR) + "/profiles");
  }
}

}  // namespace
}  // namespace agentbox::config
