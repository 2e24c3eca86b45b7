#!/usr/bin/env python3
"""Start-up, phase by phase: runs `AGENTBOX run -q -- true` ROUNDS times with
AGENTBOX_TRACE_STARTUP=1 and prints, per phase, the medians of wall time, CPU time of the thread
that ran it and its minor page faults, from the stamps agentbox writes to stderr
(base/startup_trace.hpp). Also the whole run's CPU (user + system of every process, from wait4)
and wall time.

  bench/startup_trace.py [AGENTBOX] [ROUNDS] [-- EXTRA RUN ARGS]
"""
import os
import statistics
import sys
import time

# (process, phase) in start-up order; the wall time of each row runs from the previous row's stamp.
ORDER = [("S", "main"), ("S", "run"), ("S", "prep.paths"), ("S", "prep.protect"),
         ("S", "prep.session"), ("S", "prep.proxy"), ("S", "prep.mounts"), ("S", "prep.confine"),
         ("S", "prepared"), ("S", "clone"), ("I", "init"), ("I", "init.maps"),
         ("I", "init.mounts"), ("I", "init.joined"), ("I", "init.pivot"), ("P", "prog"),
         ("P", "prog.confined"), ("S", "started"), ("S", "reaped"), ("S", "end"),
         ("S", "dispatched")]
SIDE = [("N", "net"), ("N", "net.done")]  # init's network thread, beside init.mounts


def one(argv):
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.posix_spawn(argv[0], argv, dict(os.environ, AGENTBOX_TRACE_STARTUP="1"),
                         file_actions=[(os.POSIX_SPAWN_DUP2, w, 2),
                                       (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)])
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status, ru = os.wait4(pid, 0)
    wall = (time.monotonic() - t0) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"startup_trace.py: the run failed: {data.decode(errors='replace')}")
    stamps = {}
    sup = None
    for line in data.decode().splitlines():
        f = line.split()
        if len(f) != 7 or f[0] != "agentbox-trace":
            continue
        pid_, tid, mono, cpu, flt, phase = int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), f[6]
        if phase == "main":
            sup = pid_
        role = ("S" if pid_ == sup else "N" if phase.startswith("net") else
                "P" if phase.startswith("prog") else "I")
        stamps[(role, phase)] = (mono, cpu, flt, tid)
    return wall, (ru.ru_utime + ru.ru_stime) * 1000, stamps


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        extra = args[args.index("--") + 1:]
        args = args[:args.index("--")]
    agentbox = os.path.realpath(args[0] if args else "build/cli/agentbox")
    rounds = int(args[1]) if len(args) > 1 else 30
    argv = [agentbox, "run", "-q"] + extra + ["--", "true"]
    runs = [one(argv) for _ in range(rounds)]
    rows = {}
    for _, _, st in runs:
        seq = [k for k in ORDER if k in st]
        for prev, cur in zip(seq, seq[1:]):
            m0, c0, f0, t0 = st[prev]
            m1, c1, f1, t1 = st[cur]
            same = t0 == t1
            rows.setdefault(cur, []).append(((m1 - m0) / 1000, (c1 - c0) / 1000 if same else None,
                                             f1 - f0 if same else None))
        if ("S", "main") in st:
            m, c, f, _ = st[("S", "main")]
            rows.setdefault(("S", "main"), []).append((None, c / 1000, f))
        for k in [("I", "init"), ("P", "prog")]:
            if k in st:  # CPU and faults of the new process before its first stamp
                rows.setdefault((k[0], k[1] + " (from clone)"), []).append((None, st[k][1] / 1000, st[k][2]))
        if ("S", "clone") in st and ("S", "cloned") in st:  # clone3 itself, in the supervisor
            (m0, c0, f0, _), (m1, c1, f1, _) = st[("S", "clone")], st[("S", "cloned")]
            rows.setdefault(("S", "cloned (clone3)"), []).append(((m1 - m0) / 1000, (c1 - c0) / 1000, f1 - f0))
        if all(k in st for k in SIDE):
            (m0, c0, f0, _), (m1, c1, f1, _) = st[SIDE[0]], st[SIDE[1]]
            rows.setdefault(("N", "net.done"), []).append(((m1 - m0) / 1000, (c1 - c0) / 1000, f1 - f0))

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    def fmt(v, spec):
        return format(v, spec) if v is not None else "-"
    print(f"startup trace, {rounds} runs of {' '.join(argv[1:])} ({os.uname().release}, "
          f"{os.cpu_count()} cpus, load {' '.join(open('/proc/loadavg').read().split()[:3])}, "
          f"uid {os.getuid()})")
    print(f"  {'process':8s} {'phase (ends at)':24s} {'wall ms':>8s} {'cpu ms':>7s} {'faults':>7s}")
    names = {"S": "agentbox", "I": "init", "N": "init-net", "P": "program"}
    for key in ([("S", "main")] + [("I", "init (from clone)"), ("P", "prog (from clone)")] +
                [k for k in ORDER[1:]] + [("S", "cloned (clone3)"), ("N", "net.done")]):
        if key not in rows:
            continue
        v = rows[key]
        print(f"  {names[key[0]]:8s} {key[1]:24s} {fmt(med(x[0] for x in v), '8.3f')} "
              f"{fmt(med(x[1] for x in v), '7.3f')} {fmt(med(x[2] for x in v), '7.0f')}")
    stamped = sum(med(x[1] for x in v) or 0 for v in rows.values())
    print(f"  CPU in the rows above (medians, summed): {stamped:.2f} ms; the rest is the clone's and\n"
          f"  the program's exec and exit, init's and agentbox's exits (kernel teardown)")
    print(f"  whole run: wall median {statistics.median(r[0] for r in runs):.2f} ms, CPU (all "
          f"processes) median {statistics.median(r[1] for r in runs):.2f} ms")


main()
