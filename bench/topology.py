"""Benchmark: how long a lab takes to build and tear down on the netns backend (needs root).

    python -m bench.topology [TOPOLOGY.yaml] [--runs N] [--no-capture] [--json]

Prints the median/min/max of build+teardown seconds (and of each half) for the default topology
(scenarios/topologies/default.yaml) unless another file is given.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TOPOLOGY = REPO / "scenarios" / "topologies" / "default.yaml"


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def bench_build_teardown(
    topology: Any,
    runs: int = 10,
    *,
    capture: bool = True,
    backend: str = "netns",
    prefix: str = "s2c-bench",
) -> dict[str, Any]:
    """Build and tear down ``topology`` ``runs`` times; seconds as {"total": {median, min, max},
    "build": {...}, "teardown": {...}, "runs", "nodes", "links", "capture"}."""
    from s2c.lab.backend import get_backend
    from s2c.lab.cleanup import cleanup

    cls = get_backend(backend)
    tag = f"{prefix}-{secrets.token_hex(2)}"
    builds: list[float] = []
    teardowns: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="s2c-bench-") as tmp:
            for i in range(runs):
                lab = cls(f"{tag}-{i}", Path(tmp) / str(i), topology, capture=capture)
                t0 = time.perf_counter()
                try:
                    lab.build()
                    t1 = time.perf_counter()
                finally:
                    lab.teardown()
                t2 = time.perf_counter()
                builds.append(t1 - t0)
                teardowns.append(t2 - t1)
    finally:
        cleanup(tag)
    return {
        "total": _stats([b + t for b, t in zip(builds, teardowns)]),
        "build": _stats(builds),
        "teardown": _stats(teardowns),
        "runs": runs,
        "nodes": len(topology.nodes),
        "links": len(topology.links),
        "capture": capture,
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.topology", description=__doc__.splitlines()[0])
    ap.add_argument("topology", nargs="?", default=str(DEFAULT_TOPOLOGY))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-capture", action="store_true")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.topology needs root (network namespaces)", file=sys.stderr)
        return 2
    path = Path(args.topology)
    if path.exists():
        from s2c.model import load_topology

        topology = load_topology(path)
    else:
        from s2c.lab.sample import small_topology

        print(f"{path} not found; using the built-in sample topology", file=sys.stderr)
        topology = small_topology()
    result = bench_build_teardown(topology, runs=args.runs, capture=not args.no_capture)
    result["topology"] = getattr(topology, "name", str(path))
    if args.json:
        print(json.dumps(result))
    else:
        t, b, d = result["total"], result["build"], result["teardown"]
        print(
            f"{result['topology']}: {result['nodes']} nodes, {result['links']} links, "
            f"capture={'on' if result['capture'] else 'off'}, {result['runs']} runs, {result['cpus']} cpus\n"
            f"  build+teardown  median {t['median']:.3f} s  min {t['min']:.3f} s  max {t['max']:.3f} s\n"
            f"  build           median {b['median']:.3f} s  min {b['min']:.3f} s  max {b['max']:.3f} s\n"
            f"  teardown        median {d['median']:.3f} s  min {d['min']:.3f} s  max {d['max']:.3f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
