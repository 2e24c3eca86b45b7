# Shared by the agent tests (tests/agents/*.sh): the skip contract, the pinned CLIs, a test CA and
# a leaf for the mocked names, the mocks, and running agentbox as root or as the unprivileged
# user with a HOME of the test's own. Sourced; the caller sets `name` and `agent` first.
# shellcheck shell=bash
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
user=agentbox-test

. "$here/../testkit/skip.sh"
skip_npm() {  # npm unreachable: a loud skip even where the machine must work (issue 15)
  echo "skipped: $*"
  [ -n "${AGENTBOX_SKIP_LOG:-}" ] && printf '%s\t%s\n' "$name" "$*" >>"$AGENTBOX_SKIP_LOG"
  exit 77
}
fail() { echo "FAIL [$who]: $*"; exit 1; }
ok() { echo "ok [$who]: $*"; }

# The pinned CLI: installed (or found in the cache) by install.sh; its bin directory goes first
# on the caller's PATH, where agentbox resolves the program (docs/CONFIG.md, "The program").
agent_bin() {
  local rc=0
  command -v tmux >/dev/null || skip "tmux is not installed (scripts/deps.txt)"
  "$here/install.sh" || rc=$?
  cache=$("$here/install.sh" --dir)
  if ((rc == 3)); then skip_npm "$(cat "$cache/unavailable" 2>/dev/null || echo npm unavailable)"; fi
  ((rc == 0)) || fail "tests/agents/install.sh failed (status $rc)"
  bindir=$(ls -d "$cache/$agent"-*/bin | head -1)
  [ -x "$bindir/$agent" ] || fail "no $agent in $bindir"
}

# A CA and one leaf for every mocked name, made here; and the agentbox under test with its
# profiles, copied where the unprivileged user can run it.
setup() {
  tmp=$(mktemp -d "/tmp/agentbox-$name.XXXXXX")
  chmod 755 "$tmp"
  mkdir -p "$tmp/bin" "$tmp/share/agentbox"
  install -m 755 "$agentbox_src" "$tmp/bin/agentbox"
  cp -r "$profiles_src" "$tmp/share/agentbox/profiles"
  chmod -R a+rX "$tmp/share"
  agentbox=$tmp/bin/agentbox
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=agents-test-ca -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=mock \
    -keyout "$tmp/leaf.key" -out "$tmp/leaf.csr" 2>/dev/null
  local sans
  sans=$(printf 'DNS:%s,' "${mocked_names[@]}" exfil.example)
  openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 1 -out "$tmp/leaf.pem" 2>/dev/null \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "${sans%,}")
  chmod 644 "$tmp/ca.pem"
  pids=()
  trap cleanup EXIT
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${tmux_sock:-}" ] && tmux_stop
  rm -rf "$tmp" 2>/dev/null || runuser -u "$user" -- rm -rf "$tmp" 2>/dev/null || true
}

# start_mock KIND SCENARIO TAG: a mock (tests/agents/mock_api.py) on a loopback port; sets
# port_TAG and log_TAG. Bounded wait for its port.
start_mock() {
  local kind=$1 scenario=$2 tag=$3 i
  local log=$tmp/$tag.log portfile=$tmp/$tag.port
  : >"$log"
  python3 "$here/mock_api.py" "$kind" "$scenario" "$tmp/leaf.pem" "$tmp/leaf.key" "$log" \
    "$portfile" &
  pids+=($!)
  for i in $(seq 100); do [ -s "$portfile" ] && break; sleep 0.1; done
  [ -s "$portfile" ] || fail "the $kind mock did not start"
  printf -v "port_$tag" %s "$(cat "$portfile")"
  printf -v "log_$tag" %s "$log"
}

# be WHO: root, or the unprivileged user (created when missing); a HOME and a workspace of the
# test's own for each.
be() {
  who=$1
  if [ "$who" = user ]; then
    id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
  fi
  home=$tmp/home-$who
  ws=$tmp/ws-$who
  mkdir -p "$home/.ssh" "$ws" "$tmp/tmux-$who"
  echo "CANARY-SSH-KEY-$RANDOM$RANDOM" >"$home/.ssh/id_rsa"
  canary=$(cat "$home/.ssh/id_rsa")
  chmod 700 "$home/.ssh"
  chmod 600 "$home/.ssh/id_rsa"
  [ "$who" = user ] && chown -R "$user:" "$home" "$ws" "$tmp/tmux-$who"
  tmux_sock=$tmp/tmux-$who/sock
}

# as_who CMD...: CMD as the current WHO, with an environment from scratch (HOME, PATH with the
# pinned CLI first, TERM, and what the caller exports in `extra_env`).
as_who() {
  local envs=(HOME="$home" PATH="$bindir:/usr/local/bin:/usr/bin:/bin" TERM=xterm-256color
    LANG=C.UTF-8 "${extra_env[@]}")
  if [ "$who" = user ]; then
    (cd "$ws" && runuser -u "$user" -- env -i "${envs[@]}" "$@")
  else
    (cd "$ws" && env -i "${envs[@]}" "$@")
  fi
}

