#!/bin/sh
# Review mode at scale (docs/REVIEW.md): a `run --review` session rewrites N files (default
# 10,000), then `agentbox diff --stat` and `agentbox apply` of it are timed; ROUNDS fresh sessions
# (default 3), each line one round. Issue 18 asks for each <= 1 s. No assertion: a figure.
#   AGENTBOX=build/cli/agentbox N=10000 ROUNDS=3 bench/review.sh
set -eu
AGENTBOX=$(realpath "${AGENTBOX:-build/cli/agentbox}")
N=${N:-10000}
ROUNDS=${ROUNDS:-3}
ROOT=$(mktemp -d /tmp/agentbox-bench-review.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
export HOME="$ROOT" XDG_STATE_HOME="$ROOT/state"

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $N files; $(uname -r)"
round=1
while [ "$round" -le "$ROUNDS" ]; do
  rm -rf "$ROOT/ws" "$ROOT/state"
  mkdir -p "$ROOT/ws/src" "$ROOT/state"
  (cd "$ROOT/ws/src" && seq 1 "$N" | xargs sh -c 'for i; do echo "line $i" > "f$i.txt"; done' _)
  "$AGENTBOX" run -q --review --workspace "$ROOT/ws" -- /bin/sh -c \
    'cd src && for f in *.txt; do echo more >> "$f"; done'
  id=$(ls "$ROOT/state/agentbox/review")
  t=$(date +%s%N)
  lines=$("$AGENTBOX" diff --stat "$id" | wc -l)
  stat_ms=$(ms "$t")
  t=$(date +%s%N)
  "$AGENTBOX" apply "$id" > /dev/null
  apply_ms=$(ms "$t")
  grep -q more "$ROOT/ws/src/f$N.txt"
  echo "round $round: diff --stat ${stat_ms} ms ($lines changes), apply ${apply_ms} ms"
  round=$((round + 1))
done
