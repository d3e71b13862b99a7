"""The AAA function's spare authentication vector (hss param ``av_prefetch``): a full EAP-AKA
authentication takes the IMSI's spare vector (no SWx MAR on the DER's path) and the daemon fetches
the next one after the DEA; stale or expired spares end in the normal paths."""

from __future__ import annotations

import time

import pytest

from hss.client import DiameterClient
from hss.testing import IMSI, eap_over_s6b, identity_response, make_peer
from s2c.crypto import sqn as sqnmod
from s2c.eap_aka import AuthenticationSucceeded


def _ok(events) -> bool:
    return any(isinstance(e, AuthenticationSucceeded) for e in events)


def _counters(d, want_mar: int, timeout: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:  # the refill runs just after the DEA went out
        c = d.ctl.call("counters")
        if c.get("swx_mar", 0) >= want_mar or time.monotonic() > deadline:
            return c
        time.sleep(0.02)


@pytest.mark.parametrize("method", ["aka", "aka'"])
def test_second_authentication_uses_the_spare_vector(hss_daemon, method):
    d = hss_daemon(method=method, av_prefetch=True)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        peer, nai = make_peer(IMSI, method=method)
        answers, events = eap_over_s6b(c.request, peer, "pgw;s6b;p1", identity_response(nai))
        assert [a.result_code for a in answers] == [1001, 2001] and _ok(events)
        c1 = _counters(d, 2)
        assert c1["swx_mar"] == 2 and c1.get("av_spare_used", 0) == 0  # its own vector + the spare
        sqn1 = sqnmod.split_sqn(peer.usim.sqn_ms)[0]
        peer2, _ = make_peer(IMSI, method=method)
        answers, events = eap_over_s6b(c.request, peer2, "pgw;s6b;p2", identity_response(nai))
        assert [a.result_code for a in answers] == [1001, 2001] and _ok(events)
        assert sqnmod.split_sqn(peer2.usim.sqn_ms)[0] > sqn1  # the spare carries a fresh SQN
        c2 = _counters(d, 3)
        assert c2["av_spare_used"] == 1 and c2["swx_mar"] == 3 and c2["auth_ok"] == 2


def test_stale_spare_ends_in_resynchronisation(hss_daemon):
    d = hss_daemon(av_prefetch=True)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        peer, nai = make_peer(IMSI)
        _, events = eap_over_s6b(c.request, peer, "pgw;s6b;s1", identity_response(nai))
        assert _ok(events)
        _counters(d, 2)
        # this USIM saw far later SQNs elsewhere: the spare is refused (AUTS), the HSS re-synchronises
        ahead, nai = make_peer(IMSI, sqn_ms=sqnmod.join_sqn(50000, 3))
        answers, events = eap_over_s6b(c.request, ahead, "pgw;s6b;s2", identity_response(nai))
    assert [a.result_code for a in answers] == [1001, 1001, 2001] and _ok(events)
    assert sqnmod.split_sqn(ahead.usim.sqn_ms)[0] == 50001
    cs = _counters(d, 4)
    assert cs["av_spare_used"] == 1 and cs["auth_resync"] == 1 and cs["auth_ok"] == 2


def test_expired_spare_is_not_used(hss_daemon):
    d = hss_daemon(av_prefetch=True, av_max_age=0.2)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        peer, nai = make_peer(IMSI)
        _, events = eap_over_s6b(c.request, peer, "pgw;s6b;e1", identity_response(nai))
        assert _ok(events)
        _counters(d, 2)
        time.sleep(0.4)
        answers, events = eap_over_s6b(c.request, make_peer(IMSI)[0], "pgw;s6b;e2", identity_response(nai))
    assert [a.result_code for a in answers] == [1001, 2001] and _ok(events)
    cs = _counters(d, 4)
    assert cs.get("av_spare_used", 0) == 0 and cs["av_spare_dropped"] == 1 and cs["swx_mar"] == 4


def test_without_prefetch_one_mar_per_authentication(hss_daemon):
    d = hss_daemon(av_prefetch=False)
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        for i in range(2):
            peer, nai = make_peer(IMSI)
            _, events = eap_over_s6b(c.request, peer, f"pgw;s6b;n{i}", identity_response(nai))
            assert _ok(events)
    time.sleep(0.2)
    cs = d.ctl.call("counters")
    assert cs["swx_mar"] == 2 and cs.get("av_spare_used", 0) == 0
