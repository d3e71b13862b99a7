"""Benchmark: the scenario runner's per-step overhead (needs root for the netns backend).

    python -m bench.runner [--steps N] [--backend netns] [--json]

Runs one scenario on the default topology made of N ``wait: 0`` steps followed by N cheap
``expect`` steps (a ``status`` query of cn1 over its control socket), and prints, per kind, the
median/min/max of the step's own duration and of the step-to-step period (the step plus the runner's
bookkeeping: timeout alarm, console, logging, result records).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOPOLOGY = REPO / "scenarios" / "topologies" / "default.yaml"


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0}
    return {"median": round(statistics.median(values) * 1000, 3), "min": round(min(values) * 1000, 3),
            "max": round(max(values) * 1000, 3)}


def bench_steps(n: int = 200, backend: str = "netns", prefix: str = "s2c-bench") -> dict[str, Any]:
    """Run the 2N-step scenario once; milliseconds per step as {kind: {"step": stats, "period": stats}}."""
    from s2c.lab.cleanup import cleanup
    from s2c.lab.runner import run_scenario
    from s2c.model.scenario import load_scenario

    with tempfile.TemporaryDirectory(prefix="s2c-bench-runner-") as tmp:
        path = Path(tmp) / "bench.yaml"
        steps = ["  - wait: 0"] * n + ["  - expect: {node: cn1, path: kind, equals: cn}"] * n
        path.write_text(f"name: bench-runner\ntopology: {TOPOLOGY}\nsettings: {{capture: false}}\nsteps:\n"
                        + "\n".join(steps) + "\n")
        scenario = load_scenario(path)
        run_id = f"{prefix}-{secrets.token_hex(2)}"
        try:
            result = run_scenario(scenario, backend, run_dir=Path(tmp) / "run", run_id=run_id, capture=False)
        finally:
            cleanup(run_id)
    if not result.ok:
        bad = next((s for s in result.steps if not s.ok), None)
        raise SystemExit(f"bench scenario failed: {result.error or (bad and bad.message)}")
    out: dict[str, Any] = {"steps_per_kind": n, "backend": backend}
    steps = result.steps
    for kind in ("wait", "expect"):
        idx = [i for i, s in enumerate(steps) if s.kind == kind]
        own = [steps[i].duration for i in idx]
        period = [steps[i + 1].started - steps[i].started for i in idx if i + 1 < len(steps)]
        out[kind] = {"step": _stats(own), "period": _stats(period)}
    out["total_s"] = round(sum(s.duration for s in steps), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="steps of each kind (default 200)")
    parser.add_argument("--backend", default="netns")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.backend == "netns" and os.geteuid() != 0:
        print("bench.runner: the netns backend needs root", file=sys.stderr)
        return 1
    res = bench_steps(args.steps, args.backend)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"runner per-step overhead, {args.steps} steps of each kind ({args.backend}); milliseconds")
    for kind in ("wait", "expect"):
        st, pe = res[kind]["step"], res[kind]["period"]
        print(f"  {kind:7} step median {st['median']:7.3f} (min {st['min']:.3f}, max {st['max']:.3f})   "
              f"step-to-step median {pe['median']:7.3f} (min {pe['min']:.3f}, max {pe['max']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
