# Sourced by bench/startup.sh and bench/startup_perf.sh: issue 13's typical agent bwrap profile,
# what agent sandboxes built on bwrap pass (the merged-/usr links so that `true` is found on the
# default PATH), as the array `bt`. One definition, so the two benches measure the same target.
#   bwrap_typical HOME WS
bwrap_typical() {
  local home=$1 ws=$2 d
  bt=(bwrap --unshare-all --die-with-parent --new-session --clearenv --ro-bind /usr /usr
      --ro-bind /etc /etc)
  for d in /bin /sbin /lib /lib64; do
    [[ -L $d ]] && bt+=(--symlink "$(readlink "$d")" "$d")
  done
  bt+=(--proc /proc --dev /dev --tmpfs /tmp --tmpfs "$home" --bind "$ws" "$ws" --chdir "$ws" true)
}
