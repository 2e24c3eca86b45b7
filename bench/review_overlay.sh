#!/usr/bin/env bash
# Overlay cost of review mode (docs/REVIEW.md; issue 18 asks <= 1.05x): the confinement bench's
# real workloads (bench/workloads.sh: cc, a make -j2 of 50 C files from clean; git, `git status`
# x100 over 5,000 committed files) each run in a live box (`agentbox run`) and in a review box
# (`agentbox run --review`: the workspace is overlayfs over the real one), interleaved round by
# round (rotating which goes first). A review run's time includes the end-of-session scan of its
# upper directory (what a user waits for); its session is discarded after it, outside the timing.
# Prints medians of wall time and of CPU time (user+sys of everything the run started) and the
# review/live ratios.
#
#   bench/review_overlay.sh [AGENTBOX] [ROUNDS]      (defaults: build/cli/agentbox, 7)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="${1:-$here/../build/cli/agentbox}"
rounds="${2:-7}"
[[ -x "$agentbox" ]] || { echo "review_overlay.sh: no agentbox binary at $agentbox" >&2; exit 2; }
agentbox="$(realpath "$agentbox")"
for tool in gcc make git; do
  command -v "$tool" >/dev/null || { echo "review_overlay.sh: $tool is not installed" >&2; exit 2; }
done

tmp="$(mktemp -d /tmp/agentbox-bench-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" XDG_STATE_HOME="$tmp/state"
mkdir -p "$HOME"
source "$here/workloads.sh"

workloads=(cc git)
variants=(live review)

run_one() {  # run_one WORKLOAD VARIANT
  local w=$1 flag=()
  [[ $2 == review ]] && flag=(--review)
  cd "${dir[$w]}"
  "$agentbox" run -q "${flag[@]}" --workspace "${dir[$w]}" -- /bin/sh -c "${cmd[$w]}" 2>/dev/null
}
discard_all() {
  "$agentbox" discard --older-than 0s >/dev/null
}

for w in "${workloads[@]}"; do  # each must work first (and warms the page cache)
  for v in "${variants[@]}"; do
    run_one "$w" "$v" >/dev/null || { echo "review_overlay.sh: $w ($v) failed" >&2; exit 1; }
    discard_all
    : >"$tmp/$w.$v.times"
    : >"$tmp/$w.$v.cpu"
  done
done
for ((r = 0; r < rounds; r++)); do
  for w in "${workloads[@]}"; do
    for ((k = 0; k < ${#variants[@]}; k++)); do
      v=${variants[$(((r + k) % ${#variants[@]}))]}
      t0=$EPOCHREALTIME
      cpu=$(
        run_one "$w" "$v" >/dev/null
        times  # no pipe: a pipeline's subshell would report its own (empty) children
      )
      cpu=${cpu##*$'\n'}
      t1=$EPOCHREALTIME
      discard_all
      echo "$t0 $t1" | awk '{printf "%.3f\n", ($2 - $1) * 1000}' >>"$tmp/$w.$v.times"
      echo "$cpu" | awk '{ gsub(/s/, "", $1); gsub(/s/, "", $2); split($1, u, "m"); split($2, s, "m")
        printf "%.3f\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 }' >>"$tmp/$w.$v.cpu"
    done
  done
done

median() {
  sort -n "$1" | awk '{a[NR] = $1} END {
    printf "%.1f\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
printf 'review overlay cost, %d interleaved rounds as %s (%s, %s cpus, load %s)\n' "$rounds" \
  "$(id -un)" "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
for kind in times cpu; do
  [[ $kind == times ]] && echo "  wall time, medians:" || echo "  CPU time (user+sys), medians:"
  for w in "${workloads[@]}"; do
    live=$(median "$tmp/$w.live.$kind")
    review=$(median "$tmp/$w.review.$kind")
    printf '    %-4s live %9.1f ms  review %9.1f ms  review/live %.3fx\n' "$w" "$live" "$review" \
      "$(echo "$review $live" | awk '{print $1 / $2}')"
  done
done
