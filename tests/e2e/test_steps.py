"""Each step kind on small inline scenarios over the default topology, on network namespaces (root).

Run ids start with ``s2ct-rn-``; everything a test builds is removed in ``finally`` by
``s2c.lab.cleanup.cleanup(<its run id>)`` even if the runner itself failed to tear down.
"""

from __future__ import annotations

import os
import sys
import secrets
import textwrap
from pathlib import Path

import pytest

from s2c.lab import nsexec
from s2c.lab.cleanup import cleanup
from s2c.lab.report import ERROR, FAILED, PASSED
from s2c.lab.runner import SOCKET_ROOT, run_scenario
from s2c.model.scenario import load_scenario

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = REPO / "scenarios" / "topologies" / "default.yaml"
HEAD = f"""
name: {{name}}
topology: {TOPOLOGY}
subscribers:
  - {{{{imsi: "001010000000001", k: "465b5ce8b199b49faa5f0a2ee238a6bc", opc: "cd63cb71954a9f4e48a5994e37a02baf"}}}}
ues:
  ue1: {{{{imsi: "001010000000001"}}}}
settings: {{{{capture: false, step_timeout: 20}}}}
steps:
"""


def run_steps(tmp_path: Path, name: str, steps_yaml: str, **kw):
    """Write a scenario with these steps, run it, clean up by run id whatever happens."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(HEAD.format(name=name) + textwrap.indent(textwrap.dedent(steps_yaml).strip() + "\n", "  "))
    scenario = load_scenario(path)
    run_id = f"s2ct-rn-{secrets.token_hex(3)}"
    try:
        result = run_scenario(scenario, run_id=run_id, runs_root=tmp_path / "runs", **kw)
    finally:
        cleanup(run_id)
    assert not [ns for ns in nsexec.list_netns() if ns.startswith(run_id)]
    assert not (SOCKET_ROOT / run_id).exists()
    return result


def statuses(result):
    return [s.status for s in result.steps]


def test_ping_pass_and_fail_link_down_up(tmp_path):
    res = run_steps(tmp_path, "ping", """
        - ping: {from: ue1:wlan0, to: cn1, family: ipv4, count: 3, interval: 0.1}
        - ping: {from: ue1:wlan1, to: cn1, family: ipv6, count: 2, interval: 0.1}
        - link: {endpoint: "ue1:wlan0", state: down}
        - ping: {from: ue1:wlan0, to: cn1, family: ipv4, count: 2, interval: 0.1}
        - ping: {from: ue1:wlan0, to: cn1, family: ipv4, count: 2, interval: 0.1, expect: fail}
        - link: {endpoint: "ue1:wlan0", state: up}
        - ping: {from: ue1:wlan0, to: cn1, family: ipv4, count: 2, interval: 0.1}
        - ping: {from: ue1:wlan0, to: cn1, family: ipv4, count: 2, interval: 0.1, expect: fail}
        """, keep_going=True)
    assert statuses(res) == [PASSED, PASSED, PASSED, FAILED, PASSED, PASSED, PASSED, FAILED], \
        [s.message for s in res.steps]
    assert "expected no reply" in res.steps[7].message
    ok = res.steps[0].details
    assert ok["address"] == "203.0.113.10" and ok["transmitted"] == 3 and ok["received"] == 3
    assert 0 < ok["rtt_min"] <= ok["rtt_avg"] <= ok["rtt_max"] < 100
    assert res.steps[1].details["address"] == "2001:db8:5::10"
    assert res.steps[3].details["received"] == 0 and "no reply" in res.steps[3].message
    assert res.exit_code == 1


def test_failed_step_skips_the_rest(tmp_path):
    res = run_steps(tmp_path, "skip", """
        - link: {endpoint: "ue1:wlan0", state: down}
        - ping: {from: ue1:wlan0, to: cn1, family: ipv4, count: 1}
        - wait: 0.1
        """)
    assert statuses(res) == [PASSED, FAILED, "skipped"]


def test_udp_stream_loss_under_impairment(tmp_path):
    res = run_steps(tmp_path, "loss", """
        - impair: {endpoint: "pdngw:sgi0", loss: 30}
        - udp_stream: {name: lossy, from: ue1, to: cn1, family: ipv4, rate: 250, duration: 3, size: 100}
        - stream_check: {name: lossy, max_loss: 45}
        - stream_check: {name: lossy, max_loss: 5}
        - impair: {endpoint: "pdngw:sgi0", clear: true}
        - udp_stream: {name: clean, from: ue1, to: cn1, family: ipv4, rate: 250, duration: 1}
        - stream_check: {name: clean, max_loss: 0}
        """, keep_going=True)
    assert statuses(res) == [PASSED, PASSED, PASSED, FAILED, PASSED, PASSED, PASSED], [s.message for s in res.steps]
    d = res.steps[2].details
    assert d["finished"] and d["packets"] >= 700
    assert 22.0 <= d["loss_pct"] <= 38.0, d["loss_pct"]  # 30 % +- 4 sigma for ~750 datagrams
    assert d["lost"] == d["packets"] - d["received"]
    assert "max_loss 5" in res.steps[3].message
    assert res.steps[6].details["loss_pct"] == 0.0


def test_move_with_a_running_stream(tmp_path):
    # wlan1 down: the UE's only path is wlan0; moving it from IPv4-only wlan-a to IPv6-only wlan-b
    # breaks IPv4 and the sender must fall back to the CN's IPv6 address.
    res = run_steps(tmp_path, "move", """
        - link: {endpoint: "ue1:wlan1", state: down}
        - udp_stream: {name: mv, from: ue1, to: cn1, rate: 100, until_stop: true}
        - wait: 1.5
        - move: {ue: ue1, radio: wlan0, to: wlan-b}
        - wait: 1.5
        - stream_stop: {name: mv, max_loss: 20}
        """)
    assert statuses(res) == [PASSED] * 6, [s.message for s in res.steps]
    move = res.steps[3].details
    assert move["network"] == "wlan-b" and any(a.startswith("2001:db8:b::") for a in move["addresses"]["ipv6"])
    assert 0 < move["took"] < 5
    d = res.steps[5].details
    interval = 1 / 100
    assert d["interruption"] > 2 * interval, d["interruption"]  # the move shows as a gap
    v4 = [s for s in d["sources"] if "." in s]
    v6 = [s for s in d["sources"] if s.startswith("2001:db8:b::")]
    assert v4 and v6, d["sources"]
    assert d["sources"][v6[0]]["count"] > 100  # the stream continued after the move
    assert d["sender"]["switches"][-1]["to"] == "2001:db8:5::10"
    assert res.streams["mv"]["received"] == d["received"]


def test_wait(tmp_path):
    res = run_steps(tmp_path, "wait", """
        - wait: 0.5
        - wait: {seconds: 0}
        """)
    assert statuses(res) == [PASSED, PASSED]
    assert 0.5 <= res.steps[0].duration < 0.8
    assert res.steps[1].duration < 0.2


def test_step_timeout_is_an_error(tmp_path):
    res = run_steps(tmp_path, "timeout", """
        - wait: {seconds: 10, timeout: 0.5}
        - wait: 0
        """)
    assert statuses(res) == [ERROR, "skipped"]
    assert "timed out" in res.steps[0].message and res.steps[0].duration < 2


def test_expect_pass_fail_and_within(tmp_path):
    res = run_steps(tmp_path, "expect", """
        - expect: {node: cn1, path: kind, equals: cn}
        - expect: {node: cn1, query: status, path: sink_port, equals: 5001}
        - expect: {node: cn1, path: kind, equals: ue}
        - expect: {node: cn1, path: no.such.field, exists: false}
        - udp_stream: {name: ex, from: ue1, to: cn1, rate: 100, duration: 2}
        - expect: {node: cn1, query: stream, args: {id: ex}, path: received, ge: 100, within: 3, interval: 0.1}
        - expect: {node: cn1, query: streams, path: ex.received, gt: 100000, within: 0.3, interval: 0.1}
        """, keep_going=True)
    assert statuses(res) == [PASSED, PASSED, FAILED, PASSED, PASSED, PASSED, FAILED], [s.message for s in res.steps]
    assert "'cn'" in res.steps[2].message and "equals 'ue'" in res.steps[2].message
    assert res.steps[5].details["polls"] > 1 and res.steps[5].details["actual"] >= 100
    assert "still after 0.3 s" in res.steps[6].message


def test_registered_runner_and_cn_udp_echo(tmp_path):
    """A step kind registered from outside (as protocol issues do) runs with the RunContext it gets;
    here it sends UDP echo requests from ue1 to both of cn1's addresses (port 7)."""
    import dataclasses

    from s2c.lab.steps import STEP_RUNNERS, StepOutcome, register_runner

    probe = textwrap.dedent("""
        import socket, sys
        out = []
        for addr in sys.argv[1:]:
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(b"echo-" + addr.encode(), (addr, 7))
            data, src = s.recvfrom(100)
            out.append(f"{src[0]}={data.decode()}")
        print(" ".join(out))
    """)

    @register_runner("test_echo")
    def run_echo(ctx, step):
        addrs = [ctx.resolve("ue1", "cn1", 4)[0], ctx.resolve("ue1", "cn1", 6)[0]]
        res = ctx.backend.exec("ue1", [sys.executable, "-c", probe, *addrs], timeout=10)
        counters = ctx.call("cn1", "counters")
        if res.returncode != 0:
            return StepOutcome.fail(res.stderr.strip().splitlines()[-1])
        return StepOutcome.ok(res.stdout.strip(), replies=res.stdout.split(), counters=counters)

    try:
        path = tmp_path / "echo.yaml"
        path.write_text(HEAD.format(name="echo") + "  - wait: 0\n")
        scn = load_scenario(path)
        step = dataclasses.replace(scn.steps[0], kind="test_echo", name="udp echo", args={})
        scn = dataclasses.replace(scn, steps=(step,))
        run_id = f"s2ct-rn-{secrets.token_hex(3)}"
        try:
            res = run_scenario(scn, run_id=run_id, runs_root=tmp_path / "runs")
        finally:
            cleanup(run_id)
    finally:
        STEP_RUNNERS.pop("test_echo", None)
    assert statuses(res) == [PASSED], res.steps[0].message or res.error
    replies = res.steps[0].details["replies"]
    # each reply comes back from the address it was sent to
    assert replies == ["203.0.113.10=echo-203.0.113.10", "2001:db8:5::10=echo-2001:db8:5::10"]
    assert res.steps[0].details["counters"]["echo_replies"] == 2
