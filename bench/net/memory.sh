#!/usr/bin/env bash
# What a hostile box can make the supervisor hold: N connections, all open at once, into upstreams
# that never read or answer (plain HTTP: a body that never ends; TLS intercepted by an HTTP rule:
# a whole request, then a next one pipelined, so the 256 that hold an interception slot are never
# ended for the others, which wait before their handshake), and N idle intercepted connections.
# For each: the supervisor's RSS (/proc/PID/status) and the kernel memory of its sockets (ss's
# skmem: receive + send queue + forward allocation, TCP and unix), read from outside once the box
# says its connections are stalled; then the box counts those still open, and a run where fewer
# than N were is FAILED (docs/BENCHMARKS.md, "Memory"). Goals (issue 14): RSS <= 64 MiB and
# sockets <= 128 MiB with 4096 stalled flows, plain and intercepted; an idle intercepted flow
# <= 32 KiB of RSS.
#
#   bench/net/memory.sh [AGENTBOX...]   (default build/cli/agentbox; N=4096 via FLOWS=)
#
# SCENARIOS="plain intercept idle-tls" picks and orders the runs; BOX_PYTHON is the python the
# box runs (default /usr/bin/python3: a pyenv shim under HOME is not in the box); IDLE_WAIT is
# how long idle flows sit before the reading (13 s: past the 10 s upstream_idle); KEEP=1 keeps
# the scratch directory (the box's stderr is in its err file). N=0 is each line's "start" (RSS
# one second after the box started, before it opens anything). RLIMIT_NOFILE: the soft limit
# is raised to the hard one here and in the box; the supervisor needs three fds per intercepted
# flow and the upstream one per flow (each run gets a fresh upstream).
#
# Several binaries (e.g. a build of main and one of the branch) are measured in turn, scenario by
# scenario. Root or any user that can run a box; needs python3, openssl, ss (iproute2), and
# nsenter when root (the supervisor's sockets are listed in its network namespace).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bins=("$@")
[[ ${#bins[@]} -gt 0 ]] || bins=("$here/../../build/cli/agentbox")
n="${FLOWS:-4096}"
host=stall.bench.test

tmp="$(mktemp -d /tmp/agentbox-memory-XXXXXX)"
chmod 755 "$tmp"
srv=""
cleanup() {
  exec 7>&- 2>/dev/null || true
  [[ -n $srv ]] && { kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; }
  [[ -n ${KEEP:-} ]] || rm -rf "$tmp"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

(cd "$tmp" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout srv.key -out srv.pem -days 2 -subj "/CN=$host" -addext "subjectAltName=DNS:$host" \
  >/dev/null 2>&1 && chmod 644 srv.pem)
cp "$here/stall.py" "$tmp/stall.py" && chmod 755 "$tmp/stall.py"
# A fresh upstream for every run: it keeps every connection it accepted (4096 per run, within
# RLIMIT_NOFILE only for one run at a time). Sets $plain and $tls (the ports).
stop_server() {
  exec 7>&- 2>/dev/null || true
  [[ -n $srv ]] && { wait "$srv" 2>/dev/null || true; }
  srv=""
}
start_server() {
  stop_server
  rm -f "$tmp/stop" "$tmp/ports"
  mkfifo "$tmp/stop"
  python3 "$tmp/stall.py" serve "$tmp" <"$tmp/stop" &
  srv=$!
  exec 7>"$tmp/stop"
  for _ in $(seq 200); do [[ -s $tmp/ports ]] && break; sleep 0.05; done
  read -r plain tls _ <"$tmp/ports"
}

# An HTTP rule makes the TLS host intercepted (the proxy terminates it with the session CA).
mkdir -p "$tmp/cfg/agentbox" "$tmp/ws"
cat >"$tmp/cfg/agentbox/config.toml" <<CFG
[[network.rule]]
host = "$host"
methods = ["POST", "GET"]
CFG
# The idle scenario measures what one idle intercepted flow costs, not the interception cap
# (network.max_intercepted, 256 by default: past it a flow waits before its handshake), so it
# lifts the cap for a binary that knows the key.
mkdir -p "$tmp/cfg-wide/agentbox"
{ printf '[network]\nmax_intercepted = 65536\n'; cat "$tmp/cfg/agentbox/config.toml"; } \
  >"$tmp/cfg-wide/agentbox/config.toml"
config_for() {
  if [[ $2 == idle-tls ]] && XDG_CONFIG_HOME="$tmp/cfg-wide" "$1" explain >/dev/null 2>&1; then
    echo "$tmp/cfg-wide"
  else
    echo "$tmp/cfg"
  fi
}

# Sums skmem over the sockets of PID (in its network namespace when we are root).
sockets_kib() {
  local pid=$1 ns=()
  [[ $(id -u) -eq 0 ]] && ns=(nsenter "--net=/proc/$pid/ns/net")
  { "${ns[@]}" ss -tmnpHO; "${ns[@]}" ss -xmnpHO; } 2>/dev/null | grep "pid=$pid," |
    sed -n 's/.*skmem:(\([^)]*\)).*/\1/p' | awk -F, '{
      r=w=t=f=0
      for (i = 1; i <= NF; i++) {
        v = $i; k = v; sub(/[0-9]+$/, "", k); sub(/^[a-z]+/, "", v)
        if (k == "r") r = v; else if (k == "w") w = v; else if (k == "t") t = v; else if (k == "f") f = v
      }
      s += r + (w > t ? w : t) + f
    } END { printf "%d\n", s / 1024 }'
}

# run BIN LABEL PORT ARGS...: the box runs stall.py ARGS; prints one result line.
run() {
  local bin=$1 label=$2 port=$3; shift 3
  local out="$tmp/out" in="$tmp/in"
  rm -f "$out" "$in"; mkfifo "$in"
  local cfg
  cfg=$(config_for "$bin" "$label")
  (cd "$tmp/ws" && XDG_CONFIG_HOME="$cfg" exec "$bin" run -q --ro "$tmp" \
    --allow "$host:$port" --connect-to "$host:$port:127.0.0.1:$port" --upstream-ca "$tmp/srv.pem" \
    -- "${BOX_PYTHON:-/usr/bin/python3}" "$tmp/stall.py" "$@" <"$in" >"$out" 2>"$tmp/err") &
  local pid=$!
  exec 8>"$in"
  sleep 1
  local base
  base=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  local ok=""
  for _ in $(seq 6000); do
    grep -qE '^(stalled|idle) ' "$out" 2>/dev/null && { ok=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # Idle flows: their buffers are released after a sweep (1 s) and their upstream connection
  # after ProxyOptions::upstream_idle (10 s) with no request in flight; IDLE_WAIT (s) covers both.
  [[ $1 == idle ]] && sleep "${IDLE_WAIT:-13}"
  # post: after the reading, how many of the N the proxy has not ended (nothing is replaced
  # after "stalled", so these were all open when read). Past network.max_intercepted the proxy
  # ends stalled holders for waiters every ~10 s; when it ended some before the count, the box
  # replaces them ("again") and the reading is taken again, up to 5 times; fewer than N open
  # fails the run.
  local rss sock held="" tries=0
  while :; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    sock=$(sockets_kib "$pid")
    [[ -n $ok ]] || break
    tries=$((tries + 1))
    echo count >&8 2>/dev/null || true
    held=""
    for _ in $(seq 600); do
      held=$(sed -n 's/^count open \([0-9]*\) of .*/\1/p' "$out" 2>/dev/null | sed -n "${tries}p")
      [[ -n $held ]] && break
      sleep 0.1
    done
    [[ ${held:-0} -lt $n && $tries -lt 5 ]] || break
    echo again >&8 2>/dev/null || true
    for _ in $(seq 3000); do
      [[ $(grep -c '^stalled ' "$out" 2>/dev/null) -gt $tries ]] && break
      sleep 0.1
    done
  done
  echo >&8 2>/dev/null || true; exec 8>&-
  wait "$pid" 2>/dev/null || true
  local per=""
  [[ $1 == idle ]] && per=" per-flow=$(((rss - base) * 1024 / n))B"
  local status=ok
  [[ -n $ok ]] || status="FAILED: $(tail -1 "$tmp/err")"
  [[ -z $ok || ${held:-0} -eq $n ]] || status="FAILED: ${held:-no} of $n open when read"
  local info
  info=$(sed -n 's/^stalled [0-9]* //p' "$out" 2>/dev/null | tail -1)
  printf '%-10s %-40s flows=%s rss=%sKiB (start %sKiB) sockets=%sKiB%s load=%s %s%s\n' "$label" \
    "$bin" "$n" "$rss" "$base" "$sock" "$per" "$(cut -d' ' -f1 /proc/loadavg)" "$status" \
    "${info:+ ($info; held $held, reading $tries)}"
}

for what in ${SCENARIOS:-plain intercept idle-tls}; do
  for b in "${bins[@]}"; do
    start_server
    case $what in
      plain) run "$(realpath "$b")" plain "$plain" post "$n" "$host" "$plain" plain ;;
      intercept) run "$(realpath "$b")" intercept "$tls" post "$n" "$host" "$tls" tls ;;
      idle-tls) run "$(realpath "$b")" idle-tls "$tls" idle "$n" "$host" "$tls" ;;
      *) echo "memory.sh: unknown scenario \`$what\` (plain, intercept, idle-tls)" >&2; exit 2 ;;
    esac
  done
done
