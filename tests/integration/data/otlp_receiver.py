#!/usr/bin/env python3
"""An OTLP/HTTP logs receiver for the telemetry tests (loopback only).

otlp_receiver.py PORTFILE OUT MODE [CERT KEY] (`-` `-`: plain HTTP): binds 127.0.0.1:0, writes its port to PORTFILE, and
appends each POST body (one JSON document per line, with its path, Content-Type and Authorization)
to OUT. MODE ok answers 200 at once; slow reads the request, then holds the answer for 30 s (a
collector that never keeps up); stall accepts connections and never reads or writes a byte (with
TLS: a handshake that never finishes). With CERT and KEY (PEM files) it speaks HTTPS (Python's
ssl module: OpenSSL), the handshake done in the request's thread.
"""
import http.server
import json
import socket
import ssl
import sys
import time

portfile, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
cert = sys.argv[4] if len(sys.argv) > 5 and sys.argv[4] != "-" else None
key = sys.argv[5] if cert else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if mode == "slow":
            time.sleep(30)
        doc = {"path": self.path, "content_type": self.headers.get("Content-Type", ""),
               "authorization": self.headers.get("Authorization", ""),
               "body": body.decode("utf-8")}
        with open(out, "a") as f:
            f.write(json.dumps(doc) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def publish(port):
    import os
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(portfile + ".tmp", portfile)


if mode == "stall":
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    publish(lst.getsockname()[1])
    held = []
    while True:
        conn, _ = lst.accept()
        held.append(conn)  # kept open, never read: the peer waits for us forever
        with open(out + ".accepted", "a") as f:
            f.write("1\n")

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.handle_error = lambda *a: None  # a refused handshake is a test case, not a traceback
if cert:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
publish(srv.server_address[1])
srv.serve_forever()
