// The session's network: config -> EgressPolicy, the tap hook for init, the stack on the loop.
// (Theory of operation: include/agentbox/app/session_network.hpp.)
#include "agentbox/app/session_network.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

#include "agentbox/base/log.hpp"
#include "agentbox/net/connect.hpp"
#include "agentbox/net/host_addr_watch.hpp"
#include "agentbox/net/stack.hpp"
#include "agentbox/net/tap_setup.hpp"
#include "agentbox/policy/egress.hpp"

namespace agentbox::app {

using base::Error;
using base::Result;

namespace {

constexpr size_t kSummaryHosts = 8;  // hosts named per summary line; the rest are counted
constexpr size_t kMaxHosts = 4096;   // distinct names remembered per list

// The launcher's BoxNetwork hook over net::TapSetup (sandbox never sees net).
class TapHook final : public sandbox::BoxNetwork {
 public:
  explicit TapHook(net::TapSetup setup) : setup_(std::move(setup)) {}
  void use_services(const HostServices* services) { services_ = services; }
  [[nodiscard]] sandbox::NetworkSetupResult setup(const char* host_root) const noexcept override {
    sandbox::NetworkSetupResult out = tap(host_root);
    if (out.err == 0 && services_ != nullptr) {
      if (int err = services_->box_setup(out); err != 0) {
        out.stage = sandbox::SetupStage::kHostPorts;
        out.err = err;
      }
    }
    return out;
  }

 private:
  [[nodiscard]] sandbox::NetworkSetupResult tap(const char* host_root) const noexcept {
    net::TapResult r = setup_.apply(host_root);
    sandbox::SetupStage stage = sandbox::SetupStage::kNone;
    switch (r.step) {
      case net::TapStep::kNone:
        break;
      case net::TapStep::kOpenTun:
        stage = sandbox::SetupStage::kTunOpen;
        break;
      case net::TapStep::kCreate:
        stage = sandbox::SetupStage::kTapCreate;
        break;
      case net::TapStep::kConfigure:
        stage = sandbox::SetupStage::kTapConfigure;
        break;
    }
    sandbox::NetworkSetupResult out;
    out.stage = stage;
    out.err = r.err;
    out.fd = r.fd;
    return out;
  }

  net::TapSetup setup_;
  const HostServices* services_ = nullptr;
};

// net::Poller over the session's event::Loop: flow sockets join the loop's one epoll set.
// Events come back as (token, events) through `on_event`.
class LoopPoller final : public net::Poller {
 public:
  using OnEvent = std::function<void(uint64_t token, uint32_t events)>;
  LoopPoller(event::Loop& loop, OnEvent on_event) : loop_(loop), on_event_(std::move(on_event)) {}
  ~LoopPoller() override {
    for (auto& [fd, w] : watches_) {
      loop_.unwatch(w.id);
    }
  }
  LoopPoller(const LoopPoller&) = delete;
  LoopPoller& operator=(const LoopPoller&) = delete;

  void watch(int fd, uint32_t events, uint64_t token) override {
    auto it = watches_.find(fd);
    if (it != watches_.end() && it->second.token == token) {
      if (auto r = loop_.modify(it->second.id, events); !r) {
        base::log::debug("network: {}", r.error().message());
      }
      return;
    }
    if (it != watches_.end()) {
      loop_.unwatch(it->second.id);
      watches_.erase(it);
    }
    auto id = loop_.watch_fd(fd, events, [this, token](uint32_t ev) { on_event_(token, ev); });
    if (!id) {
      // The flow then sees no readiness and ends by its retransmission limit; nothing else
      // stalls. (EPOLL_CTL_ADD fails only for ENOMEM/ENOSPC: max_user_watches.)
      base::log::warn("network: cannot watch a connection's socket: {}", id.error().message());
      return;
    }
    watches_[fd] = W{*id, token};
  }
  void unwatch(int fd) override {
    auto it = watches_.find(fd);
    if (it != watches_.end()) {
      loop_.unwatch(it->second.id);
      watches_.erase(it);
    }
  }

