"""(c) MOBIKE (RFC 4555) with strongSwan 5.9.8: the IKE SA and the ESP traffic follow an address move.

1. Our IkeInitiator (UE) moves from A4 to A4_ALT and sends UPDATE_SA_ADDRESSES itself.
2. charon (UE, initiator) moves from B4 to B4_ALT; its kernel-netlink plugin notices the address
   change and charon sends UPDATE_SA_ADDRESSES to our IkeResponder, which moves the IKE SA and our
   DataPlane's outbound SAs.
Pings run through the tunnel CHILD SA before and after the move; the capture must show ESP from
the new address and decrypt cleanly.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from test_ike_lab import (
    A4, A4_ALT, B4, B4_ALT, GW_INNER4, NET4, PROPOSALS, SWAN_INNER4, VIP4, SwanLab, assert_capture_clean, child_spis,
    our_gw_spec, our_ue_spec, swan_gw_conf, swan_ue_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]


def _current_child(drv) -> dict:
    """The newest CHILD SA our side knows: charon rekeys the CHILD SA after a NAT-T peer moved
    (kernel-libipsec cannot update an SA's addresses), which our core must follow."""
    cur = None
    for e in drv.events:
        if e["event"] == "ChildSaEstablished":
            cur = e
        elif e["event"] == "ChildSaRekeyed":
            cur = e["new"]
    return cur


def _wait_swan_child(lab, name, ike_name, drv, timeout=5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        drv.settle(0.1)
        sa = lab.swan_sas()[ike_name]
        cur = _current_child(drv)
        spis = child_spis(sa).get(name)
        if spis == (cur["spi_out"], cur["spi_in"]) or time.monotonic() > deadline:
            return sa


def _esp_sources(pcap) -> set[str]:
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "esp", "-T", "fields", "-e", "ip.src"],
                         capture_output=True, text=True, timeout=60).stdout
    return set(out.split())


@pytest.mark.parametrize("auth", ["psk", "rsa"])
def test_our_ue_moves(tmp_path, auth):
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with SwanLab(tmp_path, auth) as lab:
        lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": NET4,
                                                              "remote_ts": "dynamic"}}))
        ue = lab.driver(our_ue_spec(lab, ike_p, esp_p))
        ike = ue.wait_event("IkeSaEstablished")
        cp = ue.wait_event("CpAssigned")
        child = ue.wait_event("ChildSaEstablished")
        assert ike["mobike"] is True
        assert " 0% packet loss" in lab.ping("a", cp["ipv4"], SWAN_INNER4).stdout

        # move: new address on veth-a, old one gone, then UPDATE_SA_ADDRESSES (RFC 4555 §3.5)
        lab.pair.run("a", ["ip", "addr", "add", f"{A4_ALT}/24", "dev", "veth-a"])
        lab.pair.run("a", ["ip", "addr", "del", f"{A4}/24", "dev", "veth-a"])
        ue.cmd("update_addresses", local=A4_ALT)
        upd = ue.wait_event("IkeSaAddressesUpdated")
        assert upd["local_addr"][0] == A4_ALT and upd["remote_addr"] == [B4, 4500]
        sa = _wait_swan_child(lab, "t", "gw", ue)
        assert sa["remote-host"] == A4_ALT and sa["state"] == "ESTABLISHED"
        cur = _current_child(ue)
        assert child_spis(sa)["t"] == (cur["spi_out"], cur["spi_in"])
        if cur is not child:   # charon rekeyed the CHILD SA after the move and our core followed
            # (charon sends its CREATE_CHILD_SA before answering the UPDATE_SA_ADDRESSES request)
            assert sorted(ue.names()[-3:]) == ["ChildSaDeleted", "ChildSaRekeyed", "IkeSaAddressesUpdated"], ue.names()
            assert cur["local_addr"][0] == A4_ALT
        res = lab.ping("a", cp["ipv4"], SWAN_INNER4)
        assert " 0% packet loss" in res.stdout, res.stdout + res.stderr
        keys = ue.cmd("keys")
        bye = ue.close()
        assert bye.get("errors") == [], bye
        assert_capture_clean(lab, keys, min_esp=12)
    assert {A4, A4_ALT} <= _esp_sources(lab.pcap)


@pytest.mark.parametrize("auth", ["psk", "ecdsa"])
def test_swan_ue_moves(tmp_path, auth):
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with SwanLab(tmp_path, auth) as lab:
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": "dynamic",
                                                              "remote_ts": NET4}},
                                     extra={"local_addrs": "198.51.100.0/24"}))
        gw = lab.driver(our_gw_spec(lab, ike_p, esp_p))
        lab.charon.initiate(child="t", ike="ue")
        ike = gw.wait_event("IkeSaEstablished")
        child = gw.wait_event("ChildSaEstablished")
        assert ike["mobike"] is True
        assert " 0% packet loss" in lab.ping("b", VIP4, GW_INNER4).stdout

        lab.pair.run("b", ["ip", "addr", "add", f"{B4_ALT}/24", "dev", "veth-b"])
        lab.pair.run("b", ["ip", "addr", "del", f"{B4}/24", "dev", "veth-b"])
        upd = gw.wait_event("IkeSaAddressesUpdated", timeout=20)     # charon noticed and sent UPDATE_SA_ADDRESSES
        assert upd["remote_addr"][0] == B4_ALT
        sa = _wait_swan_child(lab, "t", "ue", gw)
        assert sa["local-host"] == B4_ALT and sa["state"] == "ESTABLISHED"
        cur = _current_child(gw)
        assert child_spis(sa)["t"] == (cur["spi_out"], cur["spi_in"])
        res = lab.ping("b", VIP4, GW_INNER4)
        assert " 0% packet loss" in res.stdout, res.stdout + res.stderr
        st = gw.cmd("stats")
        assert st["dataplane"]["sas"][str(cur["spi_out"])]["remote"] == B4_ALT
        keys = gw.cmd("keys")
        bye = gw.close()
        assert bye.get("errors") == [], bye
        assert_capture_clean(lab, keys, min_esp=12)
    assert {B4, B4_ALT} <= _esp_sources(lab.pcap)
    assert A4 in _esp_sources(lab.pcap)
