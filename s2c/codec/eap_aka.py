"""EAP-AKA / EAP-AKA' method codec (RFC 4187 §8-§11, RFC 5448/RFC 9048 §3).

Wire format inside an EAP Request/Response of Type 23 (AKA) or 50 (AKA')::

    Subtype(1) Reserved(2) Attributes...
    Attribute: Type(1) Length(1, in 4-octet units, includes the header) Value

Typed attributes are frozen dataclasses; attributes this codec does not model (AT_PADDING,
AT_IV, AT_ENCR_DATA, AT_NEXT_PSEUDONYM, unknown ones, ...) are kept verbatim as
:class:`RawAttribute`, so a message re-serializes to the same bytes. Whether an unknown
attribute is acceptable (skippable >= 128, non-skippable 0..127, RFC 4187 §8.1) is reported
by :attr:`AkaMessage.unknown_non_skippable`; the state machines act on it.

AT_MAC handling on raw bytes (received packets need not be canonical): :func:`mac_input`
returns the packet with the MAC value zeroed plus the received MAC; :func:`set_mac` writes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, TypeVar

from s2c.codec import eap
from s2c.codec.eap import EapCode, EapDecodeError, EapType

__all__ = [
    "AkaMessage",
    "AkaSubtype",
    "AtAnyIdReq",
    "AtAutn",
    "AtAuts",
    "AtBidding",
    "AtCheckcode",
    "AtClientErrorCode",
    "AtCounter",
    "AtCounterTooSmall",
    "AtFullauthIdReq",
    "AtIdentity",
    "AtKdf",
    "AtKdfInput",
    "AtMac",
    "AtNonceS",
    "AtNotification",
    "AtPermanentIdReq",
    "AtRand",
    "AtRes",
    "AtResultInd",
    "Attribute",
    "AttributeType",
    "ClientErrorCode",
    "EapDecodeError",
    "NotificationCode",
    "RawAttribute",
    "mac_input",
    "parse",
    "parse_attributes",
    "serialize",
    "serialize_attributes",
    "set_mac",
]


class AkaSubtype(IntEnum):
    """EAP-AKA Subtypes (RFC 4187 §11, IANA "EAP-AKA Subtypes")."""

    CHALLENGE = 1
    AUTHENTICATION_REJECT = 2
    SYNCHRONIZATION_FAILURE = 4
    IDENTITY = 5
    NOTIFICATION = 12
    REAUTHENTICATION = 13
    CLIENT_ERROR = 14


class AttributeType(IntEnum):
    """EAP-AKA/SIM attribute types (RFC 4187 §11, RFC 5448 §6, IANA "EAP-SIM/AKA Attributes")."""

    AT_RAND = 1
    AT_AUTN = 2
    AT_RES = 3
    AT_AUTS = 4
    AT_PADDING = 6
    AT_NONCE_MT = 7
    AT_PERMANENT_ID_REQ = 10
    AT_MAC = 11
    AT_NOTIFICATION = 12
    AT_ANY_ID_REQ = 13
    AT_IDENTITY = 14
    AT_VERSION_LIST = 15
    AT_SELECTED_VERSION = 16
    AT_FULLAUTH_ID_REQ = 17
    AT_COUNTER = 19
    AT_COUNTER_TOO_SMALL = 20
    AT_NONCE_S = 21
    AT_CLIENT_ERROR_CODE = 22
    AT_KDF_INPUT = 23
    AT_KDF = 24
    AT_IV = 129
    AT_ENCR_DATA = 130
    AT_NEXT_PSEUDONYM = 132
    AT_NEXT_REAUTH_ID = 133
    AT_CHECKCODE = 134
    AT_RESULT_IND = 135
    AT_BIDDING = 136


class ClientErrorCode(IntEnum):
    """AT_CLIENT_ERROR_CODE values (RFC 4187 §10.20 / RFC 4186 §10.19)."""

    UNABLE_TO_PROCESS_PACKET = 0
    UNSUPPORTED_VERSION = 1
    INSUFFICIENT_NUMBER_OF_CHALLENGES = 2
    RANDS_ARE_NOT_FRESH = 3


class NotificationCode(IntEnum):
    """AT_NOTIFICATION codes (RFC 4187 §10.19); bit 0x8000 = S (success), 0x4000 = P (phase)."""

    GENERAL_FAILURE_AFTER_AUTHENTICATION = 0
    TEMPORARILY_DENIED = 1026
    NOT_SUBSCRIBED = 1031
    GENERAL_FAILURE = 16384
    SUCCESS = 32768


def _enum(cls: type[IntEnum], v: int) -> int:
    try:
        return cls(v)
    except ValueError:
        return v


def _u16(v: bytes) -> int:
    return int.from_bytes(v[:2], "big")


def _need(v: bytes, n: int, name: str, exact: bool = True) -> None:
    if (len(v) != n) if exact else (len(v) < n):
        raise EapDecodeError(f"{name}: bad value length {len(v)}")


class Attribute:
    """Base of typed attributes; subclasses define TYPE, value() and from_value()."""

    TYPE: ClassVar[int]

    def value(self) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_value(cls, v: bytes) -> Attribute:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class RawAttribute(Attribute):
    """Attribute kept verbatim (value = bytes after Type and Length, padding included)."""

    type: int
    raw: bytes

    def value(self) -> bytes:
        return self.raw

    @property
    def skippable(self) -> bool:
        """RFC 4187 §8.1: types 128..255 may be ignored when not understood."""
        return self.type >= 128


def _reserved_then(v: bytes, n: int | None, name: str) -> bytes:
    if len(v) < 2:
        raise EapDecodeError(f"{name}: too short")
    body = v[2:]
    if n is not None and len(body) != n:
        raise EapDecodeError(f"{name}: bad value length {len(body)}")
    return body


@dataclass(frozen=True, slots=True)
class AtRand(Attribute):
    """AT_RAND: Reserved(2) + RAND(16) (RFC 4187 §10.6)."""

    TYPE: ClassVar[int] = AttributeType.AT_RAND
    rand: bytes

    def value(self) -> bytes:
        return b"\x00\x00" + self.rand

    @classmethod
    def from_value(cls, v: bytes) -> AtRand:
        body = _reserved_then(v, None, "AT_RAND")
        if not body or len(body) % 16:
            raise EapDecodeError("AT_RAND: length not a multiple of 16")
        return cls(body)


@dataclass(frozen=True, slots=True)
class AtAutn(Attribute):
    """AT_AUTN: Reserved(2) + AUTN(16) (RFC 4187 §10.7)."""

    TYPE: ClassVar[int] = AttributeType.AT_AUTN
    autn: bytes

    def value(self) -> bytes:
        return b"\x00\x00" + self.autn

    @classmethod
    def from_value(cls, v: bytes) -> AtAutn:
        return cls(_reserved_then(v, 16, "AT_AUTN"))


@dataclass(frozen=True, slots=True)
class AtRes(Attribute):
    """AT_RES: RES Length in bits(2) + RES + padding (RFC 4187 §10.8)."""

    TYPE: ClassVar[int] = AttributeType.AT_RES
    res: bytes
    res_bits: int | None = None

    @property
    def bits(self) -> int:
        return len(self.res) * 8 if self.res_bits is None else self.res_bits

    def value(self) -> bytes:
        return self.bits.to_bytes(2, "big") + self.res

    @classmethod
    def from_value(cls, v: bytes) -> AtRes:
        _need(v, 2, "AT_RES", exact=False)
        bits = _u16(v)
        n = (bits + 7) // 8
        if n > len(v) - 2 or len(v) - 2 - n >= 4:
            raise EapDecodeError("AT_RES: RES Length does not match attribute length")
        return cls(v[2 : 2 + n], None if bits == n * 8 else bits)


@dataclass(frozen=True, slots=True)
class AtAuts(Attribute):
    """AT_AUTS: AUTS(14), no reserved field (RFC 4187 §10.9)."""

    TYPE: ClassVar[int] = AttributeType.AT_AUTS
    auts: bytes

    def value(self) -> bytes:
        return self.auts

    @classmethod
    def from_value(cls, v: bytes) -> AtAuts:
        _need(v, 14, "AT_AUTS")
        return cls(v)


@dataclass(frozen=True, slots=True)
class AtMac(Attribute):
    """AT_MAC: Reserved(2) + MAC(16) (RFC 4187 §10.15)."""

    TYPE: ClassVar[int] = AttributeType.AT_MAC
    mac: bytes = bytes(16)

    def value(self) -> bytes:
        return b"\x00\x00" + self.mac

    @classmethod
    def from_value(cls, v: bytes) -> AtMac:
        return cls(_reserved_then(v, 16, "AT_MAC"))


def _lv_decode(v: bytes, name: str) -> bytes:
    _need(v, 2, name, exact=False)
    n = _u16(v)
    if n > len(v) - 2 or len(v) - 2 - n >= 4:
        raise EapDecodeError(f"{name}: actual length does not match attribute length")
    return v[2 : 2 + n]


@dataclass(frozen=True, slots=True)
class AtIdentity(Attribute):
    """AT_IDENTITY: Actual Identity Length(2) + Identity + padding (RFC 4187 §10.5)."""

    TYPE: ClassVar[int] = AttributeType.AT_IDENTITY
    identity: bytes

    def value(self) -> bytes:
        return len(self.identity).to_bytes(2, "big") + self.identity

    @classmethod
    def from_value(cls, v: bytes) -> AtIdentity:
        return cls(_lv_decode(v, "AT_IDENTITY"))


@dataclass(frozen=True, slots=True)
class AtKdfInput(Attribute):
    """AT_KDF_INPUT: Actual Network Name Length(2) + Network Name + padding (RFC 5448 §3.1)."""

    TYPE: ClassVar[int] = AttributeType.AT_KDF_INPUT
    network_name: bytes

    def value(self) -> bytes:
        return len(self.network_name).to_bytes(2, "big") + self.network_name

    @classmethod
    def from_value(cls, v: bytes) -> AtKdfInput:
        return cls(_lv_decode(v, "AT_KDF_INPUT"))


class _Flag(Attribute):
    """Attributes whose value is just Reserved(2)."""

    def value(self) -> bytes:
        return b"\x00\x00"

    @classmethod
    def from_value(cls, v: bytes) -> Attribute:
        _need(v, 2, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class AtPermanentIdReq(_Flag):
    """AT_PERMANENT_ID_REQ (RFC 4187 §10.2)."""

    TYPE: ClassVar[int] = AttributeType.AT_PERMANENT_ID_REQ


@dataclass(frozen=True, slots=True)
class AtAnyIdReq(_Flag):
    """AT_ANY_ID_REQ (RFC 4187 §10.3)."""

    TYPE: ClassVar[int] = AttributeType.AT_ANY_ID_REQ


@dataclass(frozen=True, slots=True)
class AtFullauthIdReq(_Flag):
    """AT_FULLAUTH_ID_REQ (RFC 4187 §10.4)."""

    TYPE: ClassVar[int] = AttributeType.AT_FULLAUTH_ID_REQ


@dataclass(frozen=True, slots=True)
class AtResultInd(_Flag):
    """AT_RESULT_IND (RFC 4187 §10.12)."""

    TYPE: ClassVar[int] = AttributeType.AT_RESULT_IND


@dataclass(frozen=True, slots=True)
class AtCounterTooSmall(_Flag):
    """AT_COUNTER_TOO_SMALL (RFC 4187 §10.17)."""

    TYPE: ClassVar[int] = AttributeType.AT_COUNTER_TOO_SMALL


class _U16(Attribute):
    """Attributes whose value is one 16-bit field."""

    def value(self) -> bytes:
        return int(self.code).to_bytes(2, "big")  # type: ignore[attr-defined]

    @classmethod
    def from_value(cls, v: bytes) -> Attribute:
        _need(v, 2, cls.__name__)
        return cls(_u16(v))  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class AtClientErrorCode(_U16):
    """AT_CLIENT_ERROR_CODE (RFC 4187 §10.20)."""

    TYPE: ClassVar[int] = AttributeType.AT_CLIENT_ERROR_CODE
    code: int = ClientErrorCode.UNABLE_TO_PROCESS_PACKET

    @classmethod
    def from_value(cls, v: bytes) -> AtClientErrorCode:
        _need(v, 2, "AT_CLIENT_ERROR_CODE")
        return cls(_enum(ClientErrorCode, _u16(v)))


@dataclass(frozen=True, slots=True)
class AtNotification(_U16):
    """AT_NOTIFICATION: S bit, P bit, code (RFC 4187 §10.19)."""

    TYPE: ClassVar[int] = AttributeType.AT_NOTIFICATION
    code: int = NotificationCode.GENERAL_FAILURE

    @property
    def success(self) -> bool:
        return bool(self.code & 0x8000)

    @property
    def before_challenge(self) -> bool:
        """P bit: 1 = used before the Challenge round (no AT_MAC allowed)."""
        return bool(self.code & 0x4000)

    @classmethod
    def from_value(cls, v: bytes) -> AtNotification:
        _need(v, 2, "AT_NOTIFICATION")
        return cls(_enum(NotificationCode, _u16(v)))


@dataclass(frozen=True, slots=True)
class AtKdf(_U16):
    """AT_KDF: Key Derivation Function (RFC 5448 §3.2); 1 = EAP-AKA' with CK'/IK'."""

    TYPE: ClassVar[int] = AttributeType.AT_KDF
    code: int = 1

    @property
    def kdf(self) -> int:
        return self.code


