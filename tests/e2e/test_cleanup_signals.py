"""Whatever happens to ``s2c run`` (Ctrl-C, twice, SIGTERM, SIGKILL + ``s2c clean``), nothing stays behind."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s2c.lab import nsexec
from s2c.lab.cleanup import cleanup

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

REPO = Path(__file__).resolve().parents[2]
S2C = [sys.executable, "-m", "s2c"]


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "long.yaml"
    path.write_text(f"""
name: long
topology: {REPO}/scenarios/topologies/default.yaml
settings: {{capture: true}}
steps:
  - udp_stream: {{name: bg, from: ue1, to: cn1, rate: 20, until_stop: true}}
  - wait: 60
  - stream_stop: bg
""")
    return path


def _leftovers(run_id: str) -> dict[str, list]:
    procs = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if run_id.encode() in cmd and int(pid) != os.getpid():
            procs.append((int(pid), cmd.replace(b"\0", b" ")[:120]))
    return {
        "namespaces": [ns for ns in nsexec.list_netns() if ns.startswith(run_id)],
        "processes": procs,
        "sockets": [str(p) for p in Path("/run/s2c").glob(f"{run_id}*")] if Path("/run/s2c").exists() else [],
    }


def _start(tmp_path: Path, run_id: str) -> subprocess.Popen:
    proc = subprocess.Popen([*S2C, "run", str(_scenario(tmp_path)), "--run-id", run_id, "--runs-root",
                             str(tmp_path / "runs")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    # wait until the scenario is in its long wait (the log line of step 1)
    log = tmp_path / "runs" / run_id / "logs" / "runner.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and "step 1 wait" in log.read_text():
            break
        if proc.poll() is not None:
            pytest.fail(f"s2c run ended early ({proc.returncode}): {proc.stdout.read()[-2000:]}")
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the scenario never reached its wait step")
    assert _leftovers(run_id)["namespaces"], "namespaces should exist mid-run"
    return proc


@pytest.mark.parametrize("signals", [(signal.SIGINT,), (signal.SIGINT, signal.SIGINT), (signal.SIGTERM,)],
                         ids=["sigint", "double-sigint", "sigterm"])
def test_signal_mid_scenario_cleans_up(tmp_path, signals):
    run_id = f"s2ct-rn-{secrets.token_hex(3)}"
    proc = None
    try:
        proc = _start(tmp_path, run_id)
        t0 = time.monotonic()
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.15)  # the second Ctrl-C lands during cleanup
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - t0
        assert proc.returncode == 130, out[-2000:]
        assert took < 30
        assert _leftovers(run_id) == {"namespaces": [], "processes": [], "sockets": []}
        data = json.loads((tmp_path / "runs" / run_id / "result.json").read_text())
        assert data["interrupted"] is True and data["exit_code"] == 130
        statuses = [s["status"] for s in data["steps"]]
        assert statuses[0] == "passed" and statuses[1] == "error" and statuses[2] == "skipped"
        assert "Traceback" not in out
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        cleanup(run_id)


def test_sigkill_then_s2c_clean(tmp_path):
    run_id = f"s2ct-rn-{secrets.token_hex(3)}"
    proc = None
    try:
        proc = _start(tmp_path, run_id)
        proc.kill()
        proc.wait(10)
        left = _leftovers(run_id)
        assert left["namespaces"] and left["processes"], "a killed run leaves things behind"
        res = subprocess.run([*S2C, "clean", "--prefix", run_id, "--runs-root", str(tmp_path / "runs")],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"removed namespace {run_id}-ue1" in res.stdout
        time.sleep(0.2)
        assert _leftovers(run_id) == {"namespaces": [], "processes": [], "sockets": []}
        res = subprocess.run([*S2C, "clean", "--prefix", run_id], cwd=REPO, capture_output=True, text=True,
                             timeout=60)
        assert "nothing to clean" in res.stdout
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cleanup(run_id)
