# Hostile endpoints for the proxy's echo tests (imported by upstream.py; proxy_echo_test.cpp):
# an upstream that hands a secret it was sent back in every form it can, in pieces, through a
# coded body, or through an upgraded connection.
#   GET  /forms[?gzip=1|honour=1|coding=1]  the last Authorization token seen (this request's,
#                                  or an earlier one's) in every form, one "NAME VALUE" per line;
#                                  gzip=1: gzip whatever was asked, honour=1: gzip when the
#                                  request's Accept-Encoding allows; X-Saw-AE says what it was;
#                                  coding=1: the token itself as the Content-Encoding
#   POST /store, GET /store        stores a body, serves it back (Range honoured: 206);
#                                  GET /store?partial=1 answers 206 unasked
#   GET  /h2c                      101 to h2c when asked, then records and echoes the tunnel
#   GET  /ws-auth                  WebSocket: sends the Authorization token split across two
#                                  fragments, then records and echoes the box's messages
import base64
import gzip
import hashlib
import os
import threading
import urllib.parse

STATE = {"token": "", "store": b""}
LOCK = threading.Lock()
PREFIX = bytes([0x00, 0xFF, 0x10, 0x7E, 0x3C, 0x81])


def forms(tok):
    t = tok.encode()
    out = [("raw", tok)]
    for url in (False, True):
        enc = base64.urlsafe_b64encode if url else base64.b64encode
        for k in range(6):
            for pad in (True, False):
                s = enc(PREFIX[:k] + t + PREFIX[: k % 3]).decode()
                out.append((f"b64-{'url' if url else 'std'}-{k}-{'pad' if pad else 'nopad'}",
                            s if pad else s.rstrip("=")))
    out.append(("basic", base64.b64encode(b"x-access-token:" + t).decode()))
    out.append(("hex-lower", t.hex()))
    out.append(("hex-upper", t.hex().upper()))
    out.append(("pct-all-upper", "".join("%%%02X" % b for b in t)))
    out.append(("pct-all-lower", "".join("%%%02x" % b for b in t)))
    out.append(("pct-mixed", "".join("%%%02X" % b if i % 3 else chr(b) for i, b in enumerate(t))))
    out.append(("pct-quote", urllib.parse.quote(tok, safe="")))
    out.append(("json-u-all", "".join("\\u%04x" % b for b in t)))
    out.append(("json-u-upper", "".join("\\u%04X" % b for b in t)))
    out.append(("json-u-mixed", "".join("\\u%04x" % b if i % 2 else chr(b) for i, b in enumerate(t))))
    return out


def record(dir_, line):
    with LOCK, open(os.path.join(dir_, "seen.log"), "a") as f:
        f.write(line + "\n")


def handle(h, url, auth, dir_):
    """Serves the hostile endpoints; returns False for any other path."""
    q = urllib.parse.parse_qs(url.query)
    if url.path == "/forms":
        if auth:
            STATE["token"] = auth.split(" ", 1)[-1]
        body = "".join(f"{n} {v}\n" for n, v in forms(STATE["token"])).encode()
        ae = h.headers.get("Accept-Encoding", "")
        extra = [("X-Saw-AE", ae or "none")]
        if "gzip" in q or ("honour" in q and "gzip" in ae):
            body = gzip.compress(body)
            extra.append(("Content-Encoding", "gzip"))
        if "coding" in q:
            extra.append(("Content-Encoding", STATE["token"]))
        h.reply(200, body, extra=extra)
        return True
    if url.path == "/store":
        if h.command == "POST":
            STATE["store"] = b"".join(h.body())
            h.reply(200, b"stored\n")
            return True
        data = STATE["store"]
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes=") or "partial" in q:
            a, _, b = (rng[6:] if rng else "0-9").partition("-")
            a, b = int(a), int(b) if b else len(data) - 1
            h.reply(206, data[a : b + 1], extra=[("Content-Range", f"bytes {a}-{b}/{len(data)}")])
        else:
            h.reply(200, data)
        return True
    if url.path == "/h2c":
        if h.headers.get("Upgrade", "").lower() != "h2c":
            h.reply(200, b"no upgrade\n")
            return True
        h.send_response(101)
        h.send_header("Connection", "Upgrade")
        h.send_header("Upgrade", "h2c")
        h.end_headers()
        h.wfile.flush()
        data = h.rfile.read1(65536)
        record(dir_, "TUNNEL " + data.decode(errors="replace").replace("\r\n", " | "))
        h.wfile.write(data)
        h.wfile.flush()
        h.close_connection = True
        return True
    if url.path == "/ws-auth":
        ws_auth(h, auth, dir_)
        return True
    return False


def ws_auth(h, auth, dir_):
    record(dir_, "EXT " + h.headers.get("Sec-WebSocket-Extensions", "none"))
    key = h.headers.get("Sec-WebSocket-Key", "")
    accept = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    h.send_response(101)
    h.send_header("Upgrade", "websocket")
    h.send_header("Connection", "Upgrade")
    h.send_header("Sec-WebSocket-Accept", accept.decode())
    h.end_headers()
    tok = auth.split(" ", 1)[-1].encode()
    half = len(tok) // 2
    # The token in two fragments, and two writes: a frame header sits inside the secret.
    h.wfile.write(bytes([0x01, half]) + tok[:half])
    h.wfile.flush()
    h.wfile.write(bytes([0x80, len(tok) - half]) + tok[half:])
    h.wfile.flush()
    for _ in range(16):
        head = h.rfile.read(2)
        if len(head) < 2:
            break
        opcode, n = head[0] & 0x0F, head[1] & 0x7F
        mask = h.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(h.rfile.read(n)))
        record(dir_, "WSFRAME " + data.decode(errors="replace"))
        if opcode == 8:
            break
        h.wfile.write(bytes([0x81, len(data)]) + data)
        h.wfile.flush()
    h.close_connection = True
