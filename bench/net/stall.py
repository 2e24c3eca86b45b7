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
  stall.py idle N HOST PORT     (in the box) N TLS connections, handshake done, nothing sent,
                                opened as post opens them; prints "idle N", then reads stdin as
                                post does.
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
    head, then body bytes. `events` is what it waits for (poll)."""

    def __init__(self, addr, host, ctx, idle=False):
        self.idle = idle  # handshake only, nothing sent
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        self.s.setblocking(False)
        self.s.connect_ex(addr)
        self.addr, self.host, self.ctx = addr, host, ctx
        self.connecting = True
        self.shaking = ctx is not None
        self.events = select.POLLOUT
        # Plain: a body that never ends. TLS: a whole request (its answer never comes) and then
        # bytes of a next one, pipelined: a slot holder the proxy never ends for a waiting flow
        # (a model's API may think for minutes), so all N stay open, stalled.
        length = b"0" if ctx else b"100000000000"
        self.pending = (b"POST /sink HTTP/1.1\r\nHost: %s\r\nContent-Length: %s\r\n\r\n"
                        % (host.encode(), length))

    def step(self, chunk):
        """Bytes moved (1 for a connect or handshake step), or None when the connection ended.
        A connect that completes goes on at once (ClientHello or request head): the proxy ends
        a flow whose first bytes do not come within 10 s."""
        moved = 0
        try:
            if self.connecting:
                err = self.s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                self.connecting = False
                moved = 1
                if self.ctx:
                    self.s = self.ctx.wrap_socket(self.s, server_hostname=self.host,
                                                  do_handshake_on_connect=False)
            if self.shaking:
                self.s.do_handshake()
                self.shaking = False
                moved = 1
            if self.idle:
                self.events = 0  # only a hang-up wakes it
                return moved
            n = self.s.send(self.pending or chunk)
            self.pending = self.pending[n:]
            self.events = select.POLLOUT
            return moved + n
        except (BlockingIOError, ssl.SSLWantWriteError):
            self.events = select.POLLOUT
        except ssl.SSLWantReadError:
            self.events = select.POLLIN
        except (ssl.SSLError, OSError):
            self.s.close()
            return None
        return moved

    def ended(self):
        """Whether the proxy ended it (FIN, RST or an error on the socket), without reading."""
        p = select.poll()
        p.register(self.s.fileno(), select.POLLRDHUP)
        return bool(p.poll(0))


def post(n, host, port, mode, idle=False):
    """Keeps N uploads open (N idle TLS connections when `idle`): one the proxy ends is replaced,
    as a hostile box would, until none has moved a byte for 3 s."""
    lift_fd_limit()
    ctx = ssl.create_default_context() if mode == "tls" else None
    addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
    ups = [None] * n
    print("open", n, flush=True)
    hold(ups, lambda: Upload(addr, host, ctx, idle))
    if idle:
        print("idle", n, flush=True)
    for line in sys.stdin:
        words = line.split()
        if words == ["count"]:
            # Nothing is replaced after "stalled": all still open now were open at the reading.
            print("count open", sum(u.s.fileno() >= 0 and not u.ended() for u in ups), "of", n,
                  flush=True)
        elif words == ["again"]:
            hold(ups, lambda: Upload(addr, host, ctx, idle))  # replace the ended, stall again
        elif words and words[0] == "legit":
            print("legit", legit(words[1], int(words[2])), flush=True)
        else:
            break


def hold(ups, new, fresh_max=64):
    """Drives every upload (those poll says are ready), opening the missing ones (None) and
    replacing ended ones, until nothing moved for 3 s (or 300 s). At most `fresh_max` are
    between connect and their first bytes at a time: a loaded machine gives the box little CPU,
    and a flow whose first bytes do not come within 10 s is ended by the proxy."""
    chunk, sent, replaced = b"x" * 65536, 0, -sum(u is None for u in ups)
    poller, by_fd = select.poll(), {}
    watch = select.POLLRDHUP | select.POLLERR | select.POLLHUP

    def start(i):
        nonlocal replaced
        up = ups[i] = new()
        replaced += 1
        by_fd[up.s.fileno()] = i
        poller.register(up.s.fileno(), up.events | watch)

    for i, up in enumerate(ups):
        if up is not None and up.s.fileno() >= 0:
            by_fd[up.s.fileno()] = i
            poller.register(up.s.fileno(), up.events | watch)
    missing = [i for i, up in enumerate(ups) if up is None or up.s.fileno() < 0]
    end, quiet, shown = time.time() + 300, time.time(), 0
    debug = os.environ.get("STALL_DEBUG")  # progress on stderr, once a second
    while time.time() < end and (missing or time.time() - quiet < 3):
        fresh = sum(u is not None and u.connecting for u in ups)
        while missing and fresh < fresh_max:
            start(missing.pop())
            fresh += 1
        moved = 0
        for fd, ev in poller.poll(200):
            i = by_fd[fd]
            up = ups[i]
            m = None if ev & watch and not up.connecting else up.step(chunk)
            if m is None:
                poller.unregister(fd)
                del by_fd[fd]
                up.s.close()
                missing.append(i)
                m = 1
            else:
                poller.modify(fd, up.events | watch)
            moved += m
        sent += moved
        if moved:
            quiet = time.time()
        if debug and time.time() - shown >= 1:
            shown = time.time()
            print("stall.py: missing", len(missing), "connecting",
                  sum(u is not None and u.connecting for u in ups), "handshaking",
                  sum(u is not None and u.shaking for u in ups), "replaced", replaced,
                  file=sys.stderr, flush=True)
    print("stalled", sent, "open", sum(u is not None for u in ups) - len(missing),
          "connecting", sum(u is not None and u.connecting for u in ups),
          "handshaking", sum(u is not None and u.shaking for u in ups), "replaced",
          max(replaced, 0), flush=True)


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


def main():
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2])
    elif cmd == "post":
        post(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif cmd == "idle":
        post(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), "tls", idle=True)
    else:
        sys.exit("stall.py: serve DIR | post N HOST PORT plain|tls | idle N HOST PORT")


if __name__ == "__main__":
    main()
