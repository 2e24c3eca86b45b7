// SessionBudget::price_lazily: the price table is loaded on the first priced reading, once,
// and what it prices is the same as a table given at construction.
#include <gtest/gtest.h>

#include "agentbox/proxy/session_budget.hpp"

namespace agentbox::proxy {
namespace {

UsageMeter::Reading seen(const char* model, uint64_t in, uint64_t out) {
  UsageMeter::Reading r;
  r.model = model;
  r.tokens = {in, out, 0};
  r.seen = true;
  return r;
}

TEST(SessionBudgetPrices, LoadedOnTheFirstReadingOnly) {
  int loads = 0;
  SessionBudget lazy({.spend = 10.0}, {}, nullptr);
  lazy.price_lazily([&loads] {
    ++loads;
    return PriceTable{{"m", {2, 4, 0}}};
  });
  // Admission, counting and a response with no usage report price nothing: no load.
  EXPECT_EQ(lazy.admit("api.anthropic.com").limit, SessionLimit::kNone);
  lazy.count_request("api.anthropic.com");
  lazy.count_egress(1, 100);
  lazy.record("api.anthropic.com", {}, UsageMeter::Reading{});
  EXPECT_EQ(loads, 0);
  lazy.record("api.anthropic.com", {}, seen("m-2025", 1'000'000, 500'000));
  lazy.record("api.anthropic.com", {}, seen("m", 1'000'000, 0));
  EXPECT_EQ(loads, 1);

  SessionBudget eager({.spend = 10.0}, {{"m", {2, 4, 0}}}, nullptr);
  eager.record("api.anthropic.com", {}, seen("m-2025", 1'000'000, 500'000));
  eager.record("api.anthropic.com", {}, seen("m", 1'000'000, 0));
  EXPECT_DOUBLE_EQ(lazy.spent(), eager.spent());
  EXPECT_DOUBLE_EQ(lazy.spent(), 2 + 2 + 2);
  EXPECT_TRUE(lazy.unpriced().empty());
}

TEST(SessionBudgetPrices, AnEmptyLoadFailsClosedUnderASpendCap) {
  SessionBudget b({.spend = 10.0}, {}, nullptr);
  b.price_lazily([] { return PriceTable{}; });  // a shipped table that did not parse
  b.record("api.openai.com", {}, seen("m", 10, 10));
  ASSERT_EQ(b.unpriced().size(), 1u);
  EXPECT_EQ(b.admit("api.openai.com").limit, SessionLimit::kSpend);
}

}  // namespace
}  // namespace agentbox::proxy
