#!/usr/bin/env bash
# The product's HTTPS download path, end to end: curl inside `agentbox run` fetching MIB MiB from
# a TLS server on host loopback, through the box's tap, the stack and the proxy, side by side
# with the same curl outside the box. Four peers, interleaved round by round so that machine load
# hits all alike; medians of curl's own %{speed_download}, ratios at the end:
#   plain   curl http://127.0.0.1 (plain TCP loopback, no TLS): the issue's "loopback"
#   direct  curl https:// on host loopback (one TLS connection, no box)
#   pass    curl in the box, passthrough TLS (SNI checked, flow handed back to the stack)
#   intercept  curl in the box, a credential scoped to the host: the proxy decrypts, swaps the
#              placeholder, scrubs the response and re-encrypts
#
#   bench/proxy/product.sh [AGENTBOX] [ROUNDS] [MIB]   (defaults build/cli/agentbox, 3, 1024)
#
# The servers are `bench_proxy serve` (the same upstream as bench_proxy, next to AGENTBOX's build
# tree). Runs as any user that can run a box; curl must be installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ab="$(realpath "${1:-$here/../../build/cli/agentbox}")"
rounds="${2:-3}"
mib="${3:-1024}"
bp="$(dirname "$ab")/../bench/proxy/bench_proxy"
[[ -x $ab ]] || { echo "product.sh: no agentbox at $ab" >&2; exit 2; }
[[ -x $bp ]] || { echo "product.sh: no bench_proxy at $bp (ninja -C build bench_proxy)" >&2; exit 2; }
command -v curl >/dev/null || { echo "product.sh: needs curl" >&2; exit 2; }

tmp="$(mktemp -d /tmp/agentbox-product-XXXXXX)"
chmod 755 "$tmp"
srv=""
cleanup() {
  exec 7>&- 2>/dev/null || true
  [[ -n $srv ]] && { kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT

mkfifo "$tmp/stop"
"$bp" serve "$tmp" <"$tmp/stop" &
srv=$!
exec 7>"$tmp/stop"
for _ in $(seq 200); do [[ -s $tmp/ports ]] && break; sleep 0.05; done
read -r tls plain <"$tmp/ports"
host=api.bench.test
bytes=$((mib << 20))

# The credential that makes the host intercepted; its real value never enters the box.
mkdir -p "$tmp/cfg/agentbox"
cat >"$tmp/cfg/agentbox/config.toml" <<EOF
[credentials.bench]
env = "BENCH_TOKEN"
from = "env:BENCH_REAL_TOKEN"
hosts = ["$host"]
inject = "header:Authorization"
format = "Bearer {}"
EOF
export BENCH_REAL_TOKEN="sk-ant-api03-$(head -c 60 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 80)"

curl_out=(-s -o /dev/null -w '%{http_code} %{size_download} %{speed_download}\n')
mkdir -p "$tmp/ws"
box() {  # box CONFIG_HOME CURL_ARGS...: curl inside the box, an empty workspace of our own
  local cfg=$1
  shift
  (cd "$tmp/ws" && XDG_CONFIG_HOME="$cfg" "$ab" run -q --ro "$tmp" \
    --allow "$host:$tls" --connect-to "$host:$tls:127.0.0.1:$tls" --upstream-ca "$tmp/ca.pem" \
    -- curl "$@")
}
run_peer() {
  case $1 in
    plain) curl "${curl_out[@]}" "http://127.0.0.1:$plain/big/$bytes" ;;
    direct) curl "${curl_out[@]}" --cacert "$tmp/ca.pem" --resolve "$host:$tls:127.0.0.1" \
      "https://$host:$tls/big/$bytes" ;;
    # Passthrough: the box sees the upstream's own certificate, so curl trusts its CA.
    pass) box "$tmp/nocfg" "${curl_out[@]}" --cacert "$tmp/ca.pem" "https://$host:$tls/big/$bytes" ;;
    # Intercepted: curl trusts the box's bundle (system roots + session CA) untouched; it sends
    # no Authorization header, the proxy adds the real one (`format`).
    intercept) box "$tmp/cfg" "${curl_out[@]}" "https://$host:$tls/big/$bytes" ;;
  esac
}
mkdir -p "$tmp/nocfg"

peers=(plain direct pass intercept)
results="$tmp/results"
: >"$results"
echo "product.sh: $mib MiB per download, $rounds rounds, $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < ${#peers[@]}; k++)); do
    p=${peers[$(((r + k) % ${#peers[@]}))]}
    out=$(run_peer "$p" || true)
    read -r code size speed <<<"${out:-0 0 0}"
    if [[ $code != 200 || $size != "$bytes" ]]; then
      echo "product.sh: $p failed: status $code, $size of $bytes bytes" >&2
      exit 1
    fi
    if [[ $p == intercept || $p == pass ]]; then
      # The mode the proxy chose for the flow, from the session's audit log: a figure for the
      # wrong path would be worse than none.
      sessions=("${XDG_STATE_HOME:-$HOME/.local/state}"/agentbox/sessions/*/)
      audit="$(ls -td "${sessions[@]}" 2>/dev/null | sed -n 1p)audit.jsonl"
      want=passthrough
      [[ $p == intercept ]] && want=intercept
      grep -q "\"mode\":\"$want\"" "$audit" ||
        { echo "product.sh: $p: no $want flow in $audit" >&2; exit 1; }
    fi
    echo "$p $speed" | tee -a "$results" >&2
  done
done

python3 - "$results" "$mib" "$rounds" <<'EOF'
import statistics, sys, collections
v = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p, s = line.split()
    v[p].append(float(s) / (1 << 20))
m = {p: statistics.median(x) for p, x in v.items()}
print(f"HTTPS download of {sys.argv[2]} MiB by curl, {sys.argv[3]} interleaved rounds (medians, MiB/s):")
names = {"plain": "plain HTTP, host loopback", "direct": "HTTPS direct, host loopback",
         "pass": "HTTPS in the box, passthrough", "intercept": "HTTPS in the box, intercepted"}
for p in ("plain", "direct", "pass", "intercept"):
    print(f"  {names[p]:32s} {m[p]:8.0f}   (runs: {', '.join(f'{x:.0f}' for x in v[p])})")
print(f"  intercepted / loopback = {m['intercept'] / m['plain']:.2f} (goal >= 0.3), "
      f"intercepted / direct HTTPS = {m['intercept'] / m['direct']:.2f}, "
      f"passthrough / direct HTTPS = {m['pass'] / m['direct']:.2f}")
EOF
