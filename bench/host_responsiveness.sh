#!/usr/bin/env bash
# Host responsiveness under the default limits: the latency of `/bin/true` started on the host
# (fork + exec + wait, from bash), idle and while a fork bomb runs inside `agentbox run` with
# the built-in defaults only (--no-config, no limit flags), as root (a session cgroup here) and
# as an unprivileged user (rlimits only). The bomb is the worst kind: every process keeps
# forking, so once the pids limit refuses, thousands of tasks spin on a failing fork().
# Conditions run interleaved, round after round, so machine load hits all alike; prints p50
# and p90 of each and the ratio of each bomb p90 to its idle p90 (goal: <= 2x).
# The defaults include limits.cpu_priority = "background" (the box at nice 10); to compare two
# binaries, run the script once per binary, alternating, and note the load (docs/BENCHMARKS.md).
#
#   bench/host_responsiveness.sh [AGENTBOX] [ROUNDS] [SAMPLES]   (defaults: build/cli/agentbox, 5, 40)
# Run as root (the unprivileged variant runs as uid/gid 65534 through setpriv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="${1:-$here/../build/cli/agentbox}"
rounds="${2:-5}"
samples="${3:-40}"
[[ -x "$agentbox" ]] || { echo "host_responsiveness.sh: no agentbox at $agentbox" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "host_responsiveness.sh: run as root (both variants)" >&2; exit 2; }
agentbox="$(realpath "$agentbox")"

tmp="$(mktemp -d /tmp/agentbox-bench-XXXXXX)"
chmod 755 "$tmp"
cp "$agentbox" "$tmp/agentbox"
chmod 755 "$tmp/agentbox"
box_pid=""
cleanup() {
  [[ -n $box_pid ]] && kill -KILL "$box_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
for v in root user; do
  mkdir -p "$tmp/$v/ws" "$tmp/$v/home" "$tmp/$v/state"
done
chown -R 65534:65534 "$tmp/user"

bomb='import os
while True:
    try:
        os.fork()
    except OSError:
        pass'

as_variant() {  # VARIANT CMD...: runs CMD as that variant, in its workspace
  local v=$1
  shift
  if [[ $v == root ]]; then
    (cd "$tmp/root/ws" && HOME="$tmp/root/home" XDG_STATE_HOME="$tmp/root/state" "$@")
  else
    (cd "$tmp/user/ws" && HOME="$tmp/user/home" XDG_STATE_HOME="$tmp/user/state" \
      setpriv --reuid=65534 --regid=65534 --clear-groups "$@")
  fi
}

sample() {  # FILE: appends SAMPLES latencies of /bin/true in microseconds
  local i t0 t1
  for ((i = 0; i < samples; i++)); do
    t0=$EPOCHREALTIME
    /bin/true
    t1=$EPOCHREALTIME
    echo $(((${t1/./} - ${t0/./}))) >>"$1"
    sleep 0.02
  done
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for v in root user; do
  as_variant "$v" "$tmp/agentbox" run -q --no-config -- true ||
    { echo "host_responsiveness.sh: agentbox does not run as $v" >&2; exit 1; }
  : >"$tmp/$v.idle"
  : >"$tmp/$v.bomb"
done
for ((r = 0; r < rounds; r++)); do
  for v in root user; do
    sample "$tmp/$v.idle"
    as_variant "$v" "$tmp/agentbox" run -q --no-config --timeout 30s -- /usr/bin/python3 -c "$bomb" \
      >/dev/null 2>&1 &
    box_pid=$!
    sleep 2  # the bomb reaches the pids limit within this (checked by tests, not here)
    sample "$tmp/$v.bomb"
    kill -TERM "$box_pid" 2>/dev/null || true
    wait "$box_pid" 2>/dev/null || true
    box_pid=""
    sleep 1
  done
done

pct() {  # FILE P: the P-th percentile (nearest rank), in ms with 2 decimals
  sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1;
    printf "%.2f", a[i]/1000}'
}
echo "load average before: $load_before (after, bombs included: $(cut -d' ' -f1-3 /proc/loadavg))," \
  "$(nproc) CPUs, kernel $(uname -r)"
printf "%-6s %-6s %9s %9s\n" variant phase "p50 ms" "p90 ms"
for v in root user; do
  for ph in idle bomb; do
    printf "%-6s %-6s %9s %9s\n" "$v" "$ph" "$(pct "$tmp/$v.$ph" 50)" "$(pct "$tmp/$v.$ph" 90)"
  done
done
for v in root user; do
  awk -v a="$(pct "$tmp/$v.bomb" 90)" -v b="$(pct "$tmp/$v.idle" 90)" -v v="$v" \
    'BEGIN {printf "%s: bomb p90 / idle p90 = %.2fx\n", v, a / b}'
done
