"""End to end: the attach scenarios on the default topology (real ue, pdngw, hss and cn daemons in
network namespaces), then tshark over the run's pcaps: IKEv2 dissects without malformed packets and,
with the key files the daemons wrote to ``runs/<id>/keys/``, IKE payloads and ESP decrypt."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from s2c.lab.cleanup import cleanup

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


def run(scenario: str, runs_root: Path) -> tuple[dict, Path]:
    from s2c.lab.report import Console
    from s2c.lab.runner import run_scenario
    from s2c.model import load_scenario

    run_id = f"s2ct-ue-{secrets.token_hex(3)}"
    try:
        run_scenario(load_scenario(str(ROOT / "scenarios" / scenario)), run_id=run_id, runs_root=runs_root,
                     capture=True, console=Console())
    finally:
        cleanup(run_id)
    run_dir = runs_root / run_id
    return json.loads((run_dir / "result.json").read_text()), run_dir


def _failed(data: dict) -> str:
    return "\n".join(f"[{s['index']}] {s['name']}: {s['status']} {s.get('message')}" for s in data["steps"]
                     if s["status"] != "passed") or str(data.get("error"))


@pytest.mark.parametrize("scenario", ["attach-ipv6.yaml", "attach-mobike.yaml", "attach-wrong-k.yaml",
                                      "attach-unknown-imsi.yaml", "attach-pdngw-restart.yaml",
                                      "attach-two-ues.yaml"])
def test_attach_scenarios(tmp_path, scenario):
    data, _ = run(scenario, tmp_path)
    assert data["ok"], _failed(data)


def _tshark(pcap: Path, *args: str) -> list[str]:
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), *args], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_default_attach_scenario_and_decrypted_pcaps(tmp_path):
    data, run_dir = run("default.yaml", tmp_path)
    assert data["ok"], _failed(data)
    attach = data["steps"][0]
    assert attach["kind"] == "attach" and attach["details"]["nat_detected"] is True
    move = next(s for s in data["steps"] if s["kind"] == "stream_stop")
    assert move["status"] == "passed"

    keys = run_dir / "keys"
    esp_lines = (keys / "esp_sa").read_text().splitlines()
    ike_lines = (keys / "ikev2_decryption_table").read_text().splitlines()
    assert len(esp_lines) == 8 and len(ike_lines) == 1  # one IKE SA, two CHILD SA pairs, IPv4+IPv6 records
    opts = ["-o", "esp.enable_encryption_decode:TRUE"]
    for line in esp_lines:
        opts += ["-o", f"uat:esp_sa:{line}"]
    for line in ike_lines:
        opts += ["-o", f"uat:ikev2_decryption_table:{line}"]

    core = run_dir / "pcap" / "pdngw.core0--core.pcap"
    assert core.exists(), sorted(p.name for p in (run_dir / "pcap").iterdir())
    # IKEv2 dissects without malformed packets or expert errors
    ike = _tshark(core, *opts, "-Y", "isakmp", "-T", "fields", "-e", "isakmp.exchangetype")
    assert len(ike) >= 6, ike
    bad = _tshark(core, *opts, "-Y", "_ws.malformed || _ws.expert.severity == error", "-T", "fields",
                  "-e", "frame.number", "-e", "_ws.col.Info")
    assert bad == [], bad
    # with the exported IKE keys, the encrypted IKE_AUTH payloads open: EAP inside
    eap = _tshark(core, *opts, "-Y", "eap", "-T", "fields", "-e", "eap.code")
    assert {"1", "2", "3"} <= set(eap), eap  # request, response, success
    # with the exported ESP keys, the user traffic decrypts: inner ICMPv6 echo and UDP to the sink
    inner = _tshark(core, *opts, "-Y", "esp && (icmpv6.type == 128 || udp.dstport == 5001)", "-T", "fields",
                    "-e", "frame.number")
    assert len(inner) >= 20, len(inner)
    # without keys nothing of the inner traffic is visible
    assert _tshark(core, "-Y", "esp && icmpv6.type == 128") == []
