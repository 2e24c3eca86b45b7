#!/usr/bin/env python3
"""Writes the binary seed corpora for the net fuzz targets (tests/fuzz/corpus/<name>/).

Run from anywhere; rerun after changing it and commit the files. Seeds are small, valid-looking
frames plus a few deliberately broken ones, so replays exercise both the accept and reject paths.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
BOX = bytes([10, 0, 2, 100])
GW = bytes([10, 0, 2, 2])
DNS = bytes([10, 0, 2, 3])
SYN_DST = bytes([198, 18, 0, 1])
BOX_MAC = bytes([2, 0, 0, 0, 0, 1])
GW_MAC = bytes([0x52, 0x55, 10, 0, 2, 2])


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload, frag=0x4000, options=b""):
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), 1, frag, 64,
                      proto, 0, src, dst) + options
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def pseudo(src, dst, proto, length):
    return src + dst + struct.pack("!BBH", 0, proto, length)


def tcp(src, dst, sport, dport, seq, ack, flags, window=65535, options=b"", payload=b""):
    off = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, window, 0, 0)
    seg = hdr + options + payload
    c = csum(pseudo(src, dst, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src, dst, sport, dport, payload):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = csum(pseudo(src, dst, 17, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def icmp_echo(ident, seq, payload, typ=8):
    msg = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def eth(typ, payload, dst=GW_MAC, src=BOX_MAC):
    return dst + src + struct.pack("!H", typ) + payload


def arp_request(target):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, BOX_MAC, BOX, b"\0" * 6, target)


def dns_query(name, qtype, ident=0x1234, flags=0x0100):
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


SYN_OPTS = bytes([2, 4, 0xFF, 0xC8, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7])

seeds = {}
syn = tcp(BOX, SYN_DST, 40000, 443, 1000, 0, 0x02, options=SYN_OPTS)
data = tcp(BOX, SYN_DST, 40000, 443, 1001, 5001, 0x18, payload=b"GET / HTTP/1.1\r\n\r\n")
seeds["tcp"] = {"syn": syn, "data": data, "fin": tcp(BOX, SYN_DST, 40000, 443, 1019, 5001, 0x11),
                "rst": tcp(BOX, SYN_DST, 40000, 443, 1019, 0, 0x04),
                "badopts": tcp(BOX, SYN_DST, 1, 2, 0, 0, 0x02, options=bytes([2, 4, 5, 0xB4, 3, 0, 0, 0]))}
q_a = dns_query("example.com", 1)
seeds["udp"] = {"dns": udp(BOX, DNS, 5353, 53, q_a), "short": udp(BOX, DNS, 1, 2, b"")[:6],
                "nocsum": struct.pack("!HHHH", 1, 53, 9, 0) + b"x"}
seeds["icmp"] = {"echo": icmp_echo(1, 1, b"abcdefgh"), "reply": icmp_echo(1, 1, b"", typ=0),
                 "unreach": bytes([3, 1, 0xFC, 0xFE, 0, 0, 0, 0])}
seeds["arp"] = {"who_has_gw": arp_request(GW), "who_has_dns": arp_request(DNS),
                "short": arp_request(GW)[:10]}
ip_opts = bytes([1, 1, 1, 0])
seeds["ipv4"] = {"tcp": ipv4(BOX, SYN_DST, 6, syn), "opts": ipv4(BOX, GW, 1, icmp_echo(1, 2, b"x"), options=ip_opts),
                 "frag": ipv4(BOX, GW, 17, b"xxxxxxxx", frag=0x2000),
                 "ihl_big": bytes([0x4F]) + ipv4(BOX, GW, 1, b"")[1:]}
seeds["eth"] = {"arp": eth(0x0806, arp_request(GW)), "syn": eth(0x0800, ipv4(BOX, SYN_DST, 6, syn)),
                "data": eth(0x0800, ipv4(BOX, SYN_DST, 6, data)),
                "dns": eth(0x0800, ipv4(BOX, DNS, 17, udp(BOX, DNS, 5353, 53, q_a))),
                "ping": eth(0x0800, ipv4(BOX, GW, 1, icmp_echo(9, 1, b"ping"))),
                "udp_other": eth(0x0800, ipv4(BOX, bytes([8, 8, 8, 8]), 17, udp(BOX, bytes([8, 8, 8, 8]), 1, 443, b"q"))),
                "ipv6": eth(0x86DD, b"\x60" + b"\0" * 39), "runt": b"\x01\x02"}
# The whole stack sees frames; reuse the Ethernet seeds.
seeds["stack"] = dict(seeds["eth"])
ptr_loop = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
seeds["dns"] = {"a": q_a, "aaaa": dns_query("api.github.com", 28), "txt": dns_query("x.example.com", 16),
                "https": dns_query("example.com", 65), "any": dns_query("example.com", 255),
                "loop": ptr_loop, "short": q_a[:9], "upper": dns_query("ExAmPlE.CoM", 1),
                "response": dns_query("example.com", 1, flags=0x8180)}

for name, files in seeds.items():
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for fname, blob in files.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(blob)
print("wrote", sum(len(v) for v in seeds.values()), "seeds")
