"""One IKE session (an IKE SA, its rekeyed successors and its CHILD SAs) as a sans-IO state machine.

RFC 7296 (IKEv2) with RFC 4555 (MOBIKE), RFC 5026/TS 24.302 (CP for DSMIPv6), RFC 4877 (transport-mode
MH CHILD SA), RFC 7427 (signatures). Used through the role classes :class:`s2c.ike.IkeInitiator`
and :class:`s2c.ike.IkeResponder`; nothing here opens sockets, reads clocks or draws randomness
except through the injected ``rng``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from s2c.codec import ikev2 as c
from s2c.codec.ikev2 import (
    AuthMethod, CfgType, CpAttribute, CpAttributeType, ExchangeType, IkeDecodeError, IkeHeader, IkeMessage,
    NotifyPayload, NotifyType, ProtocolId, TrafficSelector, TransformType,
)
from s2c.crypto import dh as dhmod
from s2c.crypto.ike_suites import (
    AEAD_ENCR, EspSuite, IkeKeys, IkeSuite, IntegrityError, child_keymat, derive_ike_keys, rekey_skeyseed, skeyseed,
    wireshark_decryption_line,
)
from s2c.crypto.prf import UnsupportedAlgorithm
from s2c.ike import auth as authmod
from s2c.ike import events as ev
from s2c.ike.config import (
    AddressRequest, Allocator, CertAuth, ChildConfig, CpAssignment, DynamicTs, EapAuth, EspProposal, IkeConfig,
    IkeProposal, PskAuth,
)
from s2c.ike.events import ChildMode
from s2c.ike.protect import decrypt_message, encrypt_message

Addr = tuple[str, int]
Rng = Callable[[int], bytes]
IKE_PORT = 500
NATT_PORT = 4500


class ProtocolError(Exception):
    """Input that is illegal for the current state. ``notify`` is the error to answer with, if any."""

    def __init__(self, reason: str, notify: int | None = None, data: bytes = b"") -> None:
        super().__init__(reason)
        self.notify = notify
        self.data = data


class SaState(str, Enum):
    IDLE = "idle"
    INIT_SENT = "init-sent"                  # initiator: IKE_SA_INIT request out
    AUTH_SENT = "auth-sent"                  # initiator: first IKE_AUTH out
    EAP_WAIT_PEER = "eap-wait-peer"          # initiator: waiting for send_eap_response/provide_eap_result
    EAP_SENT = "eap-sent"                    # initiator: IKE_AUTH with EAP out
    AUTH_FINAL_SENT = "auth-final-sent"      # initiator: MSK-keyed AUTH out
    INIT_DONE = "init-done"                  # responder: IKE_SA_INIT answered
    EAP_WAIT_SERVER = "eap-wait-server"      # responder: waiting for send_eap_request/eap_success/eap_failure
    EAP_IN_PROGRESS = "eap-in-progress"      # responder: EAP request sent, waiting for the next IKE_AUTH
    EAP_DONE = "eap-done"                    # responder: EAP Success sent, waiting for the final AUTH
    ESTABLISHED = "established"
    CLOSED = "closed"


# Which exchanges a peer may *request* in each state (the responder-side transition table).
REQUEST_TABLE: dict[SaState, frozenset[int]] = {
    SaState.INIT_DONE: frozenset({ExchangeType.IKE_AUTH}),
    SaState.EAP_IN_PROGRESS: frozenset({ExchangeType.IKE_AUTH}),
    SaState.EAP_DONE: frozenset({ExchangeType.IKE_AUTH}),
    SaState.ESTABLISHED: frozenset({ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA}),
    SaState.AUTH_SENT: frozenset(),
    SaState.EAP_WAIT_PEER: frozenset({ExchangeType.INFORMATIONAL}),
    SaState.EAP_SENT: frozenset({ExchangeType.INFORMATIONAL}),
    SaState.AUTH_FINAL_SENT: frozenset({ExchangeType.INFORMATIONAL}),
}


@dataclass
class _Ctx:
    """Per-IKE-SA protocol state: SPIs, keys, message-ID windows (size 1), outstanding request."""

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    suite: IkeSuite | None = None
    _keys: IkeKeys | None = None
    my_mid: int = 0
    peer_mid: int = 0
    pending: "_Pending | None" = None
    last_response: tuple[int, bytes] | None = None
    _derive: "Callable[[], IkeKeys] | None" = field(default=None, repr=False)

    @property
    def keys(self) -> IkeKeys | None:
        """SK_* (RFC 7296 §2.14); a deferred derivation (:meth:`defer_keys`) runs on first use."""
        if self._derive is not None:
            derive, self._derive = self._derive, None
            self._keys = derive()
        return self._keys

    @keys.setter
    def keys(self, value: IkeKeys | None) -> None:
        self._keys, self._derive = value, None

    def defer_keys(self, derive: "Callable[[], IkeKeys]") -> None:
        self._keys, self._derive = None, derive

    @property
    def keys_pending(self) -> bool:
        return self._derive is not None

    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r


@dataclass
class _Pending:
    exchange: int
    mid: int
    data: bytes
    kind: str
    deadline: float
    sent: int = 1
    info: dict = field(default_factory=dict)


@dataclass
class ChildSa:
    """A CHILD SA pair as kept by the core."""

    spi_in: int
    spi_out: int
    mode: ChildMode
    suite: EspSuite
    keys_in: object
    keys_out: object
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    ts_local: tuple[TrafficSelector, ...]
    ts_remote: tuple[TrafficSelector, ...]
    created: float
    rekeyed: bool = False
    deleting: bool = False
    replaced: bool = False                     # ChildSaRekeyed already emitted for this SA
    policy: ChildConfig | None = None          # the policy it was negotiated under (reused for rekeys)
    rekey_exchanges: list = field(default_factory=list)  # (Ni, Nr, new child, initiated by us)


@dataclass
class _ChildOffer:
    spi_in: int
    proposals: tuple[c.Proposal, ...]
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    transport: bool
    nonce: bytes = b""
    dh: dhmod.DhPrivateKey | None = None
    rekey_of: ChildSa | None = None
    policy: ChildConfig | None = None


def _u32(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _nat_hash(spi_i: bytes, spi_r: bytes, addr: Addr) -> bytes:
    """NAT_DETECTION_*_IP data = SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 §2.23)."""
    ip = ipaddress.ip_address(addr[0]).packed
    return hashlib.sha1(spi_i + spi_r + ip + struct.pack("!H", addr[1])).digest()


def _spi_hash_of_ca(cert: x509.Certificate) -> bytes:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).digest()


def select_ike_proposal(offered: c.SaPayload, mine: tuple[IkeProposal, ...], ke_group: int | None
                        ) -> tuple[c.Proposal, IkeSuite] | None:
    """Pick the first offered IKE proposal we accept (RFC 7296 §2.7); prefer the KE's group."""
    for p in offered.proposals:
        if p.protocol != ProtocolId.IKE:
            continue
        encrs = [(t.id, t.key_length) for t in p.transforms_of(TransformType.ENCR)]
        prfs = [t.id for t in p.transforms_of(TransformType.PRF)]
        integs = [t.id for t in p.transforms_of(TransformType.INTEG)]
        dhs = [t.id for t in p.transforms_of(TransformType.DH)]
        for mp in mine:
            if (mp.encr, mp.key_bits) not in encrs or mp.prf not in prfs:
                continue
            aead = mp.encr in AEAD_ENCR
            if aead:
                if any(i != c.IntegId.NONE for i in integs):
                    continue
            elif mp.integ not in integs:
                continue
            common = [g for g in mp.dh_groups if g in dhs]
            if not common:
                continue
            group = ke_group if ke_group in common else common[0]
            ts = [c.Transform(TransformType.ENCR, mp.encr, mp.key_bits), c.Transform(TransformType.PRF, mp.prf)]
            if not aead:
                ts.append(c.Transform(TransformType.INTEG, mp.integ))
            ts.append(c.Transform(TransformType.DH, group))
            suite = IkeSuite(mp.encr, mp.key_bits, mp.prf, c.IntegId.NONE if aead else mp.integ, c.DhGroup(group))
            return c.Proposal(p.num, ProtocolId.IKE, b"", tuple(ts)), suite
    return None


def select_esp_proposal(offered: c.SaPayload, mine: tuple[EspProposal, ...], ke_group: int | None
                        ) -> tuple[c.Proposal, EspSuite] | None:
    """Pick the first offered ESP proposal we accept; DH only when the request carries KE (PFS)."""
    for p in offered.proposals:
        if p.protocol != ProtocolId.ESP or len(p.spi) != 4:
            continue
        encrs = [(t.id, t.key_length) for t in p.transforms_of(TransformType.ENCR)]
        integs = [t.id for t in p.transforms_of(TransformType.INTEG)] or [c.IntegId.NONE]
        esns = [t.id for t in p.transforms_of(TransformType.ESN)] or [c.EsnId.NO_ESN]
        dhs = [t.id for t in p.transforms_of(TransformType.DH) if t.id != 0]
        for mp in mine:
            if (mp.encr, mp.key_bits) not in encrs or mp.esn not in esns:
                continue
            aead = mp.encr in AEAD_ENCR
            if aead and any(i != c.IntegId.NONE for i in integs):
                continue
            if not aead and mp.integ not in integs:
                continue
            group = c.DhGroup.NONE
            if ke_group is not None:
                if ke_group not in dhs or (mp.dh_groups and ke_group not in mp.dh_groups):
                    continue
                group = ke_group
            ts = [c.Transform(TransformType.ENCR, mp.encr, mp.key_bits)]
            if not aead:
                ts.append(c.Transform(TransformType.INTEG, mp.integ))
            if group:
                ts.append(c.Transform(TransformType.DH, group))
            ts.append(c.Transform(TransformType.ESN, mp.esn))
            return c.Proposal(p.num, ProtocolId.ESP, b"", tuple(ts)), EspSuite(
                mp.encr, mp.key_bits, c.IntegId.NONE if aead else mp.integ, mp.esn, c.DhGroup(group))
    return None


def _suite_from_ike_proposal(p: c.Proposal, offered: tuple[c.Proposal, ...]) -> IkeSuite:
    """Check a responder's chosen IKE proposal against what we offered (RFC 7296 §3.3.6)."""
    def one(tt: int):
        ts = p.transforms_of(tt)
        if len(ts) > 1:
            raise ProtocolError("chosen proposal has several transforms of one type", NotifyType.INVALID_SYNTAX)
        return ts[0] if ts else None

    e, f, i, d = one(TransformType.ENCR), one(TransformType.PRF), one(TransformType.INTEG), one(TransformType.DH)
    if e is None or f is None or d is None:
        raise ProtocolError("chosen IKE proposal incomplete", NotifyType.INVALID_SYNTAX)
    for op in offered:
        if op.num != p.num:
            continue
        got = set((t.type, t.id, t.key_length) for t in p.transforms)
        have = set((t.type, t.id, t.key_length) for t in op.transforms)
        if got <= have:
            integ = c.IntegId(i.id) if i is not None else c.IntegId.NONE
            return IkeSuite(c.EncrId(e.id), e.key_length, c.PrfId(f.id), integ, c.DhGroup(d.id))
    raise ProtocolError("responder chose a proposal we did not offer", NotifyType.NO_PROPOSAL_CHOSEN)


