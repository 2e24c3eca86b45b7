// A temporary file for the audit unit tests (a log to open), removed at the end of the test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace agentbox::audit {

struct TempFile {
  std::string path;
  TempFile() {
    char tmpl[] = "/tmp/agentbox-audit-test-XXXXXX";
    int fd = ::mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    ::close(fd);
    path = tmpl;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
};

}  // namespace agentbox::audit
