"""ESP codec and SA processing (RFC 4303, RFC 4106, RFC 3602, RFC 4868, RFC 3948 framing)."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from s2c.codec.esp import (
    EspError,
    EspPacket,
    IntegrityFailure,
    IpProto,
    MalformedEsp,
    ReplayedPacket,
    SequenceOverflow,
    Udp4500Kind,
    UnknownSpi,
    classify_udp_4500,
    strip_trailer,
    trailer,
)
from s2c.esp.replay import ReplayWindow
from s2c.esp.sa import Direction, EncrAlg, EspSa, IntegAlg, Mode
from s2c.esp.spd import Policy, PolicyAction, Sad, Selector, Spd

GCM128 = bytes(range(16)) + b"\xca\xfe\xba\xbe"
GCM256 = bytes(range(32)) + b"\x01\x02\x03\x04"
CBC_KEY = bytes(range(100, 116))
HMAC_KEY = bytes(range(200, 232))


def det_rng(seed: int = 1):
    state = [seed]

    def rng(n: int) -> bytes:
        state[0] += 1
        return (struct.pack("!Q", state[0]) * ((n // 8) + 1))[:n]

    return rng


def pair(suite: str, mode: Mode = Mode.TUNNEL, **kw):
    if suite == "gcm128":
        args = dict(encr=EncrAlg.ENCR_AES_GCM_16, encr_key=GCM128)
    elif suite == "gcm256":
        args = dict(encr=EncrAlg.ENCR_AES_GCM_16, encr_key=GCM256)
    elif suite == "cbc":
        args = dict(encr=EncrAlg.ENCR_AES_CBC, encr_key=CBC_KEY, integ=IntegAlg.AUTH_HMAC_SHA2_256_128, integ_key=HMAC_KEY)
    elif suite == "cbc256":
        args = dict(
            encr=EncrAlg.ENCR_AES_CBC, encr_key=bytes(32), integ=IntegAlg.AUTH_HMAC_SHA2_256_128, integ_key=HMAC_KEY
        )
    else:
        args = dict(encr=EncrAlg.ENCR_NULL, encr_key=b"", integ=IntegAlg.AUTH_HMAC_SHA2_256_128, integ_key=HMAC_KEY)
    args.update(kw)
    out = EspSa(spi=0x1000, direction=Direction.OUT, mode=mode, rng=det_rng(), **args)
    inn = EspSa(spi=0x1000, direction=Direction.IN, mode=mode, **args)
    return out, inn


IPV4_PKT = bytes.fromhex("4500001c000100004001f7c9c0000201c0000202") + bytes.fromhex("0800f7ff00000000")
IPV6_HDR = bytes.fromhex("6000000000083a40") + bytes(16) + bytes(16)

SUITES = ["gcm128", "gcm256", "cbc", "cbc256", "null"]


# ---------------------------------------------------------------- cipher vectors
def test_rfc3602_cbc_vectors():
    """RFC 3602 §4 cases 1 and 2: the primitive our CBC SA uses."""
    c1 = Cipher(algorithms.AES(bytes.fromhex("06a9214036b8a15b512e03d534120006")), modes.CBC(bytes.fromhex("3dafba429d9eb430b422da802c9fac41"))).encryptor()
    assert (c1.update(b"Single block msg") + c1.finalize()).hex() == "e353779c1079aeb82708942dbe77181a"
    c2 = Cipher(algorithms.AES(bytes.fromhex("c286696d887c9aa0611bbb3e2025a45a")), modes.CBC(bytes.fromhex("562e17996d093d28ddb3ba695a2e6f58"))).encryptor()
    ct = c2.update(bytes(range(32))) + c2.finalize()
    assert ct.hex() == "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"


# draft-mcgrew-gcm-test-01 §4 (AES-GCM in ESP): key, salt|IV nonce, SPI|seq AAD, plaintext with ESP trailer
MCGREW_1 = dict(  # AES-128, extended sequence numbers: AAD = SPI | seq high | seq low
    key="4c80cdefbb5d10da906ac73c3613a634", salt="2e443b68", iv="4956ed7e3b244cfe", spi=0x4321,
    seq=0x8765432100000000,
    pt="45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000"
       "00000000045f736970045f756470037369700963796265726369747902646b00" "0021000101020201",
    ct="fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34"
       "cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce"
       "61bc17d768fd9732459018148f6cbe722fd04796562dfdb4",
)
MCGREW_3 = dict(  # AES-256, 32-bit sequence numbers
    key="abbccddef00112233445566778899aababbccddef00112233445566778899aab", salt="11223344",
    iv="0102030405060708", spi=0x4A2CBFE3, seq=2,
    pt="4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000" "7002400020bf0000020405b40101040201020201",
    ct="ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763"
       "748a637985771d347f0545659f14e99def842d8eb335f4eecfdbf831824b4c49" "15956c96",
)


@pytest.mark.parametrize("vec", [MCGREW_1, MCGREW_3], ids=["case1-esn", "case3"])
def test_gcm_esp_vectors_decapsulate(vec):
    esn = vec["seq"] > 0xFFFFFFFF
    sa = EspSa(spi=vec["spi"], direction="in", mode="tunnel", encr=20,
               encr_key=bytes.fromhex(vec["key"] + vec["salt"]), esn=esn)
    if esn:  # put the receiver's window just below the vector's 64-bit sequence number
        sa.window.update(vec["seq"] - 1)
    pkt = struct.pack("!II", vec["spi"], vec["seq"] & 0xFFFFFFFF) + bytes.fromhex(vec["iv"] + vec["ct"])
    pt = bytes.fromhex(vec["pt"])
    nh, payload = sa.decapsulate(pkt)
    assert (nh, payload) == (pt[-1], pt[: len(pt) - 2 - pt[-2]])
    assert sa.window.top == vec["seq"]
    # one flipped ciphertext bit fails the ICV
    sa2 = EspSa(spi=vec["spi"], direction="in", mode="tunnel", encr=20,
                encr_key=bytes.fromhex(vec["key"] + vec["salt"]), esn=esn)
    if esn:
        sa2.window.update(vec["seq"] - 1)
    with pytest.raises(IntegrityFailure):
        sa2.decapsulate(pkt[:20] + bytes([pkt[20] ^ 1]) + pkt[21:])


def test_gcm_packet_layout_matches_rfc4106():
    """SPI|seq|8-byte IV (= counter)|ciphertext|16-byte ICV; nonce = salt|IV; AAD = SPI|seq (RFC 4106 §3-5)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    out, _ = pair("gcm128")
    pkt = out.encapsulate(IPV4_PKT)
    spi, seq = struct.unpack("!II", pkt[:8])
    assert (spi, seq) == (0x1000, 1)
    iv = pkt[8:16]
    assert iv == struct.pack("!Q", 1)
    plain = AESGCM(GCM128[:16]).decrypt(GCM128[16:] + iv, pkt[16:], pkt[:8])
    assert plain[: len(IPV4_PKT)] == IPV4_PKT
    assert plain[-1] == IpProto.IPV4
    assert len(plain) % 4 == 0


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("inner", [IPV4_PKT, IPV6_HDR + b"\x80\x00\x00\x00abcd"])
def test_tunnel_round_trip(suite, inner):
    out, inn = pair(suite)
    for i in range(5):
        pkt = out.encapsulate(inner)
        nh, payload = inn.decapsulate(pkt)
        assert payload == inner
        assert nh == (IpProto.IPV4 if inner[0] >> 4 == 4 else IpProto.IPV6)
    assert out.counters.packets_out == 5 and inn.counters.packets_in == 5
    assert out.counters.bytes_out == 5 * len(inner) == inn.counters.bytes_in


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("size", [0, 1, 2, 3, 13, 14, 15, 16, 17, 1400])
def test_transport_mh_round_trip_and_padding(suite, size):
    out, inn = pair(suite, Mode.TRANSPORT)
    mh = bytes((i * 7) & 0xFF for i in range(size))
    pkt = out.encapsulate(mh, IpProto.MOBILITY_HEADER)
    align = 16 if suite.startswith("cbc") else 4
    iv = 16 if suite.startswith("cbc") else (8 if suite.startswith("gcm") else 0)
    body = len(pkt) - 8 - iv - 16
    assert body % align == 0 and body >= size + 2 and body - size - 2 < align
    assert inn.decapsulate(pkt) == (135, mh)


