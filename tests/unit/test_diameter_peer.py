"""Sans-IO DiameterPeer: two cores wired back to back with a fake clock."""

from __future__ import annotations

import pytest

from s2c.codec.diameter import (
    AVP_FLAG_MANDATORY,
    FLAG_ERROR,
    FLAG_REQUEST,
    ApplicationId,
    Avp,
    AvpCode,
    CommandCode,
    DiameterFramer,
    DiameterMessage,
    DisconnectCause,
    ResultCode,
)
from s2c.diameter.messages import (
    LocalIdentity,
    SipAuthDataItem,
    build_cer,
    build_dea,
    build_der,
    build_dwr,
    build_maa,
    build_mar,
)
from s2c.diameter.peer import (
    AnswerReceived,
    CapabilitiesExchangeFailed,
    DiameterPeer,
    DisconnectRequested,
    MessageDropped,
    PeerClosed,
    PeerEvent,
    PeerNotOpen,
    PeerOpened,
    PeerRole,
    PeerState,
    RequestReceived,
    RequestTimedOut,
    WatchdogAnswered,
)

S6B = int(ApplicationId.S6B_3GPP)
SWX = int(ApplicationId.SWX_3GPP)

PGW = LocalIdentity("pgw.example.org", "example.org", ("192.0.2.10",), vendor_specific_application_ids=((10415, S6B),))
AAA = LocalIdentity(
    "aaa.example.org", "example.org", ("192.0.2.20",), vendor_specific_application_ids=((10415, S6B), (10415, SWX))
)
HSS_SWX_ONLY = LocalIdentity("hss.example.org", "example.org", ("192.0.2.30",),
                             vendor_specific_application_ids=((10415, SWX),))


def rng(n: int) -> bytes:
    return bytes(range(1, n + 1))


def drain(p: DiameterPeer) -> list[PeerEvent]:
    out = []
    while (e := p.next_event()) is not None:
        out.append(e)
    return out


def pump(a: DiameterPeer, b: DiameterPeer, now: float) -> tuple[list[PeerEvent], list[PeerEvent]]:
    """Move bytes both ways until quiet; return events of a and b."""
    ea: list[PeerEvent] = []
    eb: list[PeerEvent] = []
    for _ in range(20):
        da, db = a.data_to_send(), b.data_to_send()
        if not da and not db:
            break
        if da:
            b.receive_data(da, now)
        if db:
            a.receive_data(db, now)
        ea += drain(a)
        eb += drain(b)
    return ea, eb


def open_pair(client_id: LocalIdentity = PGW, server_id: LocalIdentity = AAA, **kw: float) -> tuple[DiameterPeer, DiameterPeer]:
    c = DiameterPeer(PeerRole.INITIATOR, client_id, 0.0, rng=rng, **kw)
    s = DiameterPeer(PeerRole.RESPONDER, server_id, 0.0, **kw)
    ec, es = pump(c, s, 0.0)
    assert ec == [PeerOpened("aaa.example.org", "example.org", frozenset({S6B}))] or client_id is not PGW
    assert c.is_open and s.is_open
    return c, s


def test_cer_cea_opens_both() -> None:
    c = DiameterPeer(PeerRole.INITIATOR, PGW, 0.0, rng=rng)
    s = DiameterPeer(PeerRole.RESPONDER, AAA, 0.0)
    assert c.state is PeerState.WAIT_CEA and s.state is PeerState.WAIT_CER
    ec, es = pump(c, s, 0.0)
    assert ec == [PeerOpened("aaa.example.org", "example.org", frozenset({S6B}))]
    assert es == [PeerOpened("pgw.example.org", "example.org", frozenset({S6B}))]
    assert c.common_applications == s.common_applications == {S6B}


def test_no_common_application_5010_and_close() -> None:
    c = DiameterPeer(PeerRole.INITIATOR, PGW, 0.0, rng=rng)
    s = DiameterPeer(PeerRole.RESPONDER, HSS_SWX_ONLY, 0.0)
    s.receive_data(c.data_to_send(), 0.0)
    cea_bytes = s.data_to_send()
    assert drain(s) == [CapabilitiesExchangeFailed(5010), PeerClosed("no common application")]
    (cea,) = DiameterFramer().feed(cea_bytes)
    assert cea.result_code == ResultCode.DIAMETER_NO_COMMON_APPLICATION
    c.receive_data(cea_bytes, 0.0)
    ev = drain(c)
    assert ev[0] == CapabilitiesExchangeFailed(5010, None)
    assert isinstance(ev[1], PeerClosed) and c.state is PeerState.CLOSED


