"""The lab backend interface: build a topology, run processes in its nodes, break and move links.

A backend turns a resolved :class:`~s2c.model.topology.Topology` into something running (network
namespaces, containers) and gives the runner a small, structured set of verbs. Backends are chosen
from :data:`BACKENDS` by name; every backend addresses a node's network namespace by a path
(``/run/netns/<name>`` for netns, ``/proc/<pid>/ns/net`` for a container, as containerlab does),
so helpers that enter a namespace work for both.

Errors that reach the user are :class:`LabError` with a one-line, human message.
"""

from __future__ import annotations

import os
import signal
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s2c.model.topology import Topology

__all__ = ["LabError", "NodeProcess", "Backend", "BACKENDS", "get_backend"]


class LabError(Exception):
    """A lab operation failed; the message is one human-readable line."""


class NodeProcess:
    """A process started in a node's namespace, in its own process group (so its children die too)."""

    def __init__(self, node: str, argv: list[str], log_path: Path | None, popen: subprocess.Popen):
        self.node = node
        self.argv = list(argv)
        self.log_path = log_path
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once the process has exited (negative: killed by that signal), else None."""
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole process group; a vanished group is not an error."""
        try:
            os.killpg(self.popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, timeout: float = 3.0) -> int | None:
        """SIGTERM the process group, wait up to ``timeout`` s, then SIGKILL; return the exit status."""
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # the leader may be gone while children of the group linger: kill the group regardless
        self.signal(signal.SIGKILL)
        if self.popen.poll() is None:
            try:
                self.popen.wait(2.0)
            except subprocess.TimeoutExpired:
                pass
        return self.popen.poll()

    def __repr__(self) -> str:
        state = "alive" if self.alive() else f"exited {self.returncode}"
        return f"<NodeProcess {self.node} pid={self.pid} {self.argv[0]!r} {state}>"


class Backend(ABC):
    """One way to run a lab. Construct, ``build()``, use, ``teardown()`` (also as a context manager)."""

    name: str = "abstract"

    def __init__(self, run_id: str, run_dir: Path, topology: "Topology", capture: bool = True):
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.topology = topology
        self.capture = capture

    # -- lifecycle -------------------------------------------------------------------------
    @abstractmethod
    def build(self) -> None:
        """Create every node and link; on any failure tear down what was made and raise LabError."""

    @abstractmethod
    def teardown(self) -> None:
        """Kill node processes, stop captures, delete everything created. Idempotent; never raises."""

    # -- processes -------------------------------------------------------------------------
    @abstractmethod
    def spawn(
        self, node: str, argv: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> NodeProcess:
        """Start ``argv`` inside ``node``; stdout+stderr go to run_dir/logs/<log_name>.log.

        The process runs in its own process group and is killed by ``teardown``. ``env`` is added
        to the inherited environment.
        """

    @abstractmethod
    def exec(
        self, node: str, argv: list[str], timeout: float = 30
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` to completion inside ``node``; text stdout/stderr captured.

        Never raises for a non-zero exit; raises LabError on timeout or unknown node.
        """

    # -- links -----------------------------------------------------------------------------
    @abstractmethod
    def set_link(self, node: str, iface: str, up: bool) -> None:
        """Bring ``node:iface`` administratively up or down."""

    @abstractmethod
    def move(self, node: str, iface: str, network: str) -> dict[str, Any]:
        """Re-attach UE radio ``node:iface`` to access network ``network`` (break before make).

        Returns the new addressing: {"ipv4": [...], "ipv6": [...], "gateway4": str|None,
        "gateway6": str|None} (addresses as "a.b.c.d/len" strings).
        """

    @abstractmethod
    def impair(
        self,
        node: str,
        iface: str,
        *,
        loss: float | None = None,
        rate: str | None = None,
        delay_ms: float | None = None,
        clear: bool = False,
    ) -> None:
        """Impair egress of ``node:iface``: loss in percent, rate like "1mbit", delay in ms.

        ``clear=True`` removes every impairment first (and alone, clears). Unsupported impairments
        raise LabError saying why.
        """

    # -- inspection ------------------------------------------------------------------------
    @abstractmethod
    def addresses(self, node: str) -> dict[str, dict[str, Any]]:
        """iface -> {"ipv4": [...], "ipv6": [...], "up": bool, "network": access-net name or None}."""

    @abstractmethod
    def netns_path(self, node: str) -> str:
        """A path that names the node's network namespace (for setns/nsenter)."""

    @abstractmethod
    def captures(self) -> list[Path]:
        """Every pcap file written so far (one per link, plus one per segment after a move)."""

    def capabilities(self) -> dict[str, bool]:
        """What this host can emulate (e.g. {"netem": False, "xfrm": True, "esp": False})."""
        return {}

    # -- conveniences ----------------------------------------------------------------------
    def __enter__(self) -> "Backend":
        self.build()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


def _netns_backend() -> type[Backend]:
    from s2c.lab.netns import NetnsBackend

    return NetnsBackend


class _LazyBackends(dict):
    """name -> Backend class; entries may be zero-argument loaders, resolved on first access."""

    def __getitem__(self, key: str) -> type[Backend]:
        value = super().__getitem__(key)
        if not isinstance(value, type):
            value = value()
            super().__setitem__(key, value)
        return value

    def get(self, key, default=None):  # type: ignore[override]
        return self[key] if key in self else default

    def values(self):  # type: ignore[override]
        return [self[k] for k in self]

    def items(self):  # type: ignore[override]
        return [(k, self[k]) for k in self]


# name -> backend class ("docker" joins in its own issue)
BACKENDS: dict[str, type[Backend]] = _LazyBackends(netns=_netns_backend)


def get_backend(name: str) -> type[Backend]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise LabError(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})") from None
