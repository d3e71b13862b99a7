"""Software TSO (s2c.dataplane.gso): segments reassemble, every checksum verifies (scapy recomputes them
as the oracle), lengths respect gso_size, per-segment IPv4 ID / TCP seq / flags as the kernel's GSO."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting

from s2c.dataplane.gso import GsoError, GsoType, VnetFlags, VnetHdr, complete_csum, ones_sum, segment

TS_OPTS = [("NOP", None), ("NOP", None), ("Timestamp", (123456, 654321))]


def rfc1071(buf: bytes) -> int:
    """Reference ones'-complement sum, word by word with end-around carry."""
    if len(buf) & 1:
        buf += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", buf):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


@given(st.binary(max_size=3000))
def test_ones_sum_matches_rfc1071(buf):
    assert ones_sum(buf) == rfc1071(buf)


@given(st.binary(max_size=3000))
def test_fast_word_sum_agrees(buf):
    """The audioop word sum (where the module exists) and the int path agree modulo 0xFFFF."""
    from s2c.dataplane import gso

    ref = gso._payload_sum(buf) % 0xFFFF
    assert gso._word_sum(memoryview(buf)) % 0xFFFF == ref
    if gso._audioop is not None:
        assert gso._word_sum_audioop(buf) % 0xFFFF == ref
        assert gso._word_sum_audioop(b"\xff\xff" * 700) % 0xFFFF == 0  # 0xFFFF == -0


def test_ones_sum_edges():
    assert ones_sum(b"") == 0 and ones_sum(bytes(7)) == 0
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\x80\x00\x80\x00") == 0x0001  # carry wraps around
    assert ones_sum(b"\x01") == 0x0100  # odd length: padded with a zero byte


def super_packet(version: int, payload: bytes, flags: str = "PA", options=(), seq: int = 1000, ipid: int = 7,
                 ext: bool = False, tos: int = 0):
    """A GSO super-packet as the TCP stack hands it to a TSO device: real lengths, CHECKSUM_PARTIAL
    (the checksum field holds the pseudo-header sum), plus its virtio_net_hdr."""
    tcp = TCP(sport=40000, dport=5201, seq=seq, ack=99, flags=flags, window=502, options=list(options))
    if version == 4:
        pkt = IP(src="198.51.100.1", dst="203.0.113.9", id=ipid, flags="DF", tos=tos) / tcp / payload
    else:
        ip6 = IPv6(src="2001:db8::1", dst="2001:db8:1::9", tc=tos)
        pkt = (ip6 / IPv6ExtHdrDestOpt() / tcp / payload) if ext else (ip6 / tcp / payload)
    raw = bytearray(bytes(pkt))
    toff = len(raw) - len(bytes(tcp / payload))
    thl = (raw[toff + 12] >> 4) * 4
    # kernel-style partial checksum: folded pseudo-header sum (non-inverted)
    if version == 4:
        pseudo = raw[12:20] + struct.pack("!HH", 6, len(raw) - toff)
    else:
        pseudo = raw[8:40] + struct.pack("!IxxxB", len(raw) - toff, 6)
    raw[toff + 16:toff + 18] = struct.pack("!H", ones_sum(pseudo))
    return bytes(raw), toff, thl


def vnet(version: int, toff: int, thl: int, mss: int, ecn: bool = False) -> bytes:
    gso = (GsoType.TCPV4 if version == 4 else GsoType.TCPV6) | (GsoType.ECN if ecn else 0)
    return VnetHdr(VnetFlags.NEEDS_CSUM, gso, toff + thl, mss, toff, 16).pack()


def scapy_checks(seg: bytes, version: int) -> None:
    """scapy recomputes IP/TCP checksums when they are deleted: they must equal ours."""
    p = IP(seg) if version == 4 else IPv6(seg)
    q = p.copy()
    if version == 4:
        del q[IP].chksum
        del q[IP].len
    else:
        del q[IPv6].plen
    del q[TCP].chksum
    q = (IP if version == 4 else IPv6)(bytes(q))
    assert bytes(q) == seg


def tcp_verifies(seg: bytes, version: int, toff: int) -> bool:
    if version == 4:
        pseudo = seg[12:20] + struct.pack("!HH", 6, len(seg) - toff)
    else:
        pseudo = seg[8:40] + struct.pack("!IxxxB", len(seg) - toff, 6)
    return ones_sum(pseudo + seg[toff:]) == 0xFFFF


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from([4, 6]), payload=st.binary(min_size=1, max_size=9000),
       mss=st.integers(min_value=1, max_value=1460), ts=st.booleans(), ext=st.booleans(),
       flags=st.sampled_from(["A", "PA", "FPA", "CA", "CPA", "FA"]),
       seq=st.integers(min_value=0, max_value=2**32 - 1), ipid=st.integers(min_value=0, max_value=0xFFFF))
