// agentbox: parse the command line, dispatch to one verb, map the outcome to an exit code.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <exception>

#include "verbs.hpp"

namespace {

int dispatch(int argc, char** argv) {
  CLI::App app{"agentbox: run coding agents in a box that holds no real secrets", "agentbox"};
  app.set_version_flag("--version", std::string("agentbox ") + AGENTBOX_VERSION);
  app.require_subcommand(1);
  int exit_code = 0;
  agentbox::cli::register_run(app, exit_code);
  agentbox::cli::register_doctor(app, exit_code);
  agentbox::cli::register_explain(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 125;
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return dispatch(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "agentbox: error: {}\n", e.what());
  } catch (...) {
    fmt::print(stderr, "agentbox: error: unexpected failure\n");
  }
  return 125;
}
