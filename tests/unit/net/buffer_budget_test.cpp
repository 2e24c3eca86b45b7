// The session's socket buffer budget: grants never add up past it, every flow up to max_flows
// keeps its floor, the first flows get large buffers, and what a flow releases comes back.
#include "agentbox/net/buffer_budget.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace agentbox::net {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(BufferBudget, NoBudgetLeavesTheKernelDefaults) {
  BufferBudget b(0, 4096);
  const auto g = b.acquire(1);
  EXPECT_EQ(g.pair, 0u);
  EXPECT_EQ(g.upstream, 0u);
  EXPECT_EQ(b.granted(), 0u);
}

TEST(BufferBudget, AFullSessionStaysWithinTheBudgetAndEveryFlowGetsItsFloor) {
  BufferBudget b(128 * kMiB, 4096);
  uint64_t sum = 0;
  for (uint64_t id = 1; id <= 4096; ++id) {
    const auto g = b.acquire(id);
    EXPECT_GE(g.total, BufferBudget::kFloor) << id;
    EXPECT_GE(g.pair, 4608u) << id;
    sum += g.total;
    ASSERT_LE(b.granted(), b.total()) << id;
  }
  EXPECT_EQ(sum, b.granted());
  EXPECT_LE(sum, 128 * kMiB);
}

TEST(BufferBudget, TheFirstFlowsGetLargeBuffersAndReleasedGrantsComeBack) {
  BufferBudget b(128 * kMiB, 4096);
  const auto first = b.acquire(1);
  EXPECT_EQ(first.pair, BufferBudget::kMaxPair);
  EXPECT_GE(first.upstream, uint64_t{400} << 10);  // at least net.core.wmem_max's default x 2
  for (uint64_t id = 2; id <= 4000; ++id) {
    (void)b.acquire(id);
  }
  const auto late = b.acquire(4001);
  EXPECT_LT(late.total, first.total);
  const uint64_t before = b.granted();
  b.release(4001);
  b.release(4001);  // twice: harmless
  EXPECT_EQ(b.granted(), before - late.total);
  for (uint64_t id = 1; id <= 4000; ++id) {
    b.release(id);
  }
  EXPECT_EQ(b.granted(), 0u);
  EXPECT_EQ(b.acquire(5000).total, first.total);
}

TEST(BufferBudget, TooSmallABudgetIsRaisedToTheFloors) {
  BufferBudget b(1 * kMiB, 4096);
  EXPECT_EQ(b.total(), 4096 * BufferBudget::kFloor);
}

TEST(BufferBudget, SocketsGetTheGrantedSizes) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  cap_socket_buffers(fd, 16384);
  int snd = 0;
  int rcv = 0;
  socklen_t len = sizeof snd;
  ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, &len), 0);
  len = sizeof rcv;
  ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &len), 0);
  EXPECT_EQ(snd, 16384);
  EXPECT_EQ(rcv, 16384);
  ::close(fd);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  cap_send_buffer(sv[0], 8192);
  len = sizeof snd;
  ASSERT_EQ(::getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &snd, &len), 0);
  EXPECT_EQ(snd, 8192);
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace agentbox::net
