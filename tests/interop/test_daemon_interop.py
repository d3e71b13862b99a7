"""Daemon-level interop with strongSwan 5.9.8: the real ``python -m pdngw`` / ``python -m ue`` processes
(config files, control socket, DataPlane worker processes, routes) against charon + kernel-libipsec.

(a) charon as the UE (``vips = 0.0.0.0,::``) against our ``pdngw`` daemon: CP hands out the Home
    Address and an IPv4 HoA; the RFC 4877 §4.2 transport-mode MH CHILD SA (HoA <-> HA, protocol 135;
    charon ``mode = transport_proxy``) in IKE_AUTH, then a tunnel-mode CHILD SA; pings from charon's
    virtual IPs through ESP to the PDN GW's SGi-side addresses. kernel-libipsec cannot install
    transport mode ("IPsec SA: unsupported mode", this kernel has no ESP for XFRM either), so charon
    DELETEs the MH SA right after negotiating it: its SPIs/selectors are checked in both logs and in
    our ``sas`` view until then, the DELETE in our daemon's state.
(b) our ``ue`` daemon against charon as the responder (``pools``): ``attach``, ``sas``, pings from
    the HoAs to addresses behind charon. ``mh_child: false`` (charon cannot install the MH SA).
(c) MOBIKE: our ``ue`` daemon's radio changes address (new address added, old one removed; the UE
    notices by polling), charon accepts UPDATE_SA_ADDRESSES, ``--list-sas`` shows the new address,
    traffic continues; and charon as the UE moves against our ``pdngw``.
(d) every case's capture dissects in tshark with no malformed packet, decrypted with the key files
    the daemons wrote.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from daemon_lab import (
    CN4, CN6, DI_HA, HOME_PREFIX, IPV4_POOL, SWAN_CN6, DaemonSwanLab, assert_daemon_capture_clean, esp_sources, ike_fields,
)
from test_ike_lab import (
    A4, A4_ALT, A6, B4, B4_ALT, B6, GW_ID, POOL4, POOL6, PROPOSALS, PSK, SWAN_INNER4, UE_ID, child_spis, swan_gw_conf,
    swan_ue_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]


def _swan_child(sa: dict, name: str) -> dict | None:
    return next((v for v in (sa.get("child-sas") or {}).values() if isinstance(v, dict) and v.get("name") == name),
                None)


def _ep(addr: str, port: int) -> str:
    return f"{addr}:{port}"


def _hosts(tss: list[str]) -> set[str]:
    """Single-host selectors as addresses: ours print ``addr/proto=0``, charon's ``addr/32``."""
    out = set()
    for ts in tss:
        addr, _, rest = ts.partition("/")
        assert rest in ("proto=0", "32", "128"), ts
        out.add(addr)
    return out


# ---------------------------------------------------------------------------------------------- (a)

MH_CHILD = {"mode": "transport_proxy", "local_ts": "dynamic[135]", "remote_ts": f"{DI_HA}/128[135]"}
TUNNEL_CHILD = {"mode": "tunnel", "local_ts": "dynamic", "remote_ts": f"{CN4}/32,{CN6}/128"}


def start_pdngw(lab: DaemonSwanLab, extra: dict | None = None) -> None:
    """Our PDN GW daemon on side a: S2c at A4, HA and SGi-side (CN) addresses on lo."""
    lab.add_lo("a", CN4, CN6, DI_HA)
    params = {"s2c": {"ipv6" if ":" in lab.a else "ipv4": [lab.a]}, "fqdn": GW_ID, "pki": str(lab.trust_pki().root), "home_prefix": HOME_PREFIX,
              "ha_address": DI_HA, "ipv4_pool": IPV4_POOL, **(extra or {})}
    if lab.pki is None:
        params.update(auth="psk", psk=PSK)
    lab.spawn("pdngw", "pdngw", "a", params)


