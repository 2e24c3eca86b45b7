#!/usr/bin/env bash
# The README's first command on a fresh Debian 12: builds a minimal bookworm root filesystem with
# mmdebstrap (from this machine's own apt sources), clones this repository into it, enters it with
# its own mount, pid, uts and ipc namespaces (pivot_root, not chroot: a chrooted process may not
# create the user namespace a box needs), and runs `./scripts/demo` there as root exactly as the
# README writes it. Prints the wall time of the whole and of each phase (apt's index update,
# download, install; cmake; the build; the demo), the bytes apt fetched and the load average.
# FRESH_STEPS (default "demo") chooses what runs, in order, in the same machine, each timed (wall
# and CPU, user + sys, of everything it ran) with the packages it installed:
#   demo       the README's first command, `./scripts/demo`
#   apt        its first line alone, `./scripts/install-deps build` (apt's CPU without the build's)
#   install    the README's "Install": `./scripts/install-deps package && ./scripts/package`,
#              `dpkg -i` of the package (as root: a fresh Debian has no sudo), `agentbox doctor`,
#              the shipped profiles listed and a box, all from /usr/bin/agentbox
#   testdeps   the second command's `./scripts/install-deps`, then every program, module and file
#              the tests skip without (scripts/deps.txt's purpose), looked for
# Deletes the root filesystem at the end, also on failure or timeout.
#
# Usage (root): bench/fresh_machine.sh [REF]    REF: the commit to clone (default HEAD)
#   FRESH_STEPS     the steps, in order (default demo; "demo install testdeps" for all)
#   FRESH_TIMEOUT   seconds for each step before it is killed (default 2400)
#   FRESH_VARIANT   mmdebstrap variant (default minbase: Essential packages and apt, as the
#                   debian:12 container image); `important` is a netinst without tasks
#   FRESH_INCLUDE   packages the "user" had before cloning (default git)
#   FRESH_DIR       where the root filesystem goes (default a new directory under /var/tmp)
#   FRESH_KEEP=1    keep the root filesystem (for a look inside; delete it yourself)
#   FRESH_REUSE=1   FRESH_DIR is a kept one: no bootstrap, only FRESH_STEPS
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
ref="$(git -C "$repo" rev-parse "${1:-HEAD}")"
timeout_s="${FRESH_TIMEOUT:-2400}"
variant="${FRESH_VARIANT:-minbase}"
include="${FRESH_INCLUDE:-git}"
[ "$(id -u)" = 0 ] || { echo "fresh_machine: needs root (mmdebstrap, mount namespaces)" >&2; exit 2; }
command -v mmdebstrap >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null

# Debian's own entries of this machine's apt sources (never a hostname written here): the files
# apt reads that name Debian's archive keyring or a /debian path; other vendors' sources are left out.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  if [ -f "$f" ] && grep -Eq '^[^#]*(debian-archive-keyring|/debian(-security)?/?([[:space:]]|$))' "$f"; then
    sources+=("$f")
  fi
done
[ "${#sources[@]}" -gt 0 ] || { echo "fresh_machine: no Debian entry in /etc/apt/sources.list*" >&2; exit 2; }

root="${FRESH_DIR:-$(mktemp -d /var/tmp/agentbox-fresh.XXXXXX)}"
root="$(realpath -m "$root")"
# Only what this script made is ever deleted: a directory that was empty or absent, or one it
# marked after its bootstrap and kept (FRESH_REUSE).
mark="$root/.agentbox-fresh-machine"
if [ "${FRESH_REUSE:-0}" = 1 ]; then
  [ -f "$mark" ] || { echo "fresh_machine: FRESH_REUSE=1 needs a FRESH_DIR this script kept" >&2; exit 2; }
elif [ -e "$root" ] && [ -n "$(ls -A "$root")" ]; then
  echo "fresh_machine: $root is not empty" >&2
  exit 2
