#!/usr/bin/env bash
# Gemini CLI (the pinned @google/gemini-cli, tests/agents/install.sh) in `--profile gemini`,
# against a local HTTPS mock of the Gemini API (streamGenerateContent) reached by its real name
# with --connect-to, as root and as the unprivileged user (issue 15): a headless `gemini -p` turn
# with a tool call, a hostile one, and its TUI under tmux (tests/agents/claude.sh says what each
# asserts).
#   gemini.sh AGENTBOX PROFILES_DIR
name=agents.gemini
agent=gemini
agentbox_src=$(readlink -f "$1")
profiles_src=$(readlink -f "$2")
mocked_names=(generativelanguage.googleapis.com)
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

agent_bin
setup
start_mock gemini benign api
start_mock gemini hostile evil
start_mock sink benign sink

profile=gemini
key_env=GEMINI_API_KEY
key_prefix=AIza
key_header=x-goog-api-key
real="${key_prefix}$(head -c 96 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 35)"
header_value=$real
extra_env=("$key_env=$real")
headless_cmd=(gemini --yolo -p "write out.txt")

# Interactive: gemini asks once how to authenticate (its API-key choice, kept in ~/.gemini) and
# to confirm the key.
tui_cmd=gemini
prompt_re='Type your message'
first_re='How would you like to authenticate|Type your message'
dialog_re='How would you like to authenticate|Enter Gemini API Key|Do you trust'
dialog() {  # dialog SCREEN: answers the dialog on SCREEN, prints its name; 1 when none
  if grep -q 'How would you like to authenticate' <<<"$1"; then
    echo auth-choice; keys Enter
  elif grep -q 'Enter Gemini API Key' <<<"$1"; then
    echo api-key; keys Enter
  else
    return 1
  fi
}
quit_keys() { keys -l /quit; sleep 0.5; keys Enter; }
before_interactive() { :; }

run_all
