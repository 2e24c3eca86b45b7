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
#include <utility>
#include <vector>

#include "agentbox/policy/exec_rule.hpp"
#include "agentbox/policy/inject.hpp"
#include "agentbox/policy/source.hpp"

namespace agentbox::config {

// Where a value came from: a file position, a flag ("--rw"), or "built-in".
struct Origin {
  std::string source;  // path of the file, "--flag", or "built-in"
  int line = 0;        // 1-based; 0 when not from a file
  int column = 0;
  [[nodiscard]] std::string describe() const;  // "path:3:7", "--rw", "built-in"
};

// A limit or size written as "unlimited": nothing is imposed (tmpfs: no size or inode cap).
inline constexpr uint64_t kUnlimited = UINT64_MAX;

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

// A response field that holds a new secret (cred/capture.hpp): captured, replaced by a
// placeholder for the box, swapped back on the owner's hosts.
struct CaptureRule {
  Origin origin;
  std::string host;           // host pattern; empty: the owner's hosts
  std::string method;         // empty: any
  std::string path;           // glob; empty: any
  std::string json;           // dotted JSON path of the value
  std::string xml;            // or the XML element holding it
  policy::InjectSpec inject;  // parsed here, once (policy/inject.hpp); default header:Authorization
  bool body = false;
  std::string field;  // token files: where the new value is written back in the user's file
};

struct Credential {
  Origin origin;
  std::string name;                // the [credentials.NAME] key
  std::string env;                 // variable the box sees (holding the placeholder)
  policy::SourceSpec from;         // "env:NAME" | "file:PATH" | "cmd:COMMAND", parsed
  std::vector<std::string> hosts;  // host patterns it is scoped to
  policy::InjectSpec inject;       // "header:NAME" | "basic" | "query:PARAM" | "sigv4", parsed
  std::string format;              // header ADDED when absent, e.g. "Bearer {}" (empty: never)
  bool body = false;               // also swap the placeholder inside request bodies (opt-in)
  Origin body_origin;              // where `body = true` was set, and its source line
  std::string body_line;
  std::string placeholder_prefix;       // optional override of the detected prefix
  uint64_t ttl_seconds = 300;           // cmd: output cache lifetime
  std::vector<CaptureRule> capture;     // responses whose fields hold new secrets
  std::vector<std::string> allow_mint;  // minting actions it may sign anyway (CreateAccessKey)
  // Budgets (docs/CONFIG.md): unset is unlimited.
  std::optional<uint64_t> max_requests;     // requests it may be swapped into or added to
  std::optional<uint64_t> max_bytes;        // request bytes sent with it (head + body)
  std::vector<std::string> methods;         // HTTP methods it may go with (empty: any)
  std::optional<uint64_t> expires_seconds;  // after the session's start
  bool ask = false;  // a person approves the real value's first use (agentbox approve)
};

struct TokenFile {
  Origin origin;
  std::string path;                      // shown inside the box with secrets masked
  std::vector<std::string> json_fields;  // dotted JSON paths to mask
  std::vector<std::string> regexes;      // or regexes whose first group is masked
  std::vector<std::string> hosts;        // where the masked values are swapped back (required)
  policy::InjectSpec inject;             // as for credentials
  std::vector<CaptureRule> capture;      // rotated values, written back at `field`
};

// Unset: unlimited. kUnlimited: unlimited, said so by the origin. memory, pids and the inotify
// counts have built-in defaults (load.cpp, apply_builtins: docs/CONFINEMENT.md gives the reasons).
struct Limits {
  std::optional<Sourced<uint64_t>> timeout_seconds;
  std::optional<Sourced<uint64_t>> memory_bytes;
  std::optional<Sourced<uint64_t>> pids;
  std::optional<Sourced<double>> cpus;
  std::optional<Sourced<uint64_t>> nofile;
  std::optional<Sourced<uint64_t>> file_size_bytes;
  std::optional<Sourced<uint64_t>> inotify_instances;  // the box's user namespace's own limits
  std::optional<Sourced<uint64_t>> inotify_watches;
  // limits.cpu_priority: "background" (true: the box's tasks, their autogroup and the session
  // cgroup's CPU weight at nice 10) or "normal". Background by default: an unattended agent must
  // not starve the user's desktop (docs/CONFIG.md).
  Sourced<bool> cpu_background{true, {"built-in"}};
};

// The value of a limit for the code that imposes it: nullopt when unset or "unlimited".
[[nodiscard]] inline std::optional<uint64_t> imposed(const std::optional<Sourced<uint64_t>>& l) {
  if (!l || l->value == kUnlimited) {
    return std::nullopt;
  }
  return l->value;
}

// [audit]: the session's log (docs/CONFIG.md).
// [budget]: the session's budgets (docs/CONFIG.md); unset: no limit.
struct Budget {
  std::optional<Sourced<uint64_t>> egress;             // bytes the box sends
  std::optional<Sourced<uint64_t>> requests_per_host;  // HTTP requests the proxy reads, per host
  std::optional<Sourced<double>> spend;                // dollars of model usage
  std::optional<Sourced<uint64_t>> connections_per_minute;  // new box connections in any 60 s
};

// [pricing."MODEL"]: dollars per million tokens (profiles/pricing.toml ships the defaults). A
// field the user's files leave out keeps the shipped price (config::resolve_pricing).
struct ModelPrice {
  std::optional<double> input;
  std::optional<double> output;
  std::optional<double> cached;  // cached input tokens (a prompt cache read)
  Origin origin;
};

struct AuditSettings {
  Sourced<bool> required{false, {"built-in"}};  // a line that cannot be written ends the session
  Sourced<uint64_t> max_size{64ull << 20, {"built-in"}};        // bytes per session's log
  Sourced<uint64_t> keep_sessions{100, {"built-in"}};           // session dirs kept
  Sourced<uint64_t> max_age_seconds{30 * 86400, {"built-in"}};  // older ones are removed
};

// [telemetry] (docs/TELEMETRY.md): the user's own files only (a workspace file that names a
// collector would ship the log elsewhere).
struct TelemetrySettings {
  std::optional<Sourced<std::string>> otlp_endpoint;              // http(s)://HOST[:PORT]/PATH
  std::vector<std::pair<std::string, std::string>> otlp_headers;  // e.g. an API key header
  // Header values read at start from env:VAR, file:PATH or cmd:COMMAND (no secret in the file).
  std::vector<std::pair<std::string, Sourced<policy::SourceSpec>>> otlp_headers_from;
  std::optional<Sourced<std::string>> otlp_ca;  // https://: the only CAs trusted (PEM file)
  Sourced<uint64_t> otlp_queue{2ull << 20, {"built-in"}};  // bytes of lines waiting
  Sourced<bool> journald{false, {"built-in"}};             // the systemd journal, if present
};

struct Policy {
  // [sandbox]
  std::optional<Sourced<std::string>> workspace;
  std::vector<Sourced<std::string>> ro;   // extra read-only paths (~ expanded later)
  std::vector<Sourced<std::string>> rw;   // extra read-write paths
  std::vector<Sourced<std::string>> env;  // variable names passed through from the caller
  std::map<std::string, Sourced<std::string>> setenv;  // fixed variables set in the box
  std::vector<Sourced<std::string>> protected_paths;   // workspace-relative, read-only
  // The private tmpfs: HOME, /tmp, /dev/shm. Their inode caps default to one per 4 KiB of size
  // (a file costs at least a page of the size budget; the kernel's own memory per inode, ~1 KiB,
  // is then at most a quarter of the size); kUnlimited lifts a cap.
  Sourced<uint64_t> home_size{1ull << 30, {"built-in"}};
  Sourced<uint64_t> tmp_size{1ull << 30, {"built-in"}};
  Sourced<uint64_t> shm_size{256ull << 20, {"built-in"}};
  std::optional<Sourced<uint64_t>> home_inodes;
  std::optional<Sourced<uint64_t>> tmp_inodes;
  std::optional<Sourced<uint64_t>> shm_inodes;
  Sourced<bool> mount_sys{false, {"built-in"}};
  // The box ends when the process that started agentbox ends (a killed CI step), as bubblewrap's
  // --die-with-parent; false for `nohup agentbox run ... &` that must outlive its shell.
  Sourced<bool> die_with_parent{true, {"built-in"}};
  // --review: the workspace through an overlay; writes land only on `agentbox apply`
  // (docs/REVIEW.md).
  Sourced<bool> review{false, {"built-in"}};
  Sourced<std::string> hostname{"agentbox", {"built-in"}};
  // [limits]
  Limits limits;
  // [audit]
  AuditSettings audit;
  TelemetrySettings telemetry;
  // [labels] and --label KEY=VALUE: attribution (a CI pipeline id), in session.start, the OTLP
  // resource and journal fields, `agentbox ps`. Later ones of a key win.
  std::vector<std::pair<std::string, Sourced<std::string>>> labels;
  // [exec]: every execve of the box in the audit log (off by default: its cost per exec is
  // measured in docs/BENCHMARKS.md before it may be on), and the
  // `[[exec.rule]]`s, most specific layer first (workspace file, profile, user, system), each
  // file's rules in its order: the first that matches decides.
  Sourced<bool> exec_log{false, {"built-in"}};
  std::vector<policy::ExecRule> exec_rules;  // ExecRule::origin says where each was written
  // [seccomp]
  std::vector<Sourced<std::string>> seccomp_allow;  // named groups loosened, e.g. "ptrace"
  // [network]
  // mode = "none": the box has only `lo`: no tap, no stack, no proxy (works without
  // /dev/net/tun); "filtered" (the default) is the allow-listed network through the proxy.
  Sourced<bool> network_none{false, {"built-in"}};
  std::vector<Sourced<std::string>> net_allow;  // "host[:port]", "*.host", "CIDR[:port]"
  std::vector<Sourced<std::string>> raw_tcp;    // "host:port" allowed without TLS/HTTP
  // Approvals (docs/CONTROL.md): a name these match (same grammar as net_allow) and no allow
  // rule admits gets its DNS answer held until `agentbox approve` answers; unlisted_ask: every
  // name no rule admits. ask_timeout: seconds a question waits before it is denied.
  std::vector<Sourced<std::string>> ask;
  Sourced<bool> unlisted_ask{false, {"built-in"}};
  // network.unlisted = "learn" (--learn): every name no rule admits is allowed at once for the
  // session and recorded (`learn.allow`), for `agentbox profile suggest`; implies unlisted_ask.
  Sourced<bool> learn{false, {"built-in"}};
  Sourced<uint64_t> ask_timeout{60, {"built-in"}};
  // network.ask_desktop: each question is also shown as a desktop notification (with Allow
  // once / Allow for this session / Deny) when the supervisor's own environment has a
  // graphical session and a session bus (docs/CONTROL.md, "Desktop notifications").
  Sourced<bool> ask_desktop{true, {"built-in"}};
  // Allowed host patterns whose TLS is intercepted only to check Host = SNI and to block any
  // placeholder (`{ host = ..., inspect = true }` in network.allow); inspect_all: every one.
  std::vector<Sourced<std::string>> inspect;
  Sourced<bool> inspect_all{false, {"built-in"}};
  std::vector<Sourced<std::string>> connect_to;  // "HOST:PORT:ADDR:PORT"
  // Host services (docs/NETWORK.md): "PORT[:HOSTPORT]", the box's localhost:PORT reaches the
  // host's loopback HOSTPORT; "PORT[:BOXPORT]", the host's 127.0.0.1:PORT reaches the box's.
  std::vector<Sourced<std::string>> host_ports;
  std::vector<Sourced<std::string>> publish;
  std::vector<Sourced<std::string>> upstream_ca;  // extra PEM files trusted upstream
  std::vector<Sourced<std::string>> trust_ca;     // extra PEM files the box (and upstream) trusts
  std::vector<HttpRule> http_rules;
  // Kernel socket memory all flows together may hold (net::BufferBudget), and how many flows
  // may be open at once.
  Sourced<uint64_t> buffer_budget{128ull << 20, {"built-in"}};
  Sourced<uint64_t> max_flows{4096, {"built-in"}};
  // Intercepted TLS flows at once; more wait (proxy::ProxyOptions::max_intercepted).
  Sourced<uint64_t> max_intercepted{256, {"built-in"}};
  // [terminal]: what the box prints passes a filter on its way to your terminal
  Sourced<bool> terminal_filter{true, {"built-in"}};
  std::vector<Sourced<std::string>> terminal_allow;  // "osc8", "osc52", "oscN"
  // [persist]: agent state kept per profile and workspace (app/agent_state.hpp)
  std::vector<Sourced<std::string>> persist;       // HOME-relative directories, "~/.claude"
  std::vector<Sourced<std::string>> persist_drop;  // never kept: removed before each session
  std::map<std::string, std::vector<std::string>> persist_strip;  // JSON file -> keys erased
  // The answers an agent would otherwise ask for each session (config/answers.hpp): file
  // ("~/.claude/settings.json") -> a JSON object merged into the user's own file, shown read-only.
  std::map<std::string, Sourced<std::string>> persist_answers;
  std::string state_scope = "default";  // the profile's name: one state directory per profile
  // [credentials.*] and [[token_file]]
  std::map<std::string, Credential> credentials;
  Budget budget;
  // What the user's files price; the shipped tables (pricing_files, lowest first) are read only
  // by a session that meters a model response (config::resolve_pricing), not at every start.
  std::map<std::string, ModelPrice> pricing;
  std::vector<std::string> pricing_files;
  std::vector<TokenFile> token_files;
};

}  // namespace agentbox::config
