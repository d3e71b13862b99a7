"""HSS function of the node: the SWx server (TS 29.273 §8.1.2.1 Authentication procedure).

``HssFunction.handle_mar(request) -> answer`` turns a Multimedia-Authentication-Request (app
16777265, cmd 303) into a Multimedia-Authentication-Answer carrying authentication vectors from the
subscriber store. It is called for MARs arriving over TCP from any Diameter client AND for the MARs
the node's own 3GPP AAA function sends over its internal loopback (see :mod:`hss.aaa`).

The MAR/MAA AVP layout follows TS 29.273 §8.2.2.1 (MAR) / §8.2.2.2 (MAA) and §8.2.3:

* request: Session-Id, Vendor-Specific-Application-Id, Auth-Session-State, Origin-Host/-Realm,
  Destination-Realm, User-Name (IMSI; an EAP NAI is accepted too), SIP-Number-Auth-Items,
  SIP-Auth-Data-Item{SIP-Authentication-Scheme "EAP-AKA"|"EAP-AKA'", [SIP-Authorization = RAND||AUTS
  for re-synchronisation]}, [ANID] (needed for EAP-AKA'), RAT-Type;
* answer: Result-Code 2001 (or Experimental-Result 5001 DIAMETER_ERROR_USER_UNKNOWN / 5006
  DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED, vendor 10415), User-Name, SIP-Number-Auth-Items,
  SIP-Auth-Data-Item{SIP-Item-Number, SIP-Authentication-Scheme, SIP-Authenticate = RAND||AUTN,
  SIP-Authorization = XRES, Confidentiality-Key = CK (CK' for EAP-AKA'), Integrity-Key = IK (IK')}.

For EAP-AKA' (RFC 5448 §3.3, TS 33.402 Annex A.2) the HSS returns CK'/IK' derived from CK, IK, the
ANID and SQN xor AK (:func:`s2c.crypto.aka_kdf.ck_ik_prime`); the subscriber's AMF must have the
separation bit set (TS 33.402 §6.1; the store's default AMF 8000 has it).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from s2c.codec.diameter import (
    Avp,
    Avp3gpp,
    DiameterDecodeError,
    DiameterMessage,
    ExperimentalResultCode,
    ResultCode,
    VENDOR_3GPP,
)
from s2c.crypto.aka_kdf import ck_ik_prime
from s2c.diameter.messages import (
    EAP_AKA,
    EAP_AKA_PRIME,
    LocalIdentity,
    MultimediaAuthRequest,
    SipAuthDataItem,
    build_error_answer,
    build_maa,
)

from hss.store import InvalidSubscriber, ResyncFailed, SubscriberStore, UnknownSubscriber, Vector, validate_imsi

log = logging.getLogger("hss.swx")

SCHEMES = (EAP_AKA, EAP_AKA_PRIME)
MAX_ITEMS = 5
"""At most this many vectors per MAA, whatever SIP-Number-Auth-Items asks for."""


def imsi_from_user_name(name: str) -> str:
    """IMSI from a SWx/S6b User-Name: a bare IMSI, or an EAP NAI ``0<IMSI>@realm`` / ``6<IMSI>@realm``
    (TS 23.003 §19.3.2) whose identity-type prefix is stripped. Raises InvalidSubscriber."""
    local = name.split("@", 1)[0]
    if "@" in name and len(local) >= 7 and local.isdigit():
        local = local[1:]
    return validate_imsi(local)


class HssFunction:
    """SWx server: MAR -> MAA from the subscriber store (TS 29.273 §8.1.2.1)."""

    def __init__(
        self,
        store: SubscriberStore,
        rng: Callable[[int], bytes],
        identity: LocalIdentity,
        counters: Counter[str] | None = None,
    ):
        self.store = store
        self.rng = rng
        self.identity = identity
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.last_sqn: int | None = None  # SQN of the last vector issued (for the AAA's log line)

    def _error(self, req: DiameterMessage, code: int, msg: str | None = None, failed: list[Avp] = ()) -> DiameterMessage:
        return build_error_answer(req, self.identity, code, error_message=msg, failed_avps=failed)

    def _experimental(self, req: DiameterMessage, code: int) -> DiameterMessage:
        return build_maa(req, self.identity, experimental_result=code)

    def handle_mar(self, req: DiameterMessage) -> DiameterMessage:
        """Answer one MAR; never raises on bad input (the answer carries the error)."""
        self.counters["swx_mar"] += 1
        self.last_sqn = None
        try:
            mar = MultimediaAuthRequest.from_message(req)
        except DiameterDecodeError as exc:
            self.counters["malformed"] += 1
            text = str(exc)
            log.info("bad MAR: %s", text)
            code = ResultCode.DIAMETER_MISSING_AVP if "missing" in text else ResultCode.DIAMETER_INVALID_AVP_VALUE
            return self._error(req, code, text[:120])
        if mar.scheme not in SCHEMES:
            self.counters["swx_bad_scheme"] += 1
            return self._experimental(req, ExperimentalResultCode.DIAMETER_ERROR_AUTH_SCHEME_NOT_SUPPORTED)
        if mar.scheme == EAP_AKA_PRIME and not mar.anid:
            return self._error(req, ResultCode.DIAMETER_MISSING_AVP, "EAP-AKA' needs ANID",
                               [Avp.utf8(Avp3gpp.ANID, "", VENDOR_3GPP)])
        try:
            imsi = imsi_from_user_name(mar.user_name)
        except InvalidSubscriber:
            self.counters["auth_unknown"] += 1
            log.info("auth user=%r result=unknown-user (not an IMSI)", mar.user_name[:64])
            return self._experimental(req, ExperimentalResultCode.DIAMETER_ERROR_USER_UNKNOWN)
        n = max(1, min(mar.number_auth_items, MAX_ITEMS))
        vectors: list[Vector] = []
        try:
            if mar.resync_authorization is not None:
                data = mar.resync_authorization
                if len(data) != 30:
                    self.counters["auth_resync_fail"] += 1
                    return self._error(req, ResultCode.DIAMETER_INVALID_AVP_VALUE,
                                       "SIP-Authorization must be RAND(16) || AUTS(14)")
                try:
                    vectors.append(self.store.resync(imsi, data[:16], data[16:], self.rng))
                except ResyncFailed as exc:
                    self.counters["auth_resync_fail"] += 1
                    log.warning("auth imsi=%s result=resync-rejected (%s)", imsi, exc)
                    return self._error(req, ResultCode.DIAMETER_AUTHENTICATION_REJECTED, "AUTS verification failed")
                self.counters["auth_resync"] += 1
                log.info("auth imsi=%s result=resync sqn=%#014x", imsi, vectors[0].sqn)
            while len(vectors) < n:
                vectors.append(self.store.next_vector(imsi, self.rng))
        except UnknownSubscriber:
            self.counters["auth_unknown"] += 1
            log.info("auth imsi=%s result=unknown-user", imsi)
            return self._experimental(req, ExperimentalResultCode.DIAMETER_ERROR_USER_UNKNOWN)
        self.counters["swx_vectors"] += len(vectors)
        self.last_sqn = vectors[-1].sqn
        items = []
        for i, v in enumerate(vectors, 1):
            log.info("vector imsi=%s scheme=%s sqn=%#014x", imsi, mar.scheme, v.sqn)
            ck, ik = v.ck, v.ik
            if mar.scheme == EAP_AKA_PRIME:
                ck, ik = ck_ik_prime(ck, ik, mar.anid.encode(), v.autn[:6])  # type: ignore[union-attr]
            items.append(SipAuthDataItem(scheme=mar.scheme, authenticate=v.rand + v.autn, authorization=v.xres,
                                         confidentiality_key=ck, integrity_key=ik, item_number=i))
        return build_maa(req, self.identity, items=items, result_code=ResultCode.DIAMETER_SUCCESS)