@dataclass(frozen=True, slots=True)
class AtCounter(_U16):
    """AT_COUNTER (RFC 4187 §10.16)."""

    TYPE: ClassVar[int] = AttributeType.AT_COUNTER
    code: int = 0


@dataclass(frozen=True, slots=True)
class AtBidding(Attribute):
    """AT_BIDDING: D bit (peer supports AKA') (RFC 5448 §4)."""

    TYPE: ClassVar[int] = AttributeType.AT_BIDDING
    d: bool = True
    rest: int = 0

    def value(self) -> bytes:
        return ((0x8000 if self.d else 0) | (self.rest & 0x7FFF)).to_bytes(2, "big")

    @classmethod
    def from_value(cls, v: bytes) -> AtBidding:
        _need(v, 2, "AT_BIDDING")
        x = _u16(v)
        return cls(bool(x & 0x8000), x & 0x7FFF)


@dataclass(frozen=True, slots=True)
class AtCheckcode(Attribute):
    """AT_CHECKCODE: Reserved(2) + Checkcode (0, 20 or 32 bytes) (RFC 4187 §10.13, RFC 5448 §3.4)."""

    TYPE: ClassVar[int] = AttributeType.AT_CHECKCODE
    checkcode: bytes = b""

    def value(self) -> bytes:
        return b"\x00\x00" + self.checkcode

    @classmethod
    def from_value(cls, v: bytes) -> AtCheckcode:
        body = _reserved_then(v, None, "AT_CHECKCODE")
        if len(body) not in (0, 20, 32):
            raise EapDecodeError("AT_CHECKCODE: bad length")
        return cls(body)


