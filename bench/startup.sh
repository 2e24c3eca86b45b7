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
#   AGENTBOX_BASE=OTHER_BUILD bench/startup.sh ...   also times OTHER_BUILD, interleaved
# A second pass (bench/cpu_pass.py) gives each variant's CPU (all its processes) beside its wall.
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

# The typical agent profile (bench/bwrap_typical.sh).
source "$here/bwrap_typical.sh"
bwrap_typical "$home" "$ws"

names=(agentbox bwrap bwrap-typical unshare)
# AGENTBOX_BASE=BINARY adds that build as a fifth variant (before/after, interleaved).
# Resolved once here: a realpath in argv_of would be one more exec inside the timed run.
base="${AGENTBOX_BASE:+$(realpath "$AGENTBOX_BASE")}"
[[ -n $base ]] && names+=(agentbox-base)
argv_of() {
  case $1 in
    agentbox) printf '%s\n' "$agentbox" run -q -- true ;;
    agentbox-base) printf '%s\n' "$base" run -q -- true ;;
    bwrap) printf '%s\n' "$(command -v bwrap)" "${bw[@]:1}" ;;
    bwrap-typical) printf '%s\n' "$(command -v bwrap)" "${bt[@]:1}" ;;
    unshare) printf '%s\n' "$(command -v unshare)" -Urmnp --fork true ;;
  esac
}
run_one() {
  local a
  mapfile -t a < <(argv_of "$1")
  "${a[@]}"
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
if [[ -n $base ]]; then
  read -r xm xp < <(stat agentbox-base)
  printf '  %-34s median %7.2f ms   p90 %7.2f ms\n' "AGENTBOX_BASE run -- true" "$xm" "$xp"
fi

# CPU: user + system of each variant's whole process tree (wait4), and wall again, in a second
# interleaved pass of the same rounds (bench/cpu_pass.py).
for n in "${names[@]}"; do argv_of "$n" >"$tmp/$n.argv"; done
printf '  CPU pass, %d interleaved rounds (load %s): median wall / CPU (all processes)\n' "$rounds" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$here/cpu_pass.py" "$tmp" "$rounds" "${names[@]}" | awk '
  { w[$1] = $2; c[$1] = $3; printf "  %-34s %7.2f ms / %7.2f ms\n", $1, $2, $3 }
  END { printf "  agentbox / bwrap-typical: wall %.2f, CPU %.2f\n", w["agentbox"] / w["bwrap-typical"],
          c["agentbox"] / c["bwrap-typical"]
        if ("agentbox-base" in c) printf "  agentbox / AGENTBOX_BASE: wall %.2f, CPU %.2f\n",
          w["agentbox"] / w["agentbox-base"], c["agentbox"] / c["agentbox-base"] }'
