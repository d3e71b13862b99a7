"""Scenario YAML loading and validation (s2c.model.load_scenario) and the step schema registry."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from s2c.model import (
    STEP_SCHEMAS,
    FieldSpec,
    ModelError,
    Scenario,
    Step,
    StepSchema,
    load_scenario,
    register_step,
)

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
TOPO = REPO / "scenarios" / "topologies" / "default.yaml"

HEAD = f"""\
name: s
topology: {TOPO}
subscribers:
  - imsi: "001010000000001"
    k: "465b5ce8b199b49faa5f0a2ee238a6bc"
    opc: "cd63cb71954a9f4e48a5994e37a02baf"
ues:
  ue1: {{imsi: "001010000000001"}}
steps:
"""
FIRST_STEP_LINE = HEAD.count("\n") + 1  # line 10


def write(tmp_path: Path, text: str, name: str = "scn.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def with_steps(tmp_path: Path, steps: str) -> Path:
    return write(tmp_path, HEAD + textwrap.dedent(steps))


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ModelError) as ei:
        load_scenario(path)
    assert "\n" not in str(ei.value)
    return [str(e) for e in ei.value.errors]


def assert_error(path: Path, line: int, field: str, fragment: str, file: Path | None = None) -> None:
    lines = errors_of(path)
    prefix = f"{file or path}:{line}: {field}: "
    hits = [e for e in lines if e.startswith(prefix)]
    assert hits, f"no error at {prefix!r}; got:\n" + "\n".join(lines)
    assert any(fragment in e for e in hits), f"{fragment!r} not in {hits}"


# ---- every shipped scenario validates ---------------------------------------------------------
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_shipped_scenarios_validate(path: Path) -> None:
    scn = load_scenario(path)
    assert isinstance(scn, Scenario)
    assert scn.steps and all(isinstance(s, Step) and s.kind in STEP_SCHEMAS for s in scn.steps)
    assert [s.index for s in scn.steps] == list(range(len(scn.steps)))
    assert all(s.source == str(path) and s.line > 0 for s in scn.steps)


def test_at_least_four_scenarios() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"default", "network-move", "link-down", "impair-loss", "impair-rate"} <= names


def test_default_scenario_is_the_s2c_attach() -> None:
    scn = load_scenario(REPO / "scenarios" / "default.yaml")
    assert scn.name == "default" and scn.topology_path == str(TOPO)
    kinds = [s.kind for s in scn.steps]
    assert kinds[0] == "attach" and kinds[-2] == "detach"
    assert kinds.index("udp_stream") < kinds.index("move") < kinds.index("stream_stop")
    stream = next(s for s in scn.steps if s.kind == "udp_stream")
    assert stream.args["src"] == "hoa"
    assert scn.steps[0].args["radio"] == "wlan0"  # starts on the NATed IPv4 Wi-Fi


def test_network_move_scenario_content() -> None:
    scn = load_scenario(REPO / "scenarios" / "network-move.yaml")
    assert scn.topology.name == "default" and scn.topology_path == str(TOPO)
    kinds = [s.kind for s in scn.steps]
    assert kinds.count("ping") >= 7 and "udp_stream" in kinds and kinds.count("move") == 2
    assert kinds.index("udp_stream") < kinds.index("move") < kinds.index("stream_stop") < kinds.index("expect")
    sub = scn.subscriber("001010000000001")
    assert sub is not None and len(sub.k) == 16 and sub.opc and sub.op is None and sub.amf == b"\xb9\xb9"
    assert sub.apn == "internet" and sub.sqn == 0 and sub.home_prefix_len == 64 and sub.ipv4_hoa
    assert scn.ues["ue1"].imsi == "001010000000001"
    stream = next(s for s in scn.steps if s.kind == "udp_stream")
    assert stream.background and stream.args["until_stop"] and stream.args["duration"] == 0.0


def test_step_args_defaults_and_names(tmp_path: Path) -> None:
    p = with_steps(tmp_path, """\
        - ping: {from: ue1:wlan0, to: ar-a}
        - wait: 2
        - wait: {seconds: 0.5, name: settle}
        - expect: {node: cn1, path: a.b, exists: true, within: 3}
        """)
    scn = load_scenario(p)
    ping, w1, w2, exp = scn.steps
    assert ping.args == {"from": "ue1:wlan0", "to": "ar-a", "family": "auto", "count": 3, "interval": 0.2,
                         "max_loss": 0.0, "expect": "success", "timeout": None, "background": False}
    assert ping.name == "ping ue1:wlan0 -> ar-a" and ping.line == FIRST_STEP_LINE
    assert w1.args["seconds"] == 2.0 and w1.line == FIRST_STEP_LINE + 1
    assert w2.name == "settle" and w2.args["seconds"] == 0.5
    assert exp.args["query"] == "status" and exp.args["exists"] is True and exp.args["within"] == 3.0
    assert "equals" not in exp.args  # optional fields without a default are absent
    assert scn.settings.step_timeout == 30.0 and scn.settings.capture is True


def test_inline_topology(tmp_path: Path) -> None:
    p = write(tmp_path, textwrap.dedent("""\
        topology:
          nodes:
            a: {kind: cn, interfaces: {eth0: {ipv4: [203.0.113.1/24]}}}
            b: {kind: cn, interfaces: {eth0: {ipv4: [203.0.113.2/24]}}}
          links:
            - [a:eth0, b:eth0]
        steps:
          - ping: {from: a, to: b}
          - ping: {from: a, to: 203.0.113.2}
        """))
    scn = load_scenario(p)
    assert scn.topology_path is None and set(scn.topology.nodes) == {"a", "b"}


def test_inline_topology_errors_have_topology_prefix(tmp_path: Path) -> None:
    p = write(tmp_path, textwrap.dedent("""\
        topology:
          nodes:
            a: {kind: cn, interfaces: {eth0: {ipv4: [203.0.113.1/24]}}}
          links:
            - [a:eth0, b:eth0]
        """))
    assert_error(p, 5, "topology.links[0][1]", "unknown node 'b'")


# ---- bad scenarios ------------------------------------------------------------------------------
def test_missing_topology_file(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\ntopology: topologies/nope.yaml\nsteps: []\n")
    missing = tmp_path / "topologies" / "nope.yaml"
    assert_error(p, 2, "topology", f"no such file '{missing}'")


def test_topology_file_errors_point_into_topology_file(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("nodes:\n  a: {kind: cn}\n  b: {kind: cnn}\n")
    p = write(tmp_path, "topology: t.yaml\n")
    assert_error(p, 3, "nodes.b.kind", "invalid value 'cnn' (did you mean 'cn'?)", file=tmp_path / "t.yaml")


def test_missing_scenario_file(tmp_path: Path) -> None:
    p = tmp_path / "absent.yaml"
    assert errors_of(p) == [f"{p}: no such file '{p}'"]


def test_yaml_syntax_error_line(tmp_path: Path) -> None:
    p = with_steps(tmp_path, """\
        - wait: 1
        - ping: {from: ue1, to: [cn1}
        """)
    lines = errors_of(p)
    assert len(lines) == 1 and "YAML syntax error" in lines[0]
    assert lines[0].startswith(f"{p}:{FIRST_STEP_LINE + 1}: ")


def test_unknown_top_key(tmp_path: Path) -> None:
    p = write(tmp_path, HEAD.replace("steps:\n", "setings: {capture: true}\nsteps:\n"))
    assert_error(p, 9, "setings", "unknown key (did you mean 'settings'?)")


def test_unknown_step_kind(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- wait: 1\n- pnig: {from: ue1, to: cn1}\n")
    assert_error(p, FIRST_STEP_LINE + 1, "steps[1].pnig", "unknown step kind (did you mean 'ping'?)")


def test_unknown_step_arg(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping:\n    from: ue1\n    to: cn1\n    cuont: 3\n")
    assert_error(p, FIRST_STEP_LINE + 3, "steps[0].ping.cuont", "unknown key (did you mean 'count'?)")


def test_step_arg_wrong_type(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping: {from: ue1, to: cn1, count: three}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].ping.count", "expected an integer, got string")


def test_step_missing_required(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping: {from: ue1}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].ping.to", "required key missing")


def test_step_badly_indented_args(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping:\n  from: ue1\n  to: cn1\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0]", "indent the arguments under 'ping:'")


def test_unknown_node_in_step(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- wait: 1\n- ping: {from: ue1, to: cn2}\n")
    assert_error(p, FIRST_STEP_LINE + 1, "steps[1].ping.to", "unknown node 'cn2' (did you mean 'cn1'?)")


def test_unknown_interface_in_step(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- link: {endpoint: 'ar-a:eth7', state: down}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].link.endpoint", "unknown interface 'eth7' of 'ar-a'")


def test_bad_enum_in_step(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- link: {endpoint: 'ar-a:eth0', state: dwn}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].link.state", "invalid value 'dwn' (did you mean 'down'?)")


def test_move_to_unknown_access_network(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- move:\n    ue: ue1\n    radio: wlan0\n    to: wlan-c\n")
    assert_error(p, FIRST_STEP_LINE + 3, "steps[0].move.to", "unknown access network 'wlan-c' (did you mean 'wlan-")


def test_move_to_non_access_bridge(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- move: {ue: ue1, radio: wlan0, to: core}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].move.to", "'core' is not an access network")


def test_move_to_current_network(tmp_path: Path) -> None:
    p = with_steps(tmp_path, """\
        - move: {ue: ue1, radio: wlan0, to: wlan-b}
        - move: {ue: ue1, radio: wlan0, to: home}
        - move: {ue: ue1, radio: wlan0, to: home}
        """)
    assert_error(p, FIRST_STEP_LINE + 2, "steps[2].move.to", "'ue1:wlan0' is already on 'home' at this step")


def test_move_unknown_radio(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- move: {ue: ue1, radio: wlan7, to: home}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].move.radio", "unknown interface 'wlan7' of 'ue1'")


def test_move_non_ue(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- move: {ue: cn1, radio: eth0, to: home}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].move.ue", "'cn1' is a cn, not a ue")


def test_ping_family_tracks_moves(tmp_path: Path) -> None:
    # wlan0 starts on the IPv4-only wlan-a: an IPv6 ping from it is an error until it moves to wlan-b
    p = with_steps(tmp_path, """\
        - ping: {from: ue1:wlan0, to: cn1, family: ipv6}
        - move: {ue: ue1, radio: wlan0, to: wlan-b}
        - ping: {from: ue1:wlan0, to: cn1, family: ipv6}
        - ping: {from: ue1:wlan0, to: cn1, family: ipv4}
        """)
    lines = errors_of(p)
    assert any(e.startswith(f"{p}:{FIRST_STEP_LINE}: steps[0].ping.from: 'ue1:wlan0' has no IPv6 address "
                            "(it is on 'wlan-a' at this step)") for e in lines), lines
    assert any(e.startswith(f"{p}:{FIRST_STEP_LINE + 3}: steps[3].ping.from: 'ue1:wlan0' has no IPv4 address")
               for e in lines), lines
    assert not any("steps[2]" in e for e in lines)


def test_ping_literal_family_mismatch(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping: {from: pdngw, to: '2001:db8:5::10', family: ipv4}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].ping.to", "'2001:db8:5::10' has no IPv4 address")


def test_duplicate_stream_name(tmp_path: Path) -> None:
    p = with_steps(tmp_path, """\
        - udp_stream: {name: s1, from: ue1, to: cn1, duration: 5}
        - wait: 1
        - udp_stream: {name: s1, from: ue1, to: cn1, duration: 5}
        """)
    assert_error(p, FIRST_STEP_LINE + 2, "steps[2].udp_stream.name",
                 f"duplicate stream name 's1' (first started by steps[0], line {FIRST_STEP_LINE})")


def test_stream_stop_unknown(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- udp_stream: {name: s1, from: ue1, to: cn1, duration: 5}\n- stream_stop: s2\n")
    assert_error(p, FIRST_STEP_LINE + 1, "steps[1].stream_stop.name", "no stream 's2' was started before this step")


def test_stream_stop_before_start(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- stream_check: s1\n- udp_stream: {name: s1, from: ue1, to: cn1, duration: 5}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].stream_check.name", "no stream 's1' was started before this step")


def test_stream_until_stop_never_stopped(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- udp_stream: {name: s1, from: ue1, to: cn1, until_stop: true}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].udp_stream.until_stop", "no later stream_stop stops it")


def test_stream_needs_duration(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- udp_stream: {name: s1, from: ue1, to: cn1}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].udp_stream.duration", "needs 'duration' or 'until_stop: true'")


def test_stream_to_non_cn(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- udp_stream: {name: s1, from: ue1, to: ar-a, duration: 2}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].udp_stream.to", "only a cn node receives")


def test_wait_negative(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- wait: -1\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].wait.seconds", "-1 is below the minimum 0 seconds")


def test_wait_not_a_number(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- wait: soon\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].wait.seconds", "expected a number, got string")


def test_scalar_form_not_allowed(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping: cn1\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].ping", "expected a mapping of arguments, got string")


def test_impair_needs_something(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- impair: {endpoint: 'ar-a:eth0'}\n- impair: {endpoint: 'ar-a:eth0', loss: 101}\n"
                             "- impair: {endpoint: 'ar-a:eth0', rate: fast}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].impair.loss", "give at least one of loss, rate, delay")
    assert_error(p, FIRST_STEP_LINE + 1, "steps[1].impair.loss", "101 is above the maximum 100")
    assert_error(p, FIRST_STEP_LINE + 2, "steps[2].impair.rate", "invalid rate 'fast'")


def test_expect_exactly_one_comparison(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- expect: {node: cn1, path: a}\n- expect: {node: cn1, path: a, gt: 1, lt: 3}\n"
                             "- expect: {node: ar-a, exists: true}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].expect.equals", "give one of: equals, ne, lt")
    assert_error(p, FIRST_STEP_LINE + 1, "steps[1].expect.lt", "give only one of")
    assert_error(p, FIRST_STEP_LINE + 2, "steps[2].expect.node", "'ar-a' is a router: it runs no daemon")


def test_background_not_allowed(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping: {from: ue1, to: cn1, background: true}\n")
    assert_error(p, FIRST_STEP_LINE, "steps[0].ping.background", "unknown key")


@pytest.mark.parametrize(
    "line_text, field, fragment",
    [
        ('  - imsi: "00101000000000"', "subscribers[0].imsi", "invalid IMSI '00101000000000'"),
        ("  - imsi: 001010000000001", "subscribers[0].imsi", "write the IMSI as a quoted string"),
        ('    k: "465b5ce8b199b49faa5f0a2ee238a6b"', "subscribers[0].k", "expected 32 hex digits (16 bytes)"),
        ('    k: "465b5ce8b199b49faa5f0a2ee238a6bz"', "subscribers[0].k", "expected 32 hex digits"),
    ],
)
def test_bad_subscriber(tmp_path: Path, line_text: str, field: str, fragment: str) -> None:
    lines = HEAD.splitlines()
    key = line_text.split(":")[0]
    i = next(n for n, ln in enumerate(lines) if ln.split(":")[0] == key)
    lines[i] = line_text
    p = write(tmp_path, "\n".join(lines) + "\n")
    assert_error(p, i + 1, field, fragment)


def test_subscriber_op_and_opc(tmp_path: Path) -> None:
    text = HEAD.replace('    opc: "cd63', '    op: "cdc202d5123e20f62b6d676ac72cb318"\n    opc: "cd63')
    p = write(tmp_path, text)
    assert_error(p, 6, "subscribers[0].op", "give exactly one of opc and op, not both")


def test_subscriber_needs_opc_or_op(tmp_path: Path) -> None:
    text = HEAD.replace('    opc: "cd63cb71954a9f4e48a5994e37a02baf"\n', "")
    p = write(tmp_path, text)
    assert_error(p, 4, "subscribers[0].opc", "required key missing")


def test_ue_unknown_imsi(tmp_path: Path) -> None:
    p = write(tmp_path, HEAD.replace('ue1: {imsi: "001010000000001"}', 'ue1: {imsi: "001010000000009"}'))
    assert_error(p, 8, "ues.ue1.imsi", "IMSI 001010000000009 is not a subscriber")
    p2 = write(tmp_path, HEAD.replace('ue1: {imsi: "001010000000001"}',
                                      'ue1: {imsi: "001010000000009", allow_unknown: true}'), "ok.yaml")
    assert load_scenario(p2).ues["ue1"].allow_unknown


def test_ue_must_be_ue_node(tmp_path: Path) -> None:
    p = write(tmp_path, HEAD.replace('  ue1: {imsi', '  cn1: {imsi'))
    assert_error(p, 8, "ues.cn1", "'cn1' is a cn, not a ue")


def test_duplicate_subscriber_key(tmp_path: Path) -> None:
    p = write(tmp_path, HEAD.replace('    k: "465b', '    k: "00000000000000000000000000000000"\n    k: "465b'))
    assert_error(p, 6, "subscribers[0].k", "duplicate key 'k' (first defined on line 5)")


def test_settings_validated(tmp_path: Path) -> None:
    p = write(tmp_path, HEAD.replace("steps:\n", "settings: {capture: yes-please, step_timeout: 0}\nsteps:\n"))
    assert_error(p, 9, "settings.capture", "expected a boolean, got string")
    assert_error(p, 9, "settings.step_timeout", "must be positive")


def test_errors_from_several_places(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- wait: -1\n- ping: {from: ue9, to: cn1}\n")
    err = pytest.raises(ModelError, load_scenario, p).value
    assert len(err.errors) == 2 and err.format_all().count("\n") == 1


# ---- registry ------------------------------------------------------------------------------------
def test_registry_has_the_steps() -> None:
    assert {"ping", "udp_stream", "stream_stop", "stream_check", "link", "move", "impair", "wait",
            "expect"} <= set(STEP_SCHEMAS)


def test_register_step_adds_a_kind(tmp_path: Path) -> None:
    seen = []

    def check(args, topo, state):
        seen.append((args["ue"], state.index))
        return [("ue", "nope")] if args.get("apn") == "bad" else []

    schema = StepSchema(kind="attach_test", fields=(FieldSpec("ue", "ue", required=True),
                                                     FieldSpec("apn", "string", default="internet")),
                        check=check, scalar="ue")
    register_step(schema)
    try:
        p = with_steps(tmp_path, "- attach_test: ue1\n- attach_test: {ue: ue1, apn: bad}\n")
        assert_error(p, FIRST_STEP_LINE + 1, "steps[1].attach_test.ue", "nope")
        assert seen == [("ue1", 0), ("ue1", 1)]
    finally:
        del STEP_SCHEMAS["attach_test"]


def test_register_step_rejects_bad_schema() -> None:
    with pytest.raises(ValueError):
        register_step(StepSchema(kind="x", fields=(FieldSpec("a", "string"),), scalar="b"))
    with pytest.raises(ValueError):
        FieldSpec("a", "strng")


def test_docs_cover_every_step_and_field() -> None:
    doc = (REPO / "docs" / "scenarios.md").read_text()
    for kind, schema in STEP_SCHEMAS.items():
        assert f"#### `{kind}`" in doc, kind
        section = doc.split(f"#### `{kind}`", 1)[1].split("\n#### ", 1)[0]
        for f in schema.fields:
            assert f"`{f.name}`" in section, (kind, f.name)


def test_ping_src_hoa_needs_ue_with_subscription(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping: {from: ue1, to: cn1, src: hoa}\n- ping: {from: pdngw, to: cn1, src: hoa}\n"
                             "- ping: {from: pdngw, to: cn1, src: '198.51.100.300'}\n")
    lines = errors_of(p)
    assert not any("steps[0]" in e for e in lines)
    assert_error(p, FIRST_STEP_LINE + 1, "steps[1].ping.src", "'hoa' (home address) needs a UE")
    assert_error(p, FIRST_STEP_LINE + 2, "steps[2].ping.src", "invalid address '198.51.100.300'")


def test_invalid_scalar_reported_once(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- wait: !custom 3\n")
    lines = errors_of(p)
    assert len(lines) == 1 and lines[0].startswith(f"{p}:{FIRST_STEP_LINE}: steps[0].wait: invalid value")


def test_move_into_full_pool(tmp_path: Path) -> None:
    # the default home pool has 4 addresses; ue1 has 2 radios, so moving both there is fine ...
    p = with_steps(tmp_path, "- move: {ue: ue1, radio: wlan0, to: home}\n- move: {ue: ue1, radio: wlan1, to: home}\n")
    assert len(load_scenario(p).steps) == 2


def test_pool_exhaustion_by_moves(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(textwrap.dedent("""\
        nodes:
          ue1: {kind: ue}
          a: {kind: bridge, access: {type: wlan, ipv4: {gateway: 192.0.2.1, pool: [192.0.2.10/24]}}}
          b: {kind: bridge, access: {type: wlan, ipv6: {gateway: "2001:db8:b::1", pool: ["2001:db8:b::10/64"]}}}
          r: {kind: router, interfaces: {e0: {ipv4: [192.0.2.1/24]}, e1: {ipv6: ["2001:db8:b::1/64"]}}}
        links: [[ue1:w0, a], [ue1:w1, b], [r:e0, a], [r:e1, b]]
        """))
    p = write(tmp_path, "topology: t.yaml\nsteps:\n  - move: {ue: ue1, radio: w0, to: b}\n")
    assert_error(p, 3, "steps[0].move.to", "'b' has 1 IPv6 pool addresses, all in use by other radios at this step")


def test_duplicate_key_in_step_args(tmp_path: Path) -> None:
    p = with_steps(tmp_path, "- ping:\n    from: ue1\n    to: cn1\n    to: ar-a\n")
    assert_error(p, FIRST_STEP_LINE + 3, "steps[0].ping.to", "duplicate key 'to' (first defined on line 12)")


def test_settings_continue_on_failure(tmp_path):
    import shutil

    from s2c.model import ModelError, load_scenario

    root = tmp_path / "s"
    shutil.copytree(Path(__file__).resolve().parents[2] / "scenarios", root)
    text = (root / "default.yaml").read_text()
    assert load_scenario(root / "default.yaml").settings.continue_on_failure is False
    (root / "k.yaml").write_text(text.replace("  step_timeout: 30", "  step_timeout: 30\n  continue_on_failure: true"))
    assert load_scenario(root / "k.yaml").settings.continue_on_failure is True
    (root / "bad.yaml").write_text(text.replace("  step_timeout: 30", "  step_timeout: 30\n  continue_on_failure: maybe"))
    with pytest.raises(ModelError, match=r"bad\.yaml:\d+: settings\.continue_on_failure"):
        load_scenario(root / "bad.yaml")
