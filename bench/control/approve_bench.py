#!/usr/bin/env python3
"""How soon an answer releases a held connection (docs/BENCHMARKS.md, "Approvals").

  bench/control/approve_bench.py [AGENTBOX] [ROUNDS]   (default build/cli/agentbox, 20)

One session with `--ask '*.ex.test:PORT'`: a program in the box resolves h1.ex.test, h2..., one
after the other, and connects to each (a loopback listener of ours, through --connect-to). Each
round waits until the question is listed, then answers it `once` and measures from the moment
the answer is sent to the moment our listener accepts the connection (and the verb's own round
trip): over the socket (the `approve` verb), and for a few rounds with the `agentbox approve ID QID once` command (exec
included). Then, the DNS path with no question asked: sessions that resolve an allowed name
2,000 times (each a query to the stack), without `--ask` and with `--ask` on other names,
interleaved, three of each. Traffic stays on loopback. No timing assertion: it prints medians
and maxima.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from control_bench import call, stats  # noqa: E402  (the same socket client and statistics)

agentbox = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else
                            os.path.join(os.path.dirname(__file__), "../../build/cli/agentbox"))
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20

BOX = r"""
import os, socket, sys
os.environ['RES_OPTIONS'] = 'timeout:30 attempts:1'
port, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(1, n + 1):
    try:
        addr = socket.getaddrinfo(f'h{i}.ex.test', port, socket.AF_INET)[0][4]
        s = socket.create_connection(addr, timeout=5)
        s.close()
    except OSError as e:
        print(f'h{i}: {e}', flush=True)
"""


LOOKUPS = r"""
import socket, time
t = time.monotonic()
for _ in range(2000):
    socket.getaddrinfo('ok.test', 443, socket.AF_INET)
print(f'{(time.monotonic() - t) / 2000 * 1e6:.1f}')
"""


def dns_rates(env, ws):
    """Microseconds per allowed lookup, without and with --ask configured (interleaved)."""
    got = {"no ask": [], "ask on other names": []}
    for _ in range(3):
        for label, extra in (("no ask", []), ("ask on other names", ["--ask", "*.other.test"])):
            out = subprocess.run([agentbox, "run", "-q", "--allow", "ok.test", *extra, "--",
                                  "/usr/bin/python3", "-c", LOOKUPS], env=env, cwd=ws,
                                 capture_output=True, text=True, timeout=120)
            got[label].append(float(out.stdout.strip() or "nan"))
    for label, xs in got.items():
        print(f"allowed lookup, {label:<20} {' '.join(f'{x:.1f}' for x in xs)} us/lookup")


def main():
    import socket
    import tempfile
    import threading
    tmp = tempfile.mkdtemp(prefix="approve_bench.")
    run_dir = os.path.join(tmp, "run")
    ws = os.path.join(tmp, "ws")
    os.mkdir(run_dir, 0o700)
    os.mkdir(ws)
    env = dict(os.environ, XDG_RUNTIME_DIR=run_dir, XDG_STATE_HOME=os.path.join(tmp, "state"),
               XDG_CONFIG_HOME=os.path.join(tmp, "cfg"))
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]
    accepts = []

    def serve():
        while True:
            c, _ = lsock.accept()
            accepts.append(time.monotonic())
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    commands = max(rounds // 4, 3)
    total = rounds + commands
    argv = [agentbox, "run", "-q", "--ask", f"*.ex.test:{port}"]
    for i in range(1, total + 1):
        argv += ["--connect-to", f"h{i}.ex.test:{port}:127.0.0.1:{port}"]
    box = subprocess.Popen(argv + ["--", "/usr/bin/python3", "-c", BOX, str(port), str(total)],
                           env=env, cwd=ws, stderr=subprocess.DEVNULL)
    sock_dir = os.path.join(run_dir, "agentbox")
    path = None
    for _ in range(400):
        names = os.listdir(sock_dir) if os.path.isdir(sock_dir) else []
        if names:
            path = os.path.join(sock_dir, names[0])
            break
        time.sleep(0.05)
    if path is None:
        box.kill()
        sys.exit("approve_bench: the session did not start")
    sid = os.path.basename(path)[:6]
    print(f"session {sid}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    def next_question():
        for _ in range(2000):
            pending = call(path, "approvals")["pending"]
            if pending:
                return pending[0]["id"]
            time.sleep(0.005)
        sys.exit("approve_bench: no question came")

    def accepted_after(t0):
        for _ in range(10000):
            after = [a for a in accepts[-5:] if a >= t0]
            if after:
                return after[0] - t0
            time.sleep(0.0002)
        return None

    verb, command, rtt = [], [], []
    for i in range(total):
        qid = next_question()
        t0 = time.monotonic()
        if i < rounds:
            call(path, "approve", id=qid, answer="once")
            rtt.append(time.monotonic() - t0)
        else:
            subprocess.run([agentbox, "approve", sid, qid, "once"], env=env, check=True,
                           capture_output=True)
        d = accepted_after(t0)
        if d is not None:
            (verb if i < rounds else command).append(d)
    stats("approve verb round trip", rtt)
    stats("approve verb -> connection accepted", verb)
    stats("`agentbox approve` -> accepted", command)
    box.wait(timeout=30)
    dns_rates(env, ws)
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
