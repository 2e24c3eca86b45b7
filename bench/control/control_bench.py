#!/usr/bin/env python3
"""The control plane's latency against a real box (docs/BENCHMARKS.md, "control plane").

  bench/control/control_bench.py [AGENTBOX] [ROUNDS]   (default build/cli/agentbox, 50)

Measures, on one running session:
  * each verb's round trip over the socket (connect, one request, the answer): status, policy,
    allow, deny; and the wall time of the `agentbox ps` / `agentbox policy` commands themselves;
  * how soon a policy change reaches the data path: a program in the box connects to a loopback
    listener of ours in a tight loop (1 ms pause after a refusal); each round denies the port,
    then measures from the moment `allow` is sent to the first connection the listener accepts.
Traffic stays on loopback. No timing assertion: it prints medians and maxima.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

agentbox = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else
                            os.path.join(os.path.dirname(__file__), "../../build/cli/agentbox"))
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 50

BOX = r"""
import socket, sys, time
addr = socket.getaddrinfo('data.test', int(sys.argv[1]), socket.AF_INET)[0][4]
end = time.monotonic() + 300
while time.monotonic() < end:
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(addr)
        s.close()
        time.sleep(0.0005)
    except OSError:
        s.close()
        time.sleep(0.001)
"""


def stats(name, xs):
    xs = sorted(xs)
    p95 = xs[int(len(xs) * 0.95) - 1] if len(xs) >= 20 else xs[-1]
    print(f"{name:<34} n={len(xs):<4} median {statistics.median(xs) * 1e3:7.2f} ms   "
          f"p95 {p95 * 1e3:7.2f} ms   max {xs[-1] * 1e3:7.2f} ms")


def call(path, verb, **args):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    req = {"v": 1, "verb": verb}
    if args:
        req["args"] = args
    s.sendall((json.dumps(req) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(65536)
        if not b:
            break
        buf += b
    s.close()
    r = json.loads(buf)
    if not r.get("ok"):
        raise RuntimeError(r)
    return r["result"]


def main():
    tmp = tempfile.mkdtemp(prefix="control_bench.")
    run_dir = os.path.join(tmp, "run")
    ws = os.path.join(tmp, "ws")
    os.mkdir(run_dir, 0o700)
    os.mkdir(ws)
    env = dict(os.environ, XDG_RUNTIME_DIR=run_dir, XDG_STATE_HOME=os.path.join(tmp, "state"))

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)
    port = lsock.getsockname()[1]
    accepts = []
    stop = threading.Event()

    def serve():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except OSError:
                continue
            accepts.append(time.monotonic())
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    rule = f"data.test:{port}"
    box = subprocess.Popen([agentbox, "run", "-q", "--allow", rule, "--connect-to",
                            f"data.test:{port}:127.0.0.1:{port}", "--", "/usr/bin/python3", "-c",
                            BOX, str(port)], env=env, cwd=ws)
    sock_dir = os.path.join(run_dir, "agentbox")
    path = None
    for _ in range(400):
        names = os.listdir(sock_dir) if os.path.isdir(sock_dir) else []
        if names and accepts:
            path = os.path.join(sock_dir, names[0])
            break
        time.sleep(0.05)
    if path is None:
        box.kill()
        sys.exit("control_bench: the session did not start")
    sid = os.path.basename(path)[:6]
    print(f"session {sid}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    for verb, args in (("status", {}), ("policy", {}), ("allow", {"rule": "x.example"}),
                       ("deny", {"rule": "y.example"})):
        xs = []
        for _ in range(rounds):
            t = time.monotonic()
            call(path, verb, **args)
            xs.append(time.monotonic() - t)
        stats(f"socket round trip: {verb}", xs)
    for argv in (["ps"], ["policy", sid]):
        xs = []
        for _ in range(max(rounds // 5, 5)):
            t = time.monotonic()
            subprocess.run([agentbox, *argv], env=env, check=True, capture_output=True)
            xs.append(time.monotonic() - t)
        stats(f"command: agentbox {' '.join(argv)}", xs)

    effective, cut = [], []
    for _ in range(rounds):
        call(path, "deny", rule=rule)
        t_deny = time.monotonic()
        time.sleep(0.05)
        late = [a for a in accepts[-50:] if a > t_deny + 0.002]
        cut.append(len(late))
        t0 = time.monotonic()
        call(path, "allow", rule=rule)
        first = None
        for _ in range(2000):
            after = [a for a in accepts[-20:] if a >= t0]
            if after:
                first = after[0]
                break
            time.sleep(0.0005)
        if first is not None:
            effective.append(first - t0)
    stats("allow -> next connection accepted", effective)
    print(f"connections accepted > 2 ms after a deny answered: {sum(cut)} in {rounds} rounds")
    call(path, "kill")
    box.wait(timeout=30)
    stop.set()
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
