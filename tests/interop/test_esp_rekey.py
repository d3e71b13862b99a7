"""Rekeying with strongSwan 5.9.8 while ESP flows (RFC 7296 §2.8, §1.3.2, §2.18), both roles.

CHILD SA and IKE SA rekeys initiated by us and by charon; after each step charon's SPIs equal the
ones our events report and a ping goes through our DataPlane; then a liveness check and a delete.
The capture must decrypt end to end: IKE SK payloads under every IKE SA generation, ESP under every
CHILD SA generation (tshark with our exported keys).
"""

from __future__ import annotations

import pytest

from test_ike_lab import (
    GW_INNER4, NET4, PFS, PROPOSALS, SWAN_INNER4, VIP4, SwanLab, assert_capture_clean, child_spis, our_gw_spec,
    our_ue_spec, swan_gw_conf, swan_ue_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]


def _current(drv) -> dict:
    cur = None
    for e in drv.events:
        if e["event"] == "ChildSaEstablished":
            cur = e
        elif e["event"] == "ChildSaRekeyed":
            cur = e["new"]
    return cur


def _live(drv) -> dict:
    """CHILD SAs our side still has, by inbound SPI (established/rekeyed minus deleted)."""
    live = {}
    for e in drv.events:
        if e["event"] == "ChildSaEstablished":
            live[e["spi_in"]] = e
        elif e["event"] == "ChildSaRekeyed":
            live[e["new"]["spi_in"]] = e["new"]
        elif e["event"] == "ChildSaDeleted":
            live.pop(e["spi_in"], None)
    return live


def _check(lab, drv, ike_name, ping) -> None:
    drv.settle(0.3)
    sa = lab.swan_sas()[ike_name]
    cur = _current(drv)
    assert sa["state"] == "ESTABLISHED"
    assert child_spis(sa)["t"] == (cur["spi_out"], cur["spi_in"]), (child_spis(sa), cur)
    ike_spis = [(e["spi_i"], e["spi_r"]) for e in drv.events if e["event"] in ("IkeSaEstablished", "IkeSaRekeyed")]
    assert (sa["initiator-spi"], sa["responder-spi"]) == ike_spis[-1]
    res = ping()
    assert " 0% packet loss" in res.stdout, res.stdout + res.stderr


def _rekey_round(lab, drv, ike_name, ping, pfs: bool) -> None:
    _check(lab, drv, ike_name, ping)
    drv.cmd("rekey_child")
    drv.wait_event("ChildSaDeleted", count=1)
    assert (_current(drv)["suite"]["dh"] != 0) == pfs    # PFS: the rekey ran a DH exchange
    _check(lab, drv, ike_name, ping)
    lab.charon._swanctl("--rekey", "--child", "t")
    drv.wait_event("ChildSaDeleted", count=2)
    assert (_current(drv)["suite"]["dh"] != 0) == pfs
    _check(lab, drv, ike_name, ping)
    drv.cmd("rekey_ike")
    drv.wait_event("IkeSaRekeyed", count=1)
    _check(lab, drv, ike_name, ping)
    lab.charon._swanctl("--rekey", "--ike", ike_name)
    drv.wait_event("IkeSaRekeyed", count=2)
    _check(lab, drv, ike_name, ping)
    drv.cmd("liveness_check")
    drv.settle(0.5)
    _check(lab, drv, ike_name, ping)
    assert drv.names().count("ChildSaRekeyed") == 2


@pytest.mark.parametrize("prop", ["gcm-x25519", "cbc-modp2048", *PFS])
def test_rekeys_our_ue(tmp_path, prop):
    ike_p, esp_p = {**PROPOSALS, **PFS}[prop]
    with SwanLab(tmp_path, "psk") as lab:
        lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": NET4,
                                                              "remote_ts": "dynamic"}}))
        ue = lab.driver(our_ue_spec(lab, ike_p, esp_p))
        cp = ue.wait_event("CpAssigned")
        ue.wait_event("ChildSaEstablished")
        _rekey_round(lab, ue, "gw", lambda: lab.ping("a", cp["ipv4"], SWAN_INNER4, count=2), prop in PFS)
        keys = ue.cmd("keys")
        ue.cmd("delete")
        ue.wait_event("IkeSaDeleted")
        assert lab.swan_sas() == {}
        bye = ue.close()
        assert bye.get("errors") == [], bye
        rep = assert_capture_clean(lab, keys, min_esp=24)
    assert len(keys["ike"]) == 3 and len(keys["esp"]) == 6, keys


