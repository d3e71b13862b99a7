"""EAP (RFC 3748) and EAP-AKA/AKA' (RFC 4187, RFC 5448) codecs: round trips, hex, oracles, fuzz.

Oracles: scapy's ``scapy.layers.eap.EAP`` for the EAP header, Identity and Nak; tshark's EAP-AKA
dissector (pcap over EAPOL) for subtype and attribute Type/Length sequences.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2c.codec import eap
from s2c.codec import eap_aka as ea
from s2c.codec.eap import EapCode, EapDecodeError, EapType

H = bytes.fromhex


# --- EAP -------------------------------------------------------------------------------------

def test_identity_response_hex() -> None:
    p = eap.identity_response(5, "0001010123456789@nai.epc.mnc001.mcc001.3gppnetwork.org")
    b = eap.serialize(p)
    assert b[:5] == bytes((2, 5, 0, len(b), 1))
    assert eap.parse(b) == p


def test_success_failure() -> None:
    assert eap.serialize(eap.EapPacket(EapCode.SUCCESS, 9)) == H("03090004")
    assert eap.parse(H("04ff0004")) == eap.EapPacket(EapCode.FAILURE, 255)
    with pytest.raises(EapDecodeError):
        eap.parse(H("0300000500"))


def test_padding_after_length_is_ignored() -> None:
    assert eap.parse(H("03010004") + b"\x00" * 10) == eap.EapPacket(EapCode.SUCCESS, 1)
    p = eap.parse(H("0201000601") + b"a" + b"zz")
    assert p.type_data == b"a"


@pytest.mark.parametrize("bad", ["", "01", "010100", "01010003", "01010004",
                                  "07010004", "00010004", "0101ffff01"])
def test_malformed_eap(bad: str) -> None:
    with pytest.raises(EapDecodeError):
        eap.parse(H(bad))


def test_nak() -> None:
    p = eap.nak(3, [EapType.AKA_PRIME, EapType.AKA])
    assert eap.serialize(p) == H("020300070332" "17")
    assert eap.nak_types(eap.parse(eap.serialize(p))) == [EapType.AKA_PRIME, EapType.AKA]
    assert eap.nak_types(eap.parse(eap.serialize(eap.nak(3, [])))) == []


def test_scapy_dissects_our_eap() -> None:
    from scapy.layers.eap import EAP

    b = eap.serialize(eap.identity_response(42, b"0123@realm"))
    s = EAP(b)
    assert (s.code, s.id, s.len, s.type, s.identity) == (2, 42, len(b), 1, b"0123@realm")
    b = eap.serialize(eap.nak(7, [23, 50]))
    s = EAP(b)
    assert (s.code, s.id, s.type, list(s.desired_auth_types)) == (2, 7, 3, [23, 50])
    b = eap.serialize(eap.identity_request(1))
    s = EAP(b)
    assert (s.code, s.id, s.len, s.type) == (1, 1, 5, 1)
    s = EAP(eap.serialize(eap.EapPacket(EapCode.FAILURE, 77)))
    assert (s.code, s.id, s.len) == (4, 77, 4)


def test_scapy_built_packets_parse() -> None:
    from scapy.layers.eap import EAP

    p = eap.parse(bytes(EAP(code=2, id=9, type=1, identity=b"user@x")))
    assert p == eap.EapPacket(EapCode.RESPONSE, 9, EapType.IDENTITY, b"user@x")


@given(st.binary(max_size=64))
def test_eap_parse_only_raises_decode_error(data: bytes) -> None:
    try:
        p = eap.parse(data)
    except EapDecodeError:
        return
    assert eap.parse(eap.serialize(p)) == p


@given(st.sampled_from([1, 2]), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=200))
def test_eap_roundtrip(code: int, ident: int, typ: int, data: bytes) -> None:
    p = eap.EapPacket(code, ident, typ, data)
    assert eap.parse(eap.serialize(p)) == p


# --- EAP-AKA -------------------------------------------------------------------------------------

CHALLENGE = ea.AkaMessage(
    EapCode.REQUEST, 1, ea.AkaSubtype.CHALLENGE,
    (ea.AtRand(H("81e92b6c0ee0e12ebceba8d92a99dfa5")), ea.AtAutn(H("bb52e91c747ac3ab2a5c23d15ee351d5")),
     ea.AtResultInd(), ea.AtCheckcode(), ea.AtMac()),
)


def test_challenge_request_hex() -> None:
    b = ea.serialize(CHALLENGE)
    assert b.hex() == (
        "0101004c" "17" "01" "0000"
        "01050000" "81e92b6c0ee0e12ebceba8d92a99dfa5"
        "02050000" "bb52e91c747ac3ab2a5c23d15ee351d5"
        "87010000"
        "86010000"
        "0b050000" "00000000000000000000000000000000"
    )
    assert ea.parse(b) == CHALLENGE


def test_res_length_in_bits_and_padding() -> None:
    m = ea.AkaMessage(EapCode.RESPONSE, 2, ea.AkaSubtype.CHALLENGE, (ea.AtRes(H("28d7b0f2a2ec3de5")),))
    b = ea.serialize(m)
    assert b[8:] == H("03030040" "28d7b0f2a2ec3de5")
    # a 32-bit RES pads to 8 octets: Length 2
    m = ea.AkaMessage(EapCode.RESPONSE, 2, ea.AkaSubtype.CHALLENGE, (ea.AtRes(H("01020304")),))
    assert ea.serialize(m)[8:] == H("03020020" "01020304")
    # 5-byte RES pads with 3 zero octets
    m = ea.AkaMessage(EapCode.RESPONSE, 2, ea.AkaSubtype.CHALLENGE, (ea.AtRes(H("0102030405")),))
    assert ea.serialize(m)[8:] == H("03030028" "0102030405000000")
    assert ea.parse(ea.serialize(m)) == m
    # RES length not a multiple of 8 bits is kept
    m = ea.AkaMessage(EapCode.RESPONSE, 2, ea.AkaSubtype.CHALLENGE, (ea.AtRes(H("010203"), 20),))
    assert ea.parse(ea.serialize(m)).get(ea.AtRes).bits == 20


def test_sync_failure_and_identity_attrs() -> None:
    auts = bytes(range(14))
    m = ea.AkaMessage(EapCode.RESPONSE, 3, ea.AkaSubtype.SYNCHRONIZATION_FAILURE, (ea.AtAuts(auts),))
    assert ea.serialize(m) == H("0203001817040000") + H("0404") + auts
    idm = ea.AkaMessage(EapCode.RESPONSE, 4, ea.AkaSubtype.IDENTITY, (ea.AtIdentity(b"0123456"),))
    assert ea.serialize(idm)[8:] == H("0e030007") + b"0123456" + b"\x00"
    for flag, t in ((ea.AtPermanentIdReq(), 10), (ea.AtAnyIdReq(), 13), (ea.AtFullauthIdReq(), 17)):
        mm = ea.AkaMessage(EapCode.REQUEST, 4, ea.AkaSubtype.IDENTITY, (flag,))
        assert ea.serialize(mm)[8:] == bytes((t, 1, 0, 0))
        assert ea.parse(ea.serialize(mm)) == mm


def test_notification_client_error_kdf_bidding() -> None:
    n = ea.AtNotification(ea.NotificationCode.GENERAL_FAILURE)
    assert n.before_challenge and not n.success
    assert ea.AtNotification(ea.NotificationCode.SUCCESS).success
    m = ea.AkaMessage(EapCode.REQUEST, 5, ea.AkaSubtype.NOTIFICATION, (n,))
    assert ea.serialize(m)[8:] == H("0c014000")
    c = ea.AkaMessage(EapCode.RESPONSE, 5, ea.AkaSubtype.CLIENT_ERROR, (ea.AtClientErrorCode(0),))
    assert ea.serialize(c)[8:] == H("16010000")
    k = ea.AkaMessage(EapCode.REQUEST, 6, ea.AkaSubtype.CHALLENGE, (ea.AtKdf(1), ea.AtKdfInput(b"WLAN"), ea.AtBidding()),
                      method=EapType.AKA_PRIME)
    b = ea.serialize(k)
    assert b[4] == 50
    assert b[8:] == H("18010001" "17020004574c414e" "88018000")
    assert ea.parse(b) == k


def test_unknown_attributes_preserved_and_classified() -> None:
    raw = H("0105000011111111111111111111111111111111" "63010000" "c8020000aabbccdd")  # 99 and 200 unknown
    b = H("0101") + (8 + len(raw)).to_bytes(2, "big") + H("17010000") + raw
    m = ea.parse(b)
    assert m.unknown_non_skippable == [99]
    assert m.unknown_skippable == [200]
    assert ea.serialize(m) == b
    # skipped-but-preserved known attributes: AT_PADDING, AT_IV, AT_ENCR_DATA, AT_NEXT_PSEUDONYM
    raw = H("06020000" "00000000" "81050000" + "00" * 16 + "82050000" + "ab" * 16 + "84020003" "616263" "00")
    b = H("0101") + (8 + len(raw)).to_bytes(2, "big") + H("17010000") + raw
    m = ea.parse(b)
    assert [a.type for a in m.attributes] == [6, 129, 130, 132]
    assert m.unknown_non_skippable == [] and m.unknown_skippable == []
    assert ea.serialize(m) == b


@pytest.mark.parametrize("attrs", [
    "0100",  # truncated header
    "01000000",  # Length 0
    "01050000" + "00" * 8,  # overrun
    "02020000" + "00" * 4,  # AT_AUTN wrong length
    "03020040" + "00" * 4,  # AT_RES claims 64 bits in 4 octets
    "04030000" + "00" * 8,  # AT_AUTS wrong length
    "0e020009" + "00" * 4,  # AT_IDENTITY length overrun
    "0b040000" + "00" * 12,  # AT_MAC wrong length
    "0a020000" + "00" * 4,  # AT_PERMANENT_ID_REQ wrong length
    "86020000" + "00" * 4,  # AT_CHECKCODE 4 bytes
    "01030000" + "00" * 8,  # AT_RAND 8 bytes
])
def test_malformed_attributes(attrs: str) -> None:
    raw = H(attrs)
    b = H("0101") + (8 + len(raw)).to_bytes(2, "big") + H("17010000") + raw
    with pytest.raises(EapDecodeError):
        ea.parse(b)


def test_not_aka() -> None:
    with pytest.raises(EapDecodeError):
        ea.parse(eap.serialize(eap.identity_response(1, b"x")))
    with pytest.raises(EapDecodeError):
        ea.parse(H("03010004"))
    with pytest.raises(EapDecodeError):
        ea.parse(H("010100061701"))


def test_mac_input_and_set_mac() -> None:
    b = ea.serialize(CHALLENGE)
    zeroed, mac = ea.mac_input(b)
    assert zeroed == b and mac == bytes(16)
    b2 = ea.set_mac(b, b"\xaa" * 16)
    assert b2[-16:] == b"\xaa" * 16
    zeroed, mac = ea.mac_input(b2 + b"\x00\x00")  # trailing link padding dropped
    assert zeroed == b and mac == b"\xaa" * 16
    assert ea.mac_input(ea.serialize(ea.AkaMessage(EapCode.RESPONSE, 1, 2))) is None
    dup = ea.serialize(ea.AkaMessage(EapCode.REQUEST, 1, 1, (ea.AtMac(), ea.AtMac())))
    with pytest.raises(EapDecodeError):
        ea.mac_input(dup)


# --- property tests -------------------------------------------------------------------------

_bytes16 = st.binary(min_size=16, max_size=16)
_attr = st.one_of(
    _bytes16.map(ea.AtRand), _bytes16.map(ea.AtAutn), _bytes16.map(ea.AtMac), _bytes16.map(ea.AtNonceS),
    st.binary(min_size=4, max_size=16).map(ea.AtRes), st.binary(min_size=14, max_size=14).map(ea.AtAuts),
    st.binary(max_size=300).map(ea.AtIdentity), st.binary(min_size=1, max_size=60).map(ea.AtKdfInput),
    st.just(ea.AtPermanentIdReq()), st.just(ea.AtAnyIdReq()), st.just(ea.AtFullauthIdReq()), st.just(ea.AtResultInd()),
    st.integers(0, 0xFFFF).map(ea.AtClientErrorCode), st.integers(0, 0xFFFF).map(ea.AtNotification),
    st.integers(0, 0xFFFF).map(ea.AtKdf), st.integers(0, 0xFFFF).map(ea.AtCounter),
    st.sampled_from([b"", bytes(20), bytes(range(32))]).map(ea.AtCheckcode),
    st.builds(ea.AtBidding, st.booleans(), st.integers(0, 0x7FFF)),
    st.builds(lambda t, n: ea.RawAttribute(t, bytes(range(n * 4 + 2))), st.sampled_from([6, 99, 129, 130, 200]),
              st.integers(0, 5)),
)


@given(st.sampled_from([1, 2]), st.integers(0, 255), st.sampled_from(list(ea.AkaSubtype)),
       st.lists(_attr, max_size=8), st.sampled_from([EapType.AKA, EapType.AKA_PRIME]))
def test_aka_roundtrip(code: int, ident: int, sub: int, attrs: list, method: int) -> None:
    m = ea.AkaMessage(code, ident, sub, tuple(attrs), method=method)
    b = ea.serialize(m)
    m2 = ea.parse(b)
    # RawAttribute types that are IntEnum members compare equal as ints
    assert m2 == m
    assert ea.serialize(m2) == b


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_aka_parse_only_raises_decode_error(data: bytes) -> None:
    try:
        m = ea.parse(data)
    except EapDecodeError:
        return
    ea.mac_input(data)  # must not raise anything but EapDecodeError either
    assert ea.parse(ea.serialize(m)) == m


@settings(max_examples=500)
@given(st.binary(max_size=100))
def test_aka_parse_structured_fuzz(attrs: bytes) -> None:
    b = H("0101") + (8 + len(attrs)).to_bytes(2, "big") + H("32010000") + attrs
    try:
        m = ea.parse(b)
    except EapDecodeError:
        return
    try:
        ea.mac_input(b)
    except EapDecodeError:
        pass
    assert ea.parse(ea.serialize(m)) == m


# --- tshark oracle -----------------------------------------------------------------------------

def _tshark(packets: list[bytes]) -> list[dict]:
    from scapy.all import EAPOL, Ether, Raw, wrpcap

    fd, path = tempfile.mkstemp(suffix=".pcap")
    os.close(fd)
    try:
        wrpcap(path, [Ether(src="02:00:00:00:00:01", dst="01:80:c2:00:00:03") / EAPOL(version=2, type=0, len=len(b)) / Raw(b)
                      for b in packets])
        out = subprocess.run(
            ["tshark", "-r", path, "-T", "json", "-e", "eap.code", "-e", "eap.id", "-e", "eap.len", "-e", "eap.type",
             "-e", "eap.aka.subtype", "-e", "eap.aka.subtype.type", "-e", "eap.aka.subtype.len"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        return [p["_source"]["layers"] for p in json.loads(out)]
    finally:
        os.unlink(path)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_dissects_our_aka_messages() -> None:
    msgs = [
        CHALLENGE,
        ea.AkaMessage(EapCode.RESPONSE, 2, ea.AkaSubtype.CHALLENGE, (ea.AtRes(H("28d7b0f2a2ec3de5")), ea.AtMac(b"\x01" * 16))),
        ea.AkaMessage(EapCode.RESPONSE, 3, ea.AkaSubtype.SYNCHRONIZATION_FAILURE, (ea.AtAuts(bytes(14)),)),
        ea.AkaMessage(EapCode.REQUEST, 4, ea.AkaSubtype.IDENTITY, (ea.AtPermanentIdReq(),)),
        ea.AkaMessage(EapCode.RESPONSE, 4, ea.AkaSubtype.IDENTITY, (ea.AtIdentity(b"0001010123456789@x"),)),
        ea.AkaMessage(EapCode.RESPONSE, 5, ea.AkaSubtype.CLIENT_ERROR, (ea.AtClientErrorCode(0),)),
        ea.AkaMessage(EapCode.REQUEST, 6, ea.AkaSubtype.NOTIFICATION, (ea.AtNotification(16384),)),
        ea.AkaMessage(EapCode.RESPONSE, 7, ea.AkaSubtype.AUTHENTICATION_REJECT),
        ea.AkaMessage(EapCode.REQUEST, 8, ea.AkaSubtype.CHALLENGE,
                      (ea.AtRand(bytes(16)), ea.AtAutn(bytes(16)), ea.AtKdfInput(b"WLAN"), ea.AtKdf(1), ea.AtMac()),
                      method=EapType.AKA_PRIME),
    ]
    wire = [ea.serialize(m) for m in msgs]
    got = _tshark(wire)
    assert len(got) == len(msgs)
    for m, b, g in zip(msgs, wire, got):
        assert int(g["eap.code"][0]) == m.code
        assert int(g["eap.id"][0]) == m.identifier
        assert int(g["eap.len"][0]) == len(b)
        assert int(g["eap.type"][0]) == m.method
        assert int(g["eap.aka.subtype"][0]) == m.subtype
        types = [int(x) for x in g.get("eap.aka.subtype.type", [])]
        lens = [int(x) for x in g.get("eap.aka.subtype.len", [])]
        assert types == [int(a.TYPE) for a in m.attributes]
        assert lens == [len(ea.serialize_attributes([a])) // 4 for a in m.attributes]
