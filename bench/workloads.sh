# Sourced by the benches that run real work (confinement.sh, review_overlay.sh): makes the
# workloads' inputs under $tmp (once, outside any timing) and defines, per workload name,
# dir[NAME] (its directory, the workspace) and cmd[NAME] (the shell line that runs it):
#   cc      make -j2 of a generated 50-file C program (gcc -O2), from clean
#   git     `git status` x100 in a generated repository of 5,000 committed files
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
cmd[git]='for i in $(seq 100); do git status --porcelain >/dev/null; done'
dir[python]=$py_dir
cmd[python]="for i in \$(seq 20); do /usr/bin/python3 -c '$py_import'; done"
