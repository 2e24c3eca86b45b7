// Config loading: TOML layers -> one Policy, every value with its origin.
//
// Theory of operation:
//   1. Start from the built-in defaults (protected workspace paths, tmpfs sizes).
//   2. For each file layer (system, user, profile) parse the TOML with toml11, then walk it against
//      the schema below: unknown keys, wrong types and bad values become Problems (with
//      file:line:col and "did you mean"), good values are applied. Lists accumulate across layers,
//      scalars override, a [credentials.NAME] table replaces an earlier one of the same name.
//   3. Apply the command-line flags the same way, with the flag name as origin.
//   4. If any layer had a problem, report all of them and stop: nothing runs on a bad config.
// A workspace file (narrow_with_workspace_file) is walked in narrowing mode: it may only keep a
// subset of what the user granted, lower limits, or add protected paths.
// toml11 throws; exceptions stay inside this file.
#include "agentbox/config/load.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <toml.hpp>
#include <tuple>

#include "agentbox/config/answers.hpp"
#include "agentbox/config/defaults.hpp"
#include "agentbox/config/units.hpp"
#include "agentbox/policy/connect_to.hpp"
#include "agentbox/policy/egress.hpp"
#include "agentbox/policy/host.hpp"
#include "agentbox/policy/source.hpp"
#include "agentbox/policy/terminal_allow.hpp"
#include "problems.hpp"
#include "toml_json.hpp"
#include "trust.hpp"

namespace agentbox::config {

std::string Origin::describe() const {
  if (line > 0) {
    return fmt::format("{}:{}:{}", source, line, column);
  }
  return source;
}

std::string Problems::render() const {
  std::vector<Problem> sorted = list_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Problem& a, const Problem& b) {
    return std::tie(a.at.source, a.at.line, a.at.column) <
           std::tie(b.at.source, b.at.line, b.at.column);
  });
  std::string out;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const Problem& p = sorted[i];
    if (i != 0) {
      out += "\nagentbox: error: ";
    }
    out += fmt::format("{}: {}", p.at.describe(), p.what);
    if (p.at.line > 0 && !p.line_text.empty()) {
      std::string gutter = fmt::format("{:>5} | ", p.at.line);
      out += fmt::format("\n{}{}\n{:>{}}^", gutter, p.line_text, "",
                         gutter.size() + static_cast<size_t>(std::max(p.at.column, 1)) - 1);
    }
    if (!p.note.empty()) {
      out += "\n      " + p.note;
    }
  }
  return out;
}

namespace {

using Value = toml::value;
enum class Mode { kGrant, kNarrow };

struct Ctx {
  Mode mode;
  Policy& p;
  Problems& problems;
};

std::string type_name(const Value& v) {
  switch (v.type()) {
    case toml::value_t::empty:
      return "nothing";
    case toml::value_t::boolean:
      return "a boolean";
    case toml::value_t::integer:
      return "an integer";
    case toml::value_t::floating:
      return "a float";
    case toml::value_t::string:
      return "a string";
    case toml::value_t::offset_datetime:
    case toml::value_t::local_datetime:
    case toml::value_t::local_date:
    case toml::value_t::local_time:
      return "a date/time";
    case toml::value_t::array:
      return "an array";
    case toml::value_t::table:
      return "a table";
  }
  return "a value";
}

Origin origin_of(const Value& v) {
  auto loc = v.location();
  return {loc.file_name(), static_cast<int>(loc.line()), static_cast<int>(loc.column())};
}

// The position of `key` itself when it stands on the value's line before the value.
Origin key_origin(const Value& v, std::string_view key) {
  Origin o = origin_of(v);
  std::string line = v.location().line_str();
  size_t pos = line.find(key);
  if (pos != std::string::npos && static_cast<int>(pos) < o.column) {
    o.column = static_cast<int>(pos) + 1;
  }
  return o;
}

void problem(Ctx& c, const Value& v, std::string what, std::string note = {}) {
  c.problems.add(origin_of(v), v.location().line_str(), std::move(what), std::move(note));
}

std::optional<std::string> get_string(Ctx& c, const Value& v, std::string_view name) {
  if (!v.is_string()) {
    problem(c, v, fmt::format("`{}` must be a string, found {}", name, type_name(v)));
    return std::nullopt;
  }
  return v.as_string().str;
}

std::optional<std::vector<std::string>> get_strings(Ctx& c, const Value& v, std::string_view name) {
  if (!v.is_array()) {
    problem(c, v, fmt::format("`{}` must be an array of strings, found {}", name, type_name(v)));
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const Value& e : v.as_array()) {
    if (!e.is_string()) {
      problem(c, e, fmt::format("`{}` must contain only strings, found {}", name, type_name(e)));
      ok = false;
    } else {
      out.push_back(e.as_string().str);
    }
  }
  return ok ? std::optional(out) : std::nullopt;
}

std::optional<uint64_t> get_size(Ctx& c, const Value& v, std::string_view name) {
  if (v.is_integer() && v.as_integer() == 0) {
    return 0;
  }
  if (v.is_integer() && v.as_integer() > 0) {
    problem(c, v, fmt::format("`{}`: a size needs a unit", name),
            fmt::format("write \"{0}M\" or \"{0}G\" (or \"{0}B\" for bytes)", v.as_integer()));
    return std::nullopt;
  }
  if (v.is_string() && v.as_string().str == "unlimited") {
    return kUnlimited;
  }
  if (v.is_string()) {
    if (auto s = parse_size(v.as_string().str)) {
      return s;
    }
    problem(c, v, fmt::format("`{}`: invalid size `{}`", name, v.as_string().str),
            "expected a number with a unit: B, K, M, G or T, e.g. \"512M\"");
    return std::nullopt;
  }
  problem(c, v, fmt::format("`{}` must be a size such as \"512M\", found {}", name, type_name(v)));
  return std::nullopt;
}

std::optional<uint64_t> get_duration(Ctx& c, const Value& v, std::string_view name) {
  if (v.is_integer() && v.as_integer() > 0) {
    return static_cast<uint64_t>(v.as_integer());
  }
  if (v.is_string()) {
    if (auto s = parse_duration(v.as_string().str)) {
      return s;
    }
    problem(c, v, fmt::format("`{}`: invalid duration `{}`", name, v.as_string().str),
            "expected e.g. \"90s\", \"5m\", \"1h30m\"");
    return std::nullopt;
  }
  problem(c, v,
          fmt::format("`{}` must be a duration such as \"2h\", found {}", name, type_name(v)));
  return std::nullopt;
}

std::optional<uint64_t> get_count(Ctx& c, const Value& v, std::string_view name) {
  if (v.is_integer() && v.as_integer() > 0) {
    return static_cast<uint64_t>(v.as_integer());
  }
  if (v.is_string() && v.as_string().str == "unlimited") {
    return kUnlimited;
  }
  problem(c, v,
          fmt::format("`{}` must be a positive integer or \"unlimited\", found {}", name,
                      type_name(v)));
  return std::nullopt;
}

bool valid_path(std::string_view s) {
  return !s.empty() && (s[0] == '/' || s[0] == '~');
}

bool valid_relative(std::string_view s) {
  if (s.empty() || s[0] == '/' || s.find('\0') != std::string_view::npos) {
    return false;
  }
  std::string_view rest = s;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part == ".." || part == ".") {
      return false;
    }
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  }
  return true;
}

std::string_view without_slash(std::string_view s) {
  while (!s.empty() && s.back() == '/') {
    s.remove_suffix(1);
  }
  return s;
}

// `sandbox.unprotect`: drops entries of the protected list granted so far (built-in or lower
// layers). Git's own metadata is not in that list: the sandbox always protects it.
void unprotect(Ctx& c, const Value& v) {
  auto items = get_strings(c, v, "sandbox.unprotect");
  if (!items) {
    return;
  }
  for (size_t i = 0; i < items->size(); ++i) {
    const Value& e = v.as_array()[i];
    std::string_view want = without_slash((*items)[i]);
    if (want == ".git" || want.substr(0, 5) == ".git/" || want == ".gitmodules") {
      problem(c, e,
              fmt::format("`sandbox.unprotect`: `{}` is git metadata, always protected (git on "
                          "the host would run what the box wrote there)",
                          (*items)[i]));
      continue;
    }
    auto& list = c.p.protected_paths;
    auto gone = std::remove_if(list.begin(), list.end(), [&](const Sourced<std::string>& p) {
      return without_slash(p.value) == want;
    });
    if (gone == list.end()) {
      problem(c, e, fmt::format("`sandbox.unprotect`: `{}` is not protected", (*items)[i]));
    }
    list.erase(gone, list.end());
  }
}

// "HOST:PORT:ADDR:PORT" as in curl (policy's grammar, so validation and use never disagree).
// "PORT[:PORT]" of network.host_ports / network.publish (policy's grammar).
std::optional<std::string> port_map_problem(std::string_view s) {
  if (auto r = policy::parse_port_map(s); !r) {
    return fmt::format("`{}`: {}", s, r.error().message());
  }
  return std::nullopt;
}

std::optional<std::string> connect_to_problem(std::string_view s) {
  auto r = policy::parse_connect_to(s);
  if (r) {
    return std::nullopt;
  }
  return fmt::format("`{}`: expected HOST:PORT:ADDR:PORT ({})", s, r.error().message());
}

using Validator = std::function<std::optional<std::string>(const std::string&)>;

// Checks each element; returns the message for the first bad one (element-located problems).
bool validate_each(Ctx& c, const Value& arr, const std::vector<std::string>& items,
                   const Validator& check) {
  bool ok = true;
  for (size_t i = 0; i < items.size(); ++i) {
    if (auto err = check(items[i])) {
      problem(c, arr.as_array()[i], *err);
      ok = false;
    }
  }
  return ok;
}

Validator path_validator(const std::string& name) {
  return [name](const std::string& s) -> std::optional<std::string> {
    if (valid_path(s)) {
      return std::nullopt;
    }
    return fmt::format("`{}`: `{}` must be an absolute path or start with ~", name, s);
  };
}

Validator egress_validator(const std::string& name) {
  return [name](const std::string& s) -> std::optional<std::string> {
    auto r = policy::EgressRule::parse(s);
    if (r) {
      return std::nullopt;
    }
    return fmt::format("`{}`: {}", name, r.error().message());
  };
}

// Points at the key itself: the whole entry is what the workspace file may not say.
void widen_error(Ctx& c, const Value& v, std::string_view name) {
  std::string_view key = name.substr(name.rfind('.') + 1);
  key = key.substr(0, key.find(' '));
  c.problems.add(key_origin(v, key), v.location().line_str(),
                 fmt::format("`{}` cannot be set by a workspace file", name),
                 "a workspace file may only narrow what your own configuration grants");
}

