"""Events emitted by the IKEv2 cores (past tense, frozen). Every event carries ``sa_id``, the stable
handle of an IKE session inside one core (it survives IKE SA rekeying, when SPIs change)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from s2c.codec.ikev2 import TrafficSelector
from s2c.crypto.ike_suites import EspKeys, EspSuite, IkeSuite

Addr = tuple[str, int]


class ChildMode(str, Enum):
    TRANSPORT = "transport"
    TUNNEL = "tunnel"


@dataclass(frozen=True)
class IkeEvent:
    sa_id: int


@dataclass(frozen=True)
class IkeSaEstablished(IkeEvent):
    """IKE_AUTH finished and both peers authenticated (RFC 7296 §1.2)."""

    spi_i: bytes
    spi_r: bytes
    local_id: str
    remote_id: str
    suite: IkeSuite
    local_addr: Addr
    remote_addr: Addr
    nat_detected: bool
    mobike: bool
    eap: bool


@dataclass(frozen=True)
class ChildSaEstablished(IkeEvent):
    """A CHILD SA pair exists (RFC 7296 §2.17): everything the ESP layer needs.

    ``spi_in``/``keys_in`` protect packets we receive, ``spi_out``/``keys_out`` packets we send.
    ``ts_i``/``ts_r`` are as negotiated in the creating exchange; ``ts_local``/``ts_remote`` are the
    same selectors seen from this node.
    """

    spi_in: int
    spi_out: int
    mode: ChildMode
    protocol: str
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    ts_local: tuple[TrafficSelector, ...]
    ts_remote: tuple[TrafficSelector, ...]
    suite: EspSuite
    keys_in: EspKeys
    keys_out: EspKeys
    nat_t: bool
    local_addr: Addr
    remote_addr: Addr


@dataclass(frozen=True)
class ChildSaRekeyed(IkeEvent):
    """A CHILD SA was rekeyed (RFC 7296 §2.8): ``new`` replaces the old SPIs (deleted next)."""

    old_spi_in: int
    old_spi_out: int
    new: ChildSaEstablished


@dataclass(frozen=True)
class ChildSaDeleted(IkeEvent):
    """A CHILD SA pair is gone (RFC 7296 §1.4.1)."""

    spi_in: int
    spi_out: int


@dataclass(frozen=True)
class ChildSaFailed(IkeEvent):
    """The peer refused a CHILD SA (e.g. NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE, INTERNAL_ADDRESS_FAILURE)."""

    notify: int
    reason: str


@dataclass(frozen=True)
class IkeSaRekeyed(IkeEvent):
    """The IKE SA was rekeyed (RFC 7296 §2.18); CHILD SAs moved to the new SPIs."""

    old_spi_i: bytes
    old_spi_r: bytes
    spi_i: bytes
    spi_r: bytes


@dataclass(frozen=True)
class IkeSaDeleted(IkeEvent):
    """The IKE SA (and so its CHILD SAs) was deleted by us or by the peer."""

    reason: str


@dataclass(frozen=True)
class IkeSaFailed(IkeEvent):
    """IKE SA setup failed on an error notification or a protocol error (RFC 7296 §2.21)."""

    notify: int | None
    reason: str


@dataclass(frozen=True)
class AuthenticationFailed(IkeEvent):
    """Authentication failed (RFC 7296 §2.21.2); ``by_peer`` when the peer rejected us."""

    reason: str
    by_peer: bool
    eap: bytes | None = None


@dataclass(frozen=True)
class PeerDead(IkeEvent):
    """A request was retransmitted until giving up (RFC 7296 §2.4): the IKE SA is gone."""

    exchange: int


@dataclass(frozen=True)
class CpAssigned(IkeEvent):
    """CFG_REPLY contents (RFC 7296 §3.15, RFC 5026 §4.2.1, TS 24.302 HOME_AGENT_ADDRESS)."""

    home_address: ipaddress.IPv6Address | None
    home_prefix: ipaddress.IPv6Network | None
    ha_address: ipaddress.IPv6Address | None
    ipv4: ipaddress.IPv4Address | None
    ha_address4: ipaddress.IPv4Address | None = None
    dns: tuple = ()


@dataclass(frozen=True)
class IkeSaAddressesUpdated(IkeEvent):
    """MOBIKE moved the IKE SA and its CHILD SAs to new addresses (RFC 4555 §3.5)."""

    local_addr: Addr
    remote_addr: Addr
    nat_detected: bool


@dataclass(frozen=True)
class EapRequestReceived(IkeEvent):
    """Initiator: an EAP message from the server arrived (RFC 7296 §2.16).

    Answer with ``send_eap_response``; on EAP Success give the MSK with ``provide_eap_result``."""

    eap: bytes


@dataclass(frozen=True)
class EapAuthenticationRequested(IkeEvent):
    """Responder: an initiator asked for EAP (no AUTH in IKE_AUTH); call ``send_eap_request``."""

    peer_id: str
    peer_id_type: int
    peer_id_data: bytes


@dataclass(frozen=True)
class EapResponseReceived(IkeEvent):
    """Responder: an EAP response from the initiator arrived; answer with ``send_eap_request``,
    ``eap_success`` or ``eap_failure``."""

    eap: bytes
