"""Responder CERT+AUTH made ahead while the AAA server works (IkeResponder.prepare_auth), and the peer
certificate parse/trust cache of the initiator (RFC 7296 §2.15, §2.16)."""

from __future__ import annotations

import pytest

from s2c.ike import PskAuth, SaState
from s2c.ike import auth as authmod
from s2c.ike import events as ev
from s2c.ike import sa as samod
from s2c.ike.testkit import FakeEap, eap_gw_config, eap_ue_config, gw_config, make_pair, pki, ue_config
from s2c.ike.config import CertAuth

ESTABLISHED_UE = ["IkeSaEstablished", "CpAssigned", "ChildSaEstablished"]
ESTABLISHED_GW = ["IkeSaEstablished", "ChildSaEstablished"]


def _count(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def wrapper(*a, **kw):
        calls.append(a)
        return real(*a, **kw)
    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("prepare", [True, False])
def test_eap_handshake_with_and_without_prepared_auth(monkeypatch, prepare):
    signs = _count(monkeypatch, authmod, "sign")
    p = make_pair(eap_ue_config(), eap_gw_config())
    eap = FakeEap(p)
    results = []

    def hook(core, e):
        if prepare and isinstance(e, ev.EapAuthenticationRequested):
            assert core.sa(e.sa_id).state == SaState.EAP_WAIT_SERVER
            results.append(core.prepare_auth(e.sa_id, p.clock.now))
            assert len(signs) == 1  # the signature is made here, before the EAP request exists
            results.append(core.prepare_auth(e.sa_id, p.clock.now))  # already prepared
        eap.on_event(core, e)
        if isinstance(e, ev.EapResponseReceived):
            results.append(core.prepare_auth(e.sa_id, p.clock.now))  # second round: nothing to prepare
    p.hooks[0] = hook
    p.ue.initiate(p.clock.now)
    p.pump()
    assert p.types("ue") == ["EapRequestReceived"] + ESTABLISHED_UE
    assert p.types("gw") == ["EapAuthenticationRequested", "EapResponseReceived"] + ESTABLISHED_GW
    assert len(signs) == 1  # one signature either way
    assert results == ([True, False, False] if prepare else [False])


def test_prepare_auth_is_a_no_op_elsewhere():
    p = make_pair(ue_config(), gw_config())
    assert p.gw.prepare_auth(12345, p.clock.now) is False  # unknown session
    p.ue.initiate(p.clock.now)
    p.pump()
    sa_id = p.gw_events[0].sa_id
    assert p.gw.prepare_auth(sa_id, p.clock.now) is False  # PSK, established: no EAP round pending
    assert p.types("gw") == ESTABLISHED_GW


def test_initiator_checks_a_known_certificate_once_and_never_caches_a_failure(monkeypatch):
    samod._check_certificate.cache_clear()
    checks = _count(monkeypatch, authmod, "check_certificate")
    for _ in range(2):
        p = make_pair(eap_ue_config(), eap_gw_config())
        FakeEap(p)
        p.ue.initiate(p.clock.now)
        p.pump()
        assert p.types("ue") == ["EapRequestReceived"] + ESTABLISHED_UE
    assert len(checks) == 1
    k = pki("ecdsa")
    for _ in range(2):  # an untrusted certificate fails every time
        p = make_pair(ue_config(auth=PskAuth(b"s3cr3t-psk"), trusted_certs=(k.ca,)),
                      gw_config(auth=CertAuth(k.rogue_key, k.rogue_cert), psk_lookup=lambda ident: b"s3cr3t-psk"))
        p.ue.initiate(p.clock.now)
        p.pump()
        assert p.types("ue") == ["AuthenticationFailed"] and "not trusted" in p.ue_events[0].reason
    assert len(checks) == 3
