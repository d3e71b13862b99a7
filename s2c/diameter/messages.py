"""Builders and typed views for the Diameter messages the testbed uses.

Base protocol (RFC 6733 §5.3 CER/CEA, §5.5 DWR/DWA, §5.4 DPR/DPA, §7.2 error answers),
S6b Diameter-EAP (TS 29.273 §9.2.2, RFC 4072 §3.1) and SWx Multimedia-Auth (TS 29.273 §8.2.2.1).
Builders return :class:`DiameterMessage` with hop-by-hop / end-to-end left at 0 for requests
(the peer machine assigns them) and copied from the request for answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from s2c.codec.diameter import (
    FLAG_PROXIABLE,
    FLAG_REQUEST,
    VENDOR_3GPP,
    ApplicationId,
    AuthRequestType,
    AuthSessionState,
    Avp,
    Avp3gpp,
    AvpCode,
    CommandCode,
    DiameterDecodeError,
    DiameterMessage,
    DisconnectCause,
    ResultCode,
)

__all__ = [
    "LocalIdentity",
    "make_session_id",
    "SessionIdGenerator",
    "result_avps",
    "advertised_applications",
    "build_cer",
    "build_cea",
    "build_dwr",
    "build_dwa",
    "build_dpr",
    "build_dpa",
    "build_error_answer",
    "build_der",
    "build_dea",
    "build_str",
    "build_sta",
    "build_mar",
    "build_maa",
    "apn_configuration",
    "ApnConfiguration",
    "mip6_agent_info",
    "SipAuthDataItem",
    "DiameterEapRequest",
    "DiameterEapAnswer",
    "MultimediaAuthRequest",
    "MultimediaAuthAnswer",
    "EAP_AKA",
    "EAP_AKA_PRIME",
    "PdnType",
]

EAP_AKA = "EAP-AKA"
EAP_AKA_PRIME = "EAP-AKA'"
"""SIP-Authentication-Scheme values for SWx (TS 29.273 §8.2.3.2)."""


class PdnType:
    """PDN-Type AVP values (TS 29.272 §7.3.62)."""

    IPV4 = 0
    IPV6 = 1
    IPV4V6 = 2
    IPV4_OR_IPV6 = 3


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """What a Diameter node says about itself in CER/CEA and every message (RFC 6733 §5.3.1)."""

    origin_host: str
    origin_realm: str
    host_ip_addresses: tuple[str, ...] = ("127.0.0.1",)
    vendor_id: int = 0
    product_name: str = "s2c-testbed"
    auth_application_ids: tuple[int, ...] = ()
    """Auth-Application-Id AVPs at top level (e.g. Diameter EAP)."""
    vendor_specific_application_ids: tuple[tuple[int, int], ...] = ()
    """``(Vendor-Id, Auth-Application-Id)`` pairs, e.g. ``(10415, 16777272)`` for S6b."""
    supported_vendor_ids: tuple[int, ...] = (VENDOR_3GPP,)
    firmware_revision: int | None = 1
    origin_state_id: int | None = None

    @property
    def applications(self) -> frozenset[int]:
        return frozenset(self.auth_application_ids) | frozenset(a for _, a in self.vendor_specific_application_ids)

    def origin_avps(self) -> list[Avp]:
        return [Avp.utf8(AvpCode.ORIGIN_HOST, self.origin_host), Avp.utf8(AvpCode.ORIGIN_REALM, self.origin_realm)]


def make_session_id(origin_host: str, high: int, low: int, optional: str | None = None) -> str:
    """Session-Id ``<DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional>]`` (RFC 6733 §8.8).

    The caller supplies the counters (e.g. boot time and a sequence number): no clock inside.
    """
    sid = f"{origin_host};{high & 0xFFFFFFFF};{low & 0xFFFFFFFF}"
    return sid if optional is None else f"{sid};{optional}"


class SessionIdGenerator:
    """Successive Session-Ids ``<origin_host>;<high>;<n>`` (RFC 6733 §8.8).

    ``high`` should differ per boot (e.g. boot time or an rng draw done by the daemon); the low
    part counts up from ``start``.  Pure: no clock, no randomness.
    """

    __slots__ = ("origin_host", "high", "_next")

    def __init__(self, origin_host: str, high: int, start: int = 0) -> None:
        self.origin_host = origin_host
        self.high = high & 0xFFFFFFFF
        self._next = start & 0xFFFFFFFF

    def __call__(self, optional: str | None = None) -> str:
        n = self._next
        self._next = (n + 1) & 0xFFFFFFFF
        return make_session_id(self.origin_host, self.high, n, optional)


def result_avps(result_code: int | None = None, experimental_result: tuple[int, int] | int | None = None) -> list[Avp]:
    """Result-Code or Experimental-Result{Vendor-Id, Experimental-Result-Code} (RFC 6733 §7.1, §7.6).

    ``experimental_result`` may be a bare code (Vendor-Id 10415 assumed) or ``(vendor, code)``.
    """
    out: list[Avp] = []
    if result_code is not None:
        out.append(Avp.u32(AvpCode.RESULT_CODE, int(result_code)))
    if experimental_result is not None:
        if isinstance(experimental_result, tuple):
            vendor, code = experimental_result
        else:
            vendor, code = VENDOR_3GPP, int(experimental_result)
        out.append(
            Avp.grouped(
                AvpCode.EXPERIMENTAL_RESULT,
                [Avp.u32(AvpCode.VENDOR_ID, vendor), Avp.u32(AvpCode.EXPERIMENTAL_RESULT_CODE, int(code))],
            )
        )
    if not out:
        raise ValueError("need result_code or experimental_result")
    return out


# ---- capabilities exchange -------------------------------------------------------------------


def _capability_avps(identity: LocalIdentity) -> list[Avp]:
    avps = identity.origin_avps()
    avps += [Avp.address(AvpCode.HOST_IP_ADDRESS, ip) for ip in identity.host_ip_addresses]
    avps.append(Avp.u32(AvpCode.VENDOR_ID, identity.vendor_id))
    avps.append(Avp.utf8(AvpCode.PRODUCT_NAME, identity.product_name, mandatory=False))
    if identity.origin_state_id is not None:
        avps.append(Avp.u32(AvpCode.ORIGIN_STATE_ID, identity.origin_state_id))
    avps += [Avp.u32(AvpCode.SUPPORTED_VENDOR_ID, v) for v in identity.supported_vendor_ids]
    avps += [Avp.u32(AvpCode.AUTH_APPLICATION_ID, a) for a in identity.auth_application_ids]
    for vendor, app in identity.vendor_specific_application_ids:
        avps.append(
            Avp.grouped(
                AvpCode.VENDOR_SPECIFIC_APPLICATION_ID,
                [Avp.u32(AvpCode.VENDOR_ID, vendor), Avp.u32(AvpCode.AUTH_APPLICATION_ID, app)],
            )
        )
    if identity.firmware_revision is not None:
        avps.append(Avp.u32(AvpCode.FIRMWARE_REVISION, identity.firmware_revision, mandatory=False))
    return avps


def advertised_applications(msg: DiameterMessage) -> frozenset[int]:
    """Auth-Application-Id values in a CER/CEA, top level and inside Vendor-Specific-Application-Id."""
    apps: set[int] = set()
    for a in msg.avps:
        if a.vendor_id:
            continue
        if a.code == AvpCode.AUTH_APPLICATION_ID or a.code == AvpCode.ACCT_APPLICATION_ID:
            apps.add(a.as_u32())
        elif a.code == AvpCode.VENDOR_SPECIFIC_APPLICATION_ID:
            for c in a.as_grouped():
                if c.vendor_id == 0 and c.code in (AvpCode.AUTH_APPLICATION_ID, AvpCode.ACCT_APPLICATION_ID):
                    apps.add(c.as_u32())
    return frozenset(apps)


def build_cer(identity: LocalIdentity) -> DiameterMessage:
    """Capabilities-Exchange-Request (RFC 6733 §5.3.1)."""
    return DiameterMessage(
        CommandCode.CAPABILITIES_EXCHANGE, ApplicationId.DIAMETER_COMMON_MESSAGES, FLAG_REQUEST, avps=_capability_avps(identity)
    )


def build_cea(
    request: DiameterMessage, identity: LocalIdentity, result_code: int = ResultCode.DIAMETER_SUCCESS,
    error_message: str | None = None,
) -> DiameterMessage:
    """Capabilities-Exchange-Answer (RFC 6733 §5.3.2)."""
    avps = [Avp.u32(AvpCode.RESULT_CODE, int(result_code))] + _capability_avps(identity)
    if error_message:
        avps.append(Avp.utf8(AvpCode.ERROR_MESSAGE, error_message, mandatory=False))
    return request.make_answer(avps, error=3000 <= int(result_code) < 4000)


# ---- watchdog / disconnect ----------------------------------------------------------------------


def build_dwr(identity: LocalIdentity) -> DiameterMessage:
    """Device-Watchdog-Request (RFC 6733 §5.5.1)."""
    avps = identity.origin_avps()
    if identity.origin_state_id is not None:
        avps.append(Avp.u32(AvpCode.ORIGIN_STATE_ID, identity.origin_state_id))
    return DiameterMessage(CommandCode.DEVICE_WATCHDOG, 0, FLAG_REQUEST, avps=avps)


def build_dwa(
    request: DiameterMessage, identity: LocalIdentity, result_code: int = ResultCode.DIAMETER_SUCCESS
) -> DiameterMessage:
    """Device-Watchdog-Answer (RFC 6733 §5.5.2)."""
    avps = [Avp.u32(AvpCode.RESULT_CODE, int(result_code))] + identity.origin_avps()
    if identity.origin_state_id is not None:
        avps.append(Avp.u32(AvpCode.ORIGIN_STATE_ID, identity.origin_state_id))
    return request.make_answer(avps)


def build_dpr(identity: LocalIdentity, cause: int = DisconnectCause.REBOOTING) -> DiameterMessage:
    """Disconnect-Peer-Request (RFC 6733 §5.4.1)."""
    avps = identity.origin_avps() + [Avp.u32(AvpCode.DISCONNECT_CAUSE, int(cause))]
    return DiameterMessage(CommandCode.DISCONNECT_PEER, 0, FLAG_REQUEST, avps=avps)


def build_dpa(
    request: DiameterMessage, identity: LocalIdentity, result_code: int = ResultCode.DIAMETER_SUCCESS
) -> DiameterMessage:
    """Disconnect-Peer-Answer (RFC 6733 §5.4.2)."""
    return request.make_answer([Avp.u32(AvpCode.RESULT_CODE, int(result_code))] + identity.origin_avps())


def build_error_answer(
    request: DiameterMessage,
    identity: LocalIdentity,
    result_code: int,
    *,
    error_message: str | None = None,
    failed_avps: Sequence[Avp] = (),
) -> DiameterMessage:
    """Answer carrying only an error Result-Code (RFC 6733 §7.2); E bit set for protocol errors (3xxx)."""
    avps: list[Avp] = []
    sid = request.find(AvpCode.SESSION_ID)
    if sid is not None:
        avps.append(sid)
    avps += identity.origin_avps()
    avps.append(Avp.u32(AvpCode.RESULT_CODE, int(result_code)))
    if error_message:
        avps.append(Avp.utf8(AvpCode.ERROR_MESSAGE, error_message, mandatory=False))
    if failed_avps:
        avps.append(Avp.grouped(AvpCode.FAILED_AVP, failed_avps))
    return request.make_answer(avps, error=3000 <= int(result_code) < 4000)


# ---- S6b: Diameter-EAP (TS 29.273 §9.2.2.2, DSMIPv6) --------------------------------------------


def _vsai(app: int) -> Avp:
    return Avp.grouped(
        AvpCode.VENDOR_SPECIFIC_APPLICATION_ID,
        [Avp.u32(AvpCode.VENDOR_ID, VENDOR_3GPP), Avp.u32(AvpCode.AUTH_APPLICATION_ID, app)],
    )


def _req_header_avps(
    session_id: str, identity: LocalIdentity, destination_realm: str, destination_host: str | None
) -> tuple[Avp, list[Avp]]:
    dest = [Avp.utf8(AvpCode.DESTINATION_REALM, destination_realm)]
    if destination_host is not None:
        dest.append(Avp.utf8(AvpCode.DESTINATION_HOST, destination_host))
    return Avp.utf8(AvpCode.SESSION_ID, session_id), identity.origin_avps() + dest


def build_der(
    identity: LocalIdentity,
    *,
    session_id: str,
    destination_realm: str,
    eap_payload: bytes,
    user_name: str | None = None,
    destination_host: str | None = None,
    auth_request_type: int = AuthRequestType.AUTHORIZE_AUTHENTICATE,
    service_selection: str | None = None,
    mip6_feature_vector: int | None = None,
    rat_type: int | None = None,
    extra_avps: Iterable[Avp] = (),
) -> DiameterMessage:
    """S6b Diameter-EAP-Request, command 268, application 16777272 (TS 29.273 §9.2.2.2.1, RFC 4072 §3.1)."""
    sid, common = _req_header_avps(session_id, identity, destination_realm, destination_host)
    avps = [sid, Avp.u32(AvpCode.AUTH_APPLICATION_ID, ApplicationId.S6B_3GPP)] + common
    avps.append(Avp.u32(AvpCode.AUTH_REQUEST_TYPE, int(auth_request_type)))
    if user_name is not None:
        avps.append(Avp.utf8(AvpCode.USER_NAME, user_name))
    avps.append(Avp.octets(AvpCode.EAP_PAYLOAD, eap_payload))
    if rat_type is not None:
        avps.append(Avp.u32(Avp3gpp.RAT_TYPE, int(rat_type), VENDOR_3GPP, mandatory=False))
    if service_selection is not None:
        avps.append(Avp.utf8(AvpCode.SERVICE_SELECTION, service_selection))
    if mip6_feature_vector is not None:
        avps.append(Avp.u64(AvpCode.MIP6_FEATURE_VECTOR, mip6_feature_vector))
    avps.extend(extra_avps)
    return DiameterMessage(
        CommandCode.DIAMETER_EAP, ApplicationId.S6B_3GPP, FLAG_REQUEST | FLAG_PROXIABLE, avps=avps
    )


def build_dea(
    request: DiameterMessage,
    identity: LocalIdentity,
    *,
    result_code: int | None = None,
    experimental_result: tuple[int, int] | int | None = None,
    eap_payload: bytes | None = None,
    eap_master_session_key: bytes | None = None,
    user_name: str | None = None,
    mobile_node_identifier: str | None = None,
    apn_configurations: Sequence[Avp] = (),
    mip6_feature_vector: int | None = None,
    session_timeout: int | None = None,
    extra_avps: Iterable[Avp] = (),
) -> DiameterMessage:
    """S6b Diameter-EAP-Answer (TS 29.273 §9.2.2.2.2, RFC 4072 §3.2).

    Use ``result_code=DIAMETER_MULTI_ROUND_AUTH`` for intermediate EAP rounds and
    ``DIAMETER_SUCCESS`` with the MSK for the final one.
    """
    avps: list[Avp] = []
    sid = request.find(AvpCode.SESSION_ID)
    if sid is not None:
        avps.append(sid)
    avps.append(Avp.u32(AvpCode.AUTH_APPLICATION_ID, ApplicationId.S6B_3GPP))
    art = request.find(AvpCode.AUTH_REQUEST_TYPE)
    avps.append(art if art is not None else Avp.u32(AvpCode.AUTH_REQUEST_TYPE, AuthRequestType.AUTHORIZE_AUTHENTICATE))
    avps += result_avps(result_code, experimental_result)
    avps += identity.origin_avps()
    if user_name is not None:
        avps.append(Avp.utf8(AvpCode.USER_NAME, user_name))
    if eap_payload is not None:
        avps.append(Avp.octets(AvpCode.EAP_PAYLOAD, eap_payload))
    if eap_master_session_key is not None:
        avps.append(Avp.octets(AvpCode.EAP_MASTER_SESSION_KEY, eap_master_session_key))
    if mobile_node_identifier is not None:
        avps.append(Avp.utf8(AvpCode.MOBILE_NODE_IDENTIFIER, mobile_node_identifier))
    avps.extend(apn_configurations)
    if mip6_feature_vector is not None:
        avps.append(Avp.u64(AvpCode.MIP6_FEATURE_VECTOR, mip6_feature_vector))
    if session_timeout is not None:
        avps.append(Avp.u32(AvpCode.SESSION_TIMEOUT, session_timeout))
    avps.extend(extra_avps)
    rc = result_code if result_code is not None else 0
    return request.make_answer(avps, error=3000 <= rc < 4000)


def mip6_agent_info(home_agent_address: str | None = None, home_agent_host: tuple[str, str] | None = None) -> Avp:
    """MIP6-Agent-Info {MIP-Home-Agent-Address*2, MIP-Home-Agent-Host{Destination-Realm, Destination-Host}} (RFC 5447 §4.2.1)."""
    children: list[Avp] = []
    if home_agent_address is not None:
        children.append(Avp.address(AvpCode.MIP_HOME_AGENT_ADDRESS, home_agent_address))
    if home_agent_host is not None:
        realm, host = home_agent_host
        children.append(
            Avp.grouped(
                AvpCode.MIP_HOME_AGENT_HOST,
                [Avp.utf8(AvpCode.DESTINATION_REALM, realm), Avp.utf8(AvpCode.DESTINATION_HOST, host)],
            )
        )
    return Avp.grouped(AvpCode.MIP6_AGENT_INFO, children)


@dataclass(frozen=True, slots=True)
class ApnConfiguration:
    """Subset of APN-Configuration (TS 29.272 §7.3.35) that S6b/SWx carry for non-3GPP access."""

    context_identifier: int
    service_selection: str
    pdn_type: int = PdnType.IPV6
    home_agent_addresses: tuple[str, ...] = ()

    def to_avp(self) -> Avp:
        return apn_configuration(
            self.context_identifier, self.service_selection, self.pdn_type,
            home_agent_address=self.home_agent_addresses[0] if self.home_agent_addresses else None,
            extra_avps=[Avp.grouped(AvpCode.MIP6_AGENT_INFO,
                                    [Avp.address(AvpCode.MIP_HOME_AGENT_ADDRESS, a) for a in self.home_agent_addresses[1:]])]
            if len(self.home_agent_addresses) > 1 else (),
        )

    @classmethod
    def from_avp(cls, a: Avp) -> ApnConfiguration:
        ctx: int | None = None
        apn: str | None = None
        pdn_type = PdnType.IPV6
        has: list[str] = []
        for c in a.as_grouped():
            if c.vendor_id == VENDOR_3GPP and c.code == Avp3gpp.CONTEXT_IDENTIFIER:
                ctx = c.as_u32()
            elif c.vendor_id == VENDOR_3GPP and c.code == Avp3gpp.PDN_TYPE:
                pdn_type = c.as_u32()
            elif c.vendor_id == 0 and c.code == AvpCode.SERVICE_SELECTION:
                apn = c.as_str()
            elif c.vendor_id == 0 and c.code == AvpCode.MIP6_AGENT_INFO:
                for h in c.as_grouped():
                    if h.vendor_id == 0 and h.code == AvpCode.MIP_HOME_AGENT_ADDRESS:
                        has.append(str(h.as_address()))
        if ctx is None or apn is None:
            raise DiameterDecodeError("APN-Configuration without Context-Identifier or Service-Selection")
        return cls(ctx, apn, pdn_type, tuple(has))


def apn_configuration(
    context_identifier: int,
    service_selection: str,
    pdn_type: int = PdnType.IPV6,
    *,
    home_agent_address: str | None = None,
    extra_avps: Iterable[Avp] = (),
) -> Avp:
    """APN-Configuration (TS 29.272 §7.3.35) with the subset S6b/SWx need (TS 29.273 §9.2.3.1)."""
    children = [
        Avp.u32(Avp3gpp.CONTEXT_IDENTIFIER, context_identifier, VENDOR_3GPP),
        Avp.u32(Avp3gpp.PDN_TYPE, pdn_type, VENDOR_3GPP),
        Avp.utf8(AvpCode.SERVICE_SELECTION, service_selection),
    ]
    if home_agent_address is not None:
        children.append(mip6_agent_info(home_agent_address))
    children.extend(extra_avps)
    return Avp.grouped(Avp3gpp.APN_CONFIGURATION, children, VENDOR_3GPP)


def build_str(
    identity: LocalIdentity,
    *,
    session_id: str,
    destination_realm: str,
    termination_cause: int = 1,
    user_name: str | None = None,
    destination_host: str | None = None,
    application_id: int = ApplicationId.S6B_3GPP,
) -> DiameterMessage:
    """Session-Termination-Request (RFC 6733 §8.4.1; S6b use: TS 29.273 §9.2.2.3.1).

    ``termination_cause`` 1 = DIAMETER_LOGOUT (RFC 6733 §8.15).
    """
    sid, common = _req_header_avps(session_id, identity, destination_realm, destination_host)
    avps = [sid] + common + [
        Avp.u32(AvpCode.AUTH_APPLICATION_ID, application_id),
        Avp.u32(AvpCode.TERMINATION_CAUSE, termination_cause),
    ]
    if user_name is not None:
        avps.append(Avp.utf8(AvpCode.USER_NAME, user_name))
    return DiameterMessage(CommandCode.SESSION_TERMINATION, application_id, FLAG_REQUEST | FLAG_PROXIABLE, avps=avps)


def build_sta(
    request: DiameterMessage, identity: LocalIdentity, result_code: int = ResultCode.DIAMETER_SUCCESS
) -> DiameterMessage:
    """Session-Termination-Answer (RFC 6733 §8.4.2; TS 29.273 §9.2.2.3.1)."""
    avps: list[Avp] = []
    sid = request.find(AvpCode.SESSION_ID)
    if sid is not None:
        avps.append(sid)
    avps.append(Avp.u32(AvpCode.RESULT_CODE, int(result_code)))
    avps += identity.origin_avps()
    return request.make_answer(avps, error=3000 <= int(result_code) < 4000)


# ---- SWx: Multimedia-Auth (TS 29.273 §8.2.2.1) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class SipAuthDataItem:
    """SIP-Auth-Data-Item for EAP-AKA/AKA' on SWx (TS 29.273 §8.2.3.1, TS 29.229 §6.3.13).

    ``authenticate`` = RAND || AUTN, ``authorization`` = XRES; CK/IK as produced by Milenage
    (for EAP-AKA' the HSS returns CK'/IK').  In a MAR only ``scheme`` (and for resync
    ``authorization`` = RAND || AUTS) is set.
    """

    scheme: str = EAP_AKA
    authenticate: bytes | None = None
    authorization: bytes | None = None
    confidentiality_key: bytes | None = None
    integrity_key: bytes | None = None
    item_number: int | None = None

    def to_avp(self) -> Avp:
        v = VENDOR_3GPP
        c: list[Avp] = []
        if self.item_number is not None:
            c.append(Avp.u32(Avp3gpp.SIP_ITEM_NUMBER, self.item_number, v))
        c.append(Avp.utf8(Avp3gpp.SIP_AUTHENTICATION_SCHEME, self.scheme, v))
        if self.authenticate is not None:
            c.append(Avp.octets(Avp3gpp.SIP_AUTHENTICATE, self.authenticate, v))
        if self.authorization is not None:
            c.append(Avp.octets(Avp3gpp.SIP_AUTHORIZATION, self.authorization, v))
        if self.confidentiality_key is not None:
            c.append(Avp.octets(Avp3gpp.CONFIDENTIALITY_KEY, self.confidentiality_key, v))
        if self.integrity_key is not None:
            c.append(Avp.octets(Avp3gpp.INTEGRITY_KEY, self.integrity_key, v))
        return Avp.grouped(Avp3gpp.SIP_AUTH_DATA_ITEM, c, v)

    @classmethod
    def from_avp(cls, a: Avp) -> SipAuthDataItem:
        kw: dict[str, object] = {}
        scheme = None
        for c in a.as_grouped():
            if c.vendor_id != VENDOR_3GPP:
                continue
            if c.code == Avp3gpp.SIP_AUTHENTICATION_SCHEME:
                scheme = c.as_str()
            elif c.code == Avp3gpp.SIP_AUTHENTICATE:
                kw["authenticate"] = c.data
            elif c.code == Avp3gpp.SIP_AUTHORIZATION:
                kw["authorization"] = c.data
            elif c.code == Avp3gpp.CONFIDENTIALITY_KEY:
                kw["confidentiality_key"] = c.data
            elif c.code == Avp3gpp.INTEGRITY_KEY:
                kw["integrity_key"] = c.data
            elif c.code == Avp3gpp.SIP_ITEM_NUMBER:
                kw["item_number"] = c.as_u32()
        if scheme is None:
            raise DiameterDecodeError("SIP-Auth-Data-Item without SIP-Authentication-Scheme")
        return cls(scheme=scheme, **kw)  # type: ignore[arg-type]


def build_mar(
    identity: LocalIdentity,
    *,
    session_id: str,
    destination_realm: str,
    user_name: str,
    scheme: str = EAP_AKA,
    number_auth_items: int = 1,
    destination_host: str | None = None,
    resync_authorization: bytes | None = None,
    rat_type: int | None = None,
    anid: str | None = None,
    extra_avps: Iterable[Avp] = (),
) -> DiameterMessage:
    """SWx Multimedia-Authentication-Request, command 303, application 16777265 (TS 29.273 §8.2.2.1)."""
    sid, common = _req_header_avps(session_id, identity, destination_realm, destination_host)
    avps = [
        sid,
        _vsai(ApplicationId.SWX_3GPP),
        Avp.u32(AvpCode.AUTH_SESSION_STATE, AuthSessionState.NO_STATE_MAINTAINED),
    ] + common
    avps.append(Avp.utf8(AvpCode.USER_NAME, user_name))
    avps.append(SipAuthDataItem(scheme=scheme, authorization=resync_authorization).to_avp())
    avps.append(Avp.u32(Avp3gpp.SIP_NUMBER_AUTH_ITEMS, number_auth_items, VENDOR_3GPP))
    if rat_type is not None:
        avps.append(Avp.u32(Avp3gpp.RAT_TYPE, int(rat_type), VENDOR_3GPP, mandatory=False))
    if anid is not None:
        avps.append(Avp.utf8(Avp3gpp.ANID, anid, VENDOR_3GPP))
    avps.extend(extra_avps)
    return DiameterMessage(
        CommandCode.MULTIMEDIA_AUTH, ApplicationId.SWX_3GPP, FLAG_REQUEST | FLAG_PROXIABLE, avps=avps
    )


def build_maa(
    request: DiameterMessage,
    identity: LocalIdentity,
    *,
    items: Sequence[SipAuthDataItem] = (),
    result_code: int | None = None,
    experimental_result: tuple[int, int] | int | None = None,
    extra_avps: Iterable[Avp] = (),
) -> DiameterMessage:
    """SWx Multimedia-Authentication-Answer (TS 29.273 §8.2.2.1, Table 8.2.2.1/2)."""
    avps: list[Avp] = []
    sid = request.find(AvpCode.SESSION_ID)
    if sid is not None:
        avps.append(sid)
    avps.append(_vsai(ApplicationId.SWX_3GPP))
    avps += result_avps(result_code, experimental_result)
    avps.append(Avp.u32(AvpCode.AUTH_SESSION_STATE, AuthSessionState.NO_STATE_MAINTAINED))
    avps += identity.origin_avps()
    un = request.find(AvpCode.USER_NAME)
    if un is not None:
        avps.append(un)
    if items:
        avps.append(Avp.u32(Avp3gpp.SIP_NUMBER_AUTH_ITEMS, len(items), VENDOR_3GPP))
        avps += [it.to_avp() for it in items]
    avps.extend(extra_avps)
    rc = result_code if result_code is not None else 0
    return request.make_answer(avps, error=3000 <= rc < 4000)


# ---- typed views -------------------------------------------------------------------------------


def _require(msg: DiameterMessage, value: object, name: str) -> None:
    if value is None:
        raise DiameterDecodeError(f"{name} missing in command {msg.command_code}")


@dataclass(frozen=True, slots=True)
class DiameterEapRequest:
    """Decoded S6b DER (TS 29.273 §9.2.2.2.1)."""

    session_id: str
    origin_host: str
    origin_realm: str
    destination_realm: str
    eap_payload: bytes
    auth_request_type: int
    user_name: str | None = None
    destination_host: str | None = None
    service_selection: str | None = None
    mip6_feature_vector: int | None = None
    rat_type: int | None = None

    @classmethod
    def from_message(cls, msg: DiameterMessage) -> DiameterEapRequest:
        """Raise DiameterDecodeError if a required AVP is missing (caller answers 5005 MISSING_AVP)."""
        sid, oh, orl, dr = msg.session_id, msg.origin_host, msg.origin_realm, msg.destination_realm
        eap = msg.get_bytes(AvpCode.EAP_PAYLOAD)
        art = msg.get_u32(AvpCode.AUTH_REQUEST_TYPE)
        for v, n in ((sid, "Session-Id"), (oh, "Origin-Host"), (orl, "Origin-Realm"), (dr, "Destination-Realm"),
                     (eap, "EAP-Payload"), (art, "Auth-Request-Type")):
            _require(msg, v, n)
        return cls(
            session_id=sid, origin_host=oh, origin_realm=orl, destination_realm=dr,  # type: ignore[arg-type]
            eap_payload=eap, auth_request_type=art,  # type: ignore[arg-type]
            user_name=msg.user_name, destination_host=msg.destination_host,
            service_selection=msg.get_str(AvpCode.SERVICE_SELECTION),
            mip6_feature_vector=msg.get_u64(AvpCode.MIP6_FEATURE_VECTOR),
            rat_type=msg.get_u32(Avp3gpp.RAT_TYPE, VENDOR_3GPP),
        )


@dataclass(frozen=True, slots=True)
class DiameterEapAnswer:
    """Decoded S6b DEA (TS 29.273 §9.2.2.2.2)."""

    session_id: str
    result_code: int | None
    experimental_result: tuple[int, int] | None
    eap_payload: bytes | None = None
    eap_master_session_key: bytes | None = None
    user_name: str | None = None
    mobile_node_identifier: str | None = None
    apn_configurations: tuple[Avp, ...] = ()
    mip6_feature_vector: int | None = None

    @property
    def is_success(self) -> bool:
        return self.result_code == ResultCode.DIAMETER_SUCCESS

    @property
    def is_multi_round(self) -> bool:
        return self.result_code == ResultCode.DIAMETER_MULTI_ROUND_AUTH

    @classmethod
    def from_message(cls, msg: DiameterMessage) -> DiameterEapAnswer:
        sid = msg.session_id
        _require(msg, sid, "Session-Id")
        rc, er = msg.result_code, msg.experimental_result
        if rc is None and er is None:
            raise DiameterDecodeError("DEA without Result-Code or Experimental-Result")
        return cls(
            session_id=sid, result_code=rc, experimental_result=er,  # type: ignore[arg-type]
            eap_payload=msg.get_bytes(AvpCode.EAP_PAYLOAD),
            eap_master_session_key=msg.get_bytes(AvpCode.EAP_MASTER_SESSION_KEY),
            user_name=msg.user_name,
            mobile_node_identifier=msg.get_str(AvpCode.MOBILE_NODE_IDENTIFIER),
            apn_configurations=tuple(msg.find_all(Avp3gpp.APN_CONFIGURATION, VENDOR_3GPP)),
            mip6_feature_vector=msg.get_u64(AvpCode.MIP6_FEATURE_VECTOR),
        )


@dataclass(frozen=True, slots=True)
class MultimediaAuthRequest:
    """Decoded SWx MAR (TS 29.273 §8.2.2.1)."""

    session_id: str
    origin_host: str
    origin_realm: str
    destination_realm: str
    user_name: str
    scheme: str
    number_auth_items: int
    resync_authorization: bytes | None = None
    destination_host: str | None = None
    rat_type: int | None = None
    anid: str | None = None

    @classmethod
    def from_message(cls, msg: DiameterMessage) -> MultimediaAuthRequest:
        sid, oh, orl, dr, un = msg.session_id, msg.origin_host, msg.origin_realm, msg.destination_realm, msg.user_name
        item_avp = msg.find(Avp3gpp.SIP_AUTH_DATA_ITEM, VENDOR_3GPP)
        n = msg.get_u32(Avp3gpp.SIP_NUMBER_AUTH_ITEMS, VENDOR_3GPP)
        for v, name in ((sid, "Session-Id"), (oh, "Origin-Host"), (orl, "Origin-Realm"),
                        (dr, "Destination-Realm"), (un, "User-Name"), (item_avp, "SIP-Auth-Data-Item"),
                        (n, "SIP-Number-Auth-Items")):
            _require(msg, v, name)
        item = SipAuthDataItem.from_avp(item_avp)  # type: ignore[arg-type]
        return cls(
            session_id=sid, origin_host=oh, origin_realm=orl, destination_realm=dr, user_name=un,  # type: ignore[arg-type]
            scheme=item.scheme, number_auth_items=n, resync_authorization=item.authorization,  # type: ignore[arg-type]
            destination_host=msg.destination_host, rat_type=msg.get_u32(Avp3gpp.RAT_TYPE, VENDOR_3GPP),
            anid=msg.get_str(Avp3gpp.ANID, VENDOR_3GPP),
        )


@dataclass(frozen=True, slots=True)
class MultimediaAuthAnswer:
    """Decoded SWx MAA (TS 29.273 §8.2.2.1)."""

    session_id: str
    result_code: int | None
    experimental_result: tuple[int, int] | None
    user_name: str | None = None
    items: tuple[SipAuthDataItem, ...] = field(default=())

    @property
    def is_success(self) -> bool:
        return self.result_code == ResultCode.DIAMETER_SUCCESS

    @classmethod
    def from_message(cls, msg: DiameterMessage) -> MultimediaAuthAnswer:
        sid = msg.session_id
        _require(msg, sid, "Session-Id")
        rc, er = msg.result_code, msg.experimental_result
        if rc is None and er is None:
            raise DiameterDecodeError("MAA without Result-Code or Experimental-Result")
        items = tuple(
            SipAuthDataItem.from_avp(a) for a in msg.find_all(Avp3gpp.SIP_AUTH_DATA_ITEM, VENDOR_3GPP)
        )
        return cls(session_id=sid, result_code=rc, experimental_result=er, user_name=msg.user_name, items=items)  # type: ignore[arg-type]