def test_transport_requires_next_header():
    out, _ = pair("gcm128", Mode.TRANSPORT)
    with pytest.raises(ValueError):
        out.encapsulate(b"abc")


def test_trailer_padding_rules():
    for n in range(0, 40):
        t = trailer(n, 41, 16)
        assert (n + len(t)) % 16 == 0
        assert t[-1] == 41 and t[-2] == len(t) - 2
        assert t[:-2] == bytes(range(1, len(t) - 1))
        assert strip_trailer(bytes(n) + t) == (41, bytes(n))
    with pytest.raises(MalformedEsp):
        strip_trailer(b"\x01\x09\x03\x29")  # padding 1, 9 is not 1, 2
    with pytest.raises(MalformedEsp):
        strip_trailer(b"\x05\x29")  # pad length beyond payload
    with pytest.raises(MalformedEsp):
        strip_trailer(b"\x29")


def test_bad_padding_detected_after_integrity():
    """A correctly authenticated packet with non-monotonic padding is MalformedEsp (RFC 4303 §2.4)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _, inn = pair("gcm128")
    hdr = struct.pack("!II", 0x1000, 1)
    iv = struct.pack("!Q", 1)
    plain = b"payload" + b"\x01\x07" + b"\x02\x04"  # pad 2 bytes, second should be 2
    pkt = hdr + iv + AESGCM(GCM128[:16]).encrypt(GCM128[16:] + iv, plain[:8] + b"\x01\x07\x02\x04", hdr)
    with pytest.raises(MalformedEsp):
        inn.decapsulate(pkt)


# ---------------------------------------------------------------- replay and integrity
@pytest.mark.parametrize("suite", ["gcm128", "cbc"])
def test_replay_duplicate_old_and_reordered(suite):
    out, inn = pair(suite, replay_window=64)
    pkts = [out.encapsulate(IPV4_PKT) for _ in range(200)]
    inn.decapsulate(pkts[99])  # seq 100
    with pytest.raises(ReplayedPacket):
        inn.decapsulate(pkts[99])  # duplicate
    inn.decapsulate(pkts[50])  # seq 51: inside the window (100-51 < 64)
    with pytest.raises(ReplayedPacket):
        inn.decapsulate(pkts[50])
    with pytest.raises(ReplayedPacket):
        inn.decapsulate(pkts[20])  # seq 21: left of the window
    for i in (97, 98, 96, 40):  # out of order inside window, 41 is 59 back
        inn.decapsulate(pkts[i])
    inn.decapsulate(pkts[180])
    with pytest.raises(ReplayedPacket):
        inn.decapsulate(pkts[100])  # 181 - 101 = 80 >= 64
    assert inn.counters.replay_drops == 4
    assert inn.counters.packets_in == 7


def test_large_window():
    out, inn = pair("gcm128", replay_window=1024)
    pkts = [out.encapsulate(IPV4_PKT) for _ in range(1100)]
    inn.decapsulate(pkts[1099])
    inn.decapsulate(pkts[1099 - 1000])
    with pytest.raises(ReplayedPacket):
        inn.decapsulate(pkts[1099 - 1030])


@pytest.mark.parametrize("suite", ["gcm128", "gcm256", "cbc", "null"])
@pytest.mark.parametrize("where", [0, 4, 9, 20, -1, -17])
def test_bad_icv_does_not_advance_window(suite, where):
    out, inn = pair(suite)
    good = out.encapsulate(IPV4_PKT)
    forged = bytearray(out.encapsulate(IPV4_PKT))  # seq 2
    forged[where] ^= 0x40
    if where in (0,):  # SPI flip: a different SA would be looked up by the data plane
        with pytest.raises((UnknownSpi, IntegrityFailure)):
            inn.decapsulate(bytes(forged))
        return
    top_before = inn.window.top
    with pytest.raises((IntegrityFailure, ReplayedPacket)):
        inn.decapsulate(bytes(forged))
    assert inn.window.top == top_before == 0
    assert inn.decapsulate(good)[1] == IPV4_PKT
    if where != 4:
        assert inn.counters.auth_failures == 1


def test_forged_high_sequence_does_not_block_traffic():
    out, inn = pair("gcm128")
    pkt = bytearray(out.encapsulate(IPV4_PKT))
    pkt[4:8] = struct.pack("!I", 0x7FFFFFFF)
    with pytest.raises(IntegrityFailure):
        inn.decapsulate(bytes(pkt))
    assert inn.window.top == 0
    assert inn.decapsulate(out.encapsulate(IPV4_PKT))[1] == IPV4_PKT


def test_replay_window_unit():
    w = ReplayWindow(32)
    assert not w.check(0)
    for s in (1, 3, 2, 40):
        assert w.check(s)
        w.update(s)
    assert not w.check(3)  # 40 - 3 = 37 >= 32
    assert w.check(39) and not w.check(40) and w.check(9)
    w.update(9)
    assert not w.check(9)
    w.update(1000)
    assert w.top == 1000 and w.bitmap == 1
    with pytest.raises(ValueError):
        ReplayWindow(8)


def test_esn_inference_and_round_trip():
    w = ReplayWindow(64)
    w.update((1 << 32) - 10)
    assert w.infer_esn(5) == (1 << 32) + 5
    assert w.infer_esn(0xFFFFFFF0) == 0xFFFFFFF0
    w.update((1 << 32) + 3)
    assert w.infer_esn(0xFFFFFFF0) == 0xFFFFFFF0  # still in window, previous sub-space
    assert w.infer_esn(10) == (1 << 32) + 10
    for suite in ("gcm128", "cbc"):
        out, inn = pair(suite, esn=True)
        out.seq = (1 << 32) - 3
        inn.window.update((1 << 32) - 4)
        for _ in range(6):  # crosses the 2^32 boundary
            assert inn.decapsulate(out.encapsulate(IPV4_PKT))[1] == IPV4_PKT
        assert inn.window.top == (1 << 32) + 3
        # the high half is authenticated: a receiver that thinks it is in sub-space 0 fails
        out2, inn2 = pair(suite, esn=True)
        out2.seq = (1 << 32) + 100
        with pytest.raises(IntegrityFailure):
            inn2.decapsulate(out2.encapsulate(IPV4_PKT))


def test_sequence_overflow_sets_rekey_and_refuses():
    out, inn = pair("gcm128", rekey_margin=5)
    out.seq = 0xFFFFFFFF - 10
    for _ in range(5):
        out.encapsulate(IPV4_PKT)
    assert not out.rekey_needed
    out.encapsulate(IPV4_PKT)
    assert out.rekey_needed
    for _ in range(4):
        out.encapsulate(IPV4_PKT)
    assert out.seq == 0xFFFFFFFF
    with pytest.raises(SequenceOverflow):
        out.encapsulate(IPV4_PKT)
    assert out.seq == 0xFFFFFFFF


def test_wrong_spi_and_short_packets():
    out, inn = pair("gcm128")
    other, _ = pair("gcm128")
    pkt = bytearray(out.encapsulate(IPV4_PKT))
    pkt[0:4] = struct.pack("!I", 0x2000)
    with pytest.raises(UnknownSpi):
        inn.decapsulate(bytes(pkt))
    for n in range(0, 36):
        with pytest.raises(MalformedEsp):
            inn.decapsulate(bytes(pkt[:n]))


def test_constructor_validation():
    with pytest.raises(ValueError):
        EspSa(spi=0x1000, direction="out", mode="tunnel", encr=EncrAlg.ENCR_AES_GCM_16, encr_key=bytes(16))
    with pytest.raises(ValueError):
        EspSa(spi=5, direction="in", mode="tunnel", encr=EncrAlg.ENCR_AES_GCM_16, encr_key=bytes(20))
    with pytest.raises(ValueError):  # CBC outbound needs an rng
        EspSa(spi=0x1000, direction="out", mode="tunnel", encr=12, encr_key=bytes(16), integ=12, integ_key=bytes(32))
    with pytest.raises(ValueError):  # CBC needs integrity
        EspSa(spi=0x1000, direction="in", mode="tunnel", encr=12, encr_key=bytes(16))


def test_config_round_trip():
    out, _ = pair("gcm256")
    out.encapsulate(IPV4_PKT)
    clone = EspSa.from_config(out.to_config())
    assert clone.seq == 1 and clone.encr_key == GCM256


def _child_event(encr, nat_t, mode="tunnel", ts=None):
    ev_mod = pytest.importorskip("s2c.ike.events")
    from s2c.codec.ikev2 import EncrId, EsnId, IntegId, TrafficSelector
    from s2c.crypto.ike_suites import EspKeys, EspSuite

    gcm = encr == 20
    integ = IntegId.NONE if gcm else IntegId.AUTH_HMAC_SHA2_256_128

    def keys(tag):
        return EspKeys(encr=EncrId(encr), encr_key=bytes([tag]) * 16, salt=bytes([tag]) * 4 if gcm else b"",
                       integ=integ, integ_key=b"" if gcm else bytes([tag + 1]) * 32, icv_len=16)

    ts_l, ts_r = ts or ((TrafficSelector.from_network("10.1.0.0/24"),), (TrafficSelector.from_network("10.2.0.0/23"),))
    return ev_mod.ChildSaEstablished(
        sa_id=1, spi_in=0xC0000001, spi_out=0xC0000002, mode=ev_mod.ChildMode(mode), protocol="esp",
        ts_i=ts_l, ts_r=ts_r, ts_local=ts_l, ts_remote=ts_r,
        suite=EspSuite(encr=EncrId(encr), key_bits=128, integ=integ, esn=EsnId.NO_ESN),
        keys_in=keys(1), keys_out=keys(2), nat_t=nat_t,
        local_addr=("192.0.2.1", 4500 if nat_t else 500), remote_addr=("198.51.100.9", 31000 if nat_t else 500),
    )


@pytest.mark.parametrize("encr", [20, 12])
def test_from_child_sa_with_ike_event(encr):
    ev = _child_event(encr, nat_t=True)
    sa_out = EspSa.from_child_sa(ev, "out", rng=os.urandom)
    sa_in = EspSa.from_child_sa(ev, "in")
    assert sa_out.spi == 0xC0000002 and sa_in.spi == 0xC0000001
    assert sa_out.udp_encap and sa_out.remote == "198.51.100.9" and sa_out.remote_port == 31000
    assert sa_in.window.size == 1024 and sa_out.mode is Mode.TUNNEL
    if encr == 20:
        assert sa_out.encr_key == b"\x02" * 20 and sa_in.encr_key == b"\x01" * 20
    else:
        assert sa_out.integ_key == b"\x03" * 32
    # the peer's mirrored "out" SA is our "in" SA: packets flow
    peer_out = EspSa(spi=0xC0000001, direction="out", mode="tunnel", encr=encr, encr_key=sa_in.encr_key,
                     integ=sa_in.integ, integ_key=sa_in.integ_key, rng=os.urandom)
    assert sa_in.decapsulate(peer_out.encapsulate(IPV4_PKT))[1] == IPV4_PKT
    plain = EspSa.from_child_sa(_child_event(encr, nat_t=False, mode="transport"), "out", rng=os.urandom)
    assert not plain.udp_encap and plain.mode is Mode.TRANSPORT


def test_selectors_from_traffic_selectors():
    pytest.importorskip("s2c.codec.ikev2")
    import ipaddress

    from s2c.codec.ikev2 import TrafficSelector
    from s2c.esp.spd import selectors_from_ts

    sels = selectors_from_ts(
        [TrafficSelector(ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.6")),
         TrafficSelector.from_address("2001:db8:1::10", ip_protocol=135)],
        [TrafficSelector.from_network("0.0.0.0/0"), TrafficSelector.from_address("2001:db8:2::1")],
    )
    v4 = [(s.src, s.dst) for s in sels if s.version == 4]
    assert v4 == [("10.0.0.1/32", "0.0.0.0/0"), ("10.0.0.2/31", "0.0.0.0/0"), ("10.0.0.4/31", "0.0.0.0/0"),
                  ("10.0.0.6/32", "0.0.0.0/0")]
    v6 = [s for s in sels if s.version == 6]
    assert len(v6) == 1 and v6[0].proto == 135 and v6[0].dst == "2001:db8:2::1/128"


# ---------------------------------------------------------------- framing
def test_esp_packet_codec_and_udp4500_classification():
    p = EspPacket.parse(bytes.fromhex("0000100000000007") + b"xyz")
    assert (p.spi, p.seq, p.body) == (0x1000, 7, b"xyz")
    assert p.serialize() == bytes.fromhex("0000100000000007") + b"xyz"
    with pytest.raises(MalformedEsp):
        EspPacket.parse(bytes(8))
    with pytest.raises(MalformedEsp):
        EspPacket.parse(b"\x00\x00\x10")
    assert classify_udp_4500(b"\xff") is Udp4500Kind.NAT_KEEPALIVE
    assert classify_udp_4500(bytes(4) + b"ikev2...") is Udp4500Kind.IKE
    assert classify_udp_4500(memoryview(bytes(4) + b"ike")) is Udp4500Kind.IKE
    assert classify_udp_4500(bytes.fromhex("0000100000000001") + bytes(20)) is Udp4500Kind.ESP
    assert classify_udp_4500(b"\x01\x02") is Udp4500Kind.MALFORMED


# ---------------------------------------------------------------- SPD / SAD
def test_spd_selectors_priority_and_cache():
    spd: Spd[str] = Spd()
    spd.add(Policy(Selector("0.0.0.0/0", "198.51.100.0/24"), sa="tunnel4"))
    spd.add(Policy(Selector("2001:db8:1::10/128", "2001:db8:2::1/128", proto=135), sa="mh"))
    spd.add(Policy(Selector("::/0", "2001:db8:2::/48"), sa="tunnel6"))
    spd.add(Policy(Selector("0.0.0.0/0", "198.51.100.7/32", proto=17, dport=(500, 500)), PolicyAction.BYPASS))
    a = lambda s: __import__("ipaddress").ip_address(s).packed  # noqa: E731
    assert spd.lookup(a("192.0.2.1"), a("198.51.100.9"), 6).sa == "tunnel4"
    assert spd.lookup(a("192.0.2.1"), a("198.51.100.7"), 17, 500, 500).action is PolicyAction.BYPASS
    assert spd.lookup(a("192.0.2.1"), a("198.51.100.7"), 17, 500, 501).sa == "tunnel4"
    assert spd.lookup(a("2001:db8:1::10"), a("2001:db8:2::1"), 135).sa == "mh"
    assert spd.lookup(a("2001:db8:1::10"), a("2001:db8:2::1"), 58).sa == "tunnel6"
    assert spd.lookup(a("192.0.2.1"), a("203.0.113.1"), 6) is None
    assert spd.lookup_packet(IPV4_PKT) is None
    pkt = bytearray(IPV4_PKT)
    pkt[16:20] = a("198.51.100.20")
    assert spd.lookup_packet(bytes(pkt)).sa == "tunnel4"
    assert spd.remove_sa("tunnel4") == 1
    assert spd.lookup_packet(bytes(pkt)) is None  # cache was cleared
    sad: Sad[str] = Sad()
    sad.add(0x1000, "x")
    assert sad.get(0x1000) == "x" and 0x1000 in sad
    with pytest.raises(UnknownSpi):
        sad.get(0x2000)


# ---------------------------------------------------------------- robustness
_SAS = {s: pair(s)[1] for s in SUITES}


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=200), suite=st.sampled_from(SUITES), keep_spi=st.booleans())
def test_decapsulate_random_bytes_raises_only_esp_error(data, suite, keep_spi):
    sa = _SAS[suite]
    if keep_spi:
        data = struct.pack("!I", 0x1000) + data
    try:
        sa.decapsulate(data)
    except EspError:
        pass


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_esp_packet_parse_random(data):
    try:
        p = EspPacket.parse(data)
    except EspError:
        return
    assert p.serialize() == data


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), nh=st.integers(0, 255), suite=st.sampled_from(SUITES))
def test_round_trip_property(payload, nh, suite):
    out, inn = pair(suite, Mode.TRANSPORT)
    assert inn.decapsulate(out.encapsulate(payload, nh)) == (nh, payload)


def test_many_random_keys():
    for _ in range(20):
        key = os.urandom(36)
        o = EspSa(spi=0x1234, direction="out", mode="tunnel", encr=20, encr_key=key)
        i = EspSa(spi=0x1234, direction="in", mode="tunnel", encr=20, encr_key=key)
        assert i.decapsulate(o.encapsulate(IPV4_PKT))[1] == IPV4_PKT


def test_spd_address_only_fast_path_switches_off_with_port_policies():
    spd: Spd[str] = Spd()
    spd.add(Policy(Selector("10.0.0.0/8", "10.2.0.0/16"), sa="wide"))
    spd.add(Policy(Selector("10.0.0.0/8", "10.2.3.0/24"), sa="narrow"))
    pkt = bytearray(IPV4_PKT)
    pkt[12:16], pkt[16:20] = bytes([10, 1, 1, 1]), bytes([10, 2, 3, 4])
    pkt[9] = 17
    pkt[20:24] = b"\x00\x35\x00\x35"  # UDP ports 53 -> 53
    assert spd.lookup_packet(bytes(pkt)).sa == "narrow"
    pkt[18] = 9
    assert spd.lookup_packet(bytes(pkt)).sa == "wide"
    spd.add(Policy(Selector("10.0.0.0/8", "10.2.0.0/16", proto=17, dport=(53, 53)), PolicyAction.BYPASS))
    assert spd.lookup_packet(bytes(pkt)).action is PolicyAction.BYPASS
    pkt[9] = 6
    assert spd.lookup_packet(bytes(pkt)).sa == "wide"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_strip_trailer_and_classify_random(data):
    try:
        nh, payload = strip_trailer(data)
    except EspError:
        pass
    else:
        assert data[-1] == nh and data.startswith(payload) and len(payload) == len(data) - 2 - data[-2]
    assert classify_udp_4500(data) in set(Udp4500Kind)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.integers(1, 3000), max_size=200), size=st.sampled_from([32, 64, 128, 1024]))
def test_replay_window_matches_a_set_model(ops, size):
    """Against a plain set: accept iff new and not older than top - size + 1."""
    w = ReplayWindow(size)
    seen: set[int] = set()
    for s in ops:
        top = max(seen, default=0)
        expect = s not in seen and s > top - size
        assert w.check(s) == expect
        if expect:
            w.update(s)
            seen.add(s)
