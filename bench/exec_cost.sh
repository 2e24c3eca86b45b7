#!/usr/bin/env bash
# What the exec guard adds to one execve (issue 16): a shell loop that runs /bin/true N times,
# timed from inside (box start-up is not counted), in four variants interleaved round by round
# (rotating which goes first) so machine load hits all alike:
#   bare    on the host, no box
#   box     agentbox, no exec rules and exec logging off (no exec notification at all)
#   log     agentbox with `[exec] log = true` (every exec held, read, audited, continued)
#   rules   agentbox with ten `[[exec.rule]]`s none of which matches true (no logging)
# Prints the median microseconds per loop iteration (fork + exec + wait of /bin/true) of each
# and the added cost of log and rules over box.
#
#   bench/exec_cost.sh [AGENTBOX] [ROUNDS] [N]     (defaults: build/cli/agentbox, 5, 2000)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="${1:-$here/../build/cli/agentbox}"
rounds="${2:-5}"
n="${3:-2000}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/box/agentbox" "$tmp/log/agentbox" "$tmp/rules/agentbox" "$tmp/ws"
: >"$tmp/box/agentbox/config.toml"
printf '[exec]\nlog = true\n' >"$tmp/log/agentbox/config.toml"
for i in 0 1 2 3 4 5 6 7 8 9; do
  printf '[[exec.rule]]\nprogram = "tool%s"\nargs = ["push", "--force*|-f"]\naction = "deny"\n' \
    "$i" >>"$tmp/rules/agentbox/config.toml"
done

# One loop; prints its wall time in microseconds (date inside the same shell).
loop="s=\$(date +%s%N); i=0; while [ \$i -lt $n ]; do /bin/true; i=\$((i+1)); done;"
loop+=" e=\$(date +%s%N); echo \$(((e - s) / 1000))"

run_one() {
  case $1 in
    bare) (cd "$tmp/ws" && /bin/sh -c "$loop") ;;
    *) (cd "$tmp/ws" && XDG_CONFIG_HOME="$tmp/$1" XDG_STATE_HOME="$tmp/state" \
      "$agentbox" run -q --cpu-priority normal -- /bin/sh -c "$loop") ;;
  esac
}

names=(bare box log rules)
for n_ in "${names[@]}"; do : >"$tmp/$n_.us"; done
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < ${#names[@]}; k++)); do
    v=${names[$(((r + k) % ${#names[@]}))]}
    run_one "$v" | tail -n 1 >>"$tmp/$v.us"
  done
done

median() { sort -n "$tmp/$1.us" | awk '{a[NR] = $1} END {
  m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m }'; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $rounds rounds of $n execs each"
declare -A per
for v in "${names[@]}"; do
  per[$v]=$(awk -v t="$(median "$v")" -v n="$n" 'BEGIN { printf "%.1f", t / n }')
  printf '%-6s %8s us per fork+exec+wait of /bin/true (median)\n' "$v" "${per[$v]}"
done
awk -v b="${per[box]}" -v l="${per[log]}" -v r="${per[rules]}" 'BEGIN {
  printf "added per exec: log %+.1f us, rules %+.1f us (over the box without either)\n", l - b, r - b }'
