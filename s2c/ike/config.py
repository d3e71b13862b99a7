"""Configuration of the IKEv2 cores: proposals, identities, credentials, CHILD SA policy, timers.

Plain frozen dataclasses; the daemons build them from their own configuration.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Callable, Union

from cryptography import x509

from s2c.codec.ikev2 import (
    AuthMethod, CpAttributeType, DhGroup, EncrId, EsnId, HashAlgorithm, IdType, IntegId, PrfId, Proposal, ProtocolId,
    Transform, TransformType, TrafficSelector,
)
from s2c.ike.events import ChildMode


@dataclass(frozen=True)
class Identity:
    """An IKE identity (RFC 7296 §3.5)."""

    id_type: int
    data: bytes

    @classmethod
    def fqdn(cls, name: str) -> "Identity":
        return cls(IdType.ID_FQDN, name.encode())

    @classmethod
    def rfc822(cls, nai: str) -> "Identity":
        return cls(IdType.ID_RFC822_ADDR, nai.encode())

    @classmethod
    def ip(cls, addr: str) -> "Identity":
        a = ipaddress.ip_address(addr)
        return cls(IdType.ID_IPV4_ADDR if a.version == 4 else IdType.ID_IPV6_ADDR, a.packed)

    @classmethod
    def key_id(cls, key: bytes) -> "Identity":
        return cls(IdType.ID_KEY_ID, key)

    def __str__(self) -> str:
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return self.data.decode("utf-8", "replace")
        if self.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            try:
                return str(ipaddress.ip_address(self.data))
            except ValueError:
                pass
        return self.data.hex()


@dataclass(frozen=True)
class IkeProposal:
    """One IKE SA proposal: ENCR (+ key length), PRF, INTEG (NONE for AEAD), DH groups in preference order."""

    encr: EncrId = EncrId.ENCR_AES_CBC
    key_bits: int | None = 128
    prf: PrfId = PrfId.PRF_HMAC_SHA2_256
    integ: IntegId = IntegId.AUTH_HMAC_SHA2_256_128
    dh_groups: tuple[DhGroup, ...] = (DhGroup.ECP_256,)

    def to_proposal(self, num: int, spi: bytes = b"") -> Proposal:
        ts = [Transform(TransformType.ENCR, self.encr, self.key_bits),
              Transform(TransformType.PRF, self.prf)]
        if self.integ != IntegId.NONE:
            ts.append(Transform(TransformType.INTEG, self.integ))
        ts += [Transform(TransformType.DH, g) for g in self.dh_groups]
        return Proposal(num, ProtocolId.IKE, spi, tuple(ts))


@dataclass(frozen=True)
class EspProposal:
    """One ESP proposal for CHILD SAs; ``dh_groups`` non-empty asks for PFS in CREATE_CHILD_SA."""

    encr: EncrId = EncrId.ENCR_AES_GCM_16
    key_bits: int | None = 128
    integ: IntegId = IntegId.NONE
    esn: EsnId = EsnId.NO_ESN
    dh_groups: tuple[DhGroup, ...] = ()

    def to_proposal(self, num: int, spi: bytes, with_dh: bool) -> Proposal:
        ts = [Transform(TransformType.ENCR, self.encr, self.key_bits)]
        if self.integ != IntegId.NONE:
            ts.append(Transform(TransformType.INTEG, self.integ))
        if with_dh:
            ts += [Transform(TransformType.DH, g) for g in self.dh_groups]
        ts.append(Transform(TransformType.ESN, self.esn))
        return Proposal(num, ProtocolId.ESP, spi, tuple(ts))


@dataclass(frozen=True)
class PskAuth:
    """Authenticate with a pre-shared key (AUTH method 2)."""

    secret: bytes


@dataclass(frozen=True)
class CertAuth:
    """Authenticate with a certificate: method 1 (RSA PKCS#1 v1.5 SHA-1) or 14 (RFC 7427)."""

    private_key: object  # cryptography RSAPrivateKey or EllipticCurvePrivateKey
    certificate: x509.Certificate
    method: AuthMethod = AuthMethod.DIGITAL_SIGNATURE
    chain: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class EapAuth:
    """Initiator only: authenticate with EAP (RFC 7296 §2.16); the MSK comes from the EAP peer."""


Credentials = Union[PskAuth, CertAuth, EapAuth]


@dataclass(frozen=True)
class DynamicTs:
    """A traffic selector resolved when the SA is set up: the assigned address (CP) or the IKE address."""

    version: int = 6
    ip_protocol: int = 0


TsSpec = Union[TrafficSelector, DynamicTs]


@dataclass(frozen=True)
class ChildConfig:
    """CHILD SA policy. For DSMIPv6 (RFC 4877 §4.2): transport mode, MH (135) between HoA and HA."""

    mode: ChildMode = ChildMode.TRANSPORT
    local_ts: tuple[TsSpec, ...] = (DynamicTs(6, 135),)
    remote_ts: tuple[TsSpec, ...] = (DynamicTs(6, 135),)
    esp_proposals: tuple[EspProposal, ...] = (EspProposal(),)


@dataclass(frozen=True)
class AddressRequest:
    """What an initiator asked for in CP(CFG_REQUEST), passed to the responder's allocator."""

    sa_id: int
    peer_id: str
    attributes: tuple[int, ...]
    requested_ip6: ipaddress.IPv6Address | None = None
    requested_ip4: ipaddress.IPv4Address | None = None


@dataclass(frozen=True)
class CpAssignment:
    """What the responder's allocator hands out (becomes CP(CFG_REPLY))."""

    home_address: ipaddress.IPv6Address | None = None
    home_prefix: ipaddress.IPv6Network | None = None
    prefix_lifetime: int = 0xFFFFFFFF
    ha_address: ipaddress.IPv6Address | None = None
    ha_address4: ipaddress.IPv4Address | None = None
    ipv4: ipaddress.IPv4Address | None = None
    ipv4_netmask: ipaddress.IPv4Address | None = None
    dns6: tuple[ipaddress.IPv6Address, ...] = ()
    dns4: tuple[ipaddress.IPv4Address, ...] = ()


Allocator = Callable[[AddressRequest], Union[CpAssignment, None]]

# CFG_REQUEST for a DSMIPv6 UE (RFC 5026 §4.2.1, TS 24.302 §8.2.4)
DSMIP6_CP_REQUEST = (
    CpAttributeType.INTERNAL_IP6_ADDRESS, CpAttributeType.MIP6_HOME_PREFIX, CpAttributeType.HOME_AGENT_ADDRESS,
)


@dataclass(frozen=True)
class Timers:
    """Timing knobs (seconds). Retransmission per RFC 7296 §2.1: timeout * factor**n, ``tries`` sends."""

    retransmit_timeout: float = 1.0
    retransmit_factor: float = 2.0
    retransmit_tries: int = 5
    dpd_interval: float | None = None
    ike_rekey_time: float | None = None
    child_rekey_time: float | None = None
    child_lifetime: float | None = None    # hard limit: the CHILD SA is deleted (rekey before it)
    ike_lifetime: float | None = None      # hard limit: the IKE SA is deleted
    half_open_timeout: float = 30.0
    cookie_secret_lifetime: float = 300.0


@dataclass(frozen=True)
class IkeConfig:
    """Everything one IKEv2 core needs (both roles; role-specific fields say so)."""

    local_id: Identity
    auth: Credentials
    remote_id: Identity | None = None          # initiator: sent as IDr; both: expected peer id if set
    psk_lookup: Callable[[Identity], bytes | None] | None = None  # PSK per peer id (responder)
    trusted_certs: tuple[x509.Certificate, ...] = ()  # CAs or pinned peer certificates
    check_id_in_cert: bool = True
    ike_proposals: tuple[IkeProposal, ...] = (IkeProposal(),)
    child: ChildConfig | None = field(default_factory=ChildConfig)  # None: childless IKE_AUTH
    extra_children: tuple[ChildConfig, ...] = ()  # responder: more CHILD SA policies (e.g. tunnel for user traffic)
    cp_request: tuple[int, ...] = ()           # initiator: CFG_REQUEST attribute types
    mobike: bool = True
    initial_contact: bool = True
    eap_allowed: bool = True                   # responder: accept initiators that want EAP
    signature_hash_algorithms: tuple[HashAlgorithm, ...] = (
        HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512)
    nonce_len: int = 32
    timers: Timers = field(default_factory=Timers)
    vendor_ids: tuple[bytes, ...] = ()
