"""S6b Diameter-EAP against the real ``hss`` daemon: full EAP-AKA / EAP-AKA' with the peer-side
``AkaPeer`` (software USIM), the AAA asking the HSS function over its SWx loopback."""

from __future__ import annotations

import time

import pytest

from hss.client import DiameterClient
from hss.testing import IMSI, IMSI2, K, OPC, der, eap_over_s6b, identity_response, make_peer
from s2c.codec import eap
from s2c.codec.diameter import AvpCode, ResultCode
from s2c.crypto import sqn as sqnmod
from s2c.diameter.messages import DiameterEapAnswer
from s2c.eap_aka import AuthenticationFailed, AuthenticationSucceeded, EapType

EAP_SUCCESS, EAP_FAILURE = 3, 4


def eap_code(ans) -> int | None:
    p = ans.get_bytes(AvpCode.EAP_PAYLOAD)
    return eap.parse(p).code if p else None


def succeeded(events) -> AuthenticationSucceeded | None:
    return next((e for e in events if isinstance(e, AuthenticationSucceeded)), None)


@pytest.mark.parametrize("method", ["aka", "aka'"])
def test_full_eap_aka_success_msk_matches(hss_daemon, method):
    d = hss_daemon(method=method)
    peer, nai = make_peer(IMSI, method=method)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        answers, events = eap_over_s6b(c.request, peer, "pgw;s6b;1", identity_response(nai))
    assert [a.result_code for a in answers] == [ResultCode.DIAMETER_MULTI_ROUND_AUTH, ResultCode.DIAMETER_SUCCESS]
    first = eap.parse(answers[0].get_bytes(AvpCode.EAP_PAYLOAD))
    assert first.type == (EapType.AKA if method == "aka" else EapType.AKA_PRIME)
    final = DiameterEapAnswer.from_message(answers[-1])
    assert eap_code(answers[-1]) == EAP_SUCCESS
    ok = succeeded(events)
    assert ok is not None and ok.imsi == IMSI
    assert final.eap_master_session_key == ok.msk and len(ok.msk) == 64
    assert final.user_name == IMSI and final.mobile_node_identifier == nai
    assert final.apn_configurations, "subscriber APN sent to the PDN GW"
    st = d.ctl.call("status")
    assert st["sessions"] == 0  # finished sessions are not kept
    counters = d.ctl.call("counters")
    assert counters["auth_ok"] == 1 and counters["auth_fail"] == 0 and counters["swx_mar"] == 1
    log = d.log_text()
    assert "auth imsi=001010000000001 result=success" in log and "sqn=0x" in log
    assert ok.msk.hex() not in log.lower() and K.hex() not in log and OPC.hex() not in log


def test_empty_payload_starts_with_aka_identity(hss_daemon):
    d = hss_daemon()
    peer, nai = make_peer(IMSI2)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        answers, events = eap_over_s6b(c.request, peer, "pgw;s6b;2", b"")
    assert [a.result_code for a in answers] == [1001, 1001, 2001]
    assert eap.parse(answers[0].get_bytes(AvpCode.EAP_PAYLOAD)).type_data[0] == 5  # AKA-Identity subtype
    ok = succeeded(events)
    assert ok is not None and DiameterEapAnswer.from_message(answers[-1]).eap_master_session_key == ok.msk


def test_wrong_k_rejected_4001(hss_daemon):
    d = hss_daemon()
    peer, nai = make_peer(IMSI, k=bytes(range(16)))
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        answers, events = eap_over_s6b(c.request, peer, "pgw;s6b;3", identity_response(nai))
    final = answers[-1]
    assert final.result_code == ResultCode.DIAMETER_AUTHENTICATION_REJECTED
    assert eap_code(final) == EAP_FAILURE
    assert final.find(AvpCode.EAP_MASTER_SESSION_KEY) is None
    assert not succeeded(events)
    assert d.ctl.call("counters")["auth_fail"] == 1


def test_unknown_imsi_5001_with_eap_failure(hss_daemon):
    d = hss_daemon()
    peer, nai = make_peer("001019999999999")
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        answers, _ = eap_over_s6b(c.request, peer, "pgw;s6b;4", identity_response(nai))
    assert len(answers) == 1
    assert answers[0].experimental_result == (10415, 5001) and answers[0].result_code is None
    assert eap_code(answers[0]) == EAP_FAILURE
    assert d.ctl.call("counters")["auth_unknown"] == 1


