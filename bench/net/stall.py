#!/usr/bin/env python3
"""Both ends of the memory benchmark (bench/net/memory.sh).

  stall.py serve DIR            upstreams that accept and never read: plain on one port, TLS
                                (DIR/srv.pem, DIR/srv.key) on another; and a TLS one that answers
                                every request head with "200 ok" and closes; writes "PLAIN TLS OK"
                                to DIR/ports; runs until stdin closes. Each accepted socket keeps
                                a 4 KiB receive buffer, so what the host queues is the client side.
  stall.py post N HOST PORT plain|tls
                                (in the box) N connections, each a POST with a huge
                                Content-Length, then body bytes until none moves for 3 s; prints
                                "stalled BYTES", then reads lines on stdin: "legit HOST PORT" makes
                                one GET over TLS there and prints "legit STATUS"; any other ends.
                                TLS handshakes are driven without blocking: past the proxy's
                                network.max_intercepted a connection waits before its handshake,
                                and a connection the proxy ends (a stalled one, for a waiting
                                one) is dropped from the set.
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
    plain, tls, ok = listener(), listener(), listener()
    with open(os.path.join(d, "ports.tmp"), "w") as f:
        f.write("%d %d %d\n" % (plain.getsockname()[1], tls.getsockname()[1],
                                ok.getsockname()[1]))
    os.rename(os.path.join(d, "ports.tmp"), os.path.join(d, "ports"))
    sel = selectors.DefaultSelector()
    sel.register(plain, selectors.EVENT_READ, "plain")
    sel.register(tls, selectors.EVENT_READ, "tls")
    sel.register(ok, selectors.EVENT_READ, "ok")
    sel.register(sys.stdin, selectors.EVENT_READ, "stop")
    kept = []
    while True:
        for key, _ in sel.select(1.0):
            if key.data == "stop":
                return
            if key.data in ("plain", "tls", "ok"):
                try:
                    c, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                if key.data == "plain":
                    kept.append(c)
                    continue
                t = ctx.wrap_socket(c, server_side=True, do_handshake_on_connect=False)
                sel.register(t, selectors.EVENT_READ, "hs" if key.data == "tls" else "ok-hs")
                continue
            t = key.fileobj  # a handshake in progress, or an answering server's request
            if key.data == "ok-req":
                answer(sel, t)
                continue
            try:
                t.do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (ssl.SSLError, OSError):
                sel.unregister(t)
                t.close()
                continue
            sel.unregister(t)
            if key.data == "ok-hs":
                sel.register(t, selectors.EVENT_READ, "ok-req")
                continue
            kept.append(t)  # never read again


def answer(sel, t):
    """Reads a request head (a few reads at most) and answers it, then closes."""
    try:
        data = t.recv(65536)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return
    except (ssl.SSLError, OSError):
        data = b""
    sel.unregister(t)
    if b"\r\n\r\n" in data:
        t.setblocking(True)
        t.settimeout(10)
        try:
            t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (ssl.SSLError, OSError):
            pass
    t.close()


class Upload:
    """One connection's POST: the TLS handshake (non-blocking), the head, then body bytes."""

    def __init__(self, s, host):
        self.s = s
        self.pending = (b"POST /sink HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000000000\r\n\r\n"
                        % host.encode())
        self.shaking = isinstance(s, ssl.SSLSocket)

    def step(self, chunk):
        """Bytes moved (1 for a handshake step), or None when the connection ended."""
        try:
            if self.shaking:
                self.s.do_handshake()
                self.shaking = False
                return 1
            data = self.pending or chunk
            n = self.s.send(data)
            self.pending = self.pending[n:]
            return n
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except (ssl.SSLError, OSError):
            self.s.close()
            return None


def post(n, host, port, mode):
    lift_fd_limit()
    ctx = ssl.create_default_context() if mode == "tls" else None
    ups = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.settimeout(60)
        s.connect((host, port))
        s.setblocking(False)
        if ctx:
            s = ctx.wrap_socket(s, server_hostname=host, do_handshake_on_connect=False)
        up = Upload(s, host)
        if up.step(b"") is not None:
            ups.append(up)
    print("open", len(ups), flush=True)
    chunk, sent = b"x" * 65536, 0
    end, quiet = time.time() + 120, time.time()
    while time.time() < end and time.time() - quiet < 3:
        moved = 0
        for up in list(ups):
            m = up.step(chunk)
            if m is None:
                ups.remove(up)
            else:
                moved += m
        sent += moved
        if moved:
            quiet = time.time()
        else:
            time.sleep(0.2)
    print("stalled", sent, "open", len(ups), "handshaking", sum(u.shaking for u in ups), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "legit":
            break
        print("legit", legit(words[1], int(words[2])), flush=True)


def legit(host, port):
    """One GET over TLS (the proxy intercepts it); its status, or the error."""
    try:
        s = socket.create_connection((host, port), timeout=120)
        s = ssl.create_default_context().wrap_socket(s, server_hostname=host)
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
        data = b""
        while b"\r\n" not in data:
            more = s.recv(4096)
            if not more:
                break
            data += more
        s.close()
        return data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.1 ") else "none"
    except (OSError, ssl.SSLError) as e:
        return "error:" + type(e).__name__


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
