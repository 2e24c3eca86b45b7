#!/usr/bin/env bash
# HTTP/2 against HTTP/1.1 through interception (issue 15): curl in the box (`agentbox run`)
# against node's http2 server (tests/integration/data/h2_upstream.js, both protocols on one
# port) on loopback, the host intercepted (a credential is scoped to it). Interleaved rounds:
# each round runs every variant once, so load on the shared machine hits all alike.
#   bench/proxy/h2_bench.sh [ROUNDS] [MIB] [REQUESTS]    (defaults 5, 128, 200)
# Prints, per protocol, median over rounds of:
#   download MB/s   one MIB-MiB download, in the box (intercepted) and directly (curl outside)
#   reused ms       the median time of REQUESTS-1 small GETs on one kept-alive connection
#                   and (p10) their 10th percentile: on a loaded machine the times are bimodal
#                   (a request either finds the CPUs it needs or waits ms for them), the median
#                   then follows the load and the low percentile the path's own cost
#                   (the first, which connects, left out), in the box and directly
#   new ms          NEW pairs of single GETs, each on a new connection (curl run anew), an
#                   HTTP/1.1-only curl then an h2-offering one, in the box and directly (curl
#                   trusting only the one CA it needs on both sides: loading the box's whole
#                   bundle would dominate): the median over pairs of h2 - http/1.1, for the
#                   handshake (time_appconnect) and the whole GET (time_total). In the box an
#                   h2-offering client's handshake is answered only once the upstream picked its
#                   protocol; an HTTP/1.1-only one's at once, the upstream connected meanwhile.
#   pass ms         (PARTS=pass) the reused GETs in the box with the host passed through (no
#                   credential names it: the box's curl speaks TLS to node itself, spliced by the
#                   translator): the floor of the box's path for the same two endpoints, without
#                   the relay; "box - pass" is then what interception itself adds per request
#   relay ms        (PARTS=relay) the same GETs by curl on the host through agentbox's proxy
#                   alone (build/bench/proxy/bench_h2_proxy relay: the real ProxyHandler,
#                   injection and scrub included, no box, no translator) in front of node
# NEW=N pairs per round (default 40); PARTS="dl reused new pass relay" picks the measurements
# (default "dl reused new").
# AGENTBOX=path overrides the binary (default build/cli/agentbox); AGENTBOX_BASE=path adds a
# second binary (main's, say) measured in the same rounds, the two alternated and their order
# swapped every round (rows "base ..."). Timings are printed, never asserted.
set -euo pipefail
rounds=${1:-5}
mib=${2:-128}
reqs=${3:-200}
new=${NEW:-40}
parts=${PARTS:-dl reused new}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${AGENTBOX:-$root/build/cli/agentbox}
base=${AGENTBOX_BASE:-}
host=api.bench.test
dir=$(mktemp -d /tmp/agentbox-h2bench-XXXXXX)
server=
relay_in=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null
  [ -n "$relay_in" ] && exec 9>&-
  rm -rf "$dir"
}
trap cleanup EXIT

(cd "$dir" &&
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.pem -days 2 -subj '/CN=bench CA' &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
    -out srv.csr -subj "/CN=$host" &&
  printf 'subjectAltName=DNS:%s\n' "$host" >ext.cnf &&
  openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem \
    -days 2 -extfile ext.cnf) >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node "$root/tests/integration/data/h2_upstream.js" "$dir" "$port" >/dev/null 2>&1 &
server=$!
for _ in $(seq 100); do [ -e "$dir/ready" ] && break; sleep 0.1; done
case " $parts " in *" relay "*)
  # The proxy alone, until its stdin (fd 9 here) closes.
  exec 9> >("$root/build/bench/proxy/bench_h2_proxy" relay "$dir" "$port" "$dir/ca.pem")
  relay_in=1
  for _ in $(seq 100); do [ -e "$dir/relay-port" ] && break; sleep 0.1; done ;;
