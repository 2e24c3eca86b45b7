// Credentials: placeholders for the box, the real secret swapped in only for scoped hosts.
//
// Theory of operation, per session:
//   1. load: every CredentialSpec's source is resolved once (env: from the launching
//      environment, file:, cmd:) and a placeholder is made for it (random, or stable across
//      sessions when the per-user placeholder key is given); placeholders are regenerated
//      until none is a substring of another placeholder or of any secret. Any failure fails the
//      whole load (fail closed: the box never starts with a real secret or without its stand-in).
//   2. the box gets placeholder_env() (VAR=placeholder) and never the real value.
//   3. inspect(request, host): every header value, the request target and (when the caller passes
//      it, capped) the body are scanned for every placeholder, raw and inside Basic credentials.
//        - placeholder of C, host outside C's scope  -> Block "credential C sent to HOST";
//        - placeholder of C in C's inject place (header:NAME, basic, query:PARAM), host in
//          scope -> swapped for the secret (same length), Accept-Encoding forced to identity so
//          the response can be scrubbed, an audit "credential.use" event;
//        - a SigV4 signing key (inject = sigv4) never travels: a request whose AWS4-HMAC-SHA256
//          signature verifies under its placeholder is re-signed with the real key after every
//          other swap (sigv4.hpp); the placeholder itself in a request is blocked;
//        - a revoked credential or a failed refresh -> Block.
//        - `format` (header:NAME only): the header is ADDED with the secret formatted ("Bearer
//          {}") on requests to scoped hosts that do not carry it (tools that cannot be given a
//          token). Precedence: the box's header holds the placeholder -> swapped as above; the
//          box sent another value -> left as sent, audited "credential.skip"; absent -> added.
//          Never on plain HTTP.
//        - `body` (opt-in): BodyInjector swaps the placeholder inside request bodies to scoped
//          hosts (same length, streamed with a hold-back like the Scrubber's, first 1 MiB).
//   3b. file:/cmd: values older than ttl_seconds are re-read before a request that needs them;
//      with a Refresher installed (the proxy's worker thread) the read runs off the event loop:
//      await_fresh() starts it and says "wait"; the waiting request is woken when it is done.
//   3c. `ask` (credential_consent.cpp): a request that would carry the real value waits in
//      await_fresh() until a person answers through the Approver (policy/approval.hpp): once
//      lets the waiting requests go, session lets every later one go, deny (or the wait's end)
//      blocks the waiting ones with a 403; the next request asks again. No approver: blocked.
//   4. responses run through a Scrubber that turns any secret (raw, base64, and the Basic form
//      that was sent) back into its placeholder, across buffer boundaries, same length.
// Nothing here ever logs or audits a secret value; only credential names and hosts.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/base/result.hpp"
#include "agentbox/cred/capture.hpp"
#include "agentbox/cred/scrubber.hpp"
#include "agentbox/http/http1.hpp"
#include "agentbox/policy/approval.hpp"
#include "agentbox/policy/host.hpp"
#include "agentbox/policy/inject.hpp"
#include "agentbox/policy/source.hpp"

