#!/usr/bin/env bash
# How agentbox is linked, for its start-up (docs/BENCHMARKS.md, "start-up"), without giving up
# ASLR: a position-independent executable (ET_DYN, DF_1_PIE); its relative relocations packed
# (DT_RELR, no run of R_X86_64_RELATIVE entries left in .rela.dyn) when the linker can; and, with
# the static dependencies, no shared library but libc, libm and the dynamic linker.
#   startup_links.sh AGENTBOX PACKS_RELOCS(ON/OFF) STATIC_DEPS(ON/OFF)
set -euo pipefail
bin=$1
packs=$2
static=$3
command -v readelf >/dev/null || { echo "FAIL: readelf (binutils) is not installed"; exit 1; }
bad=0
fail() {
  echo "FAIL: $*"
  bad=1
}
header=$(readelf -hW "$bin")
dynamic=$(readelf -dW "$bin")
grep -qE 'Type: +DYN' <<<"$header" || fail "$bin is not position-independent (ELF type not DYN)"
grep -qE 'FLAGS_1.*PIE' <<<"$dynamic" || fail "$bin has no DF_1_PIE flag"
relative=$(readelf -rW "$bin" | grep -c 'R_X86_64_RELATIVE' || true)
if [[ $packs == ON ]]; then
  grep -qE '\(RELR\)' <<<"$dynamic" || fail "$bin has no DT_RELR (packed relative relocations)"
  # A few may stay in RELA (odd addresses); the ~24,500 of an unpacked build must not.
  ((relative < 100)) || fail "$bin still has $relative R_X86_64_RELATIVE entries in .rela.dyn"
else
  echo "skipped: the linker has no -z pack-relative-relocs ($relative RELA relative relocations)"
fi
if [[ $static == ON ]]; then
  while read -r lib; do
    case $lib in
      libc.so.6 | libm.so.6 | ld-linux-x86-64.so.2) ;;
      *) fail "$bin needs the shared library $lib (AGENTBOX_STATIC_DEPS links it statically)" ;;
    esac
  done < <(sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p' <<<"$dynamic")
fi
((bad == 0)) || exit 1
[[ $packs == ON ]] || exit 77
echo "ok: $bin is a PIE, its relative relocations packed, its shared libraries libc and libm"
