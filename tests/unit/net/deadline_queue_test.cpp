// DeadlineQueue: the earliest of many flows' timers, kept exact through moves and removals.
#include "agentbox/net/deadline_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

namespace agentbox::net {
namespace {

using std::chrono::milliseconds;
using TP = DeadlineQueue::TimePoint;

TEST(DeadlineQueue, EmptyHasNoDeadline) {
  DeadlineQueue q;
  EXPECT_FALSE(q.earliest());
  EXPECT_TRUE(q.due(TP::max()).empty());
  q.set(1, std::nullopt);  // removing what is not there is harmless
  EXPECT_EQ(q.size(), 0u);
}

TEST(DeadlineQueue, MovesLaterAndEarlierAndRemoves) {
  DeadlineQueue q;
  TP t0{};
  q.set(1, t0 + milliseconds(100));
  q.set(2, t0 + milliseconds(50));
  EXPECT_EQ(q.earliest(), t0 + milliseconds(50));
  q.set(2, t0 + milliseconds(300));  // an ACK pushes a retransmission deadline later
  EXPECT_EQ(q.earliest(), t0 + milliseconds(100));
  q.set(1, t0 + milliseconds(400));
  EXPECT_EQ(q.earliest(), t0 + milliseconds(300));
  q.set(1, t0 + milliseconds(10));  // and earlier again
  EXPECT_EQ(q.earliest(), t0 + milliseconds(10));
  q.set(1, std::nullopt);
  EXPECT_EQ(q.earliest(), t0 + milliseconds(300));
  EXPECT_EQ(q.size(), 1u);
  q.set(2, std::nullopt);
  EXPECT_FALSE(q.earliest());
  EXPECT_EQ(q.size(), 0u);
}

TEST(DeadlineQueue, DueListsPassedDeadlinesEarliestFirstAndKeepsThem) {
  DeadlineQueue q;
  TP t0{};
  q.set(7, t0 + milliseconds(30));
  q.set(8, t0 + milliseconds(10));
  q.set(9, t0 + milliseconds(20));
  q.set(10, t0 + milliseconds(20));  // same instant, another flow: both kept
  EXPECT_EQ(q.due(t0 + milliseconds(5)), std::vector<uint64_t>{});
  EXPECT_EQ(q.due(t0 + milliseconds(20)), (std::vector<uint64_t>{8, 9, 10}));
  EXPECT_EQ(q.size(), 4u) << "due() does not remove: the handler sets the next deadline";
  EXPECT_EQ(q.due(t0 + milliseconds(30)).size(), 4u);
}

// Against the scan it replaces: random sets, moves and removals over many flows.
TEST(DeadlineQueue, MatchesAScanOverEveryFlow) {
  DeadlineQueue q;
  std::map<uint64_t, TP> truth;
  std::mt19937 rng(42);
  TP t0{};
  for (int i = 0; i < 20000; ++i) {
    uint64_t id = rng() % 500;
    if (rng() % 4 == 0) {
      q.set(id, std::nullopt);
      truth.erase(id);
    } else {
      TP at = t0 + milliseconds(rng() % 100000);
      q.set(id, at);
      truth[id] = at;
    }
    std::optional<TP> best;
    for (auto& [k, v] : truth) {
      best = !best || v < *best ? std::optional(v) : best;
    }
    ASSERT_EQ(q.earliest(), best) << "step " << i;
    ASSERT_EQ(q.size(), truth.size());
  }
  TP now = t0 + milliseconds(50000);
  std::vector<uint64_t> want;
  std::vector<std::pair<TP, uint64_t>> passed;
  for (auto& [k, v] : truth) {
    if (v <= now) {
      passed.emplace_back(v, k);
    }
  }
  std::sort(passed.begin(), passed.end());
  for (auto& p : passed) {
    want.push_back(p.second);
  }
  EXPECT_EQ(q.due(now), want);
}

}  // namespace
}  // namespace agentbox::net
