"""Step schema registry: what each scenario step accepts and how it is cross-checked (docs/scenarios.md).

A step in a scenario is a one-key mapping ``{kind: args}``. ``STEP_SCHEMAS[kind]`` declares its fields
(type, required, default, allowed values) and an optional ``check(args, topology, state)`` that
cross-checks the arguments against the topology and the scenario so far (and records the effect of
the step in ``state``, e.g. a radio's access network after a ``move``). Adding a step kind is one
``register_step(StepSchema(...))`` call; the lab looks up its executor by the same kind.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import suggest
from .topology import DAEMON_KINDS, NodeKind, Topology

if TYPE_CHECKING:  # pragma: no cover
    from .scenario import Subscriber, UeSpec

# ---- field types ----------------------------------------------------------------------------
# string, integer, number, boolean, mapping, any: plain YAML types
# seconds: number >= 0; percent: number 0..100; rate: tc rate such as "1mbit"
# node: a non-bridge node; daemon: a node running a daemon (ue, pdngw, hss, cn); ue: a UE node
# access_network: a bridge node with 'access'; endpoint: "node:iface" of a non-bridge node
# source: node or node:iface; target: node, node:iface or a literal IP address
# address: a literal IP address (or one of ``choices`` as keywords); name: an identifier
FIELD_TYPES = frozenset({
    "string", "integer", "number", "boolean", "mapping", "any", "seconds", "percent", "rate",
    "node", "daemon", "ue", "access_network", "endpoint", "source", "target", "address", "name",
})
COMMON_KEYS = ("name", "timeout", "background")
RATE_RE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps|tbps)$", re.IGNORECASE)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FAMILIES = ("auto", "ipv4", "ipv6")


@dataclass(frozen=True)
class FieldSpec:
    """One argument of a step."""

    name: str
    type: str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] | None = None  # allowed values (for 'address': keywords besides addresses)
    min: float | None = None
    max: float | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"unknown field type {self.type!r}")


CheckFn = Callable[[dict[str, Any], "Topology | None", "ScenarioState"], list[tuple[str, str]]]


@dataclass(frozen=True)
class StepSchema:
    """A step kind: its fields and cross-checks.

    ``scalar``: the field set by the short form ``kind: value`` (e.g. ``wait: 2``).
    ``background``: "never", "optional" (the ``background`` key is accepted) or "always".
    ``exactly_one``: groups of fields of which exactly one must be given.
    ``check(args, topology, state) -> [(field, message)]``: cross-checks against the topology (None if
    the topology itself is invalid: skip those checks) and the scenario so far; it may update ``state``.
    ``title``: display-name template formatted with the args, e.g. ``"{from} -> {to}"``.
    """

    kind: str
    fields: tuple[FieldSpec, ...]
    doc: str = ""
    scalar: str | None = None
    background: str = "never"
    exactly_one: tuple[tuple[str, ...], ...] = ()
    check: CheckFn | None = None
    title: str = ""

    def field(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def keys(self) -> tuple[str, ...]:
        common = ("name", "timeout") + (("background",) if self.background != "never" else ())
        return tuple(f.name for f in self.fields) + common


@dataclass
class StreamState:
    name: str
    index: int
    line: int
    until_stop: bool
    stopped: bool = False


@dataclass
class ScenarioState:
    """What validation knows of the scenario so far (the ``scenario_so_far`` of a check)."""

    topology: Topology | None
    subscribers: dict[str, "Subscriber"] = field(default_factory=dict)
    ues: dict[str, "UeSpec"] = field(default_factory=dict)
    index: int = 0  # index of the step being checked
    line: int = 0
    streams: dict[str, StreamState] = field(default_factory=dict)
    radios: dict[tuple[str, str], str] = field(default_factory=dict)  # (ue, radio) -> access network now

    @classmethod
    def initial(cls, topology: Topology | None, **kw: Any) -> "ScenarioState":
        st = cls(topology=topology, **kw)
        if topology is not None:
            st.radios = initial_radios(topology)
        return st


def initial_radios(topology: Topology) -> dict[tuple[str, str], str]:
    """(ue, iface) -> access network, for every UE interface linked to an access network."""
    out = {}
    access = topology.access_networks()
    for link in topology.links:
        for ep, other in ((link.a, link.b), (link.b, link.a)):
            node = topology.nodes.get(ep.node)
            if node is not None and node.kind is NodeKind.UE and ep.iface and other.node in access:
                out[(ep.node, ep.iface)] = other.node
    return out


STEP_SCHEMAS: dict[str, StepSchema] = {}


def register_step(schema: StepSchema) -> StepSchema:
    """Add (or replace) a step kind in ``STEP_SCHEMAS``; returns the schema."""
    for group in schema.exactly_one:
        for name in group:
            if schema.field(name) is None:
                raise ValueError(f"{schema.kind}: exactly_one names unknown field {name!r}")
    if schema.scalar is not None and schema.field(schema.scalar) is None:
        raise ValueError(f"{schema.kind}: scalar names unknown field {schema.scalar!r}")
    if schema.background not in ("never", "optional", "always"):
        raise ValueError(f"{schema.kind}: background must be never/optional/always")
    STEP_SCHEMAS[schema.kind] = schema
    return schema


# ---- generic field validation ---------------------------------------------------------------
def check_value(spec: FieldSpec, value: Any, topology: Topology | None) -> tuple[Any, str | None]:
    """Validate one argument value against its FieldSpec; returns (normalised value, error or None)."""
    t = spec.type
    if t == "any":
        return value, None
    if t == "mapping":
        if not isinstance(value, dict):
            return None, f"expected a mapping, got {_tn(value)}"
        return value, None
    if t == "boolean":
        return (value, None) if isinstance(value, bool) else (None, f"expected true or false, got {_tn(value)}")
    if t in ("integer",):
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"expected an integer, got {_tn(value)}"
        return _range(spec, value)
    if t in ("number", "seconds", "percent"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
                float("inf"), float("-inf")):
            return None, f"expected a number, got {_tn(value)}"
        lo = spec.min if spec.min is not None else (0 if t != "number" else None)
        hi = spec.max if spec.max is not None else (100 if t == "percent" else None)
        if lo is not None and value < lo:
            what = "seconds" if t == "seconds" else "percent" if t == "percent" else ""
            return None, f"{value} is below the minimum {lo}{' ' + what if what else ''}"
        if hi is not None and value > hi:
            return None, f"{value} is above the maximum {hi}"
        return float(value) if t != "number" or isinstance(value, float) else value, None
    if not isinstance(value, str):
        return None, f"expected a string, got {_tn(value)}"
    if spec.choices is not None and t != "address":
        if value not in spec.choices:
            return None, (f"invalid value '{value}'{suggest(value, spec.choices)} "
                          f"(expected one of: {', '.join(map(str, spec.choices))})")
        return value, None
    if t == "string":
        return value, None
    if t == "name":
        return (value, None) if NAME_RE.match(value) else (None, f"invalid name '{value}' (letters, digits, '-', '_', '.')")
    if t == "rate":
        if RATE_RE.match(value.replace(" ", "")):
            return value.replace(" ", "").lower(), None
        return None, f"invalid rate '{value}' (a number with a unit: bit, kbit, mbit, gbit, bps, kbps, mbps...)"
    if t == "address":
        if spec.choices and value in spec.choices:
            return value, None
        try:
            return str(ipaddress.ip_address(value)), None
        except ValueError:
            extra = f" or one of: {', '.join(spec.choices)}" if spec.choices else ""
            return None, f"invalid address '{value}' (expected an IPv4/IPv6 address{extra})"
    if t == "target":
        try:
            return str(ipaddress.ip_address(value)), None
        except ValueError:
            pass
    if topology is None:
        return value, None  # references cannot be checked without a valid topology
    return _check_ref(t, value, topology)


def _range(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    if spec.min is not None and value < spec.min:
        return None, f"{value} is below the minimum {spec.min:g}"
    if spec.max is not None and value > spec.max:
        return None, f"{value} is above the maximum {spec.max:g}"
    return value, None


def _check_ref(t: str, value: str, topo: Topology) -> tuple[Any, str | None]:
    node_name, sep, iface = value.partition(":")
    node = topo.nodes.get(node_name)
    if node is None and t == "access_network":
        nets = topo.access_networks()
        return None, f"unknown access network '{value}'{suggest(value, nets)} (access networks: {', '.join(nets)})"
    if node is None:
        return None, f"unknown node '{node_name}'{suggest(node_name, topo.nodes)}"
    if t == "access_network":
        if sep:
            return None, f"expected an access network name, got '{value}'"
        if not node.is_access_network:
            nets = list(topo.access_networks())
            return None, f"'{node_name}' is not an access network (access networks: {', '.join(nets) or 'none'})"
        return value, None
    if node.kind is NodeKind.BRIDGE:
        return None, f"'{node_name}' is a bridge, not a host"
    if t in ("node", "daemon", "ue") and sep:
        return None, f"expected a node name, got '{value}'"
    if t == "daemon" and node.kind not in DAEMON_KINDS:
        return None, f"'{node_name}' is a {node.kind.value}: it runs no daemon (expected a ue, pdngw, hss or cn)"
    if t == "ue" and node.kind is not NodeKind.UE:
        return None, f"'{node_name}' is a {node.kind.value}, not a ue"
    if t == "endpoint" and not sep:
        return None, f"expected 'node:interface', got '{value}'"
    if sep:
        if iface not in node.interfaces:
            return None, f"unknown interface '{iface}' of '{node_name}'{suggest(iface, node.interfaces)}"
    return value, None


def _tn(value: Any) -> str:
    from .source import type_name

    return type_name(value)


# ---- address-family helpers for cross-checks -----------------------------------------------
def families_of(ref: str, topo: Topology, state: ScenarioState) -> set[int] | None:
    """Address families available at ``ref`` (address, node:iface or node); None when not known
    statically (a UE as a whole: it may have home addresses from its PDN GW)."""
    try:
        return {ipaddress.ip_address(ref).version}
    except ValueError:
        pass
    node_name, _, iface = ref.partition(":")
    node = topo.nodes.get(node_name)
    if node is None:
        return None
    if not iface:
        if node.kind is NodeKind.UE:
            return None
        out: set[int] = set()
        for i in node.interfaces:
            out |= families_of(f"{node_name}:{i}", topo, state) or set()
        return out
    if (node_name, iface) in state.radios:
        acc = topo.nodes[state.radios[(node_name, iface)]].access
        assert acc is not None
        return ({4} if acc.ipv4_pool else set()) | ({6} if acc.ipv6_pool else set())
    itf = node.interfaces.get(iface)
    if itf is None:
        return None
    return ({4} if itf.ipv4 else set()) | ({6} if itf.ipv6 else set())


def _family_checks(args: dict[str, Any], topo: Topology | None, state: ScenarioState,
                   src_key: str = "from", dst_key: str = "to") -> list[tuple[str, str]]:
    if topo is None:
        return []
    errs: list[tuple[str, str]] = []
    fam = {"ipv4": 4, "ipv6": 6}.get(args.get("family", "auto"))
    pinned_src = args.get("src") not in (None, "hoa")
    a = families_of(args[src_key], topo, state) if args.get("src") != "hoa" else None
    if pinned_src:
        a = {ipaddress.ip_address(args["src"]).version}
    b = families_of(args[dst_key], topo, state)
    where = {4: "IPv4", 6: "IPv6"}
    if fam is not None:
        if a is not None and fam not in a:
            key = "src" if pinned_src else src_key
            errs.append((key, f"'{args[key]}' has no {where[fam]} address{_now(args[key], state)}"))
        if b is not None and fam not in b:
            errs.append((dst_key, f"'{args[dst_key]}' has no {where[fam]} address{_now(args[dst_key], state)}"))
    elif a is not None and b is not None and not (a & b):
        errs.append((dst_key, f"'{args[src_key]}' and '{args[dst_key]}' share no address family"
                              f"{_now(args[src_key], state)}"))
    return errs


def _now(ref: str, state: ScenarioState) -> str:
    node, _, iface = ref.partition(":")
    net = state.radios.get((node, iface))
    return f" (it is on '{net}' at this step)" if net else ""


# ---- the steps ------------------------------------------------------------------------------
def _check_ping(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    if args["from"] == args["to"]:
        return [("to", "a node cannot ping itself here; name another node or address")]
    if args.get("src") == "hoa" and topo is not None:
        node = args["from"].partition(":")[0]
        if topo.nodes[node].kind is not NodeKind.UE or node not in state.ues:
            return [("src", f"'hoa' (home address) needs a UE with a subscription in 'ues', not '{node}'")]
    return _family_checks(args, topo, state)


def _check_udp_stream(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    errs = []
    name = args["name"]
    if name in state.streams:
        first = state.streams[name]
        errs.append(("name", f"duplicate stream name '{name}' (first started by steps[{first.index}], line {first.line})"))
    else:
        state.streams[name] = StreamState(name, state.index, state.line, bool(args.get("until_stop")))
    if args["from"] == args["to"]:
        errs.append(("to", "a stream needs two different nodes"))
    elif topo is not None and topo.nodes[args["to"]].kind is not NodeKind.CN:
        errs.append(("to", f"'{args['to']}' is a {topo.nodes[args['to']].kind.value}: "
                           "only a cn node receives and counts streams"))
    if args.get("until_stop"):
        if args.get("duration") is not None:
            errs.append(("duration", "give either duration or until_stop: true, not both"))
        args["duration"] = 0.0  # 0: until stopped
    elif args.get("duration") is None:
        errs.append(("duration", "a stream needs 'duration' or 'until_stop: true'"))
    return errs + _family_checks(args, topo, state)


def _stream_ref(args: dict[str, Any], state: ScenarioState, stopping: bool) -> list[tuple[str, str]]:
    name = args["name"]
    st = state.streams.get(name)
    if st is None:
        return [("name", f"no stream '{name}' was started before this step{suggest(name, state.streams)}")]
    if st.stopped:
        return [("name", f"stream '{name}' was already stopped")]
    if stopping:
        st.stopped = True
    return []


def _check_stream_stop(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    return _stream_ref(args, state, stopping=True)


def _check_stream_check(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    name = args["name"]
    if name in state.streams and state.streams[name].stopped:
        return []  # checking a stopped stream's final counters is fine
    return _stream_ref(args, state, stopping=False)


def _check_move(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    if topo is None:
        return []
    ue, radio, to = args["ue"], args["radio"], args["to"]
    node = topo.nodes[ue]
    if radio not in node.interfaces:
        return [("radio", f"unknown interface '{radio}' of '{ue}'{suggest(radio, node.interfaces)}")]
    key = (ue, radio)
    if key not in state.radios:
        return [("radio", f"'{ue}:{radio}' is not a radio: it is not linked to an access network")]
    if state.radios[key] == to:
        return [("to", f"'{ue}:{radio}' is already on '{to}' at this step")]
    acc = topo.nodes[to].access
    assert acc is not None
    there = 1 + sum(1 for k, net in state.radios.items() if net == to)
    for fam, pool in (("IPv4", acc.ipv4_pool), ("IPv6", acc.ipv6_pool)):
        if pool and there > len(pool):
            return [("to", f"'{to}' has {len(pool)} {fam} pool addresses, all in use by other radios at this step")]
    state.radios[key] = to
    return []


def _check_impair(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    given = [k for k in ("loss", "rate", "delay") if args.get(k) is not None]
    if args.get("clear"):
        if given:
            return [(given[0], "'clear: true' removes every impairment; give no loss/rate/delay with it")]
        return []
    if not given:
        return [("loss", "give at least one of loss, rate, delay (or clear: true)")]
    return []


def _check_expect(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    path = args.get("path", "")
    if path and any(not part for part in path.split(".")):
        return [("path", f"invalid dotted path '{path}'")]
    return []


def _check_link(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    if topo is None:
        return []
    node, _, iface = args["endpoint"].partition(":")
    if topo.link_of(node, iface) is None:
        return [("endpoint", f"'{args['endpoint']}' is not connected by any link")]
    return []


_THRESHOLDS = (
    FieldSpec("max_loss", "percent", doc="fail if more than this percentage of datagrams is lost"),
    FieldSpec("max_interruption", "seconds", doc="fail if the longest gap between received datagrams is longer"),
    FieldSpec("min_interruption", "seconds", doc="fail if no gap was at least this long (proves an outage)"),
    FieldSpec("max_reordered", "integer", min=0, doc="fail if more datagrams arrived out of order"),
    FieldSpec("min_received", "integer", min=0, doc="fail if fewer datagrams were received"),
)

register_step(StepSchema(
    kind="ping",
    doc="Send ICMP echo requests and fail when more than max_loss percent are lost.",
    fields=(
        FieldSpec("from", "source", required=True, doc="node, or node:iface to pin the source interface"),
        FieldSpec("to", "target", required=True, doc="node, node:iface or a literal address"),
        FieldSpec("family", "string", default="auto", choices=FAMILIES, doc="ipv4, ipv6 or auto"),
        FieldSpec("count", "integer", default=3, min=1, max=100000),
        FieldSpec("interval", "seconds", default=0.2, min=0.01, doc="seconds between requests"),
        FieldSpec("max_loss", "percent", default=0.0, doc="percentage of lost replies tolerated"),
        FieldSpec("src", "address", choices=("hoa",), doc="source address: a literal, or 'hoa' (home address)"),
        FieldSpec("expect", "string", default="success", choices=("success", "fail"),
                  doc="fail: the step passes only if no reply comes back (e.g. after link down)"),
    ),
    check=_check_ping,
    title="{from} -> {to}",
))

register_step(StepSchema(
    kind="udp_stream",
    doc="Start a background UDP datagram stream (sequence-numbered) that survives handovers.",
    fields=(
        FieldSpec("name", "name", required=True, doc="unique stream name, used by stream_stop/stream_check"),
        FieldSpec("from", "node", required=True, doc="sending node"),
        FieldSpec("to", "node", required=True, doc="receiving node (a cn: its daemon counts the stream)"),
        FieldSpec("rate", "integer", default=100, min=1, max=100000, doc="datagrams per second"),
        FieldSpec("size", "integer", default=200, min=16, max=65000, doc="UDP payload bytes"),
        FieldSpec("duration", "seconds", min=0.001, doc="seconds to send (or until_stop: true; normalised to 0)"),
        FieldSpec("until_stop", "boolean", default=False, doc="send until a later stream_stop"),
        FieldSpec("port", "integer", default=5001, min=1, max=65535, doc="destination UDP port"),
        FieldSpec("family", "string", default="auto", choices=FAMILIES,
                  doc="auto: the sender falls back to the other family when one is unreachable"),
        FieldSpec("src", "address", choices=("hoa",), doc="source address: a literal, or 'hoa' (home address)"),
        *_THRESHOLDS,
    ),
    background="always",
    check=_check_udp_stream,
    title="{name}: {from} -> {to}",
))

register_step(StepSchema(
    kind="stream_stop",
    doc="Stop a stream started with udp_stream and check its thresholds.",
    fields=(FieldSpec("name", "name", required=True), *_THRESHOLDS),
    scalar="name",
    check=_check_stream_stop,
    title="{name}",
))

register_step(StepSchema(
    kind="stream_check",
    doc="Check a stream against thresholds: a bounded stream is waited for (wait_end), else its figures so far.",
    fields=(
        FieldSpec("name", "name", required=True),
        *_THRESHOLDS,
        FieldSpec("wait_end", "boolean", default=True,
                  doc="wait for a stream with a duration to end first (false: check the figures so far)"),
    ),
    scalar="name",
    check=_check_stream_check,
    title="{name}",
))

register_step(StepSchema(
    kind="link",
    doc="Set an interface (and so its link) administratively up or down.",
    fields=(
        FieldSpec("endpoint", "endpoint", required=True, doc="node:iface"),
        FieldSpec("state", "string", required=True, choices=("up", "down")),
    ),
    check=_check_link,
    title="{endpoint} {state}",
))

register_step(StepSchema(
    kind="move",
    doc="Move a UE radio to another access network (detach from its bridge, attach to the new one).",
    fields=(
        FieldSpec("ue", "ue", required=True),
        FieldSpec("radio", "string", required=True, doc="interface of the UE linked to an access network"),
        FieldSpec("to", "access_network", required=True),
    ),
    check=_check_move,
    title="{ue}:{radio} -> {to}",
))

register_step(StepSchema(
    kind="impair",
    doc="Impair the egress of an interface: loss (nft), rate (tbf), delay (netem), or clear them all.",
    fields=(
        FieldSpec("endpoint", "endpoint", required=True, doc="node:iface whose egress is impaired"),
        FieldSpec("loss", "percent", doc="drop this percentage of packets"),
        FieldSpec("rate", "rate", doc="shape to this rate, e.g. '1mbit'"),
        FieldSpec("delay", "number", min=0, max=60000, doc="added delay in milliseconds (needs netem)"),
        FieldSpec("clear", "boolean", default=False, doc="remove every impairment of this interface"),
    ),
    check=_check_impair,
    title="{endpoint}",
))

register_step(StepSchema(
    kind="wait",
    doc="Sleep for a number of seconds.",
    fields=(FieldSpec("seconds", "seconds", required=True),),
    scalar="seconds",
    title="{seconds:g}s",
))

register_step(StepSchema(
    kind="expect",
    doc="Query a daemon's control socket and compare a value of the reply (optionally polling).",
    fields=(
        FieldSpec("node", "daemon", required=True),
        FieldSpec("query", "name", default="status", doc="control command"),
        FieldSpec("args", "mapping", default=None, doc="arguments of the control command"),
        FieldSpec("path", "string", default="", doc="dotted path into the reply, e.g. counters.rx"),
        FieldSpec("equals", "any"),
        FieldSpec("ne", "any"),
        FieldSpec("lt", "number"),
        FieldSpec("le", "number"),
        FieldSpec("gt", "number"),
        FieldSpec("ge", "number"),
        FieldSpec("contains", "any"),
        FieldSpec("exists", "boolean"),
        FieldSpec("within", "seconds", doc="poll until true for up to this many seconds"),
        FieldSpec("interval", "seconds", default=0.5, min=0.01, doc="polling interval"),
    ),
    exactly_one=(("equals", "ne", "lt", "le", "gt", "ge", "contains", "exists"),),
    check=_check_expect,
    title="{node} {query} {path}",
))

COMPARISONS = ("equals", "ne", "lt", "le", "gt", "ge", "contains", "exists")
from . import steps_ike  # noqa: E402,F401  (attach/detach/restart, docs/ike.md)