// Lists: grant mode appends; narrow mode keeps only the granted entries it names.
void apply_list(Ctx& c, const Value& v, std::string_view name,
                std::vector<Sourced<std::string>>& into, const Validator& check) {
  auto items = get_strings(c, v, name);
  if (!items || (check && !validate_each(c, v, *items, check))) {
    return;
  }
  if (c.mode == Mode::kGrant) {
    for (size_t i = 0; i < items->size(); ++i) {
      into.push_back({(*items)[i], origin_of(v.as_array()[i])});
    }
    return;
  }
  for (size_t i = 0; i < items->size(); ++i) {
    bool granted = std::any_of(into.begin(), into.end(), [&](const Sourced<std::string>& g) {
      return g.value == (*items)[i];
    });
    if (!granted) {
      problem(c, v.as_array()[i],
              fmt::format("`{}`: `{}` is not granted by your configuration, so a workspace file "
                          "cannot add it",
                          name, (*items)[i]));
    }
  }
  std::erase_if(into, [&](const Sourced<std::string>& g) {
    return std::find(items->begin(), items->end(), g.value) == items->end();
  });
}

void apply_limit(Ctx& c, const Value& v, std::string_view name,
                 std::optional<Sourced<uint64_t>>& into, std::optional<uint64_t> value) {
  if (!value) {
    return;
  }
  if (c.mode == Mode::kNarrow && into && *value > into->value) {
    problem(c, v, fmt::format("`{}` may only be lowered by a workspace file", name));
    return;
  }
  into = Sourced<uint64_t>{*value, origin_of(v)};
}

using KeyHandler = std::function<void(Ctx&, const Value&)>;
using Schema = std::vector<std::pair<std::string, KeyHandler>>;

// A key that names one of two words, kept as whether it says `narrow`. A workspace file may say
// `narrow`, never go back to `wide` once your configuration said `narrow`.
KeyHandler narrowing_choice(std::string name, std::string narrow, std::string wide,
                            Sourced<bool>& (*field)(Policy&)) {
  return [name = std::move(name), narrow = std::move(narrow), wide = std::move(wide), field](
             Ctx& c, const Value& v) {
    auto s = get_string(c, v, name);
    if (!s) {
      return;
    }
    Sourced<bool>& into = field(c.p);
    if (*s != narrow && *s != wide) {
      problem(c, v, fmt::format("`{}`: `{}` is neither \"{}\" nor \"{}\"", name, *s, narrow, wide));
    } else if (c.mode == Mode::kNarrow && *s == wide && into.value) {
      widen_error(c, v, fmt::format("{} = \"{}\"", name, wide));
    } else {
      into = {*s == narrow, origin_of(v)};
    }
  };
}

void walk(Ctx& c, const Value& table, std::string_view section, const Schema& schema) {
  if (!table.is_table()) {
    problem(c, table, fmt::format("`{}` must be a table, found {}", section, type_name(table)));
    return;
  }
  for (const auto& kv : table.as_table()) {
    // Named, not structured-bound: clang 14 cannot capture structured bindings in lambdas.
    const std::string& key = kv.first;
    const Value& value = kv.second;
    auto it = std::find_if(schema.begin(), schema.end(),
                           [&key](const auto& entry) { return entry.first == key; });
    if (it != schema.end()) {
      it->second(c, value);
      continue;
    }
    std::string best;
    size_t best_d = 3;
    for (const auto& entry : schema) {
      size_t d = edit_distance(key, entry.first);
      if (d < best_d) {
        best_d = d;
        best = entry.first;
      }
    }
    std::string where = section.empty() ? "at the top level" : fmt::format("in [{}]", section);
    Origin o = key_origin(value, key);
    std::vector<std::string> names;
    for (const auto& entry : schema) {
      names.push_back(entry.first);
    }
    c.problems.add(o, value.location().line_str(), fmt::format("unknown key `{}` {}", key, where),
                   best.empty() ? fmt::format("expected one of: {}", fmt::join(names, ", "))
                                : fmt::format("did you mean `{}`?", best));
  }
}

std::pair<std::string, KeyHandler> tmpfs_size(const std::string& key,
                                              Sourced<uint64_t> Policy::*field) {
  return {key, [key, field](Ctx& c, const Value& v) {
            std::string name = "sandbox." + key;
            std::optional<Sourced<uint64_t>> cur = c.p.*field;
            auto size = get_size(c, v, name);
            if (size && *size == 0) {  // tmpfs reads size=0 as "no limit": say so instead
              problem(c, v, fmt::format("`{}` must not be 0 (write \"unlimited\")", name));
              return;
            }
            apply_limit(c, v, name, cur, size);
            c.p.*field = *cur;
          }};
}

// network.buffer_budget (a size), network.max_flows and max_intercepted (counts): never 0 or
// unlimited; a
// workspace file may only lower them.
std::pair<std::string, KeyHandler> net_limit(const std::string& key,
                                             Sourced<uint64_t> Policy::*field, bool size) {
  return {key, [key, field, size](Ctx& c, const Value& v) {
            std::string name = "network." + key;
            auto n = size ? get_size(c, v, name) : get_count(c, v, name);
            if (n && (*n == 0 || *n == kUnlimited || (!size && *n > 65536))) {
              problem(c, v,
                      size ? fmt::format("`{}` must be a size such as \"128M\"", name)
                           : fmt::format("`{}` must be between 1 and 65536", name));
              return;
            }
            std::optional<Sourced<uint64_t>> cur = c.p.*field;
            apply_limit(c, v, name, cur, n);
            c.p.*field = *cur;
          }};
}

std::pair<std::string, KeyHandler> tmpfs_inodes(const std::string& key,
                                                std::optional<Sourced<uint64_t>> Policy::*field) {
  return {key, [key, field](Ctx& c, const Value& v) {
            std::string name = "sandbox." + key;
            apply_limit(c, v, name, c.p.*field, get_count(c, v, name));
          }};
}

// A boolean `sandbox.NAME`; a workspace file (narrowing) may not set it to `widening`.
std::pair<std::string, KeyHandler> sandbox_bool(const std::string& name,
                                                Sourced<bool> Policy::*field, bool widening) {
  return {name, [name, field, widening](Ctx& c, const Value& v) {
            const std::string key = "sandbox." + name;
            if (!v.is_boolean()) {
              problem(c, v, fmt::format("`{}` must be true or false, found {}", key, type_name(v)));
            } else if (c.mode == Mode::kNarrow && v.as_boolean() == widening &&
                       (c.p.*field).value != widening) {
              widen_error(c, v, fmt::format("{} = {}", key, widening));
            } else {
              c.p.*field = {v.as_boolean(), origin_of(v)};
            }
          }};
}

Schema sandbox_schema() {
  auto grant_only = [](const std::string& name, const std::function<void(Ctx&, const Value&)>& f) {
    return std::pair<std::string, KeyHandler>(name, [name, f](Ctx& c, const Value& v) {
      if (c.mode == Mode::kNarrow) {
        widen_error(c, v, "sandbox." + name);
      } else {
        f(c, v);
      }
    });
  };
  return {
      grant_only("workspace",
                 [](Ctx& c, const Value& v) {
                   if (auto s = get_string(c, v, "sandbox.workspace")) {
                     if (!valid_path(*s)) {
                       problem(c, v,
                               "`sandbox.workspace` must be an absolute path or start with ~");
                     } else {
                       c.p.workspace = Sourced<std::string>{*s, origin_of(v)};
                     }
                   }
                 }),
      {"ro",
       [](Ctx& c, const Value& v) {
         apply_list(c, v, "sandbox.ro", c.p.ro, path_validator("sandbox.ro"));
       }},
      {"rw",
       [](Ctx& c, const Value& v) {
         apply_list(c, v, "sandbox.rw", c.p.rw, path_validator("sandbox.rw"));
       }},
      {"env",
       [](Ctx& c, const Value& v) {
         apply_list(c, v, "sandbox.env", c.p.env,
                    [](const std::string& s) -> std::optional<std::string> {
                      if (policy::is_env_name(s)) {
                        return std::nullopt;
                      }
                      return fmt::format("`sandbox.env`: `{}` is not a variable name", s);
                    });
       }},
      grant_only(
          "setenv",
          [](Ctx& c, const Value& v) {
            if (!v.is_table()) {
              problem(c, v,
                      fmt::format("`sandbox.setenv` must be a table, found {}", type_name(v)));
              return;
            }
            for (const auto& [k, val] : v.as_table()) {
              if (!policy::is_env_name(k)) {
                problem(c, val, fmt::format("`sandbox.setenv`: `{}` is not a variable name", k));
              } else if (auto s = get_string(c, val, "sandbox.setenv." + k)) {
                c.p.setenv[k] = {*s, origin_of(val)};
              }
            }
          }),
      {"protected",
       [](Ctx& c, const Value& v) {
         auto items = get_strings(c, v, "sandbox.protected");
         if (!items) {
           return;
         }
         for (size_t i = 0; i < items->size(); ++i) {
           const Value& e = v.as_array()[i];
           if (!valid_relative((*items)[i])) {
             problem(c, e,
                     fmt::format("`sandbox.protected`: `{}` must be a path relative to the "
                                 "workspace, without . or .. components",
                                 (*items)[i]));
           } else {
             c.p.protected_paths.push_back({(*items)[i], origin_of(e)});
           }
         }
       }},
      grant_only("unprotect", [](Ctx& c, const Value& v) { unprotect(c, v); }),
      tmpfs_size("home_size", &Policy::home_size),
      tmpfs_size("tmp_size", &Policy::tmp_size),
      tmpfs_size("shm_size", &Policy::shm_size),
      tmpfs_inodes("home_inodes", &Policy::home_inodes),
      tmpfs_inodes("tmp_inodes", &Policy::tmp_inodes),
      tmpfs_inodes("shm_inodes", &Policy::shm_inodes),
      sandbox_bool("sys", &Policy::mount_sys, true),
      sandbox_bool("die_with_parent", &Policy::die_with_parent, false),
      sandbox_bool("review", &Policy::review, false),
      grant_only("hostname",
                 [](Ctx& c, const Value& v) {
                   if (auto s = get_string(c, v, "sandbox.hostname")) {
                     if (!policy::normalize_name(*s) || s->size() > 64) {
                       problem(c, v,
                               fmt::format("`sandbox.hostname`: `{}` is not a host name", *s));
                     } else {
                       c.p.hostname = {*s, origin_of(v)};
                     }
                   }
                 }),
  };
}

// A [limits] key read by `get` (get_duration, get_size, get_count) into `field`; only lowered when
// narrowing.
std::pair<std::string, KeyHandler> limit(const std::string& key,
                                         std::optional<Sourced<uint64_t>> Limits::*field,
                                         std::optional<uint64_t> (*get)(Ctx&, const Value&,
                                                                        std::string_view)) {
  return {key, [key, field, get](Ctx& c, const Value& v) {
            std::string name = "limits." + key;
            apply_limit(c, v, name, c.p.limits.*field, get(c, v, name));
          }};
}

