#!/usr/bin/env bash
# The floor under review mode's `git status` cost (issue 18 asks <= 1.05x a live box): the same
# repository as bench/workloads.sh's git workload (5,000 committed files, one modified) read
# through a plain bind mount and through overlayfs with each mount option that could matter, with
# no agentbox at all: `git status --porcelain` x100 (CPU, user+sys) and a minimal C loop of lstat()
# over the 5,000 tracked paths x100 (CPU ns per call). Variants interleaved round by round
# (rotating which goes first); medians. Each run is in a fresh user and mount namespace
# (`unshare -Urm`, as a box does); `trusted` and `meta` mount without userxattr in the initial
# user namespace (`unshare -m`, root only: what a privileged mounter could add).
#
#   bench/review_overlay_floor.sh [ROUNDS [VARIANT...]]      (default 5; variants below)
#
#   bind        a bind mount of the repository (the live box)
#   overlay     overlayfs as review mode mounts it: userxattr,index=off
#   volatile    + volatile (no syncs of the upper layer)
#   xino-off    + xino=off          xino-on   + xino=on          xino-auto  + xino=auto
#   redir-off   + redirect_dir=off  meta-off  + metacopy=off     index-on   index=on, nfs_export=off
#   redir-nofollow  + redirect_dir=nofollow (what userxattr implies; `off` means `follow` on 6.x
#               kernels unless redirect_always_follow=N, which userxattr refuses)
#   trusted     without userxattr (trusted.* xattrs), root only
#   meta        without userxattr, metacopy=on,redirect_dir=on, root only
#   bind-uc, overlay-uc   as bind and overlay, on a copy of the repository whose index carries
#               git's untracked cache (core.untrackedCache=true)
#   bind-np, overlay-np   as bind and overlay with core.preloadIndex=false (one thread)
set -euo pipefail
rounds="${1:-5}"
shift || true
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
# The same repository with git's untracked cache in its index (the cache's own test first).
if [[ " $* " == *"-uc "* ]]; then
  cp -a "$git_dir" "$tmp/repo-uc"
  git -C "$tmp/repo-uc" update-index --test-untracked-cache >/dev/null
  git -C "$tmp/repo-uc" config core.untrackedCache true
  git -C "$tmp/repo-uc" status --porcelain >/dev/null
  git -C "$tmp/repo-uc" status --porcelain >/dev/null
fi

# One variant inside its own namespaces: prints "GIT_CPU_MS LSTAT_NS".
cat >"$tmp/one.sh" <<'SH'
set -eu
tmp=$1 v=$2 repo=$1/repo
case $v in *-uc) repo=$tmp/repo-uc ;; esac
rm -rf "$tmp/st" && mkdir -p "$tmp/st/upper" "$tmp/st/work" "$tmp/mnt"
opts="lowerdir=$repo,upperdir=$tmp/st/upper,workdir=$tmp/st/work"
ov() { mount -t overlay overlay -o "$opts,$1" "$tmp/mnt" 2>/dev/null || exit 3; }  # 3: refused
gitc=()
case $v in
  bind | bind-uc) mount --bind "$repo" "$tmp/mnt" ;;
  bind-np) mount --bind "$repo" "$tmp/mnt" && gitc=(-c core.preloadIndex=false) ;;
  overlay | overlay-uc) ov userxattr,index=off ;;
  overlay-np) ov userxattr,index=off && gitc=(-c core.preloadIndex=false) ;;
  volatile) ov userxattr,index=off,volatile ;;
  xino-off) ov userxattr,index=off,xino=off ;;
  xino-on) ov userxattr,index=off,xino=on ;;
  xino-auto) ov userxattr,index=off,xino=auto ;;
  redir-off) ov userxattr,index=off,redirect_dir=off ;;
  redir-nofollow) ov userxattr,index=off,redirect_dir=nofollow ;;
  meta-off) ov userxattr,index=off,metacopy=off ;;
  index-on) ov userxattr,index=on,nfs_export=off ;;
  trusted) ov index=off ;;
  meta) ov index=off,metacopy=on,redirect_dir=on ;;
  *) echo "review_overlay_floor.sh: unknown variant $v" >&2; exit 2 ;;
esac
cd "$tmp/mnt"
git "${gitc[@]}" status --porcelain >/dev/null  # warm; in the overlay, the index's copy-up
c=$(for i in $(seq 100); do git "${gitc[@]}" status --porcelain >/dev/null; done; times)
c=${c##*$'\n'}
echo "$c" "$("$tmp/lstat" 100 <"$tmp/files")" | awk '{ gsub(/s/, "", $1); gsub(/s/, "", $2)
  split($1, u, "m"); split($2, s, "m"); printf "%.0f %s\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000, $3 }'
SH

variants=("$@")
((${#variants[@]})) || variants=(bind overlay volatile xino-off xino-auto redir-nofollow meta-off index-on)
[[ " ${variants[*]} " == *" bind "* ]] || variants=(bind "${variants[@]}")
ns() {  # the namespaces a variant runs in
  case $1 in trusted | meta) echo -m ;; *) echo -Urm ;; esac
}
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < ${#variants[@]}; k++)); do
    v=${variants[$(((r + k) % ${#variants[@]}))]}
    rc=0
    unshare "$(ns "$v")" bash "$tmp/one.sh" "$tmp" "$v" >>"$tmp/$v.out" || rc=$?
    case $rc in
      0) ;;
      3) echo refused >"$tmp/$v.refused" ;;
      *) echo "review_overlay_floor.sh: variant $v failed" >&2; exit 1 ;;
    esac
  done
done
med() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
printf 'overlay floor, %d interleaved rounds as %s (%s, %s cpus, load %s)\n' "$rounds" "$(id -un)" \
  "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
for v in "${variants[@]}"; do
  if [[ -e $tmp/$v.refused ]]; then
    printf '  %-14s mount refused by this kernel (dmesg says why)\n' "$v"
    continue
  fi
  base=bind
  case $v in *-uc) base=bind-uc ;; *-np) base=bind-np ;; esac
  [[ -s $tmp/$base.out ]] || base=bind
  bg=$(cut -d' ' -f1 "$tmp/$base.out" | med)
  bl=$(cut -d' ' -f2 "$tmp/$base.out" | med)
  g=$(cut -d' ' -f1 "$tmp/$v.out" | med)
  l=$(cut -d' ' -f2 "$tmp/$v.out" | med)
  printf '  %-14s git status x100 CPU %6s ms (%.3fx %-7s)  lstat %5s ns CPU (%.3fx)\n' "$v" "$g" \
    "$(echo "$g $bg" | awk '{print $1 / $2}')" "$base" "$l" "$(echo "$l $bl" | awk '{print $1 / $2}')"
done
