#!/usr/bin/env bash
# The other half of the test of the tests: where the kernel really refuses user namespaces (here:
# a user namespace of this run alone whose user.max_user_namespaces is 0), the run suite skips
# with the reason, and AGENTBOX_MUST_WORK=1 turns every such skip into a failure.
#   refused_userns.sh INTEGRATION_RUN FILTER
set -euo pipefail
bin=$1
filter=$2
unset AGENTBOX_TEST_BIN
if ! unshare -Ur true 2>/dev/null; then
  why="meta.refused_userns: this machine cannot make the user namespace the check runs in"
  [[ "${AGENTBOX_MUST_WORK:-}" == 1 ]] && { echo "FAIL: $why (AGENTBOX_MUST_WORK=1)"; exit 1; }
  [[ -n "${AGENTBOX_SKIP_LOG:-}" ]] && printf '%s\tskipped: %s\n' meta.refused_userns "$why" \
    >>"$AGENTBOX_SKIP_LOG"
  echo "skipped: $why"
  exit 77
fi
refused() {  # runs the filter where user namespaces are refused; prints gtest's output
  unshare -Ur sh -c 'echo 0 >/proc/sys/user/max_user_namespaces && exec "$@"' sh \
    env -u AGENTBOX_SKIP_LOG "$@" "$bin" --gtest_filter="$filter" 2>&1
}
bad=0
rc=0
out=$(refused env -u AGENTBOX_MUST_WORK) || rc=$?
ran=$(grep -c '^\[ RUN      \]' <<<"$out" || true)
skipped=$(grep -cE '^\[  SKIPPED \] .* \([0-9]+ ms\)$' <<<"$out" || true)
named=$(grep -c 'cannot make a box as root: unshare.*agentbox doctor: user namespaces' <<<"$out" ||
  true)
if ((rc != 0 || ran == 0 || skipped != ran || named != ran)); then
  echo "FAIL: user namespaces refused: exit $rc, $ran ran, $skipped skipped, $named with the" \
    "doctor's reason (every case must skip, saying why)"
  bad=1
else
  echo "ok: user namespaces refused: all $ran cases skip with the reason"
fi
rc=0
out=$(refused env AGENTBOX_MUST_WORK=1) || rc=$?
ran=$(grep -c '^\[ RUN      \]' <<<"$out" || true)
failed=$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' <<<"$out" || true)
if ((rc == 0 || ran == 0 || failed != ran)); then
  echo "FAIL: user namespaces refused, AGENTBOX_MUST_WORK=1: exit $rc, $ran ran, $failed failed"
  bad=1
else
  echo "ok: user namespaces refused, AGENTBOX_MUST_WORK=1: all $ran cases fail"
fi
((bad == 0)) || { echo "$out" | tail -40; }
exit "$bad"
