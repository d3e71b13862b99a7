"""The runner's life cycle on a fake in-process backend (no namespaces, no root needed).

A ``LocalBackend`` runs node processes on the host with loopback addresses, so daemon start-up,
control-socket readiness, steps, skipping, reports and teardown are tested quickly and without root.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from s2c.lab import runner as runner_mod
from s2c.lab.backend import BACKENDS, Backend, NodeProcess
from s2c.lab.report import FAILED, PASSED, SKIPPED, ERROR
from s2c.model.scenario import Scenario, Settings, Step
from s2c.model.topology import Interface, Node, NodeKind, Topology


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBackend(Backend):
    """Every node is the host itself, reachable on loopback."""

    name = "local-test"
    built = 0
    torn_down = 0

    def build(self) -> None:
        type(self).built += 1
        self.procs: list[NodeProcess] = []
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)

    def teardown(self) -> None:
        type(self).torn_down += 1
        for p in getattr(self, "procs", []):
            p.terminate(1.0)

    def spawn(self, node, argv, log_name, env=None):
        log_path = self.run_dir / "logs" / f"{log_name}.log"
        fh = open(log_path, "ab")
        popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                 start_new_session=True)
        fh.close()
        proc = NodeProcess(node, argv, log_path, popen)
        self.procs.append(proc)
        return proc

    def exec(self, node, argv, timeout=30):
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def set_link(self, node, iface, up):
        pass

    def move(self, node, iface, network):
        return {"ipv4": ["127.0.0.1/8"], "ipv6": [], "gateway4": None, "gateway6": None}

    def impair(self, node, iface, *, loss=None, rate=None, delay_ms=None, clear=False):
        pass

    def addresses(self, node):
        return {"lo": {"ipv4": ["127.0.0.1/8"], "ipv6": ["::1/128"], "up": True, "network": None}}

    def netns_path(self, node):
        return "/proc/self/ns/net"

    def captures(self):
        return []


@pytest.fixture(autouse=True)
def local_backend(monkeypatch, tmp_path):
    BACKENDS["local-test"] = LocalBackend  # plain class entries are allowed in the registry
    monkeypatch.setattr(runner_mod, "SOCKET_ROOT", tmp_path / "sock")
    yield
    dict.pop(BACKENDS, "local-test", None)


PORT = _free_port()


def _scenario(steps: list[tuple[str, dict]], node_params=None) -> Scenario:
    params = {"sink_port": PORT, "echo_port": 0} if node_params is None else node_params
    cn = Node("cn1", NodeKind.CN, {"lo": Interface("lo")}, params=params)
    topo = Topology("local", {"cn1": cn}, ())
    return Scenario("local", "", "inline.yaml", topo,
                    steps=tuple(Step(i, k, a, k, i + 1, "inline.yaml") for i, (k, a) in enumerate(steps)),
                    settings=Settings(capture=False, step_timeout=10.0))


def _run(scn, tmp_path, **kw):
    return runner_mod.run_scenario(scn, "local-test", run_dir=tmp_path / "runs" / "r1", run_id="s2ct-rn-local", **kw)


def test_expect_and_wait_pass_and_reports(tmp_path):
    before = LocalBackend.torn_down
    scn = _scenario([("wait", {"seconds": 0.05}),
                     ("expect", {"node": "cn1", "query": "status", "path": "kind", "equals": "cn"})])
    res = _run(scn, tmp_path)
    assert [s.status for s in res.steps] == [PASSED, PASSED], [s.message for s in res.steps]
    assert res.exit_code == 0
    assert LocalBackend.torn_down == before + 1
    data = json.loads((res.run_dir / "result.json").read_text())
    assert data["ok"] is True and data["run_id"] == "s2ct-rn-local"
    assert data["nodes"]["cn1"]["kind"] == "cn"
    root = ET.parse(res.run_dir / "junit.xml").getroot()
    assert len(root.findall(".//testcase")) == 2
    assert (res.run_dir.parent / "latest").resolve() == res.run_dir.resolve()
    assert "logs/cn1.log" in data["artifacts"]


def test_failed_step_skips_the_rest_unless_keep_going(tmp_path):
    steps = [("expect", {"node": "cn1", "path": "kind", "equals": "ue"}), ("wait", {"seconds": 0})]
    res = _run(_scenario(steps), tmp_path)
    assert [s.status for s in res.steps] == [FAILED, SKIPPED]
    assert "'cn'" in res.steps[0].message  # the actual value is shown
    assert res.exit_code == 1
    res = _run(_scenario(steps), tmp_path, keep_going=True)
    assert [s.status for s in res.steps] == [FAILED, PASSED]


def test_unknown_kind_and_bad_node_are_errors(tmp_path):
    res = _run(_scenario([("no_such_kind", {}), ("expect", {"node": "nope", "path": "x", "exists": True})]),
               tmp_path, keep_going=True)
    assert [s.status for s in res.steps] == [ERROR, ERROR]
    assert "no_such_kind" in res.steps[0].message
    assert "nope" in res.steps[1].message


def test_udp_stream_on_loopback_measures_no_loss(tmp_path):
    steps = [("udp_stream", {"from": "cn1", "to": "cn1", "name": "lo1", "rate": 200, "duration": 1.0,
                             "port": PORT}),
             ("expect", {"node": "cn1", "query": "streams", "path": "lo1.received", "gt": 0, "within": 5,
                         "interval": 0.05}),
             ("stream_check", {"name": "lo1", "max_loss": 1, "wait_end": False}),  # figures so far
             ("stream_check", {"name": "lo1", "max_loss": 1})]  # waits for the end
    res = _run(_scenario(steps), tmp_path)
    assert [s.status for s in res.steps] == [PASSED] * 4, [s.message for s in res.steps]
    assert res.steps[2].details["finished"] is False
    d = res.steps[3].details
    assert d["finished"] is True
    assert d["packets"] >= 150 and d["received"] == d["packets"] and d["loss_pct"] == 0.0


def test_daemon_that_dies_at_start_is_a_clear_error(tmp_path, monkeypatch):
    scn = _scenario([("wait", {"seconds": 0})], node_params={"sink_port": -5})
    res = _run(scn, tmp_path)
    assert res.exit_code == 1
    assert res.error and "cn1" in res.error


def test_broken_step_module_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    from s2c.lab import steps

    monkeypatch.setattr(steps, "STEP_MODULES", steps.STEP_MODULES + ["s2c.lab.steps.no_such_module_xyz"])
    try:
        res = _run(_scenario([("wait", {"seconds": 0}), ("attach_xyz", {})]), tmp_path, keep_going=True)
    finally:
        steps.STEP_MODULE_ERRORS.pop("s2c.lab.steps.no_such_module_xyz", None)
    assert [s.status for s in res.steps] == [PASSED, ERROR]
    assert "no_such_module_xyz" in res.steps[1].message
    assert any("no_such_module_xyz" in w for w in res.warnings)


def test_step_timeout_backstop(tmp_path):
    res = _run(_scenario([("wait", {"seconds": 5, "timeout": 0.3})]), tmp_path)
    assert [s.status for s in res.steps] == [ERROR]
    assert "timed out after 0.3 s" in res.steps[0].message and res.steps[0].duration < 1.5