def _suite_from_esp_proposal(p: c.Proposal, offered: tuple[c.Proposal, ...]) -> EspSuite:
    for op in offered:
        if op.num != p.num:
            continue
        got = set((t.type, t.id, t.key_length) for t in p.transforms)
        have = set((t.type, t.id, t.key_length) for t in op.transforms)
        if not got <= have:
            continue
        e = p.transforms_of(TransformType.ENCR)
        if len(e) != 1:
            break
        i = p.transforms_of(TransformType.INTEG)
        s = p.transforms_of(TransformType.ESN)
        d = p.transforms_of(TransformType.DH)
        return EspSuite(c.EncrId(e[0].id), e[0].key_length, c.IntegId(i[0].id) if i else c.IntegId.NONE,
                        c.EsnId(s[0].id) if s else c.EsnId.NO_ESN, c.DhGroup(d[0].id) if d else c.DhGroup.NONE)
    raise ProtocolError("responder chose an ESP proposal we did not offer", NotifyType.NO_PROPOSAL_CHOSEN)


class IkeSa:
    """One IKE session. Role classes feed it parsed headers and commands; it appends datagrams to
    ``out`` and events to ``events``."""

    def __init__(self, config: IkeConfig, *, is_initiator: bool, sa_id: int, rng: Rng, local_addr: Addr,
                 remote_addr: Addr, events: deque, allocator: Allocator | None = None,
                 on_spi: Callable[["IkeSa", bytes, bool], None] | None = None,
                 on_initial_contact: Callable[["IkeSa"], None] | None = None) -> None:
        self.config = config
        self.is_ue = is_initiator            # original role (MOBIKE initiator, CP requester)
        self.sa_id = sa_id
        self.rng = rng
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.events = events
        self.allocator = allocator
        self._on_spi = on_spi or (lambda sa, spi, add: None)
        self.out: list[tuple[bytes, Addr]] = []
        self.state = SaState.IDLE
        self.ctx = _Ctx(self._new_spi8() if is_initiator else bytes(8), bytes(8), is_initiator)
        self.old_ctx: _Ctx | None = None
        self.children: list[ChildSa] = []
        self.nat_detected = False
        self.natt = False
        self.mobike = False
        self.peer_id: c.IdPayload | None = None
        self.cp: ev.CpAssigned | None = None
        self.assignment: CpAssignment | None = None
        self.created = 0.0
        self.established_at: float | None = None
        self.last_rx = 0.0
        self._queue: deque[Callable[[float], None]] = deque()
        self._init_req = b""
        self._init_resp = b""
        self._ni = b""
        self._nr = b""
        self._dh: dhmod.DhPrivateKey | None = None
        self._cookie = b""
        self._ke_retries = 0
        self._cookie_retries = 0
        self._peer_hashes: list[int] = []
        self._child_offer: _ChildOffer | None = None
        self._auth_req_payloads: list = []
        self._idi: c.IdiPayload | None = None
        self._idr: c.IdrPayload | None = None
        self._msk: bytes | None = None
        self._msk_known = False
        self._eap_success_seen = False
        self._eap_mode = False
        self._deferred: tuple[int, Addr] | None = None  # responder: (mid, addr) of an unanswered IKE_AUTH
        self._prepared_auth: list | None = None  # responder, EAP: IDr + CERT + AUTH made ahead (prepare_auth)
        self._ike_rekey_at: float | None = None
        self._ike_created: float | None = None
        self._expiring = False
        self.initial_contact = False
        self._on_initial_contact = on_initial_contact or (lambda sa: None)
        self.drops: deque[str] = deque(maxlen=64)
        self.retransmissions = 0

    # ------------------------------------------------------------------ helpers

    def _new_spi8(self) -> bytes:
        while True:
            s = self.rng(8)
            if s != bytes(8):
                return s

    def _new_spi4(self) -> int:
        while True:
            s = _u32(self.rng(4))
            if s >= 256 and all(ch.spi_in != s for ch in self.children):
                return s

    def _emit(self, e: ev.IkeEvent) -> None:
        self.events.append(e)

    def _send_raw(self, data: bytes, addr: Addr) -> None:
        """Queue a datagram; after NAT-T took over (port 4500) it carries the non-ESP marker (RFC 3948 §2.2)."""
        if self.natt:
            data = c.NON_ESP_MARKER + data
        self.out.append((data, addr))

    @property
    def closed(self) -> bool:
        return self.state == SaState.CLOSED

    @property
    def established(self) -> bool:
        return self.state == SaState.ESTABLISHED

    @property
    def spi_i(self) -> bytes:
        return self.ctx.spi_i

    @property
    def spi_r(self) -> bytes:
        return self.ctx.spi_r

    @property
    def suite(self) -> IkeSuite | None:
        return self.ctx.suite

    @property
    def keys(self) -> IkeKeys | None:
        return self.ctx.keys

    def wireshark_line(self) -> str:
        if self.ctx.keys is None or self.ctx.suite is None:
            raise ValueError("IKE SA has no keys yet")
        return wireshark_decryption_line(self.ctx.suite, self.ctx.spi_i, self.ctx.spi_r, self.ctx.keys)

    def _timers(self):
        return self.config.timers

    # ------------------------------------------------------------------ sending

    def _header(self, ctx: _Ctx, exchange: int, mid: int, response: bool) -> IkeHeader:
        flags = (c.HeaderFlag.INITIATOR if ctx.initiator else 0) | (c.HeaderFlag.RESPONSE if response else 0)
        return IkeHeader(ctx.spi_i, ctx.spi_r, 0, exchange, flags, mid, 0)

    def _encrypt(self, ctx: _Ctx, exchange: int, mid: int, response: bool, payloads: list) -> bytes:
        assert ctx.suite is not None and ctx.keys is not None
        return encrypt_message(self._header(ctx, exchange, mid, response), payloads, ctx.suite, ctx.keys,
                               ctx.initiator, self.rng)

    def _request(self, ctx: _Ctx, exchange: int, payloads: list, kind: str, now: float, **info) -> None:
        if ctx.pending is not None:
            raise ProtocolError("a request is already outstanding")
        mid = ctx.my_mid
        data = self._encrypt(ctx, exchange, mid, False, payloads)
        ctx.pending = _Pending(exchange, mid, data, kind, now + self._timers().retransmit_timeout, info=info)
        self._send_raw(data, self.remote_addr)

    def _respond(self, ctx: _Ctx, exchange: int, mid: int, payloads: list, addr: Addr) -> None:
        data = self._encrypt(ctx, exchange, mid, True, payloads)
        ctx.last_response = (mid, data)
        self._send_raw(data, addr)

    def _respond_error(self, ctx: _Ctx, exchange: int, mid: int, notify: int, addr: Addr, data: bytes = b"") -> None:
        self._respond(ctx, exchange, mid, [NotifyPayload(notify, data)], addr)

    def _enqueue(self, fn: Callable[[float], None], now: float) -> None:
        self._queue.append(fn)
        self._kick(now)

    def _kick(self, now: float) -> None:
        while self._queue and self.ctx.pending is None and self.state == SaState.ESTABLISHED:
            fn = self._queue.popleft()
            fn(now)

    # ------------------------------------------------------------------ close

    def _close(self, terminal: ev.IkeEvent | None) -> None:
        if self.state == SaState.CLOSED:
            return
        for ch in self.children:
            self._emit(ev.ChildSaDeleted(self.sa_id, ch.spi_in, ch.spi_out))
        self.children = []
        if terminal is not None:
            self._emit(terminal)
        self.state = SaState.CLOSED
        self.ctx.pending = None
        if self.old_ctx is not None:
            self.old_ctx.pending = None
        self._queue.clear()

    # ------------------------------------------------------------------ IKE_SA_INIT (initiator)

    def start(self, now: float) -> None:
        """Send the IKE_SA_INIT request (RFC 7296 §1.2)."""
        if self.state != SaState.IDLE:
            raise ProtocolError("initiate() twice")
        self.created = now
        self.last_rx = now
        self._ni = self.rng(self.config.nonce_len)
        self._dh = dhmod.generate(self.config.ike_proposals[0].dh_groups[0], self.rng)
        self._send_init(now)

    def _init_payloads(self) -> list:
        assert self._dh is not None
        ps: list = []
        if self._cookie:
            ps.append(NotifyPayload(NotifyType.COOKIE, self._cookie))
        ps += [
            c.SaPayload(tuple(p.to_proposal(i + 1) for i, p in enumerate(self.config.ike_proposals))),
            c.KePayload(self._dh.group, self._dh.public),
            c.NoncePayload(self._ni),
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, _nat_hash(self.ctx.spi_i, bytes(8), self.local_addr)),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP,
                          _nat_hash(self.ctx.spi_i, bytes(8), self.remote_addr)),
        ]
        if self.config.signature_hash_algorithms:
            ps.append(c.notify_signature_hash_algorithms(self.config.signature_hash_algorithms))
        ps += [c.VendorIdPayload(v) for v in self.config.vendor_ids]
        return ps

    def _send_init(self, now: float) -> None:
        msg = IkeMessage(ExchangeType.IKE_SA_INIT, 0, self.ctx.spi_i, bytes(8), True, False, self._init_payloads())
        data = c.serialize_message(msg)
        self._init_req = data
        self.ctx.pending = _Pending(ExchangeType.IKE_SA_INIT, 0, data, "init", now + self._timers().retransmit_timeout)
        self.state = SaState.INIT_SENT
        self._send_raw(data, self.remote_addr)

    def _on_init_response(self, msg: IkeMessage, now: float) -> None:
        cookie = msg.notify(NotifyType.COOKIE)
        if cookie is not None:
            if self._cookie_retries >= 3:
                self._close(ev.IkeSaFailed(self.sa_id, NotifyType.COOKIE, "cookie loop"))
                return
            self._cookie_retries += 1
            self._cookie = cookie.data
            self._send_init(now)
            return
        inv = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if inv is not None:
            group = c.parse_invalid_ke(inv)
            offered = {g for p in self.config.ike_proposals for g in p.dh_groups}
            if group not in offered or group == self._dh.group or self._ke_retries >= 2:
                self._close(ev.IkeSaFailed(self.sa_id, NotifyType.INVALID_KE_PAYLOAD,
                                           f"responder asked for unusable group {group}"))
                return
            self._ke_retries += 1
            self._dh = dhmod.generate(group, self.rng)
            self._send_init(now)
            return
        for n in msg.get_all(NotifyPayload):
            if isinstance(n.type, int) and n.type < 16384:
                self._close(ev.IkeSaFailed(self.sa_id, n.type, f"IKE_SA_INIT refused: {c._enum_or_int(NotifyType, n.type)!r}"))
                return
        sa, ke, nonce = msg.get(c.SaPayload), msg.get(c.KePayload), msg.get(c.NoncePayload)
        if sa is None or ke is None or nonce is None or len(sa.proposals) != 1 or msg.spi_r == bytes(8):
            raise ProtocolError("IKE_SA_INIT response lacks SA/KE/Nr")
        offered = tuple(p.to_proposal(i + 1) for i, p in enumerate(self.config.ike_proposals))
        suite = _suite_from_ike_proposal(sa.proposals[0], offered)
        if suite.dh != self._dh.group or ke.group != self._dh.group:
            raise ProtocolError("KE group differs from the one we sent")
        if not 16 <= len(nonce.data) <= 256:
            raise ProtocolError("bad nonce length")
        try:
            shared = self._dh.shared_secret(ke.data)
        except dhmod.DhError as e:
            raise ProtocolError(str(e)) from e
        self.ctx.pending = None
        self.ctx.spi_r = msg.spi_r
        self.ctx.my_mid = 1
        self._nr = nonce.data
        self._init_resp = msg.raw
        self.ctx.suite = suite
        self.ctx.keys = derive_ike_keys(suite, skeyseed(suite.prf, self._ni, self._nr, shared), self._ni, self._nr,
                                        self.ctx.spi_i, self.ctx.spi_r)
        sha = msg.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
        self._peer_hashes = c.parse_signature_hash_algorithms(sha) if sha else []
        self._check_nat(msg, self.ctx.spi_i, self.ctx.spi_r)
        self._send_auth(now)

    def _check_nat(self, msg: IkeMessage, spi_i: bytes, spi_r: bytes) -> None:
        """NAT detection (RFC 7296 §2.23): compare the peer's hashes with our view of the addresses."""
        srcs = msg.notifies(NotifyType.NAT_DETECTION_SOURCE_IP)
        dst = msg.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
        if not srcs or dst is None:
            self.nat_detected = False
            return
        local_nat = dst.data != _nat_hash(spi_i, spi_r, self.local_addr)
        remote_nat = all(s.data != _nat_hash(spi_i, spi_r, self.remote_addr) for s in srcs)
        self.nat_detected = local_nat or remote_nat
        if self.nat_detected and not self.natt:
            self.natt = True
            if self.is_ue and self.remote_addr[1] == IKE_PORT:
                self.remote_addr = (self.remote_addr[0], NATT_PORT)
                self.local_addr = (self.local_addr[0], NATT_PORT)

    # ------------------------------------------------------------------ IKE_AUTH (initiator)

    def _id_payload_i(self) -> c.IdiPayload:
        return c.IdiPayload(self.config.local_id.id_type, self.config.local_id.data)

    def _certreq(self) -> list:
        if not self.config.trusted_certs:
            return []
        return [c.CertReqPayload(c.CertEncoding.X509_CERT_SIGNATURE,
                                 b"".join(_spi_hash_of_ca(t) for t in self.config.trusted_certs))]

    def _my_auth(self, octets: bytes) -> list:
        """CERT(s) + AUTH for our credentials over the signed octets."""
        cred = self.config.auth
        if isinstance(cred, PskAuth):
            return [c.AuthPayload(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                                  authmod.shared_key_auth(self.ctx.suite.prf, cred.secret, octets))]
        if isinstance(cred, CertAuth):
            certs = [c.CertPayload(c.CertEncoding.X509_CERT_SIGNATURE, _cert_der(x))
                     for x in (cred.certificate, *cred.chain)]
            return certs + [authmod.sign(cred.method, cred.private_key, octets, self._peer_hashes)]
        raise ProtocolError("no credentials to produce AUTH with")

    def _cp_request(self) -> list:
        if not self.config.cp_request:
            return []
        return [c.CpPayload(CfgType.CFG_REQUEST, tuple(CpAttribute(t) for t in self.config.cp_request))]

    def _send_auth(self, now: float) -> None:
        idi = self._id_payload_i()
        self._idi = idi
        ps: list = [idi]
        eap = isinstance(self.config.auth, EapAuth)
        self._eap_mode = eap
        ps += self._certreq()
        if self.config.initial_contact:
            ps.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
        if self.config.remote_id is not None:
            ps.append(c.IdrPayload(self.config.remote_id.id_type, self.config.remote_id.data))
        if not eap:
            octets = authmod.signed_octets(self._init_req, self._nr, self.ctx.suite.prf, self.ctx.keys.sk_pi, idi)
            mine = self._my_auth(octets)
            certs = [p for p in mine if isinstance(p, c.CertPayload)]
            ps = [idi] + certs + ps[1:] + [p for p in mine if isinstance(p, c.AuthPayload)]
        ps += self._cp_request()
        if self.config.child is not None:
            offer = self._make_child_offer(self.config.child, with_dh=False, rekey_of=None)
            self._child_offer = offer
            ps += self._child_offer_payloads(offer, nonce=False)
        if self.config.mobike:
            ps.append(NotifyPayload(NotifyType.MOBIKE_SUPPORTED))
        self._request(self.ctx, ExchangeType.IKE_AUTH, ps, "auth", now)
        self.state = SaState.AUTH_SENT

    def _verify_peer_auth(self, payloads: list, octets: bytes, id_payload: c.IdPayload, use_msk: bytes | None) -> None:
        """Check the peer's AUTH (and CERT) (RFC 7296 §2.15); AuthError on failure."""
        a = next((p for p in payloads if isinstance(p, c.AuthPayload)), None)
        if a is None:
            raise authmod.AuthError("no AUTH payload")
        if use_msk is not None:
            if a.method != AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE:
                raise authmod.AuthError("EAP AUTH must use the shared key method")
            expected = authmod.shared_key_auth(self.ctx.suite.prf, use_msk, octets)
            if not _ct_eq(expected, a.data):
                raise authmod.AuthError("MSK-based AUTH mismatch")
            return
        if a.method == AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE:
            secret = None
            if self.config.psk_lookup is not None:
                from s2c.ike.config import Identity

                secret = self.config.psk_lookup(Identity(id_payload.id_type, id_payload.data))
            if secret is None and isinstance(self.config.auth, PskAuth):
                secret = self.config.auth.secret
            if secret is None:
                raise authmod.AuthError("no pre-shared key for this peer")
            expected = authmod.shared_key_auth(self.ctx.suite.prf, secret, octets)
            if not _ct_eq(expected, a.data):
                raise authmod.AuthError("PSK AUTH mismatch")
            return
        certs = [p for p in payloads if isinstance(p, c.CertPayload) and p.encoding == c.CertEncoding.X509_CERT_SIGNATURE]
        if not certs:
            raise authmod.AuthError("signature AUTH without a certificate")
        try:
            cert = _load_cert(certs[0].data)
        except ValueError as e:
            raise authmod.AuthError(f"bad certificate: {e}") from e
        _check_certificate(cert, self.config.trusted_certs)
        if self.config.check_id_in_cert:
            authmod.check_id_matches_cert(id_payload, cert)
        authmod.verify(a, cert.public_key(), octets)

    def _check_expected_peer_id(self, idp: c.IdPayload) -> None:
        exp = self.config.remote_id
        if exp is not None and (exp.id_type, exp.data) != (idp.id_type, idp.data):
            raise authmod.AuthError(f"peer identity {idp} is not the expected {exp}")

    def _on_auth_response(self, p: _Pending, payloads: list, now: float) -> None:
        for n in payloads:
            if isinstance(n, NotifyPayload) and n.type in (NotifyType.AUTHENTICATION_FAILED,
                                                           NotifyType.AUTHORIZATION_FAILED):
                eap = next((x.data for x in payloads if isinstance(x, c.EapPayload)), None)
                self._close(ev.AuthenticationFailed(self.sa_id, f"peer sent {NotifyType(n.type).name}", True, eap))
                return
        for n in payloads:
            if isinstance(n, NotifyPayload) and isinstance(n.type, int) and n.type < 16384 and n.type not in (
                    NotifyType.NO_PROPOSAL_CHOSEN, NotifyType.TS_UNACCEPTABLE, NotifyType.INTERNAL_ADDRESS_FAILURE,
                    NotifyType.FAILED_CP_REQUIRED, NotifyType.SINGLE_PAIR_REQUIRED, NotifyType.INVALID_SELECTORS,
                    NotifyType.NO_ADDITIONAL_SAS):
                self._close(ev.IkeSaFailed(self.sa_id, n.type, f"IKE_AUTH refused with {n.type!r}"))
                return
        if self.state == SaState.AUTH_SENT:
            idr = next((x for x in payloads if isinstance(x, c.IdrPayload)), None)
            if idr is None:
                raise ProtocolError("IKE_AUTH response without IDr", NotifyType.INVALID_SYNTAX)
            octets = authmod.signed_octets(self._init_resp, self._ni, self.ctx.suite.prf, self.ctx.keys.sk_pr, idr)
            try:
                self._check_expected_peer_id(idr)
                self._verify_peer_auth(payloads, octets, idr, None)
            except (authmod.AuthError, UnsupportedAlgorithm) as e:
                self._reject_peer(str(e), now)
                return
            self._idr = idr
            self.peer_id = idr
            eap = next((x for x in payloads if isinstance(x, c.EapPayload)), None)
            if self._eap_mode:
                if eap is None:
                    self._reject_peer("responder did not start EAP", now)
                    return
                self._on_eap_from_server(eap.data, now)
                return
            self._auth_complete(payloads, now)
        elif self.state == SaState.EAP_SENT:
            eap = next((x for x in payloads if isinstance(x, c.EapPayload)), None)
            if eap is None:
                raise ProtocolError("EAP exchange response without EAP", NotifyType.INVALID_SYNTAX)
            self._on_eap_from_server(eap.data, now)
        elif self.state == SaState.AUTH_FINAL_SENT:
            octets = authmod.signed_octets(self._init_resp, self._ni, self.ctx.suite.prf, self.ctx.keys.sk_pr,
                                           self._idr)
            try:
                self._verify_peer_auth(payloads, octets, self._idr, self._eap_key(False))
            except authmod.AuthError as e:
                self._reject_peer(str(e), now)
                return
            self._auth_complete(payloads, now)

    def _on_eap_from_server(self, eap: bytes, now: float) -> None:
        code = eap[0] if eap else 0
        if code == 3:  # Success (RFC 3748 §4.2)
            self._eap_success_seen = True
            if self._msk_known:
                self._send_final_auth(now)
            else:
                self.state = SaState.EAP_WAIT_PEER
                self._emit(ev.EapRequestReceived(self.sa_id, eap))
            return
        if code == 4:  # Failure
            self._close(ev.AuthenticationFailed(self.sa_id, "EAP failure", True, eap))
            return
        self.state = SaState.EAP_WAIT_PEER
        self._emit(ev.EapRequestReceived(self.sa_id, eap))

    def send_eap_response(self, eap: bytes, now: float) -> None:
        if self.state != SaState.EAP_WAIT_PEER or self._eap_success_seen:
            raise ProtocolError(f"send_eap_response in state {self.state.value}")
        self._request(self.ctx, ExchangeType.IKE_AUTH, [c.EapPayload(eap)], "auth", now)
        self.state = SaState.EAP_SENT

    def provide_eap_result(self, msk: bytes | None, now: float) -> None:
        """Give the MSK from the EAP peer (before or after EAP Success arrives); ``None`` for a
        method without keys (then SK_pi/SK_pr are the shared secrets, RFC 7296 §2.16)."""
        self._msk = msk or None
        self._msk_known = True
        if self.state == SaState.EAP_WAIT_PEER and self._eap_success_seen:
            self._send_final_auth(now)

    def _send_final_auth(self, now: float) -> None:
        octets = authmod.signed_octets(self._init_req, self._nr, self.ctx.suite.prf, self.ctx.keys.sk_pi, self._idi)
        a = c.AuthPayload(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                          authmod.shared_key_auth(self.ctx.suite.prf, self._eap_key(True), octets))
        self._request(self.ctx, ExchangeType.IKE_AUTH, [a], "auth", now)
        self.state = SaState.AUTH_FINAL_SENT

    def _eap_key(self, initiator_side: bool) -> bytes:
        """The EAP shared secret: the MSK, or SK_pi/SK_pr for key-less methods (RFC 7296 §2.16)."""
        if self._msk:
            return self._msk
        return self.ctx.keys.sk_pi if initiator_side else self.ctx.keys.sk_pr

    def _reject_peer(self, reason: str, now: float) -> None:
        """We do not accept the responder's AUTH: tell it (RFC 7296 §2.21.2) and give up."""
        self.ctx.pending = None
        try:
            data = self._encrypt(self.ctx, ExchangeType.INFORMATIONAL, self.ctx.my_mid, False,
                                 [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)])
            self._send_raw(data, self.remote_addr)
        except Exception:  # pragma: no cover - best effort
            pass
        self._close(ev.AuthenticationFailed(self.sa_id, reason, False))

    def _auth_complete(self, payloads: list, now: float) -> None:
        self.ctx.pending = None
        self.state = SaState.ESTABLISHED
        self.established_at = now
        self._schedule_ike_rekey(now)
        self.mobike = self.config.mobike and any(
            isinstance(x, NotifyPayload) and x.type == NotifyType.MOBIKE_SUPPORTED for x in payloads)
        self._emit(self._established_event())
        cp = next((x for x in payloads if isinstance(x, c.CpPayload) and x.cfg_type == CfgType.CFG_REPLY), None)
        if cp is not None:
            self._apply_cp_reply(cp)
        if self._child_offer is not None:
            self._finish_child(self._child_offer, payloads, self._ni, self._nr, None, now, ike_auth=True)
            self._child_offer = None
        self._kick(now)

    def _established_event(self) -> ev.IkeSaEstablished:
        return ev.IkeSaEstablished(
            self.sa_id, self.ctx.spi_i, self.ctx.spi_r, str(self.config.local_id),
            str(self.peer_id) if self.peer_id is not None else "", self.ctx.suite, self.local_addr, self.remote_addr,
            self.nat_detected, self.mobike, self._eap_mode)

    def _apply_cp_reply(self, cp: c.CpPayload) -> None:
        hoa = prefix = ha = v4 = ha4 = None
        dns: list = []
        try:
            for a in cp.attributes:
                if a.type == CpAttributeType.INTERNAL_IP6_ADDRESS and a.value:
                    hoa, plen = c.parse_cp_ip6_address(a.value)
                    if prefix is None:
                        prefix = ipaddress.IPv6Network((hoa, plen), strict=False)
                elif a.type == CpAttributeType.MIP6_HOME_PREFIX and a.value:
                    prefix = c.Mip6HomePrefix.decode(a.value).prefix
                elif a.type == CpAttributeType.HOME_AGENT_ADDRESS and a.value:
                    ha, ha4 = c.parse_cp_home_agent_address(a.value)
                elif a.type == CpAttributeType.INTERNAL_IP4_ADDRESS and len(a.value) == 4:
                    v4 = ipaddress.IPv4Address(a.value)
                elif a.type in (CpAttributeType.INTERNAL_IP6_DNS, CpAttributeType.INTERNAL_IP4_DNS) and a.value:
                    dns.append(ipaddress.ip_address(a.value))
        except (IkeDecodeError, ValueError):
            self.drops.append("malformed CP attribute ignored")
        self.assignment = CpAssignment(home_address=hoa, home_prefix=prefix, ha_address=ha, ha_address4=ha4, ipv4=v4)
        self.cp = ev.CpAssigned(self.sa_id, hoa, prefix, ha, v4, ha4, tuple(dns))
        self._emit(self.cp)

    # ------------------------------------------------------------------ CHILD SA helpers

    def _resolve_ts(self, spec, local: bool, proposing: bool) -> TrafficSelector:
        if isinstance(spec, TrafficSelector):
            return spec
        assert isinstance(spec, DynamicTs)
        asg = self.assignment
        if self.is_ue == local:
            # the UE side: the assigned address (HoA / virtual IP) or the IKE address
            addr = None
            if asg is not None:
                addr = asg.home_address if spec.version == 6 else asg.ipv4
            if addr is None and proposing and self.is_ue and self.config.cp_request:
                return _ts_any(spec.version, spec.ip_protocol)
            if addr is None:
                ip = _ip((self.local_addr if local else self.remote_addr)[0])
                if ip.version != spec.version:
                    return _ts_any(spec.version, spec.ip_protocol)
                addr = ip
        else:
            # the network side: the Home Agent address or the IKE address
            addr = None
            if asg is not None:
                addr = asg.ha_address if spec.version == 6 else asg.ha_address4
            if addr is None and proposing and self.is_ue and self.config.cp_request:
                return _ts_any(spec.version, spec.ip_protocol)
            if addr is None:
                ip = _ip((self.local_addr if local else self.remote_addr)[0])
                if ip.version != spec.version:
                    return _ts_any(spec.version, spec.ip_protocol)
                addr = ip
        if isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return TrafficSelector(addr, addr, spec.ip_protocol, 0, 65535)  # = from_address, without re-parsing
        return TrafficSelector.from_address(addr, spec.ip_protocol)

    def _make_child_offer(self, child: ChildConfig, with_dh: bool, rekey_of: ChildSa | None) -> _ChildOffer:
        spi = self._new_spi4()
        props = tuple(p.to_proposal(i + 1, spi.to_bytes(4, "big"), with_dh and bool(p.dh_groups))
                      for i, p in enumerate(child.esp_proposals))
        if rekey_of is not None:
            tsi, tsr = rekey_of.ts_local, rekey_of.ts_remote
            transport = rekey_of.mode == ChildMode.TRANSPORT
        else:
            tsi = tuple(self._resolve_ts(s, True, True) for s in child.local_ts)
            tsr = tuple(self._resolve_ts(s, False, True) for s in child.remote_ts)
            transport = child.mode == ChildMode.TRANSPORT
        dh = None
        if with_dh:
            groups = [g for p in child.esp_proposals for g in p.dh_groups]
            if groups:
                dh = dhmod.generate(groups[0], self.rng)
        return _ChildOffer(spi, props, tsi, tsr, transport, dh=dh, rekey_of=rekey_of, policy=child)

    def _child_offer_payloads(self, offer: _ChildOffer, nonce: bool) -> list:
        ps: list = []
        if offer.rekey_of is not None:
            ps.append(NotifyPayload(NotifyType.REKEY_SA, protocol=ProtocolId.ESP,
                                    spi=offer.rekey_of.spi_in.to_bytes(4, "big")))
        if offer.transport:
            ps.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        ps.append(NotifyPayload(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED))
        ps.append(c.SaPayload(offer.proposals))
        if nonce:
            ps.append(c.NoncePayload(offer.nonce))
            if offer.dh is not None:
                ps.append(c.KePayload(offer.dh.group, offer.dh.public))
        ps += [c.TsiPayload(offer.ts_i), c.TsrPayload(offer.ts_r)]
        return ps

    def _child_event(self, ch: ChildSa) -> ev.ChildSaEstablished:
        return ev.ChildSaEstablished(
            self.sa_id, ch.spi_in, ch.spi_out, ch.mode, "esp", ch.ts_i, ch.ts_r, ch.ts_local, ch.ts_remote, ch.suite,
            ch.keys_in, ch.keys_out, self.nat_detected, self.local_addr, self.remote_addr)

    def _finish_child(self, offer: _ChildOffer, payloads: list, ni: bytes, nr: bytes, shared: bytes | None,
                      now: float, ike_auth: bool) -> ChildSa | None:
        """Exchange initiator: take the responder's SA/TS answer (RFC 7296 §1.3.1, §2.9)."""
        for n in payloads:
            if isinstance(n, NotifyPayload) and isinstance(n.type, int) and n.type < 16384:
                self._emit(ev.ChildSaFailed(self.sa_id, n.type, f"peer refused CHILD SA: {n.type!r}"))
                return None
        sa = next((x for x in payloads if isinstance(x, c.SaPayload)), None)
        tsi = next((x for x in payloads if isinstance(x, c.TsiPayload)), None)
        tsr = next((x for x in payloads if isinstance(x, c.TsrPayload)), None)
        if sa is None or tsi is None or tsr is None or len(sa.proposals) != 1 or len(sa.proposals[0].spi) != 4:
            self._emit(ev.ChildSaFailed(self.sa_id, NotifyType.INVALID_SYNTAX, "CHILD SA answer incomplete"))
            return None
        try:
            suite = _suite_from_esp_proposal(sa.proposals[0], offer.proposals)
        except ProtocolError as e:
            self._emit(ev.ChildSaFailed(self.sa_id, NotifyType.NO_PROPOSAL_CHOSEN, str(e)))
            return None
        for got, offered in ((tsi.selectors, offer.ts_i), (tsr.selectors, offer.ts_r)):
            if not got or not all(any(o.contains(g) for o in offered) for g in got):
                self._emit(ev.ChildSaFailed(self.sa_id, NotifyType.TS_UNACCEPTABLE, "responder widened the TS"))
                return None
        if suite.dh and offer.dh is not None:
            ke = next((x for x in payloads if isinstance(x, c.KePayload)), None)
            if ke is None or ke.group != offer.dh.group:
                self._emit(ev.ChildSaFailed(self.sa_id, NotifyType.INVALID_KE_PAYLOAD, "PFS KE missing"))
                return None
            try:
                shared = offer.dh.shared_secret(ke.data)
            except dhmod.DhError as e:
                self._emit(ev.ChildSaFailed(self.sa_id, NotifyType.INVALID_KE_PAYLOAD, str(e)))
                return None
        transport = any(isinstance(x, NotifyPayload) and x.type == NotifyType.USE_TRANSPORT_MODE for x in payloads)
        i2r, r2i = child_keymat(self.ctx.suite.prf, self.ctx.keys.sk_d, suite, ni, nr, shared)
        ch = ChildSa(offer.spi_in, _u32(sa.proposals[0].spi), ChildMode.TRANSPORT if transport else ChildMode.TUNNEL,
                     suite, r2i, i2r, tsi.selectors, tsr.selectors, tsi.selectors, tsr.selectors, now,
                     policy=offer.policy)
        self._add_child(ch, offer.rekey_of, now)
        return ch

    def _add_child(self, ch: ChildSa, rekey_of: ChildSa | None, now: float) -> None:
        self.children.append(ch)
        e = self._child_event(ch)
        if rekey_of is not None and rekey_of in self.children and not rekey_of.replaced:
            rekey_of.rekeyed = True
            rekey_of.replaced = True
            self._emit(ev.ChildSaRekeyed(self.sa_id, rekey_of.spi_in, rekey_of.spi_out, e))
        else:
            self._emit(e)

    def _note_rekey(self, old: ChildSa, ni: bytes, nr: bytes, new: ChildSa, by_us: bool, now: float) -> None:
        """Simultaneous CHILD SA rekeying (RFC 7296 §2.8.1): of the two new SAs, the one created with
        the lowest of the four nonces is redundant and is deleted by the peer that created it."""
        old.rekey_exchanges.append((ni, nr, new, by_us))
        if len(old.rekey_exchanges) != 2:
            return
        lowest = min((n, i) for i, x in enumerate(old.rekey_exchanges) for n in x[:2])[1]
        _, _, redundant, mine = old.rekey_exchanges[lowest]
        if mine and redundant in self.children:
            self.delete_child(redundant.spi_in, now)

    def _accept_child(self, req: list, ni: bytes, nr: bytes, now: float, ke_shared: Callable | None,
                      rekey_of: ChildSa | None) -> tuple[list, ChildSa | None]:
        """Exchange responder: choose a proposal and narrow TS (RFC 7296 §2.7, §2.9). Returns
        (payloads for the response, child or None)."""
        sa = next((x for x in req if isinstance(x, c.SaPayload)), None)
        tsi = next((x for x in req if isinstance(x, c.TsiPayload)), None)
        tsr = next((x for x in req if isinstance(x, c.TsrPayload)), None)
        ke = next((x for x in req if isinstance(x, c.KePayload)), None)
        if sa is None or tsi is None or tsr is None:
            return [NotifyPayload(NotifyType.INVALID_SYNTAX)], None
        transport = any(isinstance(x, NotifyPayload) and x.type == NotifyType.USE_TRANSPORT_MODE for x in req)
        child_cfg = self._pick_policy(tsi.selectors, tsr.selectors, transport, rekey_of)
        chosen = select_esp_proposal(sa, child_cfg.esp_proposals, ke.group if ke is not None else None)
        if chosen is None:
            if ke is not None:
                alt = select_esp_proposal(sa, child_cfg.esp_proposals, None)
                groups = [g for p in child_cfg.esp_proposals for g in p.dh_groups]
                if alt is not None and groups:
                    return [c.notify_invalid_ke(groups[0])], None
            return [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)], None
        prop, suite = chosen
        offered_prop = next(p for p in sa.proposals if p.num == prop.num and p.protocol == ProtocolId.ESP)
        # TSi is the exchange initiator's side, TSr ours.
        remote_allowed = [self._resolve_ts(s, False, False) for s in child_cfg.remote_ts]
        local_allowed = [self._resolve_ts(s, True, False) for s in child_cfg.local_ts]
        if rekey_of is not None:
            remote_allowed, local_allowed = list(rekey_of.ts_remote), list(rekey_of.ts_local)
        n_i = _narrow(tsi.selectors, remote_allowed)
        n_r = _narrow(tsr.selectors, local_allowed)
        if not n_i or not n_r:
            return [NotifyPayload(NotifyType.TS_UNACCEPTABLE)], None
        shared = None
        out: list = []
        if suite.dh:
            shared, pub = ke_shared(suite.dh, ke)
            out_ke = c.KePayload(suite.dh, pub)
        else:
            out_ke = None
        spi_in = self._new_spi4()
        i2r, r2i = child_keymat(self.ctx.suite.prf, self.ctx.keys.sk_d, suite, ni, nr, shared)
        ch = ChildSa(spi_in, _u32(offered_prop.spi), ChildMode.TRANSPORT if transport else ChildMode.TUNNEL, suite,
                     i2r, r2i, n_i, n_r, n_r, n_i, now, policy=child_cfg)
        if transport:
            out.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        out.append(NotifyPayload(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED))
        out.append(c.SaPayload((c.Proposal(prop.num, ProtocolId.ESP, spi_in.to_bytes(4, "big"), prop.transforms),)))
        out.append(("NONCE",))  # placeholder for CREATE_CHILD_SA: replaced by the caller
        if out_ke is not None:
            out.append(out_ke)
        out += [c.TsiPayload(n_i), c.TsrPayload(n_r)]
        return out, ch

    def _pick_policy(self, tsi, tsr, transport: bool, rekey_of: ChildSa | None) -> ChildConfig:
        """Exchange responder: the CHILD policy that best fits the request: same mode and no
        narrowing needed first, then any policy that narrows to something (RFC 7296 §2.9)."""
        policies = [p for p in (self.config.child, *self.config.extra_children) if p is not None] or [ChildConfig()]
        if rekey_of is not None:
            return rekey_of.policy or policies[0]
        best, best_score = policies[0], (-1, -1)
        for pol in policies:
            remote = [self._resolve_ts(s, False, False) for s in pol.remote_ts]
            local = [self._resolve_ts(s, True, False) for s in pol.local_ts]
            n_i, n_r = _narrow(tsi, remote), _narrow(tsr, local)
            if not n_i or not n_r:
                continue
            exact = int(set(n_i) == set(tsi) and set(n_r) == set(tsr))
            score = (int((pol.mode == ChildMode.TRANSPORT) == transport), exact)
            if score > best_score:
                best, best_score = pol, score
        return best

    # ------------------------------------------------------------------ responder side

    def precompute(self) -> bool:
        """Run a deferred key derivation now (idle time after the IKE_SA_INIT answer left); True if it did."""
        if not self.ctx.keys_pending:
            return False
        _ = self.ctx.keys
        return True

    def handle_init_request(self, msg: IkeMessage, addr: Addr, now: float, suite: IkeSuite,
                            chosen: c.Proposal, marker: bool = False, dh: dhmod.DhPrivateKey | None = None) -> None:
        """Answer a (cookie-checked, proposal-selected) IKE_SA_INIT request (RFC 7296 §1.2). ``dh``: a
        fresh key of the chosen group made ahead (never used twice). The peer's KE value is checked
        now; g^ir and SKEYSEED/SK_* are derived on first use or by :meth:`precompute`, so the answer
        can leave before that work (it needs none of it)."""
        self.created = now
        self.last_rx = now
        ke = msg.get(c.KePayload)
        nonce = msg.get(c.NoncePayload)
        self.ctx.spi_i = msg.spi_i
        self.ctx.spi_r = self._new_spi8()
        self._ni = nonce.data
        self._nr = self.rng(self.config.nonce_len)
        self._dh = dh if dh is not None and dh.group == suite.dh else dhmod.generate(suite.dh, self.rng)
        secret = self._dh.deferred_shared_secret(ke.data)  # DhError handled by the caller
        self.ctx.suite = suite
        ni, nr, spi_i, spi_r = self._ni, self._nr, self.ctx.spi_i, self.ctx.spi_r
        self.ctx.defer_keys(lambda: derive_ike_keys(suite, skeyseed(suite.prf, ni, nr, secret()), ni, nr, spi_i, spi_r))
        self._init_req = msg.raw
        sha = msg.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
        self._peer_hashes = c.parse_signature_hash_algorithms(sha) if sha else []
        self._check_nat(msg, self.ctx.spi_i, bytes(8))
        ps: list = [c.SaPayload((chosen,)), c.KePayload(suite.dh, self._dh.public), c.NoncePayload(self._nr),
                    NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP,
                                  _nat_hash(self.ctx.spi_i, self.ctx.spi_r, self.local_addr)),
                    NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP,
                                  _nat_hash(self.ctx.spi_i, self.ctx.spi_r, addr))]
        ps += self._certreq()
        if self.config.signature_hash_algorithms:
            ps.append(c.notify_signature_hash_algorithms(self.config.signature_hash_algorithms))
        ps += [c.VendorIdPayload(v) for v in self.config.vendor_ids]
        resp = IkeMessage(ExchangeType.IKE_SA_INIT, 0, self.ctx.spi_i, self.ctx.spi_r, False, True, ps)
        data = c.serialize_message(resp)
        self._init_resp = data
        self.ctx.last_response = (0, data)
        self.ctx.peer_mid = 1
        self.state = SaState.INIT_DONE
        self._on_spi(self, self.ctx.spi_r, True)
        self.out.append(((c.NON_ESP_MARKER if marker else b"") + data, addr))  # same port as the request

    def _on_auth_request(self, mid: int, payloads: list, addr: Addr, now: float) -> None:
        ctx = self.ctx
        if self.state == SaState.INIT_DONE:
            idi = next((x for x in payloads if isinstance(x, c.IdiPayload)), None)
            if idi is None:
                raise ProtocolError("IKE_AUTH without IDi", NotifyType.INVALID_SYNTAX)
            self._idi = idi
            self.peer_id = idi
            self._auth_req_payloads = payloads
            has_auth = any(isinstance(x, c.AuthPayload) for x in payloads)
            if not has_auth:
                if not self.config.eap_allowed:
                    self._auth_failed_response(mid, addr, "initiator wants EAP, which is not allowed")
                    return
                self._eap_mode = True
                self._deferred = (mid, addr)
                self.state = SaState.EAP_WAIT_SERVER
                self._emit(ev.EapAuthenticationRequested(self.sa_id, str(idi), idi.id_type, idi.data))
                return
            octets = authmod.signed_octets(self._init_req, self._nr, ctx.suite.prf, ctx.keys.sk_pi, idi)
            try:
                self._check_expected_peer_id(idi)
                self._verify_peer_auth(payloads, octets, idi, None)
            except (authmod.AuthError, UnsupportedAlgorithm) as e:
                self._auth_failed_response(mid, addr, str(e))
                return
            idr = self._my_idr()
            octets_r = authmod.signed_octets(self._init_resp, self._ni, ctx.suite.prf, ctx.keys.sk_pr, idr)
            ps = [idr] + self._my_auth(octets_r)
            self._complete_responder(mid, addr, ps, payloads, now)
        elif self.state == SaState.EAP_IN_PROGRESS:
            eap = next((x for x in payloads if isinstance(x, c.EapPayload)), None)
            if eap is None:
                raise ProtocolError("IKE_AUTH during EAP without EAP payload", NotifyType.INVALID_SYNTAX)
            self._deferred = (mid, addr)
            self.state = SaState.EAP_WAIT_SERVER
            self._emit(ev.EapResponseReceived(self.sa_id, eap.data))
        elif self.state == SaState.EAP_DONE:
            octets = authmod.signed_octets(self._init_req, self._nr, ctx.suite.prf, ctx.keys.sk_pi, self._idi)
            try:
                self._verify_peer_auth(payloads, octets, self._idi, self._eap_key(True))
            except authmod.AuthError as e:
                self._auth_failed_response(mid, addr, str(e))
                return
            idr = self._idr
            octets_r = authmod.signed_octets(self._init_resp, self._ni, ctx.suite.prf, ctx.keys.sk_pr, idr)
            a = c.AuthPayload(AuthMethod.SHARED_KEY_MESSAGE_INTEGRITY_CODE,
                              authmod.shared_key_auth(ctx.suite.prf, self._eap_key(False), octets_r))
            self._complete_responder(mid, addr, [a], self._auth_req_payloads, now)
        else:
            raise ProtocolError(f"IKE_AUTH in state {self.state.value}")

    def _my_idr(self) -> c.IdrPayload:
        idr = c.IdrPayload(self.config.local_id.id_type, self.config.local_id.data)
        self._idr = idr
        return idr

    def _auth_failed_response(self, mid: int, addr: Addr, reason: str) -> None:
        self._respond_error(self.ctx, ExchangeType.IKE_AUTH, mid, NotifyType.AUTHENTICATION_FAILED, addr)
        self._close(ev.AuthenticationFailed(self.sa_id, reason, False))

    def _deferred_target(self, what: str) -> tuple[int, Addr]:
        if self.state != SaState.EAP_WAIT_SERVER or self._deferred is None:
            raise ProtocolError(f"{what} in state {self.state.value}")
        d = self._deferred
        self._deferred = None
        return d

    def _first_auth_payloads(self) -> list:
        """IDr + our CERT/AUTH for the first IKE_AUTH response (RFC 7296 §2.15, §2.16)."""
        idr = self._my_idr()
        octets_r = authmod.signed_octets(self._init_resp, self._ni, self.ctx.suite.prf, self.ctx.keys.sk_pr, idr)
        return [idr] + self._my_auth(octets_r)

    def prepare_auth(self, now: float) -> bool:
        """Responder, EAP: make the first IKE_AUTH response's IDr + CERT + AUTH now, while the AAA server
        works on the first EAP round (they depend only on IKE_SA_INIT and our identity, RFC 7296 §2.15),
        so :meth:`send_eap_request` only adds the EAP payload. A no-op (False) in any other state."""
        if (self.is_ue or self.state != SaState.EAP_WAIT_SERVER or self._deferred is None
                or self._deferred[0] != 1 or self._prepared_auth is not None):
            return False
        self._prepared_auth = self._first_auth_payloads()
        return True

    def send_eap_request(self, eap: bytes, now: float) -> None:
        mid, addr = self._deferred_target("send_eap_request")
        ps: list = []
        if mid == 1:
            ps = self._prepared_auth if self._prepared_auth is not None else self._first_auth_payloads()
            ps = list(ps)
            self._prepared_auth = None
        ps.append(c.EapPayload(eap))
        self._respond(self.ctx, ExchangeType.IKE_AUTH, mid, ps, addr)
        self.state = SaState.EAP_IN_PROGRESS

    def eap_success(self, msk: bytes | None, now: float, eap: bytes | None = None) -> None:
        mid, addr = self._deferred_target("eap_success")
        self._msk = msk or None
        if eap is None:
            eap = bytes([3, 0, 0, 4])
        self._respond(self.ctx, ExchangeType.IKE_AUTH, mid, [c.EapPayload(eap)], addr)
        self.state = SaState.EAP_DONE

    def eap_failure(self, now: float, eap: bytes | None = None, reason: str = "EAP failure") -> None:
        mid, addr = self._deferred_target("eap_failure")
        if eap is None:
            eap = bytes([4, 0, 0, 4])
        ps = [c.EapPayload(eap)]
        if mid == 1:
            ps = [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)]
        self._respond(self.ctx, ExchangeType.IKE_AUTH, mid, ps, addr)
        self._close(ev.AuthenticationFailed(self.sa_id, reason, False, eap))

    def _complete_responder(self, mid: int, addr: Addr, auth_ps: list, req: list, now: float) -> None:
        """Finish IKE_AUTH on the responder: CP, CHILD SA, MOBIKE; send the response; emit events."""
        ps = list(auth_ps)
        if any(isinstance(x, NotifyPayload) and x.type == NotifyType.INITIAL_CONTACT for x in req):
            self.initial_contact = True
            self._on_initial_contact(self)  # RFC 7296 §2.4: drop older IKE SAs of this peer first
        self.mobike = self.config.mobike and any(
            isinstance(x, NotifyPayload) and x.type == NotifyType.MOBIKE_SUPPORTED for x in req)
        child_ps: list = []
        child = None
        cp_req = next((x for x in req if isinstance(x, c.CpPayload) and x.cfg_type == CfgType.CFG_REQUEST), None)
        cp_failed = False
        if cp_req is not None and self.allocator is not None:
            asg = self.allocator(AddressRequest(self.sa_id, str(self._idi), tuple(a.type for a in cp_req.attributes),
                                                _req_ip6(cp_req), _req_ip4(cp_req)))
            if asg is None:
                cp_failed = True
            else:
                self.assignment = asg
                ps.append(_cp_reply(cp_req, asg))
        wants_child = any(isinstance(x, c.SaPayload) for x in req)
        if wants_child:
            if cp_failed:
                child_ps = [NotifyPayload(NotifyType.INTERNAL_ADDRESS_FAILURE)]
            else:
                child_ps, child = self._accept_child(req, self._ni, self._nr, now, None, None)
                child_ps = [p for p in child_ps if p != ("NONCE",)]
        ps += child_ps
        if self.mobike:
            ps.append(NotifyPayload(NotifyType.MOBIKE_SUPPORTED))
        self._respond(self.ctx, ExchangeType.IKE_AUTH, mid, ps, addr)
        self.state = SaState.ESTABLISHED
        self.established_at = now
        self._schedule_ike_rekey(now)
        self._emit(self._established_event())
        if child is not None:
            self._add_child(child, None, now)
        elif wants_child:
            n = child_ps[0].type if child_ps and isinstance(child_ps[0], NotifyPayload) else NotifyType.INVALID_SYNTAX
            self._emit(ev.ChildSaFailed(self.sa_id, n, "CHILD SA refused in IKE_AUTH"))

    # ------------------------------------------------------------------ datagram input

    def handle_message(self, msg: IkeMessage, addr: Addr, now: float, marker: bool = False) -> None:
        """A parsed datagram addressed to this session (by SPI); ``marker``: it came with the non-ESP
        marker (port 4500). ProtocolError for illegal input."""
        ctx = self._ctx_for(msg)
        if self.state == SaState.CLOSED:
            # a closed SA still answers a retransmitted last request (e.g. a Delete) from its cache
            if not msg.is_response and ctx.last_response and ctx.last_response[0] == msg.message_id \
                    and msg.message_id + 1 == ctx.peer_mid:
                self._send_raw(ctx.last_response[1], addr)
                return
            raise ProtocolError("IKE SA closed")
        if msg.exchange == ExchangeType.IKE_SA_INIT:
            if msg.is_response and self.state == SaState.INIT_SENT and ctx.pending and ctx.pending.mid == 0 \
                    and msg.message_id == 0:
                self.last_rx = now
                self._on_init_response(msg, now)
                return
            if not msg.is_response and ctx.last_response and ctx.last_response[0] == 0 and msg.raw == self._init_req:
                self.out.append(((c.NON_ESP_MARKER if marker else b"") + ctx.last_response[1], addr))
                self.retransmissions += 1
                return
            raise ProtocolError("unexpected IKE_SA_INIT")
        if ctx.keys is None:
            raise ProtocolError("encrypted message before keys exist")
        if msg.is_initiator == ctx.initiator:
            raise ProtocolError("message carries our own Initiator flag")
        if msg.is_response:
            p = ctx.pending
            if p is None or msg.message_id != p.mid or msg.exchange != p.exchange:
                raise ProtocolError("response matches no outstanding request")
            try:
                payloads = decrypt_message(msg, ctx.suite, ctx.keys, not ctx.initiator)
            except IntegrityError as e:
                raise ProtocolError(f"integrity check failed: {e}") from e
            except IkeDecodeError as e:
                raise ProtocolError(f"bad response: {e}") from e
            self.last_rx = now
            ctx.pending = None
            ctx.my_mid += 1
            if marker and not self.is_ue:
                self.natt = True  # the peer floated to port 4500: keep using the marker
                self.local_addr = (self.local_addr[0], NATT_PORT)
            self._dispatch_response(ctx, p, payloads, now)
            self._kick(now)
            return
        # request
        if msg.message_id != ctx.peer_mid:
            if msg.message_id + 1 == ctx.peer_mid and ctx.last_response and ctx.last_response[0] == msg.message_id:
                self._send_raw(ctx.last_response[1], addr)   # retransmitted request: cached answer (§2.1)
                self.retransmissions += 1
                return
            raise ProtocolError(f"request message ID {msg.message_id} outside the window (expect {ctx.peer_mid})")
        try:
            payloads = decrypt_message(msg, ctx.suite, ctx.keys, not ctx.initiator)
        except IntegrityError as e:
            raise ProtocolError(f"integrity check failed: {e}") from e
        except c.UnsupportedCriticalPayload as e:
            ctx.peer_mid += 1
            self._respond_error(ctx, msg.exchange, msg.message_id, NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, addr,
                                bytes([e.payload_type & 0xFF]))
            return
        except IkeDecodeError:
            ctx.peer_mid += 1
            self._respond_error(ctx, msg.exchange, msg.message_id, NotifyType.INVALID_SYNTAX, addr)
            return
        self.last_rx = now
        ctx.peer_mid += 1
        ctx.last_response = None
        if marker and not self.is_ue:
            self.natt = True  # the peer floated to port 4500 (NAT or MOBIKE, RFC 4555 §3.3): answer there
            self.local_addr = (self.local_addr[0], NATT_PORT)  # and we talk on 4500 too (events, NAT-D)
        if addr != self.remote_addr and not self.is_ue and (msg.exchange == ExchangeType.IKE_AUTH
                                                            or (self.natt and not self.mobike)):
            self.remote_addr = addr  # RFC 7296 §2.23: follow the peer behind a NAT
        allowed = REQUEST_TABLE.get(self.state, frozenset())
        if ctx is self.old_ctx:
            allowed = frozenset({ExchangeType.INFORMATIONAL})
        if msg.exchange not in allowed:
            if self.state in (SaState.INIT_DONE, SaState.EAP_IN_PROGRESS, SaState.EAP_DONE):
                self._respond_error(ctx, msg.exchange, msg.message_id, NotifyType.INVALID_SYNTAX, addr)
                return
            raise ProtocolError(f"{c._enum_or_int(ExchangeType, msg.exchange)!r} request in state {self.state.value}")
        try:
            if msg.exchange == ExchangeType.IKE_AUTH:
                self._on_auth_request(msg.message_id, payloads, addr, now)
            elif msg.exchange == ExchangeType.INFORMATIONAL:
                self._on_informational(ctx, msg.message_id, payloads, addr, now)
            elif msg.exchange == ExchangeType.CREATE_CHILD_SA:
                self._on_create_child_request(ctx, msg.message_id, payloads, addr, now)
        except ProtocolError as e:
            if e.notify is not None and ctx.last_response is None and self.state != SaState.CLOSED:
                self._respond_error(ctx, msg.exchange, msg.message_id, e.notify, addr, e.data)
            raise
        self._kick(now)

    def _ctx_for(self, msg: IkeMessage) -> _Ctx:
        for ctx in (self.ctx, self.old_ctx):
            if ctx is None:
                continue
            if msg.exchange == ExchangeType.IKE_SA_INIT and msg.spi_i == ctx.spi_i:
                return ctx
            if msg.spi_i == ctx.spi_i and msg.spi_r == ctx.spi_r:
                return ctx
        raise ProtocolError("SPIs match no IKE SA of this session")

    def _dispatch_response(self, ctx: _Ctx, p: _Pending, payloads: list, now: float) -> None:
        kind = p.kind
        if kind == "auth":
            self._on_auth_response(p, payloads, now)
        elif kind == "dpd":
            pass
        elif kind == "delete-ike":
            if ctx is self.old_ctx:
                self._drop_old_ctx()
            else:
                self._close(ev.IkeSaDeleted(self.sa_id, "deleted locally"))
        elif kind == "delete-child":
            ch: ChildSa = p.info["child"]
            if ch in self.children:
                self.children.remove(ch)
                self._emit(ev.ChildSaDeleted(self.sa_id, ch.spi_in, ch.spi_out))
        elif kind == "create-child":
            self._on_create_child_response(p, payloads, now)
        elif kind == "rekey-ike":
            self._on_rekey_ike_response(p, payloads, now)
        elif kind == "mobike":
            self._on_mobike_response(p, payloads, now)
        elif kind == "auth-failed-notice":
            pass

    # ------------------------------------------------------------------ INFORMATIONAL

    def _on_informational(self, ctx: _Ctx, mid: int, payloads: list, addr: Addr, now: float) -> None:
        out: list = []
        deletes = [x for x in payloads if isinstance(x, c.DeletePayload)]
        notifies = [x for x in payloads if isinstance(x, NotifyPayload)]
        if any(n.type == NotifyType.AUTHENTICATION_FAILED for n in notifies):
            self._respond(ctx, ExchangeType.INFORMATIONAL, mid, [], addr)
            self._close(ev.AuthenticationFailed(self.sa_id, "peer rejected our AUTH", True))
            return
        for d in deletes:
            if d.protocol == ProtocolId.IKE:
                self._respond(ctx, ExchangeType.INFORMATIONAL, mid, [], addr)
                if ctx is self.old_ctx:
                    self._drop_old_ctx()
                else:
                    self._close(ev.IkeSaDeleted(self.sa_id, "deleted by peer"))
                return
        removed: list[ChildSa] = []
        for d in deletes:
            if d.protocol != ProtocolId.ESP:
                continue
            for spi in d.spis:
                ch = next((x for x in self.children if x.spi_out == _u32(spi)), None)
                if ch is not None and ch not in removed:
                    removed.append(ch)
        if removed:
            out.append(c.DeletePayload(ProtocolId.ESP, tuple(ch.spi_in.to_bytes(4, "big") for ch in removed)))
        # RFC 4555 §3.5/§5.4 return routability: COOKIE2 is echoed unchanged (strongSwan closes the SA otherwise)
        out += [NotifyPayload(NotifyType.COOKIE2, n.data) for n in notifies if n.type == NotifyType.COOKIE2]
        if any(n.type == NotifyType.UPDATE_SA_ADDRESSES for n in notifies):
            if not self.mobike or self.is_ue:
                raise ProtocolError("UPDATE_SA_ADDRESSES without MOBIKE", NotifyType.INVALID_SYNTAX)
            self.remote_addr = addr
            msg_like = IkeMessage(ExchangeType.INFORMATIONAL, mid, ctx.spi_i, ctx.spi_r, payloads=notifies)
            self._check_nat(msg_like, ctx.spi_i, ctx.spi_r)
            out += [NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, _nat_hash(ctx.spi_i, ctx.spi_r, self.local_addr)),
                    NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, _nat_hash(ctx.spi_i, ctx.spi_r, addr))]
            self._respond(ctx, ExchangeType.INFORMATIONAL, mid, out, addr)
            self._emit(ev.IkeSaAddressesUpdated(self.sa_id, self.local_addr, self.remote_addr, self.nat_detected))
        else:
            self._respond(ctx, ExchangeType.INFORMATIONAL, mid, out, addr)
        for ch in removed:
            self.children.remove(ch)
            self._emit(ev.ChildSaDeleted(self.sa_id, ch.spi_in, ch.spi_out))

    def _drop_old_ctx(self) -> None:
        if self.old_ctx is not None:
            self._on_spi(self, self.old_ctx.local_spi, False)
            self.old_ctx = None

    # ------------------------------------------------------------------ CREATE_CHILD_SA

    def _on_create_child_request(self, ctx: _Ctx, mid: int, payloads: list, addr: Addr, now: float) -> None:
        sa = next((x for x in payloads if isinstance(x, c.SaPayload)), None)
        nonce = next((x for x in payloads if isinstance(x, c.NoncePayload)), None)
        if sa is None or nonce is None:
            raise ProtocolError("CREATE_CHILD_SA without SA/Ni", NotifyType.INVALID_SYNTAX)
        if sa.proposals and sa.proposals[0].protocol == ProtocolId.IKE:
            self._on_rekey_ike_request(ctx, mid, payloads, sa, nonce, addr, now)
            return
        rekey = next((x for x in payloads if isinstance(x, NotifyPayload) and x.type == NotifyType.REKEY_SA), None)
        old = None
        if rekey is not None:
            old = next((x for x in self.children if x.spi_out == _u32(rekey.spi)), None)
            if old is None:
                self._respond(ctx, ExchangeType.CREATE_CHILD_SA, mid,
                              [NotifyPayload(NotifyType.CHILD_SA_NOT_FOUND, protocol=ProtocolId.ESP, spi=rekey.spi)],
                              addr)
                return
        nr = self.rng(self.config.nonce_len)

        def ke_shared(group: int, ke: c.KePayload):
            k = dhmod.generate(group, self.rng)
            try:
                return k.shared_secret(ke.data), k.public
            except dhmod.DhError as e:
                raise ProtocolError(str(e), NotifyType.INVALID_SYNTAX) from e

        out, ch = self._accept_child(payloads, nonce.data, nr, now, ke_shared, old)
        out = [c.NoncePayload(nr) if p == ("NONCE",) else p for p in out]
        self._respond(ctx, ExchangeType.CREATE_CHILD_SA, mid, out, addr)
        if ch is not None:
            self._add_child(ch, old, now)
            if old is not None:
                self._note_rekey(old, nonce.data, nr, ch, False, now)

    def create_child(self, now: float, child: ChildConfig | None = None) -> None:
        """Queue a CREATE_CHILD_SA for an additional CHILD SA (RFC 7296 §1.3.1)."""
        cfg = child or self.config.child or ChildConfig()

        def go(t: float) -> None:
            offer = self._make_child_offer(cfg, with_dh=True, rekey_of=None)
            offer.nonce = self.rng(self.config.nonce_len)
            self._request(self.ctx, ExchangeType.CREATE_CHILD_SA, self._child_offer_payloads(offer, nonce=True),
                          "create-child", t, offer=offer)
        self._enqueue(go, now)

    def rekey_child(self, spi_in: int, now: float) -> None:
        """Queue a rekey of the CHILD SA whose inbound SPI is ``spi_in`` (RFC 7296 §2.8)."""
        ch = next((x for x in self.children if x.spi_in == spi_in), None)
        if ch is None:
            raise ProtocolError(f"no CHILD SA with SPI {spi_in:#x}")
        if ch.rekeyed:
            return
        ch.rekeyed = True  # no automatic rekey while this one is queued

        def go(t: float) -> None:
            if ch not in self.children or ch.replaced:  # the peer rekeyed it meanwhile
                return
            offer = self._make_child_offer(ch.policy or self.config.child or ChildConfig(), with_dh=True,
                                           rekey_of=ch)
            offer.nonce = self.rng(self.config.nonce_len)
            self._request(self.ctx, ExchangeType.CREATE_CHILD_SA, self._child_offer_payloads(offer, nonce=True),
                          "create-child", t, offer=offer)
        self._enqueue(go, now)

    def _on_create_child_response(self, p: _Pending, payloads: list, now: float) -> None:
        offer: _ChildOffer = p.info["offer"]
        nonce = next((x for x in payloads if isinstance(x, c.NoncePayload)), None)
        if nonce is None and not any(isinstance(x, NotifyPayload) and x.type < 16384 for x in payloads):
            self._emit(ev.ChildSaFailed(self.sa_id, NotifyType.INVALID_SYNTAX, "no Nr"))
            return
        if offer.rekey_of is not None:
            offer.rekey_of.rekeyed = False
        ch = self._finish_child(offer, payloads, offer.nonce, nonce.data if nonce else b"", None, now, ike_auth=False)
        if ch is None and offer.rekey_of is not None:
            offer.rekey_of.created = now  # try again one rekey period later
        if ch is not None and offer.rekey_of is not None:
            old = offer.rekey_of
            old.rekeyed = True
            # a known collision we lose (our new SA has the lowest nonce): the old SA is the winner's to
            # delete; deleting it too made strongSwan drop its new SA as well, leaving none (RFC 7296 §2.8.1)
            peer_x = [x for x in old.rekey_exchanges if not x[3]]
            if not (peer_x and min(offer.nonce, nonce.data) < min(peer_x[0][0], peer_x[0][1])):
                self.delete_child(old.spi_in, now)
            self._note_rekey(old, offer.nonce, nonce.data, ch, True, now)

    def delete_child(self, spi_in: int, now: float) -> None:
        """Queue an INFORMATIONAL Delete for a CHILD SA (RFC 7296 §1.4.1)."""
        ch = next((x for x in self.children if x.spi_in == spi_in), None)
        if ch is None or ch.deleting:
            return
        ch.deleting = True

        def go(t: float) -> None:
            if ch not in self.children:
                return
            self._request(self.ctx, ExchangeType.INFORMATIONAL,
                          [c.DeletePayload(ProtocolId.ESP, (ch.spi_in.to_bytes(4, "big"),))], "delete-child", t,
                          child=ch)
        self._enqueue(go, now)

    # ------------------------------------------------------------------ IKE SA rekey (§2.18)

    def rekey_ike(self, now: float) -> None:
        def go(t: float) -> None:
            if self.old_ctx is not None:
                return
            spi = self._new_spi8()
            ni = self.rng(self.config.nonce_len)
            k = dhmod.generate(self.ctx.suite.dh, self.rng)
            props = tuple(p.to_proposal(i + 1, spi) for i, p in enumerate(self.config.ike_proposals))
            ps = [c.SaPayload(props), c.NoncePayload(ni), c.KePayload(k.group, k.public)]
            self._on_spi(self, spi, True)
            self._request(self.ctx, ExchangeType.CREATE_CHILD_SA, ps, "rekey-ike", t, spi=spi, ni=ni, dh=k,
                          props=props)
        self._enqueue(go, now)

    def _install_new_ctx(self, spi_i: bytes, spi_r: bytes, initiator: bool, suite: IkeSuite, shared: bytes,
                         ni: bytes, nr: bytes, now: float) -> None:
        old = self.ctx
        seed = rekey_skeyseed(old.suite.prf, old.keys.sk_d, shared, ni, nr)
        new = _Ctx(spi_i, spi_r, initiator, suite, derive_ike_keys(suite, seed, ni, nr, spi_i, spi_r))
        self.old_ctx = old
        self.ctx = new
        self._schedule_ike_rekey(now)
        self._emit(ev.IkeSaRekeyed(self.sa_id, old.spi_i, old.spi_r, spi_i, spi_r))

    def _on_rekey_ike_request(self, ctx: _Ctx, mid: int, payloads: list, sa: c.SaPayload, nonce: c.NoncePayload,
                              addr: Addr, now: float) -> None:
        ke = next((x for x in payloads if isinstance(x, c.KePayload)), None)
        # our own IKE rekey is in flight: answer TEMPORARY_FAILURE (RFC 7296 §2.25) rather than install a
        # second new SA (a collision resolved by nonces, §2.8.2, is not implemented; found with strongSwan)
        own_rekey = ctx.pending is not None and ctx.pending.kind == "rekey-ike"
        if ke is None or self.old_ctx is not None or ctx is not self.ctx or own_rekey:
            self._respond_error(ctx, ExchangeType.CREATE_CHILD_SA, mid, NotifyType.TEMPORARY_FAILURE
                                if ke is not None else NotifyType.INVALID_SYNTAX, addr)
            return
        chosen = select_ike_proposal(sa, self.config.ike_proposals, ke.group)
        if chosen is None:
            self._respond_error(ctx, ExchangeType.CREATE_CHILD_SA, mid, NotifyType.NO_PROPOSAL_CHOSEN, addr)
            return
        prop, suite = chosen
        if suite.dh != ke.group:
            self._respond(ctx, ExchangeType.CREATE_CHILD_SA, mid, [c.notify_invalid_ke(suite.dh)], addr)
            return
        peer_prop = next(p for p in sa.proposals if p.num == prop.num and p.protocol == ProtocolId.IKE)
        if len(peer_prop.spi) != 8:
            raise ProtocolError("IKE rekey proposal without an 8-octet SPI", NotifyType.INVALID_SYNTAX)
        k = dhmod.generate(suite.dh, self.rng)
        try:
            shared = k.shared_secret(ke.data)
        except dhmod.DhError as e:
            raise ProtocolError(str(e), NotifyType.INVALID_SYNTAX) from e
        spi = self._new_spi8()
        nr = self.rng(self.config.nonce_len)
        ps = [c.SaPayload((c.Proposal(prop.num, ProtocolId.IKE, spi, prop.transforms),)), c.NoncePayload(nr),
              c.KePayload(k.group, k.public)]
        self._respond(ctx, ExchangeType.CREATE_CHILD_SA, mid, ps, addr)
        self._on_spi(self, spi, True)
        self._install_new_ctx(peer_prop.spi, spi, False, suite, shared, nonce.data, nr, now)

    def _on_rekey_ike_response(self, p: _Pending, payloads: list, now: float) -> None:
        info = p.info
        sa = next((x for x in payloads if isinstance(x, c.SaPayload)), None)
        nonce = next((x for x in payloads if isinstance(x, c.NoncePayload)), None)
        ke = next((x for x in payloads if isinstance(x, c.KePayload)), None)
        if sa is None or nonce is None or ke is None or len(sa.proposals) != 1 or len(sa.proposals[0].spi) != 8:
            self._on_spi(self, info["spi"], False)
            self.drops.append("IKE rekey refused or malformed; keeping the current IKE SA")
            return
        suite = _suite_from_ike_proposal(c.Proposal(sa.proposals[0].num, ProtocolId.IKE, b"",
                                                    sa.proposals[0].transforms),
                                         tuple(c.Proposal(q.num, q.protocol, b"", q.transforms) for q in info["props"]))
        dhk: dhmod.DhPrivateKey = info["dh"]
        if ke.group != dhk.group:
            self._on_spi(self, info["spi"], False)
            raise ProtocolError("IKE rekey KE group mismatch")
        shared = dhk.shared_secret(ke.data)
        self._install_new_ctx(info["spi"], sa.proposals[0].spi, True, suite, shared, info["ni"], nonce.data, now)
        old = self.old_ctx
        old.pending = None
        data = self._encrypt(old, ExchangeType.INFORMATIONAL, old.my_mid, False, [c.DeletePayload(ProtocolId.IKE)])
        old.pending = _Pending(ExchangeType.INFORMATIONAL, old.my_mid, data, "delete-ike",
                               now + self._timers().retransmit_timeout)
        self._send_raw(data, self.remote_addr)

    # ------------------------------------------------------------------ delete, DPD, MOBIKE

    def delete(self, now: float) -> None:
        """Delete the IKE SA (INFORMATIONAL with D(IKE)); IkeSaDeleted follows the answer."""
        if self.state != SaState.ESTABLISHED:
            self._close(ev.IkeSaDeleted(self.sa_id, "deleted locally before establishment"))
            return
        self._queue.clear()

        def go(t: float) -> None:
            self._request(self.ctx, ExchangeType.INFORMATIONAL, [c.DeletePayload(ProtocolId.IKE)], "delete-ike", t)
        self._enqueue(go, now)  # after whatever is outstanding (window size 1)

    def liveness_check(self, now: float) -> None:
        """Send an empty INFORMATIONAL request (RFC 7296 §1.4, dead peer detection)."""
        def go(t: float) -> None:
            self._request(self.ctx, ExchangeType.INFORMATIONAL, [], "dpd", t)
        self._enqueue(go, now)

    def update_addresses(self, new_local: Addr, now: float, new_remote: Addr | None = None) -> None:
        """MOBIKE (RFC 4555 §3.5): move the IKE SA to a new local address."""
        if not self.is_ue:
            raise ProtocolError("only the original initiator updates addresses")
        if not self.mobike:
            raise ProtocolError("MOBIKE was not negotiated")
        port = NATT_PORT if self.natt else self.local_addr[1]
        self.local_addr = (new_local[0], new_local[1] if new_local[1] else port)
        if new_remote is not None:
            self.remote_addr = new_remote

        def go(t: float) -> None:
            ctx = self.ctx
            ps = [NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES),
                  NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, _nat_hash(ctx.spi_i, ctx.spi_r, self.local_addr)),
                  NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP,
                                _nat_hash(ctx.spi_i, ctx.spi_r, self.remote_addr))]
            self._request(ctx, ExchangeType.INFORMATIONAL, ps, "mobike", t)
        self._enqueue(go, now)  # an outstanding request keeps being retransmitted, now from the new address

    def _on_mobike_response(self, p: _Pending, payloads: list, now: float) -> None:
        msg_like = IkeMessage(ExchangeType.INFORMATIONAL, p.mid, self.ctx.spi_i, self.ctx.spi_r,
                              payloads=[x for x in payloads if isinstance(x, NotifyPayload)])
        self._check_nat(msg_like, self.ctx.spi_i, self.ctx.spi_r)
        self._emit(ev.IkeSaAddressesUpdated(self.sa_id, self.local_addr, self.remote_addr, self.nat_detected))

    # ------------------------------------------------------------------ timers

    def _schedule_ike_rekey(self, now: float) -> None:
        t = self._timers().ike_rekey_time
        self._ike_rekey_at = now + t if t else None
        self._ike_created = now

    def peer_alive(self, now: float) -> None:
        """Traffic from the peer was seen elsewhere (e.g. valid inbound ESP): postpone DPD."""
        self.last_rx = max(self.last_rx, now)

    def next_deadline(self) -> float | None:
        if self.state == SaState.CLOSED:
            return None
        ds = []
        for ctx in (self.ctx, self.old_ctx):
            if ctx is not None and ctx.pending is not None:
                ds.append(ctx.pending.deadline)
        t = self._timers()
        if self.state == SaState.ESTABLISHED:
            if t.dpd_interval and self.ctx.pending is None:
                ds.append(self.last_rx + t.dpd_interval)
            if self._ike_rekey_at is not None:
                ds.append(self._ike_rekey_at)
            if t.child_rekey_time:
                ds += [ch.created + t.child_rekey_time for ch in self.children if not ch.rekeyed]
            if t.child_lifetime:
                ds += [ch.created + t.child_lifetime for ch in self.children if not ch.deleting]
            if t.ike_lifetime and self._ike_created is not None and not self._expiring:
                ds.append(self._ike_created + t.ike_lifetime)
        elif not self.is_ue and self.state != SaState.IDLE:
            ds.append(self.created + t.half_open_timeout)
        return min(ds) if ds else None

    def handle_timer(self, now: float) -> None:
        if self.state == SaState.CLOSED:
            return
        t = self._timers()
        for ctx in (self.ctx, self.old_ctx):
            if ctx is None or ctx.pending is None or ctx.pending.deadline > now:
                continue
            p = ctx.pending
            if p.sent >= t.retransmit_tries:
                if ctx is self.old_ctx:
                    ctx.pending = None
                    self._drop_old_ctx()
                    continue
                self._close(ev.PeerDead(self.sa_id, p.exchange))
                return
            p.sent += 1
            p.deadline = now + t.retransmit_timeout * (t.retransmit_factor ** (p.sent - 1))
            self.retransmissions += 1
            self._send_raw(p.data, self.remote_addr)
        if self.state == SaState.ESTABLISHED:
            if t.dpd_interval and self.ctx.pending is None and not self._queue and now >= self.last_rx + t.dpd_interval:
                self.liveness_check(now)
            if self._ike_rekey_at is not None and now >= self._ike_rekey_at:
                self._ike_rekey_at = None
                self.rekey_ike(now)
            if t.child_rekey_time:
                for ch in list(self.children):
                    if not ch.rekeyed and now >= ch.created + t.child_rekey_time:
                        self.rekey_child(ch.spi_in, now)
            if t.child_lifetime:
                for ch in list(self.children):
                    if not ch.deleting and now >= ch.created + t.child_lifetime:
                        self.delete_child(ch.spi_in, now)
            if t.ike_lifetime and self._ike_created is not None and not self._expiring \
                    and now >= self._ike_created + t.ike_lifetime:
                self._expiring = True
                self.delete(now)
        elif not self.is_ue and self.state != SaState.IDLE and now >= self.created + t.half_open_timeout:
            self._close(ev.IkeSaFailed(self.sa_id, None, "half-open IKE SA timed out")
                        if self.state != SaState.INIT_DONE else None)