Schema limits_schema() {
  return {
      limit("timeout", &Limits::timeout_seconds, get_duration),
      limit("memory", &Limits::memory_bytes, get_size),
      limit("pids", &Limits::pids, get_count),
      limit("nofile", &Limits::nofile, get_count),
      limit("file_size", &Limits::file_size_bytes, get_size),
      limit("inotify_instances", &Limits::inotify_instances, get_count),
      limit("inotify_watches", &Limits::inotify_watches, get_count),
      {"cpus",
       [](Ctx& c, const Value& v) {
         double d = v.is_floating()  ? v.as_floating()
                    : v.is_integer() ? static_cast<double>(v.as_integer())
                                     : -1;
         if (d <= 0 || d > 4096) {
           problem(c, v, "`limits.cpus` must be a positive number of CPUs, e.g. 1.5");
         } else if (c.mode == Mode::kNarrow && c.p.limits.cpus && d > c.p.limits.cpus->value) {
           problem(c, v, "`limits.cpus` may only be lowered by a workspace file");
         } else {
           c.p.limits.cpus = Sourced<double>{d, origin_of(v)};
         }
       }},
      {"cpu_priority",
       narrowing_choice("limits.cpu_priority", "background", "normal",
                        [](Policy& p) -> Sourced<bool>& { return p.limits.cpu_background; })},
  };
}

// A key of `section` only the user's own files may set (a workspace file's is refused).
auto user_only_in(const std::string& section) {
  return [section](const std::string& name, const std::function<void(Ctx&, const Value&)>& f) {
    return std::pair<std::string, std::function<void(Ctx&, const Value&)>>(
        name, [section, name, f](Ctx& c, const Value& v) {
          if (c.mode == Mode::kNarrow) {
            widen_error(c, v, section + "." + name);
          } else {
            f(c, v);
          }
        });
  };
}

std::optional<double> get_number(Ctx& c, const Value& v, std::string_view name) {
  const double d = v.is_floating()  ? v.as_floating()
                   : v.is_integer() ? static_cast<double>(v.as_integer())
                                    : -1;
  if (!(d >= 0) || d > 1e9) {
    problem(c, v, fmt::format("`{}` must be a number of dollars, e.g. 5 or 0.25", name));
    return std::nullopt;
  }
  return d;
}

// [budget]: a workspace file may only lower a budget (it may be the agent's own writing).
Schema budget_schema() {
  return {
      {"egress",
       [](Ctx& c, const Value& v) {
         apply_limit(c, v, "budget.egress", c.p.budget.egress, get_size(c, v, "budget.egress"));
       }},
      {"requests_per_host",
       [](Ctx& c, const Value& v) {
         apply_limit(c, v, "budget.requests_per_host", c.p.budget.requests_per_host,
                     get_count(c, v, "budget.requests_per_host"));
       }},
      {"connections_per_minute",
       [](Ctx& c, const Value& v) {
         apply_limit(c, v, "budget.connections_per_minute", c.p.budget.connections_per_minute,
                     get_count(c, v, "budget.connections_per_minute"));
       }},
      {"spend",
       [](Ctx& c, const Value& v) {
         auto d = get_number(c, v, "budget.spend");
         if (!d) {
           return;
         }
         if (c.mode == Mode::kNarrow && c.p.budget.spend && *d > c.p.budget.spend->value) {
           problem(c, v, "`budget.spend` may only be lowered by a workspace file");
         } else {
           c.p.budget.spend = Sourced<double>{*d, origin_of(v)};
         }
       }},
  };
}

// [pricing."MODEL"] input/output/cached, dollars per million tokens. Never from a workspace
// file: a lower price there would raise what the spend cap lets through.
void apply_pricing(Ctx& c, const Value& v) {
  if (c.mode == Mode::kNarrow) {
    widen_error(c, v, "pricing");
    return;
  }
  if (!v.is_table()) {
    problem(c, v, fmt::format("`pricing` must be a table, found {}", type_name(v)));
    return;
  }
  for (const auto& kv : v.as_table()) {
    const std::string& model = kv.first;
    ModelPrice price = c.p.pricing.count(model) != 0 ? c.p.pricing[model] : ModelPrice{};
    price.origin = origin_of(kv.second);
    const std::string section = fmt::format("pricing.\"{}\"", model);
    walk(
        c, kv.second, section,
        {{"input",
          [&](Ctx& cc, const Value& x) { price.input = get_number(cc, x, "input").value_or(0); }},
         {"output",
          [&](Ctx& cc, const Value& x) { price.output = get_number(cc, x, "output").value_or(0); }},
         {"cached", [&](Ctx& cc, const Value& x) {
            price.cached = get_number(cc, x, "cached").value_or(0);
          }}});
    c.p.pricing[model] = price;
  }
}

// [audit]: a workspace file may only make the log required; the size and the retention are the
// user's (a smaller cap would blind the log, a shorter retention would delete the user's logs).
Schema audit_schema() {
  auto user_only = user_only_in("audit");
  return {
      {"required",
       [](Ctx& c, const Value& v) {
         if (!v.is_boolean()) {
           problem(c, v,
                   fmt::format("`audit.required` must be true or false, found {}", type_name(v)));
         } else if (c.mode == Mode::kNarrow && !v.as_boolean() && c.p.audit.required.value) {
           widen_error(c, v, "audit.required = false");
         } else {
           c.p.audit.required = {v.as_boolean(), origin_of(v)};
         }
       }},
      user_only("max_size",
                [](Ctx& c, const Value& v) {
                  if (auto n = get_size(c, v, "audit.max_size")) {
                    if (*n < 64 * 1024) {
                      problem(c, v, "`audit.max_size` must be at least 64K");
                    } else {
                      c.p.audit.max_size = {*n, origin_of(v)};
                    }
                  }
                }),
      user_only("keep_sessions",
                [](Ctx& c, const Value& v) {
                  if (auto n = get_count(c, v, "audit.keep_sessions")) {
                    c.p.audit.keep_sessions = {*n, origin_of(v)};
                  }
                }),
      user_only("max_age",
                [](Ctx& c, const Value& v) {
                  if (auto n = get_duration(c, v, "audit.max_age")) {
                    c.p.audit.max_age_seconds = {*n, origin_of(v)};
                  }
                }),
  };
}

// A table of header names to strings (telemetry.otlp_headers, otlp_headers_from): a name with a
// space or colon, or a value with a line break, is a problem; the rest go to `add`.
template <class Add>
void header_table(Ctx& c, const Value& v, std::string_view key, Add add) {
  if (!v.is_table()) {
    problem(c, v, fmt::format("`telemetry.{}` must be a table, found {}", key, type_name(v)));
    return;
  }
  for (const auto& [k, val] : v.as_table()) {
    auto s = get_string(c, val, fmt::format("telemetry.{}.{}", key, k));
    if (!s) {
      continue;
    }
    if (k.empty() || k.find_first_of(" :\r\n\t") != std::string::npos ||
        s->find_first_of("\r\n") != std::string::npos) {
      problem(c, val, fmt::format("`telemetry.{}.{}` is not a header", key, k));
    } else {
      add(k, *s, val);
    }
  }
}

// [telemetry]: the user's own files only: a workspace file naming a collector would ship the
// session's log to whoever wrote it.
Schema telemetry_schema() {
  auto user_only = user_only_in("telemetry");
  return {
      user_only("otlp_endpoint",
                [](Ctx& c, const Value& v) {
                  if (auto s = get_string(c, v, "telemetry.otlp_endpoint")) {
                    c.p.telemetry.otlp_endpoint = {*s, origin_of(v)};
                  }
                }),
      user_only("otlp_headers",
                [](Ctx& c, const Value& v) {
                  header_table(c, v, "otlp_headers",
                               [&](const std::string& k, const std::string& s, const Value&) {
                                 c.p.telemetry.otlp_headers.emplace_back(k, s);
                               });
                }),
      user_only("otlp_headers_from",
                [](Ctx& c, const Value& v) {
                  header_table(c, v, "otlp_headers_from",
                               [&](const std::string& k, const std::string& s, const Value& val) {
                                 auto from = policy::SourceSpec::parse(s);
                                 if (!from) {
                                   problem(c, val,
                                           fmt::format("`telemetry.otlp_headers_from.{}`: {}", k,
                                                       from.error().message()));
                                 } else {
                                   c.p.telemetry.otlp_headers_from.emplace_back(
                                       k, Sourced<policy::SourceSpec>{*from, origin_of(val)});
                                 }
                               });
                }),
      user_only("otlp_ca",
                [](Ctx& c, const Value& v) {
                  if (auto s = get_string(c, v, "telemetry.otlp_ca")) {
                    if (auto bad = path_validator("telemetry.otlp_ca")(*s)) {
                      problem(c, v, *bad);
                    } else {
                      c.p.telemetry.otlp_ca = {*s, origin_of(v)};
                    }
                  }
                }),
      user_only("otlp_queue",
                [](Ctx& c, const Value& v) {
                  if (auto n = get_size(c, v, "telemetry.otlp_queue")) {
                    if (*n < 16 * 1024) {
                      problem(c, v, "`telemetry.otlp_queue` must be at least 16K");
                    } else {
                      c.p.telemetry.otlp_queue = {*n, origin_of(v)};
                    }
                  }
                }),
      user_only("journald",
                [](Ctx& c, const Value& v) {
                  if (!v.is_boolean()) {
                    problem(c, v,
                            fmt::format("`telemetry.journald` must be true or false, found {}",
                                        type_name(v)));
                  } else {
                    c.p.telemetry.journald = {v.as_boolean(), origin_of(v)};
                  }
                }),
  };
}

void set_label(std::vector<std::pair<std::string, Sourced<std::string>>>& labels,
               const std::string& key, Sourced<std::string> value) {
  for (auto& [k, v] : labels) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  labels.emplace_back(key, std::move(value));
}

// [labels]: KEY = "VALUE"; a workspace file may not set them (attribution is the caller's).
void apply_labels(Ctx& c, const Value& v) {
  if (c.mode == Mode::kNarrow) {
    widen_error(c, v, "labels");
    return;
  }
  if (!v.is_table()) {
    problem(c, v, fmt::format("`[labels]` must be a table, found {}", type_name(v)));
    return;
  }
  for (const auto& [k, val] : v.as_table()) {
    auto s = get_string(c, val, "labels." + k);
    if (!s) {
      continue;
    }
    if (auto why = label_problem(k, *s)) {
      problem(c, val, fmt::format("`labels.{}`: {}", k, *why));
    } else {
      set_label(c.p.labels, k, {*s, origin_of(val)});
    }
  }
}

