#!/usr/bin/env python3
"""Seeds for the dns_response fuzz target: DNS answers built byte by byte (python3, std only).

    python3 fuzz/seeds/dns_response.py        writes fuzz/corpus/dns_response/seed-msg-*

The target (fuzz/fuzz_targets/dns_response.rs) reads one byte, then a message: bit 0 of the
byte picks the query the message answers (0: A, 1: AAAA, both for www.example.test with ID
0x1234), bit 1 takes the next byte as an answer count and appends the rest, as records, to a
copy of the query instead. Every seed here is a whole message, so its first byte is 0 or 1.

The messages are shaped like real servers' answers (dnsmasq, unbound, BIND: QR RD RA set,
names compressed against the longest suffix written before, EDNS OPT in the additional
section) so that libFuzzer starts from the answer-walking code rather than having to find its
way past the header and question checks; a few are the hostile or broken cases that code must
refuse. Each seed is listed below with what decode_response should make of it. The builder
compresses names the way servers do; the hostile cases are written by hand.

Re-running the script rewrites the same bytes (nothing is random), so the corpus stays
reviewable: change a seed here, run the script, commit both.
"""

import os
import struct

QID = 0x1234
QNAME = "www.example.test"
A, NS, CNAME, SOA, TXT, AAAA, OPT, RRSIG = 1, 2, 5, 6, 16, 28, 41, 46
IN, CH = 1, 3
# Header flags: QR, opcode 0, RD | RA; TC is 0x0200, AA 0x0400, AD 0x0020.
RESPONSE = 0x8180
TC, AA, AD = 0x0200, 0x0400, 0x0020
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5


class Msg:
    """A DNS message written front to back, compressing names as servers do."""

    def __init__(self, flags=RESPONSE, rcode=NOERROR, qid=QID):
        self.b = bytearray(struct.pack(">HHHHHH", qid, flags | rcode, 0, 0, 0, 0))
        self.suffixes = {}  # lowercase labels tuple -> offset of its first label

    def counts(self, qd=None, an=None, ns=None, ar=None):
        """Overwrites the section counts (for counts that disagree with the sections)."""
        for i, v in enumerate((qd, an, ns, ar)):
            if v is not None:
                struct.pack_into(">H", self.b, 4 + 2 * i, v)
        return self

    def _count(self, section):
        at = 4 + 2 * section
        (n,) = struct.unpack_from(">H", self.b, at)
        struct.pack_into(">H", self.b, at, n + 1)

    def name(self, name, compress=True):
        labels = [l for l in name.split(".") if l]
        for i in range(len(labels)):
            key = tuple(l.lower() for l in labels[i:])
            if compress and key in self.suffixes:
                self.b += struct.pack(">H", 0xC000 | self.suffixes[key])
                return self
            if len(self.b) < 0x4000:
                self.suffixes.setdefault(key, len(self.b))
            label = labels[i].encode()
            self.b += bytes([len(label)]) + label
        self.b.append(0)
        return self

    def question(self, name=QNAME, qtype=A, qclass=IN):
        self._count(0)
        self.name(name)
        self.b += struct.pack(">HH", qtype, qclass)
        return self

    def rr(self, owner, rtype, ttl, rdata=b"", section=1, rclass=IN, owner_raw=None):
        """One record; `rdata` is bytes, or a function writing it (names in it compressed)."""
        self._count(section)
        if owner_raw is not None:
            self.b += owner_raw
        else:
            self.name(owner)
        self.b += struct.pack(">HHI", rtype, rclass, ttl)
        at = len(self.b)
        self.b += b"\0\0"
        if callable(rdata):
            rdata(self)
        else:
            self.b += rdata
        struct.pack_into(">H", self.b, at, len(self.b) - at - 2)
        return self

    def cname(self, owner, target, ttl=300, section=1):
        return self.rr(owner, CNAME, ttl, lambda m: m.name(target), section)

    def a(self, owner, ip, ttl=300):
        return self.rr(owner, A, ttl, bytes(int(x) for x in ip.split(".")))

    def aaaa(self, owner, ip, ttl=300):
        return self.rr(owner, AAAA, ttl, ipv6(ip))

    def soa(self, zone, ttl=3600, section=2):
        def rdata(m):
            m.name("ns1." + zone).name("hostmaster." + zone)
            m.b += struct.pack(">IIIII", 2026120301, 7200, 3600, 1209600, 300)

        return self.rr(zone, SOA, ttl, rdata, section)

    def opt(self, udp_size=1232, ext_flags=0, options=b""):
        """EDNS(0) OPT pseudo-record: root owner, class = UDP size, TTL = ext. RCODE and flags."""
        return self.rr(".", OPT, ext_flags, options, section=3, rclass=udp_size)

    def raw(self, data):
        self.b += data
        return self

    def here(self):
        return len(self.b)

    def bytes(self, cut=None):
        return bytes(self.b if cut is None else self.b[:cut])