def test_responder_without_cer_times_out() -> None:
    s = DiameterPeer(PeerRole.RESPONDER, AAA, 100.0, cer_timeout=5.0)
    assert s.get_timer() == 105.0
    s.handle_timer(104.9)
    assert drain(s) == []
    s.handle_timer(105.0)
    assert drain(s) == [PeerClosed("no CER received within timeout")]
    assert s.get_timer() is None


def test_request_before_open_rejected_3002() -> None:
    s = DiameterPeer(PeerRole.RESPONDER, AAA, 0.0)
    der = build_der(PGW, session_id="s;1;1", destination_realm="example.org", eap_payload=b"\x02\x00\x00\x04")
    der.hop_by_hop = 77
    s.receive_data(der.serialize(), 0.0)
    (ans,) = DiameterFramer().feed(s.data_to_send())
    assert ans.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER and ans.flags & FLAG_ERROR
    assert ans.hop_by_hop == 77
    (ev,) = drain(s)
    assert isinstance(ev, MessageDropped) and ev.result_code == 3002
    assert s.state is PeerState.WAIT_CER


def test_send_request_before_open_raises() -> None:
    c = DiameterPeer(PeerRole.INITIATOR, PGW, 0.0, rng=rng)
    with pytest.raises(PeerNotOpen):
        c.send_request(build_dwr(PGW), 0.0)


def test_der_dea_round_trip_through_peers() -> None:
    c, s = open_pair()
    der = build_der(PGW, session_id="pgw;1;1", destination_realm="example.org", eap_payload=b"\x02\x00\x00\x05\x01")
    c.send_request(der, 1.0)
    ec, es = pump(c, s, 1.0)
    assert ec == []
    (rr,) = es
    assert isinstance(rr, RequestReceived) and rr.request.session_id == "pgw;1;1"
    s.send_answer(build_dea(rr.request, AAA, result_code=ResultCode.DIAMETER_MULTI_ROUND_AUTH, eap_payload=b"\x01"))
    ec, es = pump(c, s, 1.5)
    (ar,) = ec
    assert isinstance(ar, AnswerReceived) and ar.request is der
    assert ar.answer.result_code == 1001 and ar.answer.hop_by_hop == der.hop_by_hop
    assert c.pending_count == 0


def test_many_requests_in_flight_matched() -> None:
    c, s = open_pair()
    sent = []
    for i in range(50):
        sent.append(c.send_request(build_der(PGW, session_id=f"pgw;1;{i}", destination_realm="example.org",
                                             eap_payload=bytes([2, i, 0, 4])), 1.0))
    assert len({m.hop_by_hop for m in sent}) == 50
    s.receive_data(c.data_to_send(), 1.0)
    reqs = [e.request for e in drain(s) if isinstance(e, RequestReceived)]
    assert len(reqs) == 50
    for r in reversed(reqs):  # answer out of order
        s.send_answer(build_dea(r, AAA, result_code=2001))
    c.receive_data(s.data_to_send(), 1.0)
    got = {e.request.session_id: e.answer.session_id for e in drain(c) if isinstance(e, AnswerReceived)}
    assert got == {f"pgw;1;{i}": f"pgw;1;{i}" for i in range(50)}


def test_unknown_command_3001() -> None:
    c, s = open_pair()
    req = DiameterMessage(999, S6B, FLAG_REQUEST, avps=[Avp.utf8(AvpCode.SESSION_ID, "x;1;1")])
    c.send_request(req, 1.0)
    ec, es = pump(c, s, 1.0)
    assert isinstance(es[0], MessageDropped) and es[0].result_code == 3001
    (ar,) = ec
    assert isinstance(ar, AnswerReceived)
    assert ar.answer.result_code == ResultCode.DIAMETER_COMMAND_UNSUPPORTED and ar.answer.is_error


def test_unnegotiated_application_3007() -> None:
    c, s = open_pair()
    mar = build_mar(PGW, session_id="x;1;1", destination_realm="example.org", user_name="u")
    c.send_request(mar, 1.0)
    ec, _ = pump(c, s, 1.0)
    assert ec[0].answer.result_code == ResultCode.DIAMETER_APPLICATION_UNSUPPORTED  # type: ignore[union-attr]