bool valid_group(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    return std::islower(static_cast<unsigned char>(ch)) != 0 ||
           std::isdigit(static_cast<unsigned char>(ch)) != 0 || ch == '_' || ch == '-';
  });
}

// One `[[exec.rule]]`: program, args, action -> policy::ExecRule (grammar in policy/).
std::optional<policy::ExecRule> parse_exec_rule_table(Ctx& c, const Value& t) {
  std::optional<std::string> program;
  std::vector<std::string> args;
  std::optional<std::string> action;
  const Value* action_at = nullptr;
  Ctx inner = c;
  Schema schema = {
      {"program",
       [&](Ctx& cc, const Value& v) { program = get_string(cc, v, "exec.rule.program"); }},
      {"args",
       [&](Ctx& cc, const Value& v) {
         if (auto a = get_strings(cc, v, "exec.rule.args")) {
           args = *a;
         }
       }},
      {"action",
       [&](Ctx& cc, const Value& v) {
         action = get_string(cc, v, "exec.rule.action");
         action_at = &v;
       }},
  };
  size_t before = c.problems.size();
  walk(inner, t, "exec.rule", schema);
  if (before != c.problems.size()) {
    return std::nullopt;
  }
  if (!program || !action) {
    problem(c, t, fmt::format("`[[exec.rule]]` needs {}", !program ? "a `program`" : "an `action`"),
            "e.g. program = \"git\"  args = [\"push\", \"--force*|-f\"]  action = \"deny\"");
    return std::nullopt;
  }
  auto r = policy::parse_exec_rule(*program, args, *action);
  if (!r) {
    const std::string& hint = r.error().hint();
    problem(c, t, fmt::format("`[[exec.rule]]`: {}", r.error().message()), hint);
    return std::nullopt;
  }
  if (c.mode == Mode::kNarrow && r->action == policy::ExecAction::allow) {
    widen_error(c, *action_at, "exec.rule action = \"allow\"");
    return std::nullopt;
  }
  r->origin = origin_of(t).describe();
  return std::move(*r);
}

Schema exec_schema() {
  return {
      {"log",
       [](Ctx& c, const Value& v) {
         if (!v.is_boolean()) {
           problem(c, v, fmt::format("`exec.log` must be true or false, found {}", type_name(v)));
         } else if (c.mode == Mode::kNarrow && !v.as_boolean()) {
           widen_error(c, v, "exec.log = false");
         } else {
           c.p.exec_log = {v.as_boolean(), origin_of(v)};
         }
       }},
      {"rule",
       [](Ctx& c, const Value& v) {
         if (!v.is_array()) {
           problem(c, v, "`exec.rule` must be an array of tables ([[exec.rule]])");
           return;
         }
         std::vector<policy::ExecRule> block;
         for (const Value& t : v.as_array()) {
           if (auto r = parse_exec_rule_table(c, t)) {
             block.push_back(std::move(*r));
           }
         }
         // A later (more specific) layer is checked first.
         c.p.exec_rules.insert(c.p.exec_rules.begin(), block.begin(), block.end());
       }},
  };
}

Schema seccomp_schema() {
  return {{"allow", [](Ctx& c, const Value& v) {
             apply_list(c, v, "seccomp.allow", c.p.seccomp_allow,
                        [](const std::string& s) -> std::optional<std::string> {
                          if (valid_group(s)) {
                            return std::nullopt;
                          }
                          return fmt::format("`seccomp.allow`: `{}` is not a group name", s);
                        });
           }}};
}

Schema terminal_schema() {
  return {{"allow",
           [](Ctx& c, const Value& v) {
             apply_list(c, v, "terminal.allow", c.p.terminal_allow,
                        [](const std::string& s) -> std::optional<std::string> {
                          if (auto r = policy::parse_terminal_allow(s); !r) {
                            return fmt::format("`terminal.allow`: {}", r.error().message());
                          }
                          return std::nullopt;
                        });
           }},
          {"filter", [](Ctx& c, const Value& v) {
             if (!v.is_boolean()) {
               problem(
                   c, v,
                   fmt::format("`terminal.filter` must be true or false, found {}", type_name(v)));
             } else if (c.mode == Mode::kNarrow && !v.as_boolean()) {
               widen_error(c, v, "terminal.filter = false");
             } else {
               c.p.terminal_filter = {v.as_boolean(), origin_of(v)};
             }
           }}};
}

// [persist]: HOME-relative paths only ("~/.claude"), no `.` or `..` components.
Validator home_path_validator(const std::string& name) {
  return [name](const std::string& s) -> std::optional<std::string> {
    std::string_view rest = without_slash(s);
    if (rest.size() > 2 && rest.substr(0, 2) == "~/" && valid_relative(rest.substr(2)) &&
        rest.find("//") == std::string_view::npos) {
      return std::nullopt;
    }
    return fmt::format("`{}`: `{}` must be a path below ~/ (no `.` or `..`)", name, s);
  };
}

// `persist.strip`: { "~/file.json" = ["key", "a.*.b"] }. Adding drops or strips only ever keeps
// less, so a workspace file may add them too.
void persist_strip(Ctx& c, const Value& v) {
  if (!v.is_table()) {
    problem(c, v, fmt::format("`persist.strip` must be a table, found {}", type_name(v)));
    return;
  }
  const Validator check = home_path_validator("persist.strip");
  for (const auto& kv : v.as_table()) {
    if (auto err = check(kv.first)) {
      problem(c, kv.second, *err);
    } else if (auto keys = get_strings(c, kv.second, "persist.strip." + kv.first)) {
      auto& into = c.p.persist_strip[kv.first];
      into.insert(into.end(), keys->begin(), keys->end());
    }
  }
}

// `persist.answers`: { "~/.claude/settings.json" = { key = value } }. Grant only: the values land
// in files that can start programs (hooks), which a workspace file must never say.
void persist_answers(Ctx& c, const Value& v) {
  if (c.mode == Mode::kNarrow) {
    widen_error(c, v, "persist.answers");
    return;
  }
  if (!v.is_table()) {
    problem(c, v, fmt::format("`persist.answers` must be a table, found {}", type_name(v)));
    return;
  }
  const Validator check = home_path_validator("persist.answers");
  for (const auto& kv : v.as_table()) {
    std::optional<nlohmann::json> j;
    if (auto err = check(kv.first)) {
      problem(c, kv.second, *err);
    } else if (!answer_format(kv.first)) {
      problem(c, kv.second,
              fmt::format("`persist.answers`: `{}` must name a .json or .toml file", kv.first));
    } else if (!kv.second.is_table()) {
      problem(c, kv.second,
              fmt::format("`persist.answers.\"{}\"` must be a table, found {}", kv.first,
                          type_name(kv.second)));
    } else if (j = toml_to_json(kv.second); !j) {
      problem(c, kv.second,
              fmt::format("`persist.answers.\"{}\"`: dates and times are not supported", kv.first));
    } else {
      c.p.persist_answers[kv.first] = {j->dump(), origin_of(kv.second)};
    }
  }
}

Schema persist_schema() {
  return {{"paths",
           [](Ctx& c, const Value& v) {
             apply_list(c, v, "persist.paths", c.p.persist, home_path_validator("persist.paths"));
           }},
          {"drop",
           [](Ctx& c, const Value& v) {
             auto items = get_strings(c, v, "persist.drop");
             if (items && validate_each(c, v, *items, home_path_validator("persist.drop"))) {
               for (size_t i = 0; i < items->size(); ++i) {
                 c.p.persist_drop.push_back({(*items)[i], origin_of(v.as_array()[i])});
               }
             }
           }},
          {"strip", persist_strip},
          {"answers", persist_answers}};
}

std::optional<HttpRule> parse_rule(Ctx& c, const Value& t) {
  HttpRule rule{.origin = origin_of(t)};
  bool ok = true;
  Ctx inner = c;
  Schema schema = {
      {"host",
       [&](Ctx& cc, const Value& v) {
         if (auto s = get_string(cc, v, "network.rule.host")) {
           if (!policy::HostPattern::parse(*s)) {
             problem(cc, v, fmt::format("`network.rule.host`: `{}` is not a host pattern", *s));
             ok = false;
           }
           rule.host = *s;
         }
       }},
      {"methods",
       [&](Ctx& cc, const Value& v) {
         if (auto m = get_strings(cc, v, "network.rule.methods")) {
           rule.methods = *m;
         }
       }},
      {"paths",
       [&](Ctx& cc, const Value& v) {
         if (auto m = get_strings(cc, v, "network.rule.paths")) {
           rule.paths = *m;
         }
       }},
      {"max_body",
       [&](Ctx& cc, const Value& v) { rule.max_body = get_size(cc, v, "network.rule.max_body"); }},
  };
  size_t before = c.problems.size();
  walk(inner, t, "network.rule", schema);
  if (rule.host.empty() && before == c.problems.size()) {
    problem(c, t, "`[[network.rule]]` needs a `host`");
  }
  return ok && before == c.problems.size() ? std::optional(rule) : std::nullopt;
}

// `{ host = "cdn.example.com", inspect = true }` in network.allow: allowed as the string form,
// and intercepted only to check Host = SNI and to block placeholders (docs/PROXY.md).
void apply_allow_table(Ctx& c, const Value& t) {
  if (c.mode == Mode::kNarrow) {
    widen_error(c, t, "network.allow");
    return;
  }
  std::optional<std::string> host;
  bool inspect = false;
  Ctx inner = c;
  Schema schema = {
      {"host",
       [&](Ctx& cc, const Value& v) {
         if (auto s = get_string(cc, v, "network.allow.host")) {
           if (auto why = egress_validator("network.allow.host")(*s)) {
             problem(cc, v, *why);
           } else {
             host = *s;
           }
         }
       }},
      {"inspect",
       [&](Ctx& cc, const Value& v) {
         if (!v.is_boolean()) {
           problem(cc, v,
                   fmt::format("`network.allow.inspect` must be true or false, found {}",
                               type_name(v)));
         } else {
           inspect = v.as_boolean();
         }
       }},
  };
  size_t before = c.problems.size();
  walk(inner, t, "network.allow", schema);
  if (!host) {
    if (before == c.problems.size()) {
      problem(c, t, "a table in `network.allow` needs a `host`");
    }
    return;
  }
  c.p.net_allow.push_back({*host, origin_of(t)});
  if (inspect) {
    c.p.inspect.push_back({*host, origin_of(t)});
  }
}

void apply_allow(Ctx& c, const Value& v) {
  if (!v.is_array()) {
    apply_list(c, v, "network.allow", c.p.net_allow, egress_validator("network.allow"));
    return;
  }
  Value strings = v;  // the string entries, with their own locations
  strings.as_array().clear();
  for (const Value& e : v.as_array()) {
    if (e.is_table()) {
      apply_allow_table(c, e);
    } else {
      strings.as_array().push_back(e);
    }
  }
  apply_list(c, strings, "network.allow", c.p.net_allow, egress_validator("network.allow"));
}

