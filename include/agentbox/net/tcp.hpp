// The TCP translator: terminates every TCP connection of the box onto a host stream socket.
//
// Theory of operation (after passt; no TCP stack, no retransmit buffer of our own):
//   1. SYN from the box: the destination is a synthetic address (-> the name it stands for) or a
//      literal. The EgressPolicy decides by name/address and port; denied -> RST + "net.deny".
//   2. Allowed: FlowHandler::on_open returns a stream socket (connecting or connected). SYN-ACK
//      when it is connected (MSS from our MTU, window scale if the box offered it), RST if the
//      connect fails.
//   3. Box -> host: in-order payload is written to the socket (send, MSG_NOSIGNAL); what the
//      kernel accepted is acknowledged. Out-of-order segments are dropped with a duplicate ACK
//      (the box retransmits; we keep no reassembly queue). The advertised window is the socket's
//      free send space (SO_SNDBUF - SIOCOUTQ), so a slow peer pushes back on the box and never
//      grows our memory. When space frees up (EPOLLOUT) a window update goes out.
//   4. Host -> box: data stays in the socket's receive queue until the box acknowledges it. New
//      bytes are read with recv(MSG_PEEK) at offset snd_nxt - snd_una (SO_PEEK_OFF; on kernels
//      whose TCP lacks it, a scratch iovec skips the bytes already sent), cut into MSS-sized
//      segments within the box's window. An ACK discards the acknowledged bytes (plain recv). A
//      third duplicate ACK or the retransmission timer rewinds snd_nxt to snd_una and re-peeks.
//      A zero window arms a persist timer that probes with an ACK.
//   5. Close: box FIN -> shutdown(SHUT_WR) after its data; host EOF (peek returns 0) -> FIN to
//      the box after our data. Both FINs acknowledged -> the socket is closed at once (no fd
//      lingers, unlike slirp4netns's 10 s). RST either way: box RST -> close with SO_LINGER 0
//      (the host peer sees RST); socket error -> RST to the box.
//   6. Hand-back (FlowControl): a handler that answered with a socketpair may give the translator
//      its upstream socket while neither direction holds a byte in between; the old socket is
//      unwatched and closed, the new one watched under the same token, and the flow goes on
//      from the same sequence numbers and FlowStats, as if on_open had returned that socket.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "agentbox/audit/audit.hpp"
#include "agentbox/net/buffer_budget.hpp"
#include "agentbox/net/deadline_queue.hpp"
#include "agentbox/net/dns.hpp"
#include "agentbox/net/flow.hpp"
#include "agentbox/policy/egress.hpp"

namespace agentbox::net {

using Clock = std::chrono::steady_clock;

struct TcpConfig {
  Ip4 box_ip = ip4(10, 0, 2, 100);
  Mac gateway_mac = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
  uint32_t mtu = 65520;
  size_t max_flows = 4096;
  // Session-wide cap on the kernel socket memory of all flows (BufferBudget); 0: none.
  uint64_t buffer_budget = 0;
  uint32_t max_inflight = 4u << 20;  // bytes peeked ahead of the box's ACK
  std::chrono::milliseconds rto_initial{1000};
  std::chrono::milliseconds rto_max{30000};
  int max_retries = 8;
  bool use_peek_off = true;  // false forces the scratch-iovec path (tests of the fallback)
  bool tx_checksum = true;   // false: partial checksums, the tap sends NEEDS_CSUM (tap_offload)
};

struct TcpCounters {
  uint64_t flows_opened = 0;
  uint64_t flows_denied = 0;
  uint64_t flows_failed = 0;
  uint64_t flows_closed = 0;
  uint64_t resets_sent = 0;
  uint64_t retransmits = 0;
  uint64_t out_of_order = 0;
  uint64_t short_writes = 0;  // the socket took less than a segment: the rest is dropped
  uint64_t segments_in = 0;
  uint64_t segments_out = 0;
  uint64_t acks_coalesced = 0;  // ACKs not sent because a later one in the batch covered them
  uint64_t handed_back = 0;     // flows that moved onto the handler's upstream socket
};

class TcpTranslator final : public FlowControl {
 public:
  TcpTranslator(TcpConfig config, const policy::EgressPolicy& policy, const SyntheticPool& pool,
                FlowHandler& handler, Poller& poller, FrameSink& sink, audit::Sink& audit);
  ~TcpTranslator() override;
  TcpTranslator(const TcpTranslator&) = delete;
  TcpTranslator& operator=(const TcpTranslator&) = delete;

