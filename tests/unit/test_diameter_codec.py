"""Diameter codec: vectors, round trips, padding, grouped AVPs, framing, malformed input."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2c.codec.diameter import (
    AVP_FLAG_MANDATORY,
    AVP_FLAG_VENDOR,
    FLAG_ERROR,
    FLAG_PROXIABLE,
    FLAG_REQUEST,
    VENDOR_3GPP,
    ApplicationId,
    Avp,
    Avp3gpp,
    AvpCode,
    CommandCode,
    DiameterDecodeError,
    DiameterFramer,
    DiameterMessage,
    ExperimentalResultCode,
    ResultCode,
    avp,
    parse_avps,
    parse_message,
    serialize_avps,
    serialize_message,
)
from s2c.codec.diameter_dict import AVP_DICTIONARY, AvpType
from s2c.diameter.messages import (
    EAP_AKA,
    EAP_AKA_PRIME,
    DiameterEapAnswer,
    DiameterEapRequest,
    LocalIdentity,
    MultimediaAuthAnswer,
    MultimediaAuthRequest,
    SipAuthDataItem,
    advertised_applications,
    apn_configuration,
    build_cea,
    build_cer,
    build_dea,
    build_der,
    build_dpa,
    build_dpr,
    build_dwa,
    build_dwr,
    build_error_answer,
    build_maa,
    build_mar,
    make_session_id,
)

IDENT = LocalIdentity(
    origin_host="hss.example.org",
    origin_realm="example.org",
    host_ip_addresses=("192.0.2.1",),
    vendor_id=0,
    product_name="s2c",
    auth_application_ids=(16777272,),
    vendor_specific_application_ids=((10415, 16777265),),
    supported_vendor_ids=(),
    firmware_revision=None,
)

# Hand-assembled from RFC 6733 §3 (header), §4.1 (AVP header) and §5.3.1 (CER ABNF);
# every length and pad byte typed by hand from the spec, not by the codec.
CER_VECTOR = bytes.fromhex(
    "01000094"  # version 1, length 148
    "80000101"  # flags R, command 257
    "00000000"  # application 0
    "00001234"  # hop-by-hop
    "00005678"  # end-to-end
    "00000108" "40000017" + b"hss.example.org".hex() + "00"  # Origin-Host, len 23, pad 1
    "00000128" "40000013" + b"example.org".hex() + "00"  # Origin-Realm, len 19, pad 1
    "00000101" "4000000e" "0001" "c0000201" "0000"  # Host-IP-Address 192.0.2.1, len 14, pad 2
    "0000010a" "4000000c" "00000000"  # Vendor-Id 0
    "0000010d" "0000000b" + b"s2c".hex() + "00"  # Product-Name (no M bit), len 11, pad 1
    "00000102" "4000000c" "01000038"  # Auth-Application-Id 16777272 (S6b)
    "00000104" "40000020"  # Vendor-Specific-Application-Id, len 32
    "0000010a" "4000000c" "000028af"  # Vendor-Id 10415
    "00000102" "4000000c" "01000031"  # Auth-Application-Id 16777265 (SWx)
)


def test_cer_matches_hand_built_vector() -> None:
    cer = build_cer(IDENT)
    cer.hop_by_hop, cer.end_to_end = 0x1234, 0x5678
    assert len(CER_VECTOR) == 148
    assert serialize_message(cer) == CER_VECTOR


def test_cer_vector_parses() -> None:
    m = parse_message(CER_VECTOR)
    assert m.command_code == CommandCode.CAPABILITIES_EXCHANGE
    assert m.is_request and not m.is_proxiable and not m.is_error
    assert (m.hop_by_hop, m.end_to_end) == (0x1234, 0x5678)
    assert m.origin_host == "hss.example.org"
    assert m.origin_realm == "example.org"
    host_ip = m.find(AvpCode.HOST_IP_ADDRESS)
    assert host_ip is not None and host_ip.as_address() == ipaddress.IPv4Address("192.0.2.1")
    pn = m.find(AvpCode.PRODUCT_NAME)
    assert pn is not None and not pn.is_mandatory and pn.value == "s2c"
    assert advertised_applications(m) == {16777272, 16777265}
    assert serialize_message(m) == CER_VECTOR


@pytest.mark.parametrize("n", range(0, 10))
def test_padding_and_length_field(n: int) -> None:
    a = Avp.octets(AvpCode.CLASS, bytes(range(n)))
    raw = serialize_avps([a])
    assert len(raw) % 4 == 0
    assert len(raw) == 8 + n + (-n % 4)
    assert struct.unpack("!I", raw[4:8])[0] & 0xFFFFFF == 8 + n  # length excludes padding
    assert raw[8 + n :] == b"\0" * (-n % 4)
    assert parse_avps(raw) == [a]


def test_vendor_avp_header() -> None:
    a = Avp.u32(Avp3gpp.SIP_NUMBER_AUTH_ITEMS, 3, VENDOR_3GPP)
    raw = serialize_avps([a])
    assert raw == bytes.fromhex("0000025f" "c0000010" "000028af" "00000003")
    (b,) = parse_avps(raw)
    assert b.vendor_id == VENDOR_3GPP and b.is_vendor and b.is_mandatory and b.value == 3


def test_typed_values_round_trip() -> None:
    avps = [
        avp("User-Name", "0001010123456789@nai.epc.mnc001.mcc001.3gppnetwork.org"),
        avp("Session-Timeout", 3600),
        avp("MIP6-Feature-Vector", 0x0000_4000_0000_0000),
        avp("Host-IP-Address", "2001:db8::1"),
        avp("Event-Timestamp", 3_900_000_000),
        avp("Disconnect-Cause", 2),
        avp("EAP-Payload", b"\x02\x01\x00\x05\x01"),
        avp("Redirect-Host", "aaa://hss.example.org:3868;transport=tcp"),
        avp("Accounting-Sub-Session-Id", 2**64 - 1),
    ]
    msg = DiameterMessage(CommandCode.DIAMETER_EAP, ApplicationId.S6B_3GPP, FLAG_REQUEST | FLAG_PROXIABLE, 7, 9, avps)
    back = parse_message(serialize_message(msg))
    assert back == msg
    vals = [a.value for a in back.avps]
    assert vals == [
        "0001010123456789@nai.epc.mnc001.mcc001.3gppnetwork.org",
        3600,
        0x0000_4000_0000_0000,
        ipaddress.IPv6Address("2001:db8::1"),
        3_900_000_000,
        2,
        b"\x02\x01\x00\x05\x01",
        "aaa://hss.example.org:3868;transport=tcp",
        2**64 - 1,
    ]


def test_grouped_nested_round_trip() -> None:
    apn = apn_configuration(1, "internet", home_agent_address="2001:db8:1::1")
    raw = serialize_avps([apn])
    (back,) = parse_avps(raw)
    assert back == apn
    children = back.as_grouped()
    assert [c.name for c in children] == ["Context-Identifier", "PDN-Type", "Service-Selection", "MIP6-Agent-Info"]
    mip = children[3].find(AvpCode.MIP_HOME_AGENT_ADDRESS)
    assert mip is not None and mip.as_address() == ipaddress.IPv6Address("2001:db8:1::1")


def test_unknown_avp_kept_raw() -> None:
    unknown = Avp(99999, AVP_FLAG_MANDATORY | AVP_FLAG_VENDOR, b"\x01\x02\x03", 12345)
    m = DiameterMessage(300, 0, FLAG_REQUEST, 1, 2, [unknown])
    back = parse_message(serialize_message(m))
    assert back.avps == [unknown]
    assert back.avps[0].value == b"\x01\x02\x03"
    assert back.avps[0].definition is None


def test_result_code_vs_experimental_result() -> None:
    req = build_mar(IDENT, session_id="s;1;2", destination_realm="example.org", user_name="u@example.org")
    a1 = build_maa(req, IDENT, experimental_result=ExperimentalResultCode.DIAMETER_ERROR_USER_UNKNOWN)
    a2 = build_error_answer(req, IDENT, ResultCode.DIAMETER_AVP_UNSUPPORTED)
    b1, b2 = parse_message(a1.serialize()), parse_message(a2.serialize())
    assert b1.result_code is None and b1.experimental_result == (VENDOR_3GPP, 5001)
    assert b2.result_code == 5001 and b2.experimental_result is None
    assert not b1.is_success and not b2.is_success


def test_error_answer_sets_e_bit_for_protocol_errors() -> None:
    req = build_dwr(IDENT)
    req.hop_by_hop, req.end_to_end = 11, 22
    ans = build_error_answer(req, IDENT, ResultCode.DIAMETER_COMMAND_UNSUPPORTED)
    assert ans.flags & FLAG_ERROR and not ans.is_request
    assert (ans.hop_by_hop, ans.end_to_end) == (11, 22)
    ans2 = build_error_answer(req, IDENT, ResultCode.DIAMETER_MISSING_AVP)
    assert not ans2.flags & FLAG_ERROR


def test_base_builders_round_trip() -> None:
    for m in (build_cer(IDENT), build_dwr(IDENT), build_dpr(IDENT)):
        m.hop_by_hop, m.end_to_end = 5, 6
        assert parse_message(m.serialize()) == m
        for ans in (build_cea(m, IDENT), build_dwa(m, IDENT), build_dpa(m, IDENT)):
            b = parse_message(ans.serialize())
            assert b == ans and b.result_code == ResultCode.DIAMETER_SUCCESS and not b.is_request


def test_der_dea_round_trip() -> None:
    sid = make_session_id("pgw.example.org", 1, 42)
    assert sid == "pgw.example.org;1;42"
    der = build_der(
        IDENT, session_id=sid, destination_realm="example.org", eap_payload=b"\x02\x00\x00\x08\x01abc",
        user_name="0001010123456789@nai.epc", service_selection="internet", mip6_feature_vector=1 << 46,
    )
    der.hop_by_hop, der.end_to_end = 1, 2
    assert der.command_code == 268 and der.application_id == 16777272
    back = parse_message(der.serialize())
    view = DiameterEapRequest.from_message(back)
    assert view.session_id == sid and view.eap_payload == b"\x02\x00\x00\x08\x01abc"
    assert view.service_selection == "internet" and view.mip6_feature_vector == 1 << 46
    dea = build_dea(back, IDENT, result_code=ResultCode.DIAMETER_SUCCESS, eap_payload=b"\x03\x00\x00\x04",
                    eap_master_session_key=bytes(64), mobile_node_identifier="0001010123456789@nai.epc",
                    apn_configurations=[apn_configuration(1, "internet")])
    dv = DiameterEapAnswer.from_message(parse_message(dea.serialize()))
    assert dv.is_success and dv.eap_master_session_key == bytes(64) and len(dv.apn_configurations) == 1
    assert dv.session_id == sid


def test_mar_maa_round_trip() -> None:
    mar = build_mar(IDENT, session_id="aaa;1;1", destination_realm="example.org", user_name="0001@nai",
                    scheme=EAP_AKA_PRIME, number_auth_items=1, anid="WLAN")
    assert mar.command_code == 303 and mar.application_id == 16777265
    view = MultimediaAuthRequest.from_message(parse_message(mar.serialize()))
    assert view.scheme == "EAP-AKA'" and view.number_auth_items == 1 and view.anid == "WLAN"
    item = SipAuthDataItem(EAP_AKA, authenticate=bytes(range(32)), authorization=bytes(8),
                           confidentiality_key=b"c" * 16, integrity_key=b"i" * 16, item_number=1)
    maa = build_maa(mar, IDENT, items=[item], result_code=ResultCode.DIAMETER_SUCCESS)
    mv = MultimediaAuthAnswer.from_message(parse_message(maa.serialize()))
    assert mv.is_success and mv.items == (item,) and mv.user_name == "0001@nai"


def test_typed_view_missing_avp() -> None:
    m = DiameterMessage(268, 16777272, FLAG_REQUEST, 1, 1, [Avp.utf8(AvpCode.SESSION_ID, "x")])
    with pytest.raises(DiameterDecodeError):
        DiameterEapRequest.from_message(m)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x01\x00\x00",
        bytes.fromhex("02000014" "80000101" "00000000" "00000000" "00000000"),  # version 2
        bytes.fromhex("01000018" "80000101" "00000000" "00000000" "00000000"),  # length != buffer
        bytes.fromhex("01000015" "80000101" "00000000" "00000000" "00000000" "00"),  # not multiple of 4
        bytes.fromhex("01000014" "8f000101" "00000000" "00000000" "00000000"),  # reserved flags
        bytes.fromhex("01000018" "80000101" "00000000" "00000000" "00000000" "00000001"),  # truncated AVP hdr
        bytes.fromhex("0100001c" "80000101" "00000000" "00000000" "00000000" "00000001" "40000004"),  # AVP len < 8
        bytes.fromhex("0100001c" "80000101" "00000000" "00000000" "00000000" "00000001" "c0000008"),  # V without vendor
        bytes.fromhex("01000020" "80000101" "00000000" "00000000" "00000000" "00000001" "40000010" "41414141"),
        bytes.fromhex("01000020" "80000101" "00000000" "00000000" "00000000" "00000001" "4000000d" "41414141"),
    ],
)
def test_malformed_raises_decode_error(raw: bytes) -> None:
    with pytest.raises(DiameterDecodeError):
        parse_message(raw)


def test_bad_typed_values_raise_decode_error() -> None:
    with pytest.raises(DiameterDecodeError):
        Avp(AvpCode.RESULT_CODE, AVP_FLAG_MANDATORY, b"\x00\x01").as_u32()
    with pytest.raises(DiameterDecodeError):
        Avp(AvpCode.USER_NAME, AVP_FLAG_MANDATORY, b"\xff\xfe").value
    with pytest.raises(DiameterDecodeError):
        Avp(AvpCode.HOST_IP_ADDRESS, AVP_FLAG_MANDATORY, b"\x00\x01\x01").value
    with pytest.raises(DiameterDecodeError):
        Avp(AvpCode.FAILED_AVP, AVP_FLAG_MANDATORY, b"\x00\x00").value


def _sample_stream() -> tuple[bytes, list[DiameterMessage]]:
    msgs = [build_cer(IDENT), build_dwr(IDENT)]
    msgs.append(build_mar(IDENT, session_id="a;1;2", destination_realm="r", user_name="u"))
    for i, m in enumerate(msgs):
        m.hop_by_hop, m.end_to_end = i + 1, 100 + i
    return b"".join(m.serialize() for m in msgs), msgs


def test_framer_split_at_every_offset() -> None:
    stream, msgs = _sample_stream()
    for cut in range(len(stream) + 1):
        f = DiameterFramer()
        got = f.feed(stream[:cut]) + f.feed(stream[cut:])
        assert got == msgs, cut
        assert f.buffered == 0


def test_framer_byte_by_byte() -> None:
    stream, msgs = _sample_stream()
    f = DiameterFramer()
    got: list[DiameterMessage] = []
    for i in range(len(stream)):
        got += f.feed(stream[i : i + 1])
    assert got == msgs


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_framer_random_splits(data: st.DataObject) -> None:
    stream, msgs = _sample_stream()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    f = DiameterFramer()
    got: list[DiameterMessage] = []
    prev = 0
    for c in cuts + [len(stream)]:
        got += f.feed(stream[prev:c])
        prev = c
    assert got == msgs


@pytest.mark.parametrize(
    "prefix",
    [
        bytes.fromhex("01ffffff"),  # 16 MiB - absurd
        bytes.fromhex("01000010"),  # shorter than a header
        bytes.fromhex("01000015"),  # not a multiple of 4
        bytes.fromhex("47455420"),  # "GET " - not Diameter
    ],
)
def test_framer_rejects_absurd_lengths(prefix: bytes) -> None:
    f = DiameterFramer()
    with pytest.raises(DiameterDecodeError):
        f.feed(prefix)
    assert f.broken
    with pytest.raises(DiameterDecodeError):
        f.feed(b"")


def test_framer_waits_for_partial_header() -> None:
    f = DiameterFramer()
    assert f.feed(b"\x01\x00") == []
    assert f.buffered == 2


def _exercise(m: DiameterMessage) -> None:
    """Touch every accessor a daemon might call."""
    for _, a in m.walk():
        _ = a.value
        repr(a)
    _ = (m.session_id, m.origin_host, m.result_code, m.experimental_result, m.is_success)
    advertised_applications(m)
    for view in (DiameterEapRequest, DiameterEapAnswer, MultimediaAuthRequest, MultimediaAuthAnswer):
        try:
            view.from_message(m)
        except DiameterDecodeError:
            pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_parse_random_bytes_only_decode_error(raw: bytes) -> None:
    try:
        m = parse_message(raw)
        _exercise(m)
    except DiameterDecodeError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_parse_mutated_messages_only_decode_error(data: st.DataObject) -> None:
    mar = build_mar(IDENT, session_id="a;1;2", destination_realm="r", user_name="u")
    der = build_der(IDENT, session_id="a;1;3", destination_realm="r", eap_payload=b"\x02\x00\x00\x04",
                    service_selection="internet", mip6_feature_vector=1)
    choices = [
        build_maa(mar, IDENT, items=[SipAuthDataItem(EAP_AKA, bytes(32), bytes(8), bytes(16), bytes(16))],
                  result_code=2001),
        mar,
        der,
        build_dea(der, IDENT, experimental_result=5450, eap_master_session_key=bytes(64),
                  apn_configurations=[apn_configuration(1, "internet", home_agent_address="192.0.2.1")]),
        build_cer(IDENT),
    ]
    base = bytearray(data.draw(st.sampled_from(choices)).serialize())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(base) - 1))
        base[i] = data.draw(st.integers(0, 255))
    try:
        m = parse_message(bytes(base))
        _exercise(m)
    except DiameterDecodeError:
        pass
    f = DiameterFramer()
    try:
        for m in f.feed(bytes(base)):
            _exercise(m)
    except DiameterDecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.booleans(), st.binary(max_size=40)),
        max_size=8,
    ),
    st.integers(0, 0xFFFFFF),
    st.integers(0, 2**32 - 1),
)
def test_round_trip_property(spec: list[tuple[int, int, bool, bytes]], cmd: int, app: int) -> None:
    avps = [Avp(code, (AVP_FLAG_MANDATORY if m else 0) | (AVP_FLAG_VENDOR if v else 0), d, v)
            for code, v, m, d in spec]
    msg = DiameterMessage(cmd, app, FLAG_REQUEST, 1, 2, avps)
    assert parse_message(serialize_message(msg)) == msg


def test_dictionary_sane() -> None:
    names = [d.name for d in AVP_DICTIONARY.values()]
    assert len(names) == len(set(names))
    assert AVP_DICTIONARY[(612, VENDOR_3GPP)].type is AvpType.GROUPED
    assert AVP_DICTIONARY[(462, 0)].name == "EAP-Payload"
    assert AVP_DICTIONARY[(297, 0)].type is AvpType.GROUPED


def _scapy_avps(avps: list) -> list[tuple[int, int, int]]:
    return [(a.avpCode, getattr(a, "avpVnd", None) or 0, a.avpLen) for a in avps]


def test_scapy_dissects_our_messages_identically() -> None:
    """Scapy (independent dissector) sees the same header fields and AVP codes/vendors/lengths."""
    from scapy.contrib.diameter import DiamG

    mar = build_mar(IDENT, session_id="aaa;1;1", destination_realm="example.org", user_name="0001@nai")
    maa = build_maa(mar, IDENT, items=[SipAuthDataItem(EAP_AKA, bytes(32), bytes(8), bytes(16), bytes(16), 1)],
                    result_code=2001)
    der = build_der(IDENT, session_id="p;1;1", destination_realm="example.org", eap_payload=b"\x02\x01\x00\x04",
                    service_selection="internet")
    dea = build_dea(der, IDENT, result_code=1001, eap_payload=b"\x01\x02\x00\x04")
    for m in (build_cer(IDENT), mar, maa, der, dea, build_dwr(IDENT), build_dpr(IDENT)):
        m.hop_by_hop, m.end_to_end = 0xAABBCCDD, 0x11223344
        raw = m.serialize()
        p = DiamG(raw)
        assert (p.drCode, p.drAppId, p.drLen) == (m.command_code, m.application_id, len(raw))
        assert (p.drHbHId, p.drEtEId) == (0xAABBCCDD, 0x11223344)
        ours = [(a.code, a.vendor_id, 8 + (4 if a.vendor_id else 0) + len(a.data)) for a in m.avps]
        assert _scapy_avps(p.avpList) == ours


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=20, max_size=200))
def test_reserialize_is_identity_for_parsable_input(tail: bytes) -> None:
    """Whatever parses re-serializes to the same bytes, modulo non-zero padding bytes."""
    raw = bytearray(bytes.fromhex("01000000" "80000101" "00000000" "00000001" "00000002") + tail)
    raw = raw[: len(raw) & ~3]
    raw[1:4] = len(raw).to_bytes(3, "big")
    try:
        m = parse_message(bytes(raw))
    except DiameterDecodeError:
        return
    again = serialize_message(m)
    assert len(again) == len(raw)
    assert parse_message(again) == m


def test_vendor_flag_with_zero_vendor_round_trips() -> None:
    raw = bytes.fromhex("01000024" "80000101" "00000000" "00000001" "00000002"
                        "00000001" "c0000010" "00000000" "41424344")
    m = parse_message(raw)
    assert m.avps[0].vendor_id == 0 and m.avps[0].is_vendor
    assert serialize_message(m) == raw


def test_session_id_generator() -> None:
    from s2c.diameter.messages import SessionIdGenerator

    g = SessionIdGenerator("pgw.example.org", 1700000000, start=0xFFFFFFFF)
    assert g() == "pgw.example.org;1700000000;4294967295"
    assert g("imsi") == "pgw.example.org;1700000000;0;imsi"


def test_apn_configuration_view_round_trip() -> None:
    from s2c.diameter.messages import ApnConfiguration, PdnType

    cfg = ApnConfiguration(3, "ims", PdnType.IPV4V6, ("2001:db8::10", "192.0.2.10"))
    back = ApnConfiguration.from_avp(parse_avps(serialize_avps([cfg.to_avp()]))[0])
    assert back == cfg
    der = build_der(IDENT, session_id="s;1;1", destination_realm="r", eap_payload=b"\x02\x00\x00\x04")
    dea = DiameterEapAnswer.from_message(parse_message(build_dea(
        der, IDENT, result_code=2001, apn_configurations=[apn_configuration(1, "internet", home_agent_address="2001:db8::1")],
    ).serialize()))
    assert [ApnConfiguration.from_avp(a) for a in dea.apn_configurations] == [
        ApnConfiguration(1, "internet", PdnType.IPV6, ("2001:db8::1",))
    ]
    with pytest.raises(DiameterDecodeError):
        ApnConfiguration.from_avp(Avp.grouped(Avp3gpp.APN_CONFIGURATION, [], VENDOR_3GPP))


def test_str_sta() -> None:
    from s2c.diameter.messages import build_sta, build_str

    req = build_str(IDENT, session_id="pgw;1;5", destination_realm="example.org", user_name="u@nai")
    assert req.command_code == 275 and req.application_id == 16777272 and req.is_request
    back = parse_message(req.serialize())
    assert back.get_u32(AvpCode.TERMINATION_CAUSE) == 1 and back.session_id == "pgw;1;5"
    ans = parse_message(build_sta(back, IDENT).serialize())
    assert ans.result_code == 2001 and ans.session_id == "pgw;1;5" and not ans.is_request
