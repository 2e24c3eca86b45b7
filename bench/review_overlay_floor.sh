#!/usr/bin/env bash
# The floor under review mode's `git status` cost (issue 18 asks <= 1.05x a live box): the same
# repository as bench/workloads.sh's git workload (5,000 committed files, one modified) read
# through a plain bind mount and through overlayfs mounted as review mode mounts it
# (lowerdir = the repository, userxattr, index=off; also with `volatile`), with no agentbox at
# all: `git status --porcelain` x100 (CPU, user+sys) and a minimal C loop of lstat() over the
# 5,000 tracked paths x100 (CPU ns per call). Variants interleaved round by round; medians.
# Each round runs in a fresh user and mount namespace (`unshare -Urm`, as a box does).
#
#   bench/review_overlay_floor.sh [ROUNDS]      (default 5)
set -euo pipefail
rounds="${1:-5}"
for tool in cc git unshare; do
  command -v "$tool" >/dev/null || { echo "review_overlay_floor.sh: $tool is missing" >&2; exit 2; }
done
tmp="$(mktemp -d /tmp/agentbox-bench-floor-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/lstat.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
int main(int argc, char** argv) {  /* lstat every path on stdin argv[1] times: CPU ns per call */
  int n = atoi(argv[1]), np = 0;
  static char* paths[20000];
  char line[4096];
  while (np < 20000 && fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    paths[np++] = strdup(line);
  }
  struct timespec a, b;
  struct stat st;
  long bad = 0;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
  for (int r = 0; r < n; r++)
    for (int i = 0; i < np; i++) bad += lstat(paths[i], &st) != 0;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
  printf("%.0f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / ((double)n * np));
  return bad != 0;
}
C
cc -O2 -o "$tmp/lstat" "$tmp/lstat.c"
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/workloads.sh"  # the git workload's repository: $git_dir
git -C "$git_dir" ls-files | sed 's|^|./|' >"$tmp/files"

# One variant inside its own namespaces: prints "GIT_CPU_MS LSTAT_NS".
cat >"$tmp/one.sh" <<'SH'
set -eu
tmp=$1 v=$2
rm -rf "$tmp/st" && mkdir -p "$tmp/st/upper" "$tmp/st/work" "$tmp/mnt"
opts="lowerdir=$tmp/repo,upperdir=$tmp/st/upper,workdir=$tmp/st/work,userxattr,index=off"
case $v in
  bind) mount --bind "$tmp/repo" "$tmp/mnt" ;;
  overlay) mount -t overlay overlay -o "$opts" "$tmp/mnt" ;;
  volatile) mount -t overlay overlay -o "$opts,volatile" "$tmp/mnt" ;;
esac
cd "$tmp/mnt"
git status --porcelain >/dev/null  # warm; in the overlay, the index's copy-up
c=$(for i in $(seq 100); do git status --porcelain >/dev/null; done; times)
c=${c##*$'\n'}
echo "$c" "$("$tmp/lstat" 100 <"$tmp/files")" | awk '{ gsub(/s/, "", $1); gsub(/s/, "", $2)
  split($1, u, "m"); split($2, s, "m"); printf "%.0f %s\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000, $3 }'
SH

variants=(bind overlay volatile)
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < ${#variants[@]}; k++)); do
    v=${variants[$(((r + k) % ${#variants[@]}))]}
    unshare -Urm bash "$tmp/one.sh" "$tmp" "$v" >>"$tmp/$v.out"
  done
done
med() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
printf 'overlay floor, %d interleaved rounds as %s (%s, %s cpus, load %s)\n' "$rounds" "$(id -un)" \
  "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
bg=$(cut -d' ' -f1 "$tmp/bind.out" | med)
bl=$(cut -d' ' -f2 "$tmp/bind.out" | med)
for v in "${variants[@]}"; do
  g=$(cut -d' ' -f1 "$tmp/$v.out" | med)
  l=$(cut -d' ' -f2 "$tmp/$v.out" | med)
  printf '  %-8s git status x100 CPU %6s ms (%.3fx)  lstat %5s ns CPU (%.3fx)\n' "$v" "$g" \
    "$(echo "$g $bg" | awk '{print $1 / $2}')" "$l" "$(echo "$l $bl" | awk '{print $1 / $2}')"
done