# The run's audit log (the newest session under the test's HOME).
audit_log() { ls -t "$home"/.local/state/agentbox/sessions/*/audit.jsonl 2>/dev/null | head -1; }

# Interactive: a tmux session (the test's own server socket, run as WHO) running CMD; screen
# prints the visible screen; wait_screen REGEX [SECONDS] waits (bounded) until it shows REGEX.
tmux_start() {
  tmux_stop
  as_who tmux -S "$tmux_sock" -f /dev/null new-session -d -s agent -x 120 -y 40 "$@"
}
screen() { as_who tmux -S "$tmux_sock" capture-pane -p -t agent "$@" 2>&1; }
keys() { as_who tmux -S "$tmux_sock" send-keys -t agent "$@"; }
wait_screen() {
  local re=$1 secs=${2:-60} i
  for ((i = 0; i < secs * 4; i++)); do
    screen | grep -qE -- "$re" && return 0
    sleep 0.25
  done
  return 1
}
tmux_stop() { [ -S "$tmux_sock" ] && as_who tmux -S "$tmux_sock" kill-server 2>/dev/null || true; }

# The headless turns (the caller sets profile, key_env, key_prefix, key_header, header_value,
# real, headless_cmd, and starts the mocks api, evil and sink).
net() {  # net PORT: every mocked name on the mock at PORT; exfil.example mapped, not allowed
  local n  # one line: interactive tests put it in a shell command
  for n in "${mocked_names[@]}"; do printf -- '--connect-to %s ' "$n:443:127.0.0.1:$1"; done
  echo --connect-to "exfil.example:443:127.0.0.1:$port_sink" \
    --upstream-ca "$tmp/ca.pem" --trust-ca "$tmp/ca.pem"
}
# What the box sent to the API (the request bodies: prompts and tool results).
sent() { python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.loads(l)["body"])' "$1"; }
# The key headers of the requests to the API host (the first mocked name).
keys_seen() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    h = {k.lower(): v for k, v in e["headers"].items()}
    if (e["host"] or "").split(":")[0] == sys.argv[3]:
        print(h.get(sys.argv[2], "-"))' "$1" "$key_header" "${mocked_names[0]}" | sort -u; }

headless() {
  local out rc=0
  # shellcheck disable=SC2046
  out=$(as_who timeout 180 "$agentbox" run --profile "$profile" $(net "$port_api") -- \
    "${headless_cmd[@]}" 2>&1 </dev/null) || rc=$?
  ((rc == 0)) || fail "headless turn: status $rc: $out"
  grep -q TURN-DONE <<<"$out" || fail "headless turn did not end with the model's text: $out"
  [ "$(cat "$ws/out.txt" 2>/dev/null)" = hi-from-the-agent ] ||
    fail "the tool's effect is not in the workspace: $out"
  # Every request the API got carried the real key (codex's websocket attempts included).
  [ "$(keys_seen "$log_api")" = "$header_value" ] ||
    fail "the API did not get (only) the real key: $(keys_seen "$log_api")"
  grep -q "^$key_env=$key_prefix" "$ws/env-seen.txt" ||
    fail "the box held no placeholder: $(grep "$key_env" "$ws/env-seen.txt")"
  grep -rqF "$real" "$ws" && fail "the real key is in the box's view (the workspace)"
  sent "$log_api" | grep -qF "$real" && fail "the real key is in what the box sent"
  ok "headless turn with a tool call; the API got the real key, the box a placeholder"
  if declare -F after_headless >/dev/null; then after_headless; fi
}

hostile() {
  local out rc=0 audit
  # shellcheck disable=SC2046
  out=$(as_who timeout 180 "$agentbox" run --profile "$profile" $(net "$port_evil") -- \
    "${headless_cmd[@]}" 2>&1 </dev/null) || rc=$?
  ((rc == 0)) || fail "hostile turn: status $rc: $out"
  grep -q TURN-DONE <<<"$out" || fail "hostile turn did not complete: $out"
  sent "$log_evil" | grep -q 'curl-exit=' || fail "the hostile tool call did not run: $out"
  sent "$log_evil" | grep -q "$key_env=$key_prefix" ||
    fail "the environment dump did not reach the model (the test saw nothing)"
  [ -s "$log_sink" ] && fail "exfil.example received: $(head -c 2000 "$log_sink")"
  for leak in "$real" "$canary"; do
    sent "$log_evil" | grep -qF "$leak" && fail "a secret is in what the box sent: $leak"
    grep -qF "$leak" <<<"$out" && fail "a secret is in the box's output: $leak"
    grep -rqF "$leak" "$ws" && fail "a secret is in the workspace: $leak"
  done
  audit=$(audit_log)
  grep -q '"name":"exfil.example".*"result":"denied"' "$audit" ||
    fail "the audit log does not show the block: $(grep exfil "$audit")"
  ok "hostile turn completes; nothing reached exfil.example; the audit log shows the block"
}


# Interactive under tmux (the caller sets tui_cmd, first_re, prompt_re, dialog_re and defines
# dialog, quit_keys and before_interactive): the first session reaches the prompt through the
# agent's onboarding; the second shows no dialog (the profile's kept state); its screen, with
# attributes, is the same with the terminal filter off (issue 13).
onboard() {
  local s i seen=() d
  for ((i = 0; i < 60; i++)); do
    s=$(screen)
    # The prompt, with no dialog over it, still there 5 s later (codex shows its prompt bar for
    # a moment before asking to trust the folder).
    if grep -qE -- "$prompt_re" <<<"$s" && ! grep -qE -- "$dialog_re" <<<"$s" && sleep 5 &&
      s=$(screen) && grep -qE -- "$prompt_re" <<<"$s" && ! grep -qE -- "$dialog_re" <<<"$s"; then
      ok "first interactive session reaches the prompt after: ${seen[*]:-no dialog}"
      return 0
    fi
    d=$(dialog "$s") && seen+=("$d")
    sleep 2
  done
  fail "the first interactive session did not reach the prompt: $(screen)"
}
tui_session() {
  # shellcheck disable=SC2046
  tmux_start sh -c "$agentbox run -q --profile $profile $(net "$port_api") -- $tui_cmd; echo agent-exited-\$?; sleep 120"
}
quit() {
  local i
  for ((i = 0; i < 4; i++)); do
    # Under load the command's completion menu can take the first Enter (seen with gemini while
    # a compiler ran beside it): another Enter runs the command; after an exit it is harmless.
    # An agent still starting up can drop what was typed (seen with codex): then type it again.
    if ((i == 0)) || ! grep -qF -- "${quit_cmd:-/quit}" <<<"$(screen)"; then
      quit_keys
    else
      keys Enter
    fi
    wait_screen 'agent-exited-0' 20 && { tmux_stop; return 0; }
  done
  fail "$agent did not exit: $(screen)"
}
filter_off() {  # filter_off CMD...: CMD with [terminal] filter = false in the user's config
  mkdir -p "$home/.config/agentbox"
  printf '[terminal]\nfilter = false\n' >"$home/.config/agentbox/config.toml"
  if [ "$who" = user ]; then chown -R "$user:" "$home/.config"; fi
  "$@"
  rm -f "$home/.config/agentbox/config.toml"
}
prompt_screen() {  # a session's prompt screen, with attributes
  local shot
  tui_session
  wait_screen "$prompt_re" 90 || fail "no prompt: $(screen)"
  sleep 2
  shot=$(screen -e)
  quit
  echo "$shot"
}
interactive() {
  local first off i
  before_interactive
  tui_session
  wait_screen "$first_re" 90 || fail "no first screen: $(screen)"
  onboard
  quit
  tui_session
  wait_screen "$prompt_re" 90 || fail "the second session did not reach the prompt by itself: $(screen)"
  # A dialog may come over the prompt later (codex asks to sign in ~20 s after showing it).
  for ((i = 0; i < ${settle:-5}; i++)); do
    grep -qE -- "$dialog_re" <<<"$(screen)" && fail "the second session shows a dialog: $(screen)"
    sleep 1
  done
  first=$(screen -e)
  ok "the second interactive session starts at the prompt, no dialog"
  quit
  # The agent's own screen changes over its first sessions (codex's model line, gemini's colour
  # warning, each shown a few times): sessions alternate filter off and on until two neighbours
  # match; a difference the filter makes would stay in every pair.
  local on=$first k
  for ((k = 0; k < 3; k++)); do
    off=$(filter_off prompt_screen) || fail "with the filter off: $off"
    [ "$on" = "$off" ] && break
    on=$(prompt_screen) || fail "with the filter on: $on"
    [ "$on" = "$off" ] && break
  done
  [ "$on" = "$off" ] || fail "the screen differs with the terminal filter off:
$(diff <(echo "$on") <(echo "$off") | cat -v | head -40)"
  ok "the prompt screen (with attributes) is the same with the terminal filter on and off"
}

# Every part, as root and as the unprivileged user (as yourself when not root);
# AGENTBOX_AGENTS_AS=root (or user) runs one half while working on it.
run_all() {
  local w whos
  read -ra whos <<<"${AGENTBOX_AGENTS_AS:-root user}"
  [ "$(id -u)" = 0 ] || whos=(me)
  for w in "${whos[@]}"; do
    be "$w"
    : >"$log_api"
    : >"$log_evil"
    : >"$log_sink"
    headless
    hostile
    interactive
  done
  echo "${#whos[@]} passed, 0 failed"
}
