// base::read_file / read_all: whole files of every size (sized by fstat for regular files),
// the limit, and files whose size the kernel does not report (/proc).
#include "agentbox/base/sys.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

namespace agentbox::base {
namespace {

std::string temp_path() {
  char tmpl[] = "/tmp/agentbox-sys-test-XXXXXX";
  int fd = ::mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  ::close(fd);
  return tmpl;
}

TEST(ReadFile, ReadsWholeFilesOfEverySize) {
  const std::string path = temp_path();
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{16383}, size_t{16384}, size_t{16385}, size_t{300} * 1024}) {
    std::string data(size, '\0');
    for (size_t i = 0; i < size; ++i) {
      data[i] = static_cast<char>('a' + i % 26);
    }
    ASSERT_TRUE(write_file(path, data));
    auto got = read_file(path, 16u << 20);
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_EQ(*got, data) << size;
  }
  ::unlink(path.c_str());
}

TEST(ReadFile, StopsAtTheLimit) {
  const std::string path = temp_path();
  ASSERT_TRUE(write_file(path, std::string(100000, 'x')));
  auto got = read_file(path, 1000);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), 1000u);
  ::unlink(path.c_str());
}

TEST(ReadFile, ReadsProcFilesThatReportNoSize) {
  auto got = read_file("/proc/self/status");
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_NE(got->find("Name:"), std::string::npos);
  EXPECT_NE(got->find("VmPeak:"), std::string::npos) << "read to its end";
}

}  // namespace
}  // namespace agentbox::base
