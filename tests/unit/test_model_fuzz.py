"""Property tests: whatever the YAML, the model loaders either return a model or raise ModelError."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from s2c.model import ModelError, Scenario, Topology, load_scenario, load_topology

REPO = Path(__file__).resolve().parents[2]
TOPO_DATA = yaml.safe_load((REPO / "scenarios" / "topologies" / "default.yaml").read_text())
SCN_DATA = yaml.safe_load((REPO / "scenarios" / "default.yaml").read_text())
SCN_DATA["topology"] = copy.deepcopy(TOPO_DATA)  # inline, so mutations reach the topology too

WORDS = ["name", "nodes", "links", "kind", "ue", "bridge", "router", "pdngw", "cn", "hss", "access", "type",
         "wlan", "3gpp", "ipv4", "ipv6", "gateway", "pool", "interfaces", "routes", "to", "via", "dev", "nat44",
         "outside", "steps", "ping", "from", "wait", "move", "udp_stream", "expect", "impair", "link", "ue1",
         "cn1", "ar-a", "wlan-a", "ue1:wlan0", "ar-a:eth0", "192.0.2.1", "192.0.2.1/24", "2001:db8::1/64",
         "default", "imsi", "k", "opc", "topology", "subscribers", "ues", "settings", "seconds", "name"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS), st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(WORDS), st.text(max_size=8), st.integers(-3, 3), st.none(), st.booleans())
trees = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=25,
)


def _load(loader: Any, text: str) -> Any:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.yaml"
        p.write_text(text)
        try:
            return loader(p)
        except ModelError as exc:
            assert exc.errors and "\n" not in str(exc)
            for e in exc.errors:
                assert str(e).startswith(str(p)) or str(e).startswith(d)
            return exc


def _mutate(data: Any, path: list[Any], value: Any) -> Any:
    """Replace the subtree reached by following ``path`` (indices taken modulo sizes) with ``value``."""
    data = copy.deepcopy(data)
    if not path:
        return value
    cur = data
    for step in path[:-1]:
        if isinstance(cur, dict) and cur:
            cur = cur[list(cur)[step % len(cur)]]
        elif isinstance(cur, list) and cur:
            cur = cur[step % len(cur)]
        else:
            break
    step = path[-1]
    if isinstance(cur, dict) and cur:
        cur[list(cur)[step % len(cur)]] = value
    elif isinstance(cur, list) and cur:
        cur[step % len(cur)] = value
    return data


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    _load(load_topology, text)
    _load(load_scenario, text)


@SETTINGS
@given(trees)
@example(tree={"\n": None})  # found by hypothesis: a key with a newline split the one-line error
def test_random_structures(tree: Any) -> None:
    text = yaml.safe_dump(tree)
    r1 = _load(load_topology, text)
    r2 = _load(load_scenario, text)
    assert isinstance(r1, (ModelError, Topology)) and isinstance(r2, (ModelError, Scenario))


@SETTINGS
@given(st.lists(st.integers(0, 50), min_size=1, max_size=6), trees)
def test_mutated_default_topology(path: list[int], value: Any) -> None:
    res = _load(load_topology, yaml.safe_dump(_mutate(TOPO_DATA, path, value)))
    assert isinstance(res, (ModelError, Topology))


@SETTINGS
@given(st.lists(st.integers(0, 50), min_size=1, max_size=7), trees)
def test_mutated_default_scenario(path: list[int], value: Any) -> None:
    res = _load(load_scenario, yaml.safe_dump(_mutate(SCN_DATA, path, value)))
    assert isinstance(res, (ModelError, Scenario))


def test_yaml_oddities() -> None:
    cases = [
        "a: &x [*x]\n",                        # recursive alias
        "nodes: !!set {a, b}\n",                # unsupported tag
        "nodes: !custom 3\n",                   # unknown tag
        "? [a, b]\n: 1\n",                      # unhashable key
        "--- 1\n--- 2\n",                       # two documents
        "nodes: {a: 2001-13-45}\n",             # bad timestamp
        "base: &b {kind: cn}\nnodes: {a: {<<: *b, kind: ue}}\n",  # merge key
        "[" * 2000 + "]" * 2000 + "\n",        # deep nesting
        "\xff\xfe",
    ]
    for text in cases:
        _load(load_topology, text)
        _load(load_scenario, text)


def test_merge_key_override_is_not_a_duplicate(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("x-base: &b {kind: cn, interfaces: {eth0: {ipv4: [203.0.113.1/24]}}}\n"
                 "nodes:\n  a: {<<: *b}\n  b: {<<: *b, interfaces: {eth0: {ipv4: [203.0.113.2/24]}}}\n"
                 "links: [[a:eth0, b:eth0]]\n")
    res = _load(load_topology, p.read_text())
    assert isinstance(res, ModelError)
    assert [str(e).split(": ", 1)[1] for e in res.errors] == ["x-base: unknown key (expected one of: name, description, nodes, links)"]


STEP_WORDS = ["ue1", "cn1", "ar-a", "pdngw", "hss", "wlan-a", "wlan-b", "home", "core", "ue1:wlan0", "ue1:wlan1",
              "ar-a:eth0", "pdngw:sgi0", "cn1:eth0", "203.0.113.10", "2001:db8:5::10", "hoa", "s1", "s2", "ipv4",
              "ipv6", "auto", "up", "down", "1mbit", "status", "streams", "s1.received", "success", "fail", "wlan0"]
step_values = st.one_of(st.sampled_from(STEP_WORDS), st.integers(-5, 200), st.floats(-1, 100), st.booleans(),
                        st.none(), st.lists(st.sampled_from(STEP_WORDS), max_size=2))


@st.composite
def step_lists(draw: Any) -> list[Any]:
    from s2c.model import STEP_SCHEMAS

    out = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(sorted(STEP_SCHEMAS)))
        fields = [f.name for f in STEP_SCHEMAS[kind].fields] + ["name", "timeout", "background", "bogus"]
        args = draw(st.dictionaries(st.sampled_from(fields), step_values, max_size=6))
        out.append({kind: args if draw(st.booleans()) else draw(step_values)})
    return out


@SETTINGS
@given(step_lists())
def test_random_steps_on_default_topology(steps: list[Any]) -> None:
    doc = {"topology": str(REPO / "scenarios" / "topologies" / "default.yaml"),
           "subscribers": SCN_DATA["subscribers"], "ues": SCN_DATA["ues"], "steps": steps}
    res = _load(load_scenario, yaml.safe_dump(doc))
    assert isinstance(res, (ModelError, Scenario))
    if isinstance(res, Scenario):
        assert len(res.steps) == len(steps)