// network.unlisted = "deny" (the default), "ask" (a name no rule admits is asked about) or
// "learn" (admitted at once and recorded). Both widen, so a workspace file may say neither.
void apply_unlisted(Ctx& c, const Value& v) {
  auto s = get_string(c, v, "network.unlisted");
  if (!s) {
    return;
  }
  if (*s != "deny" && *s != "ask" && *s != "learn") {
    problem(c, v,
            fmt::format("`network.unlisted`: `{}` is not \"deny\", \"ask\" or \"learn\"", *s));
  } else if (c.mode == Mode::kNarrow && *s != "deny" &&
             (!c.p.unlisted_ask.value || (*s == "learn" && !c.p.learn.value))) {
    widen_error(c, v, fmt::format("network.unlisted = \"{}\"", *s));
  } else {
    c.p.unlisted_ask = {*s != "deny", origin_of(v)};
    c.p.learn = {*s == "learn", origin_of(v)};
  }
}

// network.ask_timeout: seconds a question waits for `agentbox approve` before it is denied.
void apply_ask_timeout(Ctx& c, const Value& v) {
  auto n = get_count(c, v, "network.ask_timeout");
  if (n && (*n == kUnlimited || *n > 3600)) {
    problem(c, v, "`network.ask_timeout` must be a number of seconds from 1 to 3600");
  } else if (n) {
    c.p.ask_timeout = {*n, origin_of(v)};
  }
}

// network.ask_desktop: questions also appear as desktop notifications (a display choice: any
// file may set it either way, since it grants nothing).
void apply_ask_desktop(Ctx& c, const Value& v) {
  if (!v.is_boolean()) {
    problem(c, v,
            fmt::format("`network.ask_desktop` must be true or false, found {}", type_name(v)));
  } else {
    c.p.ask_desktop = {v.as_boolean(), origin_of(v)};
  }
}

Schema network_schema() {
  auto grant_only_list = [](const std::string& name,
                            std::vector<Sourced<std::string>> Policy::*field,
                            const Validator& check) {
    return std::pair<std::string, KeyHandler>(name, [name, field, check](Ctx& c, const Value& v) {
      if (c.mode == Mode::kNarrow) {
        widen_error(c, v, "network." + name);
      } else {
        apply_list(c, v, "network." + name, c.p.*field, check);
      }
    });
  };
  return {
      {"mode", narrowing_choice("network.mode", "none", "filtered",
                                [](Policy& p) -> Sourced<bool>& { return p.network_none; })},
      {"allow", &apply_allow},
      {"raw_tcp",
       [](Ctx& c, const Value& v) {
         apply_list(c, v, "network.raw_tcp", c.p.raw_tcp, egress_validator("network.raw_tcp"));
       }},
      grant_only_list("connect_to", &Policy::connect_to,
                      [](const std::string& s) -> std::optional<std::string> {
                        if (auto why = connect_to_problem(s)) {
                          return fmt::format("`network.connect_to`: {}", *why);
                        }
                        return std::nullopt;
                      }),
      grant_only_list("host_ports", &Policy::host_ports,
                      [](const std::string& s) -> std::optional<std::string> {
                        if (auto why = port_map_problem(s)) {
                          return fmt::format("`network.host_ports`: {}", *why);
                        }
                        return std::nullopt;
                      }),
      grant_only_list("publish", &Policy::publish,
                      [](const std::string& s) -> std::optional<std::string> {
                        if (auto why = port_map_problem(s)) {
                          return fmt::format("`network.publish`: {}", *why);
                        }
                        return std::nullopt;
                      }),
      grant_only_list("upstream_ca", &Policy::upstream_ca, path_validator("network.upstream_ca")),
      grant_only_list("trust_ca", &Policy::trust_ca, path_validator("network.trust_ca")),
      net_limit("buffer_budget", &Policy::buffer_budget, true),
      net_limit("max_flows", &Policy::max_flows, false),
      net_limit("max_intercepted", &Policy::max_intercepted, false),
      grant_only_list("ask", &Policy::ask, egress_validator("network.ask")),
      {"unlisted", &apply_unlisted},
      {"ask_timeout", &apply_ask_timeout},
      {"ask_desktop", &apply_ask_desktop},
      {"rule",
       [](Ctx& c, const Value& v) {
         if (c.mode == Mode::kNarrow) {
           widen_error(c, v, "network.rule");
           return;
         }
         if (!v.is_array()) {
           problem(c, v, "`network.rule` must be an array of tables ([[network.rule]])");
           return;
         }
         for (const Value& t : v.as_array()) {
           if (auto r = parse_rule(c, t)) {
             c.p.http_rules.push_back(std::move(*r));
           }
         }
       }},
  };
}

// An `inject` value: header:NAME (a token), basic, query:PARAM, and sigv4 where a signing key
// can be (not in a token file). Parsed here, once (policy/inject.hpp): the proxy gets the value.
std::optional<policy::InjectSpec> parse_inject(Ctx& c, const Value& v, const std::string& s,
                                               bool sigv4) {
  auto spec = policy::InjectSpec::parse(s);
  if (spec && (sigv4 || spec->kind != policy::InjectKind::kSigV4)) {
    return std::move(*spec);
  }
  if (s.rfind("header:", 0) == 0 && s.size() > 7) {
    problem(c, v, fmt::format("`inject`: `{}` is not a header name", s.substr(7)),
            "a header name is letters, digits and !#$%&'*+-.^_`|~");
  } else {
    problem(c, v, fmt::format("`inject`: `{}` is not an injection", s),
            sigv4 ? "expected \"header:NAME\", \"basic\", \"query:NAME\" or \"sigv4\""
                  : "expected \"header:NAME\", \"basic\" or \"query:NAME\"");
  }
  return std::nullopt;
}

// `capture = [{ host, method, path, json | xml, inject, body, field }, ...]` of a credential or
// a token file (`field` only for token files).
std::vector<CaptureRule> parse_captures(Ctx& c, const Value& v, const std::string& section,
                                        bool token_file) {
  std::vector<CaptureRule> out;
  if (!v.is_array()) {
    problem(c, v, fmt::format("`{}.capture` must be an array of tables", section));
    return out;
  }
  const std::string where = section + ".capture";
  for (const Value& t : v.as_array()) {
    CaptureRule rule{.origin = origin_of(t)};
    const size_t before = c.problems.size();
    auto text = [&](std::string& field, const char* key) {
      return [&field, key, where](Ctx& cc, const Value& fv) {
        if (auto s = get_string(cc, fv, where + "." + key)) {
          field = *s;
        }
      };
    };
    Schema schema = {
        {"host",
         [&](Ctx& cc, const Value& hv) {
           if (auto s = get_string(cc, hv, where + ".host")) {
             if (!policy::HostPattern::parse(*s)) {
               problem(cc, hv, fmt::format("`host`: `{}` is not a host pattern", *s));
             }
             rule.host = *s;
           }
         }},
        {"method", text(rule.method, "method")},
        {"path", text(rule.path, "path")},
        {"json", text(rule.json, "json")},
        {"xml", text(rule.xml, "xml")},
        {"inject",
         [&](Ctx& cc, const Value& iv) {
           if (auto s = get_string(cc, iv, where + ".inject")) {
             if (auto spec = parse_inject(cc, iv, *s, /*sigv4=*/true)) {
               rule.inject = std::move(*spec);
             }
           }
         }},
        {"body",
         [&](Ctx& cc, const Value& bv) {
           if (!bv.is_boolean()) {
             problem(cc, bv, "`body` must be true or false");
           } else {
             rule.body = bv.as_boolean();
           }
         }},
    };
    if (token_file) {
      schema.push_back({"field", text(rule.field, "field")});
    }
    walk(c, t, where, schema);
    if (before != c.problems.size()) {
      continue;
    }
    if (rule.json.empty() == rule.xml.empty()) {
      problem(c, t, fmt::format("a `{}` rule needs exactly one of `json` and `xml`", where),
              "the response field that holds the new secret");
    } else if (rule.body && rule.inject.kind == policy::InjectKind::kSigV4) {
      problem(c, t, "`body = true` cannot apply to a SigV4 signing key (it is never sent)");
    } else if (!rule.field.empty() && rule.json.empty()) {
      problem(c, t, "`field` (write back to the token file) needs a `json` rule");
    } else {
      out.push_back(std::move(rule));
    }
  }
  return out;
}

// What parse_credential remembers of a [credentials.NAME] table while walking it, for the checks
// across its keys.
struct CredentialSeen {
  std::string inject_text;  // as written, for the messages
  const Value* inject_value = nullptr;
  const Value* format_value = nullptr;
  const Value* ask_value = nullptr;
  bool from_given = false;
};

// A credential's keys: what it is and where it comes from (env, from, hosts).
Schema credential_source_keys(Credential& cred, CredentialSeen& seen) {
  return {
      {"env",
       [&](Ctx& cc, const Value& v) {
         if (auto s = get_string(cc, v, "credentials.env")) {
           if (!policy::is_env_name(*s)) {
             problem(cc, v, fmt::format("`env`: `{}` is not a variable name", *s));
           }
           cred.env = *s;
         }
       }},
      {"from",
       [&](Ctx& cc, const Value& v) {
         if (auto s = get_string(cc, v, "credentials.from")) {
           seen.from_given = true;
           auto from = policy::SourceSpec::parse(*s);
           if (!from) {
             problem(cc, v, fmt::format("`from`: {}", from.error().message()),
                     "expected \"env:NAME\", \"file:/path\" or \"cmd:COMMAND\"");
           } else {
             cred.from = std::move(*from);
           }
         }
       }},
      {"hosts",
       [&](Ctx& cc, const Value& v) {
         if (auto hs = get_strings(cc, v, "credentials.hosts")) {
           validate_each(cc, v, *hs, [](const std::string& h) -> std::optional<std::string> {
             if (policy::HostPattern::parse(h)) {
               return std::nullopt;
             }
             return fmt::format("`hosts`: `{}` is not a host pattern", h);
           });
           cred.hosts = *hs;
         }
       }},
  };
}

