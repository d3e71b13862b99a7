"""HSS/AAA daemon throughput and latency over loopback (docs/hss.md "Performance").

Starts the real ``hss`` daemon (``python -m hss``) as a subprocess, then drives it from this process
with C concurrent asyncio Diameter clients (one TCP connection each, one outstanding request each):

* ``mar``: SWx MAR/MAA round trips (one fresh vector each, SQN persisted per the daemon's
  ``sqn_reserve``);
* ``store``: ``SubscriberStore.next_vector`` in-process, ``sqn_reserve`` 1 vs N (fsync cost);
* ``der``: full EAP-AKA authentications over S6b (DER identity -> DEA 1001 challenge -> DER
  response -> DEA 2001 + MSK), each client running the peer side ``AkaPeer`` with the right K.

Reports round trips (or authentications) per second, median and p99 latency per round trip.

Run: .venv/bin/python bench/hss.py [--seconds 5] [--clients 1,50] [--reserve 32] [--kinds mar,der]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hss.client import CLIENT_IDENTITY, AsyncDiameterClient  # noqa: E402
from hss.testing import K, OPC, REALM, HssLauncher  # noqa: E402
from s2c.codec.diameter import DiameterFramer, ResultCode  # noqa: E402
from s2c.diameter.messages import build_cer, build_mar  # noqa: E402

N_SUBSCRIBERS = 64


def subscribers() -> list[dict]:
    return [{"imsi": f"0010100000{i:05d}", "k": K.hex(), "opc": OPC.hex()} for i in range(N_SUBSCRIBERS)]


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class RawMarClient:
    """A lean MAR client: one pre-serialised MAR whose hop-by-hop / end-to-end ids are patched per
    request; answers are framed, not parsed (the Result-Code AVP 2001 is matched as bytes), so the
    client spends as little of the shared CPUs as possible."""

    RESULT_2001 = struct.pack("!IIII", 268, (0x40 << 24) | 12, 2001, 0)[:12]

    def __init__(self, template: bytes):
        self.template = bytearray(template)
        self.framer = DiameterFramer()
        self.waiters: dict[int, asyncio.Future[bytes]] = {}
        self.hbh = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF

    async def connect(self, port: int) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader_task = asyncio.create_task(self._read(reader))
        cer = build_cer(CLIENT_IDENTITY)
        cer.hop_by_hop = cer.end_to_end = self.hbh
        fut = asyncio.get_running_loop().create_future()
        self.waiters[self.hbh] = fut
        self.writer.write(cer.serialize())
        await fut

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(65536):
            for frame in self.framer.feed_frames(data):
                fut = self.waiters.pop(int.from_bytes(frame[12:16], "big"), None)
                if fut is not None:
                    fut.set_result(frame)

    async def mar(self) -> bool:
        self.hbh = (self.hbh + 1) & 0xFFFFFFFF
        struct.pack_into("!II", self.template, 12, self.hbh, self.hbh)
        fut = asyncio.get_running_loop().create_future()
        self.waiters[self.hbh] = fut
        self.writer.write(bytes(self.template))
        frame = await fut
        return self.RESULT_2001 in frame

    async def close(self) -> None:
        self.writer.close()
        self.reader_task.cancel()


async def run_mar(port: int, clients: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    stop_at = 0.0

    async def worker(idx: int) -> None:
        nonlocal errors
        imsi = f"0010100000{idx % N_SUBSCRIBERS:05d}"
        template = build_mar(CLIENT_IDENTITY, session_id=f"bench;{idx};1", destination_realm=REALM,
                             user_name=imsi).serialize()
        c = RawMarClient(template)
        await c.connect(port)
        await start.wait()
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                ok = await c.mar()
                lat.append(time.perf_counter() - t0)
                errors += 0 if ok else 1
        finally:
            await c.close()

    start = asyncio.Event()
    tasks = [asyncio.create_task(worker(i)) for i in range(clients)]
    await asyncio.sleep(0.3)
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    return _summary("mar", clients, len(lat), elapsed, lat, errors)


async def run_der(port: int, clients: int, seconds: float, method: str) -> dict:
    from hss.testing import eap_over_s6b_async, identity_response, make_peer
    from s2c.eap_aka import AuthenticationSucceeded

    lat: list[float] = []
    auths = 0
    errors = 0
    stop_at = 0.0

    async def worker(idx: int) -> None:
        nonlocal auths, errors
        c = AsyncDiameterClient()
        await c.connect("127.0.0.1", port)
        await start.wait()
        n = 0
        imsi = f"0010100000{idx % N_SUBSCRIBERS:05d}"
        try:
            while time.perf_counter() < stop_at:
                n += 1
                peer, nai = make_peer(imsi, method=method)
                answers, events = await eap_over_s6b_async(c, peer, f"bench;{idx};{n}", identity_response(nai), lat)
                ok = (answers[-1].result_code == ResultCode.DIAMETER_SUCCESS
                      and any(isinstance(e, AuthenticationSucceeded) for e in events))
                auths += 1
                errors += 0 if ok else 1
        finally:
            await c.close()

    start = asyncio.Event()
    tasks = [asyncio.create_task(worker(i)) for i in range(clients)]
    await asyncio.sleep(0.3)
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    out = _summary("der", clients, len(lat), elapsed, lat, errors)
    out["auths"] = auths
    out["auths_per_s"] = round(auths / elapsed, 1)
    return out


def run_store(reserve: int, n: int = 5000) -> dict:
    """In-process ``SubscriberStore.next_vector`` (no Diameter): what SQN persistence costs."""
    from hss.store import SubscriberStore

    with tempfile.TemporaryDirectory(prefix="s2ct-hs-store-") as tmp:
        st = SubscriberStore(os.path.join(tmp, "hss.db"), sqn_reserve=reserve)
        for sub in subscribers():
            st.add(sub)
        lat = []
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            st.next_vector(f"0010100000{i % N_SUBSCRIBERS:05d}", os.urandom)
            lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
        commits = st.commits
        st.close()
    out = _summary("store", 1, n, elapsed, lat, 0)
    out["commits"] = commits
    out["p999_ms"] = round(pct(lat, 99.9) * 1e3, 3)
    return out


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(kind: str, clients: int, n: int, elapsed: float, lat: list[float], errors: int) -> dict:
    return {
        "kind": kind,
        "clients": clients,
        "round_trips": n,
        "seconds": round(elapsed, 2),
        "rt_per_s": round(n / elapsed, 1),
        "median_ms": round(statistics.median(lat) * 1e3, 3) if lat else None,
        "p99_ms": round(pct(lat, 99) * 1e3, 3) if lat else None,
        "errors": errors,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", default="1,50")
    ap.add_argument("--kinds", default="store,mar,der")
    ap.add_argument("--reserve", type=int, default=32, help="daemon sqn_reserve (1 = one fsync per vector)")
    ap.add_argument("--method", default="aka", choices=["aka", "aka'"])
    ap.add_argument("--log-level", default="INFO", help="daemon log level (INFO logs every vector)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    results = []
    if "store" in a.kinds.split(","):
        for reserve in sorted({1, a.reserve}):
            r = run_store(reserve)
            r["sqn_reserve"] = reserve
            results.append(r)
            if not a.json:
                print(f"store next_vector reserve={reserve}: {r['rt_per_s']:8,.0f} vectors/s, median {r['median_ms']} ms, "
                      f"p99 {r['p99_ms']} ms, p99.9 {r['p999_ms']} ms, {r['commits']} commits", flush=True)
    kinds = [k for k in a.kinds.split(",") if k in ("mar", "der")]
    counters: dict = {}
    with tempfile.TemporaryDirectory(prefix="s2ct-hs-bench-") as tmp:
        launcher = HssLauncher(tmp)
        try:
            if not kinds:
                return _print_json(a, results, counters)
            d = launcher.start(subscribers=subscribers(), sqn_reserve=a.reserve, method=a.method,
                               log_level=a.log_level)
            for kind in kinds:
                for c in (int(x) for x in a.clients.split(",")):
                    cpu0, me0 = proc_cpu(d.proc.pid), time.process_time()
                    if kind == "mar":
                        r = asyncio.run(run_mar(d.port, c, a.seconds))
                    else:
                        r = asyncio.run(run_der(d.port, c, a.seconds, a.method))
                    cpu, me = proc_cpu(d.proc.pid) - cpu0, time.process_time() - me0
                    r["sqn_reserve"] = a.reserve
                    # CPU cost per round trip: independent of what else runs on the machine
                    r["daemon_cpu_us_per_rt"] = round(cpu / max(1, r["round_trips"]) * 1e6, 1)
                    r["daemon_cpu_s"] = round(cpu, 2)
                    r["client_cpu_s"] = round(me, 2)
                    r["daemon_capacity_rt_per_cpu_s"] = round(r["round_trips"] / cpu, 0) if cpu else None
                    r["load_avg_1m"] = os.getloadavg()[0]
                    results.append(r)
                    if not a.json:
                        extra = f", {r['auths_per_s']:,.0f} auths/s" if "auths_per_s" in r else ""
                        print(f"{kind} clients={c:3d} reserve={a.reserve}: {r['rt_per_s']:8,.0f} round trips/s{extra}, "
                              f"median {r['median_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}; "
                              f"daemon {r['daemon_cpu_us_per_rt']} us CPU/round trip "
                              f"(= {r['daemon_capacity_rt_per_cpu_s']:,.0f}/s per core), "
                              f"daemon {r['daemon_cpu_s']} s + client {r['client_cpu_s']} s CPU in {r['seconds']} s, "
                              f"load {r['load_avg_1m']:.1f}", flush=True)
            counters = d.ctl.call("counters")
        finally:
            launcher.close()
    return _print_json(a, results, counters)


def _print_json(a: argparse.Namespace, results: list[dict], counters: dict) -> int:
    if a.json:
        print(json.dumps({"results": results, "daemon_counters": counters, "cpus": os.cpu_count(),
                          "load_avg": os.getloadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
