"""EAP-AKA / EAP-AKA' server (3GPP AAA side), sans-IO (RFC 4187 §4-§6, §9; RFC 5448 §3).

The server never talks to the HSS itself: when it needs an authentication vector it emits
:class:`VectorRequired` and waits for :meth:`AkaServer.provide_vector` (or
:meth:`AkaServer.vector_failed`). Queue style, like :class:`~s2c.eap_aka.peer.AkaPeer`::

    srv = AkaServer(method=EapType.AKA_PRIME, rng=os.urandom)
    srv.start()                          # queues EAP-Request/Identity (or pass the identity)
    srv.receive(eap_response_bytes)      # ProtocolError on illegal input, state unchanged
    ev = srv.next_event()                # VectorRequired(imsi, identity, resync)
    srv.provide_vector(AuthVector(...))  # queues the Challenge
    out = srv.next_message()             # EAP-Request / Success / Failure bytes

A Diameter-fronted AAA can skip :meth:`start` and feed the first EAP-Response/Identity
straight into :meth:`receive`. Failures after a bad Challenge response go through an
AKA-Notification "General failure" (P=1) before EAP-Failure (RFC 4187 §6.3.3).
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable
from enum import Enum

from s2c.codec import eap
from s2c.codec import eap_aka as ea
from s2c.codec.eap import EapCode, EapDecodeError, EapType
from s2c.codec.eap_aka import AkaSubtype, NotificationCode
from s2c.crypto import aka_kdf
from s2c.crypto.aka_kdf import AkaKeys
from s2c.crypto.milenage import AuthVector

from . import common
from .errors import ProtocolError
from .events import AuthenticationFailed, AuthenticationSucceeded, Event, VectorRequired
from .identity import imsi_from_nai

__all__ = ["AkaServer", "ServerState"]


class ServerState(Enum):
    """Server states (RFC 4187 §4-§6 message flow)."""

    START = "start"
    IDENTITY = "identity"  # sent EAP-Request/Identity
    AKA_IDENTITY = "aka_identity"  # sent AKA-Identity with AT_PERMANENT_ID_REQ
    WAIT_VECTOR = "wait_vector"  # emitted VectorRequired
    CHALLENGE = "challenge"  # sent AKA-Challenge
    NOTIFICATION = "notification"  # sent AKA-Notification (failure)
    SUCCESS = "success"
    FAILURE = "failure"


_TABLE: dict[tuple[ServerState, object], str] = {
    (ServerState.START, "identity"): "_on_identity",
    (ServerState.IDENTITY, "identity"): "_on_identity",
    (ServerState.IDENTITY, "nak"): "_on_nak",
    (ServerState.AKA_IDENTITY, AkaSubtype.IDENTITY): "_on_aka_identity",
    (ServerState.AKA_IDENTITY, AkaSubtype.CLIENT_ERROR): "_on_client_error",
    (ServerState.AKA_IDENTITY, "nak"): "_on_nak",
    (ServerState.CHALLENGE, AkaSubtype.CHALLENGE): "_on_challenge",
    (ServerState.CHALLENGE, AkaSubtype.SYNCHRONIZATION_FAILURE): "_on_sync_failure",
    (ServerState.CHALLENGE, AkaSubtype.AUTHENTICATION_REJECT): "_on_auth_reject",
    (ServerState.CHALLENGE, AkaSubtype.CLIENT_ERROR): "_on_client_error",
    (ServerState.CHALLENGE, "nak"): "_on_nak",
    (ServerState.NOTIFICATION, AkaSubtype.NOTIFICATION): "_on_notification",
    (ServerState.NOTIFICATION, AkaSubtype.CLIENT_ERROR): "_on_client_error",
}


class AkaServer:
    """AAA-side EAP-AKA (method 23) or EAP-AKA' (method 50) for one authentication."""

    def __init__(
        self,
        *,
        rng: Callable[[int], bytes],
        method: int = EapType.AKA,
        network_name: bytes = b"WLAN",
        max_resync: int = 1,
        max_identity_rounds: int = 1,
    ) -> None:
        self.method = common.check_method(method)
        if self.method == EapType.AKA_PRIME and not network_name:
            raise ValueError("EAP-AKA' needs a non-empty network name (AT_KDF_INPUT)")
        self.network_name = bytes(network_name)
        self.max_resync = max_resync
        self.max_identity_rounds = max_identity_rounds
        self.state = ServerState.START
        self.imsi: str | None = None
        self.identity: bytes | None = None
        self._rng = rng
        self._req_id: int | None = None
        self._last_request: bytes | None = None
        self._id_msgs = bytearray()
        self._identity_rounds = 0
        self._resyncs = 0
        self._vector: AuthVector | None = None
        self._keys: AkaKeys | None = None
        self._pending_reason = ""
        self._out: deque[bytes] = deque()
        self._events: deque[Event] = deque()

    # -- outputs -------------------------------------------------------------------------------

    def next_message(self) -> bytes | None:
        """Next EAP packet (Request, Success or Failure) for the peer, or None."""
        return self._out.popleft() if self._out else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def retransmit(self) -> None:
        """Queue the outstanding Request again (lower-layer timeout)."""
        if self._last_request is None or self.state in (ServerState.SUCCESS, ServerState.FAILURE, ServerState.WAIT_VECTOR):
            raise ProtocolError("no outstanding request")
        self._out.append(self._last_request)

    # -- commands ------------------------------------------------------------------------------

    def start(self, identity: bytes | None = None) -> None:
        """Begin: send EAP-Request/Identity, or use an identity the lower layer already has."""
        if self.state is not ServerState.START:
            raise ProtocolError("already started")
        if identity is None:
            self._send_request(eap.serialize(eap.identity_request(self._next_id())))
            self.state = ServerState.IDENTITY
        else:
            self._handle_identity(bytes(identity))

    def provide_vector(self, av: AuthVector, *, primed: bool = False) -> None:
        """Answer a :class:`VectorRequired` with a vector from the HSS; queues the Challenge.

        ``primed=True`` (EAP-AKA' only): ``av.ck``/``av.ik`` already are CK'/IK', as the HSS
        returns them on SWx for EAP-AKA' (TS 33.402 §6.2, TS 29.273 §8.2.3.x); they must have
        been derived for this server's ``network_name``.
        """
        if self.state is not ServerState.WAIT_VECTOR:
            raise ProtocolError(f"no vector expected in state {self.state.value}")
        if len(av.rand) != 16 or len(av.autn) != 16 or len(av.ck) != 16 or len(av.ik) != 16 or not 4 <= len(av.xres) <= 16:
            raise ValueError("malformed authentication vector")
        if primed and self.method != EapType.AKA_PRIME:
            raise ValueError("primed (CK'/IK') vectors only for EAP-AKA'")
        assert self.identity is not None
        if primed:
            keys = aka_kdf.derive_aka_prime_keys(self.identity, av.ik, av.ck)
        else:
            keys = common.derive_keys(self.method, self.identity, av.ck, av.ik, av.autn, self.network_name)
        attrs: tuple[ea.Attribute, ...] = (ea.AtRand(av.rand), ea.AtAutn(av.autn))
        if self.method == EapType.AKA_PRIME:
            attrs += (ea.AtKdf(common.KDF_AKA_PRIME), ea.AtKdfInput(self.network_name))
        attrs += (ea.AtCheckcode(common.checkcode(self.method, bytes(self._id_msgs))), ea.AtMac())
        pkt = ea.serialize(ea.AkaMessage(EapCode.REQUEST, self._next_id(), AkaSubtype.CHALLENGE, attrs, method=self.method))
        self._vector = av
        self._keys = keys
        self._send_request(common.sign(self.method, keys.k_aut, pkt))
        self.state = ServerState.CHALLENGE

    def vector_failed(self, reason: str = "no_vector") -> None:
        """The HSS could not supply a vector (unknown user, resync MAC failure, ...): EAP-Failure."""
        if self.state is not ServerState.WAIT_VECTOR:
            raise ProtocolError(f"no vector expected in state {self.state.value}")
        self._fail(self._req_id or 0, reason)

    # -- input ---------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Process one EAP-Response from the peer. Raises :class:`ProtocolError` if illegal."""
        try:
            p = eap.parse(data)
        except EapDecodeError as e:
            raise ProtocolError(f"malformed EAP: {e}") from e
        raw = common.eap_bytes(bytes(data))
        if p.code != EapCode.RESPONSE:
            raise ProtocolError(f"server expects Responses, got Code {p.code}")
        if self.state is not ServerState.START and p.identifier != self._req_id:
            raise ProtocolError(f"Identifier {p.identifier} does not match request {self._req_id}")
        msg: ea.AkaMessage | None = None
        key: object
        if p.type == EapType.IDENTITY:
            key = "identity"
        elif p.type == EapType.NAK:
            key = "nak"
        elif p.type == self.method:
            try:
                msg = ea.from_eap(p)
            except EapDecodeError as e:
                raise ProtocolError(f"malformed EAP-AKA: {e}") from e
            key = msg.subtype
        else:
            key = f"type:{p.type}"
        handler = _TABLE.get((self.state, key))
        if handler is None:
            raise ProtocolError(f"{key!s} not allowed in state {self.state.value}")
        getattr(self, handler)(p, msg, raw)

    # -- helpers -------------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._req_id = (self._rng(1)[0] if self._req_id is None else self._req_id + 1) & 0xFF
        return self._req_id

    def _send_request(self, pkt: bytes) -> None:
        self._last_request = pkt
        self._out.append(pkt)

    def _fail(self, identifier: int, reason: str) -> None:
        self._out.append(eap.serialize(eap.EapPacket(EapCode.FAILURE, identifier)))
        self._last_request = None
        self._keys = None
        self.state = ServerState.FAILURE
        self._events.append(AuthenticationFailed(reason))

    def _notify_failure(self, reason: str) -> None:
        """AKA-Notification "General failure" (P=1, no AT_MAC) before EAP-Failure (RFC 4187 §6.3.3)."""
        self._pending_reason = reason
        note = ea.AkaMessage(EapCode.REQUEST, self._next_id(), AkaSubtype.NOTIFICATION,
                             (ea.AtNotification(NotificationCode.GENERAL_FAILURE),), method=self.method)
        self._send_request(ea.serialize(note))
        self.state = ServerState.NOTIFICATION

    def _handle_identity(self, identity: bytes) -> None:
        imsi = imsi_from_nai(identity, self.method)
        if imsi is None:
            if self._identity_rounds >= self.max_identity_rounds:
                self._fail(self._req_id or 0, "no_permanent_identity")
                return
            self._identity_rounds += 1
            req = ea.serialize(ea.AkaMessage(EapCode.REQUEST, self._next_id(), AkaSubtype.IDENTITY,
                                             (ea.AtPermanentIdReq(),), method=self.method))
            self._id_msgs += req
            self._send_request(req)
            self.state = ServerState.AKA_IDENTITY
            return
        self.imsi = imsi
        self.identity = identity
        self._last_request = None
        self.state = ServerState.WAIT_VECTOR
        self._events.append(VectorRequired(imsi=imsi, identity=identity))

    # -- handlers ------------------------------------------------------------------------------

    def _on_identity(self, p: eap.EapPacket, _msg: None, _raw: bytes) -> None:
        if self.state is ServerState.START:
            self._req_id = p.identifier
        self._handle_identity(p.type_data)

    def _on_nak(self, p: eap.EapPacket, _msg: None, _raw: bytes) -> None:
        self._fail(p.identifier, "peer_nak")

    def _on_aka_identity(self, p: eap.EapPacket, msg: ea.AkaMessage, raw: bytes) -> None:
        self._id_msgs += raw
        ids = msg.get_all(ea.AtIdentity)
        if msg.unknown_non_skippable or len(ids) != 1:
            self._fail(p.identifier, "bad_identity_response")
            return
        self._handle_identity(ids[0].identity)

    def _on_challenge(self, p: eap.EapPacket, msg: ea.AkaMessage, raw: bytes) -> None:
        av, keys = self._vector, self._keys
        assert av is not None and keys is not None
        if msg.unknown_non_skippable:
            return self._notify_failure("unknown_attribute")
        if not common.mac_ok(self.method, keys.k_aut, raw):
            return self._notify_failure("bad_mac")
        res = msg.get_all(ea.AtRes)
        if len(res) != 1 or res[0].bits != len(av.xres) * 8 or not hmac.compare_digest(res[0].res, av.xres):
            return self._notify_failure("res_mismatch")
        cc = msg.get(ea.AtCheckcode)
        mine = common.checkcode(self.method, bytes(self._id_msgs))
        if cc is not None and cc.checkcode and cc.checkcode != mine:
            return self._notify_failure("checkcode")
        assert self.imsi is not None and self.identity is not None
        self._out.append(eap.serialize(eap.EapPacket(EapCode.SUCCESS, p.identifier)))
        self._last_request = None
        self.state = ServerState.SUCCESS
        self._events.append(AuthenticationSucceeded(
            msk=keys.msk, emsk=keys.emsk, imsi=self.imsi, identity=self.identity, method=int(self.method)))
        return None

    def _on_sync_failure(self, p: eap.EapPacket, msg: ea.AkaMessage, _raw: bytes) -> None:
        auts = msg.get_all(ea.AtAuts)
        if len(auts) != 1 or msg.unknown_non_skippable:
            return self._fail(p.identifier, "bad_sync_failure")
        if self._resyncs >= self.max_resync:
            return self._fail(p.identifier, "resync_limit")
        assert self._vector is not None and self.imsi is not None and self.identity is not None
        self._resyncs += 1
        rand = self._vector.rand
        self._vector = None
        self._keys = None
        self._last_request = None
        self.state = ServerState.WAIT_VECTOR
        self._events.append(VectorRequired(imsi=self.imsi, identity=self.identity, resync=(rand, auts[0].auts)))
        return None

    def _on_auth_reject(self, p: eap.EapPacket, _msg: ea.AkaMessage, _raw: bytes) -> None:
        self._fail(p.identifier, "peer_rejected_autn")

    def _on_client_error(self, p: eap.EapPacket, msg: ea.AkaMessage, _raw: bytes) -> None:
        codes = msg.get_all(ea.AtClientErrorCode)
        self._fail(p.identifier, f"client_error:{int(codes[0].code) if codes else 'missing'}")

    def _on_notification(self, p: eap.EapPacket, _msg: ea.AkaMessage, _raw: bytes) -> None:
        self._fail(p.identifier, self._pending_reason or "notification")