@lru_cache(maxsize=16)
def _ts_any(version: int, ip_protocol: int) -> TrafficSelector:
    """The all-addresses selector of a family (immutable, so one object serves every CHILD SA)."""
    return TrafficSelector.any(version, ip_protocol)


@lru_cache(maxsize=256)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IKE endpoint address parsed once (the same few addresses come back on every message)."""
    return ipaddress.ip_address(text)


@lru_cache(maxsize=32)
def _cert_der(cert: x509.Certificate) -> bytes:
    """Our own certificate's DER for the CERT payload, encoded once per certificate."""
    return cert.public_bytes(serialization.Encoding.DER)


@lru_cache(maxsize=64)
def _load_cert(der: bytes) -> x509.Certificate:
    """A peer's certificate parsed once per DER encoding (a UE sees the same PDN GW certificate on every
    attach); a malformed one raises ValueError each time (exceptions are not cached)."""
    return x509.load_der_x509_certificate(der)


@lru_cache(maxsize=64)
def _check_certificate(cert: x509.Certificate, trusted: tuple[x509.Certificate, ...]) -> None:
    """:func:`authmod.check_certificate` remembered for certificates that passed (it is a pure function
    of the two: issuer signature only, no validity period or revocation); failures are never cached."""
    authmod.check_certificate(cert, trusted)


