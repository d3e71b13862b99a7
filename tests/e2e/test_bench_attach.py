"""Smoke test of ``python -m bench.attach --quick --json``: it runs our daemons and strongSwan in
namespaces and reports every figure as a positive number (targets are not checked here)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s2c.lab.strongswan import available

pytestmark = [pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, TUN)")]

ROOT = Path(__file__).resolve().parents[2]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_bench_attach_quick_json():
    if not available()[0]:
        pytest.skip(f"strongSwan: {available()[1]}")
    before = {n for n in _namespaces() if n.startswith("s2cb-at")}
    r = subprocess.run([sys.executable, "-m", "bench.attach", "--quick", "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=400, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert ".." in r.stderr  # progress lines go to stderr in --json mode
    f = res["figures"]
    for key in ("attach_eap_aka_ms", "attach_psk_ms", "attach_strongswan_psk_ms", "attach_strongswan_cert_ms",
                "attach_eap_aka_wire_ms",
                "attach_psk_wire_ms", "throughput_ours_mbps", "throughput_strongswan_mbps", "throughput_veth_mbps",
                "rtt_ours_ms", "rtt_strongswan_ms", "rtt_veth_ms", "setups_ours_per_s", "setups_strongswan_per_s",
                "ratio_attach_eap_aka", "ratio_attach_psk", "ratio_throughput", "ratio_rtt", "ratio_setups",
                "throughput_ours_udp_mbps", "rtt_ours_udp_ms", "ratio_throughput_udp", "ratio_rtt_udp",
                "attach_strongswan_eap_cert_ms", "ratio_attach_eap_aka_like"):
        v = f[key]
        assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (key, v)
    assert res["attach"]["ours_eap_aka"]["runs"] == 3 and len(res["attach"]["ours_eap_aka"]["child_sa_ms_all"]) == 3
    assert len(res["attach"]["strongswan_psk"]["wire_child_sa_ms_all"]) == 3
    # like for like: both EAP attaches are IKE_SA_INIT + 3 IKE_AUTH exchanges on the wire
    assert res["attach"]["ours_eap_aka"]["ike_auth_exchanges"] == 3, res["attach"]["ours_eap_aka"]
    assert res["attach"]["strongswan_eap_cert"]["ike_auth_exchanges"] == 3, res["attach"]["strongswan_eap_cert"]
    # EAP-AKA takes more round trips than PSK on the same wire
    assert f["attach_eap_aka_wire_ms"] > f["attach_psk_wire_ms"]
    assert math.isclose(f["ratio_throughput"], f["throughput_ours_mbps"] / f["throughput_strongswan_mbps"])
    assert math.isclose(f["ratio_throughput_udp"], f["throughput_ours_udp_mbps"] / f["throughput_strongswan_mbps"])
    for side in ("ours", "strongswan"):
        s = res["setups"][side]
        assert s["established"] == s["n"] == 30, s
    assert res["setups"]["ours"]["pdngw_established"] == 30
    # every namespace it made is gone
    assert {n for n in _namespaces() if n.startswith("s2cb-at")} <= before
