#!/usr/bin/env python3
"""Wall and CPU time of start-up variants, interleaved (sourced by the start-up benches).

  bench/cpu_pass.py DIR ROUNDS NAME...   each DIR/NAME.argv holds one argument per line

Runs each variant ROUNDS times, rotating which goes first each round; CPU is user + system of the
variant's whole process tree (wait4's rusage: every process it waited for, and those they waited
for), wall is spawn to reaped. Prints "NAME WALL_MEDIAN CPU_MEDIAN" per variant, in ms.
"""
import os
import statistics
import sys
import time


def main():
    d, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    argvs = {n: open(os.path.join(d, n + ".argv")).read().splitlines() for n in names}
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    null = os.open(os.devnull, os.O_RDWR)
    for r in range(rounds):
        for k in range(len(names)):
            n = names[(r + k) % len(names)]
            t0 = time.monotonic()
            pid = os.posix_spawn(argvs[n][0], argvs[n], os.environ,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                               (os.POSIX_SPAWN_DUP2, null, 1),
                                               (os.POSIX_SPAWN_DUP2, null, 2)])
            _, status, ru = os.wait4(pid, 0)
            wall[n].append((time.monotonic() - t0) * 1000)
            cpu[n].append((ru.ru_utime + ru.ru_stime) * 1000)
            if os.waitstatus_to_exitcode(status) != 0:
                sys.exit(f"cpu_pass.py: {n} failed (status {status})")
    for n in names:
        print(n, f"{statistics.median(wall[n]):.2f}", f"{statistics.median(cpu[n]):.2f}")


main()
