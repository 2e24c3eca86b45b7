// What a desktop notification may say (app/desktop_notify.hpp): the box's bytes reach the
// user's desktop only as printable ASCII, shortened, with the box's placeholders masked; and
// which environment counts as a desktop (the supervisor's own, read here as a plain map).
#include "agentbox/app/desktop_notify.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>

namespace agentbox::app {
namespace {

using policy::ApprovalKind;

TEST(DesktopNotify, TextIsPrintableShortAndMasksPlaceholders) {
  const std::string ph = "ghp_Plac3holderPlac3holderPlac3holder00";
  policy::Question exec{.kind = ApprovalKind::exec,
                        .subject = "/usr/bin/curl",
                        .detail = "curl -H 'Authorization: Bearer " + ph + "' \x1b[2Jx\xc3\xa9"};
  std::string s = DesktopNotify::describe(exec, {ph, "short"}, 200);
  EXPECT_EQ(s, "run curl -H 'Authorization: Bearer [placeholder]' ?[2Jx??");
  // A control byte inside a placeholder does not hide it, and never joins two halves into one.
  policy::Question split{.kind = ApprovalKind::exec,
                         .subject = "x",
                         .detail = "echo ghp_Plac3holder\nPlac3holderPlac3holder00"};
  EXPECT_EQ(DesktopNotify::describe(split, {ph}, 200).find(ph), std::string::npos);
  policy::Question host{
      .kind = ApprovalKind::host, .subject = "api.test", .detail = "api.test:443"};
  EXPECT_EQ(DesktopNotify::describe(host, {}, 200), "connect to api.test (rule api.test:443)");
  policy::Question cred{
      .kind = ApprovalKind::credential, .subject = "gh", .detail = "GET https://api.test/user"};
  EXPECT_EQ(DesktopNotify::describe(cred, {}, 200),
            "use the credential gh for GET https://api.test/user");
  policy::Question longer{
      .kind = ApprovalKind::exec, .subject = "x", .detail = std::string(500, 'a')};
  s = DesktopNotify::describe(longer, {}, 50);
  EXPECT_EQ(s.size(), 50u);
  EXPECT_EQ(s.substr(47), "...");
}

TEST(DesktopNotify, ADesktopNeedsADisplayAndABus) {
  std::string why;
  EXPECT_EQ(DesktopNotify::bus_address({{"DBUS_SESSION_BUS_ADDRESS", "unix:path=/x"}}, why), "");
  EXPECT_NE(why.find("DISPLAY"), std::string::npos) << why;
  EXPECT_EQ(DesktopNotify::bus_address(
                {{"DISPLAY", ":0"}, {"DBUS_SESSION_BUS_ADDRESS", "unix:path=/x"}}, why),
            "unix:path=/x");
  char tmpl[] = "/tmp/notify_test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string path = tmpl;
  why.clear();
  EXPECT_EQ(DesktopNotify::bus_address(
                {{"WAYLAND_DISPLAY", "wayland-0"}, {"XDG_RUNTIME_DIR", path}}, why),
            "");
  EXPECT_NE(why.find("no session bus"), std::string::npos) << why;
  // $XDG_RUNTIME_DIR/bus counts only when it is a socket.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  const std::string bus = path + "/bus";
  bus.copy(sun.sun_path, sizeof sun.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  EXPECT_EQ(DesktopNotify::bus_address(
                {{"WAYLAND_DISPLAY", "wayland-0"}, {"XDG_RUNTIME_DIR", path}}, why),
            "unix:path=" + bus);
  ::close(fd);
  ::unlink(bus.c_str());
  ::rmdir(path.c_str());
}

}  // namespace
}  // namespace agentbox::app
