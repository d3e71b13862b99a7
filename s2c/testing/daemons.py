"""Our daemons (``python -m ue|pdngw|hss``) as child processes in the namespaces of an :class:`NsPair`.

Shared by the daemon-level tests (tests/integration, tests/interop) and ``bench/attach.py``: each daemon
gets a config file as the lab writes it (docs/control.md), a control socket, a log file, and is
started, waited for (its ``status`` answers) and stopped (control ``stop``, then killed) the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from s2c.runtime.control import ControlClient, ControlError

ROOT = Path(__file__).resolve().parents[2]


class DaemonHost:
    """Mixin for a lab class that has ``pair`` (an entered :class:`s2c.testing.netns.NsPair`),
    ``run_id``, ``workdir`` (configs, logs), ``sockdir`` (control sockets: a short path, sun_path is
    108 bytes) and ``procs`` (a dict). ``daemon_defaults()`` gives params every daemon gets."""

    pair: Any
    run_id: str
    workdir: Path
    sockdir: Path
    procs: dict[str, subprocess.Popen]
    daemon_log_level: str = "DEBUG"

    def daemon_defaults(self) -> dict[str, Any]:
        return {}

    def sock(self, node: str) -> str:
        return str(self.sockdir / f"{node}.sock")

    def ctl(self, node: str, timeout: float = 10) -> ControlClient:
        return ControlClient(self.sock(node), timeout=timeout)

    def call(self, node: str, cmd: str, timeout: float = 30, **args: Any) -> Any:
        return self.ctl(node, timeout).call(cmd, timeout=timeout, **args)

    def log(self, node: str) -> str:
        try:
            return (self.workdir / f"{node}.log").read_text(errors="replace")
        except OSError:
            return ""

    def spawn(self, node: str, kind: str, side: str, params: dict, peers: dict | None = None,
              up_timeout: float = 20) -> None:
        """Write ``<node>.json`` and run ``python -m <kind> --config`` in namespace ``side``; returns
        once its control socket answers ``status`` (RuntimeError with the log tail if it exits first)."""
        cfg = {"node": node, "kind": kind, "run_id": self.run_id, "control": self.sock(node), "interfaces": {},
               "peers": peers or {}, "params": {**self.daemon_defaults(), **params}}
        path = self.workdir / f"{node}.json"
        path.write_text(json.dumps(cfg, indent=1))
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with open(self.workdir / f"{node}.log", "ab") as log:
            self.procs[node] = self.pair.popen(side, [sys.executable, "-m", kind, "--config", str(path),
                                                      "--log-level", self.daemon_log_level],
                                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + up_timeout
        while time.monotonic() < deadline:
            if self.procs[node].poll() is not None:
                raise RuntimeError(f"{node} exited:\n{self.log(node)[-3000:]}")
            try:
                self.ctl(node, 1).call("status")
                return
            except (ControlError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"{node} did not come up:\n{self.log(node)[-3000:]}")

    def stop_daemon(self, node: str) -> None:
        """Control ``stop``; killed if it has not exited 5 s later."""
        p = self.procs.pop(node, None)
        if p is None:
            return
        try:
            if p.poll() is None:
                self.ctl(node, 2).call("stop")
        except (ControlError, OSError):
            p.terminate()  # nsenter passes it on to the daemon
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def stop_daemons(self, order: tuple[str, ...] = ("ue", "pdngw", "hss")) -> None:
        """Stop every daemon (those named in ``order`` first), never raising: teardown goes on."""
        for node in [n for n in order if n in self.procs] + [n for n in self.procs if n not in order]:
            try:
                self.stop_daemon(node)
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        for p in self.procs.values():
            try:
                p.kill()
                p.wait(5)
            except Exception:  # noqa: BLE001
                pass
        self.procs.clear()

    @staticmethod
    def wait(pred: Any, timeout: float = 5.0, what: str = "") -> Any:
        """Poll ``pred()`` every 50 ms until it is truthy (returned) or ``timeout`` (AssertionError)."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)
