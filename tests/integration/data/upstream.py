# A TLS upstream for the proxy's integration tests, on loopback only, with its own test CA.
#
#   upstream.py DIR PORT REAL_TOKEN
# DIR holds srv.pem/srv.key (written by the test) and receives:
#   ready         written once listening
#   seen.log      one line per request: "METHOD PATH AUTHORIZATION"
#   accepted.log  one line per TCP connection accepted (the oracle of connection budgets)
# Endpoints:
#   GET  /echo...          200, body "you sent: <Authorization>" (a secret echoed back)
#   POST /upload           200, body = sha256 hex of the request body (Content-Length or chunked)
#   GET  /download?n=N     200, N bytes of a fixed pattern (Content-Length), for checksums
#   GET  /sse              text/event-stream, 3 events 600 ms apart, then close
#   GET  /ws               WebSocket echo (RFC 6455, unmasked text frames back)
#   GET  /simple/demo-pkg/, /files/...   a PEP 503 index with one wheel (DIR/demo_pkg-1.0-...)
#   GET  /demo-pkg         an npm registry document for one package
#   *    /git/...          git http-backend (smart HTTP) over DIR/git, Basic auth required:
#                          the password must be REAL_TOKEN, else 401
#   *    /pub/...          git http-backend over DIR/pub, anonymous (a cargo registry index)
#   POST /record-body      records the request body in seen.log ("BODY <body>"), 200 "got N"
#   GET  /cargo/dl/NAME/VERSION/download   DIR/cargo/NAME-VERSION.crate
#   /forms, /store, /h2c, /ws-auth          hostile echoes (hostile.py)
#   /oauth/token, POST on sts.* and iam.*   endpoints that mint credentials (minting.py)
#   POST /v1/..., /v1beta/...               a mock model API reporting token usage (model_api.py)
#   GET  /v1/responses (WebSocket)          its Responses API over WebSocket (model_api.ws_message)
import base64
import hashlib
import zipfile

import hostile
import minting
import model_api
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DIR, PORT, REAL = sys.argv[1], int(sys.argv[2]), sys.argv[3]
LOCK = threading.Lock()
PATTERN = bytes(range(256)) * 256  # 64 KiB


