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
                                "stalled BYTES open N ...", then reads lines on stdin: "count"
                                prints "count open M of N" (M: those the proxy has not ended);
                                "again" replaces the ended ones and stalls again;
                                "legit HOST PORT" makes one GET over TLS there and prints
                                "legit STATUS"; any other ends. Connects and TLS handshakes are
                                driven without blocking, all N at once: past the proxy's
                                network.max_intercepted a connection waits before its handshake,
                                and one the proxy ends (a stalled holder, for a waiting one) is
                                replaced until "stalled", as a hostile box would, so N are open
                                when the supervisor is measured.
  stall.py idle N HOST PORT     (in the box) N TLS connections, handshake done, nothing sent;
                                prints "idle N", waits for a line on stdin.
"""
import errno, os, resource, select, selectors, socket, ssl, sys, time


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
    """One connection's POST: a non-blocking connect, the TLS handshake (non-blocking), the
    head, then body bytes."""

    def __init__(self, addr, host, ctx):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        self.s.setblocking(False)
        self.s.connect_ex(addr)
        self.addr, self.host, self.ctx = addr, host, ctx
        self.connecting = True
        self.shaking = ctx is not None
        self.pending = (b"POST /sink HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000000000\r\n\r\n"
                        % host.encode())

    def step(self, chunk):
        """Bytes moved (1 for a connect or handshake step), or None when the connection ended."""
        try:
            if self.connecting:
                err = self.s.connect_ex(self.addr)
                if err in (errno.EINPROGRESS, errno.EALREADY):
                    return 0
                if err not in (0, errno.EISCONN):
                    raise OSError(err, os.strerror(err))
                self.connecting = False
                if self.ctx:
                    self.s = self.ctx.wrap_socket(self.s, server_hostname=self.host,
                                                  do_handshake_on_connect=False)
                return 1
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

    def ended(self):
        """Whether the proxy ended it (FIN, RST or an error on the socket), without reading."""
        p = select.poll()
        p.register(self.s.fileno(), select.POLLRDHUP)
        return bool(p.poll(0))


def post(n, host, port, mode):
    """Keeps N uploads open: one the proxy ends (a stalled holder of an interception slot, for a
    waiting flow) is replaced, as a hostile box would, until none has moved a byte for 3 s."""
    lift_fd_limit()
    ctx = ssl.create_default_context() if mode == "tls" else None
    addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
    ups = [Upload(addr, host, ctx) for _ in range(n)]
    print("open", len(ups), flush=True)
    hold(ups, lambda: Upload(addr, host, ctx))
    for line in sys.stdin:
        words = line.split()
        if words == ["count"]:
            # Nothing is replaced after "stalled": all still open now were open at the reading.
            print("count open", sum(not u.ended() for u in ups), "of", n, flush=True)
        elif words == ["again"]:
            hold(ups, lambda: Upload(addr, host, ctx))  # replace the ended ones, stall again
        elif words and words[0] == "legit":
            print("legit", legit(words[1], int(words[2])), flush=True)
        else:
            break


def hold(ups, new):
    """Drives every upload, replacing ended ones, until nothing moved for 3 s (or 300 s)."""
    chunk, sent, replaced = b"x" * 65536, 0, 0
    end, quiet = time.time() + 300, time.time()
    while time.time() < end and time.time() - quiet < 3:
        moved = 0
        for i, up in enumerate(ups):
            m = up.step(chunk)
            if m is None:
                ups[i] = new()
                replaced += 1
                m = 1
            moved += m
        sent += moved
        if moved:
            quiet = time.time()
        else:
            time.sleep(0.2)
    print("stalled", sent, "open", len(ups), "connecting", sum(u.connecting for u in ups),
          "handshaking", sum(u.shaking for u in ups), "replaced", replaced, flush=True)


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