namespace agentbox::cred {

// The `inject` grammar is parsed once, by config (policy/inject.hpp); the proxy reads the value.
using policy::InjectKind;
using policy::InjectSpec;
using policy::is_header_token;

// A credential's budgets (docs/CONFIG.md, `max_requests` ...): the one that refused a request.
enum class Budget { kNone, kRequests, kBytes, kMethods, kExpired };
[[nodiscard]] std::string_view budget_key(Budget b);  // "max_requests", ... (the config key)
// The HTTP status a refusal by `b` is answered with: a budget reached (max_requests, max_bytes,
// expires) is 429; a method the credential may not go with is a policy denial, 403, as a
// `[[network.rule]]` whose `methods` leave it out (docs/CONFIG.md, "Credential budgets"); any
// other credential refusal (kNone: off scope, revoked, ...) is 403 too.
[[nodiscard]] int refusal_status(Budget b);
// The budget a config key names (kNone when it names none).
[[nodiscard]] Budget budget_named(std::string_view key);

// A credential as the proxy needs it (app translates config::Credential into this).
struct CredentialSpec {
  std::string name;                // [credentials.NAME]
  std::string env;                 // variable the box sees
  policy::SourceSpec from;         // parsed by config (policy/source.hpp), `~` expanded by app
  std::vector<std::string> hosts;  // policy::HostPattern: "api.github.com", "*.github.com"
  InjectSpec inject;               // parsed by config (policy/inject.hpp)
  std::string placeholder_prefix;  // optional override
  uint64_t ttl_seconds = 300;      // how long a file:/cmd: value is cached
  // Header value to ADD when the box did not send the header ("Bearer {}": exactly one `{}`,
  // no CR/LF/CTL); empty: never added. Only with inject = "header:NAME".
  std::string format;
  bool body = false;  // also swap the placeholder inside request bodies (opt-in)
  // Responses whose fields hold new secrets (capture.hpp); the values are scoped to `hosts`.
  std::vector<CaptureSpec> capture;
  // Minting actions (capture.hpp, minting_action) this credential may sign anyway.
  std::vector<std::string> allow_mint;
  // Token files: the user's file (rotated values are written back at a rule's `field`) and the
  // box's masked copy (rewritten in place with the new placeholders).
  std::string token_file;
  std::string token_copy;
  // Budgets: past one, a request that would carry the credential is refused.
  std::optional<uint64_t> max_requests;     // requests it is swapped into or added to
  std::optional<uint64_t> max_bytes;        // their request bytes (head + declared body)
  std::vector<std::string> methods;         // the methods it may go with (empty: any)
  std::optional<uint64_t> expires_seconds;  // after load(): its placeholder stops working
  // Where it was defined ("path:3:1"), named in every message about it; empty: not known.
  std::string origin;
  // Ask a person before the real value first goes out (once, session, deny: approval.hpp).
  bool ask = false;
};

// Checks a `format` string: exactly one `{}`, no control characters but HTAB. Empty is valid.
[[nodiscard]] base::Status check_format(std::string_view format);

// Reads a secret from its source. env: looks up the environment given at construction (the
// launching shell's, captured once); file: reads the file (<= 64 KiB) and trims trailing
// whitespace; cmd: runs `/bin/sh -c COMMAND` (the user's own config, like git's `!helper`: a
// shell allows `pass show x | head -1`) outside the box with the supervisor's environment (helpers
// such as secret-tool need the user's D-Bus address), stdin and stderr on /dev/null, a 10 s
// timeout, <= 64 KiB of stdout, exit status 0 required, output trimmed. Empty values fail.
class SecretSource {
 public:
  using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
  explicit SecretSource(EnvLookup env) : env_(std::move(env)) {}
  [[nodiscard]] base::Result<std::string> read(const policy::SourceSpec& from) const;

 private:
  EnvLookup env_;
};

// Streams a request body through same-length placeholder -> secret swaps (one Scrubber per
// credential, chained, so a placeholder split across reads or chunks is still swapped: each
// holds back only the tail that may start its placeholder). Made per request by
// CredentialSet::body_injector for the credentials with `body = true` scoped to the host.
class BodyInjector {
 public:
  [[nodiscard]] std::string feed(std::string_view data);
  [[nodiscard]] std::string finish();
  // Names of the credentials swapped so far, each reported once by take_new_uses().
  [[nodiscard]] std::vector<std::string> take_new_uses();
  [[nodiscard]] bool empty() const { return stages_.empty(); }
  [[nodiscard]] size_t held() const;

 private:
  friend class CredentialSet;
  struct Stage {
    std::string name;
    Scrubber swap;
    bool reported = false;
  };
  std::vector<Stage> stages_;
};

struct Verdict {
  bool blocked = false;
  std::string reason;             // "credential github sent to evil.example" (for the agent)
  std::vector<std::string> used;  // credentials swapped into the request
  bool capture = false;           // a capture rule covers the response: read it whole first
  Budget budget = Budget::kNone;  // blocked by this budget of a credential
};

class CredentialSet {
 public:
  using Clock = std::chrono::steady_clock;

  // `placeholder_key` (optional, the per-user key): placeholders are derived from it and stay
  // the same across sessions for the same credential and secret (placeholder.hpp).
  [[nodiscard]] static base::Result<CredentialSet> load(std::vector<CredentialSpec> specs,
                                                        SecretSource source, audit::Sink* sink,
                                                        std::string_view placeholder_key = {});
  CredentialSet(CredentialSet&&) noexcept;
  CredentialSet& operator=(CredentialSet&&) noexcept;
  ~CredentialSet();