def test_segments_reassemble_and_verify(version, payload, mss, ts, ext, flags, seq, ipid):
    pkt, toff, thl = super_packet(version, payload, flags, TS_OPTS if ts else (), seq, ipid, ext and version == 6)
    segs = segment(vnet(version, toff, thl, mss, ecn="C" in flags), pkt)
    assert len(segs) == -(-len(payload) // mss)
    assert b"".join(s[toff + thl:] for s in segs) == payload
    orig_flags = pkt[toff + 13]
    for i, s in enumerate(segs):
        assert len(s) <= toff + thl + mss
        assert s[toff + 20:toff + thl] == pkt[toff + 20:toff + thl]  # options copied
        scapy_checks(s, version)
        assert tcp_verifies(s, version, toff)
        p = IP(s) if version == 4 else IPv6(s)
        t = p[TCP]
        assert t.seq == (seq + i * mss) & 0xFFFFFFFF
        assert (t.sport, t.dport, t.ack, t.window) == (40000, 5201, 99, 502)
        if version == 4:
            assert p.len == len(s) and p.id == (ipid + i) & 0xFFFF and p.flags == "DF"
        else:
            assert p.plen == len(s) - 40
        f = s[toff + 13]
        last, first = i == len(segs) - 1, i == 0
        assert f & 0x09 == (orig_flags & 0x09 if last else 0)  # FIN/PSH only on the last segment
        assert f & 0x80 == (orig_flags & 0x80 if first else 0)  # CWR only on the first
        assert f & 0x10 == orig_flags & 0x10


def test_vectors_ipv4_and_ipv6_with_timestamps():
    for version in (4, 6):
        payload = bytes(range(256)) * 12  # 3072 bytes, mss 1448 -> 1448 + 1448 + 176
        pkt, toff, thl = super_packet(version, payload, "FPA", TS_OPTS, seq=0xFFFFFF00, ipid=0xFFFF)
        assert thl == 32
        segs = segment(vnet(version, toff, thl, 1448), pkt)
        assert [len(s) for s in segs] == [toff + 32 + 1448] * 2 + [toff + 32 + 176]
        seqs = [struct.unpack_from("!I", s, toff + 4)[0] for s in segs]
        assert seqs == [0xFFFFFF00, (0xFFFFFF00 + 1448) & 0xFFFFFFFF, (0xFFFFFF00 + 2896) & 0xFFFFFFFF]
        assert [s[toff + 13] for s in segs] == [0x10, 0x10, 0x19]
        if version == 4:
            assert [struct.unpack_from("!H", s, 4)[0] for s in segs] == [0xFFFF, 0, 1]  # ID wraps
        for s in segs:
            scapy_checks(s, version)
            assert tcp_verifies(s, version, toff)


def test_single_segment_gso_keeps_flags():
    pkt, toff, thl = super_packet(4, b"x" * 100, "CPA")
    (s,) = segment(vnet(4, toff, thl, 1400), pkt)
    assert s[toff + 13] == pkt[toff + 13] and tcp_verifies(s, 4, toff)
    assert s[toff + thl:] == b"x" * 100


def test_non_gso_needs_csum_tcp_and_udp():
    pkt, toff, thl = super_packet(4, b"hello", "PA", TS_OPTS)
    (s,) = segment(VnetHdr(VnetFlags.NEEDS_CSUM, 0, 0, 0, toff, 16).pack(), pkt)
    scapy_checks(s, 4)
    for version in (4, 6):
        u = (IP(src="192.0.2.1", dst="192.0.2.2") if version == 4 else IPv6(src="2001:db8::1", dst="2001:db8::2")) \
            / UDP(sport=1, dport=2) / b"abc"
        raw = bytearray(bytes(u))
        off = 20 if version == 4 else 40
        pseudo = (raw[12:20] + struct.pack("!HH", 17, len(raw) - off)) if version == 4 else \
            (raw[8:40] + struct.pack("!IxxxB", len(raw) - off, 17))
        raw[off + 6:off + 8] = struct.pack("!H", ones_sum(pseudo))
        (s,) = segment(VnetHdr(VnetFlags.NEEDS_CSUM, 0, 0, 0, off, 6).pack(), bytes(raw))
        assert s == bytes(u)  # scapy computed the full checksum when building u


def test_csum_zero_becomes_ffff_for_needs_csum():
    """A UDP datagram whose checksum computes to 0 carries 0xFFFF (RFC 768; skb_checksum_help)."""
    def build(x: int) -> bytes:
        raw = bytearray(bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / struct.pack("!H", x)))
        raw[26:28] = struct.pack("!H", ones_sum(raw[12:20] + struct.pack("!HH", 17, len(raw) - 20)))
        return bytes(raw)

    s = ones_sum(build(0)[20:])
    pkt = build(0xFFFF - s)  # the payload word makes the sum 0xFFFF: checksum 0, sent as 0xFFFF
    out = complete_csum(pkt, 20, 6)
    assert out[26:28] == b"\xff\xff"
    assert ones_sum(out[12:20] + struct.pack("!HH", 17, len(out) - 20) + out[20:]) == 0xFFFF
    assert segment(VnetHdr(VnetFlags.NEEDS_CSUM, 0, 0, 0, 20, 6), pkt) == [out]


