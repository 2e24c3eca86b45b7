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
# Interactive (lib.sh's interactive): claude's onboarding, each dialog answered as a user who
# accepts would; a session ends with /exit.
tui_cmd="claude --dangerously-skip-permissions"
prompt_re='bypass permissions on'
first_re='Welcome to Claude Code|bypass permissions on'
dialog_re='Choose the text style|Do you want to use|trust this folder|Yes, I accept'
# gone TEXT: a bounded wait until the screen no longer shows TEXT. Under load claude can take more
# than the poll interval to draw the next dialog, and a second Enter meant for the theme would
# answer "use this API key?" with its preselected "No".
gone() {
  local i
  for ((i = 0; i < 40; i++)); do screen | grep -qF -- "$1" || return 0; sleep 0.25; done
}
dialog() {  # dialog SCREEN: answers the dialog on SCREEN, prints its name; 1 when none
  local i
  if grep -q 'Choose the text style' <<<"$1"; then
    echo theme; keys Enter; gone 'Choose the text style'
  elif grep -q 'Do you want to use this API key' <<<"$1"; then
    # "No" is preselected: Enter only once the cursor is seen on "Yes" (bounded).
    echo api-key; keys Up
    for ((i = 0; i < 20; i++)); do screen | grep -qE '❯ *1\. *Yes' && break; sleep 0.25; done
    keys Enter; gone 'Do you want to use this API key'
  elif grep -q 'Press Enter to continue' <<<"$1"; then
    echo security-notes; keys Enter
  elif grep -q 'Yes, I trust this folder' <<<"$1"; then
    echo trust; keys Down; sleep 0.3; keys Enter
  elif grep -q 'Yes, I accept' <<<"$1"; then
    echo bypass; keys Down; sleep 0.3; keys Enter
  else
    return 1
  fi
}
quit_cmd=/exit  # what quit_keys types (lib.sh types it again when it was dropped)
quit_keys() { keys -l "$quit_cmd"; sleep 0.5; keys Enter; }
before_interactive() {
  # No settings.json of the user's: the profile's `persist.answers` alone must keep the
  # bypass-mode consent (the disclaimer is in dialog_re, so the second session fails on it).
  rm -f "$home/.claude/settings.json"
}

run_all
