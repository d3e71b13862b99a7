"""Diameter AVP dictionary: ``{(code, vendor_id): AvpDef}`` for the base protocol, EAP, S6b and SWx.

Sources (AVP code, data type and M-bit rule are taken from the "AVP Code / Data Type / Flag rules"
tables of each document):

* RFC 6733 §4.5 (base protocol AVPs), §4.3 (derived types)
* RFC 4072 §4.1 (Diameter EAP: EAP-Payload .. Accounting-EAP-Auth-Method)
* RFC 7155 §4 (NASREQ: Framed-IP-Address, Called-Station-Id, ...)
* RFC 4004 §7 / RFC 5447 §4 / RFC 5778 §6 (MIP6-Agent-Info, MIP6-Feature-Vector, Service-Selection,
  Mobile-Node-Identifier, MIP-Home-Agent-Address/Host)
* 3GPP TS 29.273 §5.2.3, §8.2.3, §9.2.3 (SWx/S6b AVPs, vendor 10415)
* 3GPP TS 29.229 §6.3 (Cx AVPs reused by SWx: SIP-Auth-Data-Item etc.)
* 3GPP TS 29.272 §7.3 (APN-Configuration and friends reused by SWx/S6b), TS 29.212 §5.3 (RAT-Type)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

VENDOR_3GPP = 10415
"""IANA Private Enterprise Number of 3GPP, used as Vendor-Id for TS 29.xxx AVPs."""


class AvpType(IntEnum):
    """Diameter AVP data formats (RFC 6733 §4.2 basic and §4.3 derived)."""

    OCTET_STRING = 1
    INTEGER32 = 2
    INTEGER64 = 3
    UNSIGNED32 = 4
    UNSIGNED64 = 5
    FLOAT32 = 6
    FLOAT64 = 7
    GROUPED = 8
    ADDRESS = 9
    TIME = 10
    UTF8_STRING = 11
    DIAMETER_IDENTITY = 12
    DIAMETER_URI = 13
    ENUMERATED = 14


@dataclass(frozen=True, slots=True)
class AvpDef:
    """One dictionary entry: name as in the spec, data type and whether the M bit is set."""

    name: str
    type: AvpType
    mandatory: bool = True


T = AvpType
_V = VENDOR_3GPP

# (code, vendor) -> AvpDef.  Keep alphabetic-ish by source document.
AVP_DICTIONARY: dict[tuple[int, int], AvpDef] = {
    # --- RFC 6733 §4.5 base protocol ---------------------------------------------------------
    (1, 0): AvpDef("User-Name", T.UTF8_STRING),
    (25, 0): AvpDef("Class", T.OCTET_STRING),
    (27, 0): AvpDef("Session-Timeout", T.UNSIGNED32),
    (33, 0): AvpDef("Proxy-State", T.OCTET_STRING),
    (44, 0): AvpDef("Accounting-Session-Id", T.OCTET_STRING),
    (50, 0): AvpDef("Acct-Multi-Session-Id", T.UTF8_STRING),
    (55, 0): AvpDef("Event-Timestamp", T.TIME),
    (85, 0): AvpDef("Acct-Interim-Interval", T.UNSIGNED32),
    (257, 0): AvpDef("Host-IP-Address", T.ADDRESS),
    (258, 0): AvpDef("Auth-Application-Id", T.UNSIGNED32),
    (259, 0): AvpDef("Acct-Application-Id", T.UNSIGNED32),
    (260, 0): AvpDef("Vendor-Specific-Application-Id", T.GROUPED),
    (261, 0): AvpDef("Redirect-Host-Usage", T.ENUMERATED),
    (262, 0): AvpDef("Redirect-Max-Cache-Time", T.UNSIGNED32),
    (263, 0): AvpDef("Session-Id", T.UTF8_STRING),
    (264, 0): AvpDef("Origin-Host", T.DIAMETER_IDENTITY),
    (265, 0): AvpDef("Supported-Vendor-Id", T.UNSIGNED32),
    (266, 0): AvpDef("Vendor-Id", T.UNSIGNED32),
    (267, 0): AvpDef("Firmware-Revision", T.UNSIGNED32, mandatory=False),
    (268, 0): AvpDef("Result-Code", T.UNSIGNED32),
    (269, 0): AvpDef("Product-Name", T.UTF8_STRING, mandatory=False),
    (270, 0): AvpDef("Session-Binding", T.UNSIGNED32),
    (271, 0): AvpDef("Session-Server-Failover", T.ENUMERATED),
    (272, 0): AvpDef("Multi-Round-Time-Out", T.UNSIGNED32),
    (273, 0): AvpDef("Disconnect-Cause", T.ENUMERATED),
    (274, 0): AvpDef("Auth-Request-Type", T.ENUMERATED),
    (276, 0): AvpDef("Auth-Grace-Period", T.UNSIGNED32),
    (277, 0): AvpDef("Auth-Session-State", T.ENUMERATED),
    (278, 0): AvpDef("Origin-State-Id", T.UNSIGNED32),
    (279, 0): AvpDef("Failed-AVP", T.GROUPED),
    (280, 0): AvpDef("Proxy-Host", T.DIAMETER_IDENTITY),
    (281, 0): AvpDef("Error-Message", T.UTF8_STRING, mandatory=False),
    (282, 0): AvpDef("Route-Record", T.DIAMETER_IDENTITY),
    (283, 0): AvpDef("Destination-Realm", T.DIAMETER_IDENTITY),
    (284, 0): AvpDef("Proxy-Info", T.GROUPED),
    (285, 0): AvpDef("Re-Auth-Request-Type", T.ENUMERATED),
    (287, 0): AvpDef("Accounting-Sub-Session-Id", T.UNSIGNED64),
    (291, 0): AvpDef("Authorization-Lifetime", T.UNSIGNED32),
    (292, 0): AvpDef("Redirect-Host", T.DIAMETER_URI),
    (293, 0): AvpDef("Destination-Host", T.DIAMETER_IDENTITY),
    (294, 0): AvpDef("Error-Reporting-Host", T.DIAMETER_IDENTITY, mandatory=False),
    (295, 0): AvpDef("Termination-Cause", T.ENUMERATED),
    (296, 0): AvpDef("Origin-Realm", T.DIAMETER_IDENTITY),
    (297, 0): AvpDef("Experimental-Result", T.GROUPED),
    (298, 0): AvpDef("Experimental-Result-Code", T.UNSIGNED32),
    (299, 0): AvpDef("Inband-Security-Id", T.UNSIGNED32),
    (480, 0): AvpDef("Accounting-Record-Type", T.ENUMERATED),
    (483, 0): AvpDef("Accounting-Realtime-Required", T.ENUMERATED),
    (485, 0): AvpDef("Accounting-Record-Number", T.UNSIGNED32),
    # --- RFC 4072 §4.1 Diameter EAP ----------------------------------------------------------
    (462, 0): AvpDef("EAP-Payload", T.OCTET_STRING),
    (463, 0): AvpDef("EAP-Reissued-Payload", T.OCTET_STRING),
    (464, 0): AvpDef("EAP-Master-Session-Key", T.OCTET_STRING),
    (465, 0): AvpDef("Accounting-EAP-Auth-Method", T.UNSIGNED64),
    (102, 0): AvpDef("EAP-Key-Name", T.OCTET_STRING),
    # --- RFC 7155 §4 NASREQ ------------------------------------------------------------------
    (8, 0): AvpDef("Framed-IP-Address", T.OCTET_STRING),
    (30, 0): AvpDef("Called-Station-Id", T.UTF8_STRING),
    (31, 0): AvpDef("Calling-Station-Id", T.UTF8_STRING),
    (96, 0): AvpDef("Framed-Interface-Id", T.UNSIGNED64),
    (97, 0): AvpDef("Framed-IPv6-Prefix", T.OCTET_STRING),
    # --- RFC 4004 / RFC 5447 / RFC 5778 Mobile IPv6 ------------------------------------------
    (124, 0): AvpDef("MIP6-Feature-Vector", T.UNSIGNED64),
    (125, 0): AvpDef("MIP6-Home-Link-Prefix", T.OCTET_STRING),
    (334, 0): AvpDef("MIP-Home-Agent-Address", T.ADDRESS),
    (348, 0): AvpDef("MIP-Home-Agent-Host", T.GROUPED),
    (486, 0): AvpDef("MIP6-Agent-Info", T.GROUPED),
    (487, 0): AvpDef("MIP-Careof-Address", T.ADDRESS),
    (493, 0): AvpDef("Service-Selection", T.UTF8_STRING),
    (506, 0): AvpDef("Mobile-Node-Identifier", T.UTF8_STRING),
    # --- TS 29.229 §6.3 (Cx AVPs reused on SWx), vendor 10415 --------------------------------
    (600, _V): AvpDef("Visited-Network-Identifier", T.OCTET_STRING),
    (601, _V): AvpDef("Public-Identity", T.UTF8_STRING),
    (602, _V): AvpDef("Server-Name", T.UTF8_STRING),
    (607, _V): AvpDef("SIP-Number-Auth-Items", T.UNSIGNED32),
    (608, _V): AvpDef("SIP-Authentication-Scheme", T.UTF8_STRING),
    (609, _V): AvpDef("SIP-Authenticate", T.OCTET_STRING),
    (610, _V): AvpDef("SIP-Authorization", T.OCTET_STRING),
    (611, _V): AvpDef("SIP-Authentication-Context", T.OCTET_STRING),
    (612, _V): AvpDef("SIP-Auth-Data-Item", T.GROUPED),
    (613, _V): AvpDef("SIP-Item-Number", T.UNSIGNED32),
    (614, _V): AvpDef("Server-Assignment-Type", T.ENUMERATED),
    (615, _V): AvpDef("Deregistration-Reason", T.GROUPED),
    (624, _V): AvpDef("User-Data-Already-Available", T.ENUMERATED),
    (625, _V): AvpDef("Confidentiality-Key", T.OCTET_STRING),
    (626, _V): AvpDef("Integrity-Key", T.OCTET_STRING),
    (628, _V): AvpDef("Supported-Features", T.GROUPED, mandatory=False),
    (629, _V): AvpDef("Feature-List-ID", T.UNSIGNED32, mandatory=False),
    (630, _V): AvpDef("Feature-List", T.UNSIGNED32, mandatory=False),
    (701, _V): AvpDef("MSISDN", T.OCTET_STRING),
    # --- TS 29.212 §5.3 / TS 29.214 (QoS, RAT-Type) -----------------------------------------
    (515, _V): AvpDef("Max-Requested-Bandwidth-DL", T.UNSIGNED32),
    (516, _V): AvpDef("Max-Requested-Bandwidth-UL", T.UNSIGNED32),
    (848, _V): AvpDef("Served-Party-IP-Address", T.ADDRESS),
    (1028, _V): AvpDef("QoS-Class-Identifier", T.ENUMERATED),
    (1032, _V): AvpDef("RAT-Type", T.ENUMERATED, mandatory=False),
    (1034, _V): AvpDef("Allocation-Retention-Priority", T.GROUPED, mandatory=False),
    (1046, _V): AvpDef("Priority-Level", T.UNSIGNED32, mandatory=False),
    (1047, _V): AvpDef("Pre-emption-Capability", T.ENUMERATED, mandatory=False),
    (1048, _V): AvpDef("Pre-emption-Vulnerability", T.ENUMERATED, mandatory=False),
    # --- TS 29.272 §7.3 (subscription data reused by SWx/S6b) -------------------------------
    (1407, _V): AvpDef("Visited-PLMN-Id", T.OCTET_STRING),
    (1423, _V): AvpDef("Context-Identifier", T.UNSIGNED32),
    (1428, _V): AvpDef("All-APN-Configurations-Included-Indicator", T.ENUMERATED),
    (1429, _V): AvpDef("APN-Configuration-Profile", T.GROUPED),
    (1430, _V): AvpDef("APN-Configuration", T.GROUPED),
    (1431, _V): AvpDef("EPS-Subscribed-QoS-Profile", T.GROUPED),
    (1435, _V): AvpDef("AMBR", T.GROUPED),
    (1438, _V): AvpDef("PDN-GW-Allocation-Type", T.ENUMERATED),
    (1456, _V): AvpDef("PDN-Type", T.ENUMERATED),
    # --- TS 29.273 §5.2.3 / §8.2.3 / §9.2.3 ------------------------------------------------
    (318, _V): AvpDef("3GPP-AAA-Server-Name", T.DIAMETER_IDENTITY),
    (1500, _V): AvpDef("Non-3GPP-User-Data", T.GROUPED),
    (1501, _V): AvpDef("Non-3GPP-IP-Access", T.ENUMERATED),
    (1502, _V): AvpDef("Non-3GPP-IP-Access-APN", T.ENUMERATED),
    (1503, _V): AvpDef("AN-Trusted", T.ENUMERATED),
    (1504, _V): AvpDef("ANID", T.UTF8_STRING),
    (1505, _V): AvpDef("Trace-Info", T.GROUPED),
    (1518, _V): AvpDef("AAA-Failure-Indication", T.UNSIGNED32),
}

AVP_BY_NAME: dict[str, tuple[int, int]] = {d.name: key for key, d in AVP_DICTIONARY.items()}
"""Reverse lookup: spec name -> (code, vendor_id)."""


class AvpCode(IntEnum):
    """Base-protocol (vendor 0) AVP codes, IANA "AVP Codes" registry (RFC 6733 §4.5, RFC 4072, RFC 5447/5778)."""

    USER_NAME = 1
    FRAMED_IP_ADDRESS = 8
    CLASS = 25
    SESSION_TIMEOUT = 27
    CALLED_STATION_ID = 30
    CALLING_STATION_ID = 31
    FRAMED_INTERFACE_ID = 96
    FRAMED_IPV6_PREFIX = 97
    EAP_KEY_NAME = 102
    MIP6_FEATURE_VECTOR = 124
    MIP6_HOME_LINK_PREFIX = 125
    HOST_IP_ADDRESS = 257
    AUTH_APPLICATION_ID = 258
    ACCT_APPLICATION_ID = 259
    VENDOR_SPECIFIC_APPLICATION_ID = 260
    SESSION_ID = 263
    ORIGIN_HOST = 264
    SUPPORTED_VENDOR_ID = 265
    VENDOR_ID = 266
    FIRMWARE_REVISION = 267
    RESULT_CODE = 268
    PRODUCT_NAME = 269
    MULTI_ROUND_TIME_OUT = 272
    DISCONNECT_CAUSE = 273
    AUTH_REQUEST_TYPE = 274
    AUTH_GRACE_PERIOD = 276
    AUTH_SESSION_STATE = 277
    ORIGIN_STATE_ID = 278
    FAILED_AVP = 279
    PROXY_HOST = 280
    ERROR_MESSAGE = 281
    ROUTE_RECORD = 282
    DESTINATION_REALM = 283
    PROXY_INFO = 284
    RE_AUTH_REQUEST_TYPE = 285
    AUTHORIZATION_LIFETIME = 291
    DESTINATION_HOST = 293
    ERROR_REPORTING_HOST = 294
    TERMINATION_CAUSE = 295
    ORIGIN_REALM = 296
    EXPERIMENTAL_RESULT = 297
    EXPERIMENTAL_RESULT_CODE = 298
    INBAND_SECURITY_ID = 299
    MIP_HOME_AGENT_ADDRESS = 334
    MIP_HOME_AGENT_HOST = 348
    EAP_PAYLOAD = 462
    EAP_REISSUED_PAYLOAD = 463
    EAP_MASTER_SESSION_KEY = 464
    ACCOUNTING_EAP_AUTH_METHOD = 465
    MIP6_AGENT_INFO = 486
    MIP_CAREOF_ADDRESS = 487
    SERVICE_SELECTION = 493
    MOBILE_NODE_IDENTIFIER = 506


class Avp3gpp(IntEnum):
    """3GPP (vendor 10415) AVP codes, TS 29.229 §6.3, TS 29.272 §7.3, TS 29.273 §5.2.3/§8.2.3/§9.2.3."""

    AAA_SERVER_NAME_3GPP = 318
    MAX_REQUESTED_BANDWIDTH_DL = 515
    MAX_REQUESTED_BANDWIDTH_UL = 516
    VISITED_NETWORK_IDENTIFIER = 600
    PUBLIC_IDENTITY = 601
    SERVER_NAME = 602
    SIP_NUMBER_AUTH_ITEMS = 607
    SIP_AUTHENTICATION_SCHEME = 608
    SIP_AUTHENTICATE = 609
    SIP_AUTHORIZATION = 610
    SIP_AUTHENTICATION_CONTEXT = 611
    SIP_AUTH_DATA_ITEM = 612
    SIP_ITEM_NUMBER = 613
    SERVER_ASSIGNMENT_TYPE = 614
    DEREGISTRATION_REASON = 615
    USER_DATA_ALREADY_AVAILABLE = 624
    CONFIDENTIALITY_KEY = 625
    INTEGRITY_KEY = 626
    SUPPORTED_FEATURES = 628
    FEATURE_LIST_ID = 629
    FEATURE_LIST = 630
    MSISDN = 701
    SERVED_PARTY_IP_ADDRESS = 848
    QOS_CLASS_IDENTIFIER = 1028
    RAT_TYPE = 1032
    ALLOCATION_RETENTION_PRIORITY = 1034
    PRIORITY_LEVEL = 1046
    PRE_EMPTION_CAPABILITY = 1047
    PRE_EMPTION_VULNERABILITY = 1048
    VISITED_PLMN_ID = 1407
    CONTEXT_IDENTIFIER = 1423
    ALL_APN_CONFIGURATIONS_INCLUDED_INDICATOR = 1428
    APN_CONFIGURATION_PROFILE = 1429
    APN_CONFIGURATION = 1430
    EPS_SUBSCRIBED_QOS_PROFILE = 1431
    AMBR = 1435
    PDN_GW_ALLOCATION_TYPE = 1438
    PDN_TYPE = 1456
    NON_3GPP_USER_DATA = 1500
    NON_3GPP_IP_ACCESS = 1501
    NON_3GPP_IP_ACCESS_APN = 1502
    AN_TRUSTED = 1503
    ANID = 1504
    TRACE_INFO = 1505
    AAA_FAILURE_INDICATION = 1518


def _check() -> None:
    for code in AvpCode:
        assert (int(code), 0) in AVP_DICTIONARY, code
    for code3 in Avp3gpp:
        assert (int(code3), VENDOR_3GPP) in AVP_DICTIONARY, code3


_check()