def test_plain_and_data_valid_pass_through():
    pkt, _, _ = super_packet(4, b"abc")
    assert segment(bytes(10), pkt) == [pkt]
    assert segment(VnetHdr(flags=VnetFlags.DATA_VALID), memoryview(pkt)) == [pkt]


@pytest.mark.parametrize("hdr, mangle", [
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.UDP_L4, 28, 1400, 20, 6), None),     # USO
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.UDP, 28, 1400, 20, 6), None),        # UFO
    (VnetHdr(VnetFlags.NEEDS_CSUM, 2, 40, 1400, 20, 16), None),                 # unknown type
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.ECN, 40, 1400, 20, 16), None),       # ECN alone
    (VnetHdr(0x80, GsoType.TCPV4, 40, 1400, 20, 16), None),                     # unknown flag
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 40, 0, 20, 16), None),        # gso_size 0
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV6, 40, 1400, 40, 16), None),     # v6 type, v4 packet
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 40, 1400, 20, 6), None),      # csum_offset not TCP's
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 9000, 1400, 20, 16), None),   # hdr_len > packet
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 40, 1400, 20, 16), "len"),    # IPv4 total length wrong
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 40, 1400, 20, 16), "proto"),  # not TCP
    (VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 40, 1400, 20, 16), "trunc"),  # headers only
    (VnetHdr(VnetFlags.NEEDS_CSUM, 0, 0, 0, 20, 9000), None),                   # csum beyond packet
])
def test_bad_headers_raise_typed_error(hdr, mangle):
    pkt = bytearray(super_packet(4, b"z" * 3000)[0])
    if mangle == "len":
        pkt[2:4] = struct.pack("!H", 1000)
    elif mangle == "proto":
        pkt[9] = 17
    elif mangle == "trunc":
        pkt = pkt[:40]
        pkt[2:4] = struct.pack("!H", 40)
    with pytest.raises(GsoError):
        segment(hdr.pack(), bytes(pkt))
    assert issubclass(GsoError, ValueError)


def test_ipv6_routing_header_and_jumbo_refused():
    ip6 = IPv6(src="2001:db8::1", dst="2001:db8:1::9") / IPv6ExtHdrRouting() / TCP() / (b"q" * 3000)
    raw = bytes(ip6)
    with pytest.raises(GsoError):
        segment(VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV6, 0, 1400, 48, 16), raw)
    pkt, toff, thl = super_packet(6, b"q" * 3000)
    jumbo = pkt[:4] + b"\0\0" + pkt[6:]
    with pytest.raises(GsoError):
        segment(vnet(6, toff, thl, 1400), jumbo)
    with pytest.raises(GsoError):
        segment(b"\x01\x01", pkt)  # short header


@settings(max_examples=300, deadline=None)
@given(hdr=st.binary(min_size=10, max_size=10), pkt=st.binary(max_size=200))
def test_fuzz_never_crashes(hdr, pkt):
    try:
        out = segment(hdr, pkt)
    except GsoError:
        return
    assert isinstance(out, list) and all(type(s) is bytes for s in out)


@settings(max_examples=400, deadline=None)
@given(version=st.sampled_from([4, 6]), data=st.data(), mss=st.integers(min_value=0, max_value=3000),
       gso=st.sampled_from([0, 1, 3, 4, 5, 0x81, 0x84, 0x80, 7]), flags=st.integers(min_value=0, max_value=3),
       csum_start=st.integers(min_value=0, max_value=120), csum_offset=st.integers(min_value=0, max_value=40))
def test_fuzz_mutated_super_packets(version, data, mss, gso, flags, csum_start, csum_offset):
    """Near-valid input: a real super-packet with a few bytes changed and arbitrary header fields."""
    pkt = bytearray(super_packet(version, b"m" * 3000, "PA", TS_OPTS)[0])
    for _ in range(data.draw(st.integers(min_value=0, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(pkt) - 1))
        pkt[i] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(pkt)))
    hdr = VnetHdr(flags, gso, data.draw(st.integers(min_value=0, max_value=0xFFFF)), mss, csum_start, csum_offset)
    try:
        out = segment(hdr.pack(), bytes(pkt[:cut] if data.draw(st.booleans()) else pkt))
    except GsoError:
        return
    assert all(type(s) is bytes for s in out)
    if gso & 0x7F in (1, 4) and len(out) > 1:
        assert all(len(s) <= len(out[0]) for s in out)
