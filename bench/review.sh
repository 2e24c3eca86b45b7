#!/bin/sh
# Review mode at scale (docs/REVIEW.md): a `run --review` session rewrites N files (default
# 10,000), then `agentbox diff --stat` and `agentbox apply` of it are timed; ROUNDS fresh sessions
# (default 3), each line one round, wall time and CPU time (user+sys). Issue 18 asks for each
# <= 1 s. No assertion: a figure.
# With AGENTBOX_BASE (another build, e.g. main's), each round times both on sessions of their
# own, interleaved (the order alternates by round), for a paired before/after.
#   AGENTBOX=build/cli/agentbox N=10000 ROUNDS=3 bench/review.sh
#   AGENTBOX_BASE=/tmp/agentbox-main AGENTBOX=build/cli/agentbox N=10000 ROUNDS=3 bench/review.sh
set -eu
AGENTBOX=$(realpath "${AGENTBOX:-build/cli/agentbox}")
BASE=${AGENTBOX_BASE:+$(realpath "$AGENTBOX_BASE")}
N=${N:-10000}
ROUNDS=${ROUNDS:-3}
ROOT=$(mktemp -d /tmp/agentbox-bench-review.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
export HOME="$ROOT" XDG_STATE_HOME="$ROOT/state"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# CPU (user+sys, ms) of the command a subshell ran before `times > $ROOT/times` (its children's
# line): wall time on a loaded machine is mostly waiting for a CPU, so both are printed.
cpu() { tail -n 1 "$ROOT/times" | awk '{ gsub(/s/, "", $1); gsub(/s/, "", $2); split($1, u, "m")
  split($2, s, "m"); printf "%d", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 }'; }

# one LABEL BINARY: a fresh session (made by BINARY) and its diff --stat and apply, timed.
one() {
  rm -rf "$ROOT/ws" "$ROOT/state"
  mkdir -p "$ROOT/ws/src" "$ROOT/state"
  (cd "$ROOT/ws/src" && seq 1 "$N" | xargs sh -c 'for i; do echo "line $i" > "f$i.txt"; done' _)
  "$2" run -q --review --workspace "$ROOT/ws" -- /bin/sh -c \
    'cd src && for f in *.txt; do echo more >> "$f"; done'
  id=$(ls "$ROOT/state/agentbox/review")
  sync  # the session's writes on disk before the clock starts, for both builds alike
  t=$(date +%s%N)
  ("$2" diff --stat "$id" > "$ROOT/stat"; times > "$ROOT/times")
  stat_ms=$(ms "$t")
  stat_cpu=$(cpu)
  lines=$(wc -l < "$ROOT/stat")
  t=$(date +%s%N)
  ("$2" apply "$id" > /dev/null; times > "$ROOT/times")
  apply_ms=$(ms "$t")
  apply_cpu=$(cpu)
  grep -q more "$ROOT/ws/src/f$N.txt"
  echo "round $round $1: diff --stat ${stat_ms} ms (CPU ${stat_cpu} ms, $lines changes)," \
    "apply ${apply_ms} ms (CPU ${apply_cpu} ms);" \
    "load $(cut -d' ' -f1 /proc/loadavg)"
}

echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $N files; $(uname -r)"
round=1
while [ "$round" -le "$ROUNDS" ]; do
  if [ -z "$BASE" ]; then
    one new "$AGENTBOX"
  elif [ $((round % 2)) -eq 1 ]; then
    one base "$BASE"
    one new "$AGENTBOX"
  else
    one new "$AGENTBOX"
    one base "$BASE"
  fi
  round=$((round + 1))
done
