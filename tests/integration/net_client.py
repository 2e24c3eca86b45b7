#!/usr/bin/python3
# The client side of tests/integration/net_test.cpp, run inside the box: each mode prints one
# result line the test checks (standard library only; the box has no pip packages).
import hashlib
import os
import random
import socket
import struct
import sys
import threading
import time
import urllib.request


def out(*a):
    print(*a, flush=True)


def download(url, slow=False):
    h = hashlib.sha256()
    n = 0
    with urllib.request.urlopen(url, timeout=60) as r:
        while True:
            b = r.read(1 << 20 if not slow else 64 << 10)
            if not b:
                break
            h.update(b)
            n += len(b)
            if slow:
                time.sleep(0.01)
    out("download", h.hexdigest(), n)


def upload(host, port, size):
    rnd = random.Random(size)
    block = rnd.randbytes(1 << 20)
    h = hashlib.sha256()
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(b"PUT /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
              % (host.encode(), size))
    left = size
    i = 0
    while left:
        # Vary each block so reordering or duplication would change the digest.
        chunk = bytes([i & 0xFF]) + block[1:min(len(block), left)]
        chunk = chunk[:left]
        h.update(chunk)
        s.sendall(chunk)
        left -= len(chunk)
        i += 1
    reply = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        reply += b
    body = reply.split(b"\r\n\r\n", 1)[1].decode().strip()
    out("upload", h.hexdigest(), size, "server", body)


def concurrent(host, port, n):
    socks = [socket.create_connection((host, int(port)), timeout=30) for _ in range(int(n))]
    out("open", len(socks))  # all connected at once before any byte moves
    for i, s in enumerate(socks):
        s.sendall(b"conn-%05d\n" % i * 100)
    ok = 0
    for i, s in enumerate(socks):
        want = b"conn-%05d\n" % i * 100
        got = b""
        while len(got) < len(want):
            b = s.recv(65536)
            if not b:
                break
            got += b
        ok += got == want
        s.close()
    out("concurrent", ok)


def short(host, port, n):
    ok = 0
    for i in range(int(n)):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"x")
        ok += s.recv(1) == b"x"
        s.close()
    return ok


def phases(host, port, n):
    out("warm", short(host, port, 10))
    sys.stdin.readline()
    out("short", short(host, port, n))
    sys.stdin.readline()


def halfclose(host, port):
    # Our FIN first: the peer keeps sending after it (echo of everything, then its FIN).
    s = socket.create_connection((host, int(port)), timeout=30)
    data = random.Random(7).randbytes(3 << 20)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        got += b
    out("box-fin-first", "ok" if got == data else "bad %d" % len(got))
    s.close()


def peerfin(host, port):
    # The peer's FIN first (it sent its part and shut down); we still send after it.
    s = socket.create_connection((host, int(port)), timeout=30)
    got = b""
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        got += b
    data = random.Random(9).randbytes(2 << 20)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    # Our read side is at EOF already, so ask on a second connection whether the peer has it all
    # (exiting earlier would end the box, and the session, with bytes still on their way).
    t = socket.create_connection((host, int(port)), timeout=30)
    t.sendall(b"?")
    t.shutdown(socket.SHUT_WR)
    answer = t.recv(100).decode().strip()
    out("peer-fin-first", len(got), hashlib.sha256(data).hexdigest(), answer)


def dns(name, qtype):
    types = {"A": 1, "AAAA": 28, "TXT": 16, "ANY": 255, "HTTPS": 65, "MX": 15}
    q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", types[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(q, ("10.0.2.3", 53))
    r = s.recv(4096)
    flags, qd, an = struct.unpack("!HHH", r[2:8])
    out("dns", name, qtype, "rcode", flags & 0xF, "answers", an)


def connect(host, port):
    try:
        # The box gets SYN-ACK only once the supervisor's upstream connect succeeded.
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"agentbox-exfil")
        s.close()
        out("connect", host, port, "ok")
    except OSError as e:
        out("connect", host, port, "error", type(e).__name__)


def udp(port, *hosts):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for h in hosts:
        for _ in range(3):
            try:
                s.sendto(b"agentbox-exfil", (h, int(port)))
            except OSError as e:
                out("udp", h, "error", type(e).__name__)
    out("udp sent")


def icmp(*hosts):
    for h in hosts:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        s.settimeout(0.5)
        try:
            s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"agentbox-exfil", (h, 0))
            s.recvfrom(1024)
            out("icmp", h, "reply")
        except OSError as e:
            out("icmp", h, "no-reply", type(e).__name__)


modes = {"download": lambda u: download(u), "slowread": lambda u: download(u, slow=True),
         "upload": lambda h, p, n: upload(h, p, int(n)), "concurrent": concurrent,
         "phases": lambda h, p, n: phases(h, p, int(n)), "halfclose": halfclose,
         "peerfin": peerfin, "dns": dns, "connect": connect, "udp": udp, "icmp": icmp}
modes[sys.argv[1]](*sys.argv[2:])
