// agentbox: parse the command line, dispatch to one verb, map the outcome to an exit code.
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "agentbox/base/startup_trace.hpp"
#include "usage.hpp"
#include "verbs.hpp"

namespace {

void on_sigpipe(int /*sig*/) {}

// A write to a closed pipe or a hung-up peer (stderr piped into a reader that quit, an upstream
// socket, the pty) must fail with EPIPE, not kill the supervisor and with it the box and its exit
// status. A no-op handler rather than SIG_IGN: execve resets caught signals to the default, but
// an ignored SIGPIPE would be inherited by the program in the box (`yes | head` relies on it).
void survive_sigpipe() {
  struct sigaction sa {};
  sa.sa_handler = on_sigpipe;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGPIPE, &sa, nullptr);
}

// The process ends here, without destructors, once stdio is flushed: every verb has closed what
// it opened before returning (a session ends inside `run`), and what is left is the command
// line's definitions (CLI::App, the options its callbacks hold) and static objects. Their
// destruction wrote ~30 heap pages that are copy-on-write after the box's init was cloned (or
// write-protected after its exit): ~40 page faults and ~0.9 ms of CPU at the end of every run
// (docs/BENCHMARKS.md, "Start-up: where the time goes"). Under AddressSanitizer the usual return,
// so that LeakSanitizer still checks the whole run.
#if defined(__SANITIZE_ADDRESS__)
#define AGENTBOX_EXIT_BY_RETURN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AGENTBOX_EXIT_BY_RETURN 1
#endif
#endif
void end_process(int rc) {
#ifndef AGENTBOX_EXIT_BY_RETURN
  std::fflush(nullptr);
  ::_exit(rc);
#else
  (void)rc;
#endif
}

int dispatch(CLI::App& app, int argc, char** argv) {
  app.set_version_flag("--version", std::string("agentbox ") + AGENTBOX_VERSION);
  app.require_subcommand(1);
  int exit_code = 0;
  agentbox::cli::register_run(app, exit_code);
  agentbox::cli::register_doctor(app, exit_code);
  agentbox::cli::register_explain(app, exit_code);
  agentbox::cli::register_state(app, exit_code);
  agentbox::cli::register_control(app, exit_code);
  agentbox::cli::register_approve(app, exit_code);
  agentbox::cli::register_review(app, exit_code);
  agentbox::cli::register_completion(app, exit_code);
  if (auto rc = agentbox::cli::handle_verb_word(app, argc, argv)) {
    return *rc;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return agentbox::cli::report_parse_error(app, e, argc, argv);
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  agentbox::base::startup_trace::stamp("main");
  survive_sigpipe();
  try {
    CLI::App app{"agentbox: run coding agents in a box that holds no real secrets", "agentbox"};
    int rc = dispatch(app, argc, argv);
    agentbox::base::startup_trace::stamp("dispatched");
    end_process(rc);
    return rc;
  } catch (const std::exception& e) {
    fmt::print(stderr, "agentbox: error: {}\n", e.what());
  } catch (...) {
    fmt::print(stderr, "agentbox: error: unexpected failure\n");
  }
  return 125;
}
