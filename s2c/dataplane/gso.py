"""Software TSO for packets read from an IFF_VNET_HDR TUN with offloads on (TUNSETOFFLOAD).

With ``TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`` the kernel hands the reader TCP super-packets of up to
64 KB and leaves checksums to it; every read starts with a ``struct virtio_net_hdr``
(include/uapi/linux/virtio_net.h, native byte order on a legacy little-endian TUN):

    u8 flags (NEEDS_CSUM 1, DATA_VALID 2)   u8 gso_type (NONE 0, TCPV4 1, UDP 3, TCPV6 4, UDP_L4 5, | ECN 0x80)
    u16 hdr_len (a hint: the kernel puts skb_headlen() there)   u16 gso_size (MSS)
    u16 csum_start   u16 csum_offset

``segment(vnet_hdr, packet)`` does what the kernel's software GSO (``inet_gso_segment`` /
``ipv6_gso_segment`` / ``tcp_gso_segment``) or a NIC's TSO does: MSS-sized IP packets, IPv4 total
length, ID + 1 per segment and header checksum, IPv6 payload length, TCP sequence number advanced,
FIN/PSH only on the last segment, CWR only on the first, full TCP checksum (RFC 9293 §3.1, RFC 8200
§8.1 pseudo-header). A non-GSO packet flagged NEEDS_CSUM gets its checksum completed from csum_start
to the end, stored at csum_start + csum_offset (``skb_checksum_help``: a result of 0 becomes 0xFFFF).
Anything it cannot do raises ``GsoError``. Pure: bytes in, bytes out (hot path: struct and ints).

The ones'-complement sum of a buffer of 16-bit big-endian words equals ``int.from_bytes(buf) % 0xFFFF``
(65536 = 1 mod 0xFFFF), with 0 standing for 0xFFFF when the buffer is not all zero (odd length: pad one
zero byte, i.e. multiply by 256). So the checksum of non-zero data is ``-total % 0xFFFF``.
"""

from __future__ import annotations

import struct
import sys
import warnings
from dataclasses import dataclass
from enum import IntEnum, IntFlag

VNET_HDR = struct.Struct("=BBHHHH")
VNET_HDR_LEN = VNET_HDR.size  # 10


class VnetFlags(IntFlag):
    """virtio_net_hdr.flags (virtio spec 1.2 §5.1.6)."""

    NEEDS_CSUM = 1
    DATA_VALID = 2


class GsoType(IntEnum):
    """virtio_net_hdr.gso_type (virtio spec 1.2 §5.1.6); ECN is a flag bit on top of a type."""

    NONE = 0
    TCPV4 = 1
    UDP = 3
    TCPV6 = 4
    UDP_L4 = 5
    ECN = 0x80


class GsoError(ValueError):
    """A virtio_net_hdr + packet that cannot be segmented or checksummed (unsupported or inconsistent)."""


@dataclass(frozen=True)
class VnetHdr:
    """struct virtio_net_hdr (include/uapi/linux/virtio_net.h; virtio spec 1.2 §5.1.6)."""

    flags: int = 0
    gso_type: int = 0
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @classmethod
    def parse(cls, buf: bytes | memoryview) -> "VnetHdr":
        if len(buf) < VNET_HDR_LEN:
            raise GsoError(f"virtio_net_hdr needs {VNET_HDR_LEN} bytes, got {len(buf)}")
        return cls(*VNET_HDR.unpack_from(buf))

    def pack(self) -> bytes:
        return VNET_HDR.pack(self.flags, self.gso_type, self.hdr_len, self.gso_size, self.csum_start,
                             self.csum_offset)


_H = struct.Struct("!H")
_IP4_PSEUDO = struct.Struct("!4H")
_IP6_PSEUDO = struct.Struct("!16H")
_IP4_HDR10 = struct.Struct("!10H")
_FIN, _PSH, _CWR = 0x01, 0x08, 0x80
_TCP = 6
_V6_EXT = (0, 60)  # hop-by-hop and destination options: walked to find TCP; anything else is refused


def ones_sum(buf: bytes | memoryview) -> int:
    """Ones'-complement sum (RFC 1071) of ``buf`` as 16-bit big-endian words, in 0..0xFFFF (0 only
    for all-zero data)."""
    n = int.from_bytes(buf, "big")
    if len(buf) & 1:
        n <<= 8
    s = n % 0xFFFF
    return 0xFFFF if s == 0 and n else s


def _payload_sum(buf: bytes | memoryview) -> int:
    """A value congruent (mod 0xFFFF) to the ones'-complement sum of ``buf`` (not reduced)."""
    n = int.from_bytes(buf, "big")
    return n << 8 if len(buf) & 1 else n


