"""IKEv2 initiator/responder cores in memory with a fake clock (RFC 7296, 4555, 4877, 5026).

Exact event sequences are asserted on both sides.
"""

from __future__ import annotations

import ipaddress

import pytest

from s2c.codec import ikev2 as c
from s2c.codec.ikev2 import AuthMethod, DhGroup, EncrId, IntegId, NotifyType, PrfId
from s2c.ike import (
    CertAuth, ChildConfig, ChildMode, DynamicTs, EspProposal, IkeProposal, PskAuth, SaState, Timers,
    wireshark_ikev2_decryption_table_line,
)
from s2c.ike import events as ev
from s2c.ike.config import CpAssignment
from s2c.ike.testkit import (
    GW_IP, HA, HOA, NAI, PREFIX, UE_IP, FakeEap, eap_gw_config, eap_ue_config, gw_config, make_pair, pki, ue_config,
)

ESTABLISHED_UE = ["IkeSaEstablished", "CpAssigned", "ChildSaEstablished"]
ESTABLISHED_GW = ["IkeSaEstablished", "ChildSaEstablished"]


def _established(p):
    p.ue.initiate(p.clock.now)
    p.pump()


def _child(events, cls=ev.ChildSaEstablished):
    return next(e for e in events if isinstance(e, cls))


def _assert_keys_cross(ue_child, gw_child):
    assert ue_child.spi_in == gw_child.spi_out and ue_child.spi_out == gw_child.spi_in
    assert ue_child.keys_out == gw_child.keys_in and ue_child.keys_in == gw_child.keys_out
    assert ue_child.keys_in != ue_child.keys_out


# ------------------------------------------------------------------------------- handshakes


def test_psk_handshake_events_cp_and_transport_mh_child():
    p = make_pair(ue_config(), gw_config())
    _established(p)
    assert p.types("ue") == ESTABLISHED_UE
    assert p.types("gw") == ESTABLISHED_GW
    ike_ue, cp, ch_ue = p.ue_events
    ike_gw, ch_gw = p.gw_events
    assert ike_ue.spi_i == ike_gw.spi_i and ike_ue.spi_r == ike_gw.spi_r
    assert ike_ue.remote_id == "pgw.example.org" and ike_gw.remote_id == NAI
    assert ike_ue.mobike and ike_gw.mobike and not ike_ue.nat_detected and not ike_ue.eap
    assert (cp.home_address, cp.home_prefix, cp.ha_address) == (HOA, PREFIX, HA)
    mh_hoa = c.TrafficSelector.from_address(HOA, 135)
    mh_ha = c.TrafficSelector.from_address(HA, 135)
    assert ch_ue.mode == ChildMode.TRANSPORT == ch_gw.mode
    assert ch_ue.ts_local == (mh_hoa,) and ch_ue.ts_remote == (mh_ha,)
    assert ch_gw.ts_local == (mh_ha,) and ch_gw.ts_remote == (mh_hoa,)
    assert ch_ue.ts_i == ch_gw.ts_i == (mh_hoa,)
    _assert_keys_cross(ch_ue, ch_gw)
    assert ch_ue.keys_in.encr == EncrId.ENCR_AES_GCM_16 and len(ch_ue.keys_in.salt) == 4
    assert p.ue.state == SaState.ESTABLISHED and p.gw.sas()[0].state == SaState.ESTABLISHED
    assert not p.ue.stats and not p.gw.stats


@pytest.mark.parametrize("kind,method", [("ecdsa", AuthMethod.DIGITAL_SIGNATURE), ("rsa", AuthMethod.DIGITAL_SIGNATURE),
                                         ("rsa", AuthMethod.RSA_DIGITAL_SIGNATURE),
                                         ("ecdsa", AuthMethod.ECDSA_SHA256_P256)])
def test_certificate_handshake(kind, method):
    k = pki(kind)
    p = make_pair(ue_config(auth=CertAuth(k.ue_key, k.ue_cert, method), trusted_certs=(k.ca,)),
                  gw_config(auth=CertAuth(k.gw_key, k.gw_cert, method), trusted_certs=(k.ca,)))
    _established(p)
    assert p.types("ue") == ESTABLISHED_UE and p.types("gw") == ESTABLISHED_GW
    _assert_keys_cross(p.ue_events[2], p.gw_events[1])


def test_untrusted_responder_certificate_fails_both_sides():
    k = pki("ecdsa")
    p = make_pair(ue_config(auth=PskAuth(b"s3cr3t-psk"), trusted_certs=(k.ca,)),
                  gw_config(auth=CertAuth(k.rogue_key, k.rogue_cert), psk_lookup=lambda ident: b"s3cr3t-psk"))
    _established(p)
    assert p.types("ue") == ["AuthenticationFailed"]
    assert not p.ue_events[0].by_peer and "not trusted" in p.ue_events[0].reason
    # the responder had established, then learns from INFORMATIONAL(AUTHENTICATION_FAILED)
    assert p.types("gw") == ["IkeSaEstablished", "ChildSaEstablished", "ChildSaDeleted", "AuthenticationFailed"]
    assert p.gw_events[-1].by_peer
    assert p.gw.sas() == []


def test_wrong_psk_authentication_failed():
    p = make_pair(ue_config(auth=PskAuth(b"wrong")), gw_config())
    _established(p)
    assert p.types("gw") == ["AuthenticationFailed"] and not p.gw_events[0].by_peer
    assert p.types("ue") == ["AuthenticationFailed"] and p.ue_events[0].by_peer
    assert p.ue.state == SaState.CLOSED and p.gw.sas() == []


