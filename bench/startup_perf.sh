#!/usr/bin/env bash
# CPU and page faults of a start (perf stat: the whole process tree, kernel work in it included)
# for `agentbox run -q -- true`, issue 13's typical agent bwrap profile (as in bench/startup.sh)
# and `setpriv ... /bin/true` alone (the wrapper's share, to subtract), alternated round after
# round, as USER. Prints the median task-clock (ms) and page faults of each. Run as root.
#
#   bench/startup_perf.sh [AGENTBOX] [ROUNDS] [USER]   (defaults: build/cli/agentbox, 15, agentbox-test)
#   AGENTBOX_BASE=OTHER_BUILD bench/startup_perf.sh ...   also OTHER_BUILD, in the same rounds (which
#     of the two goes first alternates), and `--version` of both: the exec, the dynamic linker's
#     relocations and the static constructors, with next to nothing of `main`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="$(realpath "${1:-$here/../build/cli/agentbox}")"
rounds="${2:-15}"
user="${3:-agentbox-test}"
command -v perf >/dev/null || { echo "startup_perf.sh: perf is not installed" >&2; exit 2; }
tmp="$(mktemp -d /tmp/agentbox-perf-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
ws="$tmp/ws"
home="$tmp/home"
mkdir -p "$ws/.git/hooks" "$home"
chown -R "$user:" "$tmp"
cd "$ws"
# The typical agent profile (bench/bwrap_typical.sh).
source "$here/bwrap_typical.sh"
bwrap_typical "$home" "$ws"
as_user=(setpriv --reuid "$user" --regid "$user" --clear-groups env HOME="$home"
         XDG_STATE_HOME="$tmp/state")
one() {  # NAME CMD...: "NAME EVENT VALUE" lines
  local name=$1
  shift
  perf stat -x, -e task-clock,page-faults -- "$@" 2>&1 >/dev/null |
    awk -F, -v n="$name" '$3 != "" { print n, $3, $1 }'
}
base="${AGENTBOX_BASE:+$(realpath "$AGENTBOX_BASE")}"
names=(agentbox bwrap-typical setpriv)
[[ -n $base ]] && names+=(agentbox-base agentbox-version base-version)
pair() {  # ROUND: the new build and the base, which goes first alternating
  local tags=(agentbox base) t bin
  ((${1} % 2 == 0)) || tags=(base agentbox)
  for t in "${tags[@]}"; do
    if [[ $t == agentbox ]]; then bin=$agentbox; else bin=$base; fi
    one "${t/#base/agentbox-base}" "${as_user[@]}" "$bin" run -q -- true
    one "$t-version" "${as_user[@]}" "$bin" --version
  done
}
for ((r = 0; r < rounds; r++)); do
  if [[ -n $base ]]; then pair "$r"; else one agentbox "${as_user[@]}" "$agentbox" run -q -- true; fi
  one bwrap-typical "${as_user[@]}" "${bt[@]}"
  one setpriv "${as_user[@]}" /bin/true
done >"$tmp/out"
printf 'perf stat, %d alternated rounds as %s (load %s): median task-clock ms, page faults\n' \
  "$rounds" "$user" "$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/out" "${names[@]}" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, event, value = line.split()
    d[(name, event)].append(float(value))
med = {k: statistics.median(v) for k, v in d.items()}
for n in sys.argv[2:]:
    print(f"  {n:16} {med[(n, 'task-clock')]:8.2f} ms {med[(n, 'page-faults')]:6.0f} faults")
a = med[("agentbox", "task-clock")] - med[("setpriv", "task-clock")]
b = med[("bwrap-typical", "task-clock")] - med[("setpriv", "task-clock")]
print(f"  less setpriv: agentbox {a:.2f} ms, bwrap-typical {b:.2f} ms, ratio {a / b:.2f}")
if ("agentbox-base", "task-clock") in med:
    x = med[("agentbox-base", "task-clock")] - med[("setpriv", "task-clock")]
    print(f"  less setpriv: AGENTBOX_BASE {x:.2f} ms; agentbox / AGENTBOX_BASE {a / x:.3f}")
PY
