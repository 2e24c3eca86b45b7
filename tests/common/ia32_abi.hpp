// Test helper: can this kernel run the i386 syscall ABI (int 0x80) at all? Kernels built without
// IA32 emulation, booted with ia32_emulation=0, or running as a PVM guest (seen: 6.18 with
// CONFIG_IA32_EMULATION=y) raise SIGSEGV on int 0x80 before any seccomp filter sees the call: there
// the box's "foreign ABI is killed" rule is not applicable (the ABI is closed by construction), and
// tests of it skip with this reason instead of failing.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace agentbox::testing {

// "" when int 0x80 getpid works in a forked child outside any filter, else why it cannot.
inline std::string ia32_abi_unavailable() {
#if defined(__x86_64__)
  pid_t pid = fork();
  if (pid == 0) {
    long ret = 20;                                       // __NR_getpid on i386
    asm volatile("int $0x80" : "+a"(ret) : : "memory");  // NOLINT(hicpp-no-assembler)
    _exit(ret > 0 ? 0 : 1);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) {
    return "";  // cannot tell: let the test run and show what happens
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) {
    return "not applicable: int 0x80 raises SIGSEGV here even outside any filter (no IA32 "
           "emulation: CONFIG_IA32_EMULATION off, ia32_emulation=0, or a hypervisor such as PVM "
           "that does not deliver it), so the i386 ABI is closed by construction";
  }
  return "";
#else
  return "not applicable: int 0x80 exists only on x86";
#endif
}

}  // namespace agentbox::testing
