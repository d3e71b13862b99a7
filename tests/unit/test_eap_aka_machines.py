"""In-memory EAP-AKA / EAP-AKA' runs between AkaPeer and AkaServer with a fake HSS.

The fake HSS uses the same public pieces the real HSS uses (s2c.crypto.milenage + s2c.crypto.sqn):
SQN_HE -> next_sqn, vectors via generate_vector, resync via recover_sqn_ms + resync_sqn_he.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2c.codec import eap
from s2c.codec import eap_aka as ea
from s2c.codec.eap import EapCode, EapType
from s2c.crypto import milenage
from s2c.crypto import sqn as S
from s2c.eap_aka import (
    AkaPeer,
    AkaServer,
    AuthenticationFailed,
    AuthenticationRejected,
    AuthenticationSucceeded,
    PeerState,
    ProtocolError,
    ServerState,
    SynchronizationFailureReported,
    Usim,
    VectorRequired,
    imsi_from_nai,
    permanent_nai,
)

H = bytes.fromhex
IMSI = "001010123456789"
K = H("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = H("cd63cb71954a9f4e48a5994e37a02baf")
METHODS = [EapType.AKA, EapType.AKA_PRIME]


class FakeHss:
    """Minimal AuC: SQN_HE per Annex C, AMF with the separation bit set (TS 33.401 Annex H)."""

    def __init__(self, k: bytes = K, opc: bytes = OPC, sqn_he: int = 0, amf: bytes = b"\x80\x00", seed: int = 1):
        self.k, self.opc, self.sqn_he, self.amf = k, opc, sqn_he, amf
        self._rnd = random.Random(seed)
        self.resyncs = 0

    def vector(self, resync: tuple[bytes, bytes] | None) -> milenage.AuthVector | None:
        if resync is not None:
            sqn_ms = milenage.recover_sqn_ms(self.k, self.opc, *resync)
            if sqn_ms is None:
                return None
            self.resyncs += 1
            self.sqn_he = S.resync_sqn_he(self.sqn_he, sqn_ms)
        self.sqn_he = S.next_sqn(self.sqn_he)
        rand = self._rnd.randbytes(16)
        return milenage.generate_vector(self.k, self.opc, rand, S.sqn_to_bytes(self.sqn_he), self.amf)


def aka_msgs(wire, who: str, subtype: int) -> list[bytes]:
    return [m for w, m in wire if w == who and len(m) > 5 and m[4] in (23, 50) and m[5] == subtype]


def det_rng(seed: int = 7):
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def run(peer: AkaPeer, server: AkaServer, hss: FakeHss, start_identity: bytes | None = None, limit: int = 20):
    """Pump messages until both sides are quiet; return (peer events, server events, wire log)."""
    pev, sev, wire = [], [], []
    server.start(start_identity)
    for _ in range(limit):
        moved = False
        while (ev := server.next_event()) is not None:
            sev.append(ev)
            if isinstance(ev, VectorRequired):
                av = hss.vector(ev.resync)
                if av is None:
                    server.vector_failed("hss_resync_failed")
                else:
                    server.provide_vector(av)
        while (m := server.next_message()) is not None:
            wire.append(("s", m))
            moved = True
            peer.receive(m)
        while (ev := peer.next_event()) is not None:
            pev.append(ev)
        while (m := peer.next_message()) is not None:
            wire.append(("p", m))
            moved = True
            server.receive(m)
        if not moved and server.next_event() is None:
            break
    while (ev := server.next_event()) is not None:
        sev.append(ev)
    while (ev := peer.next_event()) is not None:
        pev.append(ev)
    return pev, sev, wire


# --- identity helpers ---------------------------------------------------------------------------

def test_permanent_nai() -> None:
    assert permanent_nai("001010123456789") == "0001010123456789@nai.epc.mnc001.mcc001.3gppnetwork.org"
    assert permanent_nai("310150123456789", 3) == "0310150123456789@nai.epc.mnc150.mcc310.3gppnetwork.org"
    assert permanent_nai("234150999999999", 2, EapType.AKA_PRIME) == \
        "6234150999999999@nai.epc.mnc015.mcc234.3gppnetwork.org"
    with pytest.raises(ValueError):
        permanent_nai("12345a")
    with pytest.raises(ValueError):
        permanent_nai("001010123456789", 4)


def test_imsi_from_nai() -> None:
    for mnc_len in (2, 3):
        for m in METHODS:
            nai = permanent_nai(IMSI, mnc_len, m)
            assert imsi_from_nai(nai) == IMSI
            assert imsi_from_nai(nai.encode(), m) == IMSI
    assert imsi_from_nai(permanent_nai(IMSI), EapType.AKA_PRIME) is None  # '0' prefix is AKA
    assert imsi_from_nai("1001010123456789@nai.epc.mnc001.mcc001.3gppnetwork.org") is None  # SIM prefix
    assert imsi_from_nai("0001010123456789@nai.epc.mnc001.mcc002.3gppnetwork.org") is None  # MCC mismatch
    assert imsi_from_nai("0001010123456789@nai.epc.mnc099.mcc001.3gppnetwork.org") is None  # MNC mismatch
    assert imsi_from_nai("user@example.org") is None
    assert imsi_from_nai(b"\xff\xfe") is None


# --- successful runs --------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("start_identity", [None, "nai", "pseudonym"])
def test_success(method: int, start_identity: str | None) -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(method,))
    server = AkaServer(rng=det_rng(), method=method)
    ident = {None: None, "nai": permanent_nai(IMSI, 2, method).encode(), "pseudonym": b"anon@realm"}[start_identity]
    pev, sev, wire = run(peer, server, FakeHss(), ident)
    assert [type(e) for e in sev] == [VectorRequired, AuthenticationSucceeded]
    assert [type(e) for e in pev] == [AuthenticationSucceeded]
    ok_s, ok_p = sev[1], pev[0]
    assert ok_s.msk == ok_p.msk and ok_s.emsk == ok_p.emsk
    assert len(ok_s.msk) == 64 and len(ok_s.emsk) == 64 and ok_s.msk != ok_s.emsk
    assert ok_s.imsi == ok_p.imsi == IMSI == sev[0].imsi
    assert ok_s.method == ok_p.method == method
    assert ok_s.identity == ok_p.identity == permanent_nai(IMSI, 2, method).encode()
    assert server.state is ServerState.SUCCESS and peer.state is PeerState.SUCCESS
    assert wire[-1] == ("s", eap.serialize(eap.EapPacket(EapCode.SUCCESS, eap.parse(wire[-2][1]).identifier)))
    challenge = ea.parse(aka_msgs(wire, "s", ea.AkaSubtype.CHALLENGE)[0])
    assert challenge.method == method
    if method == EapType.AKA_PRIME:
        assert challenge.get(ea.AtKdf).kdf == 1 and challenge.get(ea.AtKdfInput).network_name == b"WLAN"
    if start_identity == "pseudonym":
        # AKA-Identity round happened: checkcode is a real hash and the peer echoed the same one
        assert len(challenge.get(ea.AtCheckcode).checkcode) == (20 if method == EapType.AKA else 32)
    else:
        assert challenge.get(ea.AtCheckcode).checkcode == b""


def test_aka_prime_with_hss_derived_ck_ik_prime() -> None:
    # SWx style: the HSS hands over CK'/IK' (TS 33.402 §6.2) instead of CK/IK.
    from s2c.crypto import aka_kdf
    results = []
    for primed in (False, True):
        peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA_PRIME,))
        server = AkaServer(rng=det_rng(), method=EapType.AKA_PRIME)
        server.start(permanent_nai(IMSI, 2, EapType.AKA_PRIME).encode())
        server.next_event()
        av = FakeHss(seed=5).vector(None)
        if primed:
            ck_p, ik_p = aka_kdf.ck_ik_prime(av.ck, av.ik, b"WLAN", av.autn[:6])
            av = milenage.AuthVector(rand=av.rand, xres=av.xres, autn=av.autn, ck=ck_p, ik=ik_p)
        server.provide_vector(av, primed=primed)
        peer.receive(server.next_message())
        server.receive(peer.next_message())
        ev = server.next_event()
        peer.receive(server.next_message())
        assert isinstance(ev, AuthenticationSucceeded) and peer.next_event().msk == ev.msk
        results.append(ev.msk)
    assert results[0] == results[1]
    with pytest.raises(ValueError):
        s = AkaServer(rng=det_rng(), method=EapType.AKA)
        s.start(permanent_nai(IMSI).encode())
        s.provide_vector(FakeHss().vector(None), primed=True)


def test_aka_and_aka_prime_keys_differ_for_same_vector() -> None:
    msks = []
    for method in METHODS:
        peer = AkaPeer(Usim(K, OPC), IMSI, methods=(method,))
        server = AkaServer(rng=det_rng(), method=method)
        pev, sev, _ = run(peer, server, FakeHss(seed=3), b"0" + IMSI.encode() + b"@nai.epc.mnc001.mcc001.3gppnetwork.org"
                          if method == EapType.AKA else permanent_nai(IMSI, 2, method).encode())
        msks.append(pev[-1].msk)
    assert msks[0] != msks[1]


def test_peer_naks_other_methods_and_answers_aka_prime_identity_prefix() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI)  # prefers AKA', supports AKA
    peer.receive(eap.serialize(eap.EapPacket(EapCode.REQUEST, 4, EapType.MD5_CHALLENGE, b"\x10" + bytes(16))))
    assert eap.nak_types(eap.parse(peer.next_message())) == [EapType.AKA_PRIME, EapType.AKA]
    peer.receive(eap.serialize(eap.identity_request(5)))
    assert eap.parse(peer.next_message()).type_data == permanent_nai(IMSI, 2, EapType.AKA_PRIME).encode()


def test_aka_server_with_aka_prime_identity_asks_permanent_id() -> None:
    # peer says '6...' (AKA' NAI) but the server runs plain AKA: AKA-Identity round gets the '0...' NAI
    peer = AkaPeer(Usim(K, OPC), IMSI)
    server = AkaServer(rng=det_rng(), method=EapType.AKA)
    pev, sev, wire = run(peer, server, FakeHss())
    assert isinstance(pev[-1], AuthenticationSucceeded) and pev[-1].method == EapType.AKA
    assert pev[-1].identity.startswith(b"0")
    assert aka_msgs(wire, "s", ea.AkaSubtype.IDENTITY)


def test_peer_retransmitted_request_gets_same_response() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA,))
    server = AkaServer(rng=det_rng(), method=EapType.AKA)
    server.start(permanent_nai(IMSI).encode())
    ev = server.next_event()
    server.provide_vector(FakeHss().vector(ev.resync))
    ch = server.next_message()
    peer.receive(ch)
    first = peer.next_message()
    peer.receive(ch)  # lost response, server retransmits
    assert peer.next_message() == first
    server.retransmit()
    assert server.next_message() == ch
    server.receive(first)
    assert isinstance(server.next_event(), AuthenticationSucceeded)


# --- failure and resync flows -------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_sync_failure_then_resync_success(method: int) -> None:
    # USIM has already seen SEQ up to 5000 in every slot; HSS restarts from 0.
    usim = Usim(K, OPC, S.SqnWindow.starting_at(S.join_sqn(5000, 7)))
    peer = AkaPeer(usim, IMSI, methods=(method,))
    server = AkaServer(rng=det_rng(), method=method)
    hss = FakeHss(sqn_he=S.join_sqn(10, 3))
    pev, sev, wire = run(peer, server, hss, permanent_nai(IMSI, 2, method).encode())
    assert [type(e) for e in sev] == [VectorRequired, VectorRequired, AuthenticationSucceeded]
    assert sev[0].resync is None
    rand, auts = sev[1].resync
    assert len(rand) == 16 and len(auts) == 14
    assert [type(e) for e in pev] == [SynchronizationFailureReported, AuthenticationSucceeded]
    assert pev[0].sqn_ms == S.join_sqn(5000, 7)
    assert hss.resyncs == 1
    assert S.split_sqn(hss.sqn_he)[0] == 5001
    assert sev[-1].msk == pev[-1].msk
    sync = ea.parse(aka_msgs(wire, "p", ea.AkaSubtype.SYNCHRONIZATION_FAILURE)[0])
    assert sync.get(ea.AtMac) is None  # no AT_MAC in Synchronization-Failure
    if method == EapType.AKA_PRIME:
        assert [a.kdf for a in sync.get_all(ea.AtKdf)] == [1]


def test_replayed_vector_causes_sync_failure() -> None:
    hss = FakeHss()
    av = hss.vector(None)
    usim = Usim(K, OPC)
    # first use succeeds
    peer = AkaPeer(usim, IMSI, methods=(EapType.AKA,))
    server = AkaServer(rng=det_rng(), method=EapType.AKA)
    server.start(permanent_nai(IMSI).encode())
    server.next_event()
    server.provide_vector(av)
    peer.receive(server.next_message())
    server.receive(peer.next_message())
    assert isinstance(server.next_event(), AuthenticationSucceeded)
    # the same vector replayed to the same USIM: SQN not fresh -> AUTS with SQN_MS
    peer2 = AkaPeer(usim, IMSI, methods=(EapType.AKA,))
    server2 = AkaServer(rng=det_rng(9), method=EapType.AKA, max_resync=0)
    server2.start(permanent_nai(IMSI).encode())
    server2.next_event()
    server2.provide_vector(av)
    peer2.receive(server2.next_message())
    assert isinstance(peer2.next_event(), SynchronizationFailureReported)
    resp = ea.parse(peer2.next_message())
    assert resp.subtype == ea.AkaSubtype.SYNCHRONIZATION_FAILURE
    auts = resp.get(ea.AtAuts).auts
    assert milenage.recover_sqn_ms(K, OPC, av.rand, auts) == S.sqn_to_bytes(usim.sqn_ms)
    server2.receive(ea.serialize(resp))
    assert server2.next_event() == AuthenticationFailed("resync_limit")


@pytest.mark.parametrize("method", METHODS)
def test_peer_rejects_bad_autn(method: int) -> None:
    wrong_k = bytes([K[0] ^ 0xFF]) + K[1:]
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(method,))
    server = AkaServer(rng=det_rng(), method=method)
    pev, sev, wire = run(peer, server, FakeHss(k=wrong_k), permanent_nai(IMSI, 2, method).encode())
    assert pev == [AuthenticationRejected("autn_mac"), AuthenticationFailed("rejected:autn_mac")]
    assert sev[-1] == AuthenticationFailed("peer_rejected_autn")
    assert [m[5] for who, m in wire if who == "p" and m[4] == method] == [ea.AkaSubtype.AUTHENTICATION_REJECT]
    assert wire[-1][1][0] == EapCode.FAILURE
    assert server.state is ServerState.FAILURE and peer.state is PeerState.FAILURE


@pytest.mark.parametrize("method", METHODS)
def test_wrong_res_leads_to_notification_and_failure(method: int) -> None:
    # Peer has a different K *and* the HSS MAC check is made to pass by giving the peer a USIM whose
    # MILENAGE agrees on f1 but not f2: simulate by tampering RES in flight instead.
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(method,))
    server = AkaServer(rng=det_rng(), method=method)
    server.start(permanent_nai(IMSI, 2, method).encode())
    server.provide_vector(FakeHss().vector(server.next_event().resync))
    peer.receive(server.next_message())
    good = peer.next_message()
    msg = ea.parse(good)
    bad_res = bytes(b ^ 1 for b in msg.get(ea.AtRes).res)
    attrs = tuple(ea.AtRes(bad_res) if isinstance(a, ea.AtRes) else a for a in msg.attributes)
    # re-sign with the peer's real key so only RES is wrong
    forged = ea.serialize(ea.AkaMessage(msg.code, msg.identifier, msg.subtype, attrs, method=msg.method))
    from s2c.eap_aka import common
    forged = common.sign(method, peer._keys.k_aut, ea.set_mac(forged, bytes(16)))
    server.receive(forged)
    note = ea.parse(server.next_message())
    assert note.subtype == ea.AkaSubtype.NOTIFICATION
    assert note.get(ea.AtNotification).code == ea.NotificationCode.GENERAL_FAILURE
    assert server.state is ServerState.NOTIFICATION
    peer.receive(ea.serialize(note))
    server.receive(peer.next_message())
    fail = server.next_message()
    assert eap.parse(fail).code == EapCode.FAILURE
    assert server.next_event() == AuthenticationFailed("res_mismatch")
    peer.receive(fail)
    assert peer.next_event() == AuthenticationFailed("notification:16384")


@pytest.mark.parametrize("method", METHODS)
def test_wrong_k_at_peer_ends_in_server_failure(method: int) -> None:
    # A peer with another K cannot verify MAC-A (so it never computes a RES the server would
    # accept): it sends Authentication-Reject and the server answers EAP-Failure.
    peer = AkaPeer(Usim(bytes(16), OPC), IMSI, methods=(method,))
    server = AkaServer(rng=det_rng(), method=method)
    pev, sev, wire = run(peer, server, FakeHss(), permanent_nai(IMSI, 2, method).encode())
    assert sev[-1] == AuthenticationFailed("peer_rejected_autn")
    assert eap.parse(wire[-1][1]).code == EapCode.FAILURE
    assert pev[-1] == AuthenticationFailed("rejected:autn_mac")
    assert not any(isinstance(e, AuthenticationSucceeded) for e in pev + sev)


def test_tampered_challenge_mac_gives_client_error() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA,))
    server = AkaServer(rng=det_rng(), method=EapType.AKA)
    server.start(permanent_nai(IMSI).encode())
    assert isinstance(server.next_event(), VectorRequired)
    server.provide_vector(FakeHss().vector(None))
    ch = bytearray(server.next_message())
    ch[-1] ^= 1
    peer.receive(bytes(ch))
    resp = ea.parse(peer.next_message())
    assert resp.subtype == ea.AkaSubtype.CLIENT_ERROR
    assert resp.get(ea.AtClientErrorCode).code == ea.ClientErrorCode.UNABLE_TO_PROCESS_PACKET
    server.receive(ea.serialize(resp))
    assert server.next_event() == AuthenticationFailed("client_error:0")


def test_aka_prime_amf_separation_bit_required() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA_PRIME,))
    server = AkaServer(rng=det_rng(), method=EapType.AKA_PRIME)
    pev, sev, _ = run(peer, server, FakeHss(amf=b"\x00\x00"), permanent_nai(IMSI, 2, EapType.AKA_PRIME).encode())
    assert pev[0] == AuthenticationRejected("amf_separation_bit")
    assert sev[-1] == AuthenticationFailed("peer_rejected_autn")


def test_aka_prime_network_name_mismatch_rejected() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA_PRIME,), network_name=b"WLAN")
    server = AkaServer(rng=det_rng(), method=EapType.AKA_PRIME, network_name=b"HRPD")
    pev, sev, _ = run(peer, server, FakeHss(), permanent_nai(IMSI, 2, EapType.AKA_PRIME).encode())
    assert pev[0] == AuthenticationRejected("network_name")


def test_kdf_negotiation_response() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA_PRIME,))
    req = ea.AkaMessage(EapCode.REQUEST, 9, ea.AkaSubtype.CHALLENGE,
                        (ea.AtRand(bytes(16)), ea.AtAutn(bytes(16)), ea.AtKdf(2), ea.AtKdf(1), ea.AtKdfInput(b"WLAN"),
                         ea.AtMac()), method=EapType.AKA_PRIME)
    peer.receive(ea.serialize(req))
    resp = ea.parse(peer.next_message())
    assert resp.subtype == ea.AkaSubtype.CHALLENGE and resp.attributes == (ea.AtKdf(1),)


def test_hss_cannot_resync_with_wrong_k() -> None:
    usim = Usim(K, OPC, S.SqnWindow.starting_at(S.join_sqn(5000, 0)))
    hss = FakeHss(sqn_he=S.join_sqn(10, 0))
    peer = AkaPeer(usim, IMSI, methods=(EapType.AKA,))
    server = AkaServer(rng=det_rng(), method=EapType.AKA)
    server.start(permanent_nai(IMSI).encode())
    server.provide_vector(hss.vector(server.next_event().resync))
    peer.receive(server.next_message())
    sync = ea.parse(peer.next_message())
    auts = bytearray(sync.get(ea.AtAuts).auts)
    auts[-1] ^= 1  # corrupt MAC-S
    server.receive(ea.serialize(ea.AkaMessage(EapCode.RESPONSE, sync.identifier, sync.subtype,
                                              (ea.AtAuts(bytes(auts)),))))
    ev = server.next_event()
    assert ev.resync is not None and hss.vector(ev.resync) is None
    server.vector_failed("hss_resync_failed")
    assert server.next_event() == AuthenticationFailed("hss_resync_failed")


def test_unknown_non_skippable_attribute_in_challenge() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA,))
    req = ea.AkaMessage(EapCode.REQUEST, 2, ea.AkaSubtype.CHALLENGE,
                        (ea.AtRand(bytes(16)), ea.AtAutn(bytes(16)), ea.RawAttribute(99, b"\0\0"), ea.AtMac()))
    peer.receive(ea.serialize(req))
    assert ea.parse(peer.next_message()).subtype == ea.AkaSubtype.CLIENT_ERROR


def test_unknown_skippable_attribute_is_ignored() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA,))
    req = ea.AkaMessage(EapCode.REQUEST, 2, ea.AkaSubtype.IDENTITY, (ea.AtPermanentIdReq(), ea.RawAttribute(200, b"\0\0")))
    peer.receive(ea.serialize(req))
    assert ea.parse(peer.next_message()).get(ea.AtIdentity).identity == permanent_nai(IMSI).encode()


# --- illegal input ---------------------------------------------------------------------------

def test_protocol_errors_leave_state_unchanged() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA,))
    server = AkaServer(rng=det_rng(), method=EapType.AKA)
    server.start()
    req = server.next_message()
    rid = eap.parse(req).identifier
    with pytest.raises(ProtocolError):
        server.receive(eap.serialize(eap.identity_response((rid + 1) & 0xFF, permanent_nai(IMSI))))  # wrong id
    with pytest.raises(ProtocolError):
        server.receive(b"\x02")  # malformed
    with pytest.raises(ProtocolError):
        server.receive(eap.serialize(eap.identity_request(rid)))  # a Request to the server
    with pytest.raises(ProtocolError):
        server.provide_vector(FakeHss().vector(None))  # not waiting for a vector
    assert server.state is ServerState.IDENTITY
    peer.receive(req)
    server.receive(peer.next_message())
    assert isinstance(server.next_event(), VectorRequired)
    with pytest.raises(ProtocolError):
        peer.receive(eap.serialize(eap.EapPacket(EapCode.SUCCESS, 1)))  # Success before Challenge
    with pytest.raises(ProtocolError):
        peer.receive(eap.serialize(eap.EapPacket(EapCode.RESPONSE, 1, EapType.IDENTITY, b"x")))
    with pytest.raises(ProtocolError):
        server.receive(eap.serialize(eap.identity_response(rid, permanent_nai(IMSI))))  # in WAIT_VECTOR
    assert peer.state is PeerState.WAITING


def test_nothing_after_end() -> None:
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(EapType.AKA,))
    server = AkaServer(rng=det_rng(), method=EapType.AKA)
    pev, sev, wire = run(peer, server, FakeHss())
    with pytest.raises(ProtocolError):
        peer.receive(wire[-1][1])
    with pytest.raises(ProtocolError):
        server.receive(wire[-2][1])


def test_events_hide_keys_in_repr() -> None:
    ev = AuthenticationSucceeded(msk=b"\x01" * 64, emsk=b"\x02" * 64, imsi=IMSI)
    assert "\\x01" not in repr(ev)


# --- property tests: random input never raises anything but ProtocolError ---------------------

def _fresh_pair(method: int):
    peer = AkaPeer(Usim(K, OPC), IMSI, methods=(method,))
    server = AkaServer(rng=det_rng(), method=method)
    return peer, server


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(METHODS), st.integers(0, 3))
def test_random_bytes_only_protocol_errors(data: bytes, method: int, stage: int) -> None:
    peer, server = _fresh_pair(method)
    hss = FakeHss()
    server.start()
    # advance both machines `stage` legal steps, then inject
    for _ in range(stage):
        while (ev := server.next_event()) is not None:
            if isinstance(ev, VectorRequired):
                server.provide_vector(hss.vector(ev.resync))
        m = server.next_message()
        if m is None:
            break
        peer.receive(m)
        r = peer.next_message()
        if r is None:
            break
        server.receive(r)
    for target in (peer, server):
        try:
            target.receive(data)
        except ProtocolError:
            pass


_aka_bodies = st.builds(
    lambda code, ident, sub, attrs, method: ea.serialize(ea.AkaMessage(code, ident, sub, tuple(attrs), method=method)),
    st.sampled_from([1, 2]), st.integers(0, 255), st.sampled_from(list(ea.AkaSubtype) + [3, 99]),
    st.lists(st.one_of(
        st.binary(min_size=16, max_size=16).map(ea.AtRand), st.binary(min_size=16, max_size=16).map(ea.AtAutn),
        st.binary(min_size=16, max_size=16).map(ea.AtMac), st.binary(min_size=4, max_size=16).map(ea.AtRes),
        st.binary(min_size=14, max_size=14).map(ea.AtAuts), st.binary(max_size=40).map(ea.AtIdentity),
        st.just(ea.AtPermanentIdReq()), st.just(ea.AtAnyIdReq()), st.integers(0, 3).map(ea.AtKdf),
        st.binary(max_size=8).map(ea.AtKdfInput), st.integers(0, 0xFFFF).map(ea.AtNotification),
        st.integers(0, 3).map(ea.AtClientErrorCode), st.sampled_from([b"", bytes(20), bytes(32)]).map(ea.AtCheckcode),
        st.sampled_from([99, 200]).map(lambda t: ea.RawAttribute(t, b"\0\0")),
    ), max_size=7),
    st.sampled_from(METHODS),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_aka_bodies, min_size=1, max_size=4), st.sampled_from(METHODS), st.booleans())
def test_structured_garbage_only_protocol_errors(packets: list[bytes], method: int, after_challenge: bool) -> None:
    peer, server = _fresh_pair(method)
    server.start(permanent_nai(IMSI, 2, method).encode())
    server.provide_vector(FakeHss().vector(server.next_event().resync))
    ch = server.next_message()
    if after_challenge:
        peer.receive(ch)
        peer.next_message()
    for pkt in packets:
        for target in (peer, server):
            try:
                target.receive(pkt)
            except ProtocolError:
                pass
        # drain; outputs must themselves be parseable EAP
        for q in (peer, server):
            while (m := q.next_message()) is not None:
                eap.parse(m)
