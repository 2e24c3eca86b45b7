#!/usr/bin/env bash
# The terminal filter's cost on an output flood: `agentbox run -- CMD` under a pty (the outer side
# drained as fast as it comes), with the filter on (the default) and off (`[terminal] filter =
# false`), interleaved round after round (alternating which goes first) so machine load hits both
# alike. Two floods of SIZE bytes: NUL bytes (`head -c SIZE /dev/zero`, the filter's fast path)
# and coloured UTF-8 text (SGR sequences and box-drawing characters in every line, the slow path).
# Prints each run, the median of each side and the ratio of the medians.
#
#   bench/terminal_filter.sh [AGENTBOX] [ROUNDS] [SIZE]   (defaults: build/cli/agentbox, 5, 1G)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agentbox="${1:-$here/../build/cli/agentbox}"
rounds="${2:-5}"
size="${3:-1G}"
[[ -x "$agentbox" ]] || { echo "terminal_filter.sh: no agentbox binary at $agentbox" >&2; exit 2; }
agentbox="$(realpath "$agentbox")"

tmp="$(mktemp -d /tmp/agentbox-bench-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/ws" "$tmp/home" "$tmp/on/agentbox" "$tmp/off/agentbox"
: > "$tmp/on/agentbox/config.toml"
printf '[terminal]\nfilter = false\n' > "$tmp/off/agentbox/config.toml"
export HOME="$tmp/home" XDG_STATE_HOME="$tmp/state"
cd "$tmp/ws"

exec python3 - "$agentbox" "$rounds" "$size" "$tmp" <<'PY'
import os, pty, statistics, sys, time
agentbox, rounds, size, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
line = "\x1b[1;32mok\x1b[0m \x1b[38;5;208m\u2500\u2500\u2502\x1b[m some plain text of a log line 0123456789"
floods = {
    "zeros": ["head", "-c", size, "/dev/zero"],
    "sgr-text": ["sh", "-c", f"yes '{line}' | head -c {size}"],
}

def once(side, cmd):
    env = dict(os.environ, XDG_CONFIG_HOME=f"{tmp}/{side}", TERM="xterm-256color")
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(agentbox, [agentbox, "run", "-q", "--"] + cmd, env)
    t0 = time.monotonic()
    n = 0
    while True:
        try:
            b = os.read(fd, 1 << 16)
        except OSError:
            break
        if not b:
            break
        n += len(b)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return time.monotonic() - t0, n, status

for name, cmd in floods.items():
    times = {"on": [], "off": []}
    for r in range(rounds):
        order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
        for side in order:
            secs, n, status = once(side, cmd)
            times[side].append(secs)
            print(f"{name} round {r} filter {side}: {secs:.2f} s, {n / secs / 1e6:.0f} MB/s "
                  f"({n} bytes, status {status})", flush=True)
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(f"{name}: median filter on {on:.2f} s, off {off:.2f} s, on/off {on / off:.3f}",
          flush=True)
PY
