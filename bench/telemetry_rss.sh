#!/usr/bin/env bash
# OTLP export under load (issue 17): the supervisor's RSS while the box makes ~RATE audit events a
# second (distinct denied DNS names, one dns.query line each) for SECS seconds, exported to a
# loopback OTLP receiver, against the same session idle (the box sleeps) with the same telemetry
# config. Goal: the flood's peak RSS within 8 MiB of the idle session's. Also: the flood without
# telemetry (what the events themselves cost), and a dead collector (every line queued, then
# dropped: the queue's bound is what holds the RSS). Scenarios run interleaved, ROUNDS times;
# each flood's column shows the DNS lines the session's log holds per second (what the box made
# the supervisor write, not what the flood asked for).
#
# The box runs at --cpu-priority ${PRIORITY:-normal}: at the default (background, nice 10) a
# machine at load 20 gives the flood too little CPU to send 10,000 names a second (7,800/s
# measured), and the goal is about the supervisor's memory, not the box's share of the CPU.
# Beside it, when built, build/bench/otlp_rss_bench drives the real audit sink and exporter at
# RATE in one process against the same receiver (no box, no tap: the export path alone).
#
#   bench/telemetry_rss.sh [AGENTBOX] [ROUNDS] [SECS]   (RATE=10000; root or a user with a box)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../build/cli/agentbox}"
rounds="${2:-3}"
secs="${3:-10}"
rate="${RATE:-10000}"
prio="${PRIORITY:-normal}"
exporter_bench="$(dirname "$bin")/../bench/otlp_rss_bench"

tmp="$(mktemp -d /tmp/agentbox-telemetry-XXXXXX)"
chmod 755 "$tmp"
srv=""
cleanup() {
  [[ -n $srv ]] && { kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT

# A receiver that reads each POST and answers 200 (keeps nothing).
cat > "$tmp/recv.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        while n > 0:
            n -= len(self.rfile.read(min(n, 1 << 20)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
python3 "$tmp/recv.py" "$tmp/port" & srv=$!
for _ in $(seq 100); do [[ -s $tmp/port ]] && break; sleep 0.05; done
port="$(cat "$tmp/port")"
dead="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

# The box's event source: RATE distinct denied names a second, fire and forget, paced. In C
# (built here with the host's cc) so that a loaded machine still reaches the rate; python if
# there is no compiler.
cat > "$tmp/flood.c" <<'C'
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char** argv) {
  long rate = atol(argv[1]);
  double secs = atof(argv[2]);
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
  inet_pton(AF_INET, "10.0.2.3", &a.sin_addr);
  double t0 = now();
  long i = 0;
  char pkt[128], name[64], buf[512];
  while (now() - t0 < secs) {
    long due = (long)((now() - t0) * rate);
    for (; i < due; ++i) {
      unsigned char* p = (unsigned char*)pkt;
      memset(p, 0, 12);
      p[0] = (unsigned char)(i >> 8), p[1] = (unsigned char)i, p[2] = 1, p[5] = 1;
      size_t n = 12;
      int len = snprintf(name, sizeof name, "n%ld", i);
      p[n++] = (unsigned char)len;
      memcpy(p + n, name, (size_t)len), n += (size_t)len;
      memcpy(p + n, "\5flood\5bench\4test\0\0\1\0\1", 21), n += 21;
      (void)sendto(s, pkt, n, 0, (struct sockaddr*)&a, sizeof a);
      while (recv(s, buf, sizeof buf, 0) > 0) {
      }
    }
    usleep(1000);
  }
  printf("sent %ld\n", i);
  return 0;
}
C
cat > "$tmp/flood.py" <<'PY'
import socket, struct, sys, time
rate, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
t0 = time.monotonic(); i = 0
while time.monotonic() - t0 < secs:
    due = int((time.monotonic() - t0) * rate)
    while i < due:
        q = f"n{i}.flood.bench.test"
        pkt = struct.pack('>HHHHHH', i & 0xffff, 0x0100, 1, 0, 0, 0)
        pkt += b''.join(bytes([len(l)]) + l.encode() for l in q.split('.')) + b'\0'
        try: s.sendto(pkt + struct.pack('>HH', 1, 1), ('10.0.2.3', 53))
        except BlockingIOError: pass
        i += 1
        try:
            while True: s.recv(512)
        except BlockingIOError: pass
    time.sleep(0.001)
print("sent", i)
PY
if cc -O2 -o "$tmp/flood" "$tmp/flood.c" 2>/dev/null; then
  flood_cmd="$tmp/flood"
else
  flood_cmd="python3 $tmp/flood.py"
fi

config() {  # $1: endpoint port or "none"
  mkdir -p "$tmp/cfg-$1/agentbox"
  if [[ $1 == none ]]; then : > "$tmp/cfg-$1/agentbox/config.toml"; else
    printf '[telemetry]\notlp_endpoint = "http://127.0.0.1:%s/v1/logs"\n' "$1" \
      > "$tmp/cfg-$1/agentbox/config.toml"; fi
  echo "$tmp/cfg-$1"
}

# Peak VmRSS (KiB) of the agentbox supervisor while it runs `sh -c SCRIPT`, and the DNS lines a
# second its log got ("KIB RATE").
peak() {  # $1: config dir, $2: script
  XDG_CONFIG_HOME="$1" XDG_STATE_HOME="$tmp/state" "$bin" run -q --cpu-priority "$prio" \
    --ro "$tmp" -- sh -c "$2" > "$tmp/out" 2> "$tmp/err" &
  local pid=$! max=0 v
  while kill -0 "$pid" 2>/dev/null; do
    v="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
    [[ -n $v && $v -gt $max ]] && max=$v
    sleep 0.1
  done
  wait "$pid" || { echo "agentbox failed: $(cat "$tmp/err")" >&2; exit 1; }
  local log n
  log="$(ls -t "$tmp"/state/agentbox/sessions/*/audit.jsonl | head -1)"
  n="$(grep -c '"type":"dns' "$log" || true)"
  echo "$max $((n / secs))"
}

ok="$(config "$port")"; none="$(config none)"; gone="$(config "$dead")"
flood="$flood_cmd $rate $secs"
printf '%-6s %10s %20s %20s %20s   (peak VmRSS MiB, DNS lines/s; priority %s; load %s)\n' \
  round idle+otlp flood+otlp flood-no-otlp flood+dead-otlp "$prio" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  read -r a _ < <(peak "$ok" "sleep $secs")
  read -r b br < <(peak "$ok" "$flood")
  read -r c cr < <(peak "$none" "$flood")
  read -r d dr < <(peak "$gone" "$flood")
  awk -v r="$r" -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v br="$br" -v cr="$cr" -v dr="$dr" \
    'BEGIN { printf "%-6s %10.1f %12.1f @%6d/s %12.1f @%6d/s %12.1f @%6d/s   flood+otlp - idle = %.1f MiB\n",
      r, a/1024, b/1024, br, c/1024, cr, d/1024, dr, (b-a)/1024 }'
  if [[ -x $exporter_bench ]]; then
    echo "       exporter alone: $("$exporter_bench" "http://127.0.0.1:$port/v1/logs" "$rate" "$secs")"
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
log="$(ls -t "$tmp"/state/agentbox/sessions/*/audit.jsonl | sed -n 3p)"
n="$(grep -c '"type":"dns' "$log" || true)"
echo "DNS events in the last flood+otlp session: $n ($((n / secs))/s); audit lines: $(wc -l < "$log")"
grep -o '"type":"telemetry.export"[^}]*' "$log" | tail -1
