"""EAP packet codec (RFC 3748 §4-§5): Code, Identifier, Length, Type, Type-Data.

``parse(buf) -> EapPacket`` and ``serialize(pkt) -> bytes``. Octets beyond the Length field
are link-layer padding and ignored (RFC 3748 §4.1). Method payloads stay opaque bytes in
``type_data``; EAP-AKA/AKA' bodies are decoded by :mod:`s2c.codec.eap_aka`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "EapCode",
    "EapDecodeError",
    "EapPacket",
    "EapType",
    "identity_request",
    "identity_response",
    "nak",
    "nak_types",
    "notification_request",
    "notification_response",
    "parse",
    "serialize",
]

HEADER_LEN = 4
MAX_LEN = 0xFFFF


class EapDecodeError(ValueError):
    """Malformed EAP or EAP-AKA/AKA' data."""


class EapCode(IntEnum):
    """EAP Codes (RFC 3748 §4, IANA "EAP Codes")."""

    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    INITIATE = 5  # RFC 6696
    FINISH = 6  # RFC 6696


class EapType(IntEnum):
    """EAP method types (RFC 3748 §5, IANA "Method Types"); values outside the enum are kept as int."""

    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    OTP = 5
    GTC = 6
    TLS = 13
    SIM = 18
    TTLS = 21
    AKA = 23
    PEAP = 25
    MSCHAPV2 = 26
    AKA_PRIME = 50
    EXPANDED = 254
    EXPERIMENTAL = 255


def _enum(cls: type[IntEnum], v: int) -> int:
    try:
        return cls(v)
    except ValueError:
        return v


@dataclass(frozen=True, slots=True)
class EapPacket:
    """One EAP packet (RFC 3748 §4.1); ``type``/``type_data`` only for Request/Response."""

    code: int
    identifier: int
    type: int | None = None
    type_data: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.code == EapCode.REQUEST

    @property
    def is_response(self) -> bool:
        return self.code == EapCode.RESPONSE


def parse(buf: bytes) -> EapPacket:
    """Decode one EAP packet; raises :class:`EapDecodeError` on malformed input."""
    b = bytes(buf)
    if len(b) < HEADER_LEN:
        raise EapDecodeError("EAP packet shorter than 4 bytes")
    code, ident, length = b[0], b[1], int.from_bytes(b[2:4], "big")
    if length < HEADER_LEN or length > len(b):
        raise EapDecodeError(f"EAP Length {length} invalid for {len(b)} bytes")
    if code in (EapCode.REQUEST, EapCode.RESPONSE):
        if length < 5:
            raise EapDecodeError("EAP Request/Response without Type")
        return EapPacket(_enum(EapCode, code), ident, _enum(EapType, b[4]), b[5:length])
    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        if length != HEADER_LEN:
            raise EapDecodeError("EAP Success/Failure must have Length 4")
        return EapPacket(EapCode(code), ident)
    if code in (EapCode.INITIATE, EapCode.FINISH):
        # RFC 6696: the octet after the header is a Type too; kept opaque.
        if length < 5:
            raise EapDecodeError("EAP Initiate/Finish without Type")
        return EapPacket(EapCode(code), ident, b[4], b[5:length])
    raise EapDecodeError(f"unknown EAP Code {code}")


def serialize(pkt: EapPacket) -> bytes:
    """Encode an :class:`EapPacket`; Length is computed."""
    if not 0 <= pkt.identifier <= 255 or not 0 < pkt.code <= 255:
        raise ValueError("EAP Code/Identifier out of range")
    if pkt.type is None:
        if pkt.type_data:
            raise ValueError("type_data without type")
        return bytes((pkt.code, pkt.identifier, 0, HEADER_LEN))
    if not 0 <= pkt.type <= 255:
        raise ValueError("EAP Type out of range")
    length = 5 + len(pkt.type_data)
    if length > MAX_LEN:
        raise ValueError("EAP packet too long")
    return bytes((pkt.code, pkt.identifier)) + length.to_bytes(2, "big") + bytes((pkt.type,)) + bytes(pkt.type_data)


def identity_request(identifier: int, prompt: bytes = b"") -> EapPacket:
    """Request/Identity (RFC 3748 §5.1)."""
    return EapPacket(EapCode.REQUEST, identifier, EapType.IDENTITY, prompt)


def identity_response(identifier: int, identity: bytes | str) -> EapPacket:
    """Response/Identity (RFC 3748 §5.1)."""
    data = identity.encode() if isinstance(identity, str) else bytes(identity)
    return EapPacket(EapCode.RESPONSE, identifier, EapType.IDENTITY, data)


def notification_request(identifier: int, text: bytes) -> EapPacket:
    """Request/Notification (RFC 3748 §5.2)."""
    return EapPacket(EapCode.REQUEST, identifier, EapType.NOTIFICATION, text)


def notification_response(identifier: int) -> EapPacket:
    """Response/Notification, empty Type-Data (RFC 3748 §5.2)."""
    return EapPacket(EapCode.RESPONSE, identifier, EapType.NOTIFICATION, b"")


def nak(identifier: int, desired: list[int] | tuple[int, ...]) -> EapPacket:
    """Response/Nak (legacy) listing desired auth types; ``[]`` encodes 0 = none (RFC 3748 §5.3.1)."""
    data = bytes(desired) if desired else b"\x00"
    return EapPacket(EapCode.RESPONSE, identifier, EapType.NAK, data)


def nak_types(pkt: EapPacket) -> list[int]:
    """Desired auth types of a Nak (RFC 3748 §5.3.1); 0 means none acceptable -> ``[]``."""
    if pkt.type != EapType.NAK or pkt.code != EapCode.RESPONSE:
        raise EapDecodeError("not a Response/Nak")
    if not pkt.type_data:
        raise EapDecodeError("empty Nak")
    types = [_enum(EapType, t) for t in pkt.type_data]
    return [] if types == [0] else types
