"""``s2c validate`` and ``s2c run`` as a user runs them: subprocesses, exit codes, run folder contents."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from s2c.lab import nsexec
from s2c.lab.cleanup import cleanup

REPO = Path(__file__).resolve().parents[2]
S2C = [sys.executable, "-m", "s2c"]
root_only = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]


def s2c(*args: str, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*S2C, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def test_validate_ok_and_one_line_error(tmp_path):
    res = s2c("validate", "scenarios/default.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("OK scenarios/default.yaml: 12 nodes, 12 links, ")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"topology: {REPO}/scenarios/topologies/default.yaml\nsteps:\n  - wait: -1\n")
    res = s2c("validate", str(bad), "scenarios/default.yaml")
    assert res.returncode == 1
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith(f"{bad}:3: steps[0].wait.seconds: ") and len(lines) == 2
    assert lines[1].startswith("OK scenarios/default.yaml")
    assert "Traceback" not in res.stdout + res.stderr


def test_run_invalid_scenario_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: []\n")
    res = s2c("run", str(bad), "--run-id", "s2ct-rn-never")
    assert res.returncode == 1 and "topology" in res.stderr and "Traceback" not in res.stderr


def test_run_without_root_is_a_clear_error(monkeypatch, capsys):
    from s2c import cli as top
    from s2c.lab import cli

    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    monkeypatch.chdir(REPO)
    assert top.main(["run", "scenarios/default.yaml", "--run-id", "s2ct-rn-noroot"]) == 1
    err = capsys.readouterr().err
    assert "needs root" in err and "Traceback" not in err
    assert top.main(["clean", "--prefix", "s2ct-rn-noroot"]) == 1


def test_missing_tool_is_a_clear_error(monkeypatch):
    from s2c.lab import cli

    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cli.shutil, "which", lambda t: None if t == "tcpdump" else "/usr/bin/" + t)
    assert "missing tool: tcpdump" in cli.preflight("netns", capture=True)
    assert cli.preflight("netns", capture=False) is None


@pytest.mark.slow
@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_default_scenario_via_cli(tmp_path):
    run_id = f"s2ct-rn-{secrets.token_hex(3)}"
    try:
        res = s2c("run", "scenarios/default.yaml", "--run-id", run_id, "--runs-root", str(tmp_path), "--capture",
                  timeout=300)
    finally:
        cleanup(run_id)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    run_dir = tmp_path / run_id
    data = json.loads((run_dir / "result.json").read_text())
    assert data["ok"] and data["run_id"] == run_id and data["backend"] == "netns"
    assert data["counts"]["passed"] == len(data["steps"]) > 10
    assert set(data["nodes"]) >= {"ue1", "pdngw", "cn1"}
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) == len(data["steps"]) and suite.get("failures") == "0"
    pcaps = list((run_dir / "pcap").glob("*.pcap"))
    assert len(pcaps) >= 12 and all(p.stat().st_size > 24 for p in pcaps)
    assert any(a.startswith("pcap/") for a in data["artifacts"])
    assert (run_dir / "logs" / "cn1.log").exists()
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
    assert not [ns for ns in nsexec.list_netns() if ns.startswith(run_id)]
    assert not Path(f"/run/s2c/{run_id}").exists()
    # plain progress lines (stdout is a pipe here): one per step, a final verdict
    assert "PASSED:" in res.stdout and res.stdout.count("✓") == len(data["steps"])


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_failing_run_exits_1_and_keep_going(tmp_path):
    scn = tmp_path / "fail.yaml"
    scn.write_text(f"""
topology: {REPO}/scenarios/topologies/default.yaml
steps:
  - link: {{endpoint: "ue1:wlan0", state: down}}
  - ping: {{from: ue1:wlan0, to: cn1, family: ipv4, count: 1}}
  - wait: 0
""")
    run_id = f"s2ct-rn-{secrets.token_hex(3)}"
    try:
        res = s2c("run", str(scn), "--run-id", run_id, "--runs-root", str(tmp_path), "--no-capture", "--keep-going")
    finally:
        cleanup(run_id)
    assert res.returncode == 1, res.stdout + res.stderr
    data = json.loads((tmp_path / run_id / "result.json").read_text())
    assert [s["status"] for s in data["steps"]] == ["passed", "failed", "passed"]
    failure = ET.parse(tmp_path / run_id / "junit.xml").getroot().find(".//failure")
    assert failure is not None and "no reply" in failure.get("message")
