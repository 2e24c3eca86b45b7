// compile_seccomp(): the program built into agentbox (see gen/seccomp_gen.cpp) when there is one
// for these groups, else libseccomp at run time. Kept apart from seccomp.cpp, which the build-time
// generator links on its own.
#include <string>
#include <utility>
#include <vector>

#include "agentbox/sandbox/seccomp.hpp"
#include "seccomp_prebuilt.hpp"

namespace agentbox::sandbox {

const std::vector<sock_filter>* prebuilt_seccomp(const std::set<std::string>& allow_groups) {
  // Built once per process; lookups by the sorted, comma-joined group list.
  static const std::vector<std::pair<std::string, std::vector<sock_filter>>> table = [] {
    std::vector<std::pair<std::string, std::vector<sock_filter>>> t;
    for (size_t i = 0; i < prebuilt::kCount; ++i) {
      const prebuilt::Program& p = prebuilt::kPrograms[i];
      t.emplace_back(p.groups, std::vector<sock_filter>(p.insns, p.insns + p.len));
    }
    return t;
  }();
  std::string key;
  for (const auto& g : allow_groups) {  // std::set: sorted, as the generator wrote them
    key += (key.empty() ? "" : ",") + g;
  }
  for (const auto& [groups, insns] : table) {
    if (groups == key) {
      return &insns;
    }
  }
  return nullptr;
}

base::Result<SeccompProgram> compile_seccomp(const std::set<std::string>& allow_groups) {
  AGENTBOX_TRY(check_seccomp_groups(allow_groups));
  SeccompProgram out;
  if (const auto* built = prebuilt_seccomp(allow_groups)) {
    out.notify = *built;
  } else {
    AGENTBOX_ASSIGN_OR_RETURN(out.notify, compile_seccomp_with(allow_groups, true));
  }
  // The errno variant differs only in the deny action: rewriting the notify program's returns
  // costs nothing, where a second libseccomp compilation cost as much as the first.
  out.errno_only = notify_to_errno(out.notify);
  return out;
}

}  // namespace agentbox::sandbox