@dataclass(frozen=True, slots=True)
class AtNonceS(Attribute):
    """AT_NONCE_S: Reserved(2) + NONCE_S(16) (RFC 4187 §10.18)."""

    TYPE: ClassVar[int] = AttributeType.AT_NONCE_S
    nonce: bytes

    def value(self) -> bytes:
        return b"\x00\x00" + self.nonce

    @classmethod
    def from_value(cls, v: bytes) -> AtNonceS:
        return cls(_reserved_then(v, 16, "AT_NONCE_S"))


_TYPED: dict[int, type[Attribute]] = {
    c.TYPE: c
    for c in (
        AtRand, AtAutn, AtRes, AtAuts, AtMac, AtIdentity, AtKdfInput, AtPermanentIdReq, AtAnyIdReq,
        AtFullauthIdReq, AtResultInd, AtCounterTooSmall, AtClientErrorCode, AtNotification, AtKdf,
        AtCounter, AtBidding, AtCheckcode, AtNonceS,
    )
}
_KNOWN = frozenset(int(t) for t in AttributeType)

A = TypeVar("A", bound=Attribute)


def _walk(data: bytes, base: int = 0) -> list[tuple[int, int, int]]:
    """Attribute (type, offset, total length) triples; raises on bad framing."""
    out = []
    i = 0
    n = len(data)
    while i < n:
        if n - i < 4:
            raise EapDecodeError("truncated attribute header")
        t, ln = data[i], data[i + 1] * 4
        if ln == 0:
            raise EapDecodeError("attribute with Length 0")
        if i + ln > n:
            raise EapDecodeError("attribute overruns packet")
        out.append((t, base + i, ln))
        i += ln
    return out


