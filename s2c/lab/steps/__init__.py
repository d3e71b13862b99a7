"""Step runners: one function per scenario step kind, in an explicit registry.

A step runner is ``fn(ctx: RunContext, step: Step) -> StepOutcome``. It talks to the lab only through
``ctx``: the backend's verbs (``ctx.backend.exec/spawn/move/...``) and node control sockets
(``ctx.control(node).call(cmd, **args)``); it never reaches into a daemon's internals. A runner
reports a failed expectation by returning ``StepOutcome.fail(...)`` or raising :class:`StepFailed`;
any other exception is recorded as an error of that step.

Add a kind in a module of this package (``@register_runner("attach")``) and list the module in
:data:`STEP_MODULES`; :func:`load_runners` imports them all.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2c.runtime.control import ControlClient, ControlError

if TYPE_CHECKING:
    from s2c.lab.backend import Backend, NodeProcess

__all__ = [
    "STEP_RUNNERS", "STEP_MODULES", "STEP_MODULE_ERRORS", "register_runner", "load_runners", "RunContext", "StepOutcome",
    "StepFailed", "StepError", "StepTimeout", "Stream", "StepRunner",
]


class StepFailed(Exception):
    """The step ran but its expectation was not met (status ``failed``)."""

    def __init__(self, message: str, details: dict[str, Any] | None = None, summary: str = ""):
        super().__init__(message)
        self.details = details or {}
        self.summary = summary


class StepError(Exception):
    """The step could not run (bad reference, missing daemon...): status ``error``."""


class StepTimeout(Exception):
    """The step exceeded its time budget (raised in the main thread by the runner's alarm)."""


@dataclass
class StepOutcome:
    """What a step runner returns: status ``passed``/``failed``, a message, key figures, details."""

    status: str = "passed"
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    summary: str = ""  # short key figures for the console line

    @classmethod
    def ok(cls, summary: str = "", **details: Any) -> "StepOutcome":
        return cls("passed", "", details, summary)

    @classmethod
    def fail(cls, message: str, summary: str = "", **details: Any) -> "StepOutcome":
        return cls("failed", message, details, summary)


StepRunner = Callable[["RunContext", Any], StepOutcome]

# kind -> runner; filled by @register_runner in the modules of STEP_MODULES
STEP_RUNNERS: dict[str, StepRunner] = {}

# modules defining runners, imported by load_runners() (protocol issues append theirs here)
STEP_MODULES: list[str] = ["s2c.lab.steps.net", "s2c.lab.steps.stream", "s2c.lab.steps.ike"]


def register_runner(kind: str) -> Callable[[StepRunner], StepRunner]:
    """Decorator: make ``fn`` the runner of step ``kind`` (one runner per kind)."""

    def deco(fn: StepRunner) -> StepRunner:
        existing = STEP_RUNNERS.get(kind)
        if existing is not None and existing is not fn and (
            getattr(existing, "__qualname__", None), getattr(existing, "__module__", None)
        ) != (fn.__qualname__, fn.__module__):
            raise ValueError(f"step kind {kind!r} already has a runner: {existing.__module__}.{existing.__qualname__}")
        STEP_RUNNERS[kind] = fn
        return fn

    return deco


# module -> why it failed to import (its kinds then have no runner; the run reports it)
STEP_MODULE_ERRORS: dict[str, str] = {}


def load_runners() -> dict[str, StepRunner]:
    """Import every module of STEP_MODULES; one that fails is recorded, not fatal."""
    for module in STEP_MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a broken protocol module must not stop other steps
            STEP_MODULE_ERRORS[module] = f"{type(exc).__name__}: {exc}"
            logging.getLogger("s2c.lab.run").warning("step module %s failed to import: %s", module, exc)
        else:
            STEP_MODULE_ERRORS.pop(module, None)
    return STEP_RUNNERS


@dataclass
class Stream:
    """A UDP stream started by a ``udp_stream`` step."""

    name: str
    source: str  # node sending
    sink: str  # node receiving (a cn)
    destinations: list[str]
    port: int
    rate: float
    size: int
    duration: float
    process: "NodeProcess"
    started: float  # wall clock
    stdout_path: Path
    args: dict[str, Any] = field(default_factory=dict)  # the step's thresholds
    summary: dict[str, Any] | None = None  # sender's JSON summary once it exited
    checked: bool = False
    figures: dict[str, Any] | None = None  # last measured figures (stream_check/stream_stop)

    def running(self) -> bool:
        return self.process.alive()


class RunContext:
    """What a step runner may use: the scenario, the backend, node control clients, streams, run dir."""

    def __init__(self, scenario: Any, backend: "Backend", run_id: str, run_dir: Path,
                 sockets: dict[str, str], logger: logging.Logger | None = None,
                 processes: dict[str, "NodeProcess"] | None = None, settings: Any = None):
        self.scenario = scenario
        self.backend = backend
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.sockets = dict(sockets)  # node -> control socket path
        self.log = logger or logging.getLogger("s2c.lab.run")
        self.processes = processes if processes is not None else {}
        self.settings = settings
        self.streams: dict[str, Stream] = {}
        self.deadline: float | None = None  # monotonic time the current step must end by
        self._clients: dict[str, ControlClient] = {}

    # -- nodes ----------------------------------------------------------------------------------
    @property
    def topology(self) -> Any:
        return getattr(self.scenario, "topology", None)

    def node(self, name: str) -> Any:
        nodes = getattr(self.topology, "nodes", {}) or {}
        if name not in nodes:
            raise StepError(f"unknown node {name!r} (known: {', '.join(sorted(nodes))})")
        return nodes[name]

    def control(self, node: str) -> ControlClient:
        """Blocking control client of ``node``'s daemon (StepError if it has none)."""
        client = self._clients.get(node)
        if client is None:
            path = self.sockets.get(node)
            if path is None:
                raise StepError(f"node {node!r} runs no daemon (daemons: {', '.join(sorted(self.sockets)) or 'none'})")
            client = self._clients[node] = ControlClient(path, timeout=10.0)
        return client

    def call(self, node: str, cmd: str, **args: Any) -> Any:
        """``control(node).call`` with ControlError turned into a step error naming the node."""
        try:
            return self.control(node).call(cmd, timeout=min(10.0, max(0.5, self.remaining(10.0))), **args)
        except ControlError as exc:
            proc = self.processes.get(node)
            if proc is not None and not proc.alive():
                raise StepError(f"{node}: daemon exited with status {proc.returncode} (see {proc.log_path})") from None
            raise StepError(f"{node}: {cmd}: {exc}") from None

    # -- time -----------------------------------------------------------------------------------
    def remaining(self, default: float = 60.0) -> float:
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - time.monotonic())

    # -- addresses ------------------------------------------------------------------------------
    def node_addresses(self, node: str, family: int | None = None, iface: str | None = None) -> list[str]:
        """Global (non-link-local) addresses of ``node`` (or of its ``iface``) now, without prefix length."""
        out: list[str] = []
        loopback: list[str] = []
        try:
            table = self.backend.addresses(node)
        except Exception as exc:  # noqa: BLE001
            raise StepError(f"addresses of {node}: {exc}") from None
        if iface is not None:
            if iface not in table:
                raise StepError(f"{node} has no interface {iface!r} now (has: {', '.join(sorted(table))})")
            table = {iface: table[iface]}
        for info in table.values():
            for fam, key in ((4, "ipv4"), (6, "ipv6")):
                if family not in (None, fam):
                    continue
                for a in info.get(key) or ():
                    ip = ipaddress.ip_interface(a).ip
                    if ip.is_loopback:
                        loopback.append(str(ip))
                        continue
                    if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
                        continue
                    if str(ip) not in out:
                        out.append(str(ip))
        return out or loopback  # loopback only for a node that has nothing else

    def has_route(self, node: str, address: str, dev: str | None = None) -> bool:
        """Does ``node`` have a route to ``address`` right now (``ip route get``)?"""
        fam = "-6" if ":" in address else "-4"
        argv = ["ip", "-j", fam, "route", "get", address] + (["oif", dev] if dev else [])
        try:
            res = self.backend.exec(node, argv, timeout=5)
        except Exception:  # noqa: BLE001
            return False
        if res.returncode != 0:
            return False
        try:
            routes = json.loads(res.stdout or "[]")
        except ValueError:
            return False
        return bool(routes) and all(r.get("type", "unicast") not in ("unreachable", "prohibit", "blackhole")
                                    for r in routes)

    def resolve(self, source: str, target: str, family: int | None = None) -> list[str]:
        """Addresses to reach ``target`` (node, node:iface or literal address) from ``source``, best first.

        ``source`` may be "node" or "node:iface". Addresses of a family the source has a route for
        come first (in the target's order: IPv4 before IPv6). ``family`` (4 or 6) restricts the choice.
        """
        target = str(target)
        try:
            ip = ipaddress.ip_address(target.strip("[]"))
        except ValueError:
            pass
        else:
            if family and ip.version != family:
                raise StepError(f"{target} is not an IPv{family} address")
            return [str(ip)]
        tnode, _, tif = target.partition(":")
        snode, _, sif = str(source).partition(":")
        self.node(tnode)
        cands = self.node_addresses(tnode, family, tif or None)
        if not cands:
            fam = f"IPv{family} " if family else ""
            raise StepError(f"{target} has no {fam}address now")
        routable = [a for a in cands if self.has_route(snode, a, sif or None)]
        return routable + [a for a in cands if a not in routable]