@pytest.mark.parametrize("prop", ["gcm-ecp256", "cbc-modp2048", *PFS])
def test_rekeys_swan_ue(tmp_path, prop):
    ike_p, esp_p = {**PROPOSALS, **PFS}[prop]
    with SwanLab(tmp_path, "ecdsa") as lab:
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": "dynamic",
                                                              "remote_ts": NET4}}))
        gw = lab.driver(our_gw_spec(lab, ike_p, esp_p))
        lab.charon.initiate(child="t", ike="ue")
        gw.wait_event("ChildSaEstablished")
        _rekey_round(lab, gw, "ue", lambda: lab.ping("b", VIP4, GW_INNER4, count=2), prop in PFS)
        keys = gw.cmd("keys")
        lab.charon.terminate("ue")
        gw.wait_event("IkeSaDeleted")
        bye = gw.close()
        assert bye.get("errors") == [], bye
        assert_capture_clean(lab, keys, min_esp=24)
    assert len(keys["ike"]) == 3 and len(keys["esp"]) == 6, keys


def _block_4500(lab, on: bool) -> None:
    if on:
        lab.pair.run("a", ["nft", "add table inet s2ctio; add chain inet s2ctio in { type filter hook input priority 0; }; "
                                  "add chain inet s2ctio out { type filter hook output priority 0; }; "
                                  "add rule inet s2ctio in udp dport 4500 drop; add rule inet s2ctio out udp dport 4500 drop"])
    else:
        lab.pair.run("a", ["nft", "delete table inet s2ctio"])


@pytest.mark.parametrize("role", ["our-ue", "our-gw"])
@pytest.mark.parametrize("what", ["child", "ike"])
def test_simultaneous_rekey_with_swan(tmp_path, what, role):
    """Both sides rekey at once (RFC 7296 §2.8.1/§2.8.2): requests are held back by a firewall until
    both are pending, then cross. The redundant SA (lowest nonce) is deleted by its initiator; both
    sides end with one CHILD SA with the same SPIs, or one IKE SA, and traffic flows."""
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with SwanLab(tmp_path, "psk") as lab:
        if role == "our-ue":
            lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": NET4,
                                                                  "remote_ts": "dynamic"}}))
            ue = lab.driver(our_ue_spec(lab, ike_p, esp_p, retransmit_timeout=1.0))
            cp = ue.wait_event("CpAssigned")
            ue.wait_event("ChildSaEstablished")
            ping = lambda: lab.ping("a", cp["ipv4"], SWAN_INNER4, count=2)  # noqa: E731
            ike_name = "gw"
        else:
            lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": "dynamic",
                                                                  "remote_ts": NET4}}))
            ue = lab.driver(our_gw_spec(lab, ike_p, esp_p, retransmit_timeout=1.0))
            lab.charon.initiate(child="t", ike="ue")
            ue.wait_event("ChildSaEstablished")
            ping = lambda: lab.ping("b", VIP4, GW_INNER4, count=2)  # noqa: E731
            ike_name = "ue"
        _check(lab, ue, ike_name, ping)
        _block_4500(lab, True)
        try:
            ue.cmd("rekey_child" if what == "child" else "rekey_ike")
            lab.charon._swanctl("--rekey", "--child" if what == "child" else "--ike",
                                "t" if what == "child" else ike_name)
            ue.settle(0.3)
        finally:
            _block_4500(lab, False)
        ue.settle(6.0)   # retransmissions cross, collisions resolve, redundant SAs get deleted
        sa = lab.swan_sas()[ike_name]
        assert sa["state"] == "ESTABLISHED"
        if what == "child":
            assert len(child_spis(sa)) == 1 and len([v for v in sa["child-sas"].values() if isinstance(v, dict)]) == 1, sa
        live = _live(ue)
        assert len(live) == 1, (ue.names(), live)
        (cur,) = live.values()
        assert child_spis(sa)["t"] == (cur["spi_out"], cur["spi_in"])
        ike_spis = [(e["spi_i"], e["spi_r"]) for e in ue.events if e["event"] in ("IkeSaEstablished", "IkeSaRekeyed")]
        assert (sa["initiator-spi"], sa["responder-spi"]) == ike_spis[-1]   # our current IKE SA is charon's
        res = ping()
        assert " 0% packet loss" in res.stdout, res.stdout + res.stderr
        keys = ue.cmd("keys")
        bye = ue.close()
        assert bye.get("errors") == [], bye
        assert_capture_clean(lab, keys, min_esp=8)