// How it is sent (inject, format, body).
Schema credential_inject_keys(Credential& cred, CredentialSeen& seen) {
  return {
      {"inject",
       [&](Ctx& cc, const Value& v) {
         if (auto s = get_string(cc, v, "credentials.inject")) {
           if (auto spec = parse_inject(cc, v, *s, /*sigv4=*/true)) {
             cred.inject = std::move(*spec);
           }
           seen.inject_text = *s;
           seen.inject_value = &v;
         }
       }},
      {"format",
       [&](Ctx& cc, const Value& v) {
         if (auto s = get_string(cc, v, "credentials.format")) {
           size_t first = s->find("{}");
           if (first == std::string::npos || s->find("{}", first + 2) != std::string::npos) {
             problem(cc, v, "`format` must contain `{}` exactly once",
                     "e.g. \"Bearer {}\": `{}` is where the secret goes");
           } else if (std::any_of(s->begin(), s->end(), [](char ch) {
                        auto u = static_cast<unsigned char>(ch);
                        return (u < 0x20 && ch != '\t') || u == 0x7f;
                      })) {
             problem(cc, v, "`format` must not contain CR, LF or other control characters",
                     "it becomes a header value");
           }
           cred.format = *s;
           seen.format_value = &v;
         }
       }},
      {"body",
       [&](Ctx& cc, const Value& v) {
         if (!v.is_boolean()) {
           problem(cc, v, "`body` must be true or false");
         } else {
           cred.body = v.as_boolean();
           cred.body_origin = origin_of(v);
           cred.body_line = v.location().line_str();
         }
       }},
  };
}

// Its value's life (ask, ttl, prefix, capture, allow_mint).
Schema credential_limit_keys(Credential& cred, CredentialSeen& seen, const std::string& name) {
  return {
      {"ask",
       [&](Ctx& cc, const Value& v) {
         if (!v.is_boolean()) {
           problem(cc, v, "`ask` must be true or false");
         } else {
           cred.ask = v.as_boolean();
           seen.ask_value = &v;
         }
       }},
      {"ttl",
       [&](Ctx& cc, const Value& v) {
         if (auto d = get_duration(cc, v, "credentials.ttl")) {
           cred.ttl_seconds = *d;
         }
       }},
      {"prefix",
       [&](Ctx& cc, const Value& v) {
         if (auto s = get_string(cc, v, "credentials.prefix")) {
           cred.placeholder_prefix = *s;
         }
       }},
      {"capture",
       [&](Ctx& cc, const Value& v) {
         cred.capture = parse_captures(cc, v, "credentials." + name, /*token_file=*/false);
       }},
      {"allow_mint",
       [&](Ctx& cc, const Value& v) {
         if (auto s = get_strings(cc, v, "credentials.allow_mint")) {
           cred.allow_mint = *s;
         }
       }},
  };
}

