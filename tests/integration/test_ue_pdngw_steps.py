"""The attach/detach/restart step schemas (s2c/model/steps_ike.py): what validation accepts and the
one-line errors it gives (no root needed), and the runners registered under the same kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2c.model import ModelError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
TOPO = ROOT / "scenarios" / "topologies" / "default.yaml"

HEAD = f"""
name: t
topology: {TOPO}
subscribers:
  - imsi: "001010000000001"
    k: "465b5ce8b199b49faa5f0a2ee238a6bc"
    opc: "cd63cb71954a9f4e48a5994e37a02baf"
ues:
  ue1: {{imsi: "001010000000001"}}
steps:
"""


def load(tmp_path: Path, steps: str):
    p = tmp_path / "s.yaml"
    p.write_text(HEAD + steps)
    return load_scenario(str(p))


def errors(tmp_path: Path, steps: str) -> str:
    with pytest.raises(ModelError) as exc:
        load(tmp_path, steps)
    return str(exc.value)


def test_valid_attach_detach_restart(tmp_path):
    sc = load(tmp_path, """
  - attach: {ue: ue1, radio: wlan0}
  - attach: {ue: ue1, radio: wlan1, expect: failure, reason: AUTHENTICATION_FAILED, k: "00112233445566778899aabbccddeeff"}
  - detach: ue1
  - restart: pdngw
  - restart: {node: pdngw, hard: true, down: 1}
  - handover: {ue: ue1, radio: wlan1}
""")
    kinds = [s.kind for s in sc.steps]
    assert kinds == ["attach", "attach", "detach", "restart", "restart", "handover"]
    assert sc.steps[0].args["expect"] == "success" and sc.steps[2].args["ue"] == "ue1"
    assert sc.steps[3].args["node"] == "pdngw" and sc.steps[3].args["hard"] is False


@pytest.mark.parametrize("step, field, words", [
    ("attach: {ue: ue1, radio: eth9}", "radio", "not a radio"),
    ("attach: {ue: cn1}", "ue", "not a ue"),
    ("attach: {ue: ue1, reason: AUTHENTICATION_FAILED}", "reason", "expect: failure"),
    ("attach: {ue: ue1, expect: failure, reason: NOPE}", "reason", "expected one of"),
    ("attach: {ue: ue1, k: '1234'}", "k", "32 hex digits"),
    ("attach: {ue: ue1, expect: maybe}", "expect", "success"),
    ("detach: {ue: hss}", "ue", "not a ue"),
    ("restart: {node: wlan-a}", "node", "bridge"),
    ("handover: {ue: ue1, radio: eth7}", "radio", "not a radio"),
    ("handover: {ue: ue1}", "radio", "required"),
])
def test_bad_steps_one_line_errors(tmp_path, step, field, words):
    text = errors(tmp_path, f"  - {step}\n")
    assert field in text and words in text, text


def test_attach_needs_a_subscription(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(f"name: t\ntopology: {TOPO}\nsteps:\n  - attach: {{ue: ue1}}\n")
    with pytest.raises(ModelError) as exc:
        load_scenario(str(p))
    assert "subscription" in str(exc.value)


def test_runners_registered():
    from s2c.lab.steps import load_runners

    runners = load_runners()
    assert {"attach", "detach", "restart", "handover"} <= set(runners)
    assert runners["attach"].__module__ == "s2c.lab.steps.ike"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "scenarios").glob("attach-*.yaml")))
def test_shipped_attach_scenarios_validate(name):
    sc = load_scenario(str(ROOT / "scenarios" / name))
    assert any(s.kind == "attach" for s in sc.steps)
