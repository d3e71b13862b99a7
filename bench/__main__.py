"""``make bench``: run every benchmark in turn and print its figures.

Each benchmark is a module ``bench.<name>`` runnable on its own (``python -m bench.<name> --help``);
this runner only sequences them, streams their output (they print medians and, where a baseline is
measured in the same run, ratios) and says which failed. ``python -m bench --only esp,ike``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# name -> (argv after ``python -m bench.<name>``, what it measures)
BENCHES: dict[str, tuple[list[str], str]] = {
    "topology": ([], "default topology build + teardown (median of 10)"),
    "runner": ([], "scenario runner per-step overhead"),
    "milenage": ([], "Milenage authentication vectors per second"),
    "diameter": ([], "Diameter DER/MAR round trips/s, 1 and 50 in flight (echo server)"),
    "hss": ([], "HSS daemon MAR/MAA and DER/DEA round trips/s, 1 and 50 clients"),
    "ike": ([], "in-memory IKE_SA_INIT + IKE_AUTH handshakes per second"),
    "esp": ([], "userspace ESP: per-packet cost, iperf3 throughput and RTT vs plain veth"),
    "strongswan": ([], "strongSwan kernel-libipsec baseline: attach, throughput, RTT, setups/s"),
    "attach": ([], "our UE/PDN GW attach, throughput and setups/s vs strongSwan (same run)"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    ap.add_argument("--timeout", type=float, default=900, help="seconds per benchmark (default 900)")
    args = ap.parse_args(argv)
    names = list(BENCHES) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    failed: list[str] = []
    for i, name in enumerate(names, 1):
        extra, what = BENCHES[name]
        if not os.path.exists(os.path.join(here, "bench", f"{name}.py")):
            print(f"\n[{i}/{len(names)}] {name}: not present in this tree, skipped", flush=True)
            continue
        print(f"\n[{i}/{len(names)}] {name}: {what}", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], cwd=here,
                                timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        took = time.perf_counter() - t0
        status = "ok" if rc == 0 else f"FAILED ({rc})"
        if rc != 0:
            failed.append(name)
        print(f"[{i}/{len(names)}] {name}: {status} in {took:.1f} s", flush=True)
    print(f"\nbenchmarks: {len(names) - len(failed)} ok, {len(failed)} failed" +
          (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
