#!/usr/bin/env python3
"""An OTLP/HTTP logs receiver for the telemetry tests (loopback only).

otlp_receiver.py PORTFILE OUT MODE: binds 127.0.0.1:0, writes its port to PORTFILE, and appends
each POST body (one JSON document per line) to OUT. MODE ok answers 200 at once; slow reads the
request, then holds the answer for 30 s (a collector that never keeps up).
"""
import http.server
import json
import sys
import time

portfile, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if mode == "slow":
            time.sleep(30)
        doc = {"path": self.path, "content_type": self.headers.get("Content-Type", ""),
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


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