def _pdngw_sa(lab: DaemonSwanLab) -> dict | None:
    sas = lab.ctl("pdngw").call("sas")
    return sas[0] if len(sas) == 1 else None


# encap: who forces UDP encapsulation (kernel-libipsec needs ESP in UDP 4500): charon (``encap = yes``)
# or our daemon (``params.force_encap``: a fake NAT_DETECTION_SOURCE_IP hash, charon ``encap = no``)
# outer: the S2c path (IKE and ESP-in-UDP) over IPv4 or IPv6
@pytest.mark.parametrize("auth,prop,encap,outer", [
    ("psk", "gcm-x25519", "swan", 4), ("rsa", "gcm-ecp256", "swan", 4), ("ecdsa", "cbc-modp2048", "swan", 4),
    ("psk", "gcm-x25519", "ours", 4), ("rsa", "gcm-x25519", "swan", 6)])
def test_a_swan_ue_against_pdngw_daemon(tmp_path, auth, prop, encap, outer):
    ike_p, esp_p = PROPOSALS[prop]
    with DaemonSwanLab(tmp_path, auth, outer6=outer == 6) as lab:
        start_pdngw(lab, {"force_encap": encap == "ours"})
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"mh": dict(MH_CHILD), "t": dict(TUNNEL_CHILD)},
                                     vips="0.0.0.0,::", extra={"encap": encap == "swan"}))
        # the DSMIPv6 shape: the IKE_AUTH CHILD SA is the MH transport one (RFC 4877 §4.2)
        try:
            lab.charon.initiate(child="mh", ike="ue", timeout=10)
        except Exception:  # noqa: BLE001 - kernel-libipsec refuses transport mode after negotiating it
            pass
        sa = lab.wait(lambda: _pdngw_sa(lab), what="IKE SA at the PDN GW")
        assert sa["state"] == "established" and sa["nai"] == UE_ID, sa
        # with force_encap our daemon's core keeps the fake address it hashed into NAT_DETECTION_SOURCE_IP as
        # its local address (shown by ``sas``; ESP does not use it): docs/interop.md
        local = lab.a if encap == "swan" else "192.0.2.254"
        assert sa["udp_encap"] is True and sa["remote"] == _ep(lab.b, 4500) and sa["local"] == _ep(local, 4500), sa
        assert sa["nat_detected"] is True  # charon's fake NAT-D, or ours
        swan = lab.swan_sas()["ue"]
        assert swan["state"] == "ESTABLISHED"
        assert (swan["initiator-spi"], swan["responder-spi"]) == (sa["spi_i"], sa["spi_r"])
        # CP: charon's virtual IPs are the Home Address and the IPv4 HoA our pool handed out
        hoa, hoa4 = sa["hoa"], sa["hoa4"]
        assert ipaddress.IPv6Address(hoa) in ipaddress.IPv6Network(HOME_PREFIX), sa
        assert ipaddress.IPv4Address(hoa4) in ipaddress.IPv4Network(IPV4_POOL), sa
        assert sa["ha"] == DI_HA
        assert set(swan["local-vips"]) == {hoa, hoa4}, swan
        # the MH transport SA: negotiated with the MH selectors on both sides, then deleted by charon
        log = lab.log("pdngw")
        m = re.search(r"CHILD SA ([0-9a-f]{8})/([0-9a-f]{8}) transport (\S+) <-> (\S+)", log)
        assert m, log[-3000:]
        mh_in, mh_out = m.group(1), m.group(2)
        assert m.group(3) == f"{DI_HA}/proto=135" and m.group(4) == f"{hoa}/proto=135", m.group(0)
        clog = lab.charon_log()
        assert "USE_TRANSP" in clog
        # charon's DELETE names its inbound SPI: the one our PDN GW sends with
        assert f"sending DELETE for ESP CHILD_SA with SPI {mh_out}" in clog, clog[-3000:]
        if encap == "swan":
            assert "IPsec SA: unsupported mode" in clog  # kernel-libipsec: tunnel mode only
        else:
            # charon believes the PDN GW is behind a NAT (our fake NAT-D) and, in transport mode, refuses
            # selectors that are not the peer's IKE address, before even trying to install the SA
            assert "no acceptable traffic selectors found" in clog
        lab.wait(lambda: not (_pdngw_sa(lab) or {}).get("children"), what="MH SA deleted at the PDN GW")
        assert lab.swan_sas()["ue"]["state"] == "ESTABLISHED"  # the IKE SA survives the CHILD SA's DELETE
        assert f"{int(mh_in, 16):08x}" not in clog  # charon never installed (nor used) our inbound SPI

        # the tunnel CHILD SA through CREATE_CHILD_SA, same SPIs and selectors on both sides
        lab.charon.initiate(child="t", ike="ue")
        sa = lab.wait(lambda: (s := _pdngw_sa(lab)) and s["children"] and s, what="tunnel SA")
        (ch,) = sa["children"]
        swan = lab.swan_sas()["ue"]
        t = _swan_child(swan, "t")
        assert t["state"] == "INSTALLED" and t["mode"] == "TUNNEL" and t["encap"] == "yes", t
        assert ch["mode"] == "tunnel"
        assert child_spis(swan)["t"] == (int(ch["spi_out"], 16), int(ch["spi_in"], 16))
        assert _hosts(ch["ts_remote"]) == {hoa, hoa4} == _hosts(t["local-ts"]), (ch, t)
        assert _hosts(ch["ts_local"]) == {CN4, CN6} == _hosts(t["remote-ts"]), (ch, t)

        # ESP both ways: kernel-libipsec <-> the daemon's DataPlane, to the PDN GW's SGi-side addresses
        for src, dst in ((hoa4, CN4), (hoa, CN6)):
            ok, out = lab.ping_ok("b", src, dst)
            assert ok, out + lab.log("pdngw")[-2000:]
        (ch,) = _pdngw_sa(lab)["children"]
        assert ch["counters"]["packets_in"] >= 6 and ch["counters"]["packets_out"] >= 6, ch
        assert ch["counters"]["auth_failures"] == 0 and ch["counters"]["replay_drops"] == 0
        t = _swan_child(lab.swan_sas()["ue"], "t")
        assert int(t["packets-in"]) >= 6 and int(t["packets-out"]) >= 6

        # charon detaches: the PDN GW drops the IKE SA and its ESP SAs
        lab.charon.terminate("ue")
        lab.wait(lambda: lab.ctl("pdngw").call("sas") == [], what="IKE SA gone at the PDN GW")
        st = lab.ctl("pdngw").call("status")
        assert st["counters"].get("ike_internal_errors", 0) == 0 and st["counters"].get("event_errors", 0) == 0
        # (d) tshark: clean, everything decrypted with the daemon's own key files
        rep = assert_daemon_capture_clean(lab, min_esp=12)
        assert rep["esp_icmp"] == rep["esp"], rep
        # on the wire (decrypted with our keys): the MH SA's SPIs in IKE_AUTH are the ones our daemon
        # installed (charon's inbound SPI in the request, ours in the response), charon deletes its own
        auth = ike_fields(lab, "isakmp.exchangetype == 35", ["isakmp.flag_r", "isakmp.spi"])
        spis = {flag: {v.lower().removeprefix("0x") for v in spi.split(",") if v} for flag, spi in auth}
        assert spis.get("0") == {mh_out} and spis.get("1") == {mh_in}, auth
        deletes = ike_fields(lab, "isakmp.delete.spi", ["isakmp.delete.spi"])
        assert [mh_out] == [d[0].lower().removeprefix("0x") for d in deletes][:1], deletes


