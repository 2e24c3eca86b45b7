// A secret's source grammar (a credential's `from`, telemetry.otlp_headers_from), parsed once:
// config turns what the user wrote into a SourceSpec and hands it on; app expands a file path's
// `~`, and the credential model (SecretSource) reads the secret from it.
//   "env:NAME"     the variable NAME of the launching environment (letters, digits, `_`; not
//                  starting with a digit)
//   "file:PATH"    the file PATH: absolute, or `~`-relative (expanded against the caller's home)
//   "cmd:COMMAND"  the standard output of `/bin/sh -c COMMAND`
#pragma once

#include <string>
#include <string_view>

#include "agentbox/base/result.hpp"

namespace agentbox::policy {

enum class SourceKind { kEnv, kFile, kCmd };

struct SourceSpec {
  SourceKind kind = SourceKind::kEnv;
  std::string arg;  // the variable name, the path or the command

  [[nodiscard]] static base::Result<SourceSpec> parse(std::string_view s);
  [[nodiscard]] static SourceSpec env(std::string name) {
    return {SourceKind::kEnv, std::move(name)};
  }
  [[nodiscard]] static SourceSpec file(std::string path) {
    return {SourceKind::kFile, std::move(path)};
  }
  [[nodiscard]] static SourceSpec cmd(std::string command) {
    return {SourceKind::kCmd, std::move(command)};
  }
  // "env", "file" or "cmd" (the audit log's `source`).
  [[nodiscard]] std::string_view kind_name() const;
  // As written: "env:NAME", "file:PATH", "cmd:COMMAND". Names a variable, path or command, never
  // a secret: safe in messages and logs.
  [[nodiscard]] std::string to_string() const;
  bool operator==(const SourceSpec&) const = default;
};

// A POSIX-style environment variable name: [A-Za-z_][A-Za-z0-9_]*.
[[nodiscard]] bool is_env_name(std::string_view s);

}  // namespace agentbox::policy
