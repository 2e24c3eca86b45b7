// The seccomp programs compiled at build time (gen/seccomp_gen.cpp writes the definitions).
#pragma once

#include <linux/filter.h>

#include <cstddef>

namespace agentbox::sandbox::prebuilt {

struct Program {
  const char* groups;  // the loosened groups, sorted, comma-separated ("" for the default)
  const sock_filter* insns;
  size_t len;
};
extern const Program kPrograms[];  // kCount entries, then a null one
extern const size_t kCount;

}  // namespace agentbox::sandbox::prebuilt