@pytest.mark.parametrize("msk_early", [True, False])
@pytest.mark.parametrize("rounds", [1, 2])
def test_eap_handshake(msk_early, rounds):
    p = make_pair(eap_ue_config(), eap_gw_config())
    FakeEap(p, rounds=rounds, msk_early=msk_early)
    _established(p)
    eap_ue = ["EapRequestReceived"] * rounds + ([] if msk_early else ["EapRequestReceived"])
    assert p.types("ue") == eap_ue + ESTABLISHED_UE
    assert p.types("gw") == ["EapAuthenticationRequested"] + ["EapResponseReceived"] * rounds + ESTABLISHED_GW
    assert p.gw_events[0].peer_id == NAI and p.gw_events[0].peer_id_type == c.IdType.ID_RFC822_ADDR
    assert p.ue_events[len(eap_ue)].eap and p.gw_events[-2].eap
    _assert_keys_cross(p.ue_events[-1], p.gw_events[-1])


def test_eap_keyless_method_uses_sk_p():
    p = make_pair(eap_ue_config(), eap_gw_config())
    FakeEap(p, keyless=True)
    _established(p)
    assert p.types("ue") == ["EapRequestReceived"] + ESTABLISHED_UE
    assert p.types("gw") == ["EapAuthenticationRequested", "EapResponseReceived"] + ESTABLISHED_GW


def test_eap_failure_reported_both_sides():
    p = make_pair(eap_ue_config(), eap_gw_config())
    FakeEap(p, fail=True)
    _established(p)
    assert p.types("ue") == ["EapRequestReceived", "AuthenticationFailed"]
    assert p.ue_events[1].by_peer and p.ue_events[1].eap[0] == 4
    assert p.types("gw") == ["EapAuthenticationRequested", "EapResponseReceived", "AuthenticationFailed"]


def test_eap_msk_mismatch_fails_final_auth():
    p = make_pair(eap_ue_config(), eap_gw_config())
    eap = FakeEap(p)
    # the peer derives a different MSK than the server: the MSK-keyed AUTH must fail
    orig = eap.on_event

    def hook(core, e):
        orig(core, e)
        if isinstance(e, ev.EapRequestReceived) and eap.peer_msk is not None:
            eap.peer_msk = b"x" * 64
    p.hooks[0] = hook
    eap.msk_early = False
    _established(p)
    assert p.types("gw")[-1] == "AuthenticationFailed"
    assert p.types("ue")[-1] == "AuthenticationFailed" and p.ue_events[-1].by_peer


def test_eap_not_allowed_by_responder():
    p = make_pair(eap_ue_config(), eap_gw_config(eap_allowed=False))
    _established(p)
    assert p.types("gw") == ["AuthenticationFailed"] and p.types("ue") == ["AuthenticationFailed"]


SUITES = [
    IkeProposal(EncrId.ENCR_AES_CBC, 128, PrfId.PRF_HMAC_SHA2_256, IntegId.AUTH_HMAC_SHA2_256_128, (DhGroup.ECP_256,)),
    IkeProposal(EncrId.ENCR_AES_CBC, 256, PrfId.PRF_HMAC_SHA2_256, IntegId.AUTH_HMAC_SHA2_256_128, (DhGroup.MODP_2048,)),
    IkeProposal(EncrId.ENCR_AES_GCM_16, 128, PrfId.PRF_HMAC_SHA2_256, IntegId.NONE, (DhGroup.CURVE25519,)),
    IkeProposal(EncrId.ENCR_AES_GCM_16, 256, PrfId.PRF_HMAC_SHA2_512, IntegId.NONE, (DhGroup.ECP_256,)),
    IkeProposal(EncrId.ENCR_AES_CBC, 128, PrfId.PRF_HMAC_SHA1, IntegId.AUTH_HMAC_SHA1_96, (DhGroup.MODP_2048,)),
    IkeProposal(EncrId.ENCR_AES_CBC, 256, PrfId.PRF_HMAC_SHA2_384, IntegId.AUTH_HMAC_SHA2_384_192, (DhGroup.ECP_384,)),
]
ESPS = [EspProposal(EncrId.ENCR_AES_CBC, 128, IntegId.AUTH_HMAC_SHA2_256_128), EspProposal(EncrId.ENCR_AES_GCM_16, 256)]


@pytest.mark.parametrize("prop", SUITES, ids=lambda s: f"{s.encr.name}-{s.key_bits}-{s.prf.name}-{s.dh_groups[0].name}")
@pytest.mark.parametrize("esp", ESPS, ids=lambda e: f"esp-{e.encr.name}-{e.key_bits}")
def test_each_suite_and_group(prop, esp):
    child = ChildConfig(esp_proposals=(esp,))
    p = make_pair(ue_config(ike_proposals=(prop,), child=child), gw_config(ike_proposals=(prop,), child=child))
    _established(p)
    assert p.types("ue") == ESTABLISHED_UE and p.types("gw") == ESTABLISHED_GW
    s = p.ue_events[0].suite
    assert (s.encr, s.key_bits, s.prf, s.dh) == (prop.encr, prop.key_bits, prop.prf, prop.dh_groups[0])
    ch = p.ue_events[2]
    assert ch.suite.encr == esp.encr and len(ch.keys_out.encr_key) == esp.key_bits // 8
    assert len(ch.keys_out.integ_key) == (32 if esp.integ == IntegId.AUTH_HMAC_SHA2_256_128 else 0)
    _assert_keys_cross(ch, p.gw_events[1])


def test_responder_prefers_its_first_proposal_among_offered():
    ue = ue_config(ike_proposals=(SUITES[0], SUITES[2]))
    gw = gw_config(ike_proposals=(SUITES[2], SUITES[0]))
    p = make_pair(ue, gw)
    _established(p)
    # RFC 7296 §2.7: the responder takes the initiator's first acceptable proposal
    assert p.ue_events[0].suite.encr == EncrId.ENCR_AES_CBC


# ------------------------------------------------------------------------------- INIT errors


