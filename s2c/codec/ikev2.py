"""IKEv2 message codec (RFC 7296 §3), with RFC 4555, 5026, 7383 and 7427 additions.

Pure bytes <-> dataclasses. ``parse_message`` reads a whole datagram into an :class:`IkeMessage`
whose payload list may end with an :class:`EncryptedPayload` (SK, still encrypted: see
``s2c.ike.protect``); ``serialize_message`` writes one. Lengths and padding are always computed.
Every malformed input raises :class:`IkeDecodeError` (a ``ValueError``); an unknown payload with the
critical bit set raises :class:`UnsupportedCriticalPayload` carrying its type, so a state machine
can answer ``UNSUPPORTED_CRITICAL_PAYLOAD``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import ClassVar, Sequence, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

IKE_HEADER_LEN = 28
GENERIC_HEADER_LEN = 4
NON_ESP_MARKER = b"\x00\x00\x00\x00"


class IkeDecodeError(ValueError):
    """Malformed IKEv2 input."""


class UnsupportedCriticalPayload(IkeDecodeError):
    """An unknown payload had the critical bit set (RFC 7296 §2.5)."""

    def __init__(self, payload_type: int) -> None:
        super().__init__(f"unsupported critical payload type {payload_type}")
        self.payload_type = payload_type


# ---------------------------------------------------------------------------------------------
# IANA "Internet Key Exchange Version 2 (IKEv2) Parameters" registries
# ---------------------------------------------------------------------------------------------


class ExchangeType(IntEnum):
    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37
    IKE_SESSION_RESUME = 38
    GSA_AUTH = 39
    GSA_REGISTRATION = 40
    GSA_REKEY = 41
    IKE_INTERMEDIATE = 43
    IKE_FOLLOWUP_KE = 44


class HeaderFlag(IntFlag):
    INITIATOR = 0x08
    VERSION = 0x10
    RESPONSE = 0x20


class PayloadType(IntEnum):
    NONE = 0
    SA = 33
    KE = 34
    IDi = 35
    IDr = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    N = 41
    D = 42
    V = 43
    TSi = 44
    TSr = 45
    SK = 46
    CP = 47
    EAP = 48
    GSPM = 49
    IDg = 50
    GSA = 51
    KD = 52
    SKF = 53
    PS = 54


class ProtocolId(IntEnum):
    NONE = 0
    IKE = 1
    AH = 2
    ESP = 3


class TransformType(IntEnum):
    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5


class EncrId(IntEnum):
    ENCR_DES_IV64 = 1
    ENCR_DES = 2
    ENCR_3DES = 3
    ENCR_RC5 = 4
    ENCR_IDEA = 5
    ENCR_CAST = 6
    ENCR_BLOWFISH = 7
    ENCR_3IDEA = 8
    ENCR_DES_IV32 = 9
    ENCR_NULL = 11
    ENCR_AES_CBC = 12
    ENCR_AES_CTR = 13
    ENCR_AES_CCM_8 = 14
    ENCR_AES_CCM_12 = 15
    ENCR_AES_CCM_16 = 16
    ENCR_AES_GCM_8 = 18
    ENCR_AES_GCM_12 = 19
    ENCR_AES_GCM_16 = 20
    ENCR_NULL_AUTH_AES_GMAC = 21
    ENCR_CAMELLIA_CBC = 23
    ENCR_CAMELLIA_CTR = 24
    ENCR_CHACHA20_POLY1305 = 28


class PrfId(IntEnum):
    PRF_HMAC_MD5 = 1
    PRF_HMAC_SHA1 = 2
    PRF_HMAC_TIGER = 3
    PRF_AES128_XCBC = 4
    PRF_HMAC_SHA2_256 = 5
    PRF_HMAC_SHA2_384 = 6
    PRF_HMAC_SHA2_512 = 7
    PRF_AES128_CMAC = 8


class IntegId(IntEnum):
    NONE = 0
    AUTH_HMAC_MD5_96 = 1
    AUTH_HMAC_SHA1_96 = 2
    AUTH_DES_MAC = 3
    AUTH_KPDK_MD5 = 4
    AUTH_AES_XCBC_96 = 5
    AUTH_HMAC_MD5_128 = 6
    AUTH_HMAC_SHA1_160 = 7
    AUTH_AES_CMAC_96 = 8
    AUTH_AES_128_GMAC = 9
    AUTH_AES_192_GMAC = 10
    AUTH_AES_256_GMAC = 11
    AUTH_HMAC_SHA2_256_128 = 12
    AUTH_HMAC_SHA2_384_192 = 13
    AUTH_HMAC_SHA2_512_256 = 14


class DhGroup(IntEnum):
    NONE = 0
    MODP_768 = 1
    MODP_1024 = 2
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    MODP_1024_160 = 22
    MODP_2048_224 = 23
    MODP_2048_256 = 24
    ECP_192 = 25
    ECP_224 = 26
    BRAINPOOL_P224R1 = 27
    BRAINPOOL_P256R1 = 28
    BRAINPOOL_P384R1 = 29
    BRAINPOOL_P512R1 = 30
    CURVE25519 = 31
    CURVE448 = 32


class EsnId(IntEnum):
    NO_ESN = 0
    ESN = 1


class TransformAttributeType(IntEnum):
    KEY_LENGTH = 14


class IdType(IntEnum):
    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_RFC822_ADDR = 3
    ID_IPV6_ADDR = 5
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11
    ID_FC_NAME = 12
    ID_NULL = 13


class CertEncoding(IntEnum):
    PKCS7_WRAPPED_X509 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_CERT_SIGNATURE = 4
    KERBEROS_TOKEN = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_CERT_ATTRIBUTE = 10
    RAW_RSA_KEY = 11
    HASH_URL_X509_CERT = 12
    HASH_URL_X509_BUNDLE = 13
    OCSP_CONTENT = 14
    RAW_PUBLIC_KEY = 15


class AuthMethod(IntEnum):
    RSA_DIGITAL_SIGNATURE = 1
    SHARED_KEY_MESSAGE_INTEGRITY_CODE = 2
    DSS_DIGITAL_SIGNATURE = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    GENERIC_SECURE_PASSWORD = 12
    NULL_AUTHENTICATION = 13
    DIGITAL_SIGNATURE = 14


class HashAlgorithm(IntEnum):
    """IKEv2 Hash Algorithms registry (RFC 7427 §7)."""

    RESERVED = 0
    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


class NotifyType(IntEnum):
    # error types
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40
    UNEXPECTED_NAT_DETECTED = 41
    USE_ASSIGNED_HoA = 42
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    INVALID_GROUP_ID = 45
    AUTHORIZATION_FAILED = 46
    STATE_NOT_FOUND = 47
    # status types
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396
    ADDITIONAL_IP4_ADDRESS = 16397
    ADDITIONAL_IP6_ADDRESS = 16398
    NO_ADDITIONAL_ADDRESSES = 16399
    UPDATE_SA_ADDRESSES = 16400
    COOKIE2 = 16401
    NO_NATS_ALLOWED = 16402
    AUTH_LIFETIME = 16403
    MULTIPLE_AUTH_SUPPORTED = 16404
    ANOTHER_AUTH_FOLLOWS = 16405
    REDIRECT_SUPPORTED = 16406
    REDIRECT = 16407
    REDIRECTED_FROM = 16408
    TICKET_LT_OPAQUE = 16409
    TICKET_REQUEST = 16410
    TICKET_ACK = 16411
    TICKET_NACK = 16412
    TICKET_OPAQUE = 16413
    LINK_ID = 16414
    USE_WESP_MODE = 16415
    ROHC_SUPPORTED = 16416
    EAP_ONLY_AUTHENTICATION = 16417
    CHILDLESS_IKEV2_SUPPORTED = 16418
    QUICK_CRASH_DETECTION = 16419
    IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420
    IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421
    IKEV2_MESSAGE_ID_SYNC = 16422
    IPSEC_REPLAY_COUNTER_SYNC = 16423
    SECURE_PASSWORD_METHODS = 16424
    PSK_PERSIST = 16425
    PSK_CONFIRM = 16426
    ERX_SUPPORTED = 16427
    IFOM_CAPABILITY = 16428
    SENDER_REQUEST_ID = 16429
    IKEV2_FRAGMENTATION_SUPPORTED = 16430
    SIGNATURE_HASH_ALGORITHMS = 16431
    CLONE_IKE_SA_SUPPORTED = 16432
    CLONE_IKE_SA = 16433
    PUZZLE = 16434
    USE_PPK = 16435
    PPK_IDENTITY = 16436
    NO_PPK_AUTH = 16437
    INTERMEDIATE_EXCHANGE_SUPPORTED = 16438
    IP4_ALLOWED = 16439
    IP6_ALLOWED = 16440
    ADDITIONAL_KEY_EXCHANGE = 16441
    USE_AGGFRAG = 16442

    @property
    def is_error(self) -> bool:
        return self < 16384


class TsType(IntEnum):
    TS_IPV4_ADDR_RANGE = 7
    TS_IPV6_ADDR_RANGE = 8
    TS_FC_ADDR_RANGE = 9


class CfgType(IntEnum):
    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


class CpAttributeType(IntEnum):
    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    MIP6_HOME_PREFIX = 16
    INTERNAL_IP6_LINK = 17
    INTERNAL_IP6_PREFIX = 18
    HOME_AGENT_ADDRESS = 19
    P_CSCF_IP4_ADDRESS = 20
    P_CSCF_IP6_ADDRESS = 21


def _enum_or_int(enum: type[IntEnum], value: int) -> int:
    try:
        return enum(value)
    except ValueError:
        return value


# ---------------------------------------------------------------------------------------------
# SA payload pieces
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    """A Transform substructure with its attributes (RFC 7296 §3.3.2, §3.3.5)."""

    type: int
    id: int
    key_length: int | None = None
    other_attributes: tuple[tuple[int, bytes | int], ...] = ()

    def encode(self, last: bool) -> bytes:
        attrs = b""
        if self.key_length is not None:
            attrs += struct.pack("!HH", 0x8000 | TransformAttributeType.KEY_LENGTH, self.key_length)
        for atype, value in self.other_attributes:
            if isinstance(value, int):
                attrs += struct.pack("!HH", 0x8000 | atype, value)
            else:
                attrs += struct.pack("!HH", atype & 0x7FFF, len(value)) + value
        return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), self.type, 0, self.id) + attrs

    @classmethod
    def decode(cls, body: bytes) -> "Transform":
        if len(body) < 8:
            raise IkeDecodeError("transform too short")
        ttype, _, tid = struct.unpack_from("!BBH", body, 4)
        key_length = None
        others: list[tuple[int, bytes | int]] = []
        pos = 8
        while pos < len(body):
            if pos + 4 > len(body):
                raise IkeDecodeError("truncated transform attribute")
            af_type, val = struct.unpack_from("!HH", body, pos)
            atype = af_type & 0x7FFF
            if af_type & 0x8000:
                pos += 4
                if atype == TransformAttributeType.KEY_LENGTH:
                    key_length = val
                else:
                    others.append((atype, val))
            else:
                end = pos + 4 + val
                if end > len(body):
                    raise IkeDecodeError("truncated TLV transform attribute")
                others.append((atype, body[pos + 4 : end]))
                pos = end
        return cls(_enum_or_int(TransformType, ttype), tid, key_length, tuple(others))


@dataclass(frozen=True)
class Proposal:
    """A Proposal substructure (RFC 7296 §3.3.1)."""

    num: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def encode(self, last: bool) -> bytes:
        tbytes = b"".join(t.encode(i == len(self.transforms) - 1) for i, t in enumerate(self.transforms))
        length = 8 + len(self.spi) + len(tbytes)
        return (
            struct.pack("!BBHBBBB", 0 if last else 2, 0, length, self.num, self.protocol, len(self.spi), len(self.transforms))
            + self.spi
            + tbytes
        )

    @classmethod
    def decode(cls, body: bytes) -> "Proposal":
        if len(body) < 8:
            raise IkeDecodeError("proposal too short")
        num, proto, spi_size, ntrans = struct.unpack_from("!BBBB", body, 4)
        pos = 8 + spi_size
        if pos > len(body):
            raise IkeDecodeError("proposal SPI truncated")
        spi = body[8:pos]
        transforms = []
        for i in range(ntrans):
            if pos + 8 > len(body):
                raise IkeDecodeError("transform header truncated")
            more, _, tlen = struct.unpack_from("!BBH", body, pos)
            if tlen < 8 or pos + tlen > len(body):
                raise IkeDecodeError("bad transform length")
            transforms.append(Transform.decode(body[pos : pos + tlen]))
            pos += tlen
            if (more == 0) != (i == ntrans - 1):
                raise IkeDecodeError("transform last/more flag inconsistent")
        if pos != len(body):
            raise IkeDecodeError("trailing bytes in proposal")
        return cls(num, _enum_or_int(ProtocolId, proto), spi, tuple(transforms))

    def transforms_of(self, ttype: int) -> list[Transform]:
        return [t for t in self.transforms if t.type == ttype]


# ---------------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------------


class Payload:
    """Base of all payloads: a generic payload header (RFC 7296 §3.2) plus a body."""

    PAYLOAD_TYPE: ClassVar[int] = 0

    @property
    def payload_type(self) -> int:
        return self.PAYLOAD_TYPE

    @property
    def critical(self) -> bool:
        return False

    def encode_body(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def decode_body(cls, body: bytes) -> "Payload":  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class SaPayload(Payload):
    """Security Association payload (RFC 7296 §3.3)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.SA
    proposals: tuple[Proposal, ...]

    def encode_body(self) -> bytes:
        return b"".join(p.encode(i == len(self.proposals) - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def decode_body(cls, body: bytes) -> "SaPayload":
        proposals = []
        pos = 0
        while pos < len(body):
            if pos + 8 > len(body):
                raise IkeDecodeError("proposal header truncated")
            more, _, plen = struct.unpack_from("!BBH", body, pos)
            if plen < 8 or pos + plen > len(body):
                raise IkeDecodeError("bad proposal length")
            proposals.append(Proposal.decode(body[pos : pos + plen]))
            pos += plen
            if more == 0 and pos != len(body):
                raise IkeDecodeError("data after last proposal")
            if more != 0 and pos == len(body):
                raise IkeDecodeError("last proposal flagged 'more'")
        if not proposals:
            raise IkeDecodeError("SA payload without proposals")
        return cls(tuple(proposals))


@dataclass(frozen=True)
class KePayload(Payload):
    """Key Exchange payload (RFC 7296 §3.4)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.KE
    group: int
    data: bytes

    def encode_body(self) -> bytes:
        return struct.pack("!HH", self.group, 0) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "KePayload":
        if len(body) < 4:
            raise IkeDecodeError("KE payload too short")
        (group,) = struct.unpack_from("!H", body)
        return cls(_enum_or_int(DhGroup, group), body[4:])


@dataclass(frozen=True)
class IdPayload(Payload):
    """Identification payload body (RFC 7296 §3.5): IDi and IDr subclasses fix the type."""

    id_type: int
    data: bytes

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", self.id_type) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "IdPayload":
        if len(body) < 4:
            raise IkeDecodeError("ID payload too short")
        return cls(_enum_or_int(IdType, body[0]), body[4:])

    def __str__(self) -> str:
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return self.data.decode("utf-8", "replace")
        if self.id_type == IdType.ID_IPV4_ADDR and len(self.data) == 4:
            return str(ipaddress.IPv4Address(self.data))
        if self.id_type == IdType.ID_IPV6_ADDR and len(self.data) == 16:
            return str(ipaddress.IPv6Address(self.data))
        return self.data.hex()


@dataclass(frozen=True)
class IdiPayload(IdPayload):
    """Identification - Initiator payload (RFC 7296 §3.5)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.IDi


@dataclass(frozen=True)
class IdrPayload(IdPayload):
    """Identification - Responder payload (RFC 7296 §3.5)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.IDr


@dataclass(frozen=True)
class CertPayload(Payload):
    """Certificate payload (RFC 7296 §3.6)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.CERT
    encoding: int
    data: bytes

    def encode_body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "CertPayload":
        if len(body) < 1:
            raise IkeDecodeError("CERT payload too short")
        return cls(_enum_or_int(CertEncoding, body[0]), body[1:])


@dataclass(frozen=True)
class CertReqPayload(Payload):
    """Certificate Request payload (RFC 7296 §3.7): data is a list of SHA-1 CA key hashes."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.CERTREQ
    encoding: int
    data: bytes

    def encode_body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "CertReqPayload":
        if len(body) < 1:
            raise IkeDecodeError("CERTREQ payload too short")
        return cls(_enum_or_int(CertEncoding, body[0]), body[1:])


@dataclass(frozen=True)
class AuthPayload(Payload):
    """Authentication payload (RFC 7296 §3.8; method 14 data format RFC 7427 §3)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.AUTH
    method: int
    data: bytes

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", self.method) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "AuthPayload":
        if len(body) < 4:
            raise IkeDecodeError("AUTH payload too short")
        return cls(_enum_or_int(AuthMethod, body[0]), body[4:])


@dataclass(frozen=True)
class NoncePayload(Payload):
    """Nonce payload (RFC 7296 §3.9)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.NONCE
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "NoncePayload":
        return cls(body)


@dataclass(frozen=True)
class NotifyPayload(Payload):
    """Notify payload (RFC 7296 §3.10)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.N
    type: int
    data: bytes = b""
    protocol: int = ProtocolId.NONE
    spi: bytes = b""

    def encode_body(self) -> bytes:
        return struct.pack("!BBH", self.protocol, len(self.spi), self.type) + self.spi + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "NotifyPayload":
        if len(body) < 4:
            raise IkeDecodeError("Notify payload too short")
        proto, spi_size, ntype = struct.unpack_from("!BBH", body)
        if 4 + spi_size > len(body):
            raise IkeDecodeError("Notify SPI truncated")
        return cls(
            _enum_or_int(NotifyType, ntype),
            body[4 + spi_size :],
            _enum_or_int(ProtocolId, proto),
            body[4 : 4 + spi_size],
        )


@dataclass(frozen=True)
class DeletePayload(Payload):
    """Delete payload (RFC 7296 §3.11)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.D
    protocol: int
    spis: tuple[bytes, ...] = ()

    def encode_body(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        if any(len(s) != size for s in self.spis):
            raise ValueError("all SPIs of a Delete payload must have the same size")
        return struct.pack("!BBH", self.protocol, size, len(self.spis)) + b"".join(self.spis)

    @classmethod
    def decode_body(cls, body: bytes) -> "DeletePayload":
        if len(body) < 4:
            raise IkeDecodeError("Delete payload too short")
        proto, size, num = struct.unpack_from("!BBH", body)
        if len(body) != 4 + size * num:
            raise IkeDecodeError("Delete payload length does not match SPI count")
        spis = tuple(body[4 + i * size : 4 + (i + 1) * size] for i in range(num)) if size else ()
        return cls(_enum_or_int(ProtocolId, proto), spis)


@dataclass(frozen=True)
class VendorIdPayload(Payload):
    """Vendor ID payload (RFC 7296 §3.12)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.V
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "VendorIdPayload":
        return cls(body)


@dataclass(frozen=True)
class TrafficSelector:
    """One Traffic Selector (RFC 7296 §3.13.1); protocol 0 and ports 0-65535 mean any."""

    start_addr: IPAddress
    end_addr: IPAddress
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @property
    def ts_type(self) -> int:
        return TsType.TS_IPV4_ADDR_RANGE if self.start_addr.version == 4 else TsType.TS_IPV6_ADDR_RANGE

    @classmethod
    def from_network(cls, net: str | ipaddress.IPv4Network | ipaddress.IPv6Network, ip_protocol: int = 0,
                     start_port: int = 0, end_port: int = 65535) -> "TrafficSelector":
        n = ipaddress.ip_network(net, strict=False)
        return cls(n.network_address, n.broadcast_address, ip_protocol, start_port, end_port)

    @classmethod
    def from_address(cls, addr: str | IPAddress, ip_protocol: int = 0, start_port: int = 0,
                     end_port: int = 65535) -> "TrafficSelector":
        a = ipaddress.ip_address(addr)
        return cls(a, a, ip_protocol, start_port, end_port)

    @classmethod
    def any(cls, version: int, ip_protocol: int = 0) -> "TrafficSelector":
        return cls.from_network("0.0.0.0/0" if version == 4 else "::/0", ip_protocol)

    def encode(self) -> bytes:
        if self.start_addr.version != self.end_addr.version:
            raise ValueError("traffic selector mixes address families")
        addrs = self.start_addr.packed + self.end_addr.packed
        return struct.pack("!BBHHH", self.ts_type, self.ip_protocol, 8 + len(addrs), self.start_port, self.end_port) + addrs

    def intersect(self, other: "TrafficSelector") -> "TrafficSelector | None":
        """Narrowing (RFC 7296 §2.9): the common subset, or None."""
        if self.start_addr.version != other.start_addr.version:
            return None
        if self.ip_protocol and other.ip_protocol and self.ip_protocol != other.ip_protocol:
            return None
        proto = self.ip_protocol or other.ip_protocol
        sp, ep = max(self.start_port, other.start_port), min(self.end_port, other.end_port)
        sa, ea = max(self.start_addr, other.start_addr), min(self.end_addr, other.end_addr)
        if sp > ep or sa > ea:
            return None
        return TrafficSelector(sa, ea, proto, sp, ep)

    def contains(self, other: "TrafficSelector") -> bool:
        i = self.intersect(other)
        return i is not None and i == other

    def __str__(self) -> str:
        if self.start_addr == self.end_addr:
            a = str(self.start_addr)
        else:
            nets = list(ipaddress.summarize_address_range(self.start_addr, self.end_addr))
            a = str(nets[0]) if len(nets) == 1 else f"{self.start_addr}..{self.end_addr}"
        ports = "" if (self.start_port, self.end_port) == (0, 65535) else f"[{self.start_port}-{self.end_port}]"
        return f"{a}/proto={self.ip_protocol}{ports}"


@dataclass(frozen=True)
class TsPayload(Payload):
    """Traffic Selector payload body (RFC 7296 §3.13)."""

    selectors: tuple[TrafficSelector, ...]

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", len(self.selectors)) + b"".join(ts.encode() for ts in self.selectors)

    @classmethod
    def decode_body(cls, body: bytes) -> "TsPayload":
        if len(body) < 4:
            raise IkeDecodeError("TS payload too short")
        num = body[0]
        pos = 4
        sels = []
        for _ in range(num):
            if pos + 8 > len(body):
                raise IkeDecodeError("traffic selector header truncated")
            ts_type, proto, slen, sport, eport = struct.unpack_from("!BBHHH", body, pos)
            if ts_type == TsType.TS_IPV4_ADDR_RANGE:
                alen = 4
            elif ts_type == TsType.TS_IPV6_ADDR_RANGE:
                alen = 16
            else:
                raise IkeDecodeError(f"unsupported traffic selector type {ts_type}")
            if slen != 8 + 2 * alen or pos + slen > len(body):
                raise IkeDecodeError("bad traffic selector length")
            a = body[pos + 8 : pos + 8 + alen]
            b = body[pos + 8 + alen : pos + slen]
            sels.append(TrafficSelector(ipaddress.ip_address(a), ipaddress.ip_address(b), proto, sport, eport))
            pos += slen
        if pos != len(body):
            raise IkeDecodeError("trailing bytes in TS payload")
        return cls(tuple(sels))


@dataclass(frozen=True)
class TsiPayload(TsPayload):
    """Traffic Selector - Initiator payload (RFC 7296 §3.13)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.TSi


@dataclass(frozen=True)
class TsrPayload(TsPayload):
    """Traffic Selector - Responder payload (RFC 7296 §3.13)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.TSr


@dataclass(frozen=True)
class EncryptedPayload(Payload):
    """Encrypted and Authenticated payload SK (RFC 7296 §3.14), still protected: IV|ct|ICV."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.SK
    first_payload: int
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "EncryptedPayload":  # first_payload set by the caller
        return cls(0, body)


@dataclass(frozen=True)
class EncryptedFragmentPayload(Payload):
    """Encrypted and Authenticated Fragment payload SKF (RFC 7383 §2.5)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.SKF
    first_payload: int
    fragment_number: int
    total_fragments: int
    data: bytes

    def encode_body(self) -> bytes:
        return struct.pack("!HH", self.fragment_number, self.total_fragments) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "EncryptedFragmentPayload":
        if len(body) < 4:
            raise IkeDecodeError("SKF payload too short")
        num, total = struct.unpack_from("!HH", body)
        if num == 0 or total == 0 or num > total:
            raise IkeDecodeError("bad SKF fragment numbering")
        return cls(0, num, total, body[4:])


@dataclass(frozen=True)
class CpAttribute:
    """A Configuration Attribute (RFC 7296 §3.15.1); value is the raw attribute value."""

    type: int
    value: bytes = b""

    def encode(self) -> bytes:
        return struct.pack("!HH", self.type & 0x7FFF, len(self.value)) + self.value


@dataclass(frozen=True)
class Mip6HomePrefix:
    """MIP6_HOME_PREFIX attribute value (RFC 5026 §4.2.1): lifetime, prefix, prefix length."""

    prefix: ipaddress.IPv6Network
    lifetime: int = 0

    def encode(self) -> bytes:
        return struct.pack("!I", self.lifetime) + self.prefix.network_address.packed + bytes([self.prefix.prefixlen])

    @classmethod
    def decode(cls, value: bytes) -> "Mip6HomePrefix":
        if len(value) != 21:
            raise IkeDecodeError("MIP6_HOME_PREFIX must be 21 octets")
        (lifetime,) = struct.unpack_from("!I", value)
        plen = value[20]
        if plen > 128:
            raise IkeDecodeError("bad MIP6_HOME_PREFIX prefix length")
        try:
            net = ipaddress.IPv6Network((ipaddress.IPv6Address(value[4:20]), plen), strict=False)
        except ValueError as e:  # pragma: no cover - defensive
            raise IkeDecodeError(str(e)) from e
        return cls(net, lifetime)


def cp_ip6_address(addr: ipaddress.IPv6Address, prefix_len: int = 64) -> CpAttribute:
    """INTERNAL_IP6_ADDRESS value: address + prefix length (RFC 7296 §3.15.1)."""
    return CpAttribute(CpAttributeType.INTERNAL_IP6_ADDRESS, addr.packed + bytes([prefix_len]))


def parse_cp_ip6_address(value: bytes) -> tuple[ipaddress.IPv6Address, int]:
    if len(value) != 17 or value[16] > 128:
        raise IkeDecodeError("INTERNAL_IP6_ADDRESS must be 17 octets")
    return ipaddress.IPv6Address(value[:16]), value[16]


def cp_home_agent_address(ha6: ipaddress.IPv6Address | None, ha4: ipaddress.IPv4Address | None = None) -> CpAttribute:
    """HOME_AGENT_ADDRESS value: IPv6 HA address [+ IPv4 HA address] (3GPP TS 24.302 §8.2.4.2)."""
    v6 = (ha6 or ipaddress.IPv6Address(0)).packed
    return CpAttribute(CpAttributeType.HOME_AGENT_ADDRESS, v6 + (ha4.packed if ha4 else b""))


def parse_cp_home_agent_address(value: bytes) -> tuple[ipaddress.IPv6Address | None, ipaddress.IPv4Address | None]:
    if len(value) not in (16, 20):
        raise IkeDecodeError("HOME_AGENT_ADDRESS must be 16 or 20 octets")
    v6 = ipaddress.IPv6Address(value[:16])
    v4 = ipaddress.IPv4Address(value[16:20]) if len(value) == 20 else None
    return (None if int(v6) == 0 else v6), v4


@dataclass(frozen=True)
class CpPayload(Payload):
    """Configuration payload (RFC 7296 §3.15; MIP6_HOME_PREFIX RFC 5026 §4.2.1)."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.CP
    cfg_type: int
    attributes: tuple[CpAttribute, ...] = ()

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", self.cfg_type) + b"".join(a.encode() for a in self.attributes)

    @classmethod
    def decode_body(cls, body: bytes) -> "CpPayload":
        if len(body) < 4:
            raise IkeDecodeError("CP payload too short")
        attrs = []
        pos = 4
        while pos < len(body):
            if pos + 4 > len(body):
                raise IkeDecodeError("CP attribute header truncated")
            atype, alen = struct.unpack_from("!HH", body, pos)
            if pos + 4 + alen > len(body):
                raise IkeDecodeError("CP attribute value truncated")
            attrs.append(CpAttribute(_enum_or_int(CpAttributeType, atype & 0x7FFF), body[pos + 4 : pos + 4 + alen]))
            pos += 4 + alen
        return cls(_enum_or_int(CfgType, body[0]), tuple(attrs))

    def get(self, atype: int) -> list[bytes]:
        return [a.value for a in self.attributes if a.type == atype]


@dataclass(frozen=True)
class EapPayload(Payload):
    """Extensible Authentication payload (RFC 7296 §3.16): the EAP message, opaque here."""

    PAYLOAD_TYPE: ClassVar[int] = PayloadType.EAP
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes) -> "EapPayload":
        if len(body) < 4:
            raise IkeDecodeError("EAP payload too short")
        return cls(body)


@dataclass(frozen=True)
class RawPayload(Payload):
    """An unrecognised non-critical payload, kept as raw bytes (RFC 7296 §2.5)."""

    type: int
    data: bytes
    is_critical: bool = False

    @property
    def payload_type(self) -> int:
        return self.type

    @property
    def critical(self) -> bool:
        return self.is_critical

    def encode_body(self) -> bytes:
        return self.data


PAYLOAD_CLASSES: dict[int, type[Payload]] = {
    c.PAYLOAD_TYPE: c
    for c in (
        SaPayload, KePayload, IdiPayload, IdrPayload, CertPayload, CertReqPayload, AuthPayload,
        NoncePayload, NotifyPayload, DeletePayload, VendorIdPayload, TsiPayload, TsrPayload,
        EncryptedPayload, CpPayload, EapPayload, EncryptedFragmentPayload,
    )
}


# ---------------------------------------------------------------------------------------------
# Header and message
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IkeHeader:
    """IKE header (RFC 7296 §3.1)."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int
    major: int = 2
    minor: int = 0

    @property
    def is_initiator(self) -> bool:
        return bool(self.flags & HeaderFlag.INITIATOR)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & HeaderFlag.RESPONSE)

    def encode(self) -> bytes:
        return struct.pack(
            "!8s8sBBBBII", self.spi_i, self.spi_r, self.next_payload, (self.major << 4) | self.minor,
            self.exchange, self.flags, self.message_id, self.length,
        )


def parse_header(data: bytes) -> IkeHeader:
    if len(data) < IKE_HEADER_LEN:
        raise IkeDecodeError("datagram shorter than an IKE header")
    spi_i, spi_r, np_, ver, exch, flags, mid, length = struct.unpack_from("!8s8sBBBBII", data)
    if ver >> 4 != 2:
        raise IkeDecodeError(f"unsupported IKE major version {ver >> 4}")
    if length != len(data):
        raise IkeDecodeError(f"IKE length {length} != datagram length {len(data)}")
    return IkeHeader(spi_i, spi_r, np_, _enum_or_int(ExchangeType, exch), flags, mid, length, ver >> 4, ver & 15)


@dataclass
class IkeMessage:
    """An IKEv2 message (RFC 7296 §3.1): header fields plus the payload chain."""

    exchange: int
    message_id: int
    spi_i: bytes
    spi_r: bytes = bytes(8)
    is_initiator: bool = True
    is_response: bool = False
    payloads: list[Payload] = field(default_factory=list)
    version_flag: bool = False
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def flags(self) -> int:
        f = 0
        if self.is_initiator:
            f |= HeaderFlag.INITIATOR
        if self.is_response:
            f |= HeaderFlag.RESPONSE
        if self.version_flag:
            f |= HeaderFlag.VERSION
        return f

    def header(self, first_payload: int, length: int) -> IkeHeader:
        return IkeHeader(self.spi_i, self.spi_r, first_payload, self.exchange, self.flags, self.message_id, length)

    def get(self, cls: type, default=None):
        for p in self.payloads:
            if isinstance(p, cls):
                return p
        return default

    def get_all(self, cls: type) -> list:
        return [p for p in self.payloads if isinstance(p, cls)]

    def notify(self, ntype: int) -> NotifyPayload | None:
        for p in self.payloads:
            if isinstance(p, NotifyPayload) and p.type == ntype:
                return p
        return None

    def notifies(self, ntype: int) -> list[NotifyPayload]:
        return [p for p in self.payloads if isinstance(p, NotifyPayload) and p.type == ntype]


def encode_payloads(payloads: Sequence[Payload], last_next: int = 0) -> tuple[int, bytes]:
    """Encode a payload chain; returns (type of the first payload, bytes). Generic headers per §3.2."""
    out = []
    for i, p in enumerate(payloads):
        if i + 1 < len(payloads):
            nxt = payloads[i + 1].payload_type
        else:
            nxt = last_next
        if isinstance(p, (EncryptedPayload, EncryptedFragmentPayload)):
            if i + 1 != len(payloads):
                raise ValueError("SK/SKF must be the last payload")
            nxt = p.first_payload
        body = p.encode_body()
        if len(body) + 4 > 0xFFFF:
            raise ValueError("payload too long")
        out.append(struct.pack("!BBH", nxt, 0x80 if p.critical else 0, len(body) + 4) + body)
    return (payloads[0].payload_type if payloads else 0), b"".join(out)


def decode_payloads(first: int, data: bytes, allow_encrypted: bool = True) -> list[Payload]:
    """Decode a payload chain starting with type ``first`` (RFC 7296 §3.2)."""
    payloads: list[Payload] = []
    nxt = first
    pos = 0
    while nxt != PayloadType.NONE:
        if pos + 4 > len(data):
            raise IkeDecodeError("payload header truncated")
        this_type = nxt
        nxt, flags, plen = struct.unpack_from("!BBH", data, pos)
        if plen < 4 or pos + plen > len(data):
            raise IkeDecodeError(f"bad payload length {plen} for payload type {this_type}")
        body = data[pos + 4 : pos + plen]
        cls = PAYLOAD_CLASSES.get(this_type)
        if cls is None:
            if flags & 0x80:
                raise UnsupportedCriticalPayload(this_type)
            payloads.append(RawPayload(this_type, body, False))
        elif cls in (EncryptedPayload, EncryptedFragmentPayload):
            if not allow_encrypted:
                raise IkeDecodeError("nested SK/SKF payload")
            if pos + plen != len(data):
                raise IkeDecodeError("SK/SKF payload is not the last payload")
            p = cls.decode_body(body)
            payloads.append(_replace_first(p, nxt))
            return payloads
        else:
            payloads.append(cls.decode_body(body))
        pos += plen
    if pos != len(data):
        raise IkeDecodeError("trailing bytes after last payload")
    return payloads


def _replace_first(p: Payload, first: int) -> Payload:
    from dataclasses import replace

    return replace(p, first_payload=_enum_or_int(PayloadType, first))


def parse_message(data: bytes) -> IkeMessage:
    """Parse a whole IKE datagram (without the RFC 3948 non-ESP marker)."""
    data = bytes(data)
    h = parse_header(data)
    try:
        payloads = decode_payloads(h.next_payload, data[IKE_HEADER_LEN:])
    except IkeDecodeError:
        raise
    except (ValueError, IndexError, struct.error) as e:  # defensive: never leak other errors
        raise IkeDecodeError(str(e)) from e
    return IkeMessage(
        exchange=h.exchange, message_id=h.message_id, spi_i=h.spi_i, spi_r=h.spi_r,
        is_initiator=h.is_initiator, is_response=h.is_response, payloads=payloads,
        version_flag=bool(h.flags & HeaderFlag.VERSION), raw=data,
    )


def serialize_message(msg: IkeMessage) -> bytes:
    """Serialize a message; an EncryptedPayload, if any, must already hold its protected data."""
    first, body = encode_payloads(msg.payloads)
    return msg.header(first, IKE_HEADER_LEN + len(body)).encode() + body


# ---------------------------------------------------------------------------------------------
# Small helpers for notify data
# ---------------------------------------------------------------------------------------------


def notify_invalid_ke(group: int) -> NotifyPayload:
    return NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", group))


def parse_invalid_ke(n: NotifyPayload) -> int:
    if len(n.data) != 2:
        raise IkeDecodeError("INVALID_KE_PAYLOAD data must be 2 octets")
    return struct.unpack("!H", n.data)[0]


def notify_signature_hash_algorithms(algs: Sequence[int]) -> NotifyPayload:
    return NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, b"".join(struct.pack("!H", a) for a in algs))


def parse_signature_hash_algorithms(n: NotifyPayload) -> list[int]:
    if len(n.data) % 2:
        raise IkeDecodeError("SIGNATURE_HASH_ALGORITHMS data must be a list of 2-octet ids")
    return [_enum_or_int(HashAlgorithm, v) for (v,) in struct.iter_unpack("!H", n.data)]
