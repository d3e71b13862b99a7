"""Diameter load client: request/answer round trips per second and latency over loopback TCP.

Usage::

    python bench/diameter.py                         # echo server in a subprocess, DER, 1 and 50 in flight
    python bench/diameter.py --server echo           # echo server in this process (one core)
    python bench/diameter.py --connect 127.0.0.1:3868 --kind mar   # an already running server (e.g. hss)
    python bench/diameter.py --json

Pluggable server: ``run_bench(server_factory=...)`` takes ``async factory(host, port) -> stop``
where ``stop`` is an async callable; :func:`echo_server` and :func:`subprocess_server` are examples
(the HSS helper can plug ``hss`` in the same way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

from s2c.codec.diameter import ApplicationId, CommandCode, DiameterMessage, ResultCode
from s2c.diameter.messages import (
    LocalIdentity,
    SipAuthDataItem,
    build_dea,
    build_der,
    build_error_answer,
    build_maa,
    build_mar,
    make_session_id,
)
from s2c.diameter.peer import DiameterPeer, PeerRole
from s2c.diameter.transport import DiameterConnection, connect, serve

Stop = Callable[[], Awaitable[None]]
ServerFactory = Callable[[str, int], Awaitable[Stop]]

S6B = int(ApplicationId.S6B_3GPP)
SWX = int(ApplicationId.SWX_3GPP)
ECHO_ID = LocalIdentity("echo.example.org", "example.org", ("127.0.0.1",),
                        vendor_specific_application_ids=((10415, S6B), (10415, SWX)))
CLIENT_S6B = LocalIdentity("bench-pgw.example.org", "example.org", ("127.0.0.1",),
                           vendor_specific_application_ids=((10415, S6B),))
CLIENT_SWX = LocalIdentity("bench-aaa.example.org", "example.org", ("127.0.0.1",),
                           vendor_specific_application_ids=((10415, SWX),))
_ITEM = SipAuthDataItem("EAP-AKA", bytes(32), bytes(8), bytes(16), bytes(16), 1)


def _echo_answer(req: DiameterMessage, conn: DiameterConnection) -> DiameterMessage:
    if req.command_code == CommandCode.DIAMETER_EAP:
        return build_dea(req, ECHO_ID, result_code=ResultCode.DIAMETER_MULTI_ROUND_AUTH,
                         eap_payload=b"\x01\x01\x00\x05\x01")
    if req.command_code == CommandCode.MULTIMEDIA_AUTH:
        return build_maa(req, ECHO_ID, items=[_ITEM], result_code=ResultCode.DIAMETER_SUCCESS)
    return build_error_answer(req, ECHO_ID, ResultCode.DIAMETER_UNABLE_TO_COMPLY)


async def echo_server(host: str, port: int) -> Stop:
    """In-process trivial server: DER -> DEA(1001), MAR -> MAA(2001)."""
    server = await serve(host, port, lambda now: DiameterPeer(PeerRole.RESPONDER, ECHO_ID, now), _echo_answer)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


def subprocess_server(argv_for_port: Callable[[int], Sequence[str]], ready_timeout: float = 10.0) -> ServerFactory:
    """Factory running a server in a child process (its own core); waits until the port accepts."""

    async def factory(host: str, port: int) -> Stop:
        proc = subprocess.Popen(list(argv_for_port(port)))
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                _, w = await asyncio.open_connection(host, port)
                w.close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    raise RuntimeError("bench server did not start") from None
                await asyncio.sleep(0.05)

        async def stop() -> None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        return stop

    return factory


ECHO_SUBPROCESS = subprocess_server(lambda port: [sys.executable, os.path.abspath(__file__), "--serve-echo", str(port)])


@dataclass
class BenchResult:
    kind: str
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int


def _request(kind: str, ident: LocalIdentity, i: int) -> DiameterMessage:
    sid = make_session_id(ident.origin_host, 7, i)
    if kind == "mar":
        return build_mar(ident, session_id=sid, destination_realm="example.org", user_name=f"0001010{i:09d}@nai.epc")
    return build_der(ident, session_id=sid, destination_realm="example.org",
                     eap_payload=b"\x02\x00\x00\x1d\x01" + f"0001010{i:09d}@nai.epc"[:24].encode(),
                     user_name=f"0001010{i:09d}@nai.epc")


def _pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


async def measure(host: str, port: int, kind: str, concurrency: int, total: int) -> BenchResult:
    ident = CLIENT_SWX if kind == "mar" else CLIENT_S6B
    client = await connect(host, port, ident, request_timeout=30.0, watchdog_interval=60.0)
    lat: list[float] = []
    errors = 0
    counter = iter(range(total))
    # warm-up
    for i in range(min(200, total)):
        await client.request(_request(kind, ident, i))

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            msg = _request(kind, ident, i)
            t0 = time.perf_counter()
            try:
                ans = await client.request(msg)
                if ans.result_code is None and ans.experimental_result is None:
                    errors += 1
            except Exception:
                errors += 1
                continue
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    dt = time.perf_counter() - t0
    await client.close()
    lat.sort()
    return BenchResult(kind, concurrency, total, round(dt, 4), round(total / dt, 1),
                       round(_pct(lat, 0.50) * 1e3, 3), round(_pct(lat, 0.99) * 1e3, 3),
                       round(lat[-1] * 1e3, 3) if lat else float("nan"), errors)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_bench(
    server_factory: ServerFactory | None = ECHO_SUBPROCESS,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    kind: str = "der",
    concurrencies: Sequence[int] = (1, 50),
    requests: int = 5000,
) -> list[BenchResult]:
    """Start the server (unless ``server_factory`` is None: connect to host:port), measure each concurrency."""
    if port is None:
        port = _free_port()
    stop = await server_factory(host, port) if server_factory is not None else None
    try:
        return [await measure(host, port, kind, c, requests) for c in concurrencies]
    finally:
        if stop is not None:
            await stop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", choices=["echo", "echo-proc"], default="echo-proc")
    ap.add_argument("--connect", metavar="HOST:PORT", help="bench an already running server")
    ap.add_argument("--kind", choices=["der", "mar"], default="der")
    ap.add_argument("--concurrency", default="1,50", help="comma list of in-flight requests")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.serve_echo is not None:
        async def forever() -> None:
            await echo_server("127.0.0.1", a.serve_echo)
            await asyncio.Event().wait()

        try:
            asyncio.run(forever())
        except KeyboardInterrupt:
            pass
        return 0

    conc = [int(x) for x in a.concurrency.split(",")]
    if a.connect:
        host, _, p = a.connect.rpartition(":")
        results = asyncio.run(run_bench(None, host=host, port=int(p), kind=a.kind, concurrencies=conc,
                                        requests=a.requests))
    else:
        factory = echo_server if a.server == "echo" else ECHO_SUBPROCESS
        results = asyncio.run(run_bench(factory, kind=a.kind, concurrencies=conc, requests=a.requests))
    if a.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.kind} in-flight={r.concurrency:3d}  {r.rps:9.1f} req/s  p50 {r.p50_ms:7.3f} ms  "
                  f"p99 {r.p99_ms:7.3f} ms  max {r.max_ms:7.3f} ms  errors {r.errors}  ({r.requests} in {r.seconds}s)")
    return 0 if all(r.errors == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
