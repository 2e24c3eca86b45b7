#!/usr/bin/env bash
# Start-up cost of an agent profile (issue 15): `agentbox run --profile claude -q -- true` against
# plain `agentbox run -q -- true`, and the same profile running a program installed under HOME as
# npm lays it out (~/.npm-global/bin/agent -> ../lib/node_modules/@acme/agent/cli.sh, resolved on
# the caller's PATH and shown read-only: program resolution, extra mounts). The profile's
# credential is set, so its placeholder, the session CA and the trust bundle are all made. The
# variants run interleaved, round after round (rotating which goes first), so machine load hits
# all alike; prints the median and 90th percentile of each and the ratios to plain.
#
#   bench/startup_profile.sh [AGENTBOX] [ROUNDS] [PROFILE]   (defaults: build/cli/agentbox, 100,
#                                                            claude)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="${1:-$here/../build/cli/agentbox}"
rounds="${2:-100}"
profile="${3:-claude}"
[[ -x "$agentbox" ]] || { echo "startup_profile.sh: no agentbox binary at $agentbox" >&2; exit 2; }
agentbox="$(realpath "$agentbox")"

tmp="$(mktemp -d /tmp/agentbox-bench-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
ws="$tmp/ws"
home="$tmp/home"
mkdir -p "$ws/.git/hooks" "$home"
export HOME="$home" XDG_STATE_HOME="$tmp/state" XDG_CONFIG_HOME="$tmp/config"
export ANTHROPIC_API_KEY="sk-ant-api03-$(head -c 60 /dev/urandom | base64 | tr -dc A-Za-z0-9 | head -c 80)"
pkg="$home/.npm-global/lib/node_modules/@acme/agent"
mkdir -p "$pkg" "$home/.npm-global/bin"
printf '{"name":"@acme/agent","bin":{"agent":"cli.sh"}}\n' >"$pkg/package.json"
printf '#!/bin/sh\nexit 0\n' >"$pkg/cli.sh"
chmod 755 "$pkg/cli.sh"
ln -s ../lib/node_modules/@acme/agent/cli.sh "$home/.npm-global/bin/agent"
export PATH="$home/.npm-global/bin:$PATH"
cd "$ws"

names=(plain profile installed)
run_one() {
  case $1 in
    plain) "$agentbox" run -q -- true ;;
    profile) "$agentbox" run --profile "$profile" -q -- true ;;
    installed) "$agentbox" run --profile "$profile" -q -- agent ;;
  esac
}

for n in "${names[@]}"; do
  run_one "$n" >/dev/null 2>&1 || { echo "startup_profile.sh: $n does not run here" >&2; exit 1; }
done
# shellcheck source=interleave.sh
. "$here/interleave.sh"
interleave "$tmp" "$rounds" "${names[@]}"
stat() { median_p90 "$tmp" "$1"; }
read -r pm pp < <(stat plain)
read -r fm fp < <(stat profile)
read -r im ip < <(stat installed)
printf 'startup with a profile, %d interleaved rounds (%s, %s cpus, load %s, uid %s)\n' "$rounds" \
  "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(id -u)"
printf '  %-44s median %7.2f ms   p90 %7.2f ms\n' "agentbox run -q -- true" "$pm" "$pp"
printf '  %-44s median %7.2f ms   p90 %7.2f ms\n' "agentbox run --profile $profile -q -- true" "$fm" "$fp"
printf '  %-44s median %7.2f ms   p90 %7.2f ms\n' "  ... -- agent (npm prefix under HOME)" "$im" "$ip"
awk -v p="$pm" -v f="$fm" -v i="$im" 'BEGIN {
  printf "  profile / plain   = %.2f\n  installed / plain = %.2f\n", f / p, i / p }'