def record(method, path, auth):
    with LOCK, open(os.path.join(DIR, "seen.log"), "a") as f:
        f.write(f"{method} {path} {auth}\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk:
                return
            n -= len(chunk)
            yield chunk

    def reply(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        url = urlsplit(self.path)
        auth = self.headers.get("Authorization", "")
        record(self.command, url.path, auth)
        if hostile.handle(self, url, auth, DIR):
            return None
        if minting.handle(self, url, DIR):
            return None
        if url.path.startswith(("/v1/", "/v1beta/")) and self.command == "POST":
            if model_api.handle(self, url, b"".join(self.body()).decode(errors="replace")):
                return None
        if url.path.startswith("/git/"):
            return self.git(url, auth)
        if url.path.startswith("/pub/"):
            return self.git(url, auth, root="pub")
        if url.path == "/record-body":
            data = b"".join(self.body())
            with LOCK, open(os.path.join(DIR, "seen.log"), "a") as f:
                f.write("BODY " + data.decode(errors="replace") + "\n")
            return self.reply(200, f"got {len(data)}\n".encode())
        if url.path.startswith("/cargo/dl/"):
            parts = url.path.split("/")  # "", cargo, dl, NAME, VERSION, download
            path = os.path.join(DIR, "cargo", f"{parts[3]}-{parts[4]}.crate")
            if len(parts) == 6 and os.path.isfile(path):
                with open(path, "rb") as f:
                    return self.reply(200, f.read(), "application/octet-stream")
        if url.path.startswith("/echo"):
            for _ in self.body():
                pass
            return self.reply(200, f"you sent: {auth}\n".encode())
        if url.path == "/upload":
            h = hashlib.sha256()
            for chunk in self.body():
                h.update(chunk)
            return self.reply(200, (h.hexdigest() + "\n").encode())
        if url.path == "/download":
            n = int(parse_qs(url.query).get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                part = PATTERN[: min(n, len(PATTERN))]
                self.wfile.write(part)
                n -= len(part)
            return
        if url.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(3):
                self.wfile.write(f"data: event {i}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.6)
            self.close_connection = True
            return
        upgrade = self.headers.get("Upgrade", "").lower() == "websocket"
        if url.path == "/ws" or (url.path == "/v1/responses" and upgrade):
            return self.websocket()
        # A package index (PEP 503) and an npm registry, each with one package.
        if url.path == "/simple/demo-pkg/":
            return self.reply(200, b'<html><body><a href="/files/demo_pkg-1.0-py3-none-any.whl">'
                              b'demo_pkg-1.0-py3-none-any.whl</a></body></html>', "text/html")
        if url.path.startswith("/files/"):
            with open(os.path.join(DIR, "demo_pkg-1.0-py3-none-any.whl"), "rb") as f:
                return self.reply(200, f.read(), "application/octet-stream")
        if url.path == "/demo-pkg":
            host = self.headers.get("Host", "")
            doc = ('{"name":"demo-pkg","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":'
                   '{"name":"demo-pkg","version":"1.0.0","dist":{"tarball":"https://%s/demo-pkg/-/'
                   'demo-pkg-1.0.0.tgz"}}}}' % host)
            return self.reply(200, doc.encode(), "application/json")
        return self.reply(404, b"not found\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        for _ in range(16):
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(self.rfile.read(2), "big")
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if opcode == 8:
                return
            out = model_api.ws_message(data)
            if out is None:
                out = b"echo: " + data
            else:
                record("WS", data.decode(errors="replace"), "")
            size = bytes([len(out)]) if len(out) < 126 else bytes([126]) + len(out).to_bytes(2, "big")
            self.wfile.write(bytes([0x81]) + size + out)
            self.wfile.flush()
        self.close_connection = True

    def git(self, url, auth, root="git"):
        ok = root == "pub"
        if not ok and auth.startswith("Basic "):
            user_pass = base64.b64decode(auth[6:]).decode(errors="replace")
            ok = user_pass.partition(":")[2] == REAL
        if not ok:
            for _ in self.body():
                pass
            return self.reply(401, b"auth required\n", extra=[("WWW-Authenticate", 'Basic realm="git"')])
        env = {
            "GIT_PROJECT_ROOT": os.path.join(DIR, root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": url.path[len(root) + 1:],
            "QUERY_STRING": url.query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_USER": "agent",
            "REMOTE_ADDR": "127.0.0.1",
            "PATH": "/usr/bin:/bin",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        data = b"".join(self.body())
        out = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            k, _, v = line.decode().partition(": ")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


# The wheel pip downloads: the smallest valid one.
with zipfile.ZipFile(os.path.join(DIR, "demo_pkg-1.0-py3-none-any.whl"), "w") as whl:
    whl.writestr("demo_pkg/__init__.py", "")
    whl.writestr("demo_pkg-1.0.dist-info/METADATA",
                 "Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
    whl.writestr("demo_pkg-1.0.dist-info/WHEEL",
                 "Wheel-Version: 1.0\nGenerator: agentbox-test\nRoot-Is-Purelib: true\n"
                 "Tag: py3-none-any\n")
    whl.writestr("demo_pkg-1.0.dist-info/RECORD", "")

class CountingServer(ThreadingHTTPServer):
    def get_request(self):
        # Counted as the TCP connection is accepted, before the TLS handshake (ctx, below).
        sock, addr = socket.socket.accept(self.socket)
        with LOCK, open(os.path.join(DIR, "accepted.log"), "a") as f:
            f.write("accepted\n")
        return ctx.wrap_socket(sock, server_side=True), addr


server = CountingServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(DIR, "srv.pem"), os.path.join(DIR, "srv.key"))
server.socket = ctx.wrap_socket(server.socket, server_side=True)
open(os.path.join(DIR, "ready"), "w").close()
server.serve_forever()
