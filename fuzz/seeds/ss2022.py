#!/usr/bin/env python3
"""Seeds for the ss2022_tcp, ss2022_stream and ss2022_udp fuzz targets (python3, std only).

    python3 fuzz/seeds/ss2022.py      writes fuzz/corpus/ss2022_{tcp,stream,udp}/seed-*

All three read `[method][mode][rest]` (see their module docs). Nothing here is sealed: the
odd modes describe a request, response stream or packet that the target seals itself, so that
libFuzzer starts past the tag checks, in the header parsers and the stream's framing; the
even-mode seeds are raw wire of the right lengths (salt + fixed header, a whole small packet)
so the framing paths run too. Re-running rewrites the same bytes.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = {"aes128": 0, "aes256": 1, "chacha": 2}
INTACT, TRUNC, FLIP = 1, 3, 5

IPV4 = bytes([0x01, 192, 0, 2, 1]) + struct.pack(">H", 443)
IPV6 = bytes([0x04]) + bytes.fromhex("20010db8000000000000000000000001") + struct.pack(">H", 53)
DOMAIN = bytes([0x03, 11]) + b"example.com" + struct.pack(">H", 80)
HTTP = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def target(addr):
    return bytes([len(addr)]) + addr


def tcp(method, mode, position=0, skew=0, padding=0, addr=IPV4, payload=b""):
    return (bytes([METHODS[method], mode]) + struct.pack(">I", position)
            + struct.pack(">b", skew) + struct.pack(">H", padding) + target(addr) + payload)


def stream(method, mode, position=0, sizes=(0xFF,) * 4, skew=0, echo=True, salt=b"",
           payloads=(b"x",)):
    """A response stream for ss2022_stream: payload specs are `[len - 1 u16][bytes]`."""
    specs = b"".join(struct.pack(">H", len(p) - 1) + p for p in payloads)
    salt = (salt + bytes(32))[:16 if method == "aes128" else 32]
    return (bytes([METHODS[method], mode]) + struct.pack(">I", position) + bytes(sizes)
            + struct.pack(">b", skew) + bytes([0 if echo else 1]) + salt + specs)


def stream_pattern(method, mode, length, **kw):
    """One payload of `length` bytes that the target fills itself (only the spec is given)."""
    return stream(method, mode, payloads=(), **kw) + struct.pack(">H", length - 1)


def udp(method, mode, position=0, server=False, sid=0x0102030405060708, pid=0, padding=0,
        addr=IPV4, payload=b""):
    return (bytes([METHODS[method], mode]) + struct.pack(">I", position)
            + bytes([1 if server else 0]) + struct.pack(">QQH", sid, pid, padding)
            + target(addr) + payload)


SEEDS = {
    "ss2022_tcp": {
        "aes128-http": tcp("aes128", INTACT, addr=DOMAIN, payload=HTTP),
        "aes256-padding-only": tcp("aes256", INTACT, padding=17, addr=IPV6),
        "chacha-http": tcp("chacha", INTACT, payload=HTTP),
        "chacha-skew-31": tcp("chacha", INTACT, skew=31, payload=b"x"),
        "aes256-max-padding": tcp("aes256", INTACT, padding=900),
        "aes128-trunc-fixed": tcp("aes128", TRUNC, position=20, payload=b"hi"),
        "aes256-trunc-var": tcp("aes256", TRUNC, position=70, addr=DOMAIN, payload=HTTP),
        "chacha-flip-var": tcp("chacha", FLIP, position=8 * 65 + 3, payload=HTTP),
        "aes128-flip-salt": tcp("aes128", FLIP, position=5, payload=b"x"),
        "raw-aes128-fixed": bytes([0, 0]) + bytes(range(16 + 11 + 16)),
        "raw-chacha-response": bytes([2, 2]) + bytes(range(32 + 43 + 16 + 20)),
    },
    "ss2022_stream": {
        "aes128-two-chunks-small-pieces": stream("aes128", INTACT, sizes=(5, 17, 0x81, 40),
                                                 payloads=(b"HTTP/1.1 200 OK\r\n\r\n", b"body")),
        "aes256-whole": stream("aes256", INTACT, salt=b"\x01" * 32, payloads=(b"a", b"bc", b"def")),
        "chacha-byte-by-byte": stream("chacha", INTACT, sizes=(0, 0, 0, 0), payloads=(b"hi", b"!")),
        "aes256-largest-chunk": stream_pattern("aes256", INTACT, 0xFFFF, sizes=(0xC0, 0x90, 3, 0xFF)),
        "chacha-skew-31": stream("chacha", INTACT, skew=31),
        "aes128-skew-minus-30": stream("aes128", INTACT, skew=-30, payloads=(b"on time",)),
        "aes256-other-salt": stream("aes256", INTACT, echo=False),
        "aes128-trunc-head": stream("aes128", TRUNC, position=40, payloads=(b"x", b"y")),
        "chacha-trunc-boundary": stream("chacha", TRUNC, position=32 + 43 + 16 + 1 + 16,
                                        payloads=(b"1", b"22")),
        "aes256-flip-fixed": stream("aes256", FLIP, position=8 * 40 + 1, payloads=(b"x", b"y")),
        "aes128-flip-second-chunk": stream("aes128", FLIP, position=8 * (16 + 27 + 16 + 3 + 16 + 18 + 2),
                                           payloads=(b"abc", b"defgh")),
        "raw-aes128-head": bytes([0, 0, 0]) + bytes(range(16 + 27 + 16)),
        "raw-chacha-pieces": bytes([2, 0, 3, 7, 0x81, 1]) + bytes(range(32 + 43 + 16 + 40)),
    },
    "ss2022_udp": {
        "aes128-client": udp("aes128", INTACT, payload=b"\x12\x34query"),
        "aes256-server": udp("aes256", INTACT, server=True, pid=7, addr=IPV6, payload=b"answer"),
        "chacha-client-padding": udp("chacha", INTACT, padding=32, addr=DOMAIN, payload=b"q"),
        "chacha-server-empty": udp("chacha", INTACT, server=True),
        "aes256-trunc": udp("aes256", TRUNC, position=30, payload=b"data"),
        "chacha-flip": udp("chacha", FLIP, position=8 * 40, payload=b"data"),
        "aes128-flip-separate": udp("aes128", FLIP, position=9, payload=b"data"),
        "raw-aes128": bytes([0, 0]) + bytes(range(16 + 11 + 7 + 16)),
        "raw-chacha": bytes([2, 0]) + bytes(range(24 + 16 + 11 + 7 + 16)),
    },
}

for fuzz_target, seeds in SEEDS.items():
    out = os.path.join(HERE, "..", "corpus", fuzz_target)
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
