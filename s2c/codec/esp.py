"""ESP wire format (RFC 4303) and UDP encapsulation framing (RFC 3948). Pure: no crypto, no IO.

The cryptographic transform lives in :mod:`s2c.esp.sa`; this module only knows where the fields are:

    ESP packet (RFC 4303 §2):   SPI(4) | Sequence Number(4) | IV | ciphertext | ICV
    Plaintext  (RFC 4303 §2.4): payload | Padding(0-255) | Pad Length(1) | Next Header(1)
    Port 4500  (RFC 3948 §2):   0x00000000 + IKE  |  ESP (SPI != 0)  |  0xFF (NAT-keepalive)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

ESP_HEADER_LEN = 8
NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"
IKE_NATT_PORT = 4500

_HDR = struct.Struct("!II")
# default monotonic padding 1, 2, 3, ... (RFC 4303 §2.4)
_PAD = bytes(range(1, 256))


class IpProto(enum.IntEnum):
    """IANA Assigned Internet Protocol Numbers used as ESP Next Header values."""

    HOPOPT = 0
    ICMP = 1
    IPV4 = 4
    TCP = 6
    UDP = 17
    IPV6 = 41
    ESP = 50
    ICMPV6 = 58
    NO_NEXT_HEADER = 59
    MOBILITY_HEADER = 135


class EspError(ValueError):
    """Any ESP processing failure (RFC 4303 §3.4); daemons count and drop."""


class MalformedEsp(EspError):
    """Truncated packet, bad length, bad padding or bad pad length (RFC 4303 §2, §2.4)."""


class IntegrityFailure(EspError):
    """ICV verification failed (RFC 4303 §3.4.4)."""


class ReplayedPacket(EspError):
    """Sequence number duplicated or left of the receive window (RFC 4303 §3.4.3)."""


class UnknownSpi(EspError):
    """No inbound SA for this SPI (RFC 4303 §3.4.2)."""


class SequenceOverflow(EspError):
    """Sender sequence number would cycle; the SA must be rekeyed (RFC 4303 §3.3.3)."""


@dataclass(frozen=True, slots=True)
class EspPacket:
    """ESP packet: SPI, Sequence Number and the protected rest (IV|ciphertext|ICV) (RFC 4303 §2)."""

    spi: int
    seq: int
    body: bytes

    @classmethod
    def parse(cls, buf: bytes) -> "EspPacket":
        if len(buf) < ESP_HEADER_LEN:
            raise MalformedEsp(f"ESP packet of {len(buf)} bytes is shorter than its header")
        spi, seq = _HDR.unpack_from(buf)
        if spi == 0:
            raise MalformedEsp("SPI 0 is reserved (RFC 4303 §2.1)")
        return cls(spi, seq, bytes(buf[ESP_HEADER_LEN:]))

    def serialize(self) -> bytes:
        return _HDR.pack(self.spi, self.seq & 0xFFFFFFFF) + self.body


def parse_header(buf: bytes | memoryview) -> tuple[int, int]:
    """Return (SPI, low 32 bits of the sequence number) of an ESP packet (RFC 4303 §2.1, §2.2)."""
    if len(buf) < ESP_HEADER_LEN:
        raise MalformedEsp(f"ESP packet of {len(buf)} bytes is shorter than its header")
    return _HDR.unpack_from(buf)


def pack_header(spi: int, seq: int) -> bytes:
    """SPI and low 32 bits of the sequence number (RFC 4303 §2.1, §2.2)."""
    return _HDR.pack(spi, seq & 0xFFFFFFFF)


def trailer(payload_len: int, next_header: int, align: int, tfc_pad: int = 0) -> bytes:
    """Padding | Pad Length | Next Header so that payload+trailer is a multiple of ``align`` (RFC 4303 §2.4).

    ``align`` is the cipher block size, at least 4 (the ESP 4-byte alignment rule).
    """
    align = max(align, 4)
    pad_len = (-(payload_len + 2)) % align
    if pad_len > 255:
        raise ValueError("alignment too large for an ESP pad length")
    return _PAD[:pad_len] + bytes((pad_len, next_header))


def strip_trailer(plaintext: bytes | memoryview, check_padding: bool = True) -> tuple[int, bytes]:
    """Split a decrypted ESP payload into (next_header, payload) (RFC 4303 §2.4-2.6)."""
    n = len(plaintext)
    if n < 2:
        raise MalformedEsp("ESP plaintext shorter than its trailer")
    pad_len = plaintext[n - 2]
    next_header = plaintext[n - 1]
    end = n - 2 - pad_len
    if end < 0:
        raise MalformedEsp(f"pad length {pad_len} exceeds the payload")
    if check_padding and pad_len and bytes(plaintext[end : n - 2]) != _PAD[:pad_len]:
        raise MalformedEsp("padding bytes are not the default 1, 2, 3, ... sequence")
    return next_header, bytes(plaintext[:end])


class Udp4500Kind(enum.IntEnum):
    """What a datagram received on UDP port 4500 carries (RFC 3948 §2.1-2.3)."""

    ESP = 0
    IKE = 1
    NAT_KEEPALIVE = 2
    MALFORMED = 3


def classify_udp_4500(datagram: bytes | memoryview) -> Udp4500Kind:
    """Apply the RFC 3948 §2 rules: non-ESP marker = IKE, single 0xFF = keepalive, else ESP."""
    n = len(datagram)
    if n == 1 and datagram[0] == 0xFF:
        return Udp4500Kind.NAT_KEEPALIVE
    if n >= 4 and datagram[:4] == NON_ESP_MARKER:
        return Udp4500Kind.IKE
    if n >= ESP_HEADER_LEN:
        return Udp4500Kind.ESP
    return Udp4500Kind.MALFORMED
