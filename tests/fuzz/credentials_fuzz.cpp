// Fuzz target: credential inspection and response scrubbing on arbitrary requests and bodies.
// "@GH@", "@GIT@", "@Q@" and "@FMT@" in the input stand for the credentials' placeholders, so the
// swap paths are reached. A real secret in what the box would get, or in a request to a host of
// no credential, is a crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "agentbox/cred/credentials.hpp"

namespace {

const std::string kSecret = "ghp_FuzzRealSecretValue0123456789abcdefg";
const std::string kGitSecret = "gho_FuzzGitSecretValue0123456789abcdefgh";
const std::string kFmtSecret = "xoxb-9876543210-FuzzBodySecret0123456789";
const std::string kQSecret = "qkey-0123456789-FUZZ";
const std::string kSecrets[] = {kSecret, kGitSecret, kFmtSecret, kQSecret};

bool has_secret(std::string_view s) {
  return std::any_of(std::begin(kSecrets), std::end(kSecrets),
                     [&](const std::string& k) { return s.find(k) != std::string_view::npos; });
}

agentbox::cred::CredentialSet& set() {
  static auto* s = [] {
    auto r = agentbox::cred::CredentialSet::load(
        {{.name = "gh",
          .env = "GH",
          .from = agentbox::policy::SourceSpec::env("GH"),
          .hosts = {"api.github.com"},
          .inject = agentbox::policy::InjectSpec::header("Authorization")},
         {.name = "git",
          .env = "GIT",
          .from = agentbox::policy::SourceSpec::env("GIT"),
          .hosts = {"*.github.com"},
          .inject = agentbox::policy::InjectSpec::basic()},
         {.name = "q",
          .env = "Q",
          .from = agentbox::policy::SourceSpec::env("Q"),
          .hosts = {"q.example"},
          .inject = agentbox::policy::InjectSpec::query("key")},
         // Added to requests that lack the header; swapped in bodies (opt-in).
         {.name = "fmt",
          .env = "FMT",
          .from = agentbox::policy::SourceSpec::env("FMT"),
          .hosts = {"api.github.com", "q.example"},
          .inject = agentbox::policy::InjectSpec::header("X-Api-Key"),
          .format = "Bearer {}",
          .body = true}},
        agentbox::cred::SecretSource([](const std::string& k) -> std::optional<std::string> {
          if (k == "GH")
            return kSecret;
          if (k == "GIT")
            return kGitSecret;
          if (k == "FMT")
            return kFmtSecret;
          return kQSecret;
        }),
        nullptr);
    if (!r) {
      std::abort();
    }
    return new agentbox::cred::CredentialSet(std::move(*r));
  }();
  return *s;
}

// Capture (capture.hpp): bytes from an upstream never crash the field readers, a captured value
// never reaches the box in clear, and a token file edit keeps the file JSON with the new value.
void fuzz_capture(const std::string& raw) {
  using namespace agentbox::cred;
  using namespace agentbox::http;
  (void)json_field(raw, "access_token");
  (void)json_field(raw, "a.0.b");
  (void)xml_element(raw, "SessionToken");
  (void)minting_action(raw, "application/x-www-form-urlencoded", raw);
  const std::string value = "fuzz-new-value/0123456789";
  if (auto edited = set_json_field_text(raw, "access_token", value)) {
    auto back = json_field(*edited, "access_token");
    if (!back || !*back || **back != value) {
      std::abort();
    }
  }
  auto r = CredentialSet::load(
      {{.name = "oauth",
        .env = "OAUTH",
        .from = agentbox::policy::SourceSpec::env("OAUTH"),
        .hosts = {"auth.example"},
        .inject = agentbox::policy::InjectSpec::header("Authorization"),
        .capture = {{.method = "POST", .json = "access_token"},
                    {.method = "POST", .json = "refresh_token", .body = true},
                    {.method = "POST",
                     .xml = "SecretAccessKey",
                     .inject = agentbox::policy::InjectSpec::sigv4()}}}},
      SecretSource([](const std::string&) { return std::optional<std::string>(kSecret); }),
      nullptr);
  if (!r) {
    std::abort();
  }
  if (!r->captures("auth.example", "POST", "/token") || r->captures("evil.example", "POST", "/")) {
    std::abort();
  }
  if (!r->capture("auth.example", "POST", "/token", 200, raw)) {
    return;  // refused: the response never reaches the box
  }
  auto s = r->scrubber();
  std::string out = s.feed(raw);
  out += s.finish();
  for (auto v : {json_field(raw, "access_token"), json_field(raw, "refresh_token"),
                 xml_element(raw, "SecretAccessKey")}) {
    if (v && *v && (*v)->size() >= 8 && raw.find(**v) != std::string::npos &&
        out.find(**v) != std::string::npos) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agentbox::cred;
  using namespace agentbox::http;
  std::string raw(reinterpret_cast<const char*>(data), size);
  for (const auto& [name, marker] : {std::pair{"gh", "@GH@"}, std::pair{"git", "@GIT@"},
                                     std::pair{"q", "@Q@"}, std::pair{"fmt", "@FMT@"}}) {
    const std::string ph = *set().placeholder(name);
    for (size_t at = raw.find(marker); at != std::string::npos; at = raw.find(marker, at)) {
      raw.replace(at, std::strlen(marker), ph);
    }
  }
  fuzz_capture(raw);
  auto p = agentbox::http::parse_request(std::as_bytes(std::span(raw.data(), raw.size())));
  if (p.status == agentbox::http::ParseStatus::kOk) {
    const std::string_view body = std::string_view(raw).substr(p.head_bytes);
    for (const char* host : {"api.github.com", "x.github.com", "q.example", "evil.example"}) {
      auto req = p.message;
      const auto v = set().inspect(req, host, body);
      if (v.blocked && v.reason.empty()) {
        std::abort();
      }
      // A rewritten request still parses.
      const std::string out = agentbox::http::serialize_head(req);
      if (std::string_view(host) == "evil.example" && !v.blocked && has_secret(out) &&
          !has_secret(raw)) {
        std::abort();  // a real secret the box never had, forwarded to a host of no credential
      }
      if (agentbox::http::parse_request(std::as_bytes(std::span(out.data(), out.size()))).status !=
          agentbox::http::ParseStatus::kOk) {
        std::abort();
      }
    }
  }
  // Scrubbing never changes the length and never lets a secret through, at any split.
  std::string input = raw;
  for (const auto& k : kSecrets) {
    input += k;
  }
  auto s = set().scrubber();
  const size_t split = input.size() / 2;
  std::string out = s.feed(std::string_view(input).substr(0, split));
  out += s.feed(std::string_view(input).substr(split));
  out += s.finish();
  if (out.size() != input.size() || has_secret(out)) {
    std::abort();
  }
  // Body injection: same length, and the result does not depend on where reads split the body.
  auto whole = set().body_injector("api.github.com", false);
  std::string reference = whole.feed(input);
  reference += whole.finish();
  auto split_inj = set().body_injector("api.github.com", false);
  const size_t cut = size == 0 ? 0 : data[0] % (input.size() + 1);
  std::string pieces = split_inj.feed(std::string_view(input).substr(0, cut));
  pieces += split_inj.feed(std::string_view(input).substr(cut, cut));
  pieces += split_inj.feed(std::string_view(input).substr(std::min(input.size(), 2 * cut)));
  pieces += split_inj.finish();
  if (reference.size() != input.size() || pieces != reference) {
    std::abort();
  }
  if (!set().body_injector("evil.example", false).empty() ||
      !set().body_injector("api.github.com", true).empty()) {
    std::abort();
  }
  return 0;
}