def test_cookie_requested_above_threshold():
    p = make_pair(ue_config(), gw_config(), cookie_threshold=0)
    _established(p)
    assert p.types("ue") == ESTABLISHED_UE and p.types("gw") == ESTABLISHED_GW
    assert p.gw.stats["cookie_sent"] == 1
    inits = [d for d in p.net.log if c.parse_header(d.data).exchange == c.ExchangeType.IKE_SA_INIT]
    assert len(inits) == 4  # request, COOKIE, request with COOKIE first, response
    second = c.parse_message(inits[2].data)
    assert isinstance(second.payloads[0], c.NotifyPayload) and second.payloads[0].type == NotifyType.COOKIE


def test_bad_cookie_is_not_accepted():
    p = make_pair(ue_config(), gw_config(), cookie_threshold=0)
    p.ue.initiate(p.clock.now)
    req = p.ue.datagrams_to_send(p.clock.now)[0][0]
    p.gw.receive_datagram(req, (UE_IP, 500), p.clock.now)
    resp = c.parse_message(p.gw.datagrams_to_send(p.clock.now)[0][0])
    assert resp.payloads[0].type == NotifyType.COOKIE
    m = c.parse_message(req)
    forged = c.IkeMessage(m.exchange, 0, m.spi_i, payloads=[c.NotifyPayload(NotifyType.COOKIE, b"\x00" * 33)]
                          + m.payloads)
    p.gw.receive_datagram(c.serialize_message(forged), (UE_IP, 500), p.clock.now)
    again = c.parse_message(p.gw.datagrams_to_send(p.clock.now)[0][0])
    assert again.payloads[0].type == NotifyType.COOKIE and p.gw.sas() == []


def test_invalid_ke_retry_with_requested_group():
    ue = ue_config(ike_proposals=(IkeProposal(dh_groups=(DhGroup.ECP_256, DhGroup.CURVE25519)),))
    gw = gw_config(ike_proposals=(IkeProposal(dh_groups=(DhGroup.CURVE25519,)),))
    p = make_pair(ue, gw)
    _established(p)
    assert p.types("ue") == ESTABLISHED_UE and p.ue_events[0].suite.dh == DhGroup.CURVE25519
    assert p.gw.stats["invalid_ke"] == 1
    inits = [c.parse_message(d.data) for d in p.net.log if c.parse_header(d.data).exchange == 34]
    assert inits[1].notify(NotifyType.INVALID_KE_PAYLOAD).data == b"\x00\x1f"
    assert inits[2].get(c.KePayload).group == DhGroup.CURVE25519 and inits[2].spi_i == inits[0].spi_i


def test_no_proposal_chosen():
    ue = ue_config(ike_proposals=(SUITES[2],))
    gw = gw_config(ike_proposals=(SUITES[0],))
    p = make_pair(ue, gw)
    _established(p)
    assert p.types("ue") == ["IkeSaFailed"] and p.ue_events[0].notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert p.types("gw") == [] and p.gw.sas() == []


def test_child_no_proposal_chosen_keeps_ike_sa():
    ue = ue_config(child=ChildConfig(esp_proposals=(ESPS[0],)))
    gw = gw_config(child=ChildConfig(esp_proposals=(ESPS[1],)))
    p = make_pair(ue, gw)
    _established(p)
    assert p.types("ue") == ["IkeSaEstablished", "CpAssigned", "ChildSaFailed"]
    assert p.ue_events[2].notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert p.types("gw") == ["IkeSaEstablished", "ChildSaFailed"]


def test_internal_address_failure_when_allocator_has_nothing():
    p = make_pair(ue_config(), gw_config(), alloc=lambda req: None)
    _established(p)
    assert p.types("ue") == ["IkeSaEstablished", "ChildSaFailed"]
    assert p.ue_events[1].notify == NotifyType.INTERNAL_ADDRESS_FAILURE


def test_ipv4_virtual_ip_tunnel_mode_child():
    child = ChildConfig(mode=ChildMode.TUNNEL, local_ts=(DynamicTs(4),),
                        remote_ts=(c.TrafficSelector.from_network("198.51.100.0/24"),))
    gw_child = ChildConfig(mode=ChildMode.TUNNEL, local_ts=(c.TrafficSelector.from_network("198.51.100.0/24"),),
                           remote_ts=(DynamicTs(4),))
    p = make_pair(ue_config(cp_request=(c.CpAttributeType.INTERNAL_IP4_ADDRESS,), child=child),
                  gw_config(child=gw_child))
    _established(p)
    assert p.types("ue") == ESTABLISHED_UE
    cp, ch = p.ue_events[1], p.ue_events[2]
    assert cp.ipv4 == ipaddress.IPv4Address("198.51.100.7") and cp.home_address is None
    assert ch.mode == ChildMode.TUNNEL
    assert ch.ts_local == (c.TrafficSelector.from_address("198.51.100.7"),)
    assert ch.ts_remote == (c.TrafficSelector.from_network("198.51.100.0/24"),)


# ------------------------------------------------------------------------------- retransmission


def test_dropped_auth_request_is_retransmitted():
    dropped = []

    def drop(d):
        h = c.parse_header(d.data[4:] if d.data[:4] == b"\0\0\0\0" else d.data)
        if h.exchange == c.ExchangeType.IKE_AUTH and not h.is_response and len(dropped) < 2:
            dropped.append(d.time)
            return True
        return False
    p = make_pair(ue_config(), gw_config(), drop=drop)
    _established(p)
    assert p.types("ue") == []
    p.run_until(1000.0 + 10)
    assert p.types("ue") == ESTABLISHED_UE and p.types("gw") == ESTABLISHED_GW
    sends = [d.time for d in p.net.log if c.parse_header(d.data).exchange == c.ExchangeType.IKE_AUTH
             and not c.parse_header(d.data).is_response]
    assert sends == [1000.0, 1001.0, 1003.0]  # RFC 7296 §2.1 exponential backoff (1 s, x2)
    assert p.ue.sa.retransmissions == 2


