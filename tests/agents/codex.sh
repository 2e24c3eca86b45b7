#!/usr/bin/env bash
# OpenAI's Codex CLI (the pinned @openai/codex, tests/agents/install.sh) in `--profile codex`,
# against a local HTTPS mock of the Responses API reached by its real name with --connect-to, as
# root and as the unprivileged user (issue 15's tests): a headless `codex exec` turn with a tool
# call, a hostile one, and its TUI under tmux (tests/agents/claude.sh says what each asserts).
#   codex.sh AGENTBOX PROFILES_DIR
name=agents.codex
agent=codex
agentbox_src=$(readlink -f "$1")
profiles_src=$(readlink -f "$2")
mocked_names=(api.openai.com chatgpt.com)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

agent_bin
setup
start_mock openai benign api
start_mock openai hostile evil
start_mock sink benign sink

profile=codex
key_env=OPENAI_API_KEY
key_prefix=sk-proj-
key_header=authorization
real="${key_prefix}$(head -c 96 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 120)"
header_value="Bearer $real"
extra_env=("$key_env=$real")
# The box is the sandbox: codex's own cannot start inside (profiles/codex.toml).
headless_cmd=(codex exec --skip-git-repo-check --sandbox danger-full-access "write out.txt")

# codex speaks the Responses API over a WebSocket first (the mock answers it too): the turn must
# have gone that way, through the proxy's WebSocket relay, with its usage metered from the
# messages.
after_headless() {
  grep -q '"ws": true' "$log_api" || fail "the turn did not use the WebSocket transport: $(
    grep -o '"method": "[A-Z]*", "path": "[^"]*"' "$log_api" | sort | uniq -c)"
  # Each turn's response.create the mock answered reported 10 input and 5 output tokens: the audit log
  # has exactly one model.usage event per answer, with those counts.
  local asked metered
  asked=$(python3 -c 'import json, sys
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    b = json.loads(e["body"]) if e.get("ws") else {}
    n += b.get("type") == "response.create" and b.get("generate") is not False  # not a prewarm
print(n)' "$log_api")
  metered=$(grep -c '"type":"model.usage".*"input_tokens":10,"output_tokens":5,' "$(audit_log)")
  ((asked > 0 && metered == asked)) ||
    fail "the WebSocket turns were not metered one for one: $asked answered, $metered metered"
  ok "the turn went over a WebSocket through the proxy; its $asked responses were metered"
}

# Interactive: codex's TUI asks how to sign in even with OPENAI_API_KEY set (its API-key choice
# saves the placeholder in the kept ~/.codex/auth.json), and to trust the folder whatever the
# flags. It writes that trust into ~/.codex/config.toml, which the profile never keeps (it can
# name programs codex starts), so the question would come back every session: the profile's
# `persist.answers` says it instead, in a config.toml the box can only read.
tui_cmd="codex --sandbox danger-full-access"
prompt_re='\? for shortcuts'
# A first session always asks to sign in, after showing the prompt for ~20 s.
first_re='Sign in with ChatGPT'
settle=40
dialog_re='Sign in with ChatGPT|Use an OpenAI API key|Press enter to save|Trust this folder'
dialog() {  # dialog SCREEN: answers the dialog on SCREEN, prints its name; 1 when none
  if grep -q 'Sign in with ChatGPT' <<<"$1"; then
    echo sign-in; keys Down Down; sleep 0.3; keys Enter
  elif grep -q 'Use an OpenAI API key' <<<"$1"; then
    echo api-key-choice; keys Enter
  elif grep -q 'Press enter to save' <<<"$1"; then
    echo api-key; keys Enter
  elif grep -q 'Trust this folder' <<<"$1"; then
    echo trust; keys Enter
  else
    return 1
  fi
}
quit_keys() { keys -l /quit; sleep 0.5; keys Enter; }
before_interactive() {
  # No config.toml of the user's: the profile's `persist.answers` alone must say the folder is
  # trusted ("Trust this folder" is in dialog_re, so a second session that asks fails).
  rm -f "$home/.codex/config.toml"
}

run_all
