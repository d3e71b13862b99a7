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
        # one SWx MAR per full authentication unless a test asks for the daemon's spare vectors
        params.setdefault("av_prefetch", False)
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


# -- EAP-AKA over S6b, peer side (tests and bench) ---------------------------------------------------
def make_peer(imsi: str, k: bytes = K, opc: bytes = OPC, method: str = "aka", sqn_ms: int | None = None):
    """An :class:`AkaPeer` (software USIM) for ``imsi``; ``sqn_ms`` pre-ages the USIM's SQN array."""
    from s2c.crypto.sqn import SqnWindow
    from s2c.eap_aka import AkaPeer, EapType, Usim, permanent_nai

    eap_type = EapType.AKA if method == "aka" else EapType.AKA_PRIME
    window = SqnWindow.starting_at(sqn_ms) if sqn_ms is not None else None
    nai = permanent_nai(imsi, method=eap_type)
    peer = AkaPeer(Usim(k, opc, window), imsi, methods=(eap_type,), identity=nai.encode(),
                   network_name=b"WLAN" if eap_type == EapType.AKA_PRIME else None)
    return peer, nai


def identity_response(nai: str, identifier: int = 0) -> bytes:
    """EAP-Response/Identity as the PDN GW builds it from the IKEv2 IDi (RFC 3748 §5.1)."""
    from s2c.codec import eap

    return eap.serialize(eap.identity_response(identifier, nai))


def der(session_id: str, payload: bytes, user_name: str | None = None):
    from hss.client import CLIENT_IDENTITY
    from s2c.diameter.messages import build_der

    return build_der(CLIENT_IDENTITY, session_id=session_id, destination_realm=REALM, eap_payload=payload,
                     user_name=user_name)


def _step(peer, ans) -> bytes | None:
    """Feed a DEA's EAP-Payload to the peer; return the peer's next EAP response if the DEA is 1001."""
    from s2c.codec.diameter import AvpCode, ResultCode
    from s2c.eap_aka import ProtocolError

    payload = ans.get_bytes(AvpCode.EAP_PAYLOAD)
    if payload:
        try:
            peer.receive(payload)
        except ProtocolError:
            return None
    if ans.result_code != ResultCode.DIAMETER_MULTI_ROUND_AUTH:
        return None
    return peer.next_message()


def _events(peer) -> list[Any]:
    out = []
    while (ev := peer.next_event()) is not None:
        out.append(ev)
    return out


def eap_over_s6b(request, peer, session_id: str, first: bytes, max_rounds: int = 8):
    """Drive one EAP exchange over S6b with a blocking ``request(DER) -> DEA``.

    Returns (list of DEAs, peer events)."""
    answers = []
    payload: bytes | None = first
    while payload is not None and len(answers) < max_rounds:
        ans = request(der(session_id, payload))
        answers.append(ans)
        payload = _step(peer, ans)
    return answers, _events(peer)


async def eap_over_s6b_async(client, peer, session_id: str, first: bytes, lat: list[float] | None = None,
                             max_rounds: int = 8):
    """Same as :func:`eap_over_s6b` over an :class:`hss.client.AsyncDiameterClient`; appends each
    round trip's latency to ``lat``."""
    answers = []
    payload: bytes | None = first
    while payload is not None and len(answers) < max_rounds:
        t0 = time.perf_counter()
        ans = await client.request(der(session_id, payload))
        if lat is not None:
            lat.append(time.perf_counter() - t0)
        answers.append(ans)
        payload = _step(peer, ans)
    return answers, _events(peer)
