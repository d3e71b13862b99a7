"""Retransmissions with strongSwan 5.9.8 (RFC 7296 §2.1): a lost response makes the peer resend its
request, which must be answered from the cache (same response, no second SA); a lost request is
resent by us. nftables in our namespace drops UDP for a moment to lose exactly that packet."""

from __future__ import annotations

import time

import pytest

from test_ike_lab import (
    GW_INNER4, NET4, PROPOSALS, SWAN_INNER4, VIP4, SwanLab, assert_capture_clean, child_spis, our_gw_spec,
    our_ue_spec, swan_gw_conf, swan_ue_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]


def _drop(lab, hook: str, port: int, on: bool) -> None:
    if on:
        lab.pair.run("a", ["nft", f"add table inet s2ctio; add chain inet s2ctio c {{ type filter hook {hook} "
                                  f"priority 0; }}; add rule inet s2ctio c udp sport {port} drop; "
                                  f"add rule inet s2ctio c udp dport {port} drop"])
    else:
        lab.pair.run("a", ["nft", "delete table inet s2ctio"])


def _exchanges(pcap, src: str) -> list[tuple[str, str]]:
    import subprocess
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", f"isakmp && ip.src == {src}", "-T", "fields",
                          "-e", "isakmp.exchangetype", "-e", "isakmp.messageid"], capture_output=True, text=True,
                         timeout=60).stdout
    return [(x, int(m, 16)) for x, m in (line.split("\t") for line in out.splitlines() if line.strip())]


def test_our_responder_answers_retransmitted_ike_auth(tmp_path):
    """Our IKE_AUTH response is lost (output to 4500 dropped): charon resends IKE_AUTH after 1 s, our
    responder answers from its cache; one IKE SA, one CHILD SA on each side."""
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with SwanLab(tmp_path, "rsa") as lab:
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": "dynamic",
                                                              "remote_ts": NET4}}))
        gw = lab.driver(our_gw_spec(lab, ike_p, esp_p))
        _drop(lab, "output", 4500, True)
        try:
            lab.charon._swanctl("--initiate", "--child", "t", "--ike", "ue", "--timeout", "-1", check=False)
            gw.wait_event("ChildSaEstablished")        # we processed IKE_AUTH; the answer is dropped
        finally:
            time.sleep(0.2)
            _drop(lab, "output", 4500, False)
        deadline = time.monotonic() + 10
        while "ue" not in lab.swan_sas() or lab.swan_sas()["ue"]["state"] != "ESTABLISHED":
            assert time.monotonic() < deadline, lab.charon_log()[-3000:]
            gw.settle(0.2)
        assert "retransmit 1 of request with message ID 1" in lab.charon_log()
        assert gw.names().count("IkeSaEstablished") == 1 and gw.names().count("ChildSaEstablished") == 1
        child = next(e for e in gw.events if e["event"] == "ChildSaEstablished")
        assert child_spis(lab.swan_sas()["ue"])["t"] == (child["spi_out"], child["spi_in"])
        assert " 0% packet loss" in lab.ping("b", VIP4, GW_INNER4).stdout
        keys = gw.cmd("keys")
        gw.close()
        assert_capture_clean(lab, keys, min_esp=6)
    ours = _exchanges(lab.pcap, "198.51.100.1")
    assert ours.count(("35", 1)) == 1          # the first IKE_AUTH response never hit the wire, its resend did


def test_our_initiator_retransmits_lost_request(tmp_path):
    """Our IKE_AUTH request is lost (input and output of 4500 dropped for 0.35 s): we resend it after
    the retransmission timeout and charon completes the exchange once."""
    ike_p, esp_p = PROPOSALS["cbc-modp2048"]
    with SwanLab(tmp_path, "psk") as lab:
        lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": NET4,
                                                              "remote_ts": "dynamic"}}))
        _drop(lab, "output", 4500, True)
        try:
            ue = lab.driver(our_ue_spec(lab, ike_p, esp_p, retransmit_timeout=0.5))
            ue.settle(0.35)
        finally:
            _drop(lab, "output", 4500, False)
        cp = ue.wait_event("CpAssigned", timeout=10)
        child = ue.wait_event("ChildSaEstablished")
        sa = lab.swan_sas()["gw"]
        assert child_spis(sa)["t"] == (child["spi_out"], child["spi_in"])
        assert " 0% packet loss" in lab.ping("a", cp["ipv4"], SWAN_INNER4).stdout
        keys = ue.cmd("keys")
        ue.close()
        assert_capture_clean(lab, keys, min_esp=6)
    # on the wire: IKE_SA_INIT once, IKE_AUTH (mid 1) once - the first copy was dropped before veth-a
    ours = _exchanges(lab.pcap, "198.51.100.1")
    assert ours.count(("34", 0)) == 1 and ours.count(("35", 1)) == 1, ours
