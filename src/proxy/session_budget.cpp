// SessionBudget (session_budget.hpp): the `[budget]` limits, checked where a request is decided,
// and the ledger of model tokens and spend per model and per credential.
#include "agentbox/proxy/session_budget.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

namespace agentbox::proxy {

namespace {

// Model API hosts known before any usage is seen (the spend cap covers them from the start).
constexpr std::string_view kModelHosts[] = {
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
    "chatgpt.com",
};

std::string dollars(double d) {
  return fmt::format("${:.4f}", d);
}

std::string dollars(const std::optional<double>& d) {
  return d ? dollars(*d) : "unknown (no price)";
}

void add(SessionBudget::Use& u, const Tokens& t, const std::optional<double>& c) {
  u.tokens += t;
  ++u.responses;
  if (u.responses == 1) {
    u.dollars = c;
  } else if (u.dollars && c) {
    *u.dollars += *c;
  } else {
    u.dollars.reset();
  }
}

std::optional<double> parse_number(std::string_view s) {
  if (!s.empty() && s.front() == '$') {
    s.remove_prefix(1);
  }
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v) || v < 0) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

const Price* find_price(const PriceTable& table, std::string_view model) {
  if (auto it = table.find(std::string(model)); it != table.end()) {
    return &it->second;
  }
  const Price* best = nullptr;
  size_t best_len = 0;
  for (const auto& [name, price] : table) {
    if (name.size() > best_len && model.size() > name.size() && model.rfind(name, 0) == 0 &&
        model[name.size()] == '-') {
      best = &price;
      best_len = name.size();
    }
  }
  return best;
}

double cost(const Price& p, const Tokens& t) {
  const uint64_t cached = std::min(t.cached, t.input);
  return (static_cast<double>(t.input - cached) * p.input + static_cast<double>(cached) * p.cached +
          static_cast<double>(t.output) * p.output) /
         1e6;
}

std::string_view limit_key(SessionLimit l) {
  switch (l) {
    case SessionLimit::kNone:
      return "";
    case SessionLimit::kEgress:
      return "egress";
    case SessionLimit::kRequestsPerHost:
      return "requests_per_host";
    case SessionLimit::kSpend:
      return "spend";
    case SessionLimit::kConnectionsPerMinute:
      return "connections_per_minute";
  }
  return "";
}

SessionBudget::SessionBudget(BudgetLimits limits, PriceTable prices, audit::Sink* sink)
    : limits_(limits), prices_(std::move(prices)), sink_(sink) {
  for (auto h : kModelHosts) {
    model_hosts_.emplace(h);
  }
}

SessionBudget::Refusal SessionBudget::refuse(SessionLimit l, std::string why,
                                             std::string_view host) {
  ++refused_[l];
  if (sink_ != nullptr) {
    sink_->emit(audit::Event("budget")
                    .str("budget", limit_key(l))
                    .str("host", host)
                    .num("egress", static_cast<int64_t>(egress_))
                    .str("spent", dollars(spent_))
                    .str("reason", why));
  }
  return {l, std::move(why)};
}

SessionBudget::Refusal SessionBudget::admit_flow(std::string_view host) {
  if (limits_.egress && egress_ >= *limits_.egress) {
    return refuse(SessionLimit::kEgress,
                  fmt::format("session budget egress = {} bytes reached ({} bytes sent)",
                              *limits_.egress, egress_),
                  host);
  }
  return {};
}

SessionBudget::Refusal SessionBudget::admit(std::string_view host) {
  if (auto r = admit_flow(host); r.limit != SessionLimit::kNone) {
    return r;
  }
  if (limits_.requests_per_host) {
    auto it = per_host_.find(host);
    const uint64_t n = it == per_host_.end() ? 0 : it->second;
    if (n >= *limits_.requests_per_host) {
      return refuse(SessionLimit::kRequestsPerHost,
                    fmt::format("session budget requests_per_host = {} reached for {}",
                                *limits_.requests_per_host, host),
                    host);
    }
  }
  if (limits_.spend && model_host(host)) {
    if (!unpriced_.empty()) {
      return refuse(SessionLimit::kSpend,
                    fmt::format("session budget spend = {}: the spend of model {} is unknown "
                                "(no price; the user can set [pricing.\"{}\"])",
                                dollars(*limits_.spend), unpriced_.front(), unpriced_.front()),
                    host);
    }
    if (spent_ >= *limits_.spend) {
      return refuse(SessionLimit::kSpend,
                    fmt::format("session budget spend = {} reached ({} spent on model usage)",
                                dollars(*limits_.spend), dollars(spent_)),
                    host);
    }
  }
  return {};
}

void SessionBudget::count_request(std::string_view host) {
  auto it = per_host_.find(host);
  if (it == per_host_.end()) {
    per_host_.emplace(std::string(host), 1);
  } else {
    ++it->second;
  }
}

namespace {

int64_t second_of(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

// One-second buckets, 61 of them: a connection counts until its whole second is more than 60 s
// old, so any 60 s span holds at most the budget (a refused one is never counted: a client
// retrying in a loop does not keep the budget spent).
uint64_t SessionBudget::connections_last_minute(std::chrono::steady_clock::time_point now) const {
  const int64_t sec = second_of(now);
  uint64_t n = 0;
  for (const auto& [second, count] : connections_) {
    if (count > 0 && second > sec - static_cast<int64_t>(connections_.size())) {
      n += count;
    }
  }
  return n;
}

SessionBudget::Refusal SessionBudget::admit_connection(std::string_view host,
                                                       std::chrono::steady_clock::time_point now) {
  if (limits_.connections_per_minute &&
      connections_last_minute(now) >= *limits_.connections_per_minute) {
    return refuse(SessionLimit::kConnectionsPerMinute,
                  fmt::format("session budget connections_per_minute = {} reached ({} new "
                              "connections in the last minute)",
                              *limits_.connections_per_minute, connections_last_minute(now)),
                  host);
  }
  const int64_t sec = second_of(now);
  auto& slot = connections_[static_cast<size_t>(sec) % connections_.size()];
  slot = {sec, slot.first == sec ? slot.second + 1 : 1};
  return {};
}

void SessionBudget::count_egress(uint64_t flow, uint64_t bytes) {
  egress_ += bytes;
  live_[flow] += bytes;
}

void SessionBudget::flow_closed(uint64_t flow, uint64_t bytes_up) {
  uint64_t live = 0;
  if (auto it = live_.find(flow); it != live_.end()) {
    live = it->second;
    live_.erase(it);
  }
  if (bytes_up > live) {
    egress_ += bytes_up - live;  // TLS records, spliced flows
  }
}

bool SessionBudget::model_host(std::string_view host) const {
  return model_hosts_.find(host) != model_hosts_.end();
}

void SessionBudget::record(std::string_view host, const std::vector<std::string>& credentials,
                           const UsageMeter::Reading& r) {
  if (!r.seen) {
    return;
  }
  const std::string model = r.model.empty() ? "unknown" : r.model;
  if (load_prices_) {
    prices_ = std::exchange(load_prices_, nullptr)();
  }
  std::optional<double> c;
  if (const Price* p = find_price(prices_, model)) {
    c = cost(*p, r.tokens);
    spent_ += *c;
  } else if (std::find(unpriced_.begin(), unpriced_.end(), model) == unpriced_.end()) {
    unpriced_.push_back(model);
  }
  model_hosts_.emplace(host);
  add(models_[model], r.tokens, c);
  for (const auto& name : credentials) {
    add(credentials_[name], r.tokens, c);
  }
  if (sink_ != nullptr) {
    sink_->emit(audit::Event("model.usage")
                    .str("host", host)
                    .str("model", model)
                    .num("input_tokens", static_cast<int64_t>(r.tokens.input))
                    .num("output_tokens", static_cast<int64_t>(r.tokens.output))
                    .num("cached_tokens", static_cast<int64_t>(r.tokens.cached))
                    .str("cost", c ? fmt::format("{:.6f}", *c) : "unknown")
                    .strs("credentials", credentials));
  }
}

std::string SessionBudget::set(std::string_view key, std::string_view value) {
  const bool none = value == "none";
  const auto v = none ? std::optional<double>() : parse_number(value);
  if (!none && !v) {
    return fmt::format("budget {} = `{}`: not a non-negative number (or `none`)", key, value);
  }
  if (key == "spend") {
    limits_.spend = v;
    return {};
  }
  if (v && (*v != std::floor(*v) || *v > 1e18)) {
    return fmt::format("budget {} = `{}`: not a whole number", key, value);
  }
  const auto whole = v ? std::optional<uint64_t>(static_cast<uint64_t>(*v)) : std::nullopt;
  if (key == "egress") {
    limits_.egress = whole;
  } else if (key == "requests_per_host") {
    limits_.requests_per_host = whole;
  } else if (key == "connections_per_minute") {
    limits_.connections_per_minute = whole;
  } else {
    return fmt::format(
        "no session budget `{}` (there are: egress, requests_per_host, spend, "
        "connections_per_minute)",
        key);
  }
  return {};
}

std::vector<std::string> SessionBudget::summary() const {
  std::vector<std::string> out;
  for (const auto& [model, u] : models_) {
    out.push_back(fmt::format(
        "model {}: {} response{}, {} input tokens ({} cached), {} output tokens, spend {}", model,
        u.responses, u.responses == 1 ? "" : "s", u.tokens.input, u.tokens.cached, u.tokens.output,
        dollars(u.dollars)));
  }
  if (limits_.spend) {
    out.push_back(fmt::format("spend {} of the session budget {}{}", dollars(spent_),
                              dollars(*limits_.spend),
                              unpriced_.empty() ? "" : " (and models without a price)"));
  }
  for (const auto& [limit, n] : refused_) {
    const bool flows = limit == SessionLimit::kConnectionsPerMinute;
    out.push_back(fmt::format("{} {}{} refused over the session budget `{}`", n,
                              flows ? "connection" : "request", n == 1 ? "" : "s",
                              limit_key(limit)));
  }
  return out;
}

}  // namespace agentbox::proxy
