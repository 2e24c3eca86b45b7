# The testkit's skip contract for script tests (source it; set $name first): the reason goes in
# the report, and where the machine must work (AGENTBOX_MUST_WORK=1) a missing piece fails.
skip() {
  echo "skipped: $*"
  [ -n "${AGENTBOX_SKIP_LOG:-}" ] && printf '%s\t%s\n' "$name" "$*" >>"$AGENTBOX_SKIP_LOG"
  [ "${AGENTBOX_MUST_WORK:-}" = 1 ] && { echo "FAIL: AGENTBOX_MUST_WORK=1 and this is missing"; exit 1; }
  exit 77
}