# ---------------------------------------------------------------------------------------------- (b)

# our ue daemon offers AES-GCM-16/256 or AES-CBC-128 + HMAC-SHA2-256 with ECP-256 for IKE
UE_SUITES = {
    "gcm": ("aes256gcm16-prfsha256-ecp256", "aes128gcm16"),
    "cbc": ("aes128-sha256-ecp256", "aes128-sha256"),
}
SWAN_GW_CHILD = {"mode": "tunnel", "local_ts": f"{SWAN_INNER4}/32,{SWAN_CN6}/128", "remote_ts": "dynamic"}


def start_ue(lab: DaemonSwanLab, extra: dict | None = None) -> None:
    """Our UE daemon on side a; its radio veth-a (A4) has a default route via charon (B4)."""
    lab.pair.run("a", ["ip", "-6" if ":" in lab.b else "-4", "route", "add", "default", "via", lab.b])
    params = {"radios": {"veth-a": {"network": "wlan", "up": True}}, "pdngw_address": lab.b, "ue_id": UE_ID,
              "pdngw_id": GW_ID, "pki": str(lab.trust_pki().root), "ipv4_hoa": True, "mh_child": False,
              "dpd_interval": 1.0, "retransmit_timeout": 0.5, "reattach": False, **(extra or {})}
    if lab.pki is None:
        params.update(auth="psk", psk=PSK)
    else:
        params.update(auth="cert", cert=str(lab.pki.cert("ue1")), key=str(lab.pki.key("ue1")))
    lab.spawn("ue", "ue", "a", params, {"pdngw": {"node": "gw", "kind": "pdngw",
                                             "ipv6" if ":" in lab.b else "ipv4": [lab.b]}})


