"""Userspace ESP benchmarks.

(a) per-packet encapsulate/decapsulate cost, 1400-byte packets, both suites (median of runs);
(b) iperf3 TCP throughput through the userspace tunnel between two namespaces vs plain veth;
(c) RTT (ping -c 50 -i 0.01, median) through the tunnel vs plain veth.

Run: .venv/bin/python bench/esp.py [--seconds 10] [--only micro|net] [--raw-esp] [--workers 1,2]
     [--suite gcm128|gcm256|cbc128|cbc256] [--mtu N] [--pin] [--nice N]
(b) and (c) need root; namespaces are named s2ct-esb<random> and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid

from s2c.dataplane.testbed import EspLab, nsx
from s2c.esp.sa import EspSa

PKT = bytes.fromhex("45000578000140004006") + bytes(1390)  # a 1400-byte IPv4 packet


def micro(n: int = 20000, runs: int = 7) -> dict[str, dict[str, float]]:
    suites = {
        "aes-gcm-128": dict(encr=20, encr_key=os.urandom(20)),
        "aes-gcm-256": dict(encr=20, encr_key=os.urandom(36)),
        "aes-cbc-128+hmac-sha256": dict(encr=12, encr_key=os.urandom(16), integ=12, integ_key=os.urandom(32)),
    }
    res = {}
    for name, kw in suites.items():
        enc_t, dec_t = [], []
        for _ in range(runs):
            out = EspSa(spi=0x1000, direction="out", mode="tunnel", rng=os.urandom, **kw)
            inn = EspSa(spi=0x1000, direction="in", mode="tunnel", replay_window=1024, **kw)
            t0 = time.perf_counter()
            pkts = [out.encapsulate(PKT) for _ in range(n)]
            t1 = time.perf_counter()
            for p in pkts:
                inn.decapsulate(p)
            t2 = time.perf_counter()
            enc_t.append((t1 - t0) / n * 1e6)
            dec_t.append((t2 - t1) / n * 1e6)
        res[name] = {"encap_us": statistics.median(enc_t), "decap_us": statistics.median(dec_t)}
    return res


def iperf(ns_server: str, ns_client: str, addr: str, seconds: int) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", ns_server, "iperf3", "-s", "-1", "-B", addr],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = nsx(ns_client, "iperf3", "-c", addr, "-t", str(seconds), "-J", check=False, timeout=seconds + 30)
        j = json.loads(r.stdout)
        return j["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def ping_median(ns: str, addr: str, count: int = 50) -> float:
    r = nsx(ns, "ping", "-c", str(count), "-i", "0.01", "-W", "2", addr, check=False, timeout=60)
    times = [float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout)]
    return statistics.median(times) if times else float("nan")


def net(seconds: int, udp_encap: bool, workers: int, suite: str, mtu: int | None = None,
        nice: int = 0, pin: bool = False, busy_poll_us: int = 0) -> dict[str, float]:
    n = os.cpu_count() or 1
    cpus = {"a": [0, 1 % n], "b": [0, 1 % n]} if pin else {}  # A's encrypting and B's decrypting loops apart
    with EspLab("s2ct-esb" + uuid.uuid4().hex[:4], suite=suite, udp_encap=udp_encap, workers=workers,
                transport=False, mtu=mtu, nice=nice, cpus=cpus,
                busy_poll_us=busy_poll_us) as lab:
        nsx(lab.ns_a, "ping", "-c", "3", "-i", "0.05", "10.77.0.2", check=False)  # warm up ARP / caches
        out = {
            "veth_mbps": iperf(lab.ns_b, lab.ns_a, lab.outer["b"], seconds),
            "tunnel_mbps": iperf(lab.ns_b, lab.ns_a, lab.inner["b"], seconds),
            "veth_rtt_ms": ping_median(lab.ns_a, lab.outer["b"]),
            "tunnel_rtt_ms": ping_median(lab.ns_a, lab.inner["b"]),
        }
        st = lab.stats("b")
        inbound = st["sas"][str(lab.spi_ab)]
        out["replay_drops"] = inbound["replay_drops"]
        out["auth_failures"] = inbound["auth_failures"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--only", choices=["micro", "net"])
    ap.add_argument("--raw-esp", action="store_true", help="plain ESP (IP protocol 50) instead of UDP 4500")
    ap.add_argument("--workers", default="1,2", help="worker layouts to measure: 1 (one loop), 2 (tx + rx)")
    ap.add_argument("--suite", default="gcm128", choices=["gcm128", "gcm256", "cbc128", "cbc256"])
    ap.add_argument("--nice", type=int, default=0, help="worker niceness, e.g. -10 on a loaded host")
    ap.add_argument("--pin", action="store_true", help="pin tx/rx worker processes to CPUs 0/1")
    ap.add_argument("--busy-poll", default="20000",
                    help="busy-poll windows in us to measure, e.g. 0,20000 (default: the daemons' 20000)")
    ap.add_argument("--no-gso", action="store_true",
                    help="send ESP-in-UDP datagram by datagram (the lab default; GSO is on for this bench)")
    ap.add_argument("--mtu", type=int, default=None,
                    help="TUN MTU; above ~1400 the outer ESP packets are IP-fragmented (default: no fragmentation)")
    a = ap.parse_args()
    if a.only != "net":
        print("(a) per-packet cost, 1400-byte packets, median of 7 runs x 20000")
        for name, r in micro().items():
            print(f"    {name:26s} encapsulate {r['encap_us']:5.2f} us   decapsulate {r['decap_us']:5.2f} us")
    if a.only == "micro":
        return
    if os.geteuid() != 0:
        print("(b)/(c) skipped: need root for namespaces", file=sys.stderr)
        return
    # UDP GSO on the sender is opt-in in the data plane (it makes veth captures show one oversized frame
    # per run); the throughput figures here are measured with it unless --no-gso
    os.environ["S2C_ESP_GSO"] = "0" if a.no_gso else "1"
    mode = "raw ESP" if a.raw_esp else f"ESP-in-UDP 4500 (UDP GSO {'off' if a.no_gso else 'on'})"
    mtu = f"TUN MTU {a.mtu}" if a.mtu else "default TUN MTU"
    print(f"(b) iperf3 TCP {a.seconds}s and (c) ping -c 50 -i 0.01 median; {a.suite}, {mode}, {mtu}, "
          f"nice {a.nice}{', pinned' if a.pin else ''}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    layouts = [(int(w), int(bp)) for w in a.workers.split(",") for bp in a.busy_poll.split(",")]
    for w, bp in layouts:
        r = net(a.seconds, not a.raw_esp, w, a.suite, a.mtu, a.nice, a.pin, bp)
        print(f"    plain veth                      {r['veth_mbps']:8.0f} Mbit/s   RTT {r['veth_rtt_ms']:.3f} ms")
        print(f"    ESP tunnel, {w} worker(s)/side, busy poll {bp} us  {r['tunnel_mbps']:8.0f} Mbit/s   RTT {r['tunnel_rtt_ms']:.3f} ms"
              f"   ratio {r['tunnel_mbps'] / r['veth_mbps']:.3f}"
              f"   (receiver SA: {r['replay_drops']} replay drops, {r['auth_failures']} auth failures)")


if __name__ == "__main__":
    main()
