#!/usr/bin/env python3
"""Both ends of the memory benchmark (bench/net/memory.sh).

  stall.py serve DIR            upstreams that accept and never read: plain on one port, TLS
                                (DIR/srv.pem, DIR/srv.key) on another; writes "PLAIN TLS" to
                                DIR/ports; runs until stdin closes. Each accepted socket keeps a
                                4 KiB receive buffer, so what the host queues is the client side.
  stall.py post N HOST PORT plain|tls
                                (in the box) N connections, each a POST with a huge
                                Content-Length, then body bytes until none moves for 3 s; prints
                                "stalled BYTES", waits for a line on stdin.
  stall.py idle N HOST PORT     (in the box) N TLS connections, handshake done, nothing sent;
                                prints "idle N", waits for a line on stdin.
"""
import os, resource, selectors, socket, ssl, sys, time


def lift_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    s.setblocking(False)
    return s


def serve(d):
    lift_fd_limit()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(d, "srv.pem"), os.path.join(d, "srv.key"))
    plain, tls = listener(), listener()
    with open(os.path.join(d, "ports.tmp"), "w") as f:
        f.write("%d %d\n" % (plain.getsockname()[1], tls.getsockname()[1]))
    os.rename(os.path.join(d, "ports.tmp"), os.path.join(d, "ports"))
    sel = selectors.DefaultSelector()
    sel.register(plain, selectors.EVENT_READ, "plain")
    sel.register(tls, selectors.EVENT_READ, "tls")
    sel.register(sys.stdin, selectors.EVENT_READ, "stop")
    kept = []
    while True:
        for key, _ in sel.select(1.0):
            if key.data == "stop":
                return
            if key.data in ("plain", "tls"):
                try:
                    c, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                if key.data == "plain":
                    kept.append(c)
                    continue
                t = ctx.wrap_socket(c, server_side=True, do_handshake_on_connect=False)
                sel.register(t, selectors.EVENT_READ, "hs")
                continue
            t = key.fileobj  # a handshake in progress
            try:
                t.do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (ssl.SSLError, OSError):
                sel.unregister(t)
                t.close()
                continue
            sel.unregister(t)
            kept.append(t)  # never read again


def post(n, host, port, mode):
    lift_fd_limit()
    ctx = ssl.create_default_context() if mode == "tls" else None
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.settimeout(60)
        s.connect((host, port))
        if ctx:
            s = ctx.wrap_socket(s, server_hostname=host)
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000000000\r\n\r\n"
                  % host.encode())
        s.setblocking(False)
        socks.append(s)
    print("open", len(socks), flush=True)
    chunk, sent = b"x" * 65536, 0
    end, quiet = time.time() + 120, time.time()
    while time.time() < end and time.time() - quiet < 3:
        moved = 0
        for s in socks:
            try:
                moved += s.send(chunk)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        sent += moved
        if moved:
            quiet = time.time()
        else:
            time.sleep(0.2)
    print("stalled", sent, flush=True)
    sys.stdin.readline()


def idle(n, host, port):
    lift_fd_limit()
    ctx = ssl.create_default_context()
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=60)
        socks.append(ctx.wrap_socket(s, server_hostname=host))
    print("idle", len(socks), flush=True)
    sys.stdin.readline()


def main():
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2])
    elif cmd == "post":
        post(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif cmd == "idle":
        idle(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("stall.py: serve DIR | post N HOST PORT plain|tls | idle N HOST PORT")


if __name__ == "__main__":
    main()