# Faster word sum for segment payloads (~1.5 instead of ~2.5 us per 1400 bytes here): audioop (C, in the
# standard library up to Python 3.12) sums 16-bit samples. bias() adds 0x8000 to every word modulo 2^16,
# so the signed samples it leaves are (word - 0x8000) exactly; findfactor(x, ones) is sum(x) / n as a
# double (exact after rounding: |sum| < 2^31). Samples are native-endian: on a little-endian host that
# sums byte-swapped words, and the ones'-complement sum of swapped words is the swapped sum (RFC 1071 §2).
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop as _audioop  # deprecated in 3.11, removed in 3.13: then the int path is used
except ImportError:  # pragma: no cover - Python >= 3.13
    _audioop = None
_ONES = memoryview(b"\x01\x00" * 32768 if sys.byteorder == "little" else b"\x00\x01" * 32768)
_SWAP = sys.byteorder == "little"


def _word_sum_audioop(buf: bytes | memoryview) -> int:
    """Same contract as ``_payload_sum`` (reduced), computed with audioop; ``buf`` shorter than 64 KiB."""
    n = len(buf)
    even = n & ~1
    r = 0
    if even:
        half = even >> 1
        x = _audioop.bias(buf[:even] if n & 1 else buf, 2, 0x8000)
        r = (round(_audioop.findfactor(x, _ONES[:even]) * half) + 0x8000 * half) % 0xFFFF
        if _SWAP:
            r = ((r & 0xFF) << 8) | (r >> 8)
    if n & 1:
        r += buf[n - 1] << 8
    return r


_word_sum = _word_sum_audioop if _audioop is not None else _payload_sum


def segment(vnet_hdr: bytes | memoryview | VnetHdr, packet: bytes | memoryview) -> list[bytes]:
    """Turn one TUN read (header split off) into ordinary IP packets: a TCPv4/TCPv6 GSO super-packet
    into MSS-sized segments, a NEEDS_CSUM packet into one packet with its checksum filled in, anything
    else into itself. Raises ``GsoError`` for UDP GSO (UFO/USO), unknown types and inconsistent lengths."""
    if isinstance(vnet_hdr, VnetHdr):
        flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = (
            vnet_hdr.flags, vnet_hdr.gso_type, vnet_hdr.hdr_len, vnet_hdr.gso_size, vnet_hdr.csum_start,
            vnet_hdr.csum_offset)
    else:
        if len(vnet_hdr) < VNET_HDR_LEN:
            raise GsoError(f"virtio_net_hdr needs {VNET_HDR_LEN} bytes, got {len(vnet_hdr)}")
        flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(vnet_hdr)
    if flags & ~3:
        raise GsoError(f"unknown virtio_net_hdr flags 0x{flags:02x}")
    kind = gso_type & 0x7F
    if kind == 0:
        if gso_type:
            raise GsoError("ECN bit without a GSO type")
        if flags & 1:
            return [complete_csum(packet, csum_start, csum_offset)]
        return [bytes(packet)]
    if kind == 1:
        return _segment_tcp(packet, 4, flags, hdr_len, gso_size, csum_start, csum_offset)
    if kind == 4:
        return _segment_tcp(packet, 6, flags, hdr_len, gso_size, csum_start, csum_offset)
    if kind in (3, 5):
        raise GsoError(f"UDP GSO (gso_type {kind}) is not supported (offload not enabled)")
    raise GsoError(f"unknown gso_type {gso_type}")


def complete_csum(packet: bytes | memoryview, csum_start: int, csum_offset: int) -> bytes:
    """CHECKSUM_PARTIAL -> complete: the field at csum_start + csum_offset holds the pseudo-header sum;
    store the ones'-complement of the sum from csum_start to the end (0 -> 0xFFFF, as skb_checksum_help)."""
    n = len(packet)
    at = csum_start + csum_offset
    if csum_start < 20 or at + 2 > n or csum_offset & 1:
        raise GsoError(f"checksum at {csum_start}+{csum_offset} outside a {n}-byte packet")
    total = _payload_sum(packet[csum_start:])
    csum = -total % 0xFFFF or 0xFFFF
    out = bytearray(packet)
    out[at:at + 2] = _H.pack(csum)
    return bytes(out)