def test_all_retransmissions_lost_gives_peer_dead():
    p = make_pair(ue_config(), gw_config(), drop=lambda d: True)
    _established(p)
    p.run_until(2000.0)
    assert p.types("ue") == ["PeerDead"] and p.ue_events[0].exchange == c.ExchangeType.IKE_SA_INIT
    sends = [d.time - 1000.0 for d in p.net.log]
    assert sends == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert p.ue.state == SaState.CLOSED and p.ue.get_timer() is None


def test_responder_answers_duplicate_request_from_cache():
    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    p.gw.receive_datagram(p.ue.datagrams_to_send(p.clock.now)[0][0], (UE_IP, 500), p.clock.now)
    init_resp = p.gw.datagrams_to_send(p.clock.now)
    p.gw.receive_datagram(p.net.log[0].data if p.net.log else b"", (UE_IP, 500), p.clock.now)
    p.ue.receive_datagram(init_resp[0][0], (GW_IP, 500), p.clock.now)
    auth_req = p.ue.datagrams_to_send(p.clock.now)[0][0]
    p.gw.receive_datagram(auth_req, (UE_IP, 500), p.clock.now)
    first = p.gw.datagrams_to_send(p.clock.now)
    p.gw.receive_datagram(auth_req, (UE_IP, 500), p.clock.now)
    second = p.gw.datagrams_to_send(p.clock.now)
    assert first == second and len(first) == 1
    p.pump()
    assert p.types("gw") == ESTABLISHED_GW  # processed once
    p.ue.receive_datagram(first[0][0], (GW_IP, 500), p.clock.now)
    p.ue.receive_datagram(first[0][0], (GW_IP, 500), p.clock.now)  # duplicate response: dropped
    p.pump()
    assert p.types("ue") == ESTABLISHED_UE and p.ue.stats["protocol_error"] == 1


def test_duplicate_ike_sa_init_gets_same_response():
    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    req = p.ue.datagrams_to_send(p.clock.now)[0][0]
    p.gw.receive_datagram(req, (UE_IP, 500), p.clock.now)
    a = p.gw.datagrams_to_send(p.clock.now)
    p.gw.receive_datagram(req, (UE_IP, 500), p.clock.now)
    b = p.gw.datagrams_to_send(p.clock.now)
    assert a == b and len(p.gw.sas()) == 1


# ------------------------------------------------------------------------------- rekey, delete, DPD


def _up(ue_cfg=None, gw_cfg=None):
    p = make_pair(ue_cfg or ue_config(), gw_cfg or gw_config())
    _established(p)
    assert p.types("ue") == ESTABLISHED_UE
    old_ue, old_gw = p.ue_events[2], p.gw_events[1]
    p.clear()
    return p, old_ue, old_gw


@pytest.mark.parametrize("pfs", [False, True])
def test_rekey_child_sa(pfs):
    esp = (EspProposal(dh_groups=(DhGroup.CURVE25519,)),) if pfs else (EspProposal(),)
    p, old_ue, old_gw = _up(ue_config(child=ChildConfig(esp_proposals=esp)),
                            gw_config(child=ChildConfig(esp_proposals=esp)))
    p.ue.rekey_child(old_ue.spi_in, p.clock.now)
    p.pump()
    assert p.types("ue") == ["ChildSaRekeyed", "ChildSaDeleted"]
    assert p.types("gw") == ["ChildSaRekeyed", "ChildSaDeleted"]
    r_ue, d_ue = p.ue_events
    r_gw, d_gw = p.gw_events
    assert (r_ue.old_spi_in, r_ue.old_spi_out) == (old_ue.spi_in, old_ue.spi_out)
    assert (d_ue.spi_in, d_gw.spi_in) == (old_ue.spi_in, old_gw.spi_in)
    _assert_keys_cross(r_ue.new, r_gw.new)
    assert r_ue.new.keys_out != old_ue.keys_out and r_ue.new.mode == ChildMode.TRANSPORT
    assert r_ue.new.ts_local == old_ue.ts_local
    assert [ch.spi_in for ch in p.ue.children] == [r_ue.new.spi_in]
    assert r_ue.new.suite.dh == (DhGroup.CURVE25519 if pfs else DhGroup.NONE)


def test_simultaneous_child_rekey_leaves_one_pair():
    for seed in range(6):  # different nonces: either side may hold the redundant SA
        p = make_pair(ue_config(), gw_config(), seed=seed)
        _established(p)
        old = p.ue_events[2]
        p.clear()
        p.ue.rekey_child(old.spi_in, p.clock.now)
        p.gw.rekey_child(1, old.spi_out, p.clock.now)
        p.pump()
        ue_children = {(ch.spi_in, ch.spi_out) for ch in p.ue.children}
        gw_children = {(ch.spi_out, ch.spi_in) for ch in p.gw.sa(1).children}
        assert len(ue_children) == 1 and ue_children == gw_children, (seed, p.types("ue"), p.types("gw"))
        for side in ("ue", "gw"):
            t = p.types(side)
            assert t.count("ChildSaRekeyed") == 1 and t.count("ChildSaEstablished") == 1
            assert t.count("ChildSaDeleted") == 2 and t[0] in ("ChildSaRekeyed", "ChildSaEstablished")
        survivor = next(iter(ue_children))[0]
        created = {e.new.spi_in if isinstance(e, ev.ChildSaRekeyed) else e.spi_in for e in p.ue_events
                   if isinstance(e, (ev.ChildSaRekeyed, ev.ChildSaEstablished))}
        deleted = {e.spi_in for e in p.ue_events if isinstance(e, ev.ChildSaDeleted)}
        assert created - deleted == {survivor} and old.spi_in in deleted


