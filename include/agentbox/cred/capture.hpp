// Capture rules: responses whose fields hold new secrets (minted credentials), and the requests
// that mint credentials nobody can capture.
//
// Theory of operation: a credential (or a token file) lists capture rules: host, method and
// path of a response, and the JSON field (dotted path) or XML element that holds a new secret.
// The proxy buffers such a response whole (CredentialSet::kMaxCaptureBody), takes each value
// out (json_field / xml_element here, pure and fuzzed), registers it as a new credential scoped
// like its owner (CredentialSet::capture), and the response's scrubber then turns every form of
// it into its fresh, shape-matched placeholder: the box gets placeholders, the value stays in
// the supervisor, and later requests carrying the placeholder get the value swapped in, only on
// the owner's hosts. A token file's rotated value is also written back to the user's file
// (set_json_field_text + replace_file_atomically) so the user's own tools keep working.
// minting_action() names the AWS query actions that mint keys; inspect refuses them on a
// re-signed request unless a capture rule covers the response or `allow_mint` names the action.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/base/result.hpp"
#include "agentbox/policy/inject.hpp"

namespace agentbox::cred {

// One field of a response that holds a new secret.
struct CaptureSpec {
  std::string host;           // policy::HostPattern; empty: the owner's hosts
  std::string method;         // empty: any
  std::string path;           // glob (http_rules.hpp); empty: any
  std::string json;           // dotted path of a string in a JSON response ("credentials.token")
  std::string xml;            // or: the element whose text is the value ("SecretAccessKey")
  policy::InjectSpec inject;  // how the captured value is swapped later (parsed by config)
  bool body = false;          // ... also inside request bodies
  std::string field;          // token files: dotted JSON path in the file to write the new value to
};

// The string at dotted `path` of a JSON document: nullopt when absent or not a string; an error
// when `text` is not JSON.
[[nodiscard]] base::Result<std::optional<std::string>> json_field(std::string_view text,
                                                                  std::string_view path);
// The text of the first element named `name` (<name>text</name>, no attributes, no markup or
// entity inside): nullopt when absent; an error when it is there but not plain text.
[[nodiscard]] base::Result<std::optional<std::string>> xml_element(std::string_view text,
                                                                   std::string_view name);
// The JSON text with the string at `path` replaced by `value`, keeping the rest of its
// formatting (every JSON-escaped spelling of the old value is replaced). An error when the
// text is not JSON or `path` holds no string.
[[nodiscard]] base::Result<std::string> set_json_field_text(const std::string& text,
                                                            std::string_view path,
                                                            std::string_view value);
// Writes `text` to a temporary file beside `path` with path's mode and owner, then renames it
// over `path` (readers see the old or the new file, never a mix).
[[nodiscard]] base::Status replace_file_atomically(const std::string& path, std::string_view text);
// Rewrites `path` in place (same inode: a bind mount of it shows the new text).
[[nodiscard]] base::Status rewrite_in_place(const std::string& path, std::string_view text);

// The AWS query action of a request if it mints long-lived credentials (IAM CreateAccessKey,
// CreateLoginProfile, ...; STS AssumeRole*, GetSessionToken, GetFederationToken): from the
// query string, or a form-encoded body. nullopt otherwise.
[[nodiscard]] std::optional<std::string> minting_action(std::string_view target,
                                                        std::string_view content_type,
                                                        std::string_view body);

}  // namespace agentbox::cred
