# Sourced by the start-up benches: run variants interleaved and summarise their times.
#   interleave TMP ROUNDS NAME...   calls run_one NAME (the caller defines it) ROUNDS times per
#                                   name, rotating which goes first each round, so machine load
#                                   hits all alike; appends each time in ms to TMP/NAME.times
#   median_p90 TMP NAME             prints "MEDIAN P90" of TMP/NAME.times, in ms
interleave() {
  local tmp=$1 rounds=$2 r k n t0 t1
  shift 2
  local names=("$@")
  for n in "${names[@]}"; do : >"$tmp/$n.times"; done
  for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < ${#names[@]}; k++)); do
      n=${names[$(((r + k) % ${#names[@]}))]}
      t0=$EPOCHREALTIME
      run_one "$n" >/dev/null 2>&1
      t1=$EPOCHREALTIME
      echo "$t0 $t1" | awk '{printf "%.3f\n", ($2 - $1) * 1000}' >>"$tmp/$n.times"
    done
  done
}

median_p90() {
  sort -n "$1/$2.times" | awk '{a[NR] = $1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    p = a[int(NR * 0.9 + 0.5)]
    printf "%.2f %.2f\n", m, p }'
}
