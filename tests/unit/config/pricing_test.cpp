// The price table: the shipped pricing.toml is read only when a session meters usage
// (resolve_pricing), never by load(); the user's [pricing] fields still land on the shipped ones.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agentbox/config/load.hpp"

namespace agentbox::config {
namespace {

namespace fs = std::filesystem;

class Dir {
 public:
  Dir() {
    char tmpl[] = "/tmp/agentbox-pricing-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~Dir() { fs::remove_all(path_); }
  void write(const std::string& rel, const std::string& text) const {
    fs::path p = fs::path(path_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  LoadOptions options() const {
    LoadOptions o;
    o.system_file = path_ + "/system.toml";
    o.user_dir = path_ + "/user";
    o.profile_dirs = {path_ + "/admin", path_ + "/installed"};  // as default_profile_dirs()
    return o;
  }

 private:
  std::string path_;
};

const char* kShipped =
    "[pricing.\"m-large\"]\ninput = 3.0\noutput = 15.0\ncached = 0.3\n"
    "[pricing.\"m-small\"]\ninput = 1.0\noutput = 4.0\ncached = 0.1\n";

TEST(Pricing, LoadLeavesTheShippedTableUnread) {
  Dir d;
  // A shipped table load() would reject: load() must not read it (it is not needed to start a
  // box); the session that meters usage reads it and hears of the error then.
  d.write("installed/pricing.toml", "[pricing.\"m\"]\ninput = \"three\"\n");
  auto loaded = load(d.options());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().render();
  EXPECT_TRUE(loaded->policy.pricing.empty());
  auto prices = resolve_pricing(loaded->policy.pricing_files, loaded->policy.pricing);
  ASSERT_FALSE(prices.has_value());
  EXPECT_NE(prices.error().render().find("installed/pricing.toml"), std::string::npos)
      << prices.error().render();
}

TEST(Pricing, UserFieldsLandOnTheShippedOnes) {
  Dir d;
  d.write("installed/pricing.toml", kShipped);
  d.write("admin/pricing.toml", "[pricing.\"m-small\"]\noutput = 5.0\n");  // over the installed
  d.write("user/config.toml",
          "[pricing.\"m-large\"]\ninput = 2.5\n[pricing.\"m-new\"]\noutput = 8.0\n");
  auto loaded = load(d.options());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().render();
  auto prices = resolve_pricing(loaded->policy.pricing_files, loaded->policy.pricing);
  ASSERT_TRUE(prices.has_value()) << prices.error().render();
  ASSERT_EQ(prices->size(), 3u);
  const ModelPrice& large = prices->at("m-large");  // the user's input, the shipped rest
  EXPECT_EQ(*large.input, 2.5);
  EXPECT_EQ(*large.output, 15.0);
  EXPECT_EQ(*large.cached, 0.3);
  EXPECT_NE(large.origin.describe().find("config.toml"), std::string::npos);
  const ModelPrice& small = prices->at("m-small");  // the administrator's output
  EXPECT_EQ(*small.input, 1.0);
  EXPECT_EQ(*small.output, 5.0);
  EXPECT_EQ(*small.cached, 0.1);
  const ModelPrice& fresh = prices->at("m-new");  // only in the user's: unset fields are 0
  EXPECT_EQ(*fresh.input, 0.0);
  EXPECT_EQ(*fresh.output, 8.0);
  EXPECT_EQ(*fresh.cached, 0.0);
}

TEST(Pricing, NoShippedTableIsNoDefaults) {
  Dir d;
  d.write("user/config.toml", "[pricing.\"m\"]\ninput = 1.0\noutput = 2.0\ncached = 0.5\n");
  auto loaded = load(d.options());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().render();
  auto prices = resolve_pricing(loaded->policy.pricing_files, loaded->policy.pricing);
  ASSERT_TRUE(prices.has_value()) << prices.error().render();
  ASSERT_EQ(prices->size(), 1u);
  EXPECT_EQ(*prices->at("m").cached, 0.5);
}

TEST(Pricing, AWorkspaceFileMayNotPrice) {
  Dir d;
  d.write("ws/.agentbox.toml", "[pricing.\"m\"]\ninput = 0.0\n");
  auto loaded = load(d.options());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().render();
  // The path is built as the Dir writes it: options().user_dir's parent is the Dir.
  std::string ws = fs::path(*d.options().user_dir).parent_path() / "ws/.agentbox.toml";
  auto narrowed = narrow_with_workspace_file(*loaded, ws);
  ASSERT_FALSE(narrowed.has_value());
  EXPECT_NE(narrowed.error().render().find("pricing"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::config