esac
mkdir -p "$dir/cfg/agentbox" "$dir/ws"
cat >"$dir/cfg/agentbox/config.toml" <<EOF
[network]
allow = ["$host"]
[credentials.api]
env = "API_TOKEN"
from = "env:REAL_API"
hosts = ["$host"]
EOF
# Passthrough: the host allowed, no credential (nothing intercepts it); curl trusts the test CA.
mkdir -p "$dir/cfgpass/agentbox"
printf '[network]\nallow = ["%s"]\n' "$host" >"$dir/cfgpass/agentbox/config.toml"
cp "$dir/ca.pem" "$dir/ws/upstream-ca.pem"
# One -o per URL: curl pairs each -o with one URL, and the bodies of the others would go to
# stdout among the timings (a median over both was half the fastest request).
urls=$(for _ in $(seq "$reqs"); do printf -- '-o /dev/null https://%s/echo/x ' "$host"; done)
# Median of the numbers on stdin.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# "MEDIAN P10" of the numbers on stdin.
spread() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[int((NR+9)/10)]}'; }
# `sh -c SCRIPT` in the box, the host intercepted (BOX: the binary, default $bin). The box at
# the priority of the curl it is compared with: at the default (background, nice 10) a loaded
# machine gives it so little CPU that its own wait, not the proxy, is the figure.
inbox() {
  (cd "$dir/ws" && REAL_API=ghp_BenchRealToken0123456789abcdefABCDEF XDG_CONFIG_HOME="$dir/cfg" \
    "${BOX:-$bin}" run -q --cpu-priority normal --upstream-ca "$dir/ca.pem" --connect-to "$host:443:127.0.0.1:$port" \
    -- sh -c "$1")
}
# The same with the host passed through (BOX as above).
passbox() {
  (cd "$dir/ws" && XDG_CONFIG_HOME="$dir/cfgpass" "${BOX:-$bin}" run -q --cpu-priority normal \
    --connect-to "$host:443:127.0.0.1:$port" -- sh -c "$1 --cacert $dir/ws/upstream-ca.pem")
}
# curl on the host through the proxy alone (PARTS=relay), with the placeholder.
viarelay() {
  sh -c "$1 --cacert $dir/relay-ca.pem --connect-to $host:443:127.0.0.1:$(cat "$dir/relay-port") \
    -H 'Authorization: Bearer $(cat "$dir/relay-key")'"
}
direct() { sh -c "$1 --cacert $dir/ca.pem --connect-to $host:443:127.0.0.1:$port"; }
download="curl -s -o /dev/null -w '%{speed_download}\n' https://$host/bytes/$((mib << 20))"
reused="curl -s -w '%{time_total}\n' $urls"

# One line per pair: "DIFF_HANDSHAKE DIFF_TOTAL" (h2 - http/1.1, seconds); ARGS are curl's.
newconn="for i in \$(seq $new); do \
  a=\$(curl -s -o /dev/null -w '%{time_appconnect} %{time_total}' --http1.1 ARGS https://$host/echo/n); \
  b=\$(curl -s -o /dev/null -w '%{time_appconnect} %{time_total}' --http2 ARGS https://$host/echo/n); \
  echo \$a \$b | awk '{print \$3 - \$1, \$4 - \$2}'; done"
boxca='--cacert /etc/agentbox/certs/$(ls /etc/agentbox/certs | head -n 1)'

