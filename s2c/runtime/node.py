"""Common shell of every node daemon (ue, pdngw, hss, cn).

A daemon is ``python -m <kind> --config FILE.json``. The lab writes the config file (docs/control.md):

    {"node": "ue1", "kind": "ue", "run_id": "s2c-ab12", "control": "/run/s2c/s2c-ab12/ue1.sock",
     "interfaces": {"wlan0": {"network": "wlan-a", "addresses": ["192.0.2.10/24"]}},
     "peers": {"pdngw": {"ipv4": ["198.51.100.1"], "ipv6": ["2001:db8:c::1"]}},
     "params": {...}}

``NodeDaemon`` subclasses implement ``start``/``stop``/``status`` and add control commands; this
module owns argument parsing, logging, signals and the control socket, so subclasses stay thin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from s2c.runtime.control import ControlServer, Handler

log = logging.getLogger("s2c.node")


@dataclass
class NodeConfig:
    """What the lab tells a daemon: its name, control socket, interfaces, peers and kind params."""

    node: str
    kind: str
    control: str
    run_id: str = ""
    interfaces: dict[str, Any] = field(default_factory=dict)
    peers: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NodeConfig":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        missing = [k for k in ("node", "kind", "control") if k not in known]
        if missing:
            raise ValueError(f"node config lacks {', '.join(missing)}")
        return cls(**known)

    @classmethod
    def load(cls, path: str) -> "NodeConfig":
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


class NodeDaemon:
    """Base class: override ``start``, ``stop``, ``status`` and ``commands``."""

    kind = "node"

    def __init__(self, config: NodeConfig):
        self.config = config
        self.counters: Counter[str] = Counter()
        self.log = logging.getLogger(f"{self.kind}.{config.node}")
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Open sockets, devices and timers. Called once, inside the running loop."""

    async def stop(self) -> None:
        """Release everything ``start`` opened. Must be idempotent."""

    def status(self) -> dict[str, Any]:
        """Kind-specific state for the ``status`` command (merged into the base reply)."""
        return {}

    def commands(self) -> dict[str, Handler]:
        """Extra control commands of this kind (``attach``, ``sas``...)."""
        return {}

    # -- base behaviour -------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stopping.set()

    def _base_status(self, _args: dict[str, Any]) -> dict[str, Any]:
        out = {"node": self.config.node, "kind": self.kind, "counters": dict(self.counters)}
        out.update(self.status())
        return out

    def _stop_cmd(self, _args: dict[str, Any]) -> dict[str, Any]:
        asyncio.get_running_loop().call_soon(self.request_stop)
        return {"stopping": True}

    async def run(self) -> None:
        handlers: dict[str, Handler] = {
            "status": self._base_status,
            "stop": self._stop_cmd,
            "counters": lambda _a: dict(self.counters),
        }
        handlers.update(self.commands())
        control = ControlServer(self.config.control, handlers)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        await control.start()
        self.log.info("%s %s ready (control %s)", self.kind, self.config.node, self.config.control)
        try:
            await self._stopping.wait()
        finally:
            self.log.info("%s %s stopping", self.kind, self.config.node)
            await control.close()
            await self.stop()


def setup_logging(node: str, level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format=f"%(asctime)s.%(msecs)03d {node} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(daemon_cls: type[NodeDaemon], argv: list[str] | None = None) -> int:
    """Entry point used by ``<kind>/__main__.py``."""
    parser = argparse.ArgumentParser(prog=f"python -m {daemon_cls.kind}")
    parser.add_argument("--config", required=True, help="node config JSON written by the lab")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        config = NodeConfig.load(args.config)
    except (OSError, ValueError) as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.node, args.log_level)
    try:
        asyncio.run(daemon_cls(config).run())
    except KeyboardInterrupt:
        pass
    return 0