def _ct_eq(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


def _narrow(requested: tuple[TrafficSelector, ...], allowed: list[TrafficSelector]) -> tuple[TrafficSelector, ...]:
    out: list[TrafficSelector] = []
    for r in requested:
        for a in allowed:
            i = r.intersect(a)
            if i is not None and i not in out:
                out.append(i)
    return tuple(out)


def _req_ip6(cp: c.CpPayload):
    for a in cp.attributes:
        if a.type == CpAttributeType.INTERNAL_IP6_ADDRESS and len(a.value) == 17:
            addr = ipaddress.IPv6Address(a.value[:16])
            return addr if int(addr) else None
    return None


def _req_ip4(cp: c.CpPayload):
    for a in cp.attributes:
        if a.type == CpAttributeType.INTERNAL_IP4_ADDRESS and len(a.value) == 4:
            addr = ipaddress.IPv4Address(a.value)
            return addr if int(addr) else None
    return None


def _cp_reply(req: c.CpPayload, asg: CpAssignment) -> c.CpPayload:
    """CFG_REPLY with the requested attributes we can fill (RFC 7296 §2.19, RFC 5026 §4.2.1)."""
    attrs: list[CpAttribute] = []
    asked = [a.type for a in req.attributes]
    plen = asg.home_prefix.prefixlen if asg.home_prefix is not None else 64
    for t in dict.fromkeys(asked):
        if t == CpAttributeType.INTERNAL_IP6_ADDRESS and asg.home_address is not None:
            attrs.append(c.cp_ip6_address(asg.home_address, plen))
        elif t == CpAttributeType.MIP6_HOME_PREFIX and asg.home_prefix is not None:
            attrs.append(CpAttribute(t, c.Mip6HomePrefix(asg.home_prefix, asg.prefix_lifetime).encode()))
        elif t == CpAttributeType.HOME_AGENT_ADDRESS and (asg.ha_address or asg.ha_address4):
            attrs.append(c.cp_home_agent_address(asg.ha_address, asg.ha_address4))
        elif t == CpAttributeType.INTERNAL_IP4_ADDRESS and asg.ipv4 is not None:
            attrs.append(CpAttribute(t, asg.ipv4.packed))
        elif t == CpAttributeType.INTERNAL_IP4_NETMASK and asg.ipv4_netmask is not None:
            attrs.append(CpAttribute(t, asg.ipv4_netmask.packed))
        elif t == CpAttributeType.INTERNAL_IP4_DNS:
            attrs += [CpAttribute(t, d.packed) for d in asg.dns4]
        elif t == CpAttributeType.INTERNAL_IP6_DNS:
            attrs += [CpAttribute(t, d.packed) for d in asg.dns6]
    return c.CpPayload(CfgType.CFG_REPLY, tuple(attrs))
