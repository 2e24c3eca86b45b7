#!/usr/bin/env bash
# agentbox inside a rootless container, with the settings deploy/ ships (the seccomp profile, an
# unmasked /proc, /dev/net/tun), and without each of them: the box, its network and the proxy
# work with all of them; without one, `run` refuses with that engine's exact fix and `doctor`
# names it; `--network none` works without /dev/net/tun. podman from Debian, as an unprivileged
# user; the root filesystem is built here (the host's /usr and /etc read-only, nothing pulled).
#   rootless_podman.sh AGENTBOX SECCOMP_JSON
set -euo pipefail
agentbox=$(readlink -f "$1")
seccomp=$(readlink -f "$2")
name=container.rootless_podman
user=agentbox-test

. "$(dirname "$0")/../testkit/skip.sh"
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root to run podman as the unprivileged user $user"
command -v podman >/dev/null || skip "podman is not installed (scripts/install-deps installs it)"
command -v newuidmap >/dev/null || skip "newuidmap is not installed (package uidmap)"
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
grep -q "^$user:" /etc/subuid || usermod --add-subuids 300000-365535 "$user"
grep -q "^$user:" /etc/subgid || usermod --add-subgids 300000-365535 "$user"

tmp=$(mktemp -d /tmp/agentbox-podman.XXXXXX)
trap 'rm -rf "$tmp" 2>/dev/null || runuser -u "$user" -- rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
root=$tmp/rootfs
mkdir -p "$root"/{usr,etc,tmp,proc,dev,sys,root,home,run,opt/agentbox,ws,var/tmp}
for l in bin lib lib64 sbin; do [ -e "/$l" ] && ln -s "usr/$l" "$root/$l"; done
chmod 1777 "$root/tmp" "$root/var/tmp"
install -m 755 "$agentbox" "$tmp/agentbox"
install -m 644 "$seccomp" "$tmp/seccomp.json"
ws=$tmp/ws
mkdir -p "$ws" "$tmp/run" "$tmp/storage"
chown -R "$user:" "$root" "$ws" "$tmp/run" "$tmp/storage"

# crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"); runc runs there.
runtime=()
command -v runc >/dev/null && runtime=(--runtime runc)
home=$(getent passwd "$user" | cut -d: -f6)
pod() {  # pod [podman run options...] -- CMD...: one container as the user, the output on stdout
  local opts=()
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  runuser -u "$user" -- env -i HOME="$home" PATH=/usr/bin:/bin XDG_RUNTIME_DIR="$tmp/run" \
    podman --root "$tmp/storage" --runroot "$tmp/run/storage" "${runtime[@]}" \
    --cgroup-manager=cgroupfs run --rm --network none --user 0:0 \
    -v /usr:/usr:ro -v /etc:/etc:ro -v "$tmp/agentbox:/opt/agentbox/agentbox:ro" \
    -v "$ws:/ws" -w /ws -e HOME=/root -e PATH=/opt/agentbox:/usr/bin:/bin "${opts[@]}" \
    --rootfs "$root" "$@" 2>&1
}
full=(--security-opt "seccomp=$tmp/seccomp.json" --security-opt unmask=ALL --device /dev/net/tun)

# 1. With the shipped settings: doctor passes, a box runs and writes the workspace.
out=$(pod "${full[@]}" -- agentbox doctor) || fail "doctor failed with the shipped settings: $out"
grep -q "running inside a podman container" <<<"$out" || fail "doctor did not see podman: $out"
out=$(pod "${full[@]}" -- agentbox run -q -- sh -c 'echo from-the-box >/ws/out; id -u') ||
  fail "a box did not run with the shipped settings: $out"
[ "$(cat "$ws/out" 2>/dev/null)" = from-the-box ] || fail "the box's write did not reach the workspace: $out"
echo "ok: doctor passes and a box runs inside rootless podman with the shipped settings"

# 2. The network and the proxy: a TLS upstream inside the container (its loopback, a CA made
# here), reached from the box by name through the stack; the credential's real value reaches it,
# the box holds a placeholder (the upstream's log, outside the box, is the oracle).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=test-ca \
  -keyout "$ws/ca.key" -out "$ws/ca.pem" -addext basicConstraints=critical,CA:TRUE 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=up.test \
  -keyout "$ws/up.key" -out "$ws/up.csr" 2>/dev/null
