#!/usr/bin/env bash
# The test of the tests: with a deliberately broken agentbox (agentbox-broken-start: every box
# start fails exactly as a refused user namespace looks, clone3 EPERM and the doctor's hint), the
# suites that make boxes must FAIL, never skip, whatever AGENTBOX_MUST_WORK says. Each argument
# is GTEST_BINARY=FILTER; every case the filter selects must run and fail (as root and as the
# user), and the binary must exit non-zero.
#   broken_binary.sh BROKEN_AGENTBOX BINARY=FILTER...
set -euo pipefail
broken=$1
shift
unset AGENTBOX_MUST_WORK AGENTBOX_SKIP_LOG  # a skip must not be able to hide behind either
export AGENTBOX_TEST_BIN=$broken
bad=0
for spec in "$@"; do
  bin=${spec%%=*}
  filter=${spec#*=}
  rc=0
  out=$("$bin" --gtest_filter="$filter" --gtest_brief=0 2>&1) || rc=$?
  ran=$(grep -c '^\[ RUN      \]' <<<"$out" || true)
  failed=$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' <<<"$out" || true)
  skipped=$(grep -c '^\[  SKIPPED \]' <<<"$out" || true)
  named=$(grep -c 'agentbox is broken, this is not a skip' <<<"$out" || true)
  name=$(basename "$bin")
  if ((rc == 0 || ran == 0 || failed != ran || skipped != 0 || named < ran)); then
    echo "FAIL: $name --gtest_filter=$filter with a broken agentbox: exit $rc, $ran ran," \
      "$failed failed, $skipped skipped, $named named the broken binary (every case must fail)"
    grep -E '^\[  (SKIPPED|     OK) \]' <<<"$out" | head -20 || true
    bad=1
  else
    echo "ok: $name --gtest_filter=$filter: all $ran cases fail with a broken agentbox"
  fi
done
exit "$bad"