  // VAR=placeholder for each credential, for the box's environment.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> placeholder_env() const;
  [[nodiscard]] std::optional<std::string> placeholder(std::string_view name) const;

  // Scans and rewrites `req` bound for `host` (a canonical hostname). `body`, when given, is
  // scanned up to max_body_scan bytes (and hashed for a SigV4 request that carries no
  // x-amz-content-sha256: pass the whole body for those); placeholders in bodies are blocked
  // off-scope; in scope they are swapped only by a BodyInjector (`body = true`).
  // `cleartext`: the request goes out as plain HTTP, so any placeholder of a credential, even in
  // scope, is blocked rather than swapped (the secret would cross the network unencrypted).
  [[nodiscard]] Verdict inspect(http::Request& req, std::string_view host,
                                std::string_view body = {}, bool cleartext = false);
  // The body swapper for a request to `host` (empty when no `body = true` credential is scoped
  // to it, or on plain HTTP). Call after inspect() allowed the request. `capture`: a capture
  // rule covers the request (a token endpoint: the refresh token travels in the body, and the
  // response is read whole and scrubbed), so every credential scoped to the host is swapped.
  [[nodiscard]] BodyInjector body_injector(std::string_view host, bool cleartext,
                                           bool capture = false) const;

  // Runs `read(from)` off the caller's thread and calls `done(result)` back on it (the proxy
  // passes its worker). Without one, stale values are re-read synchronously inside inspect().
  using Refresher = std::function<bool(policy::SourceSpec from,
                                       std::function<void(base::Result<std::string>)> done)>;
  void set_refresher(Refresher r) { refresher_ = std::move(r); }
  // For a request about to be inspected: starts a background refresh of every stale credential
  // it would use (placeholder in target or headers, a `format` header to add, a `body`
  // credential) and returns true when it must wait; `wake` is called (once per refresh) when
  // one finishes. Each credential is re-read at most once a second, so a failing command does
  // not make a request wait forever: after one attempt the request goes on (and is blocked as
  // "unavailable").
  [[nodiscard]] bool await_fresh(const http::Request& req, std::string_view host, bool cleartext,
                                 const std::function<void()>& wake);
  [[nodiscard]] const SecretSource& source() const { return *source_; }
  // Who `ask` credentials ask (the session's queue; nullptr: nobody, so they are blocked). The
  // approver must outlive the set or be reset to nullptr first.
  void set_approver(policy::Approver* approver) { approver_ = approver; }
  // Some credential says `ask`.
  [[nodiscard]] bool asks() const;

  // Capture (capture.hpp): whether a rule covers the response to this request, and taking the
  // new secrets out of such a response (whole, decoded body). Each new value becomes a
  // credential scoped like its owner; the response must then be scrubbed with a scrubber made
  // after this call. An error (the body is not what the rule expects, too many captures) means
  // the response must not reach the box.
  [[nodiscard]] bool captures(std::string_view host, std::string_view method,
                              std::string_view target) const;
  [[nodiscard]] base::Status capture(std::string_view host, std::string_view method,
                                     std::string_view target, int status, std::string_view body);
  static constexpr size_t kMaxCaptureBody = 1 << 20;
  static constexpr size_t kMaxCaptured = 1024;

