#!/usr/bin/env bash
# What the exec guard adds to one execve (issue 16): a shell loop that runs /bin/true N times,
# timed from inside (box start-up is not counted), in four variants interleaved round by round
# (rotating which goes first) so machine load hits all alike:
#   bare    on the host, no box
#   box     agentbox, no exec rules and exec logging off (no exec notification at all)
#   log     agentbox with `[exec] log = true` (every exec held, read, audited, continued)
#   rules   agentbox with ten `[[exec.rule]]`s none of which matches true (no logging)
# AGENTBOX_BASE=path adds base-box, base-log and base-rules: another build (e.g. main's) in the
# same rounds. Prints the median microseconds per loop iteration (fork + exec + wait of
# /bin/true) of each, the added cost of log and rules over box (per round, paired: median and
# the range over the rounds), and the supervisor's own CPU per exec (all its threads, from
# /proc/PID/task/*/schedstat between the loop's start and end, which the box marks in its
# workspace): the load-independent part of what the guard adds.
#
#   bench/exec_cost.sh [AGENTBOX] [ROUNDS] [N]     (defaults: build/cli/agentbox, 5, 2000)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="$(realpath "${1:-$here/../build/cli/agentbox}")"
rounds="${2:-5}"
n="${3:-2000}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

base="${AGENTBOX_BASE:+$(realpath "$AGENTBOX_BASE")}"
mkdir -p "$tmp/box/agentbox" "$tmp/log/agentbox" "$tmp/rules/agentbox" "$tmp/ws"
: >"$tmp/box/agentbox/config.toml"
printf '[exec]\nlog = true\n' >"$tmp/log/agentbox/config.toml"
for i in 0 1 2 3 4 5 6 7 8 9; do
  printf '[[exec.rule]]\nprogram = "tool%s"\nargs = ["push", "--force*|-f"]\naction = "deny"\n' \
    "$i" >>"$tmp/rules/agentbox/config.toml"
done

# One loop; prints its wall time in microseconds (date inside the same shell). Boxed, it marks
# its start and end in the workspace for the supervisor's CPU sample.
loop="s=\$(date +%s%N); i=0; while [ \$i -lt $n ]; do /bin/true; i=\$((i+1)); done;"
loop+=" e=\$(date +%s%N); echo \$(((e - s) / 1000))"
marked="sleep 0.2; : >started; $loop; : >ended; sleep 0.2"

# Nanoseconds on CPU of every thread of process $1.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { print t + 0 }'; }
# Until file $1 exists, or the box (pid $2) has ended.
wait_for() { until [[ -e $1 ]] || ! kill -0 "$2" 2>/dev/null; do sleep 0.005; done; }

run_one() {
  local bin="$agentbox" cfg=${1#base-}
  [[ $1 == base-* ]] && bin="$base"
  if [[ $1 == bare ]]; then
    (cd "$tmp/ws" && /bin/sh -c "$loop")
    return
  fi
  rm -f "$tmp/ws/started" "$tmp/ws/ended"
  (cd "$tmp/ws" && XDG_CONFIG_HOME="$tmp/$cfg" XDG_STATE_HOME="$tmp/state" \
    exec "$bin" run -q --cpu-priority normal -- /bin/sh -c "$marked") >"$tmp/out" &
  local pid=$! c0 c1
  wait_for "$tmp/ws/started" "$pid"
  c0=$(cpu_ns "$pid")
  wait_for "$tmp/ws/ended" "$pid"
  c1=$(cpu_ns "$pid")
  wait "$pid"
  echo $(((c1 - c0) / n)) >>"$tmp/$1.sup"
  tail -n 1 "$tmp/out"
}

names=(bare box log rules)
[[ -n $base ]] && names+=(base-box base-log base-rules)
for n_ in "${names[@]}"; do : >"$tmp/$n_.us" >"$tmp/$n_.sup"; done
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < ${#names[@]}; k++)); do
    v=${names[$(((r + k) % ${#names[@]}))]}
    run_one "$v" | tail -n 1 >>"$tmp/$v.us"
  done
done

median() { sort -n "$1" | awk '{a[NR] = $1} END {
  m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m }'; }
# Per round: $2 - $3 (us files, per exec), then median and range over the rounds.
paired() { paste "$tmp/$2.us" "$tmp/$3.us" | awk -v n="$n" '{ print ($1 - $2) / n }' >"$tmp/d"
  printf '%-26s %+7.1f us  [%+.1f .. %+.1f]\n' "$1" "$(median "$tmp/d")" \
    "$(sort -n "$tmp/d" | head -n 1)" "$(sort -n "$tmp/d" | tail -n 1)"; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $rounds rounds of $n execs each"
for v in "${names[@]}"; do
  per=$(awk -v t="$(median "$tmp/$v.us")" -v n="$n" 'BEGIN { printf "%.1f", t / n }')
  sup=""
  [[ $v != bare ]] && sup=$(printf '; supervisor CPU %6.1f us per exec' "$(median "$tmp/$v.sup" | awk '{ print $1 / 1000 }')")
  printf '%-10s %8s us per fork+exec+wait of /bin/true (median)%s\n' "$v" "$per" "$sup"
done
echo "added per exec (paired by round: median [min .. max]):"
paired "log over box" log box
paired "rules over box" rules box
paired "box over bare" box bare
if [[ -n $base ]]; then
  paired "base: log over box" base-log base-box
  paired "base: rules over box" base-rules base-box
  paired "log: this over base" log base-log
fi
