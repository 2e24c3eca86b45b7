// Error and Result: the message format users read, and the propagation macros.
#include <gtest/gtest.h>

#include <cerrno>

#include "agentbox/base/result.hpp"
#include "agentbox/base/sys.hpp"

namespace agentbox::base {
namespace {

TEST(Error, SysMessageNamesOperationObjectAndErrno) {
  Error e = Error::sys(ENOENT, "open", "/nope").context("reading the profile");
  EXPECT_EQ(e.message(), "reading the profile: open `/nope`: No such file or directory (ENOENT)");
  EXPECT_EQ(e.render(),
            "agentbox: error: reading the profile: open `/nope`: No such file or directory "
            "(ENOENT)\n");
}

TEST(Error, ContextIsOutermostFirstAndHintOnItsOwnLine) {
  Error e = Error::msg("bad").context("inner").context("outer").hint("do the thing");
  EXPECT_EQ(e.render(), "agentbox: error: outer: inner: bad\nhint: do the thing\n");
}

TEST(Error, UnknownErrnoStillNamed) {
  EXPECT_EQ(errno_name(4095), "E4095");
}

Result<int> half(int x) {
  if (x % 2 != 0) {
    return Error::msg("odd");
  }
  return x / 2;
}

Result<int> quarter(int x) {
  AGENTBOX_ASSIGN_OR_RETURN(int h, half(x));
  AGENTBOX_ASSIGN_OR_RETURN(int q, half(h));
  return q;
}

Status check(int x) {
  AGENTBOX_TRY(half(x));
  return ok();
}

TEST(Result, MacrosPropagate) {
  EXPECT_EQ(*quarter(8), 2);
  ASSERT_FALSE(quarter(6));
  EXPECT_EQ(quarter(6).error().what(), "odd");
  EXPECT_TRUE(check(2));
  EXPECT_FALSE(check(3));
}

TEST(Sys, OpenMissingFileReportsPath) {
  auto r = open_fd("/definitely/not/here", 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err(), ENOENT);
  EXPECT_NE(r.error().message().find("`/definitely/not/here`"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::base
