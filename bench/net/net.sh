#!/usr/bin/env bash
# The box network (src/net: Stack + FdTap + TcpTranslator + ConnectHandler, in-process in
# net_bench) side by side with host loopback, slirp4netns --mtu=65520 and pasta, on this machine.
# Each peer serves its own network namespace; the clients run inside it and reach one server on
# host loopback (agentbox: a synthetic address + --connect-to; slirp4netns: 10.0.2.2; pasta: the
# gateway address, which pasta maps to the host). Rounds are interleaved (rotating which peer goes
# first) so machine load hits all alike; medians and ratios to loopback are printed at the end.
#
#   sudo bench/net/net.sh [NET_BENCH] [ROUNDS]     (defaults: build/bench/net/net_bench, 5)
#   NET_BENCH_ONLY="tput conn rss attach" selects parts, NET_BENCH_PEERS="loopback agentbox" the
#   peers compared; NET_BENCH_SECONDS=3 per iperf3 run; NET_BENCH_CONNS=2000 connections per
#   connection round.
#   Peer "agentbox-run" (not in the default list): the product itself, the clients run by
#   `agentbox run --raw-tcp ...` from the repository root (the box sees only its workspace), so
#   every flow also goes through the L7 proxy's handler and the session loop.
#   NET_BENCH_AGENTBOX=PATH names the binary (default: build/cli/agentbox next to NET_BENCH).
#   Peer "agentbox-base": the same as agentbox-run with another binary, NET_BENCH_AGENTBOX_BASE
#   (a before/after comparison inside one run, interleaved like every other peer).
#   Peer "relay" (not in the default list): the floor for any user-space relay, `net_bench relay`
#   on host loopback (one thread, epoll, accept, connect, read/write, close; no tap, no second
#   TCP stack, no policy): what a sequential connection costs with one more process and one
#   more hop on its path and nothing else. Connection rounds also print the CPU per connection
#   of each process on the path (client, middle, server; "conncpu" lines and a table).
#
# Needs root (network namespaces, tap), iperf3, slirp4netns, pasta: installed below if missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
nb="$(realpath "${1:-$here/../../build/bench/net/net_bench}")"
rounds="${2:-5}"
secs="${NET_BENCH_SECONDS:-3}"
only="${NET_BENCH_ONLY:-tput conn rss attach}"
[[ -x "$nb" ]] || { echo "net.sh: no net_bench at $nb (ninja -C build net_bench)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "net.sh: needs root (network namespaces, tap devices)" >&2; exit 2; }

# Dependency step: the peers and the load generator (Debian packages; not needed by the tests).
missing=()
for p in iperf3:iperf3 slirp4netns:slirp4netns pasta:passt; do
  command -v "${p%%:*}" >/dev/null || missing+=("${p#*:}")
done
if ((${#missing[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

tmp="$(mktemp -d /tmp/agentbox-netbench-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $tmp/pasta.pid ]] && kill "$(cat "$tmp/pasta.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  for ns in nb-ab nb-slirp nb-pasta; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

iperf_port=5201
# One connection server per peer: TIME_WAIT entries of one peer's 4-tuples must not slow another.
declare -A cport=([loopback]=5202 [agentbox]=5203 [pasta]=5204 [slirp4netns]=5205
                   [agentbox-run]=5206 [relay]=5207 [agentbox-base]=5209)
relay_port=5208  # the relay listens here and connects to ${cport[relay]}
ab_bin="$(realpath -m "${NET_BENCH_AGENTBOX:-$(dirname "$nb")/../../cli/agentbox}")"
ab_base_bin="$(realpath -m "${NET_BENCH_AGENTBOX_BASE:-$ab_bin}")"
repo_root="$(cd "$here/../.." && pwd)"
iperf3 -s -B 127.0.0.1 -p $iperf_port >/dev/null 2>&1 &
pids+=($!)
declare -A server_pid
for p in "${!cport[@]}"; do
  "$nb" serve --port "${cport[$p]}" &
  pids+=($!)
  server_pid[$p]=$!
done
"$nb" relay --port $relay_port --to "${cport[relay]}" 2>"$tmp/relay.err" &
relay_pid=$!
pids+=($relay_pid)

for ns in nb-ab nb-slirp nb-pasta; do
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
done
"$nb" stack --netns /run/netns/nb-ab --allow 'bench.test:*' \
  --connect-to bench.test:$iperf_port:127.0.0.1:$iperf_port \
  --connect-to bench.test:${cport[agentbox]}:127.0.0.1:${cport[agentbox]} \
  --name bench.test --ready "$tmp/ab.ready" 2>"$tmp/stack.err" &
ab_pid=$!
pids+=($ab_pid)
slirp4netns --configure --mtu=65520 --netns-type=path /run/netns/nb-slirp tap0 \
  >"$tmp/slirp.log" 2>&1 &
slirp_pid=$!
pids+=($slirp_pid)
pasta --config-net -q --runas 0 --pid "$tmp/pasta.pid" --netns /run/netns/nb-pasta >"$tmp/pasta.log" 2>&1

for _ in $(seq 100); do
  [[ -s $tmp/ab.ready ]] && ip netns exec nb-slirp ip -4 -br addr show tap0 2>/dev/null |
    grep -q 10.0.2.100 && break
  sleep 0.05
done
ab_addr="$(cat "$tmp/ab.ready")"
pasta_pid="$(cat "$tmp/pasta.pid")"
pasta_gw="$(ip netns exec nb-pasta ip -4 route show default | awk '{print $3; exit}')"
declare -A addr=([loopback]=127.0.0.1 [agentbox]=$ab_addr [slirp4netns]=10.0.2.2
                 [pasta]=$pasta_gw [agentbox-run]=bench.test [relay]=127.0.0.1
                 [agentbox-base]=bench.test)
declare -A netns=([loopback]="" [agentbox]=nb-ab [slirp4netns]=nb-slirp [pasta]=nb-pasta
                  [agentbox-run]="" [relay]="" [agentbox-base]="")
# The port each peer's clients connect to (the relay's own, in front of its server).
declare -A dport
for p in "${!cport[@]}"; do dport[$p]=${cport[$p]}; done
dport[relay]=$relay_port
# The process between client and server, whose CPU is counted per connection (agentbox-run:
# the whole `agentbox run`, measured as its children's CPU minus the client's own).
declare -A middle_pid=([agentbox]=$ab_pid [slirp4netns]=$slirp_pid [pasta]=$pasta_pid
                       [relay]=$relay_pid)
read -r -a peers <<<"${NET_BENCH_PEERS:-loopback agentbox pasta slirp4netns}"
inside() {  # inside PEER CMD...: run CMD where PEER's client lives
  if [[ $1 == agentbox-run || $1 == agentbox-base ]]; then
    local p=${cport[$1]} bin=$ab_bin
    [[ $1 == agentbox-base ]] && bin=$ab_base_bin
    shift
    (cd "$repo_root" && "$bin" run -q --raw-tcp "bench.test:$iperf_port" --raw-tcp "bench.test:$p" \
      --connect-to "bench.test:$iperf_port:127.0.0.1:$iperf_port" \
      --connect-to "bench.test:$p:127.0.0.1:$p" -- "$@")
    return
  fi
  local ns=${netns[$1]}
  shift
  if [[ -n $ns ]]; then ip netns exec "$ns" "$@"; else "$@"; fi
}
if [[ " ${peers[*]} " == *" agentbox-run "* && ! -x $ab_bin ]]; then
  echo "net.sh: no agentbox binary at $ab_bin (ninja -C build agentbox)" >&2
  exit 2
fi
echo "net.sh: agentbox=$ab_addr slirp4netns=10.0.2.2 pasta=$pasta_gw; $(nproc) cores;" \
  "kernel $(uname -r); rounds=$rounds" >&2
results="$tmp/results"
: >"$results"

# Throughput, one TCP stream, iperf3 (-R: host->box, "down").
if [[ $only == *tput* ]]; then
  for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < ${#peers[@]}; k++)); do
      p=${peers[$(((r + k) % ${#peers[@]}))]}
      for dir in up down; do
        flag=""
        [[ $dir == down ]] && flag=-R
        v=$(inside "$p" timeout $((secs + 20)) iperf3 -c "${addr[$p]}" -p $iperf_port -t "$secs" \
              -f m $flag 2>/dev/null | awk '/receiver/ {print $7}')
        echo "tput_$dir $p ${v:-0}" | tee -a "$results" >&2
      done
    done
  done
fi

# New-connection rate: 10,000 in a row first, then interleaved rounds of 2,000 (connect, 1 byte
# each way, the server closes first). Each round also counts the CPU per connection of client,
# middle (stack, relay, supervisor, slirp4netns, pasta) and server.
# CPU time a process has run, in ns (schedstat: the thread-group leader; every process counted
# here is single-threaded except agentbox-run's, which is measured through `times` instead).
cpu_ns() { if [[ -n ${1:-} && -r /proc/$1/schedstat ]]; then awk '{print $1}' "/proc/$1/schedstat"; else echo 0; fi; }
# Children's user+sys CPU in ns from a file holding the output of the `times` builtin (run in
# the measuring shell itself: in a $(...) subshell it would see that subshell's children only).
children_ns() {
  sed -n 2p "$1" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]);
    t += a[1] * 60 + a[2] } printf "%.0f\n", t * 1e9 }'
}
conn_round() {  # conn_round PEER COUNT: prints the client's output, then "cpu C M S" in us/conn
  local p=$1 count=$2 s0 s1 m0 m1 c0 c1 out
  s0=$(cpu_ns "${server_pid[$p]}")
  m0=$(cpu_ns "${middle_pid[$p]:-}")
  times >"$tmp/times0"
  out=$(inside "$p" "$nb" connrate --addr "${addr[$p]}" --port "${dport[$p]}" --count "$count" \
          2>&1 || true)
  times >"$tmp/times1"
  c0=$(children_ns "$tmp/times0")
  c1=$(children_ns "$tmp/times1")
  s1=$(cpu_ns "${server_pid[$p]}")
  m1=$(cpu_ns "${middle_pid[$p]:-}")
  local ok client
  ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$out")
  client=$(sed -n 's/.*cpu_us=\([0-9.]*\).*/\1/p' <<<"$out")
  tr '\n' ' ' <<<"$out"
  echo
  awk -v ok="${ok:-0}" -v cl="${client:-0}" -v s=$((s1 - s0)) -v m=$((m1 - m0)) \
      -v ch=$((c1 - c0)) -v run="$([[ $p == agentbox-run || $p == agentbox-base ]] && echo 1 || echo 0)" 'BEGIN {
    if (ok == 0) { print "cpu 0 0 0"; exit }
    mid = run ? ch / 1000 / ok - cl : m / 1000 / ok
    printf "cpu %.1f %.1f %.1f\n", cl, mid, s / 1000 / ok }'
}
if [[ $only == *conn* ]]; then
  for p in "${peers[@]}"; do
    out=$(conn_round "$p" 10000)
    echo "conn10k $p $(tr '\n' ' ' <<<"$out")" | tee -a "$results" >&2
  done
  for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < ${#peers[@]}; k++)); do
      p=${peers[$(((r + k) % ${#peers[@]}))]}
      out=$(conn_round "$p" "${NET_BENCH_CONNS:-2000}")
      v=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<<"$out")
      echo "connrate $p ${v:-0}" | tee -a "$results" >&2
      echo "conncpu $p $(sed -n 's/^cpu //p' <<<"$out")" | tee -a "$results" >&2
    done
  done
fi

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# with_1000_flows PEER PID_FN: `net_bench hold` opens 1,000 flows where PEER's client lives and
# keeps them; once they are open, sets `busy` (VmRSS KiB of the pid PID_FN prints) and `held`.
with_1000_flows() {
  local peer=$1 pid_fn=$2 hold_pid pid
  mkfifo "$tmp/hold.$peer"
  inside "$peer" "$nb" hold --addr "${addr[$peer]}" --port "${cport[$peer]}" --count 1000 \
    <"$tmp/hold.$peer" >"$tmp/hold.$peer.out" 2>&1 &
  hold_pid=$!
  exec 7>"$tmp/hold.$peer"
  for _ in $(seq 400); do
    grep -q held "$tmp/hold.$peer.out" 2>/dev/null && break
    grep -q net_bench "$tmp/hold.$peer.out" 2>/dev/null && break
    sleep 0.05
  done
  held=$(tr '\n' ' ' <"$tmp/hold.$peer.out")
  pid=$($pid_fn)
  busy=$([[ -n $pid ]] && rss_kib "$pid" || echo 0)
  exec 7>&-
  wait "$hold_pid" || true
}
# Supervisor RSS: idle, and with 1,000 open flows (client holds them, server keeps its end).
if [[ $only == *rss* ]]; then
  sleep 12  # let slirp4netns drop the sockets it keeps for 10 s after close
  declare -A daemon=([agentbox]=$ab_pid [slirp4netns]=$slirp_pid [pasta]=$pasta_pid)
  daemon_pid() { echo "${daemon[$p]}"; }
  for p in agentbox slirp4netns pasta; do
    idle=$(rss_kib "${daemon[$p]}")
    with_1000_flows "$p" daemon_pid
    echo "rss $p idle_kib=$idle flows1000_kib=$busy ($held)" | tee -a "$results" >&2
  done
  # The product: the whole `agentbox run` supervisor (stack, proxy, session loop, audit), idle
  # and while the program in the box holds 1,000 flows through it.
  if [[ " ${peers[*]} " == *" agentbox-run "* ]]; then
    sup_of() {  # the supervisor: the oldest `agentbox run` process (the box's init is its child)
      pgrep -o -f -- "$ab_bin run -q --raw-tcp" || true
    }
    inside agentbox-run sleep 3 &
    sleep_pid=$!
    sleep 1.5
    sup=$(sup_of)
    idle=$([[ -n $sup ]] && rss_kib "$sup" || echo 0)
    wait $sleep_pid || true
    with_1000_flows agentbox-run sup_of
    echo "rss agentbox-run idle_kib=$idle flows1000_kib=$busy ($held)" | tee -a "$results" >&2
  fi
fi

# Network attach: tap created + configured in a fresh netns (agentbox) vs spawn -> ready.
if [[ $only == *attach* ]]; then
  "$nb" attach --rounds $((rounds * 10)) --peers | sed 's/^/attach /' >>"$results"
fi

kill -INT $ab_pid $relay_pid 2>/dev/null || true
wait $ab_pid $relay_pid 2>/dev/null || true
cat "$tmp/stack.err" "$tmp/relay.err" >&2

python3 - "$results" <<'EOF'
import statistics, sys, collections
vals = collections.defaultdict(list)
lines = open(sys.argv[1]).read().splitlines()
for line in lines:
    kind, peer, *rest = line.split()
    if kind in ("conn10k", "rss"):
        continue
    if kind == "conncpu":
        vals[(kind, peer)].append(tuple(float(x) for x in rest[:3]))
        continue
    vals[(kind, peer)].append(float(rest[0]))
order = ("loopback", "relay", "agentbox", "agentbox-run", "agentbox-base", "pasta",
         "slirp4netns")
def table(kind, unit):
    # Ratios: of the medians, and the median of per-round ratios (same round = same load).
    loop = vals.get((kind, "loopback"))
    base = statistics.median(loop) if loop else None
    print(f"\n{kind} ({unit}; median, min-max; ratio of medians; median of per-round ratios):")
    for peer in order:
        v = vals.get((kind, peer))
        if not v:
            continue
        m = statistics.median(v)
        ratio = ""
        if base:
            paired = [a / b for a, b in zip(v, loop) if b > 0]
            ratio = f"  {m / base:.2f}x  {statistics.median(paired):.2f}x"
        print(f"  {peer:12} {m:9.0f}  ({min(v):.0f}-{max(v):.0f}){ratio}")
for kind, unit in (("tput_up", "Mbit/s, box->host"), ("tput_down", "Mbit/s, host->box"),
                   ("connrate", "connections/s")):
    if any(k == kind for k, _ in vals):
        table(kind, unit)
if any(k == "conncpu" for k, _ in vals):
    # Per process on the path, medians over the rounds; CPU clocks hardly depend on load.
    print("\nconncpu (us of CPU per connection, median over rounds: client, middle, server, total;"
          " total as a multiple of loopback's):")
    base = None
    for peer in order:
        v = vals.get(("conncpu", peer))
        if not v:
            continue
        cols = [statistics.median(x[i] for x in v) for i in range(3)]
        total = statistics.median(sum(x) for x in v)
        if peer == "loopback":
            base = total
        rel = f"  {total / base:.2f}x" if base else ""
        print(f"  {peer:12} {cols[0]:7.1f} {cols[1]:7.1f} {cols[2]:7.1f} {total:8.1f}{rel}")
if any(k == "attach" for k, _ in vals):
    print("\nattach (ms, spawn/create -> ready; median, p90):")
    for peer in ("agentbox", "agentbox-ioctl", "slirp4netns", "pasta"):
        all_v = vals.get(("attach", peer), [])
        v = sorted(x for x in all_v if x >= 0)
        if v:
            print(f"  {peer:14} {statistics.median(v):8.3f}  p90 {v[int(len(v) * 0.9)]:.3f}"
                  f"  ({len(all_v) - len(v)} of {len(all_v)} failed to start)")
for line in lines:
    if line.startswith(("conn10k", "rss")):
        print(line)
EOF