declare -A res
newpairs=$dir/newpairs
boxes=(box)
[ -z "$base" ] || boxes=(box base)
for r in $(seq "$rounds"); do
  order=("${boxes[@]}")
  [ $((r % 2)) = 1 ] || order=($(printf '%s\n' "${boxes[@]}" | tac))
  for proto in http1.1 http2; do
    for b in "${order[@]}"; do
      box=$bin
      [ "$b" = box ] || box=$base
      case " $parts " in *" dl "*)
        res[${b}_dl_$proto]+="$(BOX=$box inbox "${download/curl/curl --$proto}") " ;;
      esac
      case " $parts " in *" reused "*)
        read -r m p < <(BOX=$box inbox "${reused/curl/curl --$proto}" | tail -n +2 | spread)
        res[${b}_lat_$proto]+="$m "
        res[${b}_p10_$proto]+="$p " ;;
      esac
      case " $parts " in *" pass "*)
        read -r m p < <(BOX=$box passbox "${reused/curl/curl --$proto}" | tail -n +2 | spread)
        res[${b}_pass_$proto]+="$m "
        res[${b}_passp10_$proto]+="$p " ;;
      esac
    done
    case " $parts " in *" dl "*)
      res[direct_dl_$proto]+="$(direct "${download/curl/curl --$proto}") " ;;
    esac
    case " $parts " in *" reused "*)
      read -r m p < <(direct "${reused/curl/curl --$proto}" | tail -n +2 | spread)
      res[direct_lat_$proto]+="$m "
      res[direct_p10_$proto]+="$p " ;;
    esac
    case " $parts " in *" relay "*)
      read -r m p < <(viarelay "${reused/curl/curl --$proto}" | tail -n +2 | spread)
      res[relay_$proto]+="$m "
      res[relayp10_$proto]+="$p " ;;
    esac
  done
  case " $parts " in *" new "*)
    inbox "${newconn//ARGS/$boxca}" | sed 's/^/box /' >>"$newpairs"
    sh -c "${newconn//ARGS/--cacert $dir/ca.pem --connect-to $host:443:127.0.0.1:$port}" |
      sed 's/^/direct /' >>"$newpairs" ;;
  esac
  echo "round $r done" >&2
done
mbps() { tr ' ' '\n' | grep . | median | awk '{printf "%.0f", $1 / 1e6}'; }
ms() { tr ' ' '\n' | grep . | median | awk '{printf "%.3f", $1 * 1e3}'; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); rounds $rounds, ${mib} MiB, $reqs requests"
printf '%-14s %12s %12s %12s %12s %10s %10s %10s %10s\n' protocol "box MB/s" "direct MB/s" \
  "box ms" "direct ms" "box p10" "direct p10" "pass ms" "pass p10"
for b in "${boxes[@]}"; do
  for proto in http1.1 http2; do
    name=$proto
    [ "$b" = box ] || name="base $proto"
    printf '%-14s %12s %12s %12s %12s %10s %10s %10s %10s\n' "$name" \
      "$(echo "${res[${b}_dl_$proto]:-}" | mbps)" "$(echo "${res[direct_dl_$proto]:-}" | mbps)" \
      "$(echo "${res[${b}_lat_$proto]:-}" | ms)" "$(echo "${res[direct_lat_$proto]:-}" | ms)" \
      "$(echo "${res[${b}_p10_$proto]:-}" | ms)" "$(echo "${res[direct_p10_$proto]:-}" | ms)" \
      "$(echo "${res[${b}_pass_$proto]:-}" | ms)" "$(echo "${res[${b}_passp10_$proto]:-}" | ms)"
  done
done
case " $parts " in *" relay "*)
  for proto in http1.1 http2; do
    printf '%-14s relay ms %s  p10 %s (curl on the host through the proxy alone)\n' "$proto" \
      "$(echo "${res[relay_$proto]:-}" | ms)" "$(echo "${res[relayp10_$proto]:-}" | ms)"
  done ;;
esac
if [ -s "$newpairs" ]; then
  echo "new connection, h2 - http/1.1, median over $(grep -c '^box' "$newpairs") pairs (ms):"
  for where in box direct; do
    printf '  %-7s handshake %+8.3f  whole GET %+8.3f\n' "$where" \
      "$(awk -v w=$where '$1 == w {print $2}' "$newpairs" | median | awk '{print $1 * 1e3}')" \
      "$(awk -v w=$where '$1 == w {print $3}' "$newpairs" | median | awk '{print $1 * 1e3}')"
  done
fi