  // A TCP segment from the box (already parsed and checksum-verified).
  void on_segment(const Ipv4& ip, const Tcp& seg, const Mac& box_mac, Clock::time_point now);
  // Readiness of a flow's socket; `token` is what the translator gave Poller::watch.
  void on_socket(uint64_t token, uint32_t events, Clock::time_point now);
  // Frames read from the tap in one batch (Stack::drain): between begin_batch and end_batch the
  // ACK for in-order data is held back and sent once per flow at the end, carrying the latest
  // sequence and window (a burst of segments from the box then costs one ACK frame, not one per
  // segment). Duplicate, challenge and FIN ACKs still go at once; any segment sent to the flow
  // in the meantime carries the ACK and clears it. Outside a batch every ACK goes at once.
  void begin_batch() { batching_ = true; }
  void end_batch();
  // FlowControl: the handler's upstream socket replaces the one on_open returned.
  [[nodiscard]] base::Status hand_back(uint64_t id, base::UniqueFd& fd) override;
  // Retransmission, persist and window-check timers: on_timer handles the flows that are due;
  // next_deadline() is the earliest of all flows' timers (a DeadlineQueue, kept in step by every
  // entry point above for the flow it touched: O(log flows) per event, not a scan).
  void on_timer(Clock::time_point now);
  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const {
    return deadlines_.earliest();
  }

  // Names a person admitted once (dns.hpp): a SYN the policy denies is admitted when its name
  // holds a grant, which it uses up. Null (the default): no grants.
  void use_once_grants(OnceGrants* once) { once_ = once; }
  // A learning run (--learn): a SYN to a name the policy admitted, on a port no rule allows, asks
  // `learn(name, port)`, which widens the policy and returns true (the SYN is then decided
  // again) or refuses. Empty (the default): no learning.
  using LearnPort = std::function<bool(const std::string& name, uint16_t port)>;
  void use_port_learner(LearnPort learn) { learn_port_ = std::move(learn); }
  [[nodiscard]] size_t flow_count() const { return flows_.size(); }
  // Resets every flow `match` picks (RST to the box, the socket closed): a host denied while
  // the session runs loses its live connections too. Returns how many.
  size_t reset_matching(const std::function<bool(const FlowInfo&)>& match, std::string_view why);
  [[nodiscard]] const BufferBudget& budget() const { return budget_; }
  [[nodiscard]] const TcpCounters& counters() const { return counters_; }

  struct Flow;

 private:
  struct Key {
    uint16_t box_port;
    Ip4 dst;
    uint16_t dst_port;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()((uint64_t{k.box_port} << 48) ^ (uint64_t{k.dst_port} << 32) ^
                                   k.dst);
    }
  };

  struct SyncOnExit;
  // Puts flow `id`'s earliest timer into deadlines_ (if the flow still exists and it changed).
  void sync_deadline(uint64_t id);
  void on_syn(const Ipv4& ip, const Tcp& seg, const Mac& box_mac, Clock::time_point now);
  void on_flow_segment(Flow& f, const Tcp& seg, Clock::time_point now);
  bool process_ack(Flow& f, const Tcp& seg, Clock::time_point now);
  bool process_payload(Flow& f, const Tcp& seg);
  void send_data(Flow& f, Clock::time_point now);
  void send_segment(Flow& f, uint8_t flags, uint32_t seq, Bytes payload, bool syn_options);
  void send_ack(Flow& f) { send_segment(f, tcpflag::kAck, f_snd_nxt(f), {}, false); }
  void ack_data(Flow& f);  // the ACK for accepted in-order data: held back within a batch
  static uint32_t f_snd_nxt(const Flow& f);
  void send_rst_for(const Ipv4& ip, const Tcp& seg, const Mac& box_mac);
  [[nodiscard]] static audit::Event close_event(uint64_t id, const Flow& f, bool reset);
  [[nodiscard]] uint16_t window_field(Flow& f);
  [[nodiscard]] static uint32_t send_space(Flow& f);     // cached until the next write
  [[nodiscard]] static uint32_t measure_space(Flow& f);  // SO_MEMINFO; refreshes f.sndbuf
  static void note_window(Flow& f, uint32_t wnd);
  void rewind(Flow& f);
  void update_interest(Flow& f);
  void reset_flow(Flow& f, std::string_view why);
  void finish(uint64_t id, bool reset);
  void maybe_close(Flow& f);

  TcpConfig config_;
  const policy::EgressPolicy& policy_;
  const SyntheticPool& pool_;
  OnceGrants* once_ = nullptr;
  LearnPort learn_port_;
  FlowHandler& handler_;
  Poller& poller_;
  FrameSink& sink_;
  audit::Sink& audit_;
  std::unordered_map<uint64_t, std::unique_ptr<Flow>> flows_;
  std::unordered_map<Key, uint64_t, KeyHash> by_key_;
  uint64_t next_id_ = 1;
  std::vector<std::byte> frame_;
  std::unique_ptr<std::byte[]> data_buf_;  // peek buffer, kPeekChunk bytes
  std::span<std::byte> data_;
  std::vector<std::byte> scratch_;
  TcpCounters counters_;
  bool batching_ = false;
  std::vector<uint64_t> pending_acks_;  // flows with an ACK held back in this batch
  DeadlineQueue deadlines_;
  BufferBudget budget_;
  std::vector<base::UniqueFd> closing_;  // finished within a batch: closed at end_batch()
};

}  // namespace agentbox::net
