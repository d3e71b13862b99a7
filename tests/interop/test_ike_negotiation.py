"""Negotiation corner cases with strongSwan 5.9.8, both roles: INVALID_KE_PAYLOAD retries (RFC 7296
§1.2), NO_PROPOSAL_CHOSEN, AUTHENTICATION_FAILED (§2.21.2) and TS_UNACCEPTABLE (§2.9)."""

from __future__ import annotations

import pytest

from test_ike_lab import (
    GW_INNER4, NET4, PROPOSALS, PSK, VIP4, SwanLab, child_spis, our_gw_spec, our_ue_spec, swan_gw_conf, swan_ue_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]

TUNNEL_UE = {"t": {"mode": "tunnel", "local_ts": "dynamic", "remote_ts": NET4}}
TUNNEL_GW = {"t": {"mode": "tunnel", "local_ts": NET4, "remote_ts": "dynamic"}}


def _fresh(d: dict) -> dict:
    return {k: dict(v) for k, v in d.items()}


def test_our_responder_asks_swan_for_another_group(tmp_path):
    with SwanLab(tmp_path, "psk") as lab:
        lab.charon.load(swan_ue_conf(lab, "aes128gcm16-prfsha256-x25519-ecp256", "aes128gcm16", _fresh(TUNNEL_UE)))
        gw = lab.driver(our_gw_spec(lab, "aes128gcm16-prfsha256-ecp256", "aes128gcm16"))
        lab.charon.initiate(child="t", ike="ue")
        ike = gw.wait_event("IkeSaEstablished")
        assert ike["suite"]["dh"] == 19
        assert gw.cmd("stats")["stats"].get("invalid_ke") == 1
        assert "peer didn't accept DH group CURVE_25519, it requested ECP_256" in lab.charon_log()
        assert " 0% packet loss" in lab.ping("b", VIP4, GW_INNER4).stdout


def test_swan_responder_asks_us_for_another_group(tmp_path):
    with SwanLab(tmp_path, "psk") as lab:
        lab.charon.load(swan_gw_conf(lab, "aes128gcm16-prfsha256-ecp256", "aes128gcm16", _fresh(TUNNEL_GW)))
        ue = lab.driver(our_ue_spec(lab, "aes128gcm16-prfsha256-x25519-ecp256", "aes128gcm16", dataplane=False))
        ike = ue.wait_event("IkeSaEstablished")
        assert ike["suite"]["dh"] == 19
        assert "INVALID_KE_PAYLOAD" in lab.charon_log() or "N(INVAL_KE)" in lab.charon_log()
        assert lab.swan_sas()["gw"]["dh-group"] == "ECP_256"


def test_no_proposal_chosen_both_ways(tmp_path):
    with SwanLab(tmp_path, "psk") as lab:
        lab.charon.load(swan_ue_conf(lab, PROPOSALS["gcm-x25519"][0], "aes128gcm16", _fresh(TUNNEL_UE)))
        gw = lab.driver(our_gw_spec(lab, PROPOSALS["cbc-modp2048"][0], "aes256-sha256", dataplane=False))
        with pytest.raises(Exception):
            lab.charon.initiate(child="t", ike="ue", timeout=5)
        assert "received NO_PROPOSAL_CHOSEN notify error" in lab.charon_log()
        assert gw.cmd("stats")["stats"].get("no_proposal_chosen", 0) >= 1
        assert gw.names() == []
    with SwanLab(tmp_path / "rev", "psk") as lab:
        lab.charon.load(swan_gw_conf(lab, PROPOSALS["cbc-modp2048"][0], "aes256-sha256", _fresh(TUNNEL_GW)))
        ue = lab.driver(our_ue_spec(lab, PROPOSALS["gcm-x25519"][0], "aes128gcm16", dataplane=False))
        failed = ue.wait_event("IkeSaFailed")
        assert failed["notify"] == 14, failed


def test_authentication_failed_both_ways(tmp_path):
    with SwanLab(tmp_path, "psk") as lab:
        conf = swan_ue_conf(lab, PROPOSALS["gcm-x25519"][0], "aes128gcm16", _fresh(TUNNEL_UE)).replace(PSK, "wrong-" + PSK)
        lab.charon.load(conf)
        gw = lab.driver(our_gw_spec(lab, *PROPOSALS["gcm-x25519"], dataplane=False))
        with pytest.raises(Exception):
            lab.charon.initiate(child="t", ike="ue", timeout=5)
        failed = gw.wait_event("AuthenticationFailed")
        assert failed["by_peer"] is False
        assert "received AUTHENTICATION_FAILED notify error" in lab.charon_log()
    with SwanLab(tmp_path / "rev", "psk") as lab:
        lab.charon.load(swan_gw_conf(lab, *PROPOSALS["gcm-x25519"], _fresh(TUNNEL_GW)))
        spec = our_ue_spec(lab, *PROPOSALS["gcm-x25519"], dataplane=False)
        spec["auth"] = {"psk": "wrong-" + PSK}
        ue = lab.driver(spec)
        failed = ue.wait_event("AuthenticationFailed")
        assert failed["by_peer"] is True
        assert lab.swan_sas() == {}


def test_ts_unacceptable_keeps_the_ike_sa(tmp_path):
    with SwanLab(tmp_path, "psk") as lab:
        children = _fresh(TUNNEL_UE)
        children["x"] = {"mode": "tunnel", "local_ts": "dynamic", "remote_ts": "192.0.2.0/24"}
        lab.charon.load(swan_ue_conf(lab, *PROPOSALS["gcm-x25519"], children))
        gw = lab.driver(our_gw_spec(lab, *PROPOSALS["gcm-x25519"]))
        with pytest.raises(Exception):
            lab.charon.initiate(child="x", ike="ue", timeout=5)
        assert "received TS_UNACCEPTABLE notify" in lab.charon_log()
        assert gw.wait_event("ChildSaFailed")["notify"] == 38
        lab.charon.initiate(child="t", ike="ue")
        child = gw.wait_event("ChildSaEstablished")
        assert child_spis(lab.swan_sas()["ue"])["t"] == (child["spi_out"], child["spi_in"])
        assert " 0% packet loss" in lab.ping("b", VIP4, GW_INNER4).stdout


def test_esn_is_negotiated_but_libipsec_refuses_it(tmp_path):
    """ESN (RFC 4303 §2.2.1) in the ESP proposal: charon selects EXT_SEQ from ours, then kernel-libipsec
    cannot install it; IKE-level agreement only (docs/interop.md)."""
    ike_p = PROPOSALS["gcm-x25519"][0]
    with SwanLab(tmp_path, "psk") as lab:
        lab.charon.load(swan_ue_conf(lab, ike_p, "aes128gcm16-esn", _fresh(TUNNEL_UE)))
        gw = lab.driver(our_gw_spec(lab, ike_p, "aes128gcm16-esn", dataplane=False))
        with pytest.raises(Exception):
            lab.charon.initiate(child="t", ike="ue", timeout=5)
        child = gw.wait_event("ChildSaEstablished")
        assert child["suite"]["esn"] == 1
        gw.wait_event("ChildSaDeleted")
        log = lab.charon_log()
        assert "selected proposal: ESP:AES_GCM_16_128/EXT_SEQ" in log and "ESN not supported" in log
