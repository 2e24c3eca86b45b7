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
#
# WORKLOADS="git" picks workloads; REVIEW_UC=1 adds a third variant, review-uc: a review box whose
# git uses its untracked cache (`core.untrackedCache=true` given through GIT_CONFIG_COUNT, so
# nothing is written to any config; the cache lands in the session's copy of .git/index, which
# apply never lands): on main's binaries, what review boxes now set themselves.
# AGENTBOX_BASE=path adds base-review: another build's review box, in the same rounds.
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

read -ra workloads <<<"${WORKLOADS:-cc git}"
variants=(live review)
[[ ${REVIEW_UC:-0} == 1 ]] && variants+=(review-uc)
[[ -n ${AGENTBOX_BASE:-} ]] && variants+=(base-review)

run_one() {  # run_one WORKLOAD VARIANT
  local w=$1 flag=() bin=$agentbox
  case $2 in
    live) ;;
    review) flag=(--review) ;;
    review-uc) flag=(--review -e GIT_CONFIG_COUNT=1 -e GIT_CONFIG_KEY_0=core.untrackedCache
      -e GIT_CONFIG_VALUE_0=true) ;;
    base-review) flag=(--review) bin=$AGENTBOX_BASE ;;
  esac
  cd "${dir[$w]}"
  "$bin" run -q "${flag[@]}" --workspace "${dir[$w]}" -- /bin/sh -c "${cmd[$w]}" 2>/dev/null
}
after_one() {  # untimed: the review session of the run, gone before the next
  local id
  for id in $(ls "$XDG_STATE_HOME/agentbox/review" 2>/dev/null); do
    "$agentbox" discard "$id" >/dev/null
  done
}

check_and_warm review_overlay.sh
time_rounds

printf 'review overlay cost, %d interleaved rounds as %s (%s, %s cpus, load %s)\n' "$rounds" \
  "$(id -un)" "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
for kind in times cpu; do
  [[ $kind == times ]] && echo "  wall time, medians:" || echo "  CPU time (user+sys), medians:"
  for w in "${workloads[@]}"; do
    live=$(median "$tmp/$w.live.$kind")
    for v in "${variants[@]:1}"; do
      review=$(median "$tmp/$w.$v.$kind")
      printf '    %-4s live %9.1f ms  %-9s %9.1f ms  %s/live %.3fx\n' "$w" "$live" "$v" "$review" \
        "$v" "$(echo "$review $live" | awk '{print $1 / $2}')"
    done
  done
done
