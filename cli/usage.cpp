// Usage errors: CLI11 says "The following arguments were not expected: -- --bogus"; agentbox
// names the verb, the word, and the nearest word it knows (docs: agentbox(1)).
#include "usage.hpp"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

#include "agentbox/base/error.hpp"
#include "agentbox/config/units.hpp"

namespace agentbox::cli {
namespace {

std::vector<std::string> verb_names(const CLI::App& app) {
  std::vector<std::string> out;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    out.push_back(sub->get_name());
  }
  return out;
}

std::vector<std::string> flag_names(const CLI::App& verb) {
  std::vector<std::string> out;
  for (const CLI::Option* opt : verb.get_options()) {
    for (const auto& l : opt->get_lnames()) {
      out.push_back("--" + l);
    }
  }
  return out;
}

std::string nearest(const std::string& word, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = std::max<size_t>(3, word.size() / 3);
  for (const auto& k : known) {
    if (size_t d = config::edit_distance(word, k); d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

int fail(const std::string& what, const std::string& hint) {
  fmt::print(stderr, "{}", base::Error::msg(what).hint(hint).render());
  return 125;
}

// The verb on the command line (the first word that names one), or null.
const CLI::App* verb_of(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc && std::string(argv[i]) != "--"; ++i) {
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      if (sub->get_name() == argv[i]) {
        return sub;
      }
    }
  }
  return nullptr;
}

const CLI::Option* find_option(const CLI::App& verb, const std::string& word) {
  for (const CLI::Option* opt : verb.get_options()) {
    if (word.rfind("--", 0) == 0 ? opt->check_lname(word.substr(2))
                                 : word.size() >= 2 && opt->check_sname(word.substr(1, 1))) {
      return opt;
    }
  }
  return nullptr;
}

// An option the verb does not have, anywhere before `--` (and before the command's first word):
// CLI11 would otherwise take `--alow` for the command, or report the words after it.
std::optional<int> unknown_option(const CLI::App& verb, int first, int argc, char** argv) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--" || a.size() < 2 || a[0] != '-') {
      return std::nullopt;  // the command (run) or a positional: CLI11's part
    }
    std::string word = a.substr(0, a.find('='));
    const CLI::Option* opt = find_option(verb, word);
    if (opt == nullptr) {
      std::string best = word.rfind("--", 0) == 0 ? nearest(word, flag_names(verb)) : "";
      return fail(fmt::format("{}: unknown option `{}`", verb.get_name(), word),
                  best.empty()
                      ? fmt::format("`agentbox help {}` lists its options", verb.get_name())
                      : fmt::format("did you mean `{}`?", best));
    }
    bool inline_value = a.find('=') != std::string::npos || (a[1] != '-' && a.size() > 2);
    if (opt->get_expected_max() != 0 && !inline_value) {
      ++i;  // its value
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<int> handle_verb_word(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    return std::nullopt;
  }
  std::string word = argv[1];
  std::vector<std::string> verbs = verb_names(app);
  bool help = word == "help";
  if (help) {
    if (argc == 2) {
      fmt::print("{}", app.help());
      return 0;
    }
    word = argv[2];
  }
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_name() == word) {
      if (!help) {
        return unknown_option(*sub, 2, argc, argv);
      }
      fmt::print("{}", sub->help());
      return 0;
    }
  }
  std::string best = nearest(word, verbs);
  return fail(fmt::format("unknown command `{}`", word),
              best.empty()
                  ? fmt::format("the commands are {}; `agentbox help COMMAND` explains one",
                                fmt::join(verbs, ", "))
                  : fmt::format("did you mean `agentbox {}`?", best));
}

int report_parse_error(const CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  if (e.get_exit_code() == 0) {  // --help, --version
    return app.exit(e);
  }
  const CLI::App* verb = verb_of(app, argc, argv);
  if (verb == nullptr) {
    return fail("no command given", fmt::format("agentbox {} ...; `agentbox help` lists them",
                                                fmt::join(verb_names(app), "|")));
  }
  std::string name = verb->get_name();
  std::string help = fmt::format("`agentbox help {}` lists its options", name);
  std::string what = e.what();
  if (dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
    // "The following arguments were not expected: -- --bogus": the first that is not `--`.
    std::string word;
    for (int i = 1; i < argc && std::string(argv[i]) != "--"; ++i) {
      std::string a = argv[i];
      std::string bare = a.substr(0, a.find('='));
      if (a[0] == '-' && what.find(bare) != std::string::npos) {
        word = bare;
        break;
      }
    }
    if (!word.empty()) {
      std::string best = nearest(word, flag_names(*verb));
      return fail(fmt::format("{}: unknown option `{}`", name, word),
                  best.empty() ? help : fmt::format("did you mean `{}`?", best));
    }
    return fail(
        fmt::format("{}: unexpected arguments: {}", name, what.substr(what.find(':') + 2)),
        name == "run" ? "put the command after `--`: agentbox run [OPTIONS] -- CMD ARGS..." : help);
  }
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr) {
    return fail(fmt::format("{}: {} needs a value", name, what.substr(0, what.find(':'))), help);
  }
  if (name == "run" && what.find("command is required") != std::string::npos) {
    return fail("run: no command given", "agentbox run [OPTIONS] -- CMD ARGS...");
  }
  return fail(fmt::format("{}: {}", name, what), help);
}

}  // namespace agentbox::cli