fi
load_log="$(mktemp)"
cpu_log="$(mktemp)"
sampler=""
cleanup() {
  [ -z "$sampler" ] || kill "$sampler" 2>/dev/null || true
  rm -f "$load_log" "$cpu_log"
  # Every mount was made in the run's private mount namespace, gone with its processes; refuse
  # to delete through a mount that is somehow still visible here.
  if findmnt -rn -o TARGET | grep -q "^$root"; then
    echo "fresh_machine: mounts left under $root; not deleting it" >&2
  elif [ "${FRESH_KEEP:-0}" != 1 ]; then
    rm -rf --one-file-system "$root"
  fi
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }

read -r -a steps <<<"${FRESH_STEPS:-demo}"
if [ "${FRESH_REUSE:-0}" != 1 ]; then
  echo "== bootstrap: bookworm, variant $variant, with: $include -> $root"
  t=$(now)
  mmdebstrap --quiet --variant="$variant" --include="$include" bookworm "$root" "${sources[@]}"
  touch "$mark"
  echo "bootstrap: $(secs "$t" "$(now)") s, $(du -sm "$root" | cut -f1) MB"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  git clone -q --no-hardlinks "$repo" "$root/root/agentbox"
  git -C "$root/root/agentbox" checkout -q "$ref"
  echo "cloned $ref into /root/agentbox"
fi

# What runs in the new namespaces (pid 1 of its pid namespace): the fresh machine's /proc, /sys
# and a /dev of its own (new device nodes: a chmod in there cannot reach the host's), then
# pivot_root into it and the step's command in a root login's environment, in the clone.
inner='
set -euo pipefail
r="$1"
mount --bind "$r" "$r"
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
if mountpoint -q /sys/fs/cgroup; then mount --rbind /sys/fs/cgroup "$r/sys/fs/cgroup"; fi
mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r n ma mi <<<"$d"; mknod -m 0666 "$r/dev/$n" c "$ma" "$mi"
done
if [ -c /dev/net/tun ]; then
  mkdir "$r/dev/net"; mknod -m "$(stat -c %a /dev/net/tun)" "$r/dev/net/tun" c 10 200
fi
mkdir "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
ln -s /proc/self/fd "$r/dev/fd"
for i in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${i%%:*}" "$r/dev/${i#*:}"; done
hostname fresh-bookworm
mkdir -p "$r/.oldroot"
cd "$r"
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec chroot / /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/bash -c "set -euo pipefail; cd /root/agentbox; $2"
'

# The tests' prerequisites beyond the compiler: what their skips name (a skip is a failure in CI).
testdeps_check='
missing=()
for c in git curl python3 node npm go cargo java tmux vim less podman newuidmap runc bwrap \
    openssl zsh fish clang-14 clang-format dpkg-shlibdeps file useradd usermod setpriv runuser ip ps; do
  command -v "$c" >/dev/null || missing+=("$c")
done
for m in requests botocore grpc; do python3 -c "import $m" 2>/dev/null || missing+=("python3:$m"); done
for f in /etc/ssl/certs/ca-certificates.crt /usr/include/gtest/gtest.h /usr/include/gmock/gmock.h; do
  [ -e "$f" ] || missing+=("$f")
done
ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || missing+=(libFuzzer)
[ "${#missing[@]}" = 0 ] || { echo "testdeps: missing after install-deps: ${missing[*]}"; exit 1; }
echo "testdeps: every program, module and file the tests look for is there"
'
declare -A step_cmd=(
  [demo]='./scripts/demo'
  [apt]='./scripts/install-deps build'
  [install]='./scripts/install-deps package && ./scripts/package && dpkg -i build-pkg/agentbox_*.deb &&
    agentbox doctor && ./scripts/package --check'
  [testdeps]="./scripts/install-deps; $testdeps_check"
)

iface="$(ip route show default | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')"
rx() { if [ -n "$iface" ]; then cat "/sys/class/net/$iface/statistics/rx_bytes"; else echo 0; fi; }
archives="$root/var/cache/apt/archives"
debs() { find "$archives" -maxdepth 1 -name '*.deb' -printf '%s\n' 2>/dev/null | awk '{ n++; s += $1 } END { print n + 0, s + 0 }'; }
# newest change time of a file in a directory after T (seconds since the epoch)
last_ctime() { find "$2" -maxdepth 1 -type f -newerct "@$1" -printf '%C@\n' 2>/dev/null | sort -n | tail -1; }
phase() { [ -n "$2" ] && [ -n "$3" ] && printf '  %-34s %5s s\n' "$1" "$(secs "$2" "$3")"; return 0; }
# CPU seconds (user + sys) of this shell's waited-for children so far
# (`times` in this shell, not in a $(...) subshell, whose own children start at zero)
cpu_now() { times >"$cpu_log"; }
cpu_secs() { tail -1 "$cpu_log" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] } printf "%.1f", t }'; }
load_summary() {
  sort -n "$load_log" | awk '{ v[NR] = $1 } END { if (NR) printf "min %s, median %s, max %s", v[1], v[int((NR + 1) / 2)], v[NR] }'
}

