// Session budgets (`[budget]` in docs/CONFIG.md) and the model spend ledger the proxy keeps.
//
// Theory of operation: the proxy asks admit() before it forwards a request (after the HTTP
// rules, before the credentials are swapped in); a spent budget is refused with 429 and one
// "budget" audit event. It then counts the request (per host) and the bytes the box sent
// (egress: live for HTTP through the proxy, at close for spliced flows, see flow_closed). A
// model response's UsageMeter reading is recorded per model and per credential ("model.usage"
// audit event) and priced from the PriceTable. A model whose price is unknown is counted in
// tokens, its spend "unknown"; with a `spend` cap set, the next request to a model host is then
// refused (fail closed) until the model is priced. Limits change at run time (set()), on the
// loop thread like every proxy call.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/proxy/usage.hpp"

namespace agentbox::proxy {

struct Price {
  double input = 0;   // dollars per million input tokens (not cached)
  double output = 0;  // dollars per million output tokens
  double cached = 0;  // dollars per million cached input tokens
};
// Model name -> price. A model not named is priced by the longest key that is a prefix of its
// name followed by '-' ("claude-sonnet-4-5" prices "claude-sonnet-4-5-20250929").
using PriceTable = std::map<std::string, Price>;
[[nodiscard]] const Price* find_price(const PriceTable& table, std::string_view model);
[[nodiscard]] double cost(const Price& p, const Tokens& t);

struct BudgetLimits {
  std::optional<uint64_t> egress;                  // bytes the box sends, the whole session
  std::optional<uint64_t> requests_per_host;       // HTTP requests the proxy reads, per host
  std::optional<double> spend;                     // dollars of model usage
  std::optional<uint64_t> connections_per_minute;  // new box connections in any 60 s
};

enum class SessionLimit { kNone, kEgress, kRequestsPerHost, kSpend, kConnectionsPerMinute };
[[nodiscard]] std::string_view limit_key(SessionLimit l);  // "egress", ... (the config key)

class SessionBudget {
 public:
  SessionBudget(BudgetLimits limits, PriceTable prices, audit::Sink* sink);
  // The prices come from `load` instead, called once, on the first reading record() prices:
  // most sessions meter nothing, and the shipped table costs a parse (app/session_proxy.cpp).
  void price_lazily(std::function<PriceTable()> load) { load_prices_ = std::move(load); }

  struct Refusal {
    SessionLimit limit = SessionLimit::kNone;
    std::string why;  // one line for the agent (the 429 body)
  };
  // Whether a request to `host` may go (model: a model API host, under the spend cap). A
  // refusal is audited ("budget") and counted.
  [[nodiscard]] Refusal admit(std::string_view host);
  // A flow may open while egress is under its budget (a refusal is audited).
  [[nodiscard]] Refusal admit_flow(std::string_view host);
  void count_request(std::string_view host);
  // A new box connection to `host` at `now`: admitted (and counted) while fewer than
  // connections_per_minute were admitted in the last minute, else refused (audited, counted).
  [[nodiscard]] Refusal admit_connection(std::string_view host,
                                         std::chrono::steady_clock::time_point now);
  // Connections admitted in the last minute (kept in one-second steps: 60 to 61 s).
  [[nodiscard]] uint64_t connections_last_minute(std::chrono::steady_clock::time_point now) const;
  // Box bytes seen live on flow `flow` (HTTP through the proxy).
  void count_egress(uint64_t flow, uint64_t bytes);
  // The flow ended with `bytes_up` box bytes written upstream: what was not counted live is.
  void flow_closed(uint64_t flow, uint64_t bytes_up);
  // A model response's usage, charged to the session, its model and the credentials it used.
  void record(std::string_view host, const std::vector<std::string>& credentials,
              const UsageMeter::Reading& r);
  // A host whose responses reported usage, or a known model API host.
  [[nodiscard]] bool model_host(std::string_view host) const;

  // Control socket: `key` is egress, requests_per_host, spend or connections_per_minute;
  // `value` a number, "none"
  // removes the limit. Returns an error line (empty on success).
  [[nodiscard]] std::string set(std::string_view key, std::string_view value);

  struct Use {
    Tokens tokens;
    uint64_t responses = 0;
    std::optional<double> dollars;  // nullopt: a model of it has no price
  };
  [[nodiscard]] const BudgetLimits& limits() const { return limits_; }
  [[nodiscard]] const std::map<std::string, Use>& models() const { return models_; }
  [[nodiscard]] const std::map<std::string, Use>& credentials() const { return credentials_; }
  [[nodiscard]] uint64_t egress() const { return egress_; }
  [[nodiscard]] double spent() const { return spent_; }
  [[nodiscard]] const std::vector<std::string>& unpriced() const { return unpriced_; }
  [[nodiscard]] const std::map<SessionLimit, uint64_t>& refused() const { return refused_; }
  // Exit-summary lines: tokens and spend per model, budgets hit.
  [[nodiscard]] std::vector<std::string> summary() const;

 private:
  Refusal refuse(SessionLimit l, std::string why, std::string_view host);

  BudgetLimits limits_;
  PriceTable prices_;
  std::function<PriceTable()> load_prices_;  // set: prices_ still to be loaded
  audit::Sink* sink_;
  uint64_t egress_ = 0;
  std::unordered_map<uint64_t, uint64_t> live_;  // flow id -> bytes counted live
  std::map<std::string, uint64_t, std::less<>> per_host_;
  std::set<std::string, std::less<>> model_hosts_;
  std::map<std::string, Use> models_;
  std::map<std::string, Use> credentials_;
  double spent_ = 0;
  std::vector<std::string> unpriced_;  // models seen without a price
  std::map<SessionLimit, uint64_t> refused_;
  // Connections admitted per second: {second, count}, at slot second % 61.
  std::array<std::pair<int64_t, uint64_t>, 61> connections_{};
};

}  // namespace agentbox::proxy
