#!/usr/bin/env bash
# Cost of confinement on real work: each workload runs bare, in the box without seccomp and
# Landlock (the test-only build agentbox-unconfined with AGENTBOX_UNSAFE_BENCH_UNCONFINED=1:
# namespaces, mounts, protected paths, capabilities and rlimits stay; the shipped agentbox has no
# such switch), and in the full box. The three variants alternate round by round (rotating
# which goes first) so machine load hits all alike; prints medians and the ratios of the medians.
#
#   bench/confinement.sh [AGENTBOX] [ROUNDS]      (defaults: build/cli/agentbox, 7)
#
# The unconfined variant is AGENTBOX_UNCONFINED (default: agentbox-unconfined next to the build's
# tests, build/tests/agentbox-unconfined; `ninja -C build agentbox-unconfined`).
#
# With CONFINEMENT_FILTER_HELPER=build/bench/seccomp_bench a fourth variant, "filter", runs bare
# under a one-instruction allow-all seccomp filter (`seccomp_bench exec allow-all`): what any
# seccomp-filtered sandbox pays on the syscall entry path, whatever its rules.
#
# Workloads (each one box start; each takes more than a second bare on a 2-core VM):
#   cc      make -j2 of a generated 50-file C program (gcc -O2), from clean
#   git     `git status` x100 in a generated repository of 5,000 committed files
#   python  a fresh /usr/bin/python3 importing 25 stdlib modules, x20
# Bare runs get the box's environment (env -i and exactly the variables `agentbox run -- env`
# prints: PATH, HOME, LANG, ...) and a new session: the same programs with the same variables, so
# only the box differs (a shell's PYTHON*/pyenv would not; LANG makes git and python load locale
# files).
# Two figures: wall time (what a user waits; on a loaded machine mostly scheduling noise) and CPU
# time (user+sys of every process of the run: what seccomp and Landlock add to the work itself).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="${1:-$here/../build/cli/agentbox}"
rounds="${2:-7}"
[[ -x "$agentbox" ]] || { echo "confinement.sh: no agentbox binary at $agentbox" >&2; exit 2; }
agentbox="$(realpath "$agentbox")"
unconfined="${AGENTBOX_UNCONFINED:-$(dirname "$agentbox")/../tests/agentbox-unconfined}"
[[ -x "$unconfined" ]] || {
  echo "confinement.sh: no agentbox-unconfined at $unconfined (ninja -C build agentbox-unconfined)" >&2
  exit 2
}
unconfined="$(realpath "$unconfined")"
for tool in gcc make git /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "confinement.sh: $tool is not installed" >&2; exit 2; }
done

tmp="$(mktemp -d /tmp/agentbox-bench-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" XDG_STATE_HOME="$tmp/state"
mkdir -p "$HOME"
# The environment the box gives its command, for the bare runs.
mkdir -p "$tmp/env-ws"
box_env=()
while IFS= read -r -d '' kv; do box_env+=("$kv"); done < <("$agentbox" run -q --workspace "$tmp/env-ws" -- env -0)
[[ ${#box_env[@]} -gt 0 ]] || { echo "confinement.sh: could not read the box's environment" >&2; exit 1; }
filter_helper="${CONFINEMENT_FILTER_HELPER:-}"
if [[ -n $filter_helper ]]; then
  [[ -x $filter_helper ]] || { echo "confinement.sh: no filter helper at $filter_helper" >&2; exit 2; }
  filter_helper="$(realpath "$filter_helper")"
fi

# --- the workloads' inputs (made once, outside any timing) ---
source "$here/workloads.sh"

workloads=(cc git python)
variants=(bare unconfined box)
[[ -n $filter_helper ]] && variants+=(filter)

run_one() {  # run_one WORKLOAD VARIANT
  local w=$1
  cd "${dir[$w]}"
  case $2 in
    # setsid: the box always runs in a new session, which with CONFIG_SCHED_AUTOGROUP is its
    # own scheduling group; bare gets one too, so that load elsewhere weighs on both alike.
    bare) env -i "${box_env[@]}" setsid -w /bin/sh -c "${cmd[$w]}" ;;
    filter) env -i "${box_env[@]}" setsid -w "$filter_helper" exec allow-all /bin/sh -c "${cmd[$w]}" ;;
    unconfined)
      AGENTBOX_UNSAFE_BENCH_UNCONFINED=1 "$unconfined" run -q --workspace "${dir[$w]}" -- \
        /bin/sh -c "${cmd[$w]}" 2>/dev/null ;;
    box) "$agentbox" run -q --workspace "${dir[$w]}" -- /bin/sh -c "${cmd[$w]}" ;;
  esac
}

check_and_warm confinement.sh
time_rounds

printf 'confinement cost, %d interleaved rounds as %s (%s, %s cpus, load %s)\n' "$rounds" \
  "$(id -un)" "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
for kind in times cpu; do
  [[ $kind == times ]] && echo "  wall time, medians:" || echo "  CPU time (user+sys), medians:"
  printf '    %-8s %10s %15s %10s %16s %10s' workload "bare ms" "unconfined ms" "box ms" \
    "unconfined/bare" "box/bare"
  [[ -n $filter_helper ]] && printf ' %10s %12s' "filter ms" "filter/bare"
  echo
  for w in "${workloads[@]}"; do
    b=$(median "$tmp/$w.bare.$kind")
    u=$(median "$tmp/$w.unconfined.$kind")
    x=$(median "$tmp/$w.box.$kind")
    awk -v w="$w" -v b="$b" -v u="$u" -v x="$x" 'BEGIN {
      printf "    %-8s %10.1f %15.1f %10.1f %16.3f %10.3f", w, b, u, x, u / b, x / b }'
    if [[ -n $filter_helper ]]; then
      f=$(median "$tmp/$w.filter.$kind")
      awk -v b="$b" -v f="$f" 'BEGIN { printf " %10.1f %12.3f", f, f / b }'
    fi
    echo
  done
done
