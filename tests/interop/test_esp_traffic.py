"""ESP traffic between our userspace DataPlane and strongSwan's kernel-libipsec (ESP in UDP 4500):
ICMP of every awkward size (padding boundaries, near-MTU, fragmented inner packets) and a short TCP
transfer (iperf3) in both directions, for both cipher families; no ICV failures, no replay drops."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from test_ike_lab import GW_INNER4, NET4, PROPOSALS, VIP4, SwanLab, assert_capture_clean, our_gw_spec, swan_ue_conf

pytestmark = [pytest.mark.interop, pytest.mark.netns]

SIZES = (0, 1, 14, 15, 16, 17, 31, 100, 1000, 1300, 1340, 1372, 1400, 1472, 3000, 8000)


@pytest.mark.parametrize("plane", ["thread-1", "process-2"])
@pytest.mark.parametrize("prop", ["gcm-x25519", "cbc-modp2048"])
def test_icmp_sizes_and_tcp(tmp_path, prop, plane):
    """``plane``: the DataPlane backend and worker count (process-2 is what the daemons run)."""
    ike_p, esp_p = PROPOSALS[prop]
    backend, workers = plane.split("-")
    with SwanLab(tmp_path, "psk") as lab:
        lab.charon.load(swan_ue_conf(lab, ike_p, esp_p, {"t": {"mode": "tunnel", "local_ts": "dynamic",
                                                              "remote_ts": NET4}}))
        spec = our_gw_spec(lab, ike_p, esp_p)
        spec["dataplane"].update(backend=backend, workers=int(workers))
        gw = lab.driver(spec)
        lab.charon.initiate(child="t", ike="ue")
        child = gw.wait_event("ChildSaEstablished")
        for size in SIZES:
            for side, src, dst in (("b", VIP4, GW_INNER4), ("a", GW_INNER4, VIP4)):
                res = lab.pair.run(side, ["ping", "-c", "2", "-i", "0.05", "-W", "2", "-s", str(size), "-I", src, dst],
                                   check=False)
                assert " 0% packet loss" in res.stdout, (size, side, res.stdout + res.stderr)
        st = gw.cmd("stats")["dataplane"]["sas"]
        sa_in, sa_out = st[str(child["spi_in"])], st[str(child["spi_out"])]
        assert sa_in["auth_failures"] == 0 and sa_in["replay_drops"] == 0 and sa_in["malformed"] == 0, sa_in
        assert sa_in["packets_in"] >= 4 * len(SIZES) and sa_out["packets_out"] >= 4 * len(SIZES)
        swan = lab.swan_sas()["ue"]["child-sas"]
        swan_child = next(v for v in swan.values() if v["name"] == "t")
        assert int(swan_child["packets-in"]) == sa_out["packets_out"]   # every packet we sent was accepted
        assert int(swan_child["packets-out"]) == sa_in["packets_in"]    # and we accepted every one of charon's
        keys = gw.cmd("keys")
        rep = assert_capture_clean(lab, keys, min_esp=8 * len(SIZES))   # stops the capture (before iperf3)
        assert rep["esp_icv_good"] == rep["esp"]
        if shutil.which("iperf3"):
            server = lab.pair.popen("a", ["iperf3", "-s", "-1", "-B", GW_INNER4], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.5)
                for extra in ([], ["-R"]):
                    res = lab.pair.run("b", ["iperf3", "-c", GW_INNER4, "-B", VIP4, "-t", "1", "-J", *extra],
                                       check=False, timeout=30)
                    assert res.returncode == 0, res.stdout[-2000:] + res.stderr
                    assert json.loads(res.stdout)["end"]["sum_received"]["bytes"] > 100_000
                    if not extra:
                        server.wait(10)
                        server = lab.pair.popen("a", ["iperf3", "-s", "-1", "-B", GW_INNER4],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(0.5)
            finally:
                server.kill()
                server.wait()
            st = gw.cmd("stats")["dataplane"]["sas"]
            assert st[str(child["spi_in"])]["auth_failures"] == 0 and st[str(child["spi_in"])]["malformed"] == 0
        gw.close()
