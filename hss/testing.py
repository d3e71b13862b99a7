"""Test/bench helper: run the real ``hss`` daemon as a subprocess (``python -m hss --config cfg.json``).

Used by tests/integration/test_hss*.py and bench/hss.py; not used by the daemon itself.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2c.runtime.control import ControlClient, ControlError

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMSI = "001010000000001"
IMSI2 = "001010000000002"
REALM = "epc.mnc001.mcc001.3gppnetwork.org"
ROOT = Path(__file__).resolve().parents[1]

SUBSCRIBERS = [
    {"imsi": IMSI, "k": K.hex(), "opc": OPC.hex(), "amf": "8000", "sqn": 0, "apn": "internet"},
    {"imsi": IMSI2, "k": K.hex(), "opc": OPC.hex()},
]


@dataclass
class HssProcess:
    proc: subprocess.Popen[bytes]
    port: int
    ctl: ControlClient
    cfg_path: Path
    log_path: Path
    db_path: Path
    registry: list["HssProcess"] = field(repr=False, default_factory=list)

    def sqn(self, imsi: str) -> int:
        with sqlite3.connect(self.db_path) as db:
            return int(db.execute("SELECT sqn FROM subscribers WHERE imsi=?", (imsi,)).fetchone()[0])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> "HssProcess":
        """Start a new daemon on the same config (and DB) after this one died."""
        self.stop()
        cfg = json.loads(self.cfg_path.read_text())
        cfg["params"]["diameter"]["port"] = 0
        self.cfg_path.write_text(json.dumps(cfg))
        return _spawn(self.cfg_path, self.log_path, self.db_path, self.registry)


def _spawn(cfg_path: Path, log_path: Path, db_path: Path, registry: list[HssProcess], log_level: str = "INFO") -> HssProcess:
    cfg = json.loads(cfg_path.read_text())
    logf = open(log_path, "ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "hss", "--config", str(cfg_path), "--log-level", log_level], cwd=ROOT,
                            stdout=logf, stderr=subprocess.STDOUT, env=env)
    logf.close()
    ctl = ControlClient(cfg["control"], timeout=5)
    deadline = time.monotonic() + 15
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hss exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            status = ctl.call("status")
            break
        except (ControlError, OSError):
            time.sleep(0.05)
    if status is None:
        proc.kill()
        raise RuntimeError(f"hss did not come up:\n{log_path.read_text()[-3000:]}")
    port = int(status["listening"][0].rsplit(":", 1)[1])
    p = HssProcess(proc, port, ctl, cfg_path, log_path, db_path, registry)
    registry.append(p)
    return p


class HssLauncher:
    """Start daemons under ``workdir``; ``close()`` stops every one it started."""

    def __init__(self, workdir: Path | str):
        self.workdir = Path(workdir)
        self.registry: list[HssProcess] = []
        self._n = 0

    def start(self, subscribers: list[dict[str, Any]] | None = None, cer_timeout: float = 5.0,
              log_level: str = "INFO", **params: Any) -> HssProcess:
        n = self._n
        self._n += 1
        db = self.workdir / f"hss{n}.db"
        cfg = {
            "node": f"hss{n}",
            "kind": "hss",
            "run_id": "s2ct-hs",
            "control": str(self.workdir / f"hss{n}.sock"),
            "params": {
                "db": str(db),
                "subscribers": SUBSCRIBERS if subscribers is None else subscribers,
                "diameter": {"listen": ["127.0.0.1"], "port": 0, "cer_timeout": cer_timeout},
                **params,
            },
        }
        cfg_path = self.workdir / f"hss{n}.json"
        cfg_path.write_text(json.dumps(cfg))
        return _spawn(cfg_path, self.workdir / f"hss{n}.log", db, self.registry, log_level)

    __call__ = start

    def close(self) -> None:
        for p in self.registry:
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - teardown best effort
                p.proc.kill()
