// Loading the layered configuration into one Policy.
//
// Layers, lowest first: built-in defaults, /etc/agentbox/config.toml,
// $XDG_CONFIG_HOME/agentbox/config.toml (~/.config when unset), the named profiles in the order
// given (each from the user profiles folder $XDG_CONFIG_HOME/agentbox/profiles/NAME.toml first,
// then the shipped ones; a later one layers over an earlier one), then the command-line flags.
// One exception: a credential the user defined (config files, the user's own profiles) is never
// replaced by a shipped profile's of the same name; a note says which one was dropped. A workspace
// file (.agentbox.toml at the workspace root) may only narrow. Errors carry file:line:col, the
// source line and a caret; every problem is reported, then stop.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/config/model.hpp"

namespace agentbox::config {

// What the command line said, before validation. Strings are exactly as typed.
struct Flags {
  std::vector<std::string> profiles;  // --profile, repeatable: later ones layer over earlier
  std::optional<std::string> workspace;
  std::vector<std::string> ro;
  std::vector<std::string> rw;
  std::vector<std::string> env;         // --env NAME (pass through) or NAME=VALUE (set)
  std::vector<std::string> allow;       // --allow HOST[:PORT]
  std::vector<std::string> connect_to;  // --connect-to HOST:PORT:ADDR:PORT
  std::vector<std::string> raw_tcp;     // --raw-tcp HOST:PORT (neither TLS nor HTTP, e.g. ssh)
  std::vector<std::string> host_ports;  // --host-port PORT[:HOSTPORT]
  std::vector<std::string> publish;     // --publish PORT[:BOXPORT]
  std::vector<std::string> ask;         // --ask HOST[:PORT]: held until `agentbox approve`
  bool ask_unlisted = false;            // --ask-unlisted: every name not allowed is asked
  bool learn = false;                   // --learn: every name not allowed is admitted, recorded
  std::vector<std::string> upstream_ca;
  std::vector<std::string> trust_ca;       // --trust-ca PATH (the box trusts it)
  std::vector<std::string> seccomp_allow;  // --allow-syscalls GROUP
  std::optional<std::string> timeout;      // "90s", "2h"
  std::optional<std::string> memory;       // "2G"
  std::optional<std::string> pids;
  std::optional<std::string> cpus;
  std::optional<std::string> cpu_priority;   // --cpu-priority background|normal
  bool audit_required = false;               // --audit-required
  std::optional<std::string> network;        // --network none|filtered
  bool inspect_all = false;                  // --inspect-all
  bool review = false;                       // --review
  std::optional<std::string> budget_egress;  // --budget-egress SIZE
  std::optional<std::string> budget_requests_per_host;
  std::optional<std::string> budget_spend;  // --budget-spend DOLLARS
  std::optional<std::string> budget_connections_per_minute;
  std::vector<std::string> labels;  // --label KEY=VALUE
};

// Why a label key or value cannot be used, or nullopt: keys are 1-63 of [a-z0-9_.-] starting
// with a letter (they become attribute and journal field names); values up to 256 bytes of
// printable UTF-8, no control characters.
[[nodiscard]] std::optional<std::string> label_problem(std::string_view key,
                                                       std::string_view value);

struct LoadOptions {
  Flags flags;
  // Overrides for tests; empty means the standard locations.
  std::optional<std::string> system_file;  // default /etc/agentbox/config.toml
  std::optional<std::string> user_dir;     // default $XDG_CONFIG_HOME/agentbox
  std::vector<std::string> profile_dirs;   // searched after user_dir/profiles
  bool no_user_config = false;             // --no-config: built-in + profile + flags only
};

// The loaded policy, plus the files that were read (for explain and the audit log).
struct Loaded {
  Policy policy;
  std::vector<std::string> files_read;
  // One line per decision the user should hear about: a shipped profile's credential dropped
  // because the user's own of the same name wins (run prints them, explain shows them).
  std::vector<std::string> notes;
};

[[nodiscard]] base::Result<Loaded> load(const LoadOptions& options);

// The price table a session meters with: the shipped tables (`files`, profiles/pricing.toml
// installed then the administrator's; only their [pricing] counts, an absent one is no
// defaults), then the user's fields (`user`, Policy::pricing) over them; every field set. Read
// on the first metered response, not by load(): parsing it was 2.5 ms of every start.
[[nodiscard]] base::Result<std::map<std::string, ModelPrice>> resolve_pricing(
    const std::vector<std::string>& files, const std::map<std::string, ModelPrice>& user);

// Narrows `loaded` with the workspace's own file (.agentbox.toml at its root), written by whoever
// controls the workspace, possibly the agent: it may keep a subset of the granted lists (ro, rw,
// env, network.allow, network.raw_tcp, seccomp.allow), lower limits and tmpfs sizes, and add
// protected paths; anything that would widen is an error at its file:line:col. A missing file is
// not an error.
[[nodiscard]] base::Status narrow_with_workspace_file(Loaded& loaded, const std::string& path);

// Names of the profiles found in `dirs` (for "did you mean" and `agentbox explain --list`).
[[nodiscard]] std::vector<std::string> available_profiles(const std::vector<std::string>& dirs);

// Where the shipped profiles live (install prefix, then the source tree for a build-dir run).
[[nodiscard]] std::vector<std::string> default_profile_dirs();

// `agentbox explain`: the effective policy, one grant per line, each with its origin.
[[nodiscard]] std::string explain(const Loaded& loaded);

}  // namespace agentbox::config
