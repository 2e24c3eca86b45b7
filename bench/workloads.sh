# Sourced by the benches that run real work (confinement.sh, review_overlay.sh): makes the
# workloads' inputs under $tmp (once, outside any timing) and defines, per workload name,
# dir[NAME] (its directory, the workspace) and cmd[NAME] (the shell line that runs it):
#   cc      make -j2 of a generated 50-file C program (gcc -O2), from clean
#   git     `git status` x100 (GIT_RUNS=N: xN) in a generated repository of 5,000 committed files
#   python  a fresh /usr/bin/python3 importing 25 stdlib modules, x20
# --- the workloads' inputs (made once, outside any timing) ---------------------------------------
cc_dir="$tmp/cc"
mkdir -p "$cc_dir"
{
  echo '#pragma once'
  for ((i = 0; i < 50; i++)); do echo "long unit$i(long n);"; done
} >"$cc_dir/units.h"
for ((i = 0; i < 50; i++)); do
  # Enough code per file that gcc -O2 spends a few tens of milliseconds on each.
  {
    echo '#include <stdio.h>'
    echo '#include <stdlib.h>'
    echo '#include <string.h>'
    echo '#include "units.h"'
    for ((f = 0; f < 3; f++)); do
      cat <<EOF
static long u${i}_f$f(long n) {
  long acc = $i;
  char buf[64];
  for (long k = 0; k < n; ++k) {
    acc = acc * 6364136223846793005L + (k ^ $f);
    snprintf(buf, sizeof buf, "%ld", acc);
    acc += (long)strlen(buf) * (k % 7 == 0 ? 3 : 5);
    switch ((int)(acc & 7)) {
      case 0: acc ^= 0x5bd1e995; break;
      case 1: acc += k * $f; break;
      case 2: acc -= n; break;
      case 3: acc = acc << 1 | (acc < 0); break;
      default: acc ^= acc >> 13;
    }
  }
  return acc;
}
EOF
    done
    echo "long unit$i(long n) { long s = 0;"
    for ((f = 0; f < 3; f++)); do echo "  s += u${i}_f$f(n + $f);"; done
    echo "  return s; }"
  } >"$cc_dir/unit$i.c"
done
{
  echo '#include <stdio.h>'
  echo '#include "units.h"'
  echo 'int main(void) { long s = 0;'
  for ((i = 0; i < 50; i++)); do echo "  s += unit$i(10);"; done
  echo '  printf("%ld\n", s); return 0; }'
} >"$cc_dir/main.c"
cat >"$cc_dir/Makefile" <<'EOF'
SRCS := main.c $(wildcard unit*.c)
OBJS := $(SRCS:.c=.o)
prog: $(OBJS)
	$(CC) -o $@ $(OBJS)
%.o: %.c units.h
	$(CC) -O2 -c -o $@ $<
clean:
	rm -f $(OBJS) prog
EOF

git_dir="$tmp/repo"
mkdir -p "$git_dir"
(
  cd "$git_dir"
  for ((d = 0; d < 50; d++)); do
    mkdir -p "src/mod$d"
    for ((f = 0; f < 100; f++)); do echo "module $d file $f" >"src/mod$d/f$f.txt"; done
  done
  git init -q .
  git -c user.name=bench -c user.email=bench@localhost add -A
  git -c user.name=bench -c user.email=bench@localhost commit -qm "5,000 files"
  echo change >>src/mod7/f7.txt  # one modified file, so status has something to say
  git status --porcelain >/dev/null
)

py_dir="$tmp/py"
mkdir -p "$py_dir"
mods="json re os sys collections functools itertools subprocess pathlib typing dataclasses
      argparse logging datetime decimal fractions email.parser http.client urllib.parse
      xml.etree.ElementTree csv sqlite3 hashlib tempfile shutil"
py_import="import $(echo $mods | tr ' ' ',')"

declare -A dir cmd
dir[cc]=$cc_dir
cmd[cc]='make -s clean && make -s -j2 >/dev/null'
dir[git]=$git_dir
cmd[git]="for i in \$(seq ${GIT_RUNS:-100}); do git status --porcelain >/dev/null; done"
dir[python]=$py_dir
cmd[python]="for i in \$(seq 20); do /usr/bin/python3 -c '$py_import'; done"

# --- timing, for a bench that defines workloads=(...), variants=(...), rounds and
# run_one WORKLOAD VARIANT (and after_one VARIANT, untimed after each run, when it needs one) ---

# Each must work before it is timed (and the first runs warm the page cache). $1: the bench's name.
check_and_warm() {
  for w in "${workloads[@]}"; do
    for v in "${variants[@]}"; do
      run_one "$w" "$v" >/dev/null || { echo "$1: $w ($v) failed" >&2; exit 1; }
      if declare -F after_one >/dev/null; then after_one "$v"; fi
      : >"$tmp/$w.$v.times"
      : >"$tmp/$w.$v.cpu"
    done
  done
}

# Wall time, and CPU time (user + system of everything the run started, the box's processes
# included: agentbox reaps init, init reaps the command), from bash's `times` in a subshell;
# the variants rotate which goes first, round by round. Appends to $tmp/WORKLOAD.VARIANT.{times,cpu}.
time_rounds() {
  local r w k v t0 t1 cpu nv=${#variants[@]}
  for ((r = 0; r < rounds; r++)); do
    for w in "${workloads[@]}"; do
      for ((k = 0; k < nv; k++)); do
        v=${variants[$(((r + k) % nv))]}
        t0=$EPOCHREALTIME
        cpu=$(
          run_one "$w" "$v" >/dev/null
          times  # no pipe: a pipeline's subshell would report its own (empty) children
        )
        cpu=${cpu##*$'\n'}
        t1=$EPOCHREALTIME
        if declare -F after_one >/dev/null; then after_one "$v"; fi
        echo "$t0 $t1" | awk '{printf "%.3f\n", ($2 - $1) * 1000}' >>"$tmp/$w.$v.times"
        echo "$cpu" | awk '{ gsub(/s/, "", $1); gsub(/s/, "", $2); split($1, u, "m"); split($2, s, "m")
          printf "%.3f\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 }' >>"$tmp/$w.$v.cpu"
      done
    done
  done
}

median() {
  sort -n "$1" | awk '{a[NR] = $1} END {
    printf "%.1f\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
