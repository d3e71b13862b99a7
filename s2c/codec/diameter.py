"""Diameter base protocol codec (RFC 6733 §3 header, §4 AVPs) and TCP stream framing.

Pure bytes <-> dataclasses.  ``parse_message(buf)`` / ``serialize_message(msg)`` (also
``DiameterMessage.parse`` / ``.serialize``); ``DiameterFramer`` splits a TCP byte stream.
An AVP keeps its payload as raw ``bytes``; typed values are decoded on access
(``Avp.value`` via the dictionary in :mod:`s2c.codec.diameter_dict`, or the explicit
``as_u32()`` / ``as_str()`` / ``as_grouped()`` ... accessors), so unknown AVPs survive a round trip.
Every malformed input raises :class:`DiameterDecodeError` (a ``ValueError``).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from s2c.codec.diameter_dict import (
    AVP_BY_NAME,
    AVP_DICTIONARY,
    VENDOR_3GPP,
    AvpCode,
    AvpDef,
    AvpType,
    Avp3gpp,
)

__all__ = [
    "DIAMETER_VERSION",
    "DIAMETER_HEADER_LEN",
    "DIAMETER_PORT",
    "MAX_MESSAGE_LEN",
    "FLAG_REQUEST",
    "FLAG_PROXIABLE",
    "FLAG_ERROR",
    "FLAG_RETRANSMIT",
    "AVP_FLAG_VENDOR",
    "AVP_FLAG_MANDATORY",
    "AVP_FLAG_PROTECTED",
    "VENDOR_3GPP",
    "AvpCode",
    "Avp3gpp",
    "AvpType",
    "AvpDef",
    "ApplicationId",
    "CommandCode",
    "ResultCode",
    "ExperimentalResultCode",
    "DisconnectCause",
    "AuthRequestType",
    "AuthSessionState",
    "RatType",
    "DiameterDecodeError",
    "Avp",
    "DiameterMessage",
    "DiameterFramer",
    "parse_message",
    "serialize_message",
    "parse_avps",
    "serialize_avps",
    "avp",
    "message_length",
]

DIAMETER_VERSION = 1
DIAMETER_HEADER_LEN = 20
DIAMETER_PORT = 3868
"""IANA-assigned TCP/SCTP port (RFC 6733 §2.1)."""
MAX_MESSAGE_LEN = 1 << 20
"""Framing limit: anything announcing more than 1 MiB is treated as garbage (the 24-bit field allows 16 MiB)."""

# Command flags, RFC 6733 §3
FLAG_REQUEST = 0x80
FLAG_PROXIABLE = 0x40
FLAG_ERROR = 0x20
FLAG_RETRANSMIT = 0x10
_CMD_FLAGS_RESERVED = 0x0F

# AVP flags, RFC 6733 §4.1
AVP_FLAG_VENDOR = 0x80
AVP_FLAG_MANDATORY = 0x40
AVP_FLAG_PROTECTED = 0x20
_AVP_FLAGS_RESERVED = 0x1F


class ApplicationId(IntEnum):
    """Diameter Application IDs (IANA registry; RFC 6733 §2.4, TS 29.230 §7)."""

    DIAMETER_COMMON_MESSAGES = 0
    NASREQ = 1
    DIAMETER_EAP = 5
    SWM_3GPP = 16777264
    SWX_3GPP = 16777265
    S6A_3GPP = 16777251
    S6B_3GPP = 16777272
    RELAY = 0xFFFFFFFF


class CommandCode(IntEnum):
    """Diameter Command Codes (IANA registry; RFC 6733 §3.1, RFC 4072 §3.1, TS 29.273 §8.2.2/§9.2.2)."""

    CAPABILITIES_EXCHANGE = 257
    RE_AUTH = 258
    AA = 265
    DIAMETER_EAP = 268
    ABORT_SESSION = 274
    SESSION_TERMINATION = 275
    DEVICE_WATCHDOG = 280
    DISCONNECT_PEER = 282
    SERVER_ASSIGNMENT = 301
    MULTIMEDIA_AUTH = 303
    REGISTRATION_TERMINATION = 304
    PUSH_PROFILE = 305


class ResultCode(IntEnum):
    """Result-Code AVP values (RFC 6733 §7.1, RFC 4072 §3)."""

    DIAMETER_MULTI_ROUND_AUTH = 1001
    DIAMETER_SUCCESS = 2001
    DIAMETER_LIMITED_SUCCESS = 2002
    DIAMETER_COMMAND_UNSUPPORTED = 3001
    DIAMETER_UNABLE_TO_DELIVER = 3002
    DIAMETER_REALM_NOT_SERVED = 3003
    DIAMETER_TOO_BUSY = 3004
    DIAMETER_LOOP_DETECTED = 3005
    DIAMETER_REDIRECT_INDICATION = 3006
    DIAMETER_APPLICATION_UNSUPPORTED = 3007
    DIAMETER_INVALID_HDR_BITS = 3008
    DIAMETER_INVALID_AVP_BITS = 3009
    DIAMETER_UNKNOWN_PEER = 3010
    DIAMETER_AUTHENTICATION_REJECTED = 4001
    DIAMETER_OUT_OF_SPACE = 4002
    ELECTION_LOST = 4003
    DIAMETER_AVP_UNSUPPORTED = 5001
    DIAMETER_UNKNOWN_SESSION_ID = 5002
    DIAMETER_AUTHORIZATION_REJECTED = 5003
    DIAMETER_INVALID_AVP_VALUE = 5004
    DIAMETER_MISSING_AVP = 5005
    DIAMETER_RESOURCES_EXCEEDED = 5006
    DIAMETER_CONTRADICTING_AVPS = 5007
    DIAMETER_AVP_NOT_ALLOWED = 5008
    DIAMETER_AVP_OCCURS_TOO_MANY_TIMES = 5009
    DIAMETER_NO_COMMON_APPLICATION = 5010
    DIAMETER_UNSUPPORTED_VERSION = 5011
    DIAMETER_UNABLE_TO_COMPLY = 5012
    DIAMETER_INVALID_BIT_IN_HEADER = 5013
    DIAMETER_INVALID_AVP_LENGTH = 5014
    DIAMETER_INVALID_MESSAGE_LENGTH = 5015
    DIAMETER_INVALID_AVP_BIT_COMBO = 5016
    DIAMETER_NO_COMMON_SECURITY = 5017


class ExperimentalResultCode(IntEnum):
    """3GPP Experimental-Result-Code values, always with Vendor-Id 10415 (TS 29.229 §6.2, TS 29.273 §10)."""

    DIAMETER_FIRST_REGISTRATION = 2001
    DIAMETER_SUBSEQUENT_REGISTRATION = 2002
    DIAMETER_ERROR_USER_UNKNOWN = 5001
    DIAMETER_ERROR_IDENTITIES_DONT_MATCH = 5002
    DIAMETER_ERROR_IDENTITY_NOT_REGISTERED = 5003
    DIAMETER_ERROR_ROAMING_NOT_ALLOWED = 5004
    DIAMETER_ERROR_IDENTITY_ALREADY_REGISTERED = 5005
    DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED = 5006
    DIAMETER_ERROR_IN_ASSIGNMENT_TYPE = 5007
    DIAMETER_ERROR_TOO_MUCH_DATA = 5008
    DIAMETER_ERROR_NOT_SUPPORTED_USER_DATA = 5009
    DIAMETER_ERROR_USER_NO_NON_3GPP_SUBSCRIPTION = 5450
    DIAMETER_ERROR_USER_NO_APN_SUBSCRIPTION = 5451
    DIAMETER_ERROR_RAT_TYPE_NOT_ALLOWED = 5452
    DIAMETER_ERROR_LATE_OVERLAPPING_REQUEST = 5453
    DIAMETER_ERROR_TIMED_OUT_REQUEST = 5454


class DisconnectCause(IntEnum):
    """Disconnect-Cause AVP values (RFC 6733 §5.4.3)."""

    REBOOTING = 0
    BUSY = 1
    DO_NOT_WANT_TO_TALK_TO_YOU = 2


class AuthRequestType(IntEnum):
    """Auth-Request-Type AVP values (RFC 6733 §8.7)."""

    AUTHENTICATE_ONLY = 1
    AUTHORIZE_ONLY = 2
    AUTHORIZE_AUTHENTICATE = 3


class AuthSessionState(IntEnum):
    """Auth-Session-State AVP values (RFC 6733 §8.11)."""

    STATE_MAINTAINED = 0
    NO_STATE_MAINTAINED = 1


class RatType(IntEnum):
    """RAT-Type AVP values (TS 29.212 §5.3.31)."""

    WLAN = 0
    VIRTUAL = 1
    UTRAN = 1000
    GERAN = 1001
    GAN = 1002
    HSPA_EVOLUTION = 1003
    EUTRAN = 1004
    CDMA2000_1X = 2000
    HRPD = 2001
    UMB = 2002
    EHRPD = 2003


class DiameterDecodeError(ValueError):
    """Malformed Diameter bytes (bad header, AVP length, padding, value encoding)."""


_HDR = struct.Struct("!I I I I I")  # ver|len, flags|cmd, app, hbh, e2e
_AVP_HDR = struct.Struct("!I I")  # code, flags|len
_AVP_HDR_V = struct.Struct("!I I I")  # code, flags|len, vendor
_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")
_U64 = struct.Struct("!Q")
_I64 = struct.Struct("!q")
_F32 = struct.Struct("!f")
_F64 = struct.Struct("!d")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")

@dataclass(frozen=True, slots=True)
class Avp:
    """One AVP (RFC 6733 §4.1).  ``data`` is the unpadded payload.

    The Vendor-ID field is written when ``vendor_id`` is non-zero or the V flag is set.
    """

    code: int
    flags: int
    data: bytes
    vendor_id: int = 0

    # ---- construction ------------------------------------------------------------------------
    @staticmethod
    def _flags(mandatory: bool, vendor_id: int) -> int:
        return (AVP_FLAG_MANDATORY if mandatory else 0) | (AVP_FLAG_VENDOR if vendor_id else 0)

    @classmethod
    def octets(cls, code: int, value: bytes, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        """OctetString AVP."""
        return cls(code, cls._flags(mandatory, vendor_id), bytes(value), vendor_id)

    @classmethod
    def utf8(cls, code: int, value: str, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        """UTF8String / DiameterIdentity / DiameterURI AVP."""
        return cls(code, cls._flags(mandatory, vendor_id), value.encode(), vendor_id)

    @classmethod
    def u32(cls, code: int, value: int, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        """Unsigned32 / Enumerated(>=0) AVP."""
        return cls(code, cls._flags(mandatory, vendor_id), _U32.pack(value), vendor_id)

    @classmethod
    def i32(cls, code: int, value: int, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        """Integer32 / Enumerated AVP."""
        return cls(code, cls._flags(mandatory, vendor_id), _I32.pack(value), vendor_id)

    @classmethod
    def u64(cls, code: int, value: int, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        """Unsigned64 AVP."""
        return cls(code, cls._flags(mandatory, vendor_id), _U64.pack(value), vendor_id)

    @classmethod
    def i64(cls, code: int, value: int, vendor_id: int = 0, mandatory: bool = True) -> Avp:
        """Integer64 AVP."""
        return cls(code, cls._flags(mandatory, vendor_id), _I64.pack(value), vendor_id)

    @classmethod
    def address(
        cls,
        code: int,
        value: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
        vendor_id: int = 0,
        mandatory: bool = True,
    ) -> Avp:
        """Address AVP: 2-byte IANA address family (1 IPv4, 2 IPv6) + address (RFC 6733 §4.3.1)."""
        ip = ipaddress.ip_address(value)
        family = 1 if ip.version == 4 else 2
        return cls(code, cls._flags(mandatory, vendor_id), struct.pack("!H", family) + ip.packed, vendor_id)

    @classmethod
    def grouped(cls, code: int, children: Iterable[Avp], vendor_id: int = 0, mandatory: bool = True) -> Avp:
        """Grouped AVP (RFC 6733 §4.4): payload is the concatenation of the padded children."""
        return cls(code, cls._flags(mandatory, vendor_id), serialize_avps(children), vendor_id)

    # ---- flags -------------------------------------------------------------------------------
    @property
    def is_mandatory(self) -> bool:
        return bool(self.flags & AVP_FLAG_MANDATORY)

    @property
    def is_vendor(self) -> bool:
        return bool(self.flags & AVP_FLAG_VENDOR)

    @property
    def key(self) -> tuple[int, int]:
        return (self.code, self.vendor_id)

    @property
    def definition(self) -> AvpDef | None:
        return AVP_DICTIONARY.get((self.code, self.vendor_id))

    @property
    def name(self) -> str:
        d = AVP_DICTIONARY.get((self.code, self.vendor_id))
        if d is not None:
            return d.name
        return f"AVP-{self.code}" + (f"/{self.vendor_id}" if self.vendor_id else "")

    # ---- typed accessors (raise DiameterDecodeError on a bad payload) ------------------------
    def as_bytes(self) -> bytes:
        return self.data

    def as_str(self) -> str:
        try:
            return self.data.decode()
        except UnicodeDecodeError as exc:
            raise DiameterDecodeError(f"AVP {self.name}: invalid UTF-8") from exc

    def _fixed(self, st: struct.Struct) -> int | float:
        if len(self.data) != st.size:
            raise DiameterDecodeError(f"AVP {self.name}: expected {st.size} bytes, got {len(self.data)}")
        return st.unpack(self.data)[0]  # type: ignore[no-any-return]

    def as_u32(self) -> int:
        return int(self._fixed(_U32))

    def as_i32(self) -> int:
        return int(self._fixed(_I32))

    def as_u64(self) -> int:
        return int(self._fixed(_U64))

    def as_i64(self) -> int:
        return int(self._fixed(_I64))

    def as_address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        d = self.data
        if len(d) == 6 and d[:2] == b"\0\x01":
            return ipaddress.IPv4Address(d[2:])
        if len(d) == 18 and d[:2] == b"\0\x02":
            return ipaddress.IPv6Address(d[2:])
        raise DiameterDecodeError(f"AVP {self.name}: unsupported/malformed Address ({d[:2].hex()}, {len(d)} bytes)")

    def as_grouped(self) -> list[Avp]:
        return parse_avps(self.data)

    @property
    def value(self) -> object:
        """Decode according to the dictionary; unknown AVPs yield raw ``bytes``.

        Time is returned as seconds since 1900-01-01 (NTP era 0, RFC 6733 §4.3.1).
        """
        d = AVP_DICTIONARY.get((self.code, self.vendor_id))
        if d is None:
            return self.data
        t = d.type
        if t in _STRING_TYPES:
            return self.as_str()
        if t is AvpType.UNSIGNED32 or t is AvpType.TIME:
            return self.as_u32()
        if t is AvpType.ENUMERATED or t is AvpType.INTEGER32:
            return self.as_i32()
        if t is AvpType.UNSIGNED64:
            return self.as_u64()
        if t is AvpType.INTEGER64:
            return self.as_i64()
        if t is AvpType.GROUPED:
            return self.as_grouped()
        if t is AvpType.ADDRESS:
            return self.as_address()
        if t is AvpType.FLOAT32:
            return self._fixed(_F32)
        if t is AvpType.FLOAT64:
            return self._fixed(_F64)
        return self.data

    # ---- grouped helpers ---------------------------------------------------------------------
    def find(self, code: int, vendor_id: int = 0) -> Avp | None:
        """First child AVP with (code, vendor) of this Grouped AVP."""
        for a in parse_avps(self.data):
            if a.code == code and a.vendor_id == vendor_id:
                return a
        return None

    def serialize(self) -> bytes:
        return serialize_avps((self,))

    def __repr__(self) -> str:
        try:
            v = self.value
        except DiameterDecodeError:
            v = self.data
        return f"Avp({self.name}, flags=0x{self.flags:02x}, {v!r})"


_STRING_TYPES = frozenset({AvpType.UTF8_STRING, AvpType.DIAMETER_IDENTITY, AvpType.DIAMETER_URI})


def avp(name: str, value: object, *, mandatory: bool | None = None) -> Avp:
    """Build an AVP by its spec name from the dictionary, encoding ``value`` per its type.

    Grouped values are an iterable of :class:`Avp`; Address accepts str or ipaddress objects;
    Time takes NTP seconds.  Convenience for tests/builders, not for the hottest paths.
    """
    try:
        code, vendor = AVP_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown AVP name {name!r}") from None
    d = AVP_DICTIONARY[(code, vendor)]
    m = d.mandatory if mandatory is None else mandatory
    t = d.type
    if t in _STRING_TYPES:
        return Avp.utf8(code, value, vendor, m)  # type: ignore[arg-type]
    if t is AvpType.OCTET_STRING:
        return Avp.octets(code, value, vendor, m)  # type: ignore[arg-type]
    if t is AvpType.UNSIGNED32 or t is AvpType.TIME:
        return Avp.u32(code, int(value), vendor, m)  # type: ignore[call-overload]
    if t is AvpType.ENUMERATED or t is AvpType.INTEGER32:
        return Avp.i32(code, int(value), vendor, m)  # type: ignore[call-overload]
    if t is AvpType.UNSIGNED64:
        return Avp.u64(code, int(value), vendor, m)  # type: ignore[call-overload]
    if t is AvpType.INTEGER64:
        return Avp.i64(code, int(value), vendor, m)  # type: ignore[call-overload]
    if t is AvpType.ADDRESS:
        return Avp.address(code, value, vendor, m)  # type: ignore[arg-type]
    if t is AvpType.GROUPED:
        return Avp.grouped(code, value, vendor, m)  # type: ignore[arg-type]
    if t is AvpType.FLOAT32:
        return Avp(code, Avp._flags(m, vendor), _F32.pack(value), vendor)
    if t is AvpType.FLOAT64:
        return Avp(code, Avp._flags(m, vendor), _F64.pack(value), vendor)
    raise AssertionError(t)  # pragma: no cover


# ---- AVP list codec ---------------------------------------------------------------------------


def serialize_avps(avps: Iterable[Avp]) -> bytes:
    """Encode AVPs, each padded to a 4-byte boundary (RFC 6733 §4)."""
    out: list[bytes] = []
    append = out.append
    hdr = _AVP_HDR.pack
    hdr_v = _AVP_HDR_V.pack
    for a in avps:
        data = a.data
        n = len(data)
        if a.vendor_id or a.flags & AVP_FLAG_VENDOR:
            append(hdr_v(a.code, ((a.flags | AVP_FLAG_VENDOR) << 24) | (n + 12), a.vendor_id))
        else:
            append(hdr(a.code, ((a.flags & ~AVP_FLAG_VENDOR & 0xFF) << 24) | (n + 8)))
        append(data)
        append(_PAD[n & 3])
    return b"".join(out)


def parse_avps(buf: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> list[Avp]:
    """Decode a run of padded AVPs filling ``buf[start:end]`` exactly."""
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    if end is None:
        end = len(buf)
    out: list[Avp] = []
    append = out.append
    unpack = _AVP_HDR.unpack_from
    u32 = _U32.unpack_from
    pos = start
    while pos < end:
        if end - pos < 8:
            raise DiameterDecodeError(f"truncated AVP header at offset {pos}")
        code, fl = unpack(buf, pos)
        flags = fl >> 24
        length = fl & 0xFFFFFF
        if flags & AVP_FLAG_VENDOR:
            if length < 12 or end - pos < 12:
                raise DiameterDecodeError(f"AVP {code}: length {length} too short for vendor AVP")
            vendor = u32(buf, pos + 8)[0]
            dstart = pos + 12
        else:
            if length < 8:
                raise DiameterDecodeError(f"AVP {code}: length {length} < 8")
            vendor = 0
            dstart = pos + 8
        dend = pos + length
        if dend > end:
            raise DiameterDecodeError(f"AVP {code}: length {length} overruns its container")
        padded = pos + ((length + 3) & ~3)
        if padded > end:
            raise DiameterDecodeError(f"AVP {code}: missing padding")
        append(Avp(code, flags, buf[dstart:dend], vendor))
        pos = padded
    return out


# ---- message -----------------------------------------------------------------------------------


@dataclass(slots=True)
class DiameterMessage:
    """A Diameter message: 20-byte header + AVPs (RFC 6733 §3)."""

    command_code: int
    application_id: int
    flags: int = 0
    hop_by_hop: int = 0
    end_to_end: int = 0
    avps: list[Avp] = field(default_factory=list)
    version: int = DIAMETER_VERSION

    # ---- header flags ------------------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_REQUEST)

    @property
    def is_proxiable(self) -> bool:
        return bool(self.flags & FLAG_PROXIABLE)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)

    @property
    def is_retransmit(self) -> bool:
        return bool(self.flags & FLAG_RETRANSMIT)

    @property
    def key(self) -> tuple[int, int, bool]:
        """Dispatch key ``(application_id, command_code, is_request)``."""
        return (self.application_id, self.command_code, bool(self.flags & FLAG_REQUEST))

    # ---- AVP access --------------------------------------------------------------------------
    def find(self, code: int, vendor_id: int = 0) -> Avp | None:
        """First top-level AVP with this (code, vendor), or None."""
        for a in self.avps:
            if a.code == code and a.vendor_id == vendor_id:
                return a
        return None

    def find_all(self, code: int, vendor_id: int = 0) -> list[Avp]:
        return [a for a in self.avps if a.code == code and a.vendor_id == vendor_id]

    def get_str(self, code: int, vendor_id: int = 0) -> str | None:
        a = self.find(code, vendor_id)
        return None if a is None else a.as_str()

    def get_bytes(self, code: int, vendor_id: int = 0) -> bytes | None:
        a = self.find(code, vendor_id)
        return None if a is None else a.data

    def get_u32(self, code: int, vendor_id: int = 0) -> int | None:
        a = self.find(code, vendor_id)
        return None if a is None else a.as_u32()

    def get_u64(self, code: int, vendor_id: int = 0) -> int | None:
        a = self.find(code, vendor_id)
        return None if a is None else a.as_u64()

    def add(self, *avps: Avp) -> DiameterMessage:
        """Append AVPs; returns self for chaining."""
        self.avps.extend(avps)
        return self

    @property
    def session_id(self) -> str | None:
        return self.get_str(AvpCode.SESSION_ID)

    @property
    def origin_host(self) -> str | None:
        return self.get_str(AvpCode.ORIGIN_HOST)

    @property
    def origin_realm(self) -> str | None:
        return self.get_str(AvpCode.ORIGIN_REALM)

    @property
    def destination_host(self) -> str | None:
        return self.get_str(AvpCode.DESTINATION_HOST)

    @property
    def destination_realm(self) -> str | None:
        return self.get_str(AvpCode.DESTINATION_REALM)

    @property
    def user_name(self) -> str | None:
        return self.get_str(AvpCode.USER_NAME)

    @property
    def result_code(self) -> int | None:
        """Result-Code AVP value (base protocol), or None."""
        return self.get_u32(AvpCode.RESULT_CODE)

    @property
    def experimental_result(self) -> tuple[int, int] | None:
        """``(Vendor-Id, Experimental-Result-Code)`` from Experimental-Result, or None (RFC 6733 §7.6)."""
        a = self.find(AvpCode.EXPERIMENTAL_RESULT)
        if a is None:
            return None
        vendor = 0
        code: int | None = None
        for c in a.as_grouped():
            if c.code == AvpCode.VENDOR_ID and c.vendor_id == 0:
                vendor = c.as_u32()
            elif c.code == AvpCode.EXPERIMENTAL_RESULT_CODE and c.vendor_id == 0:
                code = c.as_u32()
        if code is None:
            raise DiameterDecodeError("Experimental-Result without Experimental-Result-Code")
        return (vendor, code)

    @property
    def is_success(self) -> bool:
        """True when Result-Code or Experimental-Result-Code is 2xxx."""
        rc = self.result_code
        if rc is not None:
            return 2000 <= rc < 3000
        er = self.experimental_result
        return er is not None and 2000 <= er[1] < 3000

    # ---- answers -----------------------------------------------------------------------------
    def make_answer(self, avps: Iterable[Avp] = (), *, error: bool = False) -> DiameterMessage:
        """Answer skeleton: same command, application, ids and P bit; R cleared (RFC 6733 §6.2)."""
        flags = self.flags & FLAG_PROXIABLE
        if error:
            flags |= FLAG_ERROR
        return DiameterMessage(
            self.command_code, self.application_id, flags, self.hop_by_hop, self.end_to_end, list(avps)
        )

    # ---- codec -------------------------------------------------------------------------------
    def serialize(self) -> bytes:
        return serialize_message(self)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> DiameterMessage:
        return parse_message(buf)

    def walk(self) -> Iterator[tuple[int, Avp]]:
        """Depth-first iteration over all AVPs with their nesting depth (decodes Grouped ones)."""
        stack: list[tuple[int, list[Avp]]] = [(0, self.avps)]
        while stack:
            depth, items = stack.pop()
            for a in items:
                yield depth, a
                d = AVP_DICTIONARY.get((a.code, a.vendor_id))
                if d is not None and d.type is AvpType.GROUPED:
                    stack.append((depth + 1, a.as_grouped()))

    def __repr__(self) -> str:
        kind = "Request" if self.is_request else "Answer"
        try:
            cmd = CommandCode(self.command_code).name
        except ValueError:
            cmd = str(self.command_code)
        return (
            f"DiameterMessage({cmd} {kind}, app={self.application_id}, flags=0x{self.flags:02x}, "
            f"hbh=0x{self.hop_by_hop:08x}, e2e=0x{self.end_to_end:08x}, avps={self.avps!r})"
        )


def serialize_message(msg: DiameterMessage) -> bytes:
    """Encode a message; the length field is computed (RFC 6733 §3)."""
    body = serialize_avps(msg.avps)
    length = DIAMETER_HEADER_LEN + len(body)
    if length > 0xFFFFFF:
        raise ValueError("Diameter message too long")
    return (
        _HDR.pack(
            (msg.version << 24) | length,
            (msg.flags << 24) | (msg.command_code & 0xFFFFFF),
            msg.application_id,
            msg.hop_by_hop,
            msg.end_to_end,
        )
        + body
    )


def message_length(buf: bytes | bytearray | memoryview) -> int:
    """Message length announced by a header prefix (needs >= 4 bytes)."""
    return int.from_bytes(buf[1:4], "big")


def parse_message(buf: bytes | bytearray | memoryview) -> DiameterMessage:
    """Decode exactly one message occupying all of ``buf``."""
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    n = len(buf)
    if n < DIAMETER_HEADER_LEN:
        raise DiameterDecodeError(f"message shorter than header ({n} bytes)")
    vl, fc, app, hbh, e2e = _HDR.unpack_from(buf, 0)
    version = vl >> 24
    length = vl & 0xFFFFFF
    if version != DIAMETER_VERSION:
        raise DiameterDecodeError(f"unsupported Diameter version {version}")
    if length != n:
        raise DiameterDecodeError(f"length field {length} != buffer length {n}")
    if length & 3:
        raise DiameterDecodeError(f"message length {length} not a multiple of 4")
    flags = fc >> 24
    if flags & _CMD_FLAGS_RESERVED:
        raise DiameterDecodeError(f"reserved command flag bits set (0x{flags:02x})")
    return DiameterMessage(fc & 0xFFFFFF, app, flags, hbh, e2e, parse_avps(buf, DIAMETER_HEADER_LEN, n), version)


# ---- stream framing ----------------------------------------------------------------------------


class DiameterFramer:
    """Split a TCP byte stream into Diameter messages (RFC 6733 §2.1 / §3 length field).

    ``feed(data)`` returns the complete messages now available.  A bad header (wrong version,
    length < 20, not a multiple of 4, or above ``max_length``) or an unparsable message raises
    :class:`DiameterDecodeError`; the stream is then unrecoverable and the caller must close the
    connection (``broken`` stays True and further ``feed`` calls raise again).
    """

    __slots__ = ("_buf", "max_length", "broken")

    def __init__(self, max_length: int = MAX_MESSAGE_LEN) -> None:
        self._buf = bytearray()
        self.max_length = max_length
        self.broken = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed_frames(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Return complete raw messages (header checked, AVPs not yet parsed).

        Only framing errors raise here; a frame whose AVPs are malformed still keeps the stream
        in sync, so a peer can answer it with an error instead of closing.
        """
        if self.broken:
            raise DiameterDecodeError("stream already broken")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            length = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
            if buf[pos] != DIAMETER_VERSION or length < DIAMETER_HEADER_LEN or length & 3 or length > self.max_length:
                err = f"implausible header in stream (version {buf[pos]}, length {length})"
                self.broken = True
                buf.clear()
                raise DiameterDecodeError(err)
            if n - pos < length:
                break
            out.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return out

    def feed(self, data: bytes | bytearray | memoryview) -> list[DiameterMessage]:
        """Return complete parsed messages; any error breaks the stream (caller closes)."""
        frames = self.feed_frames(data)
        try:
            return [parse_message(f) for f in frames]
        except DiameterDecodeError:
            self.broken = True
            self._buf.clear()
            raise
