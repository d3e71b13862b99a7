"""Baseline: strongSwan 5.9.8 (charon + kernel-libipsec) between two namespaces on this machine.

Measured in the same run as our own figures so ratios are honest: attach time (initiate to CHILD_SA
installed, PSK), TCP throughput through the tunnel (iperf3), tunnel RTT, and responder IKE setups
per second with many initiations fired at once. ``python -m bench.strongswan``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from s2c.lab.strongswan import Charon, available, render
from s2c.testing.netns import NsPair

A, B = "198.51.100.1", "198.51.100.2"
IN_A, IN_B = "203.0.113.1", "203.0.113.2"


def _conf(local, remote, lid, rid, lts, rts, n_conns=1):
    conns = {}
    for i in range(n_conns):
        name = "c" if n_conns == 1 else f"c{i}"
        conns[name] = {
            "local_addrs": local, "remote_addrs": remote, "encap": True, "version": 2,
            "proposals": "aes128gcm16-prfsha256-x25519", "unique": "never",
            "local": {"auth": "psk", "id": lid if n_conns == 1 else f"{i}.{lid}"},
            "remote": {"auth": "psk", "id": rid if n_conns == 1 else "%any"},
            "children": {"t": {"local_ts": lts, "remote_ts": rts, "esp_proposals": "aes128gcm16",
                               "mode": "tunnel"}},
        }
        if n_conns > 1 and local == B:
            break  # the responder needs a single wildcard connection
    return render({"connections": conns, "secrets": {"ike-1": {"secret": "s2c-bench-psk"}}})


def _iperf(pair: NsPair, server: str, bind: str | None, seconds: int) -> float:
    srv = pair.popen("b", ["iperf3", "-s", "-1", "-B", server], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", server, "-t", str(seconds), "-J"] + (["-B", bind] if bind else [])
        out = json.loads(pair.run("a", argv, timeout=seconds + 20).stdout)
        return out["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        srv.kill()
        srv.wait()


def _rtt(pair: NsPair, dst: str, src: str | None, count: int = 50) -> float:
    argv = ["ping", "-c", str(count), "-i", "0.01", "-q", dst] + (["-I", src] if src else [])
    out = pair.run("a", argv, timeout=30).stdout
    # rtt min/avg/max/mdev = a/b/c/d ms ; median is not printed by ping: use avg of the quiet run
    return float(out.rsplit("=", 1)[1].split("/")[1])


def run(attach_runs: int = 10, iperf_seconds: int = 5, setups: int = 100) -> dict:
    ok, why = available()
    if not ok:
        return {"skipped": why}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="s2c-bench-sw-") as tmp, \
            NsPair("s2cb-sw", [f"{A}/24"], [f"{B}/24"], lo_a=[f"{IN_A}/32"], lo_b=[f"{IN_B}/32"]) as pair:
        results["plain_veth_mbps"] = _iperf(pair, B, None, iperf_seconds)
        results["plain_veth_rtt_ms"] = _rtt(pair, B, None)
        a = Charon(pair.name("a"), Path(tmp) / "a", log_level=0)
        b = Charon(pair.name("b"), Path(tmp) / "b", log_level=0)
        with a, b:
            a.load(_conf(A, B, "a@s2c.test", "b@s2c.test", f"{IN_A}/32", f"{IN_B}/32"))
            b.load(_conf(B, A, "b@s2c.test", "a@s2c.test", f"{IN_B}/32", f"{IN_A}/32"))
            times = []
            for _ in range(attach_runs):
                times.append(a.initiate(child="t"))
                a.terminate("c")
                time.sleep(0.05)
            results["attach_ms_median"] = statistics.median(times) * 1000
            a.initiate(child="t")
            results["tunnel_mbps"] = _iperf(pair, IN_B, IN_A, iperf_seconds)
            results["tunnel_rtt_ms"] = _rtt(pair, IN_B, IN_A)
            a.terminate("c")
        # responder setups/s: many initiator connections fired at once at one responder
        a = Charon(pair.name("a"), Path(tmp) / "a2", log_level=0,
                   extra_conf="  init_limit_half_open = 0\n  ikesa_table_size = 1024\n")
        b = Charon(pair.name("b"), Path(tmp) / "b2", log_level=0,
                   extra_conf="  init_limit_half_open = 0\n  ikesa_table_size = 1024\n"
                              "  dos_protection = no\n")
        with a, b:
            a.load(_conf(A, B, "ue.s2c.test", "b@s2c.test", "dynamic", "dynamic", n_conns=setups))
            b.load(_conf(B, A, "b@s2c.test", "%any", "dynamic", "dynamic", n_conns=setups))
            t0 = time.perf_counter()
            procs = [pair.popen("a", ["swanctl", "--initiate", "--ike", f"c{i}", "--timeout", "-1", "--uri", a.vici],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(setups)]
            for p in procs:
                p.wait()
            deadline = time.perf_counter() + 60
            count = 0
            while time.perf_counter() < deadline:
                count = b.established_count()
                if count >= setups:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            results["setups"] = count
            results["setups_per_s"] = count / elapsed
    return results


def main() -> int:
    res = run()
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