def _segment_tcp(packet: bytes | memoryview, version: int, flags: int, hdr_len: int, mss: int,
                 csum_start: int, csum_offset: int) -> list[bytes]:
    n = len(packet)
    if mss == 0:
        raise GsoError("GSO packet with gso_size 0")
    if hdr_len > n:
        raise GsoError(f"hdr_len {hdr_len} exceeds the {n}-byte packet")
    if n < 20 or packet[0] >> 4 != version:
        raise GsoError(f"gso_type TCPV{version} but not an IPv{version} packet")
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or n < ihl + 20:
            raise GsoError("truncated IPv4/TCP headers")
        if _H.unpack_from(packet, 2)[0] != n:
            raise GsoError(f"IPv4 total length {_H.unpack_from(packet, 2)[0]} != {n} bytes read")
        if packet[9] != _TCP:
            raise GsoError(f"gso_type TCPV4 but IPv4 protocol {packet[9]}")
        if packet[6] & 0x3F or packet[7]:
            raise GsoError("GSO packet is an IPv4 fragment")
        toff = ihl
    else:
        if n < 60:
            raise GsoError("truncated IPv6/TCP headers")
        plen = _H.unpack_from(packet, 4)[0]
        if plen != n - 40:
            raise GsoError(f"IPv6 payload length {plen} != {n - 40} (jumbograms unsupported)")
        nh, toff = packet[6], 40
        while nh != _TCP:
            if nh not in _V6_EXT or n < toff + 8:
                raise GsoError(f"gso_type TCPV6 but next header {nh}")
            nh, toff = packet[toff], toff + (packet[toff + 1] + 1) * 8
    if flags & 1 and (csum_start != toff or csum_offset != 16):
        raise GsoError(f"csum_start/offset {csum_start}/{csum_offset} do not point at the TCP checksum")
    if n < toff + 20:
        raise GsoError("truncated TCP header")
    thl = (packet[toff + 12] >> 4) * 4
    hl = toff + thl
    if thl < 20 or hl >= n:
        raise GsoError(f"TCP header length {thl} in a {n}-byte GSO packet without payload")
    hdr = bytes(packet[:hl])
    tcp_flags = hdr[toff + 13]
    seq0 = int.from_bytes(hdr[toff + 4:toff + 8], "big")
    doff = hdr[toff + 12]
    # TCP header sum without seq, offset/flags and checksum (each segment adds its own), + pseudo-header
    th_const = (_payload_sum(hdr[toff:toff + 4]) + _payload_sum(hdr[toff + 8:toff + 12])
                + _payload_sum(hdr[toff + 14:toff + 16]) + _payload_sum(hdr[toff + 18:hl]))
    if version == 4:
        const = th_const + sum(_IP4_PSEUDO.unpack_from(hdr, 12)) + _TCP
        id0 = _H.unpack_from(hdr, 4)[0]
        ipw = list(_IP4_HDR10.unpack_from(hdr))
        ip_const = sum(ipw) - ipw[1] - ipw[2] - ipw[5] + _payload_sum(hdr[20:ihl])
        head = hdr[:2]
        mid = hdr[6:10]
        tail = hdr[12:toff]
    else:
        const = th_const + sum(_IP6_PSEUDO.unpack_from(hdr, 8)) + _TCP
        head = hdr[:4]
        mid = hdr[6:toff]
    ports = hdr[toff:toff + 4]
    ack = hdr[toff + 8:toff + 12]
    win = hdr[toff + 14:toff + 16]
    opts = hdr[toff + 18:hl]
    # FIN/PSH only on the last segment, CWR only on the first (tcp_gso_segment)
    fl_mid = tcp_flags & ~(_FIN | _PSH | _CWR)
    fl_first = tcp_flags & ~(_FIN | _PSH)
    fl_last = tcp_flags & ~_CWR
    const += thl + (doff << 8)
    word_sum = _word_sum
    if version == 4:
        hs = struct.Struct(f"!2sHH4sH{toff - 12}s4sI4sBB2sH{thl - 18}s").pack
        ip_const += toff + thl
    else:
        hs = struct.Struct(f"!4sH{toff - 6}s4sI4sBB2sH{thl - 18}s").pack
        plen0 = toff - 40 + thl
    out = []
    mv = packet if isinstance(packet, memoryview) else memoryview(packet)
    k = (n - hl + mss - 1) // mss
    for i in range(k):
        off = hl + i * mss
        data = mv[off:off + mss]
        if i == k - 1:
            dlen = n - off
            fl = tcp_flags if k == 1 else fl_last
        else:
            dlen = mss
            fl = fl_first if i == 0 else fl_mid
        psum = word_sum(data)
        seq = (seq0 + i * mss) & 0xFFFFFFFF
        csum = -(const + dlen + (seq >> 16) + (seq & 0xFFFF) + fl + psum) % 0xFFFF
        if version == 4:
            ipid = (id0 + i) & 0xFFFF
            tot = dlen + toff + thl
            h = hs(head, tot, ipid, mid, -(ip_const + dlen + ipid) % 0xFFFF, tail, ports, seq, ack, doff, fl,
                   win, csum, opts)
        else:
            h = hs(head, plen0 + dlen, mid, ports, seq, ack, doff, fl, win, csum, opts)
        out.append(h + data)
    return out
