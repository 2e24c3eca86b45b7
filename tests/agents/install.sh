#!/usr/bin/env bash
# Installs the pinned agent CLIs the agent tests run (tests/agents/) from npm, each into its own
# prefix under a cache directory outside the repository (they are large: kept between runs), and
# prints nothing else when they are already there. npm's own configuration names the registry.
#   install.sh            install what is missing; exit 0 when all are installed
#   install.sh --dir      print the cache directory
# Exit 3 when npm is missing or the registry is unreachable (the tests then skip with that reason,
# written to $cache/unavailable); 1 on any other failure.
set -euo pipefail
# As root (CI), a system cache the unprivileged test user can read too; else the user's.
if [ "$(id -u)" = 0 ]; then
  cache=${AGENTBOX_AGENTS_CACHE:-/var/cache/agentbox-test-agents}
else
  cache=${AGENTBOX_AGENTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentbox-test-agents}
fi
[ "${1:-}" = --dir ] && { echo "$cache"; exit 0; }

# The pinned versions (README.md, "Agent tests", says how to move them).
pins=(
  "claude @anthropic-ai/claude-code 2.1.332"
  "codex @openai/codex 0.171.0"
  "gemini @google/gemini-cli 0.61.0"
)

mkdir -p "$cache"
chmod 755 "$cache"
# One installer at a time (the agent tests call this in parallel).
exec 9>"$cache/.lock"
flock -w 1200 9 || { echo "agents: $cache/.lock is held by another installer" >&2; exit 1; }
rm -f "$cache/unavailable"
unavailable() { echo "$*" >"$cache/unavailable"; echo "agents: $*" >&2; exit 3; }

for pin in "${pins[@]}"; do
  read -r cmd pkg version <<<"$pin"
  prefix=$cache/$cmd-$version
  if [ -x "$prefix/bin/$cmd" ] && [ -f "$prefix/.installed" ]; then
    continue
  fi
  command -v npm >/dev/null || unavailable "npm is not installed (Debian package npm)"
  echo "agents: installing $pkg@$version into $prefix"
  rm -rf "$prefix.tmp"
  log=$cache/$cmd-install.log
  rc=0
  timeout 600 npm install --global --no-audit --no-fund --loglevel=error \
    --prefix "$prefix.tmp" "$pkg@$version" >"$log" 2>&1 || rc=$?
  if ((rc == 124)); then
    unavailable "npm install $pkg@$version did not finish in 10 minutes (the registry unreachable?)"
  elif ((rc != 0)); then
    if grep -qiE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|ENETUNREACH|network' "$log"; then
      unavailable "the npm registry is unreachable: $(grep -m1 -iE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|ENETUNREACH|network' "$log")"
    fi
    echo "agents: npm install $pkg@$version failed:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  [ -x "$prefix.tmp/bin/$cmd" ] || { echo "agents: $pkg@$version has no bin/$cmd" >&2; exit 1; }
  rm -rf "$prefix"
  mv "$prefix.tmp" "$prefix"
  # npm writes absolute paths nowhere in a global prefix's bin links (relative symlinks), so the
  # rename keeps them working.
  touch "$prefix/.installed"
  chmod -R a+rX "$prefix"
done