def _block_out_4500(lab, on: bool) -> None:
    if on:
        lab.pair.run("a", ["nft", "add table inet s2ctio; add chain inet s2ctio out { type filter hook output "
                                  "priority 0; }; add rule inet s2ctio out udp dport 4500 drop"])
    else:
        lab.pair.run("a", ["nft", "delete table inet s2ctio"])


@pytest.mark.parametrize("what", ["ike", "child"])
@pytest.mark.parametrize("role", ["our-ue", "our-gw"])
def test_rekey_collision_peer_request_first(tmp_path, role, what):
    """Simultaneous IKE SA rekey where charon's request reaches us BEFORE the answer to ours (our own
    outbound 4500 is held back, so our request is lost and resent later; RFC 7296 §2.8.2/§2.25.2).
    Both sides must end on the same, working IKE SA."""
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with SwanLab(tmp_path, "psk") as lab:
        if role == "our-ue":
            lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": NET4,
                                                                  "remote_ts": "dynamic"}}))
            drv = lab.driver(our_ue_spec(lab, ike_p, esp_p, retransmit_timeout=1.0))
            cp = drv.wait_event("CpAssigned")
            drv.wait_event("ChildSaEstablished")
            ping = lambda: lab.ping("a", cp["ipv4"], SWAN_INNER4, count=2)  # noqa: E731
            ike_name = "gw"
        else:
            lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": "dynamic",
                                                                  "remote_ts": NET4}}))
            drv = lab.driver(our_gw_spec(lab, ike_p, esp_p, retransmit_timeout=1.0))
            lab.charon.initiate(child="t", ike="ue")
            drv.wait_event("ChildSaEstablished")
            ping = lambda: lab.ping("b", VIP4, GW_INNER4, count=2)  # noqa: E731
            ike_name = "ue"
        _block_out_4500(lab, True)
        try:
            drv.cmd(f"rekey_{what}")
            lab.charon._swanctl("--rekey", *(["--ike", ike_name] if what == "ike" else ["--child", "t"]))
            drv.settle(0.5)                      # charon's request arrived and was handled by us
        finally:
            _block_out_4500(lab, False)
        drv.settle(6.0)
        sa = lab.swan_sas()[ike_name]
        assert sa["state"] == "ESTABLISHED"
        ike_spis = [(e["spi_i"], e["spi_r"]) for e in drv.events if e["event"] in ("IkeSaEstablished", "IkeSaRekeyed")]
        assert (sa["initiator-spi"], sa["responder-spi"]) == ike_spis[-1], (ike_spis, sa)
        live = _live(drv)
        assert len([v for v in sa["child-sas"].values() if isinstance(v, dict)]) == 1, sa
        assert len(live) == 1, (drv.names(), live)
        (cur,) = live.values()
        assert child_spis(sa)["t"] == (cur["spi_out"], cur["spi_in"]), (sa, cur)
        drv.cmd("liveness_check")
        drv.settle(2.0)
        assert "PeerDead" not in drv.names()
        st = drv.cmd("stats")
        assert not [e for e in st["errors"] if "integrity" in e], st["errors"]
        res = ping()
        assert " 0% packet loss" in res.stdout, res.stdout + res.stderr
