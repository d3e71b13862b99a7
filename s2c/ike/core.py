"""The two IKEv2 roles as sans-IO cores (RFC 7296): :class:`IkeInitiator` (UE) and
:class:`IkeResponder` (PDN GW, many IKE SAs, COOKIE protection, address allocation).

Inputs: ``receive_datagram(data, addr, now)``, ``handle_timer(now)`` and commands.
Outputs: ``datagrams_to_send(now)``, ``next_event()``, ``get_timer()``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import Counter, deque
from typing import Callable

from s2c.codec import ikev2 as c
from s2c.codec.ikev2 import ExchangeType, IkeDecodeError, IkeMessage, NotifyPayload, NotifyType
from s2c.crypto import dh as dhmod
from s2c.ike import events as ev
from s2c.ike.config import Allocator, ChildConfig, IkeConfig
from s2c.ike.sa import Addr, IkeSa, ProtocolError, SaState, select_ike_proposal

Rng = Callable[[int], bytes]


def _strip_marker(data: bytes) -> bytes:
    """Datagrams from port 4500 start with the 4-octet non-ESP marker (RFC 3948 §2.2)."""
    if len(data) > 4 and data[:4] == c.NON_ESP_MARKER:
        return data[4:]
    return data


class _CoreBase:
    def __init__(self) -> None:
        self._events: deque[ev.IkeEvent] = deque()
        self._out: list[tuple[bytes, Addr]] = []
        self.stats: Counter[str] = Counter()
        self.errors: deque[str] = deque(maxlen=100)

    def next_event(self) -> ev.IkeEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def _drop(self, kind: str, reason: str) -> None:
        self.stats[kind] += 1
        self.errors.append(reason)

    def _collect(self, sa: IkeSa) -> None:
        if sa.out:
            self._out += sa.out
            sa.out = []


class IkeInitiator(_CoreBase):
    """The UE side: one IKE session towards one responder.

    ``local_addr``/``remote_addr`` are (ip, port) tuples (port 500; NAT-T moves both to 4500).
    A datagram starting with four zero octets must leave from the local port 4500 socket.
    """

    def __init__(self, config: IkeConfig, local_addr: Addr, remote_addr: Addr, rng: Rng, sa_id: int = 1) -> None:
        super().__init__()
        self.config = config
        self.rng = rng
        self._local = local_addr
        self._remote = remote_addr
        self._next_id = sa_id
        self.sa = self._new_sa()

    def _new_sa(self) -> IkeSa:
        sa = IkeSa(self.config, is_initiator=True, sa_id=self._next_id, rng=self.rng, local_addr=self._local,
                   remote_addr=self._remote, events=self._events)
        self._next_id += 1
        return sa

    # -- properties the daemon reads
    @property
    def sa_id(self) -> int:
        return self.sa.sa_id

    @property
    def state(self) -> SaState:
        return self.sa.state

    @property
    def local_addr(self) -> Addr:
        return self.sa.local_addr

    @property
    def remote_addr(self) -> Addr:
        return self.sa.remote_addr

    @property
    def children(self):
        return list(self.sa.children)

    # -- commands
    def initiate(self, now: float) -> None:
        """Start IKE_SA_INIT (a closed session is replaced by a fresh one with a new sa_id)."""
        if self.sa.state == SaState.CLOSED:
            self._local, self._remote = self.sa.local_addr, self.sa.remote_addr
            self.sa = self._new_sa()
        self.sa.start(now)
        self._collect(self.sa)

    def _cmd(self, fn, *args) -> None:
        try:
            fn(*args)
        finally:
            self._collect(self.sa)

    def delete(self, now: float) -> None:
        self._cmd(self.sa.delete, now)

    def rekey_ike(self, now: float) -> None:
        self._cmd(self.sa.rekey_ike, now)

    def rekey_child(self, spi_in: int, now: float) -> None:
        self._cmd(self.sa.rekey_child, spi_in, now)

    def create_child(self, now: float, child: ChildConfig | None = None) -> None:
        self._cmd(self.sa.create_child, now, child)

    def delete_child(self, spi_in: int, now: float) -> None:
        self._cmd(self.sa.delete_child, spi_in, now)

    def liveness_check(self, now: float) -> None:
        self._cmd(self.sa.liveness_check, now)

    def update_addresses(self, new_local: Addr, now: float, new_remote: Addr | None = None) -> None:
        self._cmd(self.sa.update_addresses, new_local, now, new_remote)

    def send_eap_response(self, eap: bytes, now: float) -> None:
        self._cmd(self.sa.send_eap_response, eap, now)

    def peer_alive(self, now: float) -> None:
        """Valid inbound ESP (or other proof of life): postpones DPD."""
        self.sa.peer_alive(now)

    def provide_eap_result(self, msk: bytes | None, now: float) -> None:
        self._cmd(self.sa.provide_eap_result, msk, now)

    # -- inputs
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        data = bytes(data)
        marker = len(data) > 4 and data[:4] == c.NON_ESP_MARKER
        data = _strip_marker(data)
        try:
            msg = c.parse_message(data)
        except IkeDecodeError as e:
            self._drop("malformed", str(e))
            return
        if msg.is_initiator and msg.exchange == ExchangeType.IKE_SA_INIT:
            self._drop("unexpected", "IKE_SA_INIT request at the initiator")
            return
        try:
            self.sa.handle_message(msg, addr, now, marker)
        except ProtocolError as e:
            self._drop("protocol_error", str(e))
        finally:
            self._collect(self.sa)

    def handle_timer(self, now: float) -> None:
        t = self.sa.next_deadline()
        if t is not None and t <= now:
            self.sa.handle_timer(now)
            self._collect(self.sa)

    def get_timer(self) -> float | None:
        return self.sa.next_deadline()


class IkeResponder(_CoreBase):
    """The PDN GW side: answers IKE_SA_INIT from any peer and keeps one :class:`IkeSa` per session.

    ``allocator(AddressRequest) -> CpAssignment | None`` hands out Home Addresses / virtual IPs;
    ``cookie_threshold``: ask for COOKIEs (RFC 7296 §2.6) once that many SAs are half-open.
    """

    def __init__(self, config: IkeConfig, local_addr: Addr, rng: Rng, allocator: Allocator | None = None,
                 cookie_threshold: int | None = None, first_sa_id: int = 1) -> None:
        super().__init__()
        self.config = config
        self.local_addr = local_addr
        self.rng = rng
        self.allocator = allocator
        self.cookie_threshold = cookie_threshold
        self._next_id = first_sa_id
        self._sas: dict[int, IkeSa] = {}
        self._by_spi: dict[bytes, IkeSa] = {}
        self._by_init: dict[tuple[str, bytes], IkeSa] = {}
        self._zombies: dict[bytes, tuple[IkeSa, float]] = {}  # closed SAs answering retransmits for a while
        self._spi_reply_second = -1
        self._spi_replies = 0
        self._now = 0.0
        self._cookie_secret = rng(32)
        self._cookie_prev = self._cookie_secret
        self._cookie_ver = 0
        self._cookie_rotated: float | None = None
        self._deferred: list[IkeSa] = []  # SAs whose SK_* derivation waits for idle time
        self._spare_dh: dict[int, dhmod.DhPrivateKey] = {}  # one fresh key per group recently used
        self._spare_groups: set[int] = set()

    def precompute(self) -> int:
        """Idle work for the caller to run after sending what :meth:`datagrams_to_send` gave: derive the
        keys of the SAs just answered (their IKE_AUTH will need them) and make the next IKE_SA_INIT's
        DH key ahead. Each key is used for one SA only (RFC 7296 §2.12 allows reuse; we do not).
        Returns how many derivations and keys it made."""
        n = 0
        deferred, self._deferred = self._deferred, []
        for sa in deferred:
            if sa.state != SaState.CLOSED and sa.precompute():
                n += 1
        for g in self._spare_groups - set(self._spare_dh):
            self._spare_dh[g] = dhmod.generate(g, self.rng)
            n += 1
        return n

    # -- lookups
    def sa(self, sa_id: int) -> IkeSa:
        try:
            return self._sas[sa_id]
        except KeyError:
            raise ProtocolError(f"no IKE session {sa_id}") from None

    def sas(self) -> list[IkeSa]:
        return list(self._sas.values())

    @property
    def half_open(self) -> int:
        return sum(1 for s in self._sas.values() if s.state not in (SaState.ESTABLISHED, SaState.CLOSED))

    # -- commands (by session)
    def _cmd(self, sa_id: int, now: float, name: str, *args) -> None:
        sa = self.sa(sa_id)
        self._now = max(self._now, now)
        try:
            getattr(sa, name)(*args)
        finally:
            self._after(sa)

    def send_eap_request(self, sa_id: int, eap: bytes, now: float) -> None:
        self._cmd(sa_id, now, "send_eap_request", eap, now)

    def prepare_auth(self, sa_id: int, now: float) -> bool:
        """While the AAA server answers the first DER: make this session's IDr + CERT + AUTH for the first
        IKE_AUTH response ahead (see :meth:`IkeSa.prepare_auth`); False when there is nothing to prepare."""
        sa = self._sas.get(sa_id)
        return sa.prepare_auth(now) if sa is not None else False

    def eap_success(self, sa_id: int, msk: bytes | None, now: float, eap: bytes | None = None) -> None:
        self._cmd(sa_id, now, "eap_success", msk, now, eap)

    def eap_failure(self, sa_id: int, now: float, eap: bytes | None = None) -> None:
        self._cmd(sa_id, now, "eap_failure", now, eap)

    def delete(self, sa_id: int, now: float) -> None:
        self._cmd(sa_id, now, "delete", now)

    def rekey_ike(self, sa_id: int, now: float) -> None:
        self._cmd(sa_id, now, "rekey_ike", now)

    def rekey_child(self, sa_id: int, spi_in: int, now: float) -> None:
        self._cmd(sa_id, now, "rekey_child", spi_in, now)

    def delete_child(self, sa_id: int, spi_in: int, now: float) -> None:
        self._cmd(sa_id, now, "delete_child", spi_in, now)

    def create_child(self, sa_id: int, now: float, child: ChildConfig | None = None) -> None:
        self._cmd(sa_id, now, "create_child", now, child)

    def liveness_check(self, sa_id: int, now: float) -> None:
        self._cmd(sa_id, now, "liveness_check", now)

    # -- inputs
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self._now = max(self._now, now)
        data = bytes(data)
        marker = len(data) > 4 and data[:4] == c.NON_ESP_MARKER
        data = _strip_marker(data)
        try:
            msg = c.parse_message(data)
        except c.UnsupportedCriticalPayload as e:
            self._unsupported_critical_in_init(data, e, addr, marker)
            return
        except IkeDecodeError as e:
            self._drop("malformed", str(e))
            return
        if msg.exchange == ExchangeType.IKE_SA_INIT and not msg.is_response:
            self._on_init_request(msg, addr, now, marker)
            return
        local_spi = msg.spi_r if msg.is_initiator else msg.spi_i
        sa = self._by_spi.get(local_spi)
        if sa is None and local_spi in self._zombies:
            sa = self._zombies[local_spi][0]
        if sa is None:
            self._drop("unknown_spi", f"no IKE SA for SPI {local_spi.hex()}")
            self._invalid_ike_spi(msg, addr, now, marker)
            return
        try:
            sa.handle_message(msg, addr, now, marker)
        except ProtocolError as e:
            self._drop("protocol_error", str(e))
        finally:
            self._after(sa)

    def handle_timer(self, now: float) -> None:
        self._now = now
        for spi in [k for k, (_, t) in self._zombies.items() if t <= now]:
            del self._zombies[spi]
        for sa in list(self._sas.values()):
            t = sa.next_deadline()
            if t is not None and t <= now:
                sa.handle_timer(now)
                self._after(sa)

    def get_timer(self) -> float | None:
        ts = [t for t in (sa.next_deadline() for sa in self._sas.values()) if t is not None]
        ts += [t for _, t in self._zombies.values()]
        return min(ts) if ts else None

    def peer_alive(self, sa_id: int, now: float) -> None:
        """Valid inbound ESP (or other proof of life) for this session: postpones DPD."""
        self.sa(sa_id).peer_alive(now)

    # -- internals
    def _invalid_ike_spi(self, msg: IkeMessage, addr: Addr, now: float, marker: bool) -> None:
        """Unprotected INVALID_IKE_SPI answer to a request for an unknown IKE SA (RFC 7296 §2.21.4),
        at most 10 per second; lets a UE notice a restarted PDN GW without waiting for DPD."""
        if msg.is_response:
            return
        second = int(now)
        if second != self._spi_reply_second:
            self._spi_reply_second, self._spi_replies = second, 0
        if self._spi_replies >= 10:
            return
        self._spi_replies += 1
        self.stats["invalid_ike_spi_sent"] += 1
        resp = IkeMessage(msg.exchange, msg.message_id, msg.spi_i, msg.spi_r, not msg.is_initiator, True,
                          [NotifyPayload(NotifyType.INVALID_IKE_SPI)])
        data = c.serialize_message(resp)
        self._out.append(((c.NON_ESP_MARKER + data) if marker else data, addr))

    def _initial_contact(self, new: IkeSa) -> None:
        """INITIAL_CONTACT: forget (without signalling) older IKE SAs with the same peer identity."""
        pid = str(new.peer_id)
        for old in list(self._sas.values()):
            if old is not new and old.peer_id is not None and str(old.peer_id) == pid and \
                    old.state == SaState.ESTABLISHED:
                old._close(ev.IkeSaDeleted(old.sa_id, "replaced (INITIAL_CONTACT)"))
                self._after(old)

    def _on_spi(self, sa: IkeSa, spi: bytes, add: bool) -> None:
        if add:
            self._by_spi[spi] = sa
        elif self._by_spi.get(spi) is sa:
            del self._by_spi[spi]

    def _after(self, sa: IkeSa) -> None:
        self._collect(sa)
        if sa.state == SaState.CLOSED:
            self._sas.pop(sa.sa_id, None)
            t = self.config.timers
            linger = t.retransmit_timeout * sum(t.retransmit_factor ** i for i in range(t.retransmit_tries))
            for k in [k for k, v in self._by_spi.items() if v is sa]:
                del self._by_spi[k]
                if sa.ctx.last_response is not None:
                    self._zombies[k] = (sa, self._now + linger)
            for k in [k for k, v in self._by_init.items() if v is sa]:
                del self._by_init[k]
        elif sa.state == SaState.ESTABLISHED:
            for k in [k for k, v in self._by_init.items() if v is sa]:
                del self._by_init[k]

    def _stateless(self, req: IkeMessage, payloads: list, addr: Addr, marker: bool = False) -> None:
        resp = IkeMessage(ExchangeType.IKE_SA_INIT, 0, req.spi_i, bytes(8), False, True, payloads)
        self._out.append(((c.NON_ESP_MARKER if marker else b"") + c.serialize_message(resp), addr))

    def _unsupported_critical_in_init(self, data: bytes, e: c.UnsupportedCriticalPayload, addr: Addr,
                                      marker: bool = False) -> None:
        try:
            h = c.parse_header(data)
        except IkeDecodeError:
            self._drop("malformed", str(e))
            return
        if h.exchange == ExchangeType.IKE_SA_INIT and not h.is_response:
            req = IkeMessage(ExchangeType.IKE_SA_INIT, 0, h.spi_i)
            self._stateless(req, [NotifyPayload(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, bytes([e.payload_type]))], addr,
                            marker)
        self._drop("unsupported_critical", str(e))

    def _cookie(self, ni: bytes, addr: Addr, spi_i: bytes, secret: bytes, ver: int) -> bytes:
        """Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>) (RFC 7296 §2.6)."""
        ip = ipaddress.ip_address(addr[0]).packed
        return bytes([ver & 0xFF]) + hashlib.sha256(ni + ip + spi_i + secret).digest()

    def _rotate_cookie_secret(self, now: float) -> None:
        if self._cookie_rotated is None:
            self._cookie_rotated = now
        elif now - self._cookie_rotated >= self.config.timers.cookie_secret_lifetime:
            self._cookie_prev = self._cookie_secret
            self._cookie_secret = self.rng(32)
            self._cookie_ver += 1
            self._cookie_rotated = now

    def _cookie_ok(self, msg: IkeMessage, ni: bytes, addr: Addr) -> bool:
        if not msg.payloads or not isinstance(msg.payloads[0], NotifyPayload) or msg.payloads[0].type != NotifyType.COOKIE:
            return False
        got = msg.payloads[0].data
        for secret, ver in ((self._cookie_secret, self._cookie_ver), (self._cookie_prev, self._cookie_ver - 1)):
            if hmac.compare_digest(got, self._cookie(ni, addr, msg.spi_i, secret, ver)):
                return True
        return False

    def _on_init_request(self, msg: IkeMessage, addr: Addr, now: float, marker: bool = False) -> None:
        key = (addr[0], msg.spi_i)
        existing = self._by_init.get(key)
        if existing is not None:
            try:
                existing.handle_message(msg, addr, now, marker)   # retransmission: cached answer
            except ProtocolError as e:
                self._drop("protocol_error", str(e))
            finally:
                self._after(existing)
            return
        if msg.spi_r != bytes(8):
            self._drop("protocol_error", "IKE_SA_INIT request with non-zero SPIr")
            return
        sa_p, ke, nonce = msg.get(c.SaPayload), msg.get(c.KePayload), msg.get(c.NoncePayload)
        if sa_p is None or ke is None or nonce is None or not 16 <= len(nonce.data) <= 256:
            self._drop("protocol_error", "IKE_SA_INIT request lacks SA/KE/Ni")
            return
        self._rotate_cookie_secret(now)
        if self.cookie_threshold is not None and self.half_open >= self.cookie_threshold:
            if not self._cookie_ok(msg, nonce.data, addr):
                self.stats["cookie_sent"] += 1
                self._stateless(msg, [NotifyPayload(NotifyType.COOKIE, self._cookie(
                    nonce.data, addr, msg.spi_i, self._cookie_secret, self._cookie_ver))], addr, marker)
                return
        chosen = select_ike_proposal(sa_p, self.config.ike_proposals, ke.group)
        if chosen is None:
            self.stats["no_proposal_chosen"] += 1
            self._stateless(msg, [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)], addr, marker)
            return
        prop, suite = chosen
        if suite.dh != ke.group:
            self.stats["invalid_ke"] += 1
            self._stateless(msg, [c.notify_invalid_ke(suite.dh)], addr, marker)
            return
        sa = IkeSa(self.config, is_initiator=False, sa_id=self._next_id, rng=self.rng, local_addr=self.local_addr,
                   remote_addr=addr, events=self._events, allocator=self.allocator, on_spi=self._on_spi,
                   on_initial_contact=self._initial_contact)
        try:
            sa.handle_init_request(msg, addr, now, suite, prop, marker, dh=self._spare_dh.pop(suite.dh, None))
        except dhmod.DhError as e:
            self._drop("protocol_error", f"bad KE: {e}")
            return
        self._spare_groups.add(suite.dh)
        if sa.ctx.keys_pending:
            self._deferred.append(sa)
        self._next_id += 1
        self._sas[sa.sa_id] = sa
        self._by_init[key] = sa
        self._after(sa)


def wireshark_ikev2_decryption_table_line(ike_sa: IkeSa | IkeInitiator) -> str:
    """A line for Wireshark's ``ikev2_decryption_table`` UAT (SPIi,SPIr,SK_ei,SK_er,"encr",SK_ai,SK_ar,"integ")."""
    sa = ike_sa.sa if isinstance(ike_sa, IkeInitiator) else ike_sa
    return sa.wireshark_line()
