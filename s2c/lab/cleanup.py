"""Remove what a killed or crashed run left behind: namespaces, their processes, stray veths.

``cleanup(prefix)`` finds every namespace under /run/netns whose name starts with ``prefix``,
kills every process living in it (found by comparing /proc/<pid>/ns/net with the namespace file),
removes the namespace (its veths, bridges, qdiscs and nft tables die with it) and deletes veths
left in the root namespace whose name starts with the prefix. ``s2c clean`` calls it with "s2c-";
tests call it with their own run-id prefix.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from s2c.lab import nsexec


def cleanup(prefix: str = "s2c-", run_dirs: list[Path] | None = None) -> dict[str, Any]:
    """Remove every namespace (and its processes) whose name starts with ``prefix``.

    ``run_dirs``: optional run directories whose state.json lists pids to kill too (processes that
    left their namespace). Returns {"namespaces": [...], "pids": [...], "veths": [...],
    "errors": [...]}.
    """
    if not prefix:
        raise ValueError("cleanup needs a non-empty prefix")
    report: dict[str, Any] = {"namespaces": [], "pids": [], "veths": [], "errors": []}
    names = [n for n in nsexec.list_netns() if n.startswith(prefix)]
    paths = [nsexec.netns_path(n) for n in names]

    # pids recorded by runs (only those still in one of the namespaces we remove, or whose
    # command line we started: never a recycled pid of an unrelated process)
    recorded: set[int] = set()
    for rd in run_dirs or []:
        recorded |= _recorded_pids(Path(rd), prefix)

    victims: set[int] = set(nsexec.pids_entering(prefix))
    for pids in nsexec.pids_in_netns(paths).values():
        victims.update(pids)
    victims |= recorded
    victims.discard(os.getpid())
    if victims:
        report["pids"] = sorted(nsexec.kill_pids(sorted(victims), grace=1.0))
        # processes being killed may still pin the namespace a moment; that is fine, the
        # mount is detached and the kernel frees it when the last reference goes
    for name in names:
        try:
            if nsexec.remove_namespace(name):
                report["namespaces"].append(name)
        except OSError as exc:
            report["errors"].append(f"{name}: {exc}")
    report["veths"] = _remove_root_veths(prefix, report["errors"])
    return report


def _recorded_pids(run_dir: Path, prefix: str) -> set[int]:
    try:
        state = json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return set()
    if not str(state.get("run_id", "")).startswith(prefix):
        return set()
    out = set()
    for entry in state.get("pids", []):
        pid = entry.get("pid")
        argv = entry.get("argv") or []
        if isinstance(pid, int) and argv and _cmdline_matches(pid, argv):
            out.add(pid)
    return out


def _cmdline_matches(pid: int, argv: list[str]) -> bool:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    parts = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    return bool(parts) and parts[: len(argv)] == argv[: len(parts)]


def _remove_root_veths(prefix: str, errors: list[str]) -> list[str]:
    """Delete interfaces in the root namespace named with the prefix (the backend never makes
    any, but an interrupted older run or another tool might have)."""
    removed: list[str] = []
    short = prefix[:15]
    try:
        from pyroute2 import IPRoute
    except ImportError:  # pragma: no cover
        return removed
    try:
        with IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get("ifname") or ""
                info = link.get(("linkinfo", "kind")) if hasattr(link, "get") else None
                if name.startswith(short) and info == "veth":
                    try:
                        if ipr.link_lookup(ifname=name):  # else it went with its peer
                            ipr.link("del", index=link["index"])
                        removed.append(name)
                    except Exception as exc:  # noqa: BLE001
                        errors.append(f"{name}: {exc}")
    except Exception as exc:  # noqa: BLE001
        errors.append(f"root links: {exc}")
    return removed


def wait_gone(prefix: str, timeout: float = 2.0) -> bool:
    """True once no namespace and no process in one remains under ``prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(n.startswith(prefix) for n in nsexec.list_netns()):
            return True
        time.sleep(0.02)
    return False
