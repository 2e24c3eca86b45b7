#!/usr/bin/env bash
# Compile CPU of the README's first command (issue 19): configures the demo's Release build of
# SOURCE into a fresh BUILD_DIR (no ccache), builds only `agentbox` with -j2, and prints the CPU
# seconds (user + sys, from /usr/bin/time) of each compiler run, the top units and the total.
# CPU seconds, unlike wall time, hardly depend on what else the machine runs. Arguments after TOP
# go to cmake (`-DAGENTBOX_UNITY=ON`, as scripts/demo configures).
#   bench/build_cpu.sh [SOURCE [BUILD_DIR [TOP [CMAKE_ARGS...]]]]
set -euo pipefail
if [ "${1:-}" = --cc ]; then  # the compiler launcher: one line "user sys output" per run
  shift
  out="" prev=""
  for a in "$@"; do
    [ "$prev" = -o ] && out=$a
    prev=$a
  done
  exec /usr/bin/time -a -o "$BUILD_CPU_LOG" -f "%U %S $out" "$@"
fi
src="$(cd "${1:-$(dirname "$0")/..}" && pwd)"
build="${2:-$(mktemp -d)/build}"
top="${3:-15}"
shift $(($# < 3 ? $# : 3))
[ ! -e "$build" ] || { echo "build_cpu: $build exists; give a new folder" >&2; exit 1; }
export BUILD_CPU_LOG="$build.cpu.log" CCACHE_DISABLE=1
: >"$BUILD_CPU_LOG"
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAGENTBOX_TESTS=OFF \
  -DAGENTBOX_WERROR=ON -DCMAKE_CXX_COMPILER_LAUNCHER="$(realpath "$0");--cc" "$@" >/dev/null
/usr/bin/time -f "%e s wall, %U s user + %S s sys (compiles and links), load then: $(cut -d' ' -f1-3 /proc/loadavg)" \
  cmake --build "$build" -j2 --target agentbox >/dev/null
echo "top $top units (CPU s, user + sys):"
awk '{printf "%7.1f %s\n", $1 + $2, $3}' "$BUILD_CPU_LOG" | sort -rn | head -n "$top"
awk '{u += $1; s += $2; n++} END {printf "compiler runs: %d, CPU %.0f s (user %.0f + sys %.0f)\n", n, u + s, u, s}' \
  "$BUILD_CPU_LOG"
echo "per-unit log: $BUILD_CPU_LOG; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