def test_unknown_mandatory_avp_5001_with_failed_avp() -> None:
    c, s = open_pair()
    bogus = Avp(4242, AVP_FLAG_MANDATORY, b"\xde\xad")
    harmless = Avp(4243, 0, b"\xbe\xef")  # no M bit: must be tolerated
    der = build_der(PGW, session_id="x;1;1", destination_realm="example.org", eap_payload=b"\x02\x00\x00\x04",
                    extra_avps=[harmless, bogus])
    c.send_request(der, 1.0)
    ec, es = pump(c, s, 1.0)
    assert isinstance(es[0], MessageDropped) and es[0].result_code == 5001
    ans = ec[0].answer  # type: ignore[union-attr]
    assert ans.result_code == ResultCode.DIAMETER_AVP_UNSUPPORTED and not ans.is_error
    failed = ans.find(AvpCode.FAILED_AVP)
    assert failed is not None and failed.as_grouped() == [bogus]
    assert ans.session_id == "x;1;1"


def test_unknown_non_mandatory_avp_passes() -> None:
    c, s = open_pair()
    der = build_der(PGW, session_id="x;1;1", destination_realm="example.org", eap_payload=b"\x02\x00\x00\x04",
                    extra_avps=[Avp(4243, 0, b"\xbe\xef")])
    c.send_request(der, 1.0)
    _, es = pump(c, s, 1.0)
    assert isinstance(es[0], RequestReceived)


def test_request_with_e_bit_3008() -> None:
    c, s = open_pair()
    der = build_der(PGW, session_id="x;1;1", destination_realm="example.org", eap_payload=b"\x02\x00\x00\x04")
    der.flags |= FLAG_ERROR
    c.send_request(der, 1.0)
    ec, _ = pump(c, s, 1.0)
    assert ec[0].answer.result_code == ResultCode.DIAMETER_INVALID_HDR_BITS  # type: ignore[union-attr]


def test_malformed_avps_answered_5014_stream_survives() -> None:
    c, s = open_pair()
    good = build_der(PGW, session_id="x;1;1", destination_realm="example.org", eap_payload=b"\x02\x00\x00\x04")
    good.hop_by_hop, good.end_to_end = 5, 5
    raw = bytearray(good.serialize())
    raw[20 + 5 : 20 + 8] = (0xFFFF00).to_bytes(3, "big")  # first AVP length overruns
    s.receive_data(bytes(raw) + good.serialize(), 1.0)
    ev = drain(s)
    assert isinstance(ev[0], MessageDropped) and ev[0].result_code == 5014
    assert isinstance(ev[1], RequestReceived)
    (ans,) = DiameterFramer().feed(s.data_to_send())
    assert ans.result_code == ResultCode.DIAMETER_INVALID_AVP_LENGTH and ans.hop_by_hop == 5


def test_garbage_stream_closes() -> None:
    _, s = open_pair()
    s.receive_data(b"GET / HTTP/1.1\r\n\r\n", 1.0)
    (ev,) = drain(s)
    assert isinstance(ev, PeerClosed) and "framing" in ev.reason
    assert s.state is PeerState.CLOSED


def test_watchdog_dwr_dwa() -> None:
    c, s = open_pair(watchdog_interval=30.0)
    assert c.get_timer() == 30.0
    c.handle_timer(29.0)
    assert c.data_to_send() == b""
    c.handle_timer(30.0)
    (dwr,) = DiameterFramer().feed(data := c.data_to_send())
    assert dwr.command_code == CommandCode.DEVICE_WATCHDOG and dwr.is_request
    s.receive_data(data, 30.0)
    c.receive_data(s.data_to_send(), 30.1)
    assert drain(c) == [WatchdogAnswered(2001)]
    assert c.get_timer() == pytest.approx(60.1)
    assert c.is_open


def test_watchdog_timeout_closes() -> None:
    c, _s = open_pair(watchdog_interval=30.0)
    c.handle_timer(30.0)
    assert c.data_to_send()  # DWR sent, never answered
    c.handle_timer(59.9)
    assert drain(c) == [] and c.is_open
    c.handle_timer(60.0)
    (ev,) = drain(c)
    assert isinstance(ev, PeerClosed) and "watchdog" in ev.reason
    assert c.get_timer() is None


def test_traffic_defers_watchdog() -> None:
    c, s = open_pair(watchdog_interval=30.0)
    s.handle_timer(25.0)
    s.send_request(build_dwr(AAA), 25.0)  # any message from s resets c's Tw
    pump(c, s, 25.0)
    assert c.get_timer() == 55.0


def test_request_timeout() -> None:
    c, s = open_pair(request_timeout=4.0, watchdog_interval=100.0)
    der = c.send_request(build_der(PGW, session_id="x;1;1", destination_realm="r", eap_payload=b"\x02\x00\x00\x04"), 1.0)
    s.receive_data(c.data_to_send(), 1.0)
    assert c.get_timer() == 5.0
    c.handle_timer(5.0)
    assert drain(c) == [RequestTimedOut(der)]
    # late answer is dropped, not delivered
    (rr,) = drain(s)
    s.send_answer(build_dea(rr.request, AAA, result_code=2001))  # type: ignore[union-attr]
    c.receive_data(s.data_to_send(), 6.0)
    (ev,) = drain(c)
    assert isinstance(ev, MessageDropped)


