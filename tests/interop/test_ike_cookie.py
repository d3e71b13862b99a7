"""(d) COOKIE (RFC 7296 §2.6) both ways with strongSwan 5.9.8.

charon answers with a COOKIE notify once 3 IKE SAs from one address are half-open
(``charon.cookie_threshold_ip``, default 3) and ignores that address from 5 on (``block_threshold``).
We open 4 half-open SAs from our address (IKE_SA_INIT requests nobody completes, sent from an
ephemeral port), then our IkeInitiator must retry with the COOKIE and complete. The other way,
our IkeResponder demands a COOKIE from every initiator (``cookie_threshold = 0``) and charon
must come back with it.
"""

from __future__ import annotations

import json
import sys

import pytest

from test_ike_lab import (
    A4, B4, GW_INNER4, NET4, PROPOSALS, VIP4, SwanLab, assert_capture_clean, child_spis, our_gw_spec, our_ue_spec,
    swan_gw_conf, swan_ue_conf,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]

HALF_OPEN = """
import json, os, socket, sys
from s2c.testing.ike_udp import build_core
spec, n = json.loads(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((spec["local"], 0))
for i in range(n):
    core = build_core(spec)
    core.initiate(0.0)
    for data, addr in core.datagrams_to_send(0.0):
        s.sendto(data, (spec["remote"], 500))
s.settimeout(2.0)
answers = []
try:
    while len(answers) < n:
        answers.append(len(s.recv(4096)))
except socket.timeout:
    pass
print(json.dumps(answers))
"""


@pytest.mark.parametrize("prop", ["gcm-x25519", "cbc-modp2048"])
def test_our_initiator_answers_swan_cookie(tmp_path, prop):
    ike_p, esp_p = PROPOSALS[prop]
    with SwanLab(tmp_path, "psk") as lab:
        lab.charon.load(swan_gw_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": NET4,
                                                              "remote_ts": "dynamic"}}))
        spec = our_ue_spec(lab, ike_p, esp_p, dataplane=False)
        res = lab.pair.run("a", [sys.executable, "-c", HALF_OPEN, json.dumps(spec), "4"], timeout=30)
        assert len(json.loads(res.stdout)) == 4, res.stdout + res.stderr     # charon answered them all
        ue = lab.driver(dict(spec, autostart=True))
        ue.wait_event("ChildSaEstablished", timeout=20)
        log = lab.charon_log()
        assert "sending COOKIE notify" in log or "N(COOKIE)" in log, log[-3000:]
        sa = lab.swan_sas()["gw"]
        assert sa["state"] == "ESTABLISHED"
        ike = ue.events[0]
        assert (sa["initiator-spi"], sa["responder-spi"]) == (ike["spi_i"], ike["spi_r"])
        keys = ue.cmd("keys")
        bye = ue.close()
        assert bye.get("errors") == [], bye
        assert_capture_clean(lab, keys)
    # the capture shows our IKE_SA_INIT retried with the COOKIE first
    import subprocess
    out = subprocess.run(["tshark", "-n", "-r", str(lab.pcap), "-Y", f"isakmp.exchangetype == 34 && ip.src == {A4} && "
                          "udp.srcport == 500", "-T", "fields", "-e", "isakmp.notify.msgtype"],
                         capture_output=True, text=True, timeout=60).stdout.split()
    assert any(v.split(",")[0] == "16390" for v in out), out   # COOKIE (16390) is the first payload


@pytest.mark.parametrize("auth", ["psk", "ecdsa"])
def test_swan_initiator_answers_our_cookie(tmp_path, auth):
    ike_p, esp_p = PROPOSALS["gcm-x25519"]
    with SwanLab(tmp_path, auth) as lab:
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": "dynamic",
                                                              "remote_ts": NET4}}))
        gw = lab.driver(our_gw_spec(lab, ike_p, esp_p, cookie_threshold=0))
        lab.charon.initiate(child="t", ike="ue")
        child = gw.wait_event("ChildSaEstablished")
        assert gw.cmd("stats")["stats"].get("cookie_sent") == 1
        assert "received COOKIE" in lab.charon_log() or "N(COOKIE)" in lab.charon_log()
        assert child_spis(lab.swan_sas()["ue"])["t"] == (child["spi_out"], child["spi_in"])
        res = lab.ping("b", VIP4, GW_INNER4)
        assert " 0% packet loss" in res.stdout, res.stdout + res.stderr
        assert B4 in lab.swan_sas()["ue"]["local-host"]
