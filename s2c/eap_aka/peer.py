"""EAP-AKA / EAP-AKA' peer (UE side), sans-IO (RFC 4187 §4-§6, §9; RFC 5448 §3).

Usage (queue style, like aioquic)::

    peer = AkaPeer(Usim(k, opc), imsi="001010123456789")
    peer.receive(eap_request_bytes)        # may raise ProtocolError; state unchanged then
    while (out := peer.next_message()) is not None:
        send(out)                          # EAP-Response packets, in order
    while (ev := peer.next_event()) is not None:
        handle(ev)                         # AuthenticationSucceeded / AuthenticationFailed / ...

The peer answers whichever of EAP-AKA / EAP-AKA' the server uses (if listed in ``methods``),
Naks other methods, re-sends its last Response for a retransmitted Request (RFC 3748 §4.1),
and never reads clocks or draws randomness (EAP-AKA full authentication needs none at the peer).
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from s2c.codec import eap
from s2c.codec import eap_aka as ea
from s2c.codec.eap import EapCode, EapDecodeError, EapType
from s2c.codec.eap_aka import AkaSubtype, ClientErrorCode
from s2c.crypto.aka_kdf import AkaKeys

from . import common
from .errors import ProtocolError
from .events import (
    AuthenticationFailed,
    AuthenticationRejected,
    AuthenticationSucceeded,
    Event,
    SynchronizationFailureReported,
)
from .identity import permanent_nai
from .usim import MacFailure, SyncFailure, Usim

__all__ = ["AkaPeer", "PeerState"]


class PeerState(Enum):
    """Peer states: WAITING for a (next) Request, ANSWERED a Challenge, or finished."""

    WAITING = "waiting"
    ANSWERED = "answered"
    SUCCESS = "success"
    FAILURE = "failure"


# Transition table: (state, input) -> handler. Inputs are EAP-level names or AKA subtypes.
_TABLE: dict[tuple[PeerState, object], str] = {
    (PeerState.WAITING, "identity"): "_on_eap_identity",
    (PeerState.WAITING, "eap_notification"): "_on_eap_notification",
    (PeerState.ANSWERED, "eap_notification"): "_on_eap_notification",
    (PeerState.WAITING, "other_method"): "_on_other_method",
    (PeerState.WAITING, AkaSubtype.IDENTITY): "_on_aka_identity",
    (PeerState.WAITING, AkaSubtype.CHALLENGE): "_on_challenge",
    (PeerState.WAITING, AkaSubtype.NOTIFICATION): "_on_aka_notification",
    (PeerState.ANSWERED, AkaSubtype.NOTIFICATION): "_on_aka_notification",
    (PeerState.WAITING, AkaSubtype.REAUTHENTICATION): "_on_unsupported",
    (PeerState.WAITING, "aka_other"): "_on_unsupported",
    (PeerState.ANSWERED, "success"): "_on_success",
    (PeerState.WAITING, "failure"): "_on_failure",
    (PeerState.ANSWERED, "failure"): "_on_failure",
}


class AkaPeer:
    """UE-side EAP-AKA/AKA' method with a software :class:`Usim`."""

    def __init__(
        self,
        usim: Usim,
        imsi: str,
        *,
        mnc_len: int = 2,
        methods: tuple[int, ...] = (EapType.AKA_PRIME, EapType.AKA),
        identity: bytes | None = None,
        network_name: bytes | None = None,
    ) -> None:
        """``identity`` is what the lower layer already sent (e.g. IKEv2 IDi) if no EAP Identity
        round happens; default: the permanent NAI for the method in use. ``network_name``, if
        set, must equal AT_KDF_INPUT (EAP-AKA') or the peer rejects (RFC 5448 §3.1)."""
        if not methods or any(m not in (EapType.AKA, EapType.AKA_PRIME) for m in methods):
            raise ValueError("methods must be a non-empty subset of (AKA_PRIME, AKA)")
        permanent_nai(imsi, mnc_len)  # validates
        self.usim = usim
        self.imsi = imsi
        self.mnc_len = mnc_len
        self.methods = tuple(EapType(m) for m in methods)
        self.network_name = network_name
        self.state = PeerState.WAITING
        self._preset_identity = identity
        self._identity: bytes | None = None  # last identity sent in Response/Identity or AT_IDENTITY
        self._id_msgs = bytearray()  # AKA-Identity round packets, for AT_CHECKCODE
        self._keys: AkaKeys | None = None
        self._method: int | None = None
        self._out: deque[bytes] = deque()
        self._events: deque[Event] = deque()
        self._last_req: bytes | None = None
        self._last_resp: bytes | None = None
        self._failure_reason: str | None = None

    # -- outputs -------------------------------------------------------------------------------

    def next_message(self) -> bytes | None:
        """Next EAP packet to send to the authenticator, or None."""
        return self._out.popleft() if self._out else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    @property
    def identity(self) -> bytes | None:
        """The identity used for key derivation so far (RFC 4187 §7)."""
        return self._identity

    # -- input ---------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Process one EAP packet from the authenticator. Raises :class:`ProtocolError` if illegal."""
        try:
            p = eap.parse(data)
        except EapDecodeError as e:
            raise ProtocolError(f"malformed EAP: {e}") from e
        raw = common.eap_bytes(bytes(data))
        if self.state in (PeerState.SUCCESS, PeerState.FAILURE):
            raise ProtocolError(f"EAP packet after the exchange ended ({self.state.value})")
        if p.code == EapCode.REQUEST and raw == self._last_req and self._last_resp is not None:
            self._out.append(self._last_resp)  # RFC 3748 §4.1 retransmitted Request
            return
        key: object
        msg: ea.AkaMessage | None = None
        if p.code == EapCode.SUCCESS:
            key = "success"
        elif p.code == EapCode.FAILURE:
            key = "failure"
        elif p.code != EapCode.REQUEST:
            raise ProtocolError(f"unexpected EAP Code {p.code}")
        elif p.type == EapType.IDENTITY:
            key = "identity"
        elif p.type == EapType.NOTIFICATION:
            key = "eap_notification"
        elif p.type in self.methods:
            try:
                msg = ea.from_eap(p)
            except EapDecodeError as e:
                raise ProtocolError(f"malformed EAP-AKA: {e}") from e
            key = msg.subtype if isinstance(msg.subtype, AkaSubtype) else "aka_other"
        else:
            key = "other_method"
        handler = _TABLE.get((self.state, key))
        if handler is None:
            raise ProtocolError(f"{key!s} not allowed in state {self.state.value}")
        getattr(self, handler)(p, msg, raw)

    # -- helpers -------------------------------------------------------------------------------

    def _respond(self, req_raw: bytes, pkt: bytes) -> None:
        self._out.append(pkt)
        self._last_req = req_raw
        self._last_resp = pkt

    def _aka(self, req: eap.EapPacket, subtype: int, attrs: tuple[ea.Attribute, ...] = ()) -> bytes:
        return ea.serialize(ea.AkaMessage(EapCode.RESPONSE, req.identifier, subtype, attrs, method=req.type or 0))

    def _client_error(self, req: eap.EapPacket, raw: bytes, why: str) -> None:
        self._failure_reason = f"client_error:{why}"
        self._respond(raw, self._aka(req, AkaSubtype.CLIENT_ERROR,
                                     (ea.AtClientErrorCode(ClientErrorCode.UNABLE_TO_PROCESS_PACKET),)))

    def _reject(self, req: eap.EapPacket, raw: bytes, why: str) -> None:
        self._failure_reason = f"rejected:{why}"
        self._respond(raw, self._aka(req, AkaSubtype.AUTHENTICATION_REJECT))
        self._events.append(AuthenticationRejected(why))

    def _nai(self, method: int) -> bytes:
        return permanent_nai(self.imsi, self.mnc_len, method).encode()

    # -- handlers ------------------------------------------------------------------------------

    def _on_eap_identity(self, p: eap.EapPacket, _msg: None, raw: bytes) -> None:
        ident = self._preset_identity or self._nai(self.methods[0])
        self._identity = ident
        self._respond(raw, eap.serialize(eap.identity_response(p.identifier, ident)))

    def _on_eap_notification(self, p: eap.EapPacket, _msg: None, raw: bytes) -> None:
        self._respond(raw, eap.serialize(eap.notification_response(p.identifier)))

    def _on_other_method(self, p: eap.EapPacket, _msg: None, raw: bytes) -> None:
        self._respond(raw, eap.serialize(eap.nak(p.identifier, list(self.methods))))

    def _on_unsupported(self, p: eap.EapPacket, _msg: ea.AkaMessage, raw: bytes) -> None:
        # Fast re-authentication is not offered by this peer (no AT_NEXT_REAUTH_ID ever accepted).
        self._client_error(p, raw, "unsupported_subtype")

    def _on_aka_identity(self, p: eap.EapPacket, msg: ea.AkaMessage, raw: bytes) -> None:
        if msg.unknown_non_skippable:
            return self._client_error(p, raw, "unknown_attribute")
        reqs = [a for a in msg.attributes if isinstance(a, (ea.AtPermanentIdReq, ea.AtFullauthIdReq, ea.AtAnyIdReq))]
        if len(reqs) > 1:
            return self._client_error(p, raw, "multiple_id_requests")
        attrs: tuple[ea.Attribute, ...] = ()
        if reqs:
            ident = self._nai(msg.method)
            self._identity = ident
            attrs = (ea.AtIdentity(ident),)
        resp = self._aka(p, AkaSubtype.IDENTITY, attrs)
        self._id_msgs += raw + resp
        self._method = msg.method
        self._respond(raw, resp)

    def _on_challenge(self, p: eap.EapPacket, msg: ea.AkaMessage, raw: bytes) -> None:
        method = msg.method
        if msg.unknown_non_skippable:
            return self._client_error(p, raw, "unknown_attribute")
        for t in (ea.AttributeType.AT_RAND, ea.AttributeType.AT_AUTN, ea.AttributeType.AT_MAC):
            if msg.count(t) != 1:
                return self._client_error(p, raw, f"attribute_count:{t.name}")
        rand = msg.get(ea.AtRand).rand  # type: ignore[union-attr]
        autn = msg.get(ea.AtAutn).autn  # type: ignore[union-attr]
        if len(rand) != 16:
            return self._client_error(p, raw, "rand_length")
        name = b""
        kdfs: list[int] = []
        if method == EapType.AKA_PRIME:
            kdfs = [a.kdf for a in msg.get_all(ea.AtKdf)]
            kin = msg.get_all(ea.AtKdfInput)
            if not kdfs or len(kin) != 1 or not kin[0].network_name:
                return self._client_error(p, raw, "kdf_attributes")
            name = kin[0].network_name
            if kdfs[0] != common.KDF_AKA_PRIME:
                if common.KDF_AKA_PRIME in kdfs:  # RFC 5448 §3.2: propose the one we support
                    return self._respond(raw, self._aka(p, AkaSubtype.CHALLENGE, (ea.AtKdf(common.KDF_AKA_PRIME),)))
                return self._reject(p, raw, "kdf")
            if self.network_name is not None and name != self.network_name:
                return self._reject(p, raw, "network_name")
            if not autn[6] & 0x80:  # AMF separation bit (TS 33.402 §6.1, RFC 5448 §3)
                return self._reject(p, raw, "amf_separation_bit")
        result = self.usim.authenticate(rand, autn)
        if isinstance(result, MacFailure):
            return self._reject(p, raw, "autn_mac")
        if isinstance(result, SyncFailure):
            attrs: tuple[ea.Attribute, ...] = (ea.AtAuts(result.auts),) + tuple(ea.AtKdf(k) for k in kdfs)
            self._respond(raw, self._aka(p, AkaSubtype.SYNCHRONIZATION_FAILURE, attrs))
            self._events.append(SynchronizationFailureReported(result.sqn_ms))
            return None
        identity = self._identity or self._preset_identity or self._nai(method)
        keys = common.derive_keys(method, identity, result.ck, result.ik, autn, name)
        if not common.mac_ok(method, keys.k_aut, raw):
            return self._client_error(p, raw, "mac")
        cc = msg.get(ea.AtCheckcode)
        mine = common.checkcode(method, bytes(self._id_msgs))
        if cc is not None and cc.checkcode and cc.checkcode != mine:
            return self._client_error(p, raw, "checkcode")
        attrs = (ea.AtRes(result.res),)
        if cc is not None:
            attrs += (ea.AtCheckcode(mine),)
        resp = common.sign(method, keys.k_aut, self._aka(p, AkaSubtype.CHALLENGE, attrs + (ea.AtMac(),)))
        self._identity = identity
        self._keys = keys
        self._method = method
        self.state = PeerState.ANSWERED
        self._respond(raw, resp)
        return None

    def _on_aka_notification(self, p: eap.EapPacket, msg: ea.AkaMessage, raw: bytes) -> None:
        notes = msg.get_all(ea.AtNotification)
        if len(notes) != 1 or msg.unknown_non_skippable:
            return self._client_error(p, raw, "notification_attributes")
        note = notes[0]
        attrs: tuple[ea.Attribute, ...] = ()
        if not note.before_challenge:  # P = 0: must be protected with K_aut from this run
            if self._keys is None or not common.mac_ok(msg.method, self._keys.k_aut, raw):
                return self._client_error(p, raw, "notification_mac")
            attrs = (ea.AtMac(),)
        # P = 1 after our Challenge response is legal: the server did not accept it (RFC 4187 §6.3.3).
        if not note.success:
            self._failure_reason = f"notification:{int(note.code)}"
        resp = self._aka(p, AkaSubtype.NOTIFICATION, attrs)
        if attrs:
            resp = common.sign(msg.method, self._keys.k_aut, resp)  # type: ignore[union-attr]
        self._respond(raw, resp)
        return None

    def _on_success(self, _p: eap.EapPacket, _msg: None, _raw: bytes) -> None:
        keys = self._keys
        assert keys is not None and self._method is not None
        self.state = PeerState.SUCCESS
        self._events.append(AuthenticationSucceeded(
            msk=keys.msk, emsk=keys.emsk, imsi=self.imsi, identity=self._identity or b"", method=int(self._method)))

    def _on_failure(self, _p: eap.EapPacket, _msg: None, _raw: bytes) -> None:
        reason = self._failure_reason or ("rejected_by_server" if self.state is PeerState.ANSWERED else "eap_failure")
        self.state = PeerState.FAILURE
        self._keys = None
        self._events.append(AuthenticationFailed(reason))
