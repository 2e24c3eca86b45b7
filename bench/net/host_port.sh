#!/usr/bin/env bash
# --host-port's relay side by side with the other ways a box's curl reaches a server on host
# loopback: curl on the host itself (no box), and through the stack (--raw-tcp + --connect-to).
# One python http.server on 127.0.0.1 serves SIZE MiB of random bytes; rounds are interleaved so
# the machine's load hits all three alike; curl's average download speed in MB/s per run.
#
#   bench/net/host_port.sh [AGENTBOX] [ROUNDS] [SIZE_MIB]   (defaults: build/cli/agentbox, 5, 256)
set -euo pipefail
ab="$(realpath "${1:-build/cli/agentbox}")"
rounds="${2:-5}"
size="${3:-256}"
dir="$(mktemp -d)"
head -c "$((size << 20))" /dev/urandom >"$dir/blob"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
speed='%{speed_download}\n'
mbps() { awk '{ printf "%.0f\n", $1 / 1e6 }'; }
for r in $(seq "$rounds"); do
  echo "round $r direct $(curl -s -o /dev/null -w "$speed" "http://127.0.0.1:$port/blob" | mbps)"
  echo "round $r host-port $("$ab" run -q --cpu-priority normal --host-port "$port" -- \
    curl -s -o /dev/null -w "$speed" "http://127.0.0.1:$port/blob" | mbps)"
  echo "round $r stack $("$ab" run -q --cpu-priority normal --raw-tcp "h.test:$port" \
    --connect-to "h.test:$port:127.0.0.1:$port" -- \
    curl -s -o /dev/null -w "$speed" "http://h.test:$port/blob" | mbps)"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