def ipv6(text):
    head, _, tail = text.partition("::")
    h = [int(x, 16) for x in head.split(":") if x]
    t = [int(x, 16) for x in tail.split(":") if x]
    return struct.pack(">8H", *(h + [0] * (8 - len(h) - len(t)) + t))


def edns_option(code, data):
    return struct.pack(">HH", code, len(data)) + data


COOKIE = edns_option(10, bytes(range(8)) + bytes(range(0x10, 0x20)))
# Extended DNS Error 22 (No Reachable Authority), with a text part.
EDE = edns_option(15, struct.pack(">H", 22) + b"no reachable authority")
DO_BIT = 0x8000


def seeds():
    """(name, query pick, message, what decode_response makes of it)."""
    out = []

    def seed(name, pick, msg, expect):
        out.append((name, pick, msg.bytes() if isinstance(msg, Msg) else msg, expect))

    # --- Chains and compression -------------------------------------------------------------
    # A CDN-style chain of four CNAMEs, each target compressed against the names before it
    # (pointers into the middle of earlier record data), then two A records.
    m = Msg().question()
    m.cname(QNAME, "www.example.test.cdn.example.net", 3600)
    m.cname("www.example.test.cdn.example.net", "edge.cdn.example.net", 300)
    m.cname("edge.cdn.example.net", "e7.a.edge.cdn.example.net", 60)
    m.cname("e7.a.edge.cdn.example.net", "lb.e7.a.edge.cdn.example.net", 20)
    m.a("lb.e7.a.edge.cdn.example.net", "198.51.100.10", 20)
    m.a("lb.e7.a.edge.cdn.example.net", "198.51.100.11", 20)
    m.opt()
    seed("cname-chain-4", 0, m, "2 addresses, TTL 20")

    # The same chain asked as AAAA, answered with AAAA records and one stray A.
    m = Msg().question(qtype=AAAA)
    m.cname(QNAME, "edge.cdn.example.net", 300)
    m.cname("edge.cdn.example.net", "v6.edge.cdn.example.net", 120)
    m.aaaa("v6.edge.cdn.example.net", "2001:db8::10", 90)
    m.a("v6.edge.cdn.example.net", "198.51.100.12", 90)
    m.aaaa("v6.edge.cdn.example.net", "2001:db8:0:1::11", 600)
    seed("cname-chain-aaaa", 1, m, "2 IPv6 addresses, TTL 90")

    # Pointers to pointers: record 1's owner is a pointer to the question's name; its CNAME
    # data is `cdn` + a pointer to that pointer; record 2's owner points at that data, and
    # record 3's owner at record 2's owner pointer. Every jump is backwards, so it is legal.
    m = Msg().question()
    owner1 = m.here()
    m.rr(None, CNAME, 300, lambda m: m.raw(b"\x03cdn" + struct.pack(">H", 0xC000 | owner1)),
         owner_raw=b"\xc0\x0c")
    target = m.here() - 6  # the CNAME's data: 03 'cdn' c0 <owner1>
    owner2 = m.here()
    m.rr(None, A, 60, bytes([192, 0, 2, 21]), owner_raw=struct.pack(">H", 0xC000 | target))
    m.rr(None, A, 30, bytes([192, 0, 2, 22]), owner_raw=struct.pack(">H", 0xC000 | owner2))
    seed("pointer-to-pointer", 0, m, "cdn.www.example.test: 2 addresses, TTL 30")

    # A CNAME whose target is a pointer to a pointer to a pointer (three hops in one name).
    m = Msg().question()
    p1 = m.here()
    m.rr(None, TXT, 60, b"\x05hello", owner_raw=b"\xc0\x0c")  # owner: -> question name
    p2 = m.here()
    m.rr(None, TXT, 60, b"\x05world", owner_raw=struct.pack(">H", 0xC000 | p1))
    m.rr(None, CNAME, 300, struct.pack(">H", 0xC000 | p2), owner_raw=b"\xc0\x0c")
    m.a(QNAME, "192.0.2.23")
    seed("cname-to-itself-via-pointers", 0, m, "CNAME to its own name: 1 address, TTL 300")

    # The longest name: three 63-byte labels, one of 56 and `test` (255 bytes in wire form, the
    # last label through a pointer to the question's), the target of a CNAME, then owned by an
    # A record through a pointer to that.
    long = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 56, "test"])
    m = Msg().question()
    m.cname(QNAME, long, 300)
    m.a(long, "192.0.2.24", 300)
    seed("long-name", 0, m, "1 address, TTL 300")

    # That name one label longer is over 255 bytes: refused.
    m = Msg().question()
    m.cname(QNAME, "x." + long, 300)
    seed("name-too-long", 0, m, "BadLabel")

    # Names in mixed case everywhere, nothing compressed (some servers echo the question's
    # case, 0x20 randomisation): matched case-insensitively.
    m = Msg().question("WwW.ExAmPlE.TeSt")
    m.suffixes.clear()
    m.rr(None, CNAME, 300, lambda m: m.name("Cdn.EXAMPLE.test", compress=False),
         owner_raw=b"\x03WWW\x07example\x04TEST\x00")
    m.rr(None, A, 300, bytes([192, 0, 2, 25]), owner_raw=b"\x03cDN\x07Example\x04tesT\x00")
    seed("mixed-case", 0, m, "1 address, TTL 300")

    # --- Several answers, mixed types ------------------------------------------------------
    m = Msg(flags=RESPONSE | AD).question()
    m.a(QNAME, "192.0.2.31", 300)
    m.aaaa(QNAME, "2001:db8::31", 300)
    m.a(QNAME, "192.0.2.32", 30)
    m.rr(QNAME, RRSIG, 300, bytes(range(40)))
    m.a(QNAME, "192.0.2.33", 0x80000000)  # top bit set: treated as 0
    m.opt(ext_flags=DO_BIT)
    seed("a-mixed-answers", 0, m, "3 addresses, TTL 0")

    # Asked as AAAA: the A record, the TXT and the AAAA of class CH are skipped.
    m = Msg(flags=RESPONSE | AD).question(qtype=AAAA)
    m.aaaa(QNAME, "2001:db8::41", 300)
    m.a(QNAME, "192.0.2.41", 300)
    m.aaaa(QNAME, "2001:db8::42", 120)
    m.rr(QNAME, TXT, 300, b"\x0bv=spf1 -all")
    m.rr(QNAME, AAAA, 300, ipv6("2001:db8::43"), rclass=CH)
    m.opt(ext_flags=DO_BIT, options=COOKIE)
    seed("aaaa-mixed-answers", 1, m, "2 IPv6 addresses, TTL 120")

    # A typical dnsmasq / unbound answer: one A, authority NS, additional glue and OPT.
    m = Msg(flags=RESPONSE | AA).question()
    m.a(QNAME, "192.0.2.51", 600)
    m.rr("example.test", NS, 600, lambda m: m.name("ns1.example.test"), section=2)
    m.rr("ns1.example.test", A, 600, bytes([192, 0, 2, 53]), section=3)
    m.rr("ns1.example.test", AAAA, 600, ipv6("2001:db8::53"), section=3)
    m.opt(options=COOKIE)
    seed("answer-authority-additional-opt", 0, m, "1 address, TTL 600")

    # Records for other names that the chain does not reach, around the real one.
    m = Msg().question()
    m.a("other.example.test", "192.0.2.61")
    m.cname("elsewhere.example.test", QNAME)
    m.a(QNAME, "192.0.2.62", 77)
    m.cname("www.example.test.example.test", "x.example.test")
    seed("unrelated-records", 0, m, "1 address, TTL 77")

    # A CNAME loop: www -> loop -> www, with an address for each; the walk stops after 16 hops.
    m = Msg().question()
    m.cname(QNAME, "loop.example.test", 60)
    m.cname("loop.example.test", QNAME, 60)
    m.a("loop.example.test", "192.0.2.71")
    m.a(QNAME, "192.0.2.72")
    seed("cname-loop", 0, m, "1 address (192.0.2.72: 16 hops end on www), TTL 60")

    # A chain of 17 CNAMEs: one more than is followed, so its addresses are not reached.
    m = Msg().question()
    names = [QNAME] + ["h%d.example.test" % i for i in range(1, 18)]
    for a_, b_ in zip(names, names[1:]):
        m.cname(a_, b_, 300)
    m.a(names[-1], "192.0.2.81")
    seed("cname-chain-17", 0, m, "no addresses")

    # --- Cut short --------------------------------------------------------------------------
    # TC set, three A records counted, the message ends inside the third's address: the two
    # that fit are used.
    m = Msg(flags=RESPONSE | TC).question()
    for i in range(3):
        m.a(QNAME, "192.0.2.%d" % (91 + i), 300)
    seed("truncated-in-rdata", 0, m.bytes(cut=m.here() - 2), "truncated, 2 addresses")

    # TC set, cut inside the labels of an owner name (written out, not compressed): the walk
    # ends there, the chain's end is not reached.
    m = Msg(flags=RESPONSE | TC).question()
    m.cname(QNAME, "cut.short.example.net", 300)
    cut = m.here() + 7
    m.rr(None, A, 300, bytes([192, 0, 2, 95]), owner_raw=b"\x03cut\x05short\x07example\x03net\x00")
    seed("truncated-in-name", 0, m.bytes(cut=cut), "truncated, no addresses")

    # The same cut without TC: a malformed message.
    m = Msg().question()
    for i in range(3):
        m.a(QNAME, "192.0.2.%d" % (96 + i), 300)
    seed("short-without-tc", 0, m.bytes(cut=m.here() - 2), "Short")

    # TC set and no answers at all (what a server sends when even one would not fit).
    m = Msg(flags=RESPONSE | TC).question(qtype=AAAA)
    m.opt()
    seed("truncated-empty-aaaa", 1, m, "truncated, no addresses")

    # --- Errors and empty answers ----------------------------------------------------------
    m = Msg(rcode=NXDOMAIN).question()
    m.soa("example.test")
    m.opt()
    seed("nxdomain-soa-opt", 0, m, "NXDOMAIN")

    m = Msg(rcode=SERVFAIL).question(qtype=AAAA)
    m.opt(options=EDE)
    seed("servfail-ede", 1, m, "SERVFAIL")

    # NOERROR with no data: the SOA in the authority section is not an answer.
    m = Msg(flags=RESPONSE | AA).question(qtype=AAAA)
    m.soa("example.test")
    seed("nodata-soa", 1, m, "no addresses")

    m = Msg(rcode=REFUSED).question()
    seed("refused", 0, m, "REFUSED")

    # An extended RCODE in OPT (BADVERS = 16: header RCODE 0, OPT's upper bits 1): we send no
    # OPT, so only the header's RCODE counts, and it says NOERROR.
    m = Msg().question()
    m.a(QNAME, "192.0.2.101")
    m.opt(ext_flags=0x01000000)
    seed("opt-extended-rcode", 0, m, "1 address, TTL 300")

    # --- Refused before the answers ----------------------------------------------------------
    seed("foreign-id", 0, Msg(qid=0x4321).question().a(QNAME, "192.0.2.111"), "IdMismatch")
    seed("not-a-response", 0, Msg(flags=0x0100).question(), "NotResponse")
    seed("opcode-notify", 0, Msg(flags=RESPONSE | 0x2000).question(), "Opcode(4)")
    seed("two-questions", 0, Msg().question().question(), "QuestionMismatch")
    seed("other-question", 1, Msg().question("www.example.tesu", AAAA), "QuestionMismatch")

    # --- Malformed records --------------------------------------------------------------------
    # A forward pointer inside CNAME data.
    m = Msg().question()
    m.rr(QNAME, CNAME, 300, b"\x03fwd\xc0\x7f")
    seed("forward-pointer", 0, m, "BadLabel")

    # A label of the reserved 0x40 (extended) type as an owner.
    m = Msg().question()
    m.rr(None, A, 300, bytes([192, 0, 2, 121]), owner_raw=b"\x41\x00")
    seed("reserved-label", 0, m, "BadLabel")

    # CNAME data longer than the name in it.
    m = Msg().question()
    m.rr(QNAME, CNAME, 300, lambda m: m.name("pad.example.test").raw(b"\0\0"))
    seed("cname-trailing-bytes", 0, m, "BadRdata")

    # An AAAA record with 4 bytes of data, in an answer to an AAAA query.
    m = Msg().question(qtype=AAAA)
    m.rr(QNAME, AAAA, 300, bytes([192, 0, 2, 131]))
    seed("aaaa-four-bytes", 1, m, "BadRdata")

    # RDLENGTH past the end of the message.
    m = Msg().question()
    m.raw(b"\xc0\x0c" + struct.pack(">HHIH", A, IN, 300, 0xFFFF) + bytes(4)).counts(an=1)
    seed("rdlength-past-end", 0, m, "Short")

    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = os.path.join(here, "..", "corpus", "dns_response")
    os.makedirs(corpus, exist_ok=True)
    names = set()
    for name, pick, msg, expect in seeds():
        assert name not in names, name
        names.add(name)
        data = bytes([pick]) + msg
        assert len(data) < 512, (name, len(data))  # small, as a UDP answer without EDNS is
        with open(os.path.join(corpus, "seed-msg-" + name), "wb") as f:
            f.write(data)
        print("seed-msg-%-34s %4d bytes  %s" % (name, len(data), expect))


if __name__ == "__main__":
    main()