  // A scrubber loaded with every secret form this set knows (call per response).
  [[nodiscard]] Scrubber scrubber() const;
  // Revocation: the next request carrying its placeholder is blocked. Returns false if unknown.
  bool revoke(std::string_view name);
  // Rotation (`agentbox rotate`): re-reads a file: or cmd: credential from its source now,
  // whatever its ttl; a request that needs it meanwhile waits for the read (as for a stale
  // value). An error at once when the name is unknown or its value cannot be re-read (env: is
  // fixed at start; a captured value rotates with its own token endpoint). The outcome is
  // audited (`credential.rotate`) and shown by state().
  [[nodiscard]] base::Status rotate(std::string_view name);
  struct State {
    std::string name;
    bool revoked = false;
    bool refreshing = false;  // a re-read is running
    std::string failure;      // non-empty: unavailable, and why
    // Its budgets: what it spent and was refused, and the limits (nullopt, empty: none).
    uint64_t requests = 0;
    uint64_t bytes = 0;
    uint64_t refused = 0;
    std::optional<uint64_t> max_requests;
    std::optional<uint64_t> max_bytes;
    std::vector<std::string> methods;
    std::optional<int64_t> expires_in_s;  // seconds left before `expires` (<= 0: expired)
  };
  // Every credential named in the configuration, in order (captured values are not listed).
  [[nodiscard]] std::vector<State> state() const;
  // A budget changed live (`agentbox budget SESSION --credential NAME KEY=VALUE`): `value`
  // (nullopt removes it) for max_requests and max_bytes, seconds from now for expires;
  // `methods` (empty: any). A limit below what was spent refuses the next request. Values
  // captured from its responses follow its methods and expiry. The caller audits who made it.
  struct BudgetSetting {
    Budget key = Budget::kNone;
    std::optional<uint64_t> value;
    std::vector<std::string> methods;
  };
  [[nodiscard]] base::Status set_budget(std::string_view name, const BudgetSetting& s);
  // One line per credential that refused requests over a budget, for the exit summary.
  [[nodiscard]] std::vector<std::string> budget_summary() const;
  // Hosts the credentials are scoped to (the TLS CA must be allowed to intercept them).
  [[nodiscard]] std::vector<std::string> host_patterns() const;

  static constexpr size_t kMaxBodyScan = 1 << 20;

 private:
  struct Entry;
  CredentialSet() = default;
  base::Status refresh_if_due(Entry& e);
  [[nodiscard]] bool due(const Entry& e) const;
  [[nodiscard]] bool add_formatted(http::Request& req, std::string_view host, bool cleartext,
                                   const std::vector<Entry*>& swapped, Verdict& v);
  // inspect's passes (credentials.cpp), each false when v blocks the request.
  struct Carried;
  [[nodiscard]] std::string presence_refusal(Entry& e, const http::Request& req,
                                             std::string_view host, bool cleartext, bool verified);
  [[nodiscard]] bool find_present(const http::Request& req, std::string_view host,
                                  std::string_view body, bool cleartext, Carried& found,
                                  Verdict& v);
  [[nodiscard]] std::vector<Entry*> swap_present(http::Request& req, std::string_view host,
                                                 const std::vector<Entry*>& present, Verdict& v);
  [[nodiscard]] bool resign_all(http::Request& req, std::string_view host, Carried& found,
                                Verdict& v);
  void apply_refresh(Entry& e, base::Result<std::string> fresh);
  // Starts a background re-read of `e` (the refresher must be set); false when its queue is full.
  bool start_refresh(Entry& e, bool audit);
  // `key`: the user's placeholder key (stable placeholders, placeholder.hpp); empty: random.
  [[nodiscard]] base::Status make_placeholder_for(Entry& e, std::string_view key = {}) const;
  [[nodiscard]] std::string minting_denial(const http::Request& req, std::string_view host,
                                           std::string_view body,
                                           const std::vector<Entry*>& signers) const;
  void write_back(const Entry& owner, const CaptureSpec& rule, const Entry& captured);
  // Budgets (credential_budget.cpp): refuse `req` when `e` is over one (v says why, audited);
  // count an allowed request against the credentials it carries.
  [[nodiscard]] bool refuse_over_budget(Entry& e, const http::Request& req, std::string_view host,
                                        Verdict& v);
  void account(const http::Request& req, const Verdict& v);
  // `ask` (credential_consent.cpp): waits for an answer about `e` (true: `wake` is kept);
  // why the real value may not go now ("" when it may); a `once` grant used.
  [[nodiscard]] bool await_consent(Entry& e, const http::Request& req, std::string_view host,
                                   const std::function<void()>& wake);
  [[nodiscard]] std::string consent_refusal(Entry& e);
  static void consumed(Entry& e);
  std::vector<std::unique_ptr<Entry>> entries_;
  policy::Approver* approver_ = nullptr;
  Refresher refresher_;
  std::unique_ptr<SecretSource> source_;
  audit::Sink* sink_ = nullptr;
};

}  // namespace agentbox::cred