rc=0
for step in "${steps[@]}"; do
  [ -n "${step_cmd[$step]:-}" ] || { echo "fresh_machine: unknown step $step (demo, apt, install, testdeps)" >&2; exit 2; }
  : >"$load_log"
  (while :; do cut -d' ' -f1 /proc/loadavg >>"$load_log"; sleep 5; done) &
  sampler=$!
  echo "== $step: ${step_cmd[$step]%%;*} (timeout ${timeout_s} s), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  read -r n0 b0 < <(debs)
  rx0=$(rx)
  cpu_now; c0=$(cpu_secs)
  t0=$(now)
  src=0
  timeout -k 30 "$timeout_s" unshare --mount --pid --uts --ipc --fork --kill-child --propagation private \
    -- bash -c "$inner" inner "$root" "${step_cmd[$step]}" </dev/null || src=$?
  t1=$(now)
  cpu_now; c1=$(cpu_secs)
  rx1=$(rx)
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  sampler=""
  read -r n1 b1 < <(debs)

  echo "== $step: exit $src, wall $(secs "$t0" "$t1") s, CPU $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.0f", b - a }') s (user + sys)"
  # Phase ends, from what each phase left on the fresh machine's disk.
  lists_end="$(last_ctime "${t0%.*}" "$root/var/lib/apt/lists")"
  debs_end="$(last_ctime "${t0%.*}" "$archives")"
  apt_end="$(sed -n 's/^End-Date: //p' "$root/var/log/apt/history.log" 2>/dev/null | tail -1)"
  [ -z "$apt_end" ] || apt_end="$(date -d "$apt_end" +%s)"
  [ -n "$apt_end" ] && [ "$apt_end" -ge "${t0%.*}" ] || apt_end=""
  phase "apt-get update (indexes)" "$t0" "$lists_end"
  phase "apt download" "$lists_end" "$debs_end"
  phase "dpkg unpack and configure" "$debs_end" "$apt_end"
  phase "apt, all of it" "$t0" "$apt_end"
  if [ "$step" = demo ]; then
    b="$root/root/agentbox/build"
    cmake_end="$(stat -c %Y "$b/build.ninja" 2>/dev/null || true)"
    build_end="$(stat -c %Z "$b/cli/agentbox" 2>/dev/null || true)"
    phase "cmake configure" "$apt_end" "$cmake_end"
    phase "build agentbox and strip" "$cmake_end" "$build_end"
    phase "doctor and the demo box" "$build_end" "$t1"
  fi
  echo "  apt installed $((n1 - n0)) packages, $(((b1 - b0) / 1000000)) MB of .deb"
  echo "  $iface received $(((rx1 - rx0) / 1000000)) MB in the step (indexes and .debs; other traffic on this machine too)"
  echo "  load average (1 min) during the step: $(load_summary)"
  [ "$src" = 0 ] || { rc=$src; break; }
done
echo "disk used by the fresh machine: $(du -sm "$root" | cut -f1) MB$([ "${FRESH_KEEP:-0}" = 1 ] || echo ", deleted now")"
exit "$rc"
