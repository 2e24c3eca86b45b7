// The configuration model: what a session is allowed, with where each grant came from.
//
// One model for every layer: built-in defaults < /etc/agentbox/config.toml <
// $XDG_CONFIG_HOME/agentbox/config.toml < --profile NAME < command-line flags (< a workspace
// config, which may only narrow). Each value remembers its Origin so `agentbox explain` can say
// which file:line or flag it came from. Modules below app never see this: app translates it into
// SandboxSpec / EgressPolicy / credential specs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace agentbox::config {

// Where a value came from: a file position, a flag ("--rw"), or "built-in".
struct Origin {
  std::string source;  // path of the file, "--flag", or "built-in"
  int line = 0;        // 1-based; 0 when not from a file
  int column = 0;
  [[nodiscard]] std::string describe() const;  // "path:3:7", "--rw", "built-in"
};

template <class T>
struct Sourced {
  T value{};
  Origin origin;
};

struct HttpRule {
  Origin origin;
  std::string host;                  // same pattern grammar as network.allow
  std::vector<std::string> methods;  // empty: any (but CONNECT/TRACE are always refused)
  std::vector<std::string> paths;    // globs; empty: any
  std::optional<uint64_t> max_body;  // bytes
};

struct Credential {
  Origin origin;
  std::string name;                // the [credentials.NAME] key
  std::string env;                 // variable the box sees (holding the placeholder)
  std::string from;                // "env:NAME" | "file:PATH" | "cmd:COMMAND"
  std::vector<std::string> hosts;  // host patterns it is scoped to
  std::string inject;              // "header:NAME" | "basic" | "query:PARAM" | "sigv4"
  std::string format;              // header ADDED when absent, e.g. "Bearer {}" (empty: never)
  bool body = false;               // also swap the placeholder inside request bodies (opt-in)
  Origin body_origin;              // where `body = true` was set, and its source line
  std::string body_line;
  std::string placeholder_prefix;  // optional override of the detected prefix
  uint64_t ttl_seconds = 300;      // cmd: output cache lifetime
};

struct TokenFile {
  Origin origin;
  std::string path;                      // shown inside the box with secrets masked
  std::vector<std::string> json_fields;  // dotted JSON paths to mask
  std::vector<std::string> regexes;      // or regexes whose first group is masked
  std::vector<std::string> hosts;        // where the masked values are swapped back (required)
  std::string inject = "header:Authorization";  // as for credentials
};

struct Limits {
  std::optional<Sourced<uint64_t>> timeout_seconds;
  std::optional<Sourced<uint64_t>> memory_bytes;
  std::optional<Sourced<uint64_t>> pids;
  std::optional<Sourced<double>> cpus;
  std::optional<Sourced<uint64_t>> nofile;
  std::optional<Sourced<uint64_t>> file_size_bytes;
};

struct Policy {
  // [sandbox]
  std::optional<Sourced<std::string>> workspace;
  std::vector<Sourced<std::string>> ro;   // extra read-only paths (~ expanded later)
  std::vector<Sourced<std::string>> rw;   // extra read-write paths
  std::vector<Sourced<std::string>> env;  // variable names passed through from the caller
  std::map<std::string, Sourced<std::string>> setenv;  // fixed variables set in the box
  std::vector<Sourced<std::string>> protected_paths;   // workspace-relative, read-only
  Sourced<uint64_t> home_size{256ull << 20, {"built-in"}};
  Sourced<uint64_t> tmp_size{1ull << 30, {"built-in"}};
  Sourced<bool> mount_sys{false, {"built-in"}};
  Sourced<std::string> hostname{"agentbox", {"built-in"}};
  // [limits]
  Limits limits;
  // [seccomp]
  std::vector<Sourced<std::string>> seccomp_allow;  // named groups loosened, e.g. "ptrace"
  // [network]
  std::vector<Sourced<std::string>> net_allow;    // "host[:port]", "*.host", "CIDR[:port]"
  std::vector<Sourced<std::string>> raw_tcp;      // "host:port" allowed without TLS/HTTP
  std::vector<Sourced<std::string>> connect_to;   // "HOST:PORT:ADDR:PORT"
  std::vector<Sourced<std::string>> upstream_ca;  // extra PEM files trusted upstream
  std::vector<HttpRule> http_rules;
  // [credentials.*] and [[token_file]]
  std::map<std::string, Credential> credentials;
  std::vector<TokenFile> token_files;
};

}  // namespace agentbox::config