def test_dpr_dpa() -> None:
    c, s = open_pair()
    c.disconnect(5.0, DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU)
    assert c.state is PeerState.CLOSING
    ec, es = pump(c, s, 5.0)
    assert es == [DisconnectRequested(2), PeerClosed("peer sent DPR")]
    assert ec == [PeerClosed("DPA received")]


def test_dpr_without_dpa_times_out() -> None:
    c, _ = open_pair()
    c.disconnect(5.0)
    c.data_to_send()
    c.handle_timer(10.0)
    assert drain(c) == [PeerClosed("no DPA received within timeout")]


def test_close_fails_pending_requests() -> None:
    c, _ = open_pair()
    der = c.send_request(build_der(PGW, session_id="x;1;1", destination_realm="r", eap_payload=b"\x02\x00\x00\x04"), 1.0)
    c.connection_lost()
    assert drain(c) == [RequestTimedOut(der), PeerClosed("transport closed")]


def test_swx_mar_maa_through_peers() -> None:
    aaa_client = LocalIdentity("aaa.example.org", "example.org", vendor_specific_application_ids=((10415, SWX),))
    c = DiameterPeer(PeerRole.INITIATOR, aaa_client, 0.0, rng=rng)
    s = DiameterPeer(PeerRole.RESPONDER, HSS_SWX_ONLY, 0.0)
    pump(c, s, 0.0)
    mar = c.send_request(build_mar(aaa_client, session_id="aaa;1;9", destination_realm="example.org",
                                   user_name="0001010123456789@nai.epc"), 1.0)
    _, es = pump(c, s, 1.0)
    req = es[0].request  # type: ignore[union-attr]
    item = SipAuthDataItem("EAP-AKA", bytes(32), bytes(8), bytes(16), bytes(16))
    s.send_answer(build_maa(req, HSS_SWX_ONLY, items=[item], result_code=2001))
    ec, _ = pump(c, s, 1.0)
    assert isinstance(ec[0], AnswerReceived) and ec[0].request is mar


def test_cer_in_open_rejected_and_cea_with_error_closes() -> None:
    c, s = open_pair()
    cer = build_cer(PGW)
    cer.hop_by_hop = 1234
    s.receive_data(cer.serialize(), 1.0)
    (ev,) = drain(s)
    assert isinstance(ev, MessageDropped) and ev.result_code == ResultCode.DIAMETER_UNABLE_TO_COMPLY
    assert s.is_open


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6), st.booleans())
def test_peer_never_raises_on_garbage(chunks: list[bytes], prefix_valid: bool) -> None:
    """Arbitrary bytes (optionally after a valid DER) only ever produce events, never exceptions."""
    c, s = open_pair()
    if prefix_valid:
        der = build_der(PGW, session_id="x;1;1", destination_realm="r", eap_payload=b"\x02\x00\x00\x04")
        der.hop_by_hop = 9
        chunks = [der.serialize()[:30], der.serialize()[30:]] + chunks
    for ch in chunks:
        s.receive_data(ch, 1.0)
        s.handle_timer(1.0)
    for e in drain(s):
        assert isinstance(e, (RequestReceived, MessageDropped, PeerClosed, DisconnectRequested, RequestTimedOut))
    DiameterFramer().feed(s.data_to_send())  # whatever we answered is well-formed


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_requests_answered_or_dropped(data: st.DataObject) -> None:
    c, s = open_pair()
    mar_ok = build_der(PGW, session_id="x;1;1", destination_realm="r", eap_payload=b"\x02\x00\x00\x04")
    mar_ok.hop_by_hop = 3
    raw = bytearray(mar_ok.serialize())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(4, len(raw) - 1))  # keep version/length so framing stays in sync
        raw[i] = data.draw(st.integers(0, 255))
    s.receive_data(bytes(raw), 1.0)
    evs = drain(s)
    answers = DiameterFramer().feed(s.data_to_send())
    assert evs or answers  # never silently swallowed (a DWR is answered without an event)
    for e in evs:
        if isinstance(e, MessageDropped) and e.result_code is not None:
            assert len(answers) == 1 and not answers[0].is_request and answers[0].hop_by_hop == e.message.hop_by_hop  # type: ignore[union-attr]
