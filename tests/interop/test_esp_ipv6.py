"""IPv6 with strongSwan 5.9.8: IKE and ESP-in-UDP over an IPv6 outer path (a DSMIPv6 UE's CoA is often
IPv6), and one tunnel CHILD SA carrying both families inside (IPv4 virtual IP <-> NET4 and Home
Address <-> NET6), both roles."""

from __future__ import annotations

import ipaddress

import pytest

from test_ike_lab import (
    A6, B6, GW_INNER4, HA, HOA, NET4, NET6, PROPOSALS, SWAN_INNER4, VIP4, SwanLab, assert_capture_clean, child_spis,
    our_gw_spec, our_ue_spec, swan_gw_conf, swan_ue_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]

SWAN_INNER6 = "2001:db8:4::2"


@pytest.mark.parametrize("auth", ["psk", "rsa"])
def test_swan_ue_over_ipv6_dual_stack_tunnel(tmp_path, auth):
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with SwanLab(tmp_path, auth, outer6=True) as lab:
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": "dynamic",
                                                              "remote_ts": f"{NET4},{NET6}"}}))
        spec = our_gw_spec(lab, ike_p, esp_p)
        spec["children"] = [{"mode": "tunnel", "local_ts": [NET4, NET6], "remote_ts": ["dynamic4", "dynamic6"]}]
        gw = lab.driver(spec)
        lab.charon.initiate(child="t", ike="ue")
        ike = gw.wait_event("IkeSaEstablished")
        child = gw.wait_event("ChildSaEstablished")
        assert ike["remote_addr"] == [B6, 4500] and child["nat_t"] is True
        assert sorted(child["ts_remote"]) == sorted([f"{VIP4}/32", f"{HOA}/128"])
        sa = lab.swan_sas()["ue"]
        assert sa["local-host"] == B6 and set(sa["local-vips"]) == {VIP4, HOA}
        assert child_spis(sa)["t"] == (child["spi_out"], child["spi_in"])
        for src, dst in ((VIP4, GW_INNER4), (HOA, HA)):
            res = lab.ping("b", src, dst)
            assert " 0% packet loss" in res.stdout, res.stdout + res.stderr
        keys = gw.cmd("keys")
        bye = gw.close()
        assert bye.get("errors") == [], bye
        rep = assert_capture_clean(lab, keys, min_esp=12)
        assert rep["esp_icmp"] == 6      # the IPv4 pings; the ICMPv6 ones are counted in esp too


@pytest.mark.parametrize("prop", ["gcm-ecp256", "cbc-modp2048"])
def test_our_ue_over_ipv6_dual_stack_tunnel(tmp_path, prop):
    ike_p, esp_p = PROPOSALS[prop]
    with SwanLab(tmp_path, "ecdsa", outer6=True) as lab:
        lab.pair.run("b", ["ip", "addr", "add", f"{SWAN_INNER6}/128", "dev", "lo"])
        lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": f"{NET4},2001:db8:4::/64",
                                                              "remote_ts": "dynamic"}}))
        spec = our_ue_spec(lab, ike_p, esp_p)
        spec["children"] = [{"mode": "tunnel", "local_ts": ["dynamic4", "dynamic6"],
                             "remote_ts": [NET4, "2001:db8:4::/64"]}]
        ue = lab.driver(spec)
        cp = ue.wait_event("CpAssigned")
        child = ue.wait_event("ChildSaEstablished")
        assert child["remote_addr"] == [B6, 4500] and child["local_addr"] == [A6, 4500]
        assert ipaddress.ip_address(cp["home_address"]).version == 6
        assert sorted(child["ts_local"]) == sorted([f"{cp['ipv4']}/32", f"{cp['home_address']}/128"])
        sa = lab.swan_sas()["gw"]
        assert sa["remote-host"] == A6 and child_spis(sa)["t"] == (child["spi_out"], child["spi_in"])
        for src, dst in ((cp["ipv4"], SWAN_INNER4), (cp["home_address"], SWAN_INNER6)):
            res = lab.ping("a", src, dst)
            assert " 0% packet loss" in res.stdout, res.stdout + res.stderr
        keys = ue.cmd("keys")
        bye = ue.close()
        assert bye.get("errors") == [], bye
        assert_capture_clean(lab, keys, min_esp=12)
