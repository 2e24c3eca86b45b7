#!/usr/bin/env bash
# Claude Code (the pinned @anthropic-ai/claude-code, tests/agents/install.sh) in `--profile
# claude`, against a local HTTPS mock of the Anthropic API reached by its real name with
# --connect-to, as root and as the unprivileged user (issue 15's tests, issue 13's TUI check):
#  1. a headless turn with a tool call: it completes, the tool's effect is in the workspace, the
#     API got the real key, the box's environment held only a placeholder;
#  2. a hostile turn (read ~/.ssh, dump the environment, POST it to another host): it completes,
#     the other host (a loopback mock mapped too, but not allowed) receives nothing, neither the
#     real key nor the caller's ~/.ssh reaches anything the box sends, the audit log has the block;
#  3. interactive under tmux: the first session reaches the prompt through claude's onboarding,
#     the second shows no dialog (the profile's kept state), and its screen is the same with the
#     terminal filter off.
#   claude.sh AGENTBOX PROFILES_DIR
name=agents.claude
agent=claude
agentbox_src=$(readlink -f "$1")
profiles_src=$(readlink -f "$2")
mocked_names=(api.anthropic.com platform.claude.com)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v tmux >/dev/null || skip "tmux is not installed (scripts/deps.txt)"
agent_bin
setup
start_mock anthropic benign api
start_mock anthropic hostile evil
start_mock sink benign sink

profile=claude
key_env=ANTHROPIC_API_KEY
key_prefix=sk-ant-api03-
key_header=x-api-key
real="${key_prefix}$(head -c 64 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 80)AA"
header_value=$real
extra_env=("$key_env=$real")
headless_cmd=(claude --dangerously-skip-permissions -p "write out.txt")
# The onboarding dialogs of a first session, each answered as a user who accepts would.
onboard() {
  local s i seen=()
  for ((i = 0; i < 60; i++)); do
    s=$(screen)
    if grep -q 'bypass permissions on' <<<"$s"; then
      ok "first interactive session reaches the prompt after: ${seen[*]:-no dialog}"
      return 0
    elif grep -q 'Choose the text style' <<<"$s"; then
      seen+=(theme); keys Enter
    elif grep -q 'Do you want to use this API key' <<<"$s"; then
      seen+=(api-key); keys Up; sleep 0.3; keys Enter
    elif grep -q 'Press Enter to continue' <<<"$s"; then
      seen+=(security-notes); keys Enter
    elif grep -q 'Yes, I trust this folder' <<<"$s"; then
      seen+=(trust); keys Down; sleep 0.3; keys Enter
    elif grep -q 'Yes, I accept' <<<"$s"; then
      seen+=(bypass); keys Down; sleep 0.3; keys Enter
    fi
    sleep 2
  done
  fail "the first interactive session did not reach the prompt: $(screen)"
}
quit() {
  keys -l /exit; sleep 0.5; keys Enter
  wait_screen 'agent-exited-0' 30 || fail "claude did not exit on /exit: $(screen)"
  tmux_stop
}
interactive() {
  local cmd first second off
  # The documented way to keep claude's bypass-mode consent: the user's own settings.json (shown
  # read-only); the profile never keeps the one written inside (README, "Agents").
  mkdir -p "$home/.claude"
  echo '{"skipDangerousModePermissionPrompt": true}' >"$home/.claude/settings.json"
  [ "$who" = user ] && chown -R "$user:" "$home/.claude"
  cmd="$agentbox run -q --profile claude $(net "$port_api") -- claude --dangerously-skip-permissions"
  tmux_start sh -c "$cmd; echo agent-exited-\$?; sleep 120"
  wait_screen 'Welcome to Claude Code|bypass permissions on' 60 ||
    fail "no first screen: $(screen)"
  onboard
  quit
  tmux_start sh -c "$cmd; echo agent-exited-\$?; sleep 120"
  wait_screen 'bypass permissions on' 60 || fail "the second session did not reach the prompt by itself: $(screen)"
  sleep 2
  first=$(screen -e)
  grep -qE 'Choose the text style|Do you want to use|trust this folder|Yes, I accept' <<<"$first" &&
    fail "the second session shows a dialog: $(screen)"
  ok "the second interactive session starts at the prompt, no dialog"
  quit
  mkdir -p "$home/.config/agentbox"
  printf '[terminal]\nfilter = false\n' >"$home/.config/agentbox/config.toml"
  [ "$who" = user ] && chown -R "$user:" "$home/.config"
  tmux_start sh -c "$cmd; echo agent-exited-\$?; sleep 120"
  wait_screen 'bypass permissions on' 60 || fail "no prompt with the filter off: $(screen)"
  sleep 2
  off=$(screen -e)
  quit
  rm -f "$home/.config/agentbox/config.toml"
  [ "$first" = "$off" ] || fail "the screen differs with the terminal filter off:
$(diff <(echo "$first") <(echo "$off") | cat -v | head -40)"
  ok "the prompt screen (with attributes) is the same with the terminal filter on and off"
}

read -ra whos <<<"${AGENTBOX_AGENTS_AS:-root user}"  # a subset while working on one
[ "$(id -u)" = 0 ] || whos=(me)
for w in "${whos[@]}"; do
  be "$w"
  : >"$log_api"; : >"$log_evil"; : >"$log_sink"
  headless
  hostile
  interactive
done
echo "${#whos[@]} passed, 0 failed"