openssl x509 -req -in "$ws/up.csr" -CA "$ws/ca.pem" -CAkey "$ws/ca.key" -CAcreateserial -days 1 \
  -extfile <(echo subjectAltName=DNS:up.test) -out "$ws/up.pem" 2>/dev/null
cat >"$ws/up.py" <<'PY'
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        open("/ws/upstream.log", "a").write(self.headers.get("Authorization", "-") + "\n")
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers()
        self.wfile.write(b"up\n")
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 18443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("/ws/up.pem", "/ws/up.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
cat >"$ws/box.toml" <<'TOML'
[network]
allow = ["up.test:18443"]
connect_to = ["up.test:18443:127.0.0.1:18443"]
upstream_ca = ["/ws/ca.pem"]
[credentials.up]
env = "UP_TOKEN"
from = "env:REAL_UP_TOKEN"
hosts = ["up.test"]
format = "Bearer {}"
TOML
chown -R "$user:" "$ws"
out=$(pod "${full[@]}" -e REAL_UP_TOKEN=real-secret-4711 -e XDG_CONFIG_HOME=/ws/cfg -- sh -c '
  mkdir -p /ws/cfg/agentbox && cp /ws/box.toml /ws/cfg/agentbox/config.toml
  python3 /ws/up.py & for i in $(seq 50); do grep -q ":480B " /proc/net/tcp && break; sleep 0.1; done
  agentbox run -q -- sh -c "curl -sS --max-time 10 https://up.test:18443/x; echo \"box-sees:\$UP_TOKEN\""') ||
  fail "the box could not reach the upstream through the stack and proxy: $out"
grep -qx up <<<"$out" || fail "no answer from the upstream: $out"
grep -q real-secret-4711 <<<"$out" && fail "the box saw the real secret: $out"
grep -q "^box-sees:." <<<"$out" || fail "the box holds no placeholder: $out"
grep -qx "Bearer real-secret-4711" "$ws/upstream.log" ||
  fail "the upstream did not get the real credential: $(cat "$ws/upstream.log" 2>/dev/null)"
echo "ok: the box's network and the credential proxy work inside rootless podman"

# 3. Without each setting: the run refuses (125) with the engine's fix; doctor names it.
refuses() {  # refuses WHAT EXPECTED-FIX [podman options...]
  local what=$1 fix=$2 rc=0
  shift 2
  out=$(pod "$@" -- agentbox run -q -- true) || rc=$?
  [ "$rc" = 125 ] || fail "$what: the box ran (status $rc) instead of refusing: $out"
  grep -qF -- "$fix" <<<"$out" || fail "$what: the refusal does not name \`$fix\`: $out"
  rc=0
  out=$(pod "$@" -- agentbox doctor) || rc=$?
  [ "$rc" != 0 ] || fail "$what: doctor passed: $out"
  grep -qF -- "$fix" <<<"$out" || fail "$what: doctor does not name \`$fix\`: $out"
  echo "ok: $what: run refuses and doctor names \`$fix\`"
}
refuses "podman's default seccomp profile" "--security-opt seccomp=" \
  --security-opt unmask=ALL --device /dev/net/tun
refuses "a masked /proc" "--security-opt unmask=ALL" \
  --security-opt "seccomp=$tmp/seccomp.json" --device /dev/net/tun
refuses "no /dev/net/tun" "--device /dev/net/tun" \
  --security-opt "seccomp=$tmp/seccomp.json" --security-opt unmask=ALL

# 4. --network none needs no /dev/net/tun: the box runs with only lo.
out=$(pod --security-opt "seccomp=$tmp/seccomp.json" --security-opt unmask=ALL -- \
  agentbox run -q --network none -- awk -F: 'NR > 2 { print $1 }' /proc/net/dev) ||
  fail "--network none did not run without /dev/net/tun: $out"
[ "$(tr -d ' \n' <<<"$out")" = lo ] || fail "--network none: the box has more than lo: $out"
echo "ok: --network none runs without /dev/net/tun, with only lo"
echo "1 passed, 0 failed"