// Its budgets (max_requests, max_bytes, methods, expires).
Schema credential_budget_keys(Credential& cred) {
  return {
      {"max_requests",
       [&](Ctx& cc, const Value& v) {
         if (auto n = get_count(cc, v, "credentials.max_requests"); n && *n != kUnlimited) {
           cred.max_requests = *n;
         }
       }},
      {"max_bytes",
       [&](Ctx& cc, const Value& v) {
         if (auto n = get_size(cc, v, "credentials.max_bytes"); n && *n != kUnlimited) {
           cred.max_bytes = *n;
         }
       }},
      {"methods",
       [&](Ctx& cc, const Value& v) {
         if (auto ms = get_strings(cc, v, "credentials.methods")) {
           validate_each(cc, v, *ms, [](const std::string& m) -> std::optional<std::string> {
             if (!m.empty() && std::all_of(m.begin(), m.end(), [](char ch) {
                   return (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_';
                 })) {
               return std::nullopt;
             }
             return fmt::format("`methods`: `{}` is not an HTTP method (upper case, e.g. \"GET\")",
                                m);
           });
           cred.methods = *ms;
         }
       }},
      {"expires",
       [&](Ctx& cc, const Value& v) {
         if (auto d = get_duration(cc, v, "credentials.expires")) {
           cred.expires_seconds = *d;
         }
       }},
  };
}

// The rules across keys, once the table is walked.
void check_credential(Ctx& c, const Credential& cred, const CredentialSeen& seen,
                      const std::string& name, const Value& t) {
  if (seen.format_value != nullptr && seen.inject_text.rfind("header:", 0) != 0) {
    problem(c, *seen.format_value, "`format` applies only to inject = \"header:NAME\"",
            fmt::format("this credential injects `{}`", seen.inject_text));
  }
  if (cred.ask && cred.body) {
    problem(c, *seen.ask_value, "`ask = true` does not combine with `body = true`",
            "a `once` answer covers one request's head, not a body streamed after it");
  }
  if (cred.body && seen.inject_text == "sigv4") {
    problem(c, seen.inject_value != nullptr ? *seen.inject_value : t,
            "`body = true` cannot apply to a SigV4 signing key (it is never sent)");
  }
  for (auto [missing, key] : {std::pair{cred.env.empty(), "env"}, {!seen.from_given, "from"}}) {
    if (missing) {
      problem(c, t, fmt::format("[credentials.{}] needs `{}`", name, key));
    }
  }
  if (cred.hosts.empty()) {
    problem(c, t,
            fmt::format("[credentials.{}] needs `hosts`: a credential is scoped to hosts", name));
  }
}

std::optional<Credential> parse_credential(Ctx& c, const std::string& name, const Value& t) {
  Credential cred{.origin = origin_of(t), .name = name};
  CredentialSeen seen{.inject_text = cred.inject.to_string()};
  const size_t before = c.problems.size();
  Schema schema = credential_source_keys(cred, seen);
  for (const Schema& part :
       {credential_inject_keys(cred, seen), credential_limit_keys(cred, seen, name),
        credential_budget_keys(cred)}) {
    schema.insert(schema.end(), part.begin(), part.end());
  }
  walk(c, t, "credentials." + name, schema);
  check_credential(c, cred, seen, name, t);
  return before == c.problems.size() ? std::optional(cred) : std::nullopt;
}

void apply_credentials(Ctx& c, const Value& v) {
  if (c.mode == Mode::kNarrow) {
    widen_error(c, v, "credentials");
    return;
  }
  if (!v.is_table()) {
    problem(c, v, "`credentials` must be a table of [credentials.NAME] tables");
    return;
  }
  for (const auto& [name, t] : v.as_table()) {
    if (!t.is_table()) {
      problem(c, t, fmt::format("`credentials.{}` must be a table", name));
    } else if (auto cred = parse_credential(c, name, t)) {
      c.p.credentials[name] = std::move(*cred);
    }
  }
}

void apply_token_files(Ctx& c, const Value& v) {
  if (c.mode == Mode::kNarrow) {
    widen_error(c, v, "token_file");
    return;
  }
  if (!v.is_array()) {
    problem(c, v, "`token_file` must be an array of tables ([[token_file]])");
    return;
  }
  for (const Value& t : v.as_array()) {
    TokenFile tf{.origin = origin_of(t)};
    size_t before = c.problems.size();
    walk(c, t, "token_file",
         {{"path",
           [&](Ctx& cc, const Value& pv) {
             if (auto s = get_string(cc, pv, "token_file.path")) {
               if (!valid_path(*s)) {
                 problem(cc, pv, "`token_file.path` must be an absolute path or start with ~");
               }
               tf.path = *s;
             }
           }},
          {"json_fields",
           [&](Ctx& cc, const Value& fv) {
             tf.json_fields =
                 get_strings(cc, fv, "token_file.json_fields").value_or(std::vector<std::string>{});
           }},
          {"regexes",
           [&](Ctx& cc, const Value& rv) {
             auto rs = get_strings(cc, rv, "token_file.regexes");
             if (!rs) {
               return;
             }
             validate_each(cc, rv, *rs, [](const std::string& r) -> std::optional<std::string> {
               try {
                 std::regex re(r);
                 if (re.mark_count() < 1) {
                   return fmt::format("`regexes`: `{}` has no group to mask", r);
                 }
               } catch (const std::regex_error& e) {
                 return fmt::format("`regexes`: `{}` is not a regular expression: {}", r, e.what());
               }
               return std::nullopt;
             });
             tf.regexes = *rs;
           }},
          {"hosts",
           [&](Ctx& cc, const Value& hv) {
             if (auto hs = get_strings(cc, hv, "token_file.hosts")) {
               validate_each(cc, hv, *hs, [](const std::string& h) -> std::optional<std::string> {
                 if (policy::HostPattern::parse(h)) {
                   return std::nullopt;
                 }
                 return fmt::format("`hosts`: `{}` is not a host pattern", h);
               });
               tf.hosts = *hs;
             }
           }},
          {"capture",
           [&](Ctx& cc, const Value& cv) {
             tf.capture = parse_captures(cc, cv, "token_file", /*token_file=*/true);
           }},
          {"inject", [&](Ctx& cc, const Value& iv) {
             if (auto s = get_string(cc, iv, "token_file.inject")) {
               if (auto spec = parse_inject(cc, iv, *s, /*sigv4=*/false)) {
                 tf.inject = std::move(*spec);
               }
             }
           }}});
    if (tf.path.empty() && before == c.problems.size()) {
      problem(c, t, "`[[token_file]]` needs a `path`");
    } else if (tf.hosts.empty() && before == c.problems.size()) {
      problem(c, t, "`[[token_file]]` needs `hosts`: where its masked values may be used");
    } else if (tf.json_fields.empty() && tf.regexes.empty() && before == c.problems.size()) {
      problem(c, t, "`[[token_file]]` needs `json_fields` or `regexes`: what to mask");
    } else if (before == c.problems.size()) {
      c.p.token_files.push_back(std::move(tf));
    }
  }
}

void apply_root(Ctx& c, const Value& root) {
  Schema schema = {
      {"description", [](Ctx& cc, const Value& v) { (void)get_string(cc, v, "description"); }},
      {"sandbox", [](Ctx& cc, const Value& v) { walk(cc, v, "sandbox", sandbox_schema()); }},
      {"limits", [](Ctx& cc, const Value& v) { walk(cc, v, "limits", limits_schema()); }},
      {"seccomp", [](Ctx& cc, const Value& v) { walk(cc, v, "seccomp", seccomp_schema()); }},
      {"exec", [](Ctx& cc, const Value& v) { walk(cc, v, "exec", exec_schema()); }},
      {"audit", [](Ctx& cc, const Value& v) { walk(cc, v, "audit", audit_schema()); }},
      {"telemetry", [](Ctx& cc, const Value& v) { walk(cc, v, "telemetry", telemetry_schema()); }},
      {"labels", apply_labels},
      {"network", [](Ctx& cc, const Value& v) { walk(cc, v, "network", network_schema()); }},
      {"terminal", [](Ctx& cc, const Value& v) { walk(cc, v, "terminal", terminal_schema()); }},
      {"persist", [](Ctx& cc, const Value& v) { walk(cc, v, "persist", persist_schema()); }},
      {"credentials", apply_credentials},
      {"token_file", apply_token_files},
      {"budget", [](Ctx& cc, const Value& v) { walk(cc, v, "budget", budget_schema()); }},
      {"pricing", apply_pricing},
  };
  walk(c, root, "", schema);
}

// Parses `path` and applies it. Returns false if the file does not exist.
// `text`, when given, is the file's content already read (the workspace file is read once,
// through an fd opened without following links).
bool apply_file(const std::string& path, Mode mode, Policy& p, Problems& problems,
                const std::string* text = nullptr) {
  std::optional<TrustedText> trusted;
  if (text == nullptr) {
    trusted = read_trusted(path);
    if (!trusted) {
      return false;
    }
    if (!trusted->refused.empty()) {
      problems.add({path}, "", "refused: " + trusted->refused,
                   "someone else could change what every box may do: make it yours and `chmod "
                   "go-w` it and its directory");
      return true;
    }
    text = &trusted->text;
  }
  Ctx c{mode, p, problems};
  try {
    std::istringstream in(*text);
    Value root = toml::parse(in, path);
    apply_root(c, root);
  } catch (const toml::exception& e) {
    const auto& loc = e.location();
    std::string what = e.what();
    // toml11's own message is multi-line with its own excerpt: keep its first line's text.
    if (size_t nl = what.find('\n'); nl != std::string::npos) {
      what.resize(nl);
    }
    if (what.rfind("[error] ", 0) == 0) {
      what.erase(0, 8);
    }
    problems.add({path, static_cast<int>(loc.line()), static_cast<int>(loc.column())},
                 loc.line_str(), "invalid TOML: " + what);
  } catch (const std::exception& e) {
    problems.add({path}, "", fmt::format("cannot read: {}", e.what()));
  }
  return true;
}

void flag_problem(Problems& problems, std::string_view flag, std::string what,
                  std::string note = {}) {
  problems.add({std::string(flag)}, "", std::move(what), std::move(note));
}

// A whole-number budget flag (--budget-requests-per-host N, --budget-connections-per-minute N).
void count_flag(const std::optional<std::string>& value, std::string_view flag,
                std::optional<Sourced<uint64_t>>& out, Problems& problems) {
  if (!value) {
    return;
  }
  char* end = nullptr;
  const std::string& t = *value;
  const unsigned long long n = std::strtoull(t.c_str(), &end, 10);
  if (t.empty() || *end != '\0' || t.front() == '-') {
    flag_problem(problems, flag, fmt::format("invalid count `{}`", t),
                 "expected a whole number, e.g. 100");
  } else {
    out = Sourced<uint64_t>{n, {std::string(flag)}};
  }
}

// --budget-egress SIZE, --budget-requests-per-host N, --budget-spend DOLLARS,
// --budget-connections-per-minute N.
void apply_budget_flags(const Flags& f, Policy& p, Problems& problems) {
  if (f.budget_egress) {
    if (auto s = parse_size(*f.budget_egress)) {
      p.budget.egress = Sourced<uint64_t>{*s, {"--budget-egress"}};
    } else {
      flag_problem(problems, "--budget-egress", fmt::format("invalid size `{}`", *f.budget_egress),
                   "expected a number with a unit: B, K, M, G or T, e.g. 500M");
    }
  }
  count_flag(f.budget_requests_per_host, "--budget-requests-per-host", p.budget.requests_per_host,
             problems);
  count_flag(f.budget_connections_per_minute, "--budget-connections-per-minute",
             p.budget.connections_per_minute, problems);
  if (f.budget_spend) {
    std::string t = *f.budget_spend;
    if (!t.empty() && t.front() == '$') {
      t.erase(0, 1);
    }
    char* end = nullptr;
    double d = std::strtod(t.c_str(), &end);
    if (t.empty() || *end != '\0' || !(d >= 0) || d > 1e9) {
      flag_problem(problems, "--budget-spend", fmt::format("invalid amount `{}`", *f.budget_spend),
                   "expected a number of dollars, e.g. 5 or 0.50");
    } else {
      p.budget.spend = Sourced<double>{d, {"--budget-spend"}};
    }
  }
}

// --timeout, --memory, --pids, --cpus, --cpu-priority.
void apply_limit_flags(const Flags& f, Policy& p, Problems& problems) {
  if (f.timeout) {
    if (auto d = parse_duration(*f.timeout)) {
      p.limits.timeout_seconds = Sourced<uint64_t>{*d, {"--timeout"}};
    } else {
      flag_problem(problems, "--timeout", fmt::format("invalid duration `{}`", *f.timeout),
                   "expected e.g. 90s, 5m, 1h30m");
    }
  }
  if (f.memory) {
    if (*f.memory == "unlimited") {
      p.limits.memory_bytes = Sourced<uint64_t>{kUnlimited, {"--memory"}};
    } else if (auto s = parse_size(*f.memory)) {
      p.limits.memory_bytes = Sourced<uint64_t>{*s, {"--memory"}};
    } else {
      flag_problem(problems, "--memory", fmt::format("invalid size `{}`", *f.memory),
                   "expected a number with a unit: B, K, M, G or T, e.g. 4G, or unlimited");
    }
  }
  if (f.pids) {
    char* end = nullptr;
    unsigned long long n = std::strtoull(f.pids->c_str(), &end, 10);
    if (*f.pids == "unlimited") {
      p.limits.pids = Sourced<uint64_t>{kUnlimited, {"--pids"}};
    } else if (f.pids->empty() || *end != '\0' || n == 0 || f.pids->front() == '-') {
      flag_problem(problems, "--pids", fmt::format("invalid count `{}`", *f.pids),
                   "expected a positive integer or unlimited");
    } else {
      p.limits.pids = Sourced<uint64_t>{n, {"--pids"}};
    }
  }
  if (f.cpus) {
    char* end = nullptr;
    double d = std::strtod(f.cpus->c_str(), &end);
    if (f.cpus->empty() || *end != '\0' || !(d > 0) || d > 4096) {
      flag_problem(problems, "--cpus", fmt::format("invalid CPU count `{}`", *f.cpus),
                   "expected a positive number, e.g. 1.5");
    } else {
      p.limits.cpus = Sourced<double>{d, {"--cpus"}};
    }
  }
  if (f.cpu_priority) {
    if (*f.cpu_priority != "background" && *f.cpu_priority != "normal") {
      flag_problem(problems, "--cpu-priority",
                   fmt::format("invalid CPU priority `{}`", *f.cpu_priority),
                   "expected background or normal");
    } else {
      p.limits.cpu_background = {*f.cpu_priority == "background", {"--cpu-priority"}};
    }
  }
}

void apply_flags(const Flags& f, Policy& p, Problems& problems) {
  auto path_list = [&](std::string_view flag, const std::vector<std::string>& in,
                       std::vector<Sourced<std::string>>& out) {
    for (const auto& s : in) {
      if (!valid_path(s) && s.empty()) {
        flag_problem(problems, flag, "empty path");
      } else {
        out.push_back({s, {std::string(flag)}});
      }
    }
  };
  if (f.workspace) {
    p.workspace = Sourced<std::string>{*f.workspace, {"--workspace"}};
  }
  path_list("--ro", f.ro, p.ro);
  path_list("--rw", f.rw, p.rw);
  path_list("--upstream-ca", f.upstream_ca, p.upstream_ca);
  path_list("--trust-ca", f.trust_ca, p.trust_ca);
  for (const auto& e : f.env) {
    size_t eq = e.find('=');
    std::string name = e.substr(0, eq);
    if (!policy::is_env_name(name)) {
      flag_problem(problems, "--env", fmt::format("`{}` is not a variable name", name),
                   "expected NAME (pass it through) or NAME=VALUE (set it)");
    } else if (eq == std::string::npos) {
      p.env.push_back({name, {"--env"}});
    } else {
      p.setenv[name] = {e.substr(eq + 1), {"--env"}};
    }
  }
  for (const auto& [flag, values, into] :
       {std::tuple{"--allow", &f.allow, &p.net_allow},
        std::tuple{"--raw-tcp", &f.raw_tcp, &p.raw_tcp}, std::tuple{"--ask", &f.ask, &p.ask}}) {
    for (const auto& a : *values) {
      if (auto r = policy::EgressRule::parse(a); !r) {
        flag_problem(problems, flag, r.error().message(), r.error().hint());
      } else {
        into->push_back({a, {flag}});
      }
    }
  }
  if (f.ask_unlisted && !p.learn.value) {
    p.unlisted_ask = {true, {"--ask-unlisted"}};
  }
  if (f.learn) {
    p.unlisted_ask = {true, {"--learn"}};
    p.learn = {true, {"--learn"}};
  }
  for (const auto& a : f.connect_to) {
    if (auto why = connect_to_problem(a)) {
      flag_problem(problems, "--connect-to", *why);
    } else {
      p.connect_to.push_back({a, {"--connect-to"}});
    }
  }
  for (const auto& [flag, values, into] : {std::tuple{"--host-port", &f.host_ports, &p.host_ports},
                                           std::tuple{"--publish", &f.publish, &p.publish}}) {
    for (const auto& a : *values) {
      if (auto why = port_map_problem(a)) {
        flag_problem(problems, flag, *why);
      } else {
        into->push_back({a, {flag}});
      }
    }
  }
  for (const auto& g : f.seccomp_allow) {
    if (!valid_group(g)) {
      flag_problem(problems, "--allow-syscalls", fmt::format("`{}` is not a group name", g));
    } else {
      p.seccomp_allow.push_back({g, {"--allow-syscalls"}});
    }
  }
  if (f.audit_required) {
    p.audit.required = Sourced<bool>{true, {"--audit-required"}};
  }
  for (const auto& l : f.labels) {
    size_t eq = l.find('=');
    std::string key = l.substr(0, eq);
    std::string value = eq == std::string::npos ? std::string() : l.substr(eq + 1);
    if (eq == std::string::npos) {
      flag_problem(problems, "--label", fmt::format("`{}` is not KEY=VALUE", l),
                   "e.g. --label pipeline=1234");
    } else if (auto why = label_problem(key, value)) {
      flag_problem(problems, "--label", fmt::format("`{}`: {}", key, *why));
    } else {
      set_label(p.labels, key, {value, {"--label"}});
    }
  }
  if (f.network) {
    if (*f.network == "none" || *f.network == "filtered") {
      p.network_none = Sourced<bool>{*f.network == "none", {"--network"}};
    } else {
      flag_problem(problems, "--network", fmt::format("`{}` is not a network mode", *f.network),
                   "expected none (only `lo`) or filtered (the default)");
    }
  }
  if (f.inspect_all) {
    p.inspect_all = Sourced<bool>{true, {"--inspect-all"}};
  }
  if (f.review) {
    p.review = Sourced<bool>{true, {"--review"}};
  }
  apply_limit_flags(f, p, problems);
  apply_budget_flags(f, p, problems);
}

std::string user_config_dir() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x != nullptr && x[0] == '/') {
    return std::string(x) + "/agentbox";
  }
  if (const char* h = std::getenv("HOME"); h != nullptr && h[0] == '/') {
    return std::string(h) + "/.config/agentbox";
  }
  return {};
}