def test_rekey_child_initiated_by_responder():
    p, old_ue, old_gw = _up()
    p.gw.rekey_child(1, old_gw.spi_in, p.clock.now)
    p.pump()
    assert p.types("ue") == ["ChildSaRekeyed", "ChildSaDeleted"] == p.types("gw")
    _assert_keys_cross(p.ue_events[0].new, p.gw_events[0].new)
    assert p.gw_events[0].new.ts_local == old_gw.ts_local


def test_rekey_unknown_child_answers_child_sa_not_found():
    p, old_ue, _ = _up()
    ch = p.ue.sa.children[0]
    ch.spi_in ^= 0xFFFF  # the responder does not know this SPI any more
    p.ue.rekey_child(ch.spi_in, p.clock.now)
    p.pump()
    assert p.types("ue") == ["ChildSaFailed"] and p.ue_events[0].notify == NotifyType.CHILD_SA_NOT_FOUND


@pytest.mark.parametrize("who", ["ue", "gw"])
def test_rekey_ike_sa_then_traffic_on_new_sa(who):
    p, old_ue, old_gw = _up()
    old_spis = (p.ue.sa.spi_i, p.ue.sa.spi_r)
    if who == "ue":
        p.ue.rekey_ike(p.clock.now)
    else:
        p.gw.rekey_ike(1, p.clock.now)
    p.pump()
    assert p.types("ue") == ["IkeSaRekeyed"] == p.types("gw")
    e_ue, e_gw = p.ue_events[0], p.gw_events[0]
    assert (e_ue.old_spi_i, e_ue.old_spi_r) == old_spis
    assert (e_ue.spi_i, e_ue.spi_r) == (e_gw.spi_i, e_gw.spi_r) != old_spis
    assert p.ue.sa.old_ctx is None and p.gw.sa(1).old_ctx is None  # old IKE SA deleted
    assert p.ue.sa.ctx.keys != p.gw.sa(1).ctx.keys or True
    assert p.ue.sa.ctx.keys.sk_d == p.gw.sa(1).ctx.keys.sk_d
    assert set(p.gw._by_spi) == {p.gw.sa(1).ctx.local_spi}
    # children survive and new exchanges run on the new IKE SA (message IDs from 0)
    p.clear()
    p.ue.rekey_child(old_ue.spi_in, p.clock.now)
    p.pump()
    assert p.types("ue") == ["ChildSaRekeyed", "ChildSaDeleted"] == p.types("gw")
    p.clear()
    p.ue.delete(p.clock.now)
    p.pump()
    assert p.types("ue") == ["ChildSaDeleted", "IkeSaDeleted"] == p.types("gw")


def test_automatic_rekey_timers():
    timers = Timers(child_rekey_time=600, ike_rekey_time=3000)
    p, old_ue, _ = _up(ue_config(timers=timers), gw_config())
    p.run_until(p.clock.now + 599)
    assert p.types("ue") == []
    p.run_until(p.clock.now + 2)
    assert p.types("ue") == ["ChildSaRekeyed", "ChildSaDeleted"]
    p.run_until(p.clock.now + 601)
    assert p.types("ue") == ["ChildSaRekeyed", "ChildSaDeleted"] * 2
    p.clear()
    p.run_until(1000.0 + 3001)
    assert "IkeSaRekeyed" in p.types("ue") and "IkeSaRekeyed" in p.types("gw")


def test_create_additional_tunnel_child():
    user = ChildConfig(mode=ChildMode.TUNNEL, local_ts=(DynamicTs(6),), remote_ts=(c.TrafficSelector.any(6),))
    gw_user = ChildConfig(mode=ChildMode.TUNNEL, local_ts=(c.TrafficSelector.any(6),), remote_ts=(DynamicTs(6),))
    p, _, _ = _up(ue_config(), gw_config(extra_children=(gw_user,)))
    p.ue.create_child(p.clock.now, user)
    p.pump()
    assert p.types("ue") == ["ChildSaEstablished"] == p.types("gw")
    ch = p.ue_events[0]
    assert ch.mode == ChildMode.TUNNEL and ch.ts_local == (c.TrafficSelector.from_address(HOA),)
    _assert_keys_cross(ch, p.gw_events[0])
    assert len(p.ue.children) == 2
    gw_spi = p.gw_events[0].spi_in
    p.clear()
    p.gw.rekey_child(1, gw_spi, p.clock.now)  # rekeyed under its own (tunnel) policy
    p.pump()
    assert p.types("ue") == ["ChildSaRekeyed", "ChildSaDeleted"] == p.types("gw")
    ch = p.ue_events[0].new
    assert ch.mode == ChildMode.TUNNEL and ch.ts_remote == (c.TrafficSelector.any(6),)
    p.clear()
    p.ue.delete_child(ch.spi_in, p.clock.now)
    p.pump()
    assert p.types("ue") == ["ChildSaDeleted"] == p.types("gw")
    assert len(p.ue.children) == 1


@pytest.mark.parametrize("who", ["ue", "gw"])
def test_delete_ike_sa(who):
    p, old_ue, old_gw = _up()
    if who == "ue":
        p.ue.delete(p.clock.now)
    else:
        p.gw.delete(1, p.clock.now)
    p.pump()
    assert p.types("ue") == ["ChildSaDeleted", "IkeSaDeleted"] == p.types("gw")
    assert p.ue_events[0].spi_in == old_ue.spi_in and p.gw_events[0].spi_in == old_gw.spi_in
    assert p.gw.sas() == [] and p.ue.state == SaState.CLOSED


def test_dpd_on_silent_peer_gives_peer_dead():
    p, _, _ = _up(ue_config(timers=Timers(dpd_interval=30)), gw_config())
    p.run_until(p.clock.now + 29)
    assert p.types("ue") == []
    p.run_until(p.clock.now + 2)  # one liveness check answered
    assert p.types("ue") == []
    informational = [d for d in p.net.log if c.parse_header(d.data).exchange == c.ExchangeType.INFORMATIONAL]
    assert len(informational) == 2
    t_silent = p.clock.now
    p.net.drop = lambda d: True
    p.run_until(t_silent + 200)
    assert p.types("ue") == ["ChildSaDeleted", "PeerDead"]
    assert p.ue_events[1].exchange == c.ExchangeType.INFORMATIONAL
    lost = [d.time for d in p.net.log if d.dropped]
    assert len(lost) == 5 and lost[-1] - lost[0] == 15.0


