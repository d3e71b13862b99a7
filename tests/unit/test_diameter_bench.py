"""Smoke test of the Diameter load client against the in-process echo server."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "diameter.py"


def test_bench_echo_smoke() -> None:
    spec = importlib.util.spec_from_file_location("bench_diameter", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_diameter"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    for kind in ("der", "mar"):
        results = asyncio.run(mod.run_bench(mod.echo_server, kind=kind, concurrencies=(1, 10), requests=300))
        assert [r.concurrency for r in results] == [1, 10]
        for r in results:
            assert r.errors == 0 and r.requests == 300 and r.rps > 0 and r.p50_ms <= r.p99_ms