def _attach_to_swan(lab: DaemonSwanLab, suite: str, encap: str = "swan") -> dict:
    ike_p, esp_p = UE_SUITES[suite]
    lab.add_lo("b", SWAN_CN6)
    lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": dict(SWAN_GW_CHILD)}, extra={"encap": encap == "swan"}))
    start_ue(lab, {"force_encap": encap == "ours"})
    res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
    assert res["state"] == "attached", (res, lab.log("ue")[-3000:], lab.charon_log()[-3000:])
    return res


def _ue_tunnel(lab: DaemonSwanLab) -> tuple[dict, dict]:
    (sa,) = lab.ctl("ue").call("sas")
    (ch,) = sa["children"]
    return sa, ch


@pytest.mark.parametrize("auth,suite,encap,outer", [
    ("psk", "gcm", "swan", 4), ("rsa", "cbc", "swan", 4), ("ecdsa", "gcm", "swan", 4), ("psk", "gcm", "ours", 4),
    ("ecdsa", "gcm", "swan", 6)])
def test_b_ue_daemon_against_swan_gw(tmp_path, auth, suite, encap, outer):
    with DaemonSwanLab(tmp_path, auth, outer6=outer == 6) as lab:
        res = _attach_to_swan(lab, suite, encap)
        hoa, hoa4 = res["hoa"]["ipv6"], res["hoa"]["ipv4"]
        # CP: the addresses come from charon's pools
        assert ipaddress.IPv6Address(hoa) in ipaddress.IPv6Network(POOL6), res
        assert ipaddress.IPv4Address(hoa4) in ipaddress.IPv4Network(POOL4), res
        assert res["coa"] == lab.a and res["pdngw"] == lab.b and res["udp_encap"] is True, res
        sa, ch = _ue_tunnel(lab)
        swan = lab.swan_sas()["gw"]
        assert swan["state"] == "ESTABLISHED" and sa["state"] == "established"
        assert (swan["initiator-spi"], swan["responder-spi"]) == (sa["spi_i"], sa["spi_r"])
        assert swan["remote-host"] == lab.a and swan["remote-port"] == "4500" and sa["remote"] == _ep(lab.b, 4500)
        assert set(swan["remote-vips"]) == {hoa, hoa4}, swan
        t = _swan_child(swan, "t")
        assert t["state"] == "INSTALLED" and t["mode"] == "TUNNEL" and t["encap"] == "yes", t
        assert ch["mode"] == "tunnel" and child_spis(swan)["t"] == (int(ch["spi_out"], 16), int(ch["spi_in"], 16))
        assert _hosts(ch["ts_local"]) == {hoa, hoa4} == _hosts(t["remote-ts"]), (ch, t)
        assert _hosts(ch["ts_remote"]) == {SWAN_INNER4, SWAN_CN6} == _hosts(t["local-ts"]), (ch, t)
        assert sa["mobike"] is True
        # user traffic from the HoAs through the daemon's DataPlane and kernel-libipsec
        for src, dst in ((hoa4, SWAN_INNER4), (hoa, SWAN_CN6)):
            ok, out = lab.ping_ok("a", src, dst)
            assert ok, out + lab.log("ue")[-2000:]
        _, ch = _ue_tunnel(lab)
        assert ch["counters"]["packets_out"] >= 6 and ch["counters"]["packets_in"] >= 6, ch
        assert ch["counters"]["auth_failures"] == 0
        t = _swan_child(lab.swan_sas()["gw"], "t")
        assert int(t["packets-in"]) >= 6 and int(t["packets-out"]) >= 6, t
        # detach: INFORMATIONAL DELETE answered by charon
        d = lab.ctl("ue").call("detach")
        assert d["state"] == "detached" and d["deleted"] is True, d
        lab.wait(lambda: lab.swan_sas() == {}, what="charon's IKE SA gone")
        assert lab.ctl("ue").call("sas") == []
        c = lab.ctl("ue").call("counters")
        assert c.get("ike_internal_errors", 0) == 0 and c.get("event_errors", 0) == 0, c
        rep = assert_daemon_capture_clean(lab, min_esp=12)
        assert rep["esp_icmp"] == rep["esp"], rep