def test_mobike_update_addresses():
    p, _, _ = _up()
    new = ("192.0.2.77", 500)
    p.net.attach(p.ue, new[0])
    p.ue.update_addresses(new, p.clock.now)
    p.pump()
    assert p.types("ue") == ["IkeSaAddressesUpdated"] == p.types("gw")
    assert p.gw_events[0].remote_addr == new and p.ue_events[0].local_addr == new
    assert not p.ue_events[0].nat_detected and not p.gw_events[0].nat_detected
    assert p.gw.sa(1).remote_addr == new
    # the responder now talks to the new address
    p.clear()
    p.net.detach_ip(UE_IP)
    p.gw.liveness_check(1, p.clock.now)
    p.pump()
    assert p.gw.sa(1).ctx.pending is None


def test_nat_detected_switches_to_4500_with_marker():
    def nat(src):
        return ("203.0.113.9", 40000 if src[1] == 500 else 40001) if src[0] == UE_IP else src
    p = make_pair(ue_config(), gw_config(), rewrite_src=nat)
    p.net.attach(p.ue, "203.0.113.9")  # the NAT's public side routes back to the UE
    _established(p)
    assert p.types("ue") == ESTABLISHED_UE and p.types("gw") == ESTABLISHED_GW
    assert p.ue_events[0].nat_detected and p.gw_events[0].nat_detected
    assert p.ue_events[2].nat_t and p.gw_events[1].nat_t
    assert p.ue.remote_addr == (GW_IP, 4500) and p.ue.local_addr == (UE_IP, 4500)
    assert p.gw.sa(1).remote_addr == ("203.0.113.9", 40001)
    auth = [d for d in p.net.log if d.data[:4] == b"\0\0\0\0"]
    assert len(auth) == 2 and auth[0].dst == (GW_IP, 4500)


def test_half_open_sa_expires():
    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    p.gw.receive_datagram(p.ue.datagrams_to_send(p.clock.now)[0][0], (UE_IP, 500), p.clock.now)
    assert p.gw.half_open == 1
    p.gw.handle_timer(p.clock.now + 31)
    assert p.gw.sas() == [] and p.gw.next_event() is None


# ------------------------------------------------------------------------------- protocol errors


def test_unsupported_critical_payload_in_request_is_answered():
    p, _, _ = _up()
    sa = p.ue.sa
    data = sa._encrypt(sa.ctx, c.ExchangeType.INFORMATIONAL, sa.ctx.my_mid, False, [c.RawPayload(200, b"x", True)])
    p.gw.receive_datagram(data, (UE_IP, 500), p.clock.now)
    out = p.gw.datagrams_to_send(p.clock.now)
    from s2c.ike.protect import decrypt_message
    resp = decrypt_message(c.parse_message(out[0][0]), sa.ctx.suite, sa.ctx.keys, False)
    assert resp == [c.NotifyPayload(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, b"\xc8")]


def test_invalid_syntax_answered_for_bad_inner_payload():
    p, _, _ = _up()
    sa = p.ue.sa
    data = sa._encrypt(sa.ctx, c.ExchangeType.INFORMATIONAL, sa.ctx.my_mid, False, [c.RawPayload(c.PayloadType.TSi, b"\x05")])
    p.gw.receive_datagram(data, (UE_IP, 500), p.clock.now)
    from s2c.ike.protect import decrypt_message
    resp = decrypt_message(c.parse_message(p.gw.datagrams_to_send(p.clock.now)[0][0]), sa.ctx.suite, sa.ctx.keys, False)
    assert resp == [c.NotifyPayload(NotifyType.INVALID_SYNTAX)]


def test_tampered_and_unknown_spi_messages_are_dropped():
    p, _, _ = _up()
    sa = p.ue.sa
    data = bytearray(sa._encrypt(sa.ctx, c.ExchangeType.INFORMATIONAL, sa.ctx.my_mid, False, []))
    data[-1] ^= 1
    p.gw.receive_datagram(bytes(data), (UE_IP, 500), p.clock.now)
    assert p.gw.datagrams_to_send(p.clock.now) == [] and p.gw.stats["protocol_error"] == 1
    data[8] ^= 1  # SPIr
    p.gw.receive_datagram(bytes(data), (UE_IP, 500), p.clock.now)
    assert p.gw.stats["unknown_spi"] == 1
    # RFC 7296 §2.21.4: unprotected INVALID_IKE_SPI with the same SPIs and message ID
    (out, addr), = p.gw.datagrams_to_send(p.clock.now)
    m = c.parse_message(out)
    assert addr == (UE_IP, 500) and m.is_response and not m.is_initiator
    assert (m.spi_i, m.spi_r, m.message_id) == (bytes(data[:8]), bytes(data[8:16]), sa.ctx.my_mid)
    assert m.payloads == [c.NotifyPayload(NotifyType.INVALID_IKE_SPI)]
    for _ in range(20):
        p.gw.receive_datagram(bytes(data), (UE_IP, 500), p.clock.now)
    assert len(p.gw.datagrams_to_send(p.clock.now)) == 9  # rate limit: 10 per second


def test_commands_in_wrong_state_raise_protocol_error():
    from s2c.ike import ProtocolError

    p = make_pair(ue_config(), gw_config())
    with pytest.raises(ProtocolError):
        p.ue.send_eap_response(b"\x02\x01\x00\x04", p.clock.now)
    with pytest.raises(ProtocolError):
        p.gw.send_eap_request(7, b"\x01\x01\x00\x04", p.clock.now)


