"""``s2c validate``, ``s2c run``, ``s2c clean``, ``s2c nodes``: the lab's command line.

Errors the user can fix (invalid scenario, not root, a missing tool) print one line and exit 1 (2 for
usage); a run exits with its result's code: 0 only if every step passed, 130 if interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("validate", help="check scenario files (no root needed)",
                              description="Load and validate scenario files; print one line per file.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--all-errors", action="store_true", help="print every problem, not just the first")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("run", help="run a scenario", description="Build the lab, run the steps, report.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--backend", default="netns", help="lab backend (default: netns)")
    p.add_argument("--run-dir", type=Path, help="where to write the run's files (default: runs/<run-id>)")
    p.add_argument("--runs-root", type=Path, default=Path("runs"), help="parent of run dirs (default: runs)")
    p.add_argument("--run-id", help="run id (namespace prefix); default s2c-<6 hex>")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--capture", dest="capture", action="store_true", default=None,
                     help="record pcaps (default: the scenario's settings.capture)")
    cap.add_argument("--no-capture", dest="capture", action="store_false", help="no pcaps")
    p.add_argument("--keep-going", action="store_true", default=None,
                   help="run the remaining steps after a failed one")
    p.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("clean", help="remove what killed runs left behind",
                              description="Remove namespaces, processes, veths and control sockets of runs "
                                          "whose id starts with the prefix.")
    p.add_argument("--prefix", default="s2c-", help="run-id prefix (default: s2c-)")
    p.add_argument("--runs-root", type=Path, default=Path("runs"), help="run dirs to read state.json from")
    p.set_defaults(func=cmd_clean)

    p = subparsers.add_parser("nodes", help="list a scenario's nodes and their addresses (no root needed)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_nodes)


def _err(text: str) -> None:
    print(f"s2c: {text}", file=sys.stderr)


# -- validate -------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from s2c.model import ModelError
    from s2c.model.scenario import load_scenario

    rc = 0
    for f in args.files:
        try:
            scn = load_scenario(f)
        except ModelError as exc:
            print(exc.format_all() if args.all_errors else str(exc))
            rc = 1
            continue
        except OSError as exc:
            print(f"{f}: {exc.strerror or exc}")
            rc = 1
            continue
        topo = scn.topology
        print(f"OK {f}: {len(topo.nodes)} nodes, {len(topo.links)} links, {len(scn.steps)} steps")
    return rc


# -- run ------------------------------------------------------------------------------------------


def preflight(backend: str, capture: bool) -> str | None:
    """Why this host cannot run the backend (one line), or None."""
    if backend == "netns":
        if os.geteuid() != 0:
            return "the netns backend needs root: run `sudo s2c run ...`"
        tools = ["ip", "nsenter", "nft", "ping"] + (["tcpdump"] if capture else [])
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            return (f"missing tool{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
                    f"(install with `make deps`, i.e. tools/install-deps.sh)")
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from s2c.lab.backend import BACKENDS, LabError
    from s2c.lab.report import make_console
    from s2c.lab.runner import run_scenario
    from s2c.model import ModelError
    from s2c.model.scenario import load_scenario

    try:
        scn = load_scenario(args.file)
    except ModelError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        _err(f"{args.file}: {exc.strerror or exc}")
        return 1
    if args.backend not in BACKENDS:
        _err(f"unknown backend {args.backend!r} (known: {', '.join(sorted(BACKENDS))})")
        return 2
    if args.run_id is not None and not RUN_ID_RE.match(args.run_id):
        _err(f"bad run id {args.run_id!r}: letters, digits, '.', '_', '-' (<= 41 chars)")
        return 2
    capture = args.capture if args.capture is not None else bool(getattr(scn.settings, "capture", True))
    why = preflight(args.backend, capture)
    if why:
        _err(why)
        return 1
    console = make_console(plain=True if args.plain else None)
    try:
        result = run_scenario(scn, args.backend, run_dir=args.run_dir, console=console, run_id=args.run_id,
                              capture=capture, keep_going=args.keep_going, runs_root=args.runs_root)
    except LabError as exc:
        _err(str(exc))
        return 1
    return result.exit_code


# -- clean ----------------------------------------------------------------------------------------


def cmd_clean(args: argparse.Namespace) -> int:
    from s2c.lab.cleanup import cleanup
    from s2c.lab.runner import SOCKET_ROOT

    if not args.prefix:
        _err("--prefix must not be empty")
        return 2
    if os.geteuid() != 0:
        _err("s2c clean needs root (it removes network namespaces)")
        return 1
    run_dirs = []
    root = Path(args.runs_root)
    if root.is_dir():
        run_dirs = [d for d in root.iterdir() if d.is_dir() and not d.is_symlink() and d.name.startswith(args.prefix)]
    report = cleanup(args.prefix, run_dirs=run_dirs)
    sockets = []
    if SOCKET_ROOT.is_dir():
        for d in SOCKET_ROOT.iterdir():
            if d.name.startswith(args.prefix):
                shutil.rmtree(d, ignore_errors=True)
                sockets.append(str(d))
    for key, label in (("namespaces", "namespace"), ("pids", "process"), ("veths", "veth")):
        for item in report.get(key) or ():
            print(f"removed {label} {item}")
    for d in sockets:
        print(f"removed control socket dir {d}")
    for e in report.get("errors") or ():
        print(f"error: {e}", file=sys.stderr)
    total = sum(len(report.get(k) or ()) for k in ("namespaces", "pids", "veths")) + len(sockets)
    if not total:
        print(f"nothing to clean (prefix {args.prefix!r})")
    return 1 if report.get("errors") else 0


# -- nodes ----------------------------------------------------------------------------------------


def cmd_nodes(args: argparse.Namespace) -> int:
    from s2c.model import ModelError
    from s2c.model.scenario import load_scenario

    try:
        scn = load_scenario(args.file)
    except ModelError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        _err(f"{args.file}: {exc.strerror or exc}")
        return 1
    for name, node in scn.topology.nodes.items():
        kind = getattr(node.kind, "value", node.kind)
        addrs = []
        for iface in node.interfaces.values():
            for a in (*iface.ipv4, *iface.ipv6):
                addrs.append(f"{iface.name}={a}")
        if node.access is not None:
            acc = node.access
            addrs.append(f"access={getattr(acc.type, 'value', acc.type)}")
        print(f"{name:12} {kind:7} {' '.join(addrs)}")
    return 0
