"""Reauthentication and peer restarts with strongSwan 5.9.8 (RFC 7296 §2.8.3 reauth, §2.4 INITIAL_CONTACT).

charon as the UE reauthenticates (break-before-make, and make-before-break), or is killed and comes
back (INITIAL_CONTACT replaces the stale IKE SA at our responder); the new CHILD SA carries traffic
through our DataPlane each time. The other way, charon (the responder) loses its state: our UE's
liveness check is retransmitted until PeerDead (RFC 7296 §2.4), then it starts over and works again.
"""

from __future__ import annotations

import os
import signal

import pytest

from test_ike_lab import (
    GW_INNER4, NET4, PROPOSALS, SWAN_INNER4, VIP4, SwanLab, assert_capture_clean, child_spis, our_gw_spec, our_ue_spec, swan_gw_conf,
    swan_ue_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]

TUNNEL_UE = {"t": {"mode": "tunnel", "local_ts": "dynamic", "remote_ts": NET4}}


def _ping_ok(lab) -> None:
    res = lab.ping("b", VIP4, GW_INNER4, count=2)
    assert " 0% packet loss" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("mbb", [False, True], ids=["break-before-make", "make-before-break"])
def test_swan_ue_reauthenticates(tmp_path, mbb):
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    extra = f"  make_before_break = {'yes' if mbb else 'no'}\n"
    with SwanLab(tmp_path, "ecdsa", extra_conf=extra) as lab:
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {k: dict(v) for k, v in TUNNEL_UE.items()}))
        gw = lab.driver(our_gw_spec(lab, ike_p, esp_p))
        lab.charon.initiate(child="t", ike="ue")
        first = gw.wait_event("IkeSaEstablished")
        gw.wait_event("ChildSaEstablished")
        _ping_ok(lab)
        lab.charon._swanctl("--rekey", "--ike", "ue", "--reauth")
        second = gw.wait_event("IkeSaEstablished", count=2)
        child = gw.wait_event("ChildSaEstablished", count=2)
        gw.wait_event("IkeSaDeleted")
        gw.settle(0.5)
        assert second["sa_id"] != first["sa_id"] and second["spi_i"] != first["spi_i"]
        deleted = [e for e in gw.events if e["event"] == "IkeSaDeleted"]
        assert [e["sa_id"] for e in deleted] == [first["sa_id"]]
        sas = lab.swan_sas()
        assert list(sas) == ["ue"] and sas["ue"]["initiator-spi"] == second["spi_i"]
        assert child_spis(sas["ue"])["t"] == (child["spi_out"], child["spi_in"])
        _ping_ok(lab)
        keys = gw.cmd("keys")
        bye = gw.close()
        assert bye.get("errors") == [], bye
        assert_capture_clean(lab, keys, min_esp=8)


def test_swan_ue_restarts_initial_contact(tmp_path):
    ike_p, esp_p = PROPOSALS["cbc-modp2048"]
    with SwanLab(tmp_path, "psk") as lab:
        conf = swan_ue_conf(lab, ike_p, esp_p, {k: dict(v) for k, v in TUNNEL_UE.items()})
        lab.charon.load(conf)
        gw = lab.driver(our_gw_spec(lab, ike_p, esp_p))
        lab.charon.initiate(child="t", ike="ue")
        first = gw.wait_event("IkeSaEstablished")
        gw.wait_event("ChildSaEstablished")
        _ping_ok(lab)
        os.killpg(lab.charon.proc.pid, signal.SIGKILL)       # no DELETE: our responder keeps a stale SA
        lab.charon.proc.wait(5)
        lab.charon.proc = None
        lab.charon.start()
        lab.charon.load(conf)
        lab.charon.initiate(child="t", ike="ue")
        second = gw.wait_event("IkeSaEstablished", count=2)
        child = gw.wait_event("ChildSaEstablished", count=2)
        gone = gw.wait_event("IkeSaDeleted")
        assert gone["sa_id"] == first["sa_id"] and "INITIAL_CONTACT" in gone["reason"]
        assert second["sa_id"] != first["sa_id"]
        assert child_spis(lab.swan_sas()["ue"])["t"] == (child["spi_out"], child["spi_in"])
        _ping_ok(lab)
        st = gw.cmd("stats")["dataplane"]["sas"]
        assert set(st) == {str(child["spi_in"]), str(child["spi_out"])}   # the stale CHILD SAs are gone


def test_our_ue_detects_dead_swan_and_reconnects(tmp_path):
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with SwanLab(tmp_path, "psk") as lab:
        conf = swan_gw_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": NET4, "remote_ts": "dynamic"}})
        lab.charon.load(conf)
        ue = lab.driver(our_ue_spec(lab, ike_p, esp_p, retransmit_timeout=0.2))
        ue.wait_event("ChildSaEstablished")
        cp = ue.wait_event("CpAssigned")
        os.killpg(lab.charon.proc.pid, signal.SIGKILL)
        lab.charon.proc.wait(5)
        lab.charon.proc = None
        lab.charon.start()
        lab.charon.load(conf)
        ue.cmd("liveness_check")
        dead = ue.wait_event("PeerDead", timeout=20)
        assert dead["exchange"] == 37          # INFORMATIONAL
        assert ue.names()[-2:] == ["ChildSaDeleted", "PeerDead"] or "ChildSaDeleted" in ue.names()
        ue.cmd("initiate")
        ike2 = ue.wait_event("IkeSaEstablished", count=2)
        child2 = ue.wait_event("ChildSaEstablished", count=2)
        cp2 = ue.wait_event("CpAssigned", count=2)
        sa = lab.swan_sas()["gw"]
        assert (sa["initiator-spi"], sa["responder-spi"]) == (ike2["spi_i"], ike2["spi_r"])
        assert child_spis(sa)["t"] == (child2["spi_out"], child2["spi_in"])
        res = lab.ping("a", cp2["ipv4"], SWAN_INNER4)
        assert " 0% packet loss" in res.stdout, (cp, cp2, res.stdout + res.stderr)