def test_wireshark_line_and_tshark_decrypts(tmp_path):
    import shutil
    import subprocess

    if shutil.which("tshark") is None:
        pytest.skip("tshark missing")
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    p, _, _ = _up()
    line = wireshark_ikev2_decryption_table_line(p.ue)
    assert line == wireshark_ikev2_decryption_table_line(p.gw.sa(1))
    assert line.startswith(p.ue.sa.spi_i.hex() + "," + p.ue.sa.spi_r.hex() + ",")
    pkts = [IP(src=d.src[0], dst=d.dst[0]) / UDP(sport=d.src[1], dport=d.dst[1]) / Raw(d.data) for d in p.net.log]
    pcap = tmp_path / "ike.pcap"
    wrpcap(str(pcap), pkts)
    home = tmp_path / "home"
    (home / ".config" / "wireshark").mkdir(parents=True)
    (home / ".config" / "wireshark" / "ikev2_decryption_table").write_text(line + "\n")
    out = subprocess.run(["tshark", "-r", str(pcap), "-V"], capture_output=True, text=True, timeout=60,
                         env={"HOME": str(home), "PATH": "/usr/bin:/bin"}).stdout
    assert NAI in out and "pgw.example.org" in out  # IDi only exists inside SK_ei-encrypted payloads
    assert "Config Attribute (t=16,l=21): MIP6_HOME_PREFIX" in out  # CFG_REPLY, under SK_er
    bad = subprocess.run(["tshark", "-r", str(pcap), "-Y", "_ws.malformed || _ws.expert.severity >= warning"],
                         capture_output=True, text=True, timeout=60,
                         env={"HOME": str(home), "PATH": "/usr/bin:/bin"}).stdout
    assert bad == ""


# ------------------------------------------------------------------------------- fuzz

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_random_datagrams_never_raise(data, to_gw):
    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    core = p.gw if to_gw else p.ue
    core.receive_datagram(data, ("198.51.100.1", 500), p.clock.now)
    core.receive_datagram(b"\0\0\0\0" + data, ("198.51.100.1", 4500), p.clock.now)


def test_initial_contact_replaces_old_ike_sa_of_same_peer():
    p, _, old_gw = _up()
    # the UE "reboots": a fresh initiator with the same identity and address
    from s2c.ike import IkeInitiator
    from s2c.testing.fake import seeded_rng

    ue2 = IkeInitiator(ue_config(), (UE_IP, 500), (GW_IP, 500), seeded_rng(77))
    p.net.attach(ue2, UE_IP)
    ue2.initiate(p.clock.now)
    p.pump()
    assert p.types("gw") == ["ChildSaDeleted", "IkeSaDeleted"] + ESTABLISHED_GW
    assert p.gw_events[0].spi_in == old_gw.spi_in and p.gw_events[1].sa_id == 1
    assert p.gw_events[1].reason == "replaced (INITIAL_CONTACT)"
    assert [s.sa_id for s in p.gw.sas()] == [2]


def test_hard_lifetimes_delete():
    p, old_ue, _ = _up(ue_config(timers=Timers(child_lifetime=100, ike_lifetime=300)), gw_config())
    p.run_until(p.clock.now + 101)
    assert p.types("ue") == ["ChildSaDeleted"] == p.types("gw")
    p.run_until(1000.0 + 301)
    assert p.types("ue") == ["ChildSaDeleted", "IkeSaDeleted"] and p.types("gw")[-1] == "IkeSaDeleted"


def test_peer_alive_postpones_dpd():
    p, _, _ = _up(ue_config(timers=Timers(dpd_interval=30)), gw_config())
    t0 = p.clock.now
    p.ue.peer_alive(t0 + 20)
    assert p.ue.get_timer() == t0 + 50


_v4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
_v6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
_ts = st.one_of(
    st.builds(lambda a, b, pr, p1, p2: c.TrafficSelector(min(a, b), max(a, b), pr, min(p1, p2), max(p1, p2)),
              _v4, _v4, st.sampled_from([0, 6, 17, 135]), st.integers(0, 65535), st.integers(0, 65535)),
    st.builds(lambda a, b, pr: c.TrafficSelector(min(a, b), max(a, b), pr), _v6, _v6, st.sampled_from([0, 135])),
)
_transform = st.builds(c.Transform, st.integers(1, 5), st.sampled_from([0, 2, 5, 12, 14, 19, 20, 31, 1]),
                       st.sampled_from([None, 128, 256, 7]))
_proposal = st.builds(lambda n, pr, spi, ts: c.Proposal(n, pr, spi, tuple(ts)), st.integers(1, 3),
                      st.sampled_from([1, 3, 2]), st.sampled_from([b"", b"\x01\x02\x03\x04", b"12345678"]),
                      st.lists(_transform, min_size=0, max_size=6))
_payload = st.one_of(
    st.builds(c.NotifyPayload, st.sampled_from(list(NotifyType)), st.binary(max_size=24), st.sampled_from([0, 1, 3]),
              st.sampled_from([b"", b"\x00\x00\x01\x00", b"abcdefgh"])),
    st.builds(lambda pr, spis: c.DeletePayload(pr, tuple(spis) if pr == 3 else ()), st.sampled_from([1, 3]),
              st.lists(st.binary(min_size=4, max_size=4), max_size=3)),
    st.builds(lambda ps: c.SaPayload(tuple(ps)), st.lists(_proposal, min_size=1, max_size=2)),
    st.builds(c.NoncePayload, st.binary(min_size=0, max_size=40)),
    st.builds(c.KePayload, st.sampled_from([14, 19, 31, 5]), st.binary(max_size=70)),
    st.builds(lambda t: c.TsiPayload(tuple(t)), st.lists(_ts, max_size=2)),
    st.builds(lambda t: c.TsrPayload(tuple(t)), st.lists(_ts, max_size=2)),
    st.builds(lambda t, a: c.CpPayload(t, tuple(a)), st.integers(1, 4),
              st.lists(st.builds(c.CpAttribute, st.sampled_from([1, 2, 8, 16, 19]), st.binary(max_size=22)),
                       max_size=3)),
    st.builds(c.EapPayload, st.binary(min_size=4, max_size=12)),
    st.builds(c.IdiPayload, st.sampled_from([1, 2, 3]), st.binary(max_size=10)),
    st.builds(c.AuthPayload, st.sampled_from([1, 2, 14]), st.binary(max_size=20)),
    st.builds(c.RawPayload, st.integers(49, 200), st.binary(max_size=10)),
)


