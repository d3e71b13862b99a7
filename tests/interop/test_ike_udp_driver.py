"""The in-process ``IkeUdpDriver`` (s2c/testing/ike_udp.py): our own initiator and responder over real
UDP sockets on loopback inside a throwaway namespace (no strongSwan), and the spec parser."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from s2c.codec import ikev2 as c
from s2c.testing.ike_udp import esp_proposal, ike_proposal, parse_ts
from s2c.testing.netns import NsPair

pytestmark = [pytest.mark.interop, pytest.mark.netns]

SCRIPT = r"""
import json, sys
from s2c.testing.ike_udp import IkeUdpDriver, build_core
base = {"local_id": "pdngw.s2c.test", "auth": {"psk": "k" * 20}, "proposals": ["aes256-sha256-modp2048"],
        "esp_proposals": ["aes256-sha256"]}
gw = build_core(dict(base, role="responder", local="127.0.0.2",
                     children=[{"mode": "tunnel", "local_ts": ["203.0.113.0/24"], "remote_ts": ["dynamic4"]}],
                     assign={"ipv4": "198.18.0.10"}))
ue = build_core(dict(base, role="initiator", local="127.0.0.1", remote="127.0.0.2", local_id="ue1.s2c.test",
                     remote_id="pdngw.s2c.test", cp_request=["INTERNAL_IP4_ADDRESS"],
                     children=[{"mode": "tunnel", "local_ts": ["dynamic4"], "remote_ts": ["203.0.113.0/24"]}]))
dg, du = IkeUdpDriver(gw, bind4="127.0.0.2", bind6=None), IkeUdpDriver(ue, bind4="127.0.0.1", bind6=None)
ue.initiate(du.clock())
def up():
    dg.poll(0.01)
    du.poll(0.01)
    return du.seen("ChildSaEstablished") and dg.seen("ChildSaEstablished")
ok = du.run_until(up, 10)
print(json.dumps({"ok": ok, "ue": [type(e).__name__ for e in du.events], "gw": [type(e).__name__ for e in dg.events],
                  "esp": len(du.esp_uat_records()), "ike": du.ike_lines == dg.ike_lines and len(du.ike_lines)}))
"""


def test_driver_in_process_over_loopback():
    with NsPair("s2ct-io-drv") as pair:
        res = pair.run("a", [sys.executable, "-c", SCRIPT], timeout=60)
    out = json.loads(res.stdout)
    assert out["ok"], out
    assert out["ue"] == ["IkeSaEstablished", "CpAssigned", "ChildSaEstablished"]
    assert out["gw"] == ["IkeSaEstablished", "ChildSaEstablished"]
    assert out["esp"] == 2 and out["ike"] == 1


def test_spec_parsers():
    p = ike_proposal("aes128gcm16-prfsha256-x25519-ecp256")
    assert (p.encr, p.key_bits, p.prf, p.integ, p.dh_groups) == (
        c.EncrId.ENCR_AES_GCM_16, 128, c.PrfId.PRF_HMAC_SHA2_256, c.IntegId.NONE,
        (c.DhGroup.CURVE25519, c.DhGroup.ECP_256))
    p = ike_proposal("aes256-sha256-modp2048")
    assert (p.encr, p.key_bits, p.prf, p.integ) == (c.EncrId.ENCR_AES_CBC, 256, c.PrfId.PRF_HMAC_SHA2_256,
                                                      c.IntegId.AUTH_HMAC_SHA2_256_128)
    e = esp_proposal("aes128gcm16-x25519-esn")
    assert (e.integ, e.esn, e.dh_groups) == (c.IntegId.NONE, c.EsnId.ESN, (c.DhGroup.CURVE25519,))
    assert parse_ts("2001:db8:1::1/128[135]") == c.TrafficSelector.from_network("2001:db8:1::1/128", 135)
    assert parse_ts("dynamic6[135]").version == 6 and parse_ts("dynamic6[135]").ip_protocol == 135
    with pytest.raises(ValueError):
        ike_proposal("blowfish-md5")