def test_b_ue_daemon_mh_child_refused_by_swan_gw(tmp_path):
    """Default ``mh_child``: the UE asks for the MH transport SA in IKE_AUTH; charon (kernel-libipsec:
    tunnel mode only) refuses it, the attach fails cleanly with charon's notify and no SA is left."""
    with DaemonSwanLab(tmp_path, "psk") as lab:
        ike_p, esp_p = UE_SUITES["gcm"]
        # charon's HA on lo (an IPv6 address: ``dynamic`` would be its IPv4 IKE address)
        lab.add_lo("b", SWAN_CN6)
        mh = {"mode": "transport_proxy", "local_ts": f"{SWAN_CN6}/128[135]", "remote_ts": "dynamic[135]"}
        lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"mh": mh, "t": dict(SWAN_GW_CHILD)}))
        start_ue(lab, {"mh_child": True})
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=10)
        assert res["state"] == "detached" and res["reason"] == "NO_PROPOSAL_CHOSEN", res
        assert "IPsec SA: unsupported mode" in lab.charon_log()
        lab.wait(lambda: lab.swan_sas() == {}, what="charon's IKE SA deleted by the UE")
        assert lab.ctl("ue").call("sas") == []
        c = lab.ctl("ue").call("counters")
        assert c.get("ike_internal_errors", 0) == 0 and c.get("event_errors", 0) == 0, c
        assert_daemon_capture_clean(lab, min_esp=0)


# ---------------------------------------------------------------------------------------------- (c)