bool valid_profile_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '-' || ch == '_';
  });
}

void apply_builtins(Policy& p) {
  apply_resource_defaults(p, read_host_facts());
  // Files and folders whose purpose is to run code outside the box (docs/CONFIG.md says why for
  // each): agents' project settings (hooks, MCP servers), git hook managers, dev containers,
  // editors' tasks, direnv. Git's own metadata is protected by the sandbox itself, always.
  for (const char* path :
       {".claude/settings.json", ".claude/settings.local.json", ".claude/hooks", ".mcp.json",
        ".agentbox", ".codex", ".gemini", ".cursor", ".windsurf", ".kiro", ".continue",
        ".pre-commit-config.yaml", ".husky", ".devcontainer", ".envrc", ".vscode", ".idea"}) {
    p.protected_paths.push_back({path, {"built-in"}});
  }
}

}  // namespace

std::vector<std::string> default_profile_dirs() {
  // Relative to the binary, as installed (PREFIX/bin/agentbox -> PREFIX/share/agentbox/profiles)
  // and in a build tree (build/cli/agentbox -> build/share/agentbox/profiles, a copy the build
  // keeps current). Never a compiled-in path: a binary copied elsewhere must not read profiles
  // from the tree it was built in. /etc/agentbox/profiles holds the administrator's.
  std::vector<std::string> dirs{"/etc/agentbox/profiles"};
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec && exe.is_absolute()) {
    dirs.push_back(
        (exe.parent_path().parent_path() / "share" / "agentbox" / "profiles").lexically_normal());
  }
  return dirs;
}

std::vector<std::string> available_profiles(const std::vector<std::string>& dirs) {
  std::set<std::string> names;
  for (const auto& d : dirs) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(d, ec)) {
      if (e.path().extension() == ".toml" && e.path().stem() != "pricing") {  // not a profile
        names.insert(e.path().stem().string());
      }
    }
  }
  return {names.begin(), names.end()};
}

// `body = true` puts the secret into what the box sends, so a scoped host that stores a body and
// serves it back would hand it over: only the methods and paths an HTTP rule names may be used
// on such a host, for every host of the credential, by every rule naming that host (rules add up:
// one without paths would allow any path).
void check_body_rules(const Policy& p, Problems& problems) {
  for (const auto& [name, cred] : p.credentials) {
    if (!cred.body) {
      continue;
    }
    for (const auto& host : cred.hosts) {
      size_t named = 0;
      bool open = false;
      for (const auto& r : p.http_rules) {
        if (r.host == host) {
          ++named;
          open = open || r.methods.empty() || r.paths.empty();
        }
      }
      if (named == 0 || open) {
        problems.add(cred.body_origin, cred.body_line,
                     fmt::format("credentials.{}: `body = true` needs an HTTP rule with `methods` "
                                 "and `paths` for every host it is scoped to; `{}` has {}",
                                 name, host, named == 0 ? "none" : "one without them"),
                     fmt::format("e.g. [[network.rule]] host = \"{}\" methods = [\"POST\"] paths = "
                                 "[\"/v1/messages\"]: a host that stores a body and serves it "
                                 "back would return the secret",
                                 host));
      }
    }
  }
}

namespace {

// The file of profile `name`: the user's profiles folder first, then `dirs`; "" when none.
std::pair<std::string, bool> find_profile(const std::string& name, const std::string& user_dir,
                                          const std::vector<std::string>& dirs) {
  if (!valid_profile_name(name)) {
    return {};
  }
  for (size_t i = 0; i < dirs.size(); ++i) {
    std::string path = fmt::format("{}/{}.toml", dirs[i], name);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
      return {path, !user_dir.empty() && i == 0};
    }
  }
  return {};
}

// Applies profile `name` over `out`. A shipped profile never replaces a credential the user
// defined (a config file or the user's own profile): the user's stays, and a note says so.
void apply_profile(const std::string& name, const std::string& user_dir, const LoadOptions& options,
                   Loaded& out, std::set<std::string>& shipped, Problems& problems) {
  std::vector<std::string> dirs;
  if (!user_dir.empty()) {
    dirs.push_back(user_dir + "/profiles");
  }
  auto extra = options.profile_dirs.empty() ? default_profile_dirs() : options.profile_dirs;
  dirs.insert(dirs.end(), extra.begin(), extra.end());
  auto [path, own] = find_profile(name, user_dir, dirs);
  if (path.empty()) {
    auto names = available_profiles(dirs);
    std::string best;
    size_t best_d = 3;
    for (const auto& n : names) {
      if (size_t d = edit_distance(name, n); d < best_d) {
        best_d = d;
        best = n;
      }
    }
    flag_problem(problems, "--profile", fmt::format("no profile named `{}`", name),
                 best.empty() ? fmt::format("available: {}", fmt::join(names, ", "))
                              : fmt::format("did you mean `{}`?", best));
    return;
  }
  std::map<std::string, Credential> users;
  if (!own) {
    for (const auto& [cname, c] : out.policy.credentials) {
      if (!shipped.contains(c.origin.source)) {
        users.emplace(cname, c);
      }
    }
    shipped.insert(path);
  }
  if (apply_file(path, Mode::kGrant, out.policy, problems)) {
    out.files_read.push_back(path);
    // The agent's state is kept under the first profile named (`--profile claude --profile
    // python` keeps claude's), so adding a language profile does not start the agent afresh.
    if (out.policy.state_scope == "default") {
      out.policy.state_scope = name;
    }
  }
  for (auto& [cname, c] : users) {
    Credential& now = out.policy.credentials[cname];
    if (now.origin.source != c.origin.source) {
      out.notes.push_back(fmt::format(
          "credential `{}`: yours ({}) is kept; profile `{}`'s ({}) is dropped: your own "
          "configuration wins over a shipped profile",
          cname, c.origin.describe(), name, now.origin.describe()));
      now = std::move(c);
    }
  }
}

// The shipped price tables (profiles/pricing.toml), under every config file: the installed
// one, then the administrator's (/etc/agentbox/profiles/pricing.toml) over it. Only named here:
// resolve_pricing reads them when a session meters a response.
void name_shipped_pricing(const LoadOptions& options, Loaded& out) {
  auto dirs = options.profile_dirs.empty() ? default_profile_dirs() : options.profile_dirs;
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    out.policy.pricing_files.push_back(*it + "/pricing.toml");
  }
}

}  // namespace

base::Result<Loaded> load(const LoadOptions& options) {
  Loaded out;
  Problems problems;
  apply_builtins(out.policy);
  name_shipped_pricing(options, out);
  std::string user_dir = options.user_dir.value_or(user_config_dir());
  if (!options.no_user_config) {
    std::string system = options.system_file.value_or("/etc/agentbox/config.toml");
    if (apply_file(system, Mode::kGrant, out.policy, problems)) {
      out.files_read.push_back(system);
    }
    if (!user_dir.empty()) {
      std::string user = user_dir + "/config.toml";
      if (apply_file(user, Mode::kGrant, out.policy, problems)) {
        out.files_read.push_back(user);
      }
    }
  }
  std::set<std::string> shipped;  // profile files read that are not the user's own
  for (const auto& name : options.flags.profiles) {
    apply_profile(name, user_dir, options, out, shipped, problems);
  }
  apply_flags(options.flags, out.policy, problems);
  check_body_rules(out.policy, problems);
  if (!problems.empty()) {
    return base::Error::msg(problems.render());
  }
  return out;
}

base::Result<std::map<std::string, ModelPrice>> resolve_pricing(
    const std::vector<std::string>& files, const std::map<std::string, ModelPrice>& user) {
  Policy shipped;
  Problems problems;
  for (const auto& path : files) {
    (void)apply_file(path, Mode::kGrant, shipped, problems);  // absent: no defaults
  }
  if (!problems.empty()) {
    return base::Error::msg(problems.render());
  }
  std::map<std::string, ModelPrice> out = std::move(shipped.pricing);
  for (const auto& [model, mine] : user) {
    ModelPrice& p = out[model];
    p.input = mine.input ? mine.input : p.input;
    p.output = mine.output ? mine.output : p.output;
    p.cached = mine.cached ? mine.cached : p.cached;
    p.origin = mine.origin;
  }
  for (auto& [model, p] : out) {
    p.input = p.input.value_or(0);
    p.output = p.output.value_or(0);
    p.cached = p.cached.value_or(0);
  }
  return out;
}

base::Status narrow_with_workspace_file(Loaded& loaded, const std::string& path) {
  Problems problems;
  // Whoever controls the workspace wrote this file, possibly the agent: a link planted as
  // .agentbox.toml would make agentbox parse (and quote in its errors) a file the box cannot read.
  // So: O_NOFOLLOW, a regular file, bounded, and parsed from the bytes read through that one fd.
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) {
      return base::ok();
    }
    return base::Error::sys(errno, "open", path)
        .context("workspace config (it must be a regular file, not a link)");
  }
  std::string text;
  {
    struct stat st {};
    constexpr off_t kMaxWorkspaceFile = 256 * 1024;
    bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= kMaxWorkspaceFile;
    char buf[16384];
    ssize_t n = 0;
    while (ok && (n = ::read(fd, buf, sizeof buf)) > 0 &&
           text.size() <= static_cast<size_t>(kMaxWorkspaceFile)) {
      text.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    if (!ok || n < 0 || text.size() > static_cast<size_t>(kMaxWorkspaceFile)) {
      return base::Error::msg(
          fmt::format("{}: the workspace config must be a readable regular file of at most {} KiB",
                      path, kMaxWorkspaceFile / 1024));
    }
  }
  if (apply_file(path, Mode::kNarrow, loaded.policy, problems, &text)) {
    loaded.files_read.push_back(path);
  }
  if (!problems.empty()) {
    return base::Error::msg(problems.render());
  }
  return base::ok();
}

std::optional<std::string> label_problem(std::string_view key, std::string_view value) {
  constexpr size_t kMaxKey = 63;
  constexpr size_t kMaxValue = 256;
  auto key_char = [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
           ch == '-';
  };
  if (key.empty() || key.size() > kMaxKey || key[0] < 'a' || key[0] > 'z' ||
      !std::all_of(key.begin(), key.end(), key_char)) {
    return std::string("a label key is 1 to 63 of a-z, 0-9, `_`, `.`, `-`, starting with a letter");
  }
  if (value.size() > kMaxValue) {
    return fmt::format("a label value is at most {} bytes", kMaxValue);
  }
  if (std::any_of(value.begin(), value.end(), [](char ch) {
        auto u = static_cast<unsigned char>(ch);
        return u < 0x20 || u == 0x7f;
      })) {
    return std::string("a label value may not hold control characters");
  }
  return std::nullopt;
}

}  // namespace agentbox::config
