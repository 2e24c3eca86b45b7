#!/usr/bin/env bash
# Startup cost of a box: `agentbox run -q -- true` against bubblewrap with an equivalent profile,
# against the typical agent bwrap profile of issue 13 (`--unshare-all --die-with-parent
# --new-session --clearenv`, /usr and /etc read-only, tmpfs /tmp and HOME, the workspace
# read-write) and against bare `unshare -Urmnp --fork true` (the floor: namespaces, no mounts).
# All run interleaved, round after round (rotating which goes first), so machine load hits all
# alike; prints the median and 90th percentile of each and the ratios of the medians. Run it as
# the user to measure (e.g. `runuser -u agentbox-test -- bench/startup.sh`).
#
#   bench/startup.sh [AGENTBOX] [ROUNDS]      (defaults: build/cli/agentbox, 200)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="${1:-$here/../build/cli/agentbox}"
rounds="${2:-200}"
[[ -x "$agentbox" ]] || { echo "startup.sh: no agentbox binary at $agentbox" >&2; exit 2; }
agentbox="$(realpath "$agentbox")"
command -v bwrap >/dev/null || { echo "startup.sh: bwrap is not installed" >&2; exit 2; }

tmp="$(mktemp -d /tmp/agentbox-bench-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
ws="$tmp/ws"
home="$tmp/home"
mkdir -p "$ws/.git/hooks" "$home"
export HOME="$home" XDG_STATE_HOME="$tmp/state"
cd "$ws"

# bubblewrap with what agentbox sets up: all namespaces, system trees read-only (merged-/usr
# links recreated), the same /etc files, /proc, /dev, tmpfs HOME and /tmp, the workspace
# read-write, the protected paths read-only, a new session, death with the parent, a clean env.
bw=(bwrap --unshare-all --die-with-parent --new-session --clearenv
    --setenv PATH /usr/local/bin:/usr/bin:/bin --setenv HOME "$home")
for d in /usr /bin /sbin /lib /lib32 /lib64 /libx32 /opt; do
  if [[ -L $d ]]; then bw+=(--symlink "$(readlink "$d")" "$d")
  elif [[ -d $d ]]; then bw+=(--ro-bind "$d" "$d"); fi
done
for e in ssl ca-certificates ca-certificates.conf alternatives ld.so.cache ld.so.conf \
         ld.so.conf.d nsswitch.conf host.conf gai.conf localtime timezone os-release \
         debian_version gitconfig mime.types protocols services inputrc bash.bashrc profile \
         profile.d shells terminfo locale.alias login.defs passwd group hosts; do
  [[ -e /etc/$e ]] && bw+=(--ro-bind "/etc/$e" "/etc/$e")
done
bw+=(--proc /proc --dev /dev --tmpfs /tmp --tmpfs "$home" --bind "$ws" "$ws"
     --ro-bind "$ws/.git/hooks" "$ws/.git/hooks" --chdir "$ws" true)

# The typical agent profile: what agent sandboxes built on bwrap pass (the merged-/usr links so
# that `true` is found on the default PATH).
bt=(bwrap --unshare-all --die-with-parent --new-session --clearenv --ro-bind /usr /usr
    --ro-bind /etc /etc)
for d in /bin /sbin /lib /lib64; do
  [[ -L $d ]] && bt+=(--symlink "$(readlink "$d")" "$d")
done
bt+=(--proc /proc --dev /dev --tmpfs /tmp --tmpfs "$home" --bind "$ws" "$ws" --chdir "$ws" true)

names=(agentbox bwrap bwrap-typical unshare)
run_one() {
  case $1 in
    agentbox) "$agentbox" run -q -- true ;;
    bwrap) "${bw[@]}" ;;
    bwrap-typical) "${bt[@]}" ;;
    unshare) unshare -Urmnp --fork true ;;
  esac
}

# Each must work before it is timed.
for n in "${names[@]}"; do
  run_one "$n" >/dev/null 2>&1 || { echo "startup.sh: $n does not run here" >&2; exit 1; }
done
# shellcheck source=interleave.sh
. "$here/interleave.sh"
interleave "$tmp" "$rounds" "${names[@]}"
stat() { median_p90 "$tmp" "$1"; }
read -r am ap < <(stat agentbox)
read -r bm bp < <(stat bwrap)
read -r tm tp < <(stat bwrap-typical)
read -r um up < <(stat unshare)
printf 'startup, %d interleaved rounds (%s, %s cpus, load %s)\n' "$rounds" "$(uname -r)" \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-34s median %7.2f ms   p90 %7.2f ms\n' "agentbox run -- true" "$am" "$ap"
printf '  %-34s median %7.2f ms   p90 %7.2f ms\n' "bwrap (equivalent profile) true" "$bm" "$bp"
printf '  %-34s median %7.2f ms   p90 %7.2f ms\n' "bwrap (typical agent profile) true" "$tm" "$tp"
printf '  %-34s median %7.2f ms   p90 %7.2f ms\n' "unshare -Urmnp --fork true" "$um" "$up"
awk -v a="$am" -v b="$bm" -v t="$tm" -v u="$um" 'BEGIN {
  printf "  agentbox / bwrap   = %.2f\n  agentbox / bwrap-typical = %.2f\n", a / b, a / t
  printf "  agentbox / unshare = %.2f\n", a / u }'
