"""(b) OUR IkeInitiator (UE role) against strongSwan 5.9.8 as the responder (PDN GW role).

charon hands out virtual IPs from ``pools`` (CP); the tunnel-mode CHILD SA (our assigned IPv4 <->
NET4) carries pings between our userspace ESP DataPlane and charon's kernel-libipsec (ESP in UDP
4500). Then the RFC 4877 MH transport-mode CHILD SA is requested with CREATE_CHILD_SA (charon
``mode = transport_proxy``; kernel-libipsec cannot install it, see docs/interop.md).
"""

from __future__ import annotations

import ipaddress

import pytest

from test_ike_lab import (
    AUTHS, GW_ID, HA, NET4, POOL4, POOL6, PROPOSALS, SWAN_INNER4, UE_ID, SwanLab, assert_capture_clean, child_spis,
    our_ue_spec, swan_gw_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]

SWAN_CHILDREN = {
    "t": {"mode": "tunnel", "local_ts": NET4, "remote_ts": "dynamic"},
    "mh": {"mode": "transport_proxy", "local_ts": f"{HA}/128[135]", "remote_ts": "dynamic[135]"},
}


def _established(lab: SwanLab, ue) -> tuple[dict, dict, dict]:
    ike = ue.wait_event("IkeSaEstablished")
    cp = ue.wait_event("CpAssigned")
    child = ue.wait_event("ChildSaEstablished")
    return ike, cp, child


@pytest.mark.parametrize("prop", list(PROPOSALS))
@pytest.mark.parametrize("auth", AUTHS)
def test_our_ue_against_swan_gw(tmp_path, auth, prop):
    ike_p, esp_p = PROPOSALS[prop]
    with SwanLab(tmp_path, auth) as lab:
        lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {k: dict(v) for k, v in SWAN_CHILDREN.items()}))
        ue = lab.driver(our_ue_spec(lab, ike_p, esp_p))
        ike, cp, child = _established(lab, ue)
        assert ike["remote_id"] == GW_ID and ike["local_id"] == UE_ID
        assert ike["nat_detected"] is True and ike["local_addr"][1] == 4500 and ike["remote_addr"][1] == 4500
        assert ipaddress.ip_address(cp["ipv4"]) in ipaddress.ip_network(POOL4)
        assert ipaddress.ip_address(cp["home_address"]) in ipaddress.ip_network(POOL6)

        sa = lab.swan_sas()["gw"]
        assert sa["state"] == "ESTABLISHED"
        assert (sa["initiator-spi"], sa["responder-spi"]) == (ike["spi_i"], ike["spi_r"])
        assert set(sa["remote-vips"]) == {cp["ipv4"], cp["home_address"]}
        assert child_spis(sa)["t"] == (child["spi_out"], child["spi_in"])
        swan_child = next(v for v in sa["child-sas"].values() if v["name"] == "t")
        assert swan_child["state"] == "INSTALLED" and swan_child["mode"] == "TUNNEL" and swan_child["encap"] == "yes"
        assert child["mode"] == "tunnel" and child["nat_t"] is True
        assert child["ts_local"] == [f"{cp['ipv4']}/32"] and child["ts_remote"] == [NET4]
        assert swan_child["remote-ts"] == [f"{cp['ipv4']}/32"] and swan_child["local-ts"] == [NET4]

        res = lab.ping("a", cp["ipv4"], SWAN_INNER4)
        assert " 0% packet loss" in res.stdout, res.stdout + res.stderr
        sas = ue.cmd("stats")["dataplane"]["sas"]
        assert sas[str(child["spi_in"])]["packets_in"] >= 3 and sas[str(child["spi_out"])]["packets_out"] >= 3

        # MH transport CHILD SA requested by us (CREATE_CHILD_SA); charon negotiates transport mode
        ue.cmd("create_child", child={"mode": "transport", "local_ts": ["dynamic6[135]"],
                                      "remote_ts": ["dynamic6[135]"]})
        ue.wait(lambda d: d.get("event") in ("ChildSaFailed",) or (
            d.get("event") == "ChildSaEstablished" and d.get("mode") == "transport"), 10, "MH CHILD SA outcome")
        outcome = [e for e in ue.events if e["event"] == "ChildSaFailed" or e.get("mode") == "transport"][0]
        log = lab.charon_log()
        if outcome["event"] == "ChildSaEstablished":
            assert outcome["ts_local"] == [f"{cp['home_address']}/128[135]"] and outcome["ts_remote"] == [f"{HA}/128[135]"]
        else:  # charon negotiated it, then kernel-libipsec failed to install it: NO_PROPOSAL_CHOSEN
            assert outcome["notify"] == 14, outcome
            assert "parsed CREATE_CHILD_SA request 2 [ N(USE_TRANSP)" in log
            assert f"is a transport mode proxy for {HA}" in log and "IPsec SA: unsupported mode" in log
        sa = lab.swan_sas()["gw"]
        assert sa["state"] == "ESTABLISHED" and "t" in child_spis(sa)
        res = lab.ping("a", cp["ipv4"], SWAN_INNER4, count=2)
        assert " 0% packet loss" in res.stdout, res.stdout

        keys = ue.cmd("keys")
        ue.cmd("delete")
        ue.wait_event("IkeSaDeleted")
        assert lab.swan_sas() == {}
        bye = ue.close()
        assert bye.get("errors") == [], bye
        rep = assert_capture_clean(lab, keys, min_esp=10)
        assert rep["esp_icmp"] == rep["esp"]