def test_sync_failure_then_success(hss_daemon):
    d = hss_daemon()
    sqn_ms = sqnmod.join_sqn(40000, 7)
    peer, nai = make_peer(IMSI, sqn_ms=sqn_ms)  # the USIM is far ahead of the HSS
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        answers, events = eap_over_s6b(c.request, peer, "pgw;s6b;5", identity_response(nai))
    assert [a.result_code for a in answers] == [1001, 1001, 2001]
    ok = succeeded(events)
    assert ok is not None and DiameterEapAnswer.from_message(answers[-1]).eap_master_session_key == ok.msk
    assert sqnmod.split_sqn(peer.usim.sqn_ms)[0] == 40001
    counters = d.ctl.call("counters")
    assert counters["auth_resync"] == 1 and counters["auth_ok"] == 1
    assert sqnmod.split_sqn(d.sqn(IMSI))[0] >= 40001


def test_second_auth_after_success_uses_fresh_sqn(hss_daemon):
    d = hss_daemon()
    peer, nai = make_peer(IMSI)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        _, ev1 = eap_over_s6b(c.request, peer, "pgw;s6b;6", identity_response(nai))
        peer2, _ = make_peer(IMSI)
        peer2.usim.window = peer.usim.window  # same USIM, remembers SQN
        answers, ev2 = eap_over_s6b(c.request, peer2, "pgw;s6b;7", identity_response(nai))
    assert succeeded(ev1) and succeeded(ev2) and answers[-1].result_code == 2001
    assert succeeded(ev1).msk != succeeded(ev2).msk


def test_bad_eap_and_missing_payload(hss_daemon):
    d = hss_daemon()
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        ans = c.request(der("pgw;s6b;8", b"\x02\x01\x00\x03"))  # truncated EAP header
        assert ans.result_code == ResultCode.DIAMETER_AUTHENTICATION_REJECTED and eap_code(ans) == EAP_FAILURE
        req = der("pgw;s6b;9", b"")
        req.avps = [a for a in req.avps if a.code != AvpCode.EAP_PAYLOAD]
        ans = c.request(req)
        assert ans.result_code == ResultCode.DIAMETER_MISSING_AVP
        # a Challenge response for a session that never existed
        peer, nai = make_peer(IMSI)
        answers, _ = eap_over_s6b(c.request, peer, "pgw;s6b;10", identity_response(nai))
        assert answers[-1].result_code == 2001
    assert d.proc.poll() is None


def test_retransmitted_der_gets_same_answer(hss_daemon):
    d = hss_daemon()
    peer, nai = make_peer(IMSI)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        first = identity_response(nai)
        a1 = c.request(der("pgw;s6b;11", first))
        a2 = c.request(der("pgw;s6b;11", first))  # PDN GW lost the DEA and retries
        assert a1.get_bytes(AvpCode.EAP_PAYLOAD) == a2.get_bytes(AvpCode.EAP_PAYLOAD)
        assert a2.hop_by_hop != a1.hop_by_hop
        peer.receive(a2.get_bytes(AvpCode.EAP_PAYLOAD))
        ans = c.request(der("pgw;s6b;11", peer.next_message()))
        assert ans.result_code == 2001
    assert d.ctl.call("counters")["swx_mar"] == 1  # no second vector burnt


def test_sessions_time_out(hss_daemon):
    d = hss_daemon(session_timeout=1.0)
    peer, nai = make_peer(IMSI)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        c.request(der("pgw;s6b;12", identity_response(nai)))
        assert d.ctl.call("status")["sessions"] == 1
        deadline = time.monotonic() + 5
        while d.ctl.call("status")["sessions"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert d.ctl.call("status")["sessions"] == 0
        assert d.ctl.call("counters")["s6b_sessions_timed_out"] == 1
        # the late Challenge response finds no session: rejected, not crashed
        peer.receive(c.request(der("pgw;s6b;13", identity_response(nai))).get_bytes(AvpCode.EAP_PAYLOAD))
        late = c.request(der("pgw;s6b;12", peer.next_message()))
        assert late.result_code == ResultCode.DIAMETER_AUTHENTICATION_REJECTED


def test_wrong_k_peer_events(hss_daemon):
    d = hss_daemon()
    peer, nai = make_peer(IMSI2, k=bytes(16))
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        _, events = eap_over_s6b(c.request, peer, "pgw;s6b;14", identity_response(nai))
    assert any(isinstance(e, AuthenticationFailed) for e in events), events
    assert not succeeded(events)