@pytest.mark.parametrize("auth", ["psk", "rsa"])
def test_c_ue_daemon_moves_swan_gw_follows(tmp_path, auth):
    """Our UE's radio gets a new address and loses the old one; the daemon notices by polling and
    sends UPDATE_SA_ADDRESSES (RFC 4555 §3.5); charon moves the IKE SA and its ESP."""
    with DaemonSwanLab(tmp_path, auth) as lab:
        res = _attach_to_swan(lab, "gcm")
        hoa, hoa4 = res["hoa"]["ipv6"], res["hoa"]["ipv4"]
        sa0, _ = _ue_tunnel(lab)
        ok, out = lab.ping_ok("a", hoa4, SWAN_INNER4)
        assert ok, out
        lab.pair.run("a", ["ip", "addr", "add", f"{A4_ALT}/24", "dev", "veth-a"])
        lab.pair.run("a", ["ip", "addr", "del", f"{A4}/24", "dev", "veth-a"])
        lab.wait(lambda: lab.swan_sas().get("gw", {}).get("remote-host") == A4_ALT, timeout=10,
                 what="charon's IKE SA at the new address")
        st = lab.ctl("ue").call("status")
        assert st["state"] == "attached" and st["coa"] == A4_ALT and st["hoa"] == {"ipv4": hoa4, "ipv6": hoa}, st
        assert any(h["event"] == "mobike" and h["to"] == A4_ALT for h in st["history"]), st["history"]
        # the same IKE SA; the CHILD SA may have been rekeyed by charon after the move (docs/interop.md)
        def agreed():
            sa, ch = _ue_tunnel(lab)
            swan = lab.swan_sas()["gw"]
            return (sa["spi_i"] == sa0["spi_i"] and child_spis(swan).get("t") ==
                    (int(ch["spi_out"], 16), int(ch["spi_in"], 16)) and (sa, ch, swan))
        sa, ch, swan = lab.wait(agreed, what="same SPIs on both sides after the move")
        assert swan["state"] == "ESTABLISHED" and swan["remote-port"] == "4500" and swan["local-host"] == B4
        assert sa["local"].startswith(f"{A4_ALT}:"), sa
        assert ch["peer"] == f"{B4}:4500", ch
        for src, dst in ((hoa4, SWAN_INNER4), (hoa, SWAN_CN6)):
            ok, out = lab.ping_ok("a", src, dst)
            assert ok, out + lab.log("ue")[-2000:]
        c = lab.ctl("ue").call("counters")
        assert c["mobike_updates"] >= 1 and c.get("ike_internal_errors", 0) == 0 and c.get("event_errors", 0) == 0
        d = lab.ctl("ue").call("detach")
        assert d["deleted"] is True, d
        assert_daemon_capture_clean(lab, min_esp=12)
    assert {A4, A4_ALT} <= esp_sources(lab.pcap)


def test_c_ue_daemon_moves_ipv6_to_ipv4(tmp_path):
    """The radio loses its IPv6 address: MOBIKE moves the IKE SA and ESP-in-UDP from IPv6 to IPv4
    (charon listens on both; UPDATE_SA_ADDRESSES arrives at its IPv4 address)."""
    with DaemonSwanLab(tmp_path, "psk", outer6=True) as lab:
        lab.pair.run("a", ["ip", "-4", "route", "add", "default", "via", B4])
        ike_p, esp_p = UE_SUITES["gcm"]
        lab.add_lo("b", SWAN_CN6)
        lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": dict(SWAN_GW_CHILD)},
                                     extra={"local_addrs": f"{B6},{B4}"}))
        start_ue(lab, {"pdngw_address": [B6, B4]})
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached" and res["coa"] == A6 and res["pdngw"] == B6, res
        hoa, hoa4 = res["hoa"]["ipv6"], res["hoa"]["ipv4"]
        sa0, _ = _ue_tunnel(lab)
        ok, out = lab.ping_ok("a", hoa, SWAN_CN6)
        assert ok, out
        lab.pair.run("a", ["ip", "-6", "addr", "del", f"{A6}/64", "dev", "veth-a"])
        lab.wait(lambda: lab.swan_sas().get("gw", {}).get("remote-host") == A4, timeout=10,
                 what="charon's IKE SA at our IPv4 address")

        def agreed():
            sa, ch = _ue_tunnel(lab)
            swan = lab.swan_sas()["gw"]
            return (child_spis(swan).get("t") == (int(ch["spi_out"], 16), int(ch["spi_in"], 16))
                    and ch.get("peer") == f"{B4}:4500" and (sa, ch, swan))
        sa, ch, swan = lab.wait(agreed, what="same SPIs on both sides, ESP to charon's IPv4 address")
        assert sa["spi_i"] == sa0["spi_i"] and swan["local-host"] == B4 and swan["state"] == "ESTABLISHED", swan
        st = lab.ctl("ue").call("status")
        assert st["coa"] == A4 and st["pdngw"] == B4 and st["hoa"] == {"ipv4": hoa4, "ipv6": hoa}, st
        for src, dst in ((hoa, SWAN_CN6), (hoa4, SWAN_INNER4)):
            ok, out = lab.ping_ok("a", src, dst)
            assert ok, out + lab.log("ue")[-2000:]
        assert lab.ctl("ue").call("detach")["deleted"] is True
        assert_daemon_capture_clean(lab, min_esp=12)
    assert {A6, A4, B6, B4} <= esp_sources(lab.pcap)