 private:
  struct W {
    event::WatchId id;
    uint64_t token;
  };
  event::Loop& loop_;
  OnEvent on_event_;
  std::unordered_map<int, W> watches_;
};

// Per-host counts for the exit summary, largest first. Bounded: the box chooses the names (a
// flood of random denied names must not grow the supervisor), so past kMaxHosts distinct names
// the rest are only counted.
struct HostCounts {
  std::map<std::string, uint64_t, std::less<>> by_host;
  uint64_t total = 0;
  uint64_t unnamed = 0;  // counted after the map was full
  void add(std::string_view host) {
    ++total;
    host = host.substr(0, 80);
    if (auto it = by_host.find(host); it != by_host.end()) {
      ++it->second;
    } else if (by_host.size() < kMaxHosts) {
      by_host.emplace(host, 1);
    } else {
      ++unnamed;
    }
  }
  [[nodiscard]] std::string list() const {
    std::vector<std::pair<std::string, uint64_t>> v(by_host.begin(), by_host.end());
    std::stable_sort(v.begin(), v.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    std::string out;
    for (size_t i = 0; i < v.size() && i < kSummaryHosts; ++i) {
      out += fmt::format("{}{} {}", i == 0 ? "" : ", ", v[i].first, v[i].second);
    }
    if (v.size() > kSummaryHosts || unnamed > 0) {
      uint64_t more = v.size() > kSummaryHosts ? v.size() - kSummaryHosts : 0;
      out += unnamed > 0 ? fmt::format(", and {}+ more hosts", more + 1)
                         : fmt::format(", and {} more hosts", more);
    }
    return out;
  }
};

uint64_t number(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// Forwards every event to the session's log; keeps the counts for the summary; prints closes
// and DNS answers on the debug stream (-v). Field values are the log's escaped text, so a
// hostile name from the box cannot put control bytes on the user's terminal.
class NetAudit final : public audit::Sink {
 public:
  explicit NetAudit(audit::Sink& next) : next_(next) {}
  void emit(const audit::Event& ev) noexcept override {
    next_.emit(ev);
    const std::string& t = ev.type();
    auto f = [&](std::string_view key) { return ev.field(key).value_or(""); };
    if (t == "net.connect") {
      allowed.add(f("name"));
    } else if (t == "net.deny") {
      denied.add(f("name"));
    } else if (t == "net.fail") {
      failed.add(f("name"));
      base::log::debug("tcp #{} {}:{} failed: {}", f("id"), f("name"), f("port"), f("error"));
    } else if (t == "net.close") {
      bytes_up += number(f("bytes_up"));
      bytes_down += number(f("bytes_down"));
      base::log::debug("tcp #{} {}:{} closed{}: {} bytes up, {} down", f("id"), f("name"),
                       f("port"), f("reset") == "true" ? " by reset" : "", f("bytes_up"),
                       f("bytes_down"));
    } else if (t == "dns.query") {
      std::string_view result = f("result");
      // glibc asks A and AAAA together: count a denied lookup once, by its A query.
      if (result == "denied" && f("qtype") != "AAAA") {
        denied.add(f("name"));
      }
      std::string_view answer = f("answer");
      base::log::debug("dns {} {}: {}{}{}", f("name"), f("qtype"), result,
                       answer.empty() ? "" : " ", answer);
    }
  }
  HostCounts allowed;
  HostCounts denied;
  HostCounts failed;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;

 private:
  audit::Sink& next_;
};

// The handler when no factory was set (run sets the L7 proxy's): connect first (ConnectHandler:
// --connect-to, supervisor-side resolution, rebinding guard). It gets what a handler may need:
// the policy, the overrides, the loop (to relay on) and the audit sink. It lives from start() to
// finish(), and everything it references outlives it.
Result<std::unique_ptr<net::FlowHandler>> choose_flow_handler(
    const policy::EgressPolicy& policy, const std::vector<net::ConnectTo>& overrides,
    event::Loop& loop, audit::Sink& audit) {
  (void)loop;
  (void)audit;
  return std::unique_ptr<net::FlowHandler>(
      std::make_unique<net::ConnectHandler>(policy, overrides));
}

std::string origin_of(const config::Origin& o) {
  return o.describe();
}

// The stack and everything on the loop; exists between start() and finish().
struct Running {
  Running(event::Loop& l, base::UniqueFd tap_fd, bool vnet_hdr)
      : loop(l), tap(std::move(tap_fd), vnet_hdr) {}
  ~Running() {
    stack.reset();  // unwatches every flow socket through the poller
    handler.reset();
    for (event::WatchId id : {tap_watch, timer_watch}) {
      loop.unwatch(id);
    }
  }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;

  // Sets the one timerfd to the stack's earliest TCP deadline. Only an earlier deadline re-arms
  // it: one armed too early just fires, finds nothing due and re-arms from there. Following every
  // move cost one timerfd_settime per event (each ACK pushes a flow's retransmission deadline
  // later; a short connection moved it 3-4 times), where this costs one per RTO at most.
  void rearm() noexcept {
    auto next = stack->tcp().next_deadline();
    if (next == armed || !next || (armed && *armed <= *next)) {
      return;
    }
    armed = next;
    itimerspec its{};
    // steady_clock is CLOCK_MONOTONIC (libstdc++), the timerfd's clock.
    auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(next->time_since_epoch()).count();
    ns = std::max<int64_t>(ns, 1);
    its.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    its.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
    (void)::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &its, nullptr);
  }

  event::Loop& loop;
  net::FdTap tap;
  base::UniqueFd timer;
  std::unique_ptr<LoopPoller> poller;
  std::unique_ptr<net::FlowHandler> handler;
  std::unique_ptr<net::Stack> stack;
  std::unique_ptr<net::HostAddrWatch> host_addrs;
  event::WatchId tap_watch = 0;
  event::WatchId timer_watch = 0;
  std::optional<net::Clock::time_point> armed;
  bool tap_failed = false;
};

}  // namespace

struct SessionNetwork::Impl {
  Impl(audit::Sink& sink, TapHook h) : audit(sink), hook(std::move(h)) {}
  policy::EgressPolicy policy;
  std::vector<config::Origin> rule_origins;            // parallel to policy.rules()
  std::map<std::string, config::Origin> deny_origins;  // by the rule's text
  std::vector<net::ConnectTo> overrides;
  net::StackConfig stack_config;
  NetAudit audit;
  TapHook hook;
  SessionNetwork::HandlerFactory factory;
  std::unique_ptr<HostServices> services;  // null without --host-port / --publish
  policy::Approver* approver = nullptr;
  bool learn = false;  // --learn: ports of admitted names are learned too (learn_port)
  std::unique_ptr<Running> running;
};

namespace {

// --learn: a connection to a name the policy admits, on a port no rule allows, is allowed for the
// session and recorded (`learn.allow`, kind "port"), unless `agentbox deny` refused it. Literal
// addresses are never learned (a CIDR rule is a decision about a network, not a name).
bool learn_port(SessionNetwork& net, const policy::EgressPolicy& p, audit::Sink& audit,
                const std::string& name, uint16_t port) {
  if (!p.decide_name_any_port(name).allowed) {
    return false;
  }
  for (const auto& d : p.denies()) {
    policy::EgressPolicy only;
    only.add(d);
    if (only.decide(name, port).allowed) {
      return false;
    }
  }
  const std::string text = fmt::format("{}:{}", name, port);
  auto rule = policy::EgressRule::parse(text);
  if (!rule) {
    return false;
  }
  net.allow(std::move(*rule), {.source = "agentbox run --learn"});
  audit.emit(audit::Event("learn.allow")
                 .str("id", "")
                 .str("kind", "port")
                 .str("subject", name)
                 .str("detail", text)
                 .str("answer", "session"));
  return true;
}

}  // namespace

void SessionNetwork::allow(policy::EgressRule rule, config::Origin origin) {
  // `allow X` lifts `deny X` (stored as X:* when it named no port).
  for (const std::string& t : {rule.text, rule.text + ":*"}) {
    impl_->policy.remove_deny(t);
    impl_->deny_origins.erase(t);
  }
  const auto& rules = impl_->policy.rules();
  if (std::none_of(rules.begin(), rules.end(),
                   [&](const policy::EgressRule& r) { return r.text == rule.text; })) {
    impl_->policy.add(std::move(rule));
    impl_->rule_origins.push_back(std::move(origin));
  }
}

size_t SessionNetwork::deny(policy::EgressRule rule, config::Origin origin) {
  impl_->deny_origins[rule.text] = std::move(origin);
  std::string why = fmt::format("denied at run time by `{}`", rule.text);
  // The live flows it matches: the same rule as the only allow rule of a policy of its own.
  policy::EgressPolicy only;
  only.add(rule);
  impl_->policy.add_deny(std::move(rule));
  if (!impl_->running || !impl_->running->stack) {
    return 0;
  }
  return impl_->running->stack->tcp().reset_matching(
      [&](const net::FlowInfo& fi) { return only.decide(fi.name, fi.orig_port).allowed; }, why);
}

std::vector<SessionNetwork::RuleLine> SessionNetwork::rules() const {
  std::vector<RuleLine> out;
  const auto& denies = impl_->policy.denies();
  for (size_t i = 0; i < denies.size(); ++i) {
    auto o = impl_->deny_origins.find(denies[i].text);
    out.push_back(
        {"deny", denies[i].text, o != impl_->deny_origins.end() ? origin_of(o->second) : ""});
  }
  const auto& rules = impl_->policy.rules();
  for (size_t i = 0; i < rules.size(); ++i) {
    out.push_back({"allow", rules[i].text,
                   i < impl_->rule_origins.size() ? origin_of(impl_->rule_origins[i]) : ""});
  }
  return out;
}

SessionNetwork::Counts SessionNetwork::counts() const {
  const NetAudit& a = impl_->audit;
  return {.allowed = a.allowed.total,
          .denied = a.denied.total,
          .failed = a.failed.total,
          .open = impl_->running && impl_->running->stack
                      ? impl_->running->stack->tcp().flow_count()
                      : 0,
          .bytes_up = a.bytes_up,
          .bytes_down = a.bytes_down};
}

void SessionNetwork::use_approver(policy::Approver* approver) {
  impl_->approver = approver;
  if (impl_->running && impl_->running->stack && impl_->policy.asks_anything()) {
    impl_->running->stack->use_approver(approver);
  }
}

bool SessionNetwork::asks() const {
  return impl_->policy.asks_anything();
}

void SessionNetwork::use_handler_factory(HandlerFactory factory) {
  impl_->factory = std::move(factory);
}

SessionNetwork::SessionNetwork(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SessionNetwork::~SessionNetwork() = default;

Result<std::unique_ptr<SessionNetwork>> SessionNetwork::create(const config::Policy& policy,
                                                               unsigned gid, audit::Sink& sink) {
  net::StackConfig sc;
  net::TapSpec ts{.name = "eth0",
                  .address = sc.box_ip,
                  .prefix = 24,
                  .gateway = sc.gateway_ip,
                  .mtu = sc.mtu,
                  .ping_gid = gid,
                  // Checksum offload: the box's kernel and the stack each skip a pass over every
                  // byte (stack CPU per 4 GiB 25-45% lower in net_bench; docs/BENCHMARKS.md).
                  .offload = true};
  sc.tap_offload = ts.offload;
  sc.tcp.max_flows = policy.max_flows.value;
  sc.tcp.buffer_budget = policy.buffer_budget.value;
  if (sc.tcp.buffer_budget < sc.tcp.max_flows * net::BufferBudget::kFloor) {
    return Error::msg(
               fmt::format(
                   "{}: network.buffer_budget {} KiB cannot give each of max_flows = {} ({}) the "
                   "{} KiB a flow needs at least",
                   origin_of(policy.buffer_budget.origin), sc.tcp.buffer_budget >> 10,
                   sc.tcp.max_flows, origin_of(policy.max_flows.origin),
                   net::BufferBudget::kFloor >> 10))
        .hint(fmt::format("raise buffer_budget to at least {} MiB or lower max_flows",
                          (sc.tcp.max_flows * net::BufferBudget::kFloor + (1 << 20) - 1) >> 20));
  }
  AGENTBOX_ASSIGN_OR_RETURN(auto tap, net::TapSetup::prepare(ts));
  auto impl = std::make_unique<Impl>(sink, TapHook(std::move(tap)));
  impl->stack_config = sc;
  // raw_tcp entries are allow rules too; the L7 proxy also splices them without inspection.
  for (const auto* list : {&policy.net_allow, &policy.raw_tcp}) {
    for (const auto& r : *list) {
      auto rule = policy::EgressRule::parse(r.value);
      if (!rule) {
        return Error::msg(
            fmt::format("{}: `{}`: {}", origin_of(r.origin), r.value, rule.error().message()));
      }
      impl->policy.add(std::move(*rule));
      impl->rule_origins.push_back(r.origin);
    }
  }
  for (const auto& a : policy.ask) {
    auto rule = policy::EgressRule::parse(a.value);
    if (!rule) {
      return Error::msg(
          fmt::format("{}: `{}`: {}", origin_of(a.origin), a.value, rule.error().message()));
    }
    impl->policy.add_ask(std::move(*rule));
  }
  impl->policy.set_ask_unlisted(policy.unlisted_ask.value);
  impl->learn = policy.learn.value;
  for (const auto& c : policy.connect_to) {
    auto ct = policy::parse_connect_to(c.value);
    if (!ct) {
      return Error::msg(
          fmt::format("{}: `{}`: {}", origin_of(c.origin), c.value, ct.error().message()));
    }
    if (!impl->policy.decide(ct->host, ct->port).allowed) {
      base::log::warn("{} `{}`: no rule allows {}:{}, so the box cannot use this mapping",
                      c.origin.source.rfind("--", 0) == 0 ? c.origin.source : origin_of(c.origin),
                      c.value, ct->host, ct->port);
    }
    impl->overrides.push_back(std::move(*ct));
  }
  for (size_t i = 0; i < impl->policy.rules().size(); ++i) {
    base::log::debug("network: allow `{}` ({})", impl->policy.rules()[i].text,
                     origin_of(impl->rule_origins[i]));
  }
  AGENTBOX_ASSIGN_OR_RETURN(impl->services, HostServices::create(policy));
  impl->hook.use_services(impl->services.get());
  return std::unique_ptr<SessionNetwork>(new SessionNetwork(std::move(impl)));
}

const sandbox::BoxNetwork* SessionNetwork::box_hook() const {
  return &impl_->hook;
}

bool SessionNetwork::needs_socket_factory() const {
  return impl_->services && impl_->services->needs_socket_factory();
}

base::Status SessionNetwork::start(base::UniqueFd tap, event::Loop& loop,
                                   std::vector<base::UniqueFd> extra,
                                   base::UniqueFd socket_factory) {
  if (!tap) {
    return Error::msg("the box sent no tap device");
  }
  int flags = ::fcntl(tap.get(), F_GETFL);
  if (flags < 0 || ::fcntl(tap.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return Error::sys(errno, "fcntl O_NONBLOCK", "tap");
  }
  // One fd per open flow: lift the soft limit (the box does not inherit it: it already runs).
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 65536);
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  auto run = std::make_unique<Running>(loop, std::move(tap), impl_->stack_config.tap_offload);
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (tfd < 0) {
    return Error::sys(errno, "timerfd_create");
  }
  run->timer = base::UniqueFd(tfd);
  Running* r = run.get();
  // Before any flow: the host's own addresses are refused from the first connection on.
  AGENTBOX_ASSIGN_OR_RETURN(run->host_addrs, net::HostAddrWatch::create(loop));
  impl_->policy.use_host_addrs(run->host_addrs->addrs());
  run->poller = std::make_unique<LoopPoller>(loop, [r](uint64_t token, uint32_t events) {
    r->stack->tcp().on_socket(token, events, net::Clock::now());
    r->rearm();
  });
  if (impl_->factory) {
    AGENTBOX_ASSIGN_OR_RETURN(run->handler, impl_->factory(loop, impl_->policy, impl_->overrides));
  } else {
    AGENTBOX_ASSIGN_OR_RETURN(
        run->handler, choose_flow_handler(impl_->policy, impl_->overrides, loop, impl_->audit));
  }
  run->stack = std::make_unique<net::Stack>(impl_->stack_config, impl_->policy, *run->handler,
                                            *run->poller, run->tap, impl_->audit);
  if (impl_->approver != nullptr && impl_->policy.asks_anything()) {
    run->stack->use_approver(impl_->approver);
  }
  if (impl_->learn) {
    run->stack->tcp().use_port_learner([this](const std::string& name, uint16_t port) {
      return learn_port(*this, impl_->policy, impl_->audit, name, port);
    });
  }
  auto tw = loop.watch_fd(run->tap.fd(), EPOLLIN, [r](uint32_t events) {
    if (r->tap_failed) {
      return;
    }
    auto n = r->stack->drain(r->tap, net::Clock::now());
    if (!n || (*n == 0 && (events & (EPOLLERR | EPOLLHUP)) != 0)) {
      // The box's namespace is going away (the device is gone): stop reading it, rather than
      // spin on a level-triggered error.
      r->tap_failed = true;
      base::log::debug("network: the tap is gone{}", n ? "" : ": " + n.error().message());
      r->loop.unwatch(r->tap_watch);
      r->tap_watch = 0;
    }
    r->rearm();
  });
  if (!tw) {
    return std::move(tw).error().context("watching the tap");
  }
  run->tap_watch = *tw;
  auto timer = loop.watch_fd(run->timer.get(), EPOLLIN, [r](uint32_t) {
    uint64_t n = 0;
    [[maybe_unused]] ssize_t got = ::read(r->timer.get(), &n, sizeof n);
    r->armed.reset();
    r->stack->tcp().on_timer(net::Clock::now());
    r->rearm();
  });
  if (!timer) {
    return std::move(timer).error().context("watching the TCP timer");
  }
  run->timer_watch = *timer;
  impl_->running = std::move(run);
  if (impl_->services) {
    if (auto started =
            impl_->services->start(loop, std::move(extra), std::move(socket_factory), impl_->audit);
        !started) {
      return std::move(started).error().context("starting the host services");
    }
  }
  return base::ok();
}

std::vector<std::string> SessionNetwork::finish() {
  uint64_t dropped = 0;
  std::vector<std::string> lines;
  if (impl_->services) {
    lines = impl_->services->finish();
  }
  if (impl_->running) {
    dropped = impl_->running->stack->counters().dropped;
    impl_->running.reset();
  }
  const NetAudit& a = impl_->audit;
  if (a.allowed.total > 0) {
    lines.push_back(fmt::format("network: {} connection{} allowed: {}", a.allowed.total,
                                a.allowed.total == 1 ? "" : "s", a.allowed.list()));
  }
  if (a.failed.total > 0) {
    lines.push_back(fmt::format("network: {} allowed connection{} failed upstream: {}",
                                a.failed.total, a.failed.total == 1 ? "" : "s", a.failed.list()));
  }
  if (a.denied.total > 0) {
    lines.push_back(fmt::format("network: {} denied (DNS queries and connections): {}",
                                a.denied.total, a.denied.list()));
  }
  if (dropped > 0) {
    lines.push_back(fmt::format(
        "network: {} packet{} dropped (UDP other than DNS, ICMP beyond the gateway, IPv6)", dropped,
        dropped == 1 ? "" : "s"));
  }
  return lines;
}

}  // namespace agentbox::app