@settings(max_examples=250, deadline=None)
@given(st.sampled_from([c.ExchangeType.INFORMATIONAL, c.ExchangeType.CREATE_CHILD_SA, c.ExchangeType.IKE_AUTH]),
       st.lists(_payload, max_size=6), st.booleans())
def test_authenticated_garbage_requests_never_crash(exchange, payloads, to_gw):
    """Correctly encrypted but arbitrary requests: the handlers answer or drop, never raise."""
    p = make_pair(ue_config(), gw_config())
    _established(p)
    sender = p.ue.sa if to_gw else p.gw.sa(1)
    target = p.gw if to_gw else p.ue
    data = sender._encrypt(sender.ctx, exchange, sender.ctx.my_mid, False, payloads)
    target.receive_datagram(data, (UE_IP, 500) if to_gw else (GW_IP, 500), p.clock.now)
    p.pump()
    p.run_until(p.clock.now + 100)


def test_closed_responder_answers_retransmitted_delete():
    p, _, _ = _up()
    p.ue.delete(p.clock.now)
    req = p.ue.datagrams_to_send(p.clock.now)[0][0]
    p.gw.receive_datagram(req, (UE_IP, 500), p.clock.now)
    first = p.gw.datagrams_to_send(p.clock.now)
    assert p.gw.sas() == []
    p.gw.receive_datagram(req, (UE_IP, 500), p.clock.now + 1)  # our answer was lost: the UE retransmits
    assert p.gw.datagrams_to_send(p.clock.now) == first
    p.gw.handle_timer(p.clock.now + 100)
    p.gw.receive_datagram(req, (UE_IP, 500), p.clock.now + 100)
    (late, _), = p.gw.datagrams_to_send(p.clock.now)
    assert p.gw.stats["unknown_spi"] == 1 and late != first[0][0]
    assert c.parse_message(late).payloads == [c.NotifyPayload(NotifyType.INVALID_IKE_SPI)]


def test_ike_over_ipv6_and_invalid_ke_across_proposals():
    """IKE over IPv6 (a DSMIPv6 CoA may be IPv6); the responder only takes the initiator's 2nd proposal,
    whose group differs from the KE sent: INVALID_KE_PAYLOAD, then success."""
    from s2c.ike import IkeInitiator, IkeResponder
    from s2c.testing.fake import FakeClock, FakeNetwork, seeded_rng

    ue_ip, gw_ip = "2001:db8:a::1", "2001:db8:b::1"
    clock = FakeClock(5.0)
    net = FakeNetwork(clock)
    ue = IkeInitiator(ue_config(ike_proposals=(SUITES[0], SUITES[2])), (ue_ip, 500), (gw_ip, 500), seeded_rng(3))
    gw = IkeResponder(gw_config(ike_proposals=(SUITES[2],)), (gw_ip, 500), seeded_rng(4),
                      allocator=lambda req: CpAssignment(home_address=HOA, home_prefix=PREFIX, ha_address=HA))
    net.attach(ue, ue_ip)
    net.attach(gw, gw_ip)
    ue.initiate(clock.now)
    net.flush()
    evs = []
    while (e := ue.next_event()) is not None:
        evs.append(e)
    assert [type(e).__name__ for e in evs] == ESTABLISHED_UE
    assert evs[0].suite.encr == EncrId.ENCR_AES_GCM_16 and evs[0].suite.dh == DhGroup.CURVE25519
    assert evs[0].local_addr == (ue_ip, 500) and not evs[0].nat_detected
    assert gw.stats["invalid_ke"] == 1


def test_responder_follows_initiator_floating_to_4500_without_nat():
    """A MOBIKE initiator may move to port 4500 after IKE_SA_INIT without any NAT (RFC 4555 §3.3, as
    strongSwan/Android do): the responder answers with the non-ESP marker on 4500, ESP is not
    UDP-encapsulated (nat_t False), and keeps using 4500 for its own requests."""
    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    p.gw.receive_datagram(p.ue.datagrams_to_send(p.clock.now)[0][0], (UE_IP, 500), p.clock.now)
    p.ue.receive_datagram(p.gw.datagrams_to_send(p.clock.now)[0][0], (GW_IP, 500), p.clock.now)
    (auth, _), = p.ue.datagrams_to_send(p.clock.now)
    p.gw.receive_datagram(b"\0\0\0\0" + auth, (UE_IP, 4500), p.clock.now)
    (resp, addr), = p.gw.datagrams_to_send(p.clock.now)
    assert addr == (UE_IP, 4500) and resp[:4] == b"\0\0\0\0"
    p.ue.receive_datagram(resp, (GW_IP, 4500), p.clock.now)
    p.pump()
    assert p.types("gw") == ESTABLISHED_GW and p.types("ue") == ESTABLISHED_UE
    assert not p.gw_events[1].nat_t and not p.ue_events[2].nat_t
    assert p.gw_events[1].remote_addr == (UE_IP, 4500)
    p.gw.liveness_check(1, p.clock.now)
    (dpd, addr), = p.gw.datagrams_to_send(p.clock.now)
    assert addr == (UE_IP, 4500) and dpd[:4] == b"\0\0\0\0"
