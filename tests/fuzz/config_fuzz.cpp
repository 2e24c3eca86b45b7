// Fuzz target: arbitrary bytes as a config file (and as a workspace file) must give a Policy or
// an error, never a crash or an escaped exception.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "agentbox/base/sys.hpp"
#include "agentbox/config/load.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    char tmpl[] = "/tmp/agentbox-config-fuzz-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd >= 0) {
      close(fd);
    }
    return std::string(tmpl);
  }();
  if (!agentbox::base::write_file(path,
                                  std::string_view(reinterpret_cast<const char*>(data), size))) {
    return 0;
  }
  agentbox::config::LoadOptions o;
  o.system_file = path;
  o.user_dir = "/nonexistent-agentbox-fuzz";
  auto r = agentbox::config::load(o);
  if (r) {
    (void)agentbox::config::explain(*r);
    (void)agentbox::config::narrow_with_workspace_file(*r, path);
  } else {
    (void)r.error().render();
  }
  return 0;
}
