"""3GPP AAA function of the node: S6b Diameter-EAP server running EAP-AKA / EAP-AKA' (TS 29.273 §9,
TS 33.402 §6.2, RFC 4072, RFC 4187 / RFC 5448).

Per Session-Id one :class:`s2c.eap_aka.AkaServer`. A DER (app 16777272, cmd 268) from the PDN GW
carries an EAP-Payload; the answer is a DEA with:

* 1001 DIAMETER_MULTI_ROUND_AUTH + EAP-Payload (AKA-Identity or AKA-Challenge request);
* 2001 DIAMETER_SUCCESS + EAP-Payload (EAP-Success) + EAP-Master-Session-Key (MSK) + User-Name;
* 4001 DIAMETER_AUTHENTICATION_REJECTED + EAP-Payload (EAP-Failure) when the EAP method fails;
* Experimental-Result 5001 DIAMETER_ERROR_USER_UNKNOWN (vendor 10415) + EAP-Failure for an IMSI the
  HSS does not know.

With ``av_prefetch`` the AAA function keeps one spare authentication vector per IMSI (the way a 3GPP
AAA server may hold AVs it fetched from the HSS, TS 33.402 §6.2; RFC 4187 §1): a full authentication
takes the spare if it is younger than ``av_max_age`` and not a re-synchronisation, and
:meth:`AaaFunction.refill` - called by the daemon a little after the DEA has been written - fetches the
next one, so the Milenage vector, the SQN store and the SWx round trip are off the first DER's path. A spare
that went stale (the USIM saw a later SQN elsewhere) ends in the usual AUTS re-synchronisation.

When the AKA server needs a vector, the AAA function asks the HSS function over SWx MAR/MAA through
the real message path: :class:`LoopbackSwx` serialises the MAR, the HSS handler parses it, its MAA is
serialised and parsed again here - the same bytes a separate 3GPP AAA server would exchange with the
HSS over TCP, without a socket (the two functions share one process in this testbed).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from s2c.codec.diameter import (
    VENDOR_3GPP,
    Avp,
    DiameterDecodeError,
    DiameterMessage,
    ExperimentalResultCode,
    ResultCode,
    parse_message,
)
from s2c.diameter.messages import (
    EAP_AKA,
    EAP_AKA_PRIME,
    DiameterEapRequest,
    LocalIdentity,
    MultimediaAuthAnswer,
    PdnType,
    apn_configuration,
    build_dea,
    build_error_answer,
    build_mar,
    make_session_id,
)
from s2c.eap_aka import (
    AkaServer,
    AuthenticationFailed,
    AuthenticationSucceeded,
    AuthVector,
    EapType,
    ProtocolError,
    VectorRequired,
)

log = logging.getLogger("hss.aaa")


class SwxClient(Protocol):
    """Anything that answers a MAR with an MAA (loopback, or a Diameter connection to a remote HSS)."""

    def request(self, mar: DiameterMessage) -> DiameterMessage: ...


class LoopbackSwx:
    """SWx over an in-process loopback: encode MAR -> HSS decodes -> encodes MAA -> decode here."""

    def __init__(self, hss: "object") -> None:
        self.hss = hss
        self._hbh = itertools.count(1)
        self.exchanges = 0
        self.last_sqn: int | None = None

    def request(self, mar: DiameterMessage) -> DiameterMessage:
        n = next(self._hbh) & 0xFFFFFFFF
        mar.hop_by_hop = mar.hop_by_hop or n
        mar.end_to_end = mar.end_to_end or n
        wire_mar = mar.serialize()
        answer = self.hss.handle_mar(parse_message(wire_mar))  # type: ignore[attr-defined]
        maa = parse_message(answer.serialize())
        self.exchanges += 1
        self.last_sqn = getattr(self.hss, "last_sqn", None)
        if maa.hop_by_hop != mar.hop_by_hop or maa.is_request:
            raise RuntimeError("SWx loopback: answer does not match the request")
        return maa


Rng = Callable[[int], bytes]
MAX_SESSIONS = 10000
"""Unfinished EAP sessions kept at most (the oldest are dropped first)."""


@dataclass
class Session:
    """One S6b Diameter-EAP session (Session-Id of the PDN GW) and its EAP-AKA server."""

    session_id: str
    server: AkaServer
    last_seen: float
    imsi: str | None = None
    unknown_user: bool = False
    hss_result: int | None = None
    sqn: int | None = None
    msk: bytes | None = field(default=None, repr=False)
    fail_reason: str = ""
    rounds: int = 0
    last_request_payload: bytes | None = None
    last_answer: DiameterMessage | None = field(default=None, repr=False)


class AaaFunction:
    """S6b server side (TS 29.273 §9.2.2.2): DER -> DEA, one EAP-AKA(') server per Session-Id."""

    def __init__(
        self,
        identity: LocalIdentity,
        swx: SwxClient,
        rng: Rng,
        method: str = "aka",
        session_timeout: float = 60.0,
        counters: Counter[str] | None = None,
        network_name: str = "WLAN",
        profile: Callable[[str], Any] | None = None,
        hss_realm: str | None = None,
        av_prefetch: bool = False,
        av_max_age: float = 30.0,
    ) -> None:
        if method not in ("aka", "aka'"):
            raise ValueError(f"method must be aka or aka', got {method!r}")
        self.identity = identity
        self.swx = swx
        self.rng = rng
        self.method = method
        self.eap_type = EapType.AKA if method == "aka" else EapType.AKA_PRIME
        self.scheme = EAP_AKA if method == "aka" else EAP_AKA_PRIME
        self.network_name = network_name
        self.session_timeout = session_timeout
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.profile = profile
        self.hss_realm = hss_realm or identity.origin_realm
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self._swx_sessions = itertools.count(1)
        self._boot = int.from_bytes(rng(4), "big")
        self.av_prefetch = av_prefetch
        self.av_max_age = av_max_age
        self._spare: OrderedDict[str, tuple[AuthVector, float, int | None]] = OrderedDict()  # imsi -> (AV, at, SQN)
        self._refill: list[str] = []  # IMSIs whose spare vector was used (refill() fetches the next)
        self._now = 0.0

    # -- housekeeping -------------------------------------------------------------------------------
    def session_count(self) -> int:
        return len(self.sessions)

    def purge(self, now: float) -> int:
        """Drop sessions idle for more than ``session_timeout``; returns how many."""
        dead = [sid for sid, s in self.sessions.items() if now - s.last_seen > self.session_timeout]
        for sid in dead:
            del self.sessions[sid]
        for imsi in [i for i, (_, at, _) in self._spare.items() if now - at > self.av_max_age]:
            del self._spare[imsi]
        self.counters["s6b_sessions_timed_out"] += len(dead)
        return len(dead)

    # -- DER ------------------------------------------------------------------------------------------
    def handle_der(self, req: DiameterMessage, now: float) -> DiameterMessage:
        """Answer one DER (never raises on bad input: the DEA carries the error)."""
        self.counters["s6b_der"] += 1
        try:
            der = DiameterEapRequest.from_message(req)
        except DiameterDecodeError as exc:
            self.counters["malformed"] += 1
            text = str(exc)
            code = ResultCode.DIAMETER_MISSING_AVP if "missing" in text else ResultCode.DIAMETER_INVALID_AVP_VALUE
            return build_error_answer(req, self.identity, code, error_message=text[:120])
        sess = self.sessions.get(der.session_id)
        if sess is not None and der.eap_payload and der.eap_payload == sess.last_request_payload \
                and sess.last_answer is not None:
            # the PDN GW retransmitted (lost DEA): same answer again, no new EAP step
            self.counters["s6b_der_retransmit"] += 1
            sess.last_seen = now
            return _reanswer(sess.last_answer, req)
        if sess is None:
            if len(self.sessions) >= MAX_SESSIONS:
                self.sessions.popitem(last=False)
                self.counters["s6b_sessions_evicted"] += 1
            sess = Session(der.session_id, AkaServer(rng=self.rng, method=self.eap_type,
                                                      network_name=self.network_name.encode()), now)
            self.sessions[der.session_id] = sess
            self.counters["s6b_sessions"] += 1
        sess.last_seen = now
        sess.rounds += 1
        self._now = now
        srv = sess.server
        try:
            if not der.eap_payload:
                if sess.rounds != 1:
                    raise ProtocolError("empty EAP-Payload in the middle of a session")
                srv.start(identity=b"")  # -> EAP-Request/AKA-Identity with AT_PERMANENT_ID_REQ
            else:
                srv.receive(der.eap_payload)
            self._drive(sess)
        except ProtocolError as exc:
            self.counters["s6b_eap_invalid"] += 1
            log.warning("s6b session %s: invalid EAP (%s); failing it", der.session_id, exc)
            del self.sessions[der.session_id]
            self.counters["auth_fail"] += 1
            return build_dea(req, self.identity, result_code=ResultCode.DIAMETER_AUTHENTICATION_REJECTED,
                             eap_payload=_eap_failure(der.eap_payload))
        answer = self._answer(req, sess)
        sess.last_request_payload = der.eap_payload
        sess.last_answer = answer
        return answer

    def _drive(self, sess: Session) -> None:
        srv = sess.server
        while (ev := srv.next_event()) is not None:
            if isinstance(ev, VectorRequired):
                sess.imsi = ev.imsi
                if not self._use_spare(sess, ev):
                    self._fetch_vector(sess, ev)
            elif isinstance(ev, AuthenticationSucceeded):
                sess.imsi = ev.imsi
                sess.msk = ev.msk
            elif isinstance(ev, AuthenticationFailed):
                sess.fail_reason = ev.reason

    def _use_spare(self, sess: Session, ev: VectorRequired) -> bool:
        """Give the server this IMSI's spare vector, if prefetching, fresh and not a re-synchronisation."""
        if not self.av_prefetch:
            return False
        spare = self._spare.pop(ev.imsi, None)
        if ev.resync or spare is None or self._now - spare[1] > self.av_max_age:
            if spare is not None:
                self.counters["av_spare_dropped"] += 1
            return False
        av, _, sqn = spare
        sess.sqn = sqn
        self.counters["av_spare_used"] += 1
        self._refill.append(ev.imsi)
        sess.server.provide_vector(av, primed=self.eap_type == EapType.AKA_PRIME)
        return True

    def _mar(self, imsi: str, resync: tuple[bytes, bytes] | None) -> tuple[str, AuthVector | None, int | None]:
        """SWx MAR -> MAA through the real message path (see :class:`LoopbackSwx`):
        ("ok", vector, SQN) or (failure reason, None, result code)."""
        sid = make_session_id(self.identity.origin_host, self._boot, next(self._swx_sessions), "swx")
        mar = build_mar(
            self.identity, session_id=sid, destination_realm=self.hss_realm, user_name=imsi,
            scheme=self.scheme, resync_authorization=(resync[0] + resync[1]) if resync else None,
            anid=self.network_name if self.eap_type == EapType.AKA_PRIME else None, rat_type=0,
        )
        try:
            maa = MultimediaAuthAnswer.from_message(self.swx.request(mar))
        except (DiameterDecodeError, RuntimeError) as exc:
            log.error("SWx answer unusable: %s", exc)
            return "hss_error", None, ResultCode.DIAMETER_UNABLE_TO_COMPLY
        sqn = getattr(self.swx, "last_sqn", None)
        if maa.experimental_result == (VENDOR_3GPP, ExperimentalResultCode.DIAMETER_ERROR_USER_UNKNOWN):
            return "user_unknown", None, None
        if not maa.is_success or not maa.items:
            code = maa.result_code or (maa.experimental_result or (0, 0))[1]
            return f"hss_{code}", None, code
        it = maa.items[0]
        if (it.authenticate is None or len(it.authenticate) != 32 or it.authorization is None
                or it.confidentiality_key is None or it.integrity_key is None):
            return "hss_bad_vector", None, ResultCode.DIAMETER_UNABLE_TO_COMPLY
        # For EAP-AKA' the HSS returned CK'/IK' for our ANID (TS 29.273 §8.1.2.1.1).
        return "ok", AuthVector(rand=it.authenticate[:16], xres=it.authorization, autn=it.authenticate[16:],
                                ck=it.confidentiality_key, ik=it.integrity_key), sqn

    def _fetch_vector(self, sess: Session, ev: VectorRequired) -> None:
        """Ask the HSS function for a vector (SWx MAR/MAA) and give it to the session's server."""
        status, av, extra = self._mar(ev.imsi, ev.resync)
        if av is None:
            if status == "user_unknown":
                sess.unknown_user = True
            else:
                sess.hss_result = extra
            sess.server.vector_failed(status)
            return
        sess.sqn = extra
        if self.av_prefetch:
            self._refill.append(ev.imsi)
        sess.server.provide_vector(av, primed=self.eap_type == EapType.AKA_PRIME)

    @property
    def refill_pending(self) -> bool:
        return bool(self._refill)

    def refill(self, now: float) -> int:
        """Fetch a spare vector for each IMSI whose vector a full authentication just took (call it
        after the DEA has been sent, off the authentication's path); returns how many were stored."""
        stored = 0
        while self._refill:
            imsi = self._refill.pop(0)
            if imsi in self._spare:
                continue
            status, av, sqn = self._mar(imsi, None)
            if av is None:
                self.counters["av_refill_failed"] += 1
                continue
            if len(self._spare) >= MAX_SESSIONS:
                self._spare.popitem(last=False)
            self._spare[imsi] = (av, now, sqn)
            stored += 1
        return stored

    def _answer(self, req: DiameterMessage, sess: Session) -> DiameterMessage:
        srv = sess.server
        out = srv.next_message()
        state = srv.state.value
        if state == "success":
            del self.sessions[sess.session_id]
            self.counters["auth_ok"] += 1
            log.info("auth imsi=%s result=success method=%s sqn=%s session=%s", sess.imsi, self.scheme,
                     _fmt_sqn(sess.sqn), sess.session_id)
            nai = (srv.identity or b"").decode("ascii", "replace")
            return build_dea(req, self.identity, result_code=ResultCode.DIAMETER_SUCCESS, eap_payload=out,
                             eap_master_session_key=sess.msk, user_name=sess.imsi,
                             mobile_node_identifier=nai or None, apn_configurations=self._apn(sess.imsi))
        if state == "failure":
            del self.sessions[sess.session_id]
            if sess.unknown_user:
                log.info("auth imsi=%s result=unknown-user session=%s", sess.imsi, sess.session_id)
                return build_dea(req, self.identity, experimental_result=ExperimentalResultCode.DIAMETER_ERROR_USER_UNKNOWN,
                                 eap_payload=out)
            self.counters["auth_fail"] += 1
            log.info("auth imsi=%s result=failure reason=%s method=%s sqn=%s session=%s", sess.imsi,
                     sess.fail_reason or "-", self.scheme, _fmt_sqn(sess.sqn), sess.session_id)
            code = ResultCode.DIAMETER_AUTHENTICATION_REJECTED
            if sess.hss_result is not None and sess.hss_result != ResultCode.DIAMETER_AUTHENTICATION_REJECTED:
                code = ResultCode.DIAMETER_UNABLE_TO_COMPLY  # the HSS could not serve (not the user's fault)
            return build_dea(req, self.identity, result_code=code, eap_payload=out)
        if out is None:
            del self.sessions[sess.session_id]
            self.counters["auth_fail"] += 1
            return build_error_answer(req, self.identity, ResultCode.DIAMETER_UNABLE_TO_COMPLY,
                                      error_message="EAP server produced no message")
        return build_dea(req, self.identity, result_code=ResultCode.DIAMETER_MULTI_ROUND_AUTH, eap_payload=out)

    def _apn(self, imsi: str | None) -> list[Avp]:
        """APN-Configuration from the subscriber profile (TS 29.273 §9.2.3.1), if any."""
        if self.profile is None or imsi is None:
            return []
        try:
            sub = self.profile(imsi)
        except Exception:  # noqa: BLE001 - profile is optional decoration
            return []
        if sub is None or not getattr(sub, "apn", None):
            return []
        pdn = PdnType.IPV4V6 if sub.ipv4_hoa else PdnType.IPV6
        extra = []
        if sub.static_hoa:
            extra.append(Avp.address(848, sub.static_hoa, VENDOR_3GPP))  # Served-Party-IP-Address
        if sub.ipv4_hoa:
            extra.append(Avp.address(848, sub.ipv4_hoa, VENDOR_3GPP))
        return [apn_configuration(1, sub.apn, pdn, extra_avps=extra)]


def _fmt_sqn(sqn: int | None) -> str:
    return "-" if sqn is None else f"{sqn:#014x}"


def _eap_failure(payload: bytes) -> bytes:
    """EAP-Failure echoing the identifier of the offending response (RFC 3748 §4.2)."""
    ident = payload[1] if len(payload) >= 2 else 0
    return bytes([4, ident, 0, 4])


def _reanswer(previous: DiameterMessage, req: DiameterMessage) -> DiameterMessage:
    """The previous DEA re-addressed to a retransmitted DER (same AVPs, the new ids)."""
    return DiameterMessage(previous.command_code, previous.application_id, previous.flags,
                           req.hop_by_hop, req.end_to_end, list(previous.avps))