@pytest.mark.parametrize("auth", ["psk", "ecdsa"])
def test_c_swan_ue_moves_pdngw_daemon_follows(tmp_path, auth):
    """charon as the UE moves from B4 to B4_ALT (kernel-netlink notices); our PDN GW daemon accepts
    UPDATE_SA_ADDRESSES, its DataPlane sends to the new address, traffic continues."""
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with DaemonSwanLab(tmp_path, auth) as lab:
        start_pdngw(lab)
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": dict(TUNNEL_CHILD)}, vips="0.0.0.0,::",
                                     extra={"local_addrs": "198.51.100.0/24"}))
        lab.charon.initiate(child="t", ike="ue")
        sa = lab.wait(lambda: (s := _pdngw_sa(lab)) and s["children"] and s, what="tunnel SA")
        hoa, hoa4 = sa["hoa"], sa["hoa4"]
        ok, out = lab.ping_ok("b", hoa4, CN4)
        assert ok, out
        lab.pair.run("b", ["ip", "addr", "add", f"{B4_ALT}/24", "dev", "veth-b"])
        lab.pair.run("b", ["ip", "addr", "del", f"{B4}/24", "dev", "veth-b"])
        lab.wait(lambda: (_pdngw_sa(lab) or {}).get("remote") == f"{B4_ALT}:4500", timeout=20,
                 what="our PDN GW's IKE SA at charon's new address")

        def agreed():
            s = _pdngw_sa(lab)
            swan = lab.swan_sas().get("ue", {})
            if not s or len(s["children"]) != 1:
                return None
            (ch,) = s["children"]
            return child_spis(swan).get("t") == (int(ch["spi_out"], 16), int(ch["spi_in"], 16)) and (s, ch, swan)
        sa2, ch, swan = lab.wait(agreed, what="same SPIs on both sides after the move")
        assert sa2["spi_i"] == sa["spi_i"] and swan["local-host"] == B4_ALT and swan["state"] == "ESTABLISHED"
        for src, dst in ((hoa4, CN4), (hoa, CN6)):
            ok, out = lab.ping_ok("b", src, dst)
            assert ok, out + lab.log("pdngw")[-2000:]
        (ch,) = _pdngw_sa(lab)["children"]
        assert ch["peer"] == f"{B4_ALT}:4500", ch
        c = lab.ctl("pdngw").call("counters")
        assert c["mobike_updates"] >= 1 and c.get("ike_internal_errors", 0) == 0 and c.get("event_errors", 0) == 0
        lab.charon.terminate("ue")
        lab.wait(lambda: lab.ctl("pdngw").call("sas") == [], what="IKE SA gone at the PDN GW")
        assert_daemon_capture_clean(lab, min_esp=12)
    assert {B4, B4_ALT} <= esp_sources(lab.pcap)
