#!/usr/bin/env bash
# OpenAI's Codex CLI (the pinned @openai/codex, tests/agents/install.sh) in `--profile codex`,
# against a local HTTPS mock of the Responses API reached by its real name with --connect-to, as
# root and as the unprivileged user (issue 15's tests): a headless `codex exec` turn with a tool
# call, and a hostile one (tests/agents/claude.sh says what each asserts). Not yet: codex's TUI
# under tmux.
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

read -ra whos <<<"${AGENTBOX_AGENTS_AS:-root user}"  # a subset while working on one
[ "$(id -u)" = 0 ] || whos=(me)
for w in "${whos[@]}"; do
  be "$w"
  : >"$log_api"; : >"$log_evil"; : >"$log_sink"
  headless
  hostile
done
echo "${#whos[@]} passed, 0 failed"