def parse_attributes(data: bytes) -> tuple[Attribute, ...]:
    """Decode the attribute list of an EAP-AKA packet (RFC 4187 §8.1)."""
    attrs: list[Attribute] = []
    for t, off, ln in _walk(data):
        v = data[off + 2 : off + ln]
        cls = _TYPED.get(t)
        attrs.append(cls.from_value(v) if cls else RawAttribute(_enum(AttributeType, t), v))
    return tuple(attrs)


def _encode_attr(a: Attribute) -> bytes:
    t = a.type if isinstance(a, RawAttribute) else a.TYPE
    v = a.value()
    if isinstance(a, RawAttribute):
        if (len(v) + 2) % 4:
            raise ValueError("RawAttribute value must keep 4-octet alignment")
    else:
        v = v + bytes(-(len(v) + 2) % 4)
    total = len(v) + 2
    if total // 4 > 255:
        raise ValueError("attribute too long")
    return bytes((t, total // 4)) + v


def serialize_attributes(attrs: tuple[Attribute, ...] | list[Attribute]) -> bytes:
    """Encode an attribute list with zero padding to 4-octet multiples."""
    return b"".join(_encode_attr(a) for a in attrs)


@dataclass(frozen=True, slots=True)
class AkaMessage:
    """An EAP-AKA/AKA' Request or Response (RFC 4187 §8.1, RFC 5448 §3)."""

    code: int
    identifier: int
    subtype: int
    attributes: tuple[Attribute, ...] = ()
    method: int = EapType.AKA
    reserved: int = 0

    def get(self, cls: type[A]) -> A | None:
        """First attribute of a typed class, or None."""
        for a in self.attributes:
            if type(a) is cls:
                return a
        return None

    def get_all(self, cls: type[A]) -> list[A]:
        return [a for a in self.attributes if type(a) is cls]

    def count(self, attr_type: int) -> int:
        return sum(1 for a in self.attributes if _type_of(a) == attr_type)

    @property
    def unknown_non_skippable(self) -> list[int]:
        """Unrecognised attribute types in 0..127: the packet must not be processed (RFC 4187 §8.1)."""
        return [a.type for a in self.attributes if isinstance(a, RawAttribute) and a.type < 128 and a.type not in _KNOWN]

    @property
    def unknown_skippable(self) -> list[int]:
        return [a.type for a in self.attributes if isinstance(a, RawAttribute) and a.type >= 128 and a.type not in _KNOWN]


def _type_of(a: Attribute) -> int:
    return a.type if isinstance(a, RawAttribute) else a.TYPE


def parse(buf: bytes) -> AkaMessage:
    """Decode a whole EAP packet carrying EAP-AKA or EAP-AKA'; raises :class:`EapDecodeError`."""
    p = eap.parse(buf)
    return from_eap(p)


def from_eap(p: eap.EapPacket) -> AkaMessage:
    """Decode the Type-Data of an already parsed EAP packet as EAP-AKA/AKA'."""
    if p.code not in (EapCode.REQUEST, EapCode.RESPONSE):
        raise EapDecodeError("EAP-AKA data only in Request/Response")
    if p.type not in (EapType.AKA, EapType.AKA_PRIME):
        raise EapDecodeError(f"not EAP-AKA/AKA' (Type {p.type})")
    d = p.type_data
    if len(d) < 3:
        raise EapDecodeError("EAP-AKA header truncated")
    return AkaMessage(
        code=p.code,
        identifier=p.identifier,
        subtype=_enum(AkaSubtype, d[0]),
        attributes=parse_attributes(d[3:]),
        method=p.type,
        reserved=_u16(d[1:3]),
    )


def serialize(msg: AkaMessage) -> bytes:
    """Encode an :class:`AkaMessage` as a full EAP packet (lengths and padding computed)."""
    body = bytes((msg.subtype,)) + msg.reserved.to_bytes(2, "big") + serialize_attributes(msg.attributes)
    return eap.serialize(eap.EapPacket(msg.code, msg.identifier, msg.method, body))


_ATTR_START = 8  # Code, Id, Length(2), Type, Subtype, Reserved(2)


def _mac_offset(buf: bytes) -> int | None:
    length = _u16(buf[2:4])
    found = None
    for t, off, ln in _walk(buf[_ATTR_START:length], _ATTR_START):
        if t == AttributeType.AT_MAC:
            if found is not None or ln != 20:
                raise EapDecodeError("duplicate or malformed AT_MAC")
            found = off + 4
    return found


def mac_input(buf: bytes) -> tuple[bytes, bytes] | None:
    """(packet with the AT_MAC value zeroed, received MAC) or None without AT_MAC (RFC 4187 §10.15).

    ``buf`` must be a valid EAP-AKA packet (call :func:`parse` first). Bytes after Length are dropped.
    """
    b = bytes(buf)
    length = _u16(b[2:4])
    off = _mac_offset(b)
    if off is None:
        return None
    return b[:off] + bytes(16) + b[off + 16 : length], b[off : off + 16]


def set_mac(buf: bytes, mac: bytes) -> bytes:
    """Write ``mac`` into the (single) AT_MAC of a serialized packet."""
    if len(mac) != 16:
        raise ValueError("MAC must be 16 bytes")
    off = _mac_offset(bytes(buf))
    if off is None:
        raise ValueError("packet has no AT_MAC")
    return bytes(buf[:off]) + mac + bytes(buf[off + 16 :])
