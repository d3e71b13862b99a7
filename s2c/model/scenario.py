"""Scenario YAML -> validated ``Scenario`` (docs/scenarios.md, "Scenario file"). Pure: reads files only."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import Issue, ModelError, suggest
from .source import INVALID, LList, LMap, Source, index, join, plain, type_name
from .steps import STEP_SCHEMAS, ScenarioState, StepSchema, check_value
from .topology import NodeKind, Topology
from .topology_loader import _stem, build_topology

TOP_KEYS = ("name", "description", "topology", "subscribers", "ues", "steps", "settings")
SUBSCRIBER_KEYS = ("imsi", "k", "opc", "op", "amf", "sqn", "apn", "home_prefix_len", "ipv4_hoa", "static_hoa")
UE_KEYS = ("imsi", "allow_unknown")
SETTINGS_KEYS = ("capture", "step_timeout", "continue_on_failure")
IMSI_RE = re.compile(r"^[0-9]{15}$")
APN_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class Subscriber:
    """An HSS subscription: USIM secrets (TS 35.206 MILENAGE) and the PDN profile."""

    imsi: str  # 15 digits
    k: bytes  # 16 bytes
    opc: bytes | None = None  # exactly one of opc/op (16 bytes)
    op: bytes | None = None
    amf: bytes = b"\x80\x00"
    sqn: int = 0
    apn: str = "internet"
    home_prefix_len: int = 64
    ipv4_hoa: bool = True
    static_hoa: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class UeSpec:
    """Which subscription a UE node uses."""

    node: str
    imsi: str
    allow_unknown: bool = False  # the IMSI need not be a subscriber (negative tests)


@dataclass(frozen=True)
class Settings:
    capture: bool = True  # record pcaps on every segment
    step_timeout: float = 30.0  # seconds, default timeout of a step
    continue_on_failure: bool = False  # run the remaining steps after a failed one


@dataclass(frozen=True)
class Step:
    """One validated step. ``index`` is 0-based (as in ``steps[i]``); ``args`` holds every given
    argument plus the defaults of the others (optional fields without a default are absent), and
    always ``timeout`` (seconds or None: use ``settings.step_timeout``) and ``background`` (bool)."""

    index: int
    kind: str
    args: dict[str, Any]
    name: str  # display name: the 'name' argument or "<kind> <title>"
    line: int
    source: str  # the scenario file

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def timeout(self) -> float | None:
        return self.args.get("timeout")

    @property
    def background(self) -> bool:
        return bool(self.args.get("background"))


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str  # the scenario file
    topology: Topology
    subscribers: tuple[Subscriber, ...] = ()
    ues: dict[str, UeSpec] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    settings: Settings = Settings()
    topology_path: str | None = None  # the topology file, None when inline

    def subscriber(self, imsi: str) -> Subscriber | None:
        for s in self.subscribers:
            if s.imsi == imsi:
                return s
        return None


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario file (and its topology file); raise ``ModelError`` listing every problem."""
    path = os.fspath(path)
    issues: list[Issue] = []
    src = Source(path, issues)
    data = src.read(path)
    if data is None and not issues:
        src.error(0, "", "empty scenario: expected a mapping with 'topology' and 'steps'")
    scenario = None
    if data is not None:
        scenario = _build(data, src, path)
    if issues or scenario is None:
        raise ModelError(issues or [Issue(path, 0, "", "invalid scenario")])
    return scenario


def _build(data: Any, src: Source, path: str) -> Scenario | None:
    if not isinstance(data, LMap):
        src.error(getattr(data, "line", 1), "", f"expected a mapping with 'topology' and 'steps', got {type_name(data)}")
        return None
    before = len(src.issues)
    src.check_keys(data, "", TOP_KEYS, required=("topology",))
    name = src.get(data, "name", "", "string", default=_stem(path))
    description = src.get(data, "description", "", "string", default="")
    topology, topo_path = _topology(data, src, path, name)
    settings = _settings(data, src)
    subscribers = _subscribers(data, src)
    ues = _ues(data, src, topology, {s.imsi for s in subscribers})
    state = ScenarioState.initial(topology, subscribers={s.imsi: s for s in subscribers}, ues=ues)
    steps = _steps(data, src, topology, state, path)
    if len(src.issues) > before or topology is None:
        return None
    return Scenario(name=name, description=description, path=path, topology=topology,
                    subscribers=tuple(subscribers), ues=ues, steps=tuple(steps), settings=settings,
                    topology_path=topo_path)


def _collection(src: Source, data: LMap, key: str, want: str) -> Any:
    """An optional top-level list/mapping; absent or null is empty."""
    empty = LList() if want == "list" else LMap()
    if data.get(key) is None:
        return empty
    return src.get(data, key, "", want, default=empty)


def _topology(data: LMap, src: Source, path: str, name: str) -> tuple[Topology | None, str | None]:
    if "topology" not in data:
        return None, None
    value = data["topology"]
    line = data.line_of("topology")
    if isinstance(value, LMap):
        return build_topology(value, src, default_name=name, path="topology"), None
    if not isinstance(value, str):
        src.error(line, "topology", f"expected a file path or an inline mapping, got {type_name(value)}")
        return None, None
    tpath = os.path.normpath(os.path.join(os.path.dirname(path), value))
    tsrc = Source(tpath, src.issues)
    before = len(src.issues)
    tdata = tsrc.read(tpath, line=line, field="topology", into=src)
    if tdata is None and len(src.issues) == before:
        tsrc.error(0, "", "empty topology: expected a mapping with 'nodes' and 'links'")
    if tdata is None:
        return None, tpath
    return build_topology(tdata, tsrc, default_name=_stem(tpath)), tpath


def _settings(data: LMap, src: Source) -> Settings:
    sm = src.get(data, "settings", "", "mapping")
    if sm is None:
        return Settings()
    src.check_keys(sm, "settings", SETTINGS_KEYS)
    capture = src.get(sm, "capture", "settings", "boolean", default=True)
    timeout = src.get(sm, "step_timeout", "settings", "number", default=30.0,
                      check=lambda v: None if v > 0 else "must be positive")
    keep_going = src.get(sm, "continue_on_failure", "settings", "boolean", default=False)
    return Settings(capture=capture, step_timeout=float(timeout), continue_on_failure=keep_going)


def _hex(src: Source, m: LMap, key: str, path: str, nbytes: int, *, required: bool = False,
         default: bytes | None = None) -> bytes | None:
    p = join(path, key)
    if key not in m:
        if required:
            src.error(m.line, p, "required key missing")
        return default
    v = m[key]
    if v is INVALID:
        return default
    if not isinstance(v, str):
        src.error(m.line_of(key), p, f"expected {nbytes * 2} hex digits as a quoted string, got {type_name(v)}")
        return default
    s = v.replace(" ", "")
    if s.lower().startswith("0x"):
        s = s[2:]
    if len(s) != nbytes * 2 or not re.fullmatch(r"[0-9A-Fa-f]*", s):
        src.error(m.line_of(key), p, f"expected {nbytes * 2} hex digits ({nbytes} bytes), got '{v}'")
        return default
    return bytes.fromhex(s)


def _subscribers(data: LMap, src: Source) -> list[Subscriber]:
    sl = _collection(src, data, "subscribers", "list")
    out: list[Subscriber] = []
    seen: dict[str, int] = {}
    for i, sm in enumerate(sl):
        p = index("subscribers", i)
        line = sl.line_of(i)
        if not src.expect(sm, "mapping", line, p):
            continue
        before = len(src.issues)
        src.check_keys(sm, p, SUBSCRIBER_KEYS, required=("imsi", "k"))
        imsi = _imsi(src, sm, "imsi", p)
        k = _hex(src, sm, "k", p, 16)
        opc = _hex(src, sm, "opc", p, 16)
        op = _hex(src, sm, "op", p, 16)
        if "opc" in sm and "op" in sm:
            src.error(sm.line_of("op"), join(p, "op"), "give exactly one of opc and op, not both")
        elif "opc" not in sm and "op" not in sm:
            src.error(sm.line, join(p, "opc"), "required key missing (give exactly one of opc and op)")
        amf = _hex(src, sm, "amf", p, 2, default=b"\x80\x00")
        sqn = src.get(sm, "sqn", p, "integer", default=0,
                      check=lambda v: None if 0 <= v < 1 << 48 else "SQN must be in 0..2^48-1")
        apn = src.get(sm, "apn", p, "string", default="internet",
                      check=lambda v: None if APN_RE.match(v) and len(v) <= 100 else f"invalid APN '{v}'")
        hpl = src.get(sm, "home_prefix_len", p, "integer", default=64,
                      check=lambda v: None if 1 <= v <= 128 else "must be in 1..128")
        v4 = src.get(sm, "ipv4_hoa", p, "boolean", default=True)
        hoa = None
        if "static_hoa" in sm:
            hoa = src.address(sm["static_hoa"], sm.line_of("static_hoa"), join(p, "static_hoa"))
        if imsi is not None and imsi in seen:
            src.error(sm.line_of("imsi"), join(p, "imsi"), f"duplicate subscriber {imsi} (line {seen[imsi]})")
            continue
        if len(src.issues) > before or imsi is None or k is None:
            continue
        seen[imsi] = sm.line_of("imsi")
        out.append(Subscriber(imsi=imsi, k=k, opc=opc, op=op, amf=amf or b"\x80\x00", sqn=sqn, apn=apn,
                              home_prefix_len=hpl, ipv4_hoa=v4, static_hoa=hoa))
    return out


def _imsi(src: Source, m: LMap, key: str, path: str) -> str | None:
    if key not in m:
        return None
    v = m[key]
    p = join(path, key)
    if v is INVALID:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        src.error(m.line_of(key), p, f"write the IMSI as a quoted string of 15 digits (\"{v:015d}\"), not a number")
        return None
    if not isinstance(v, str) or not IMSI_RE.match(v):
        src.error(m.line_of(key), p, f"invalid IMSI {v!r}: expected a string of 15 digits")
        return None
    return v


def _ues(data: LMap, src: Source, topology: Topology | None, imsis: set[str]) -> dict[str, UeSpec]:
    um = _collection(src, data, "ues", "mapping")
    out: dict[str, UeSpec] = {}
    seen: dict[str, str] = {}
    for node, spec in um.items():
        p = join("ues", node)
        line = um.line_of(node)
        if topology is not None:
            n = topology.nodes.get(node) if isinstance(node, str) else None
            if n is None:
                src.error(line, p, f"unknown node '{node}'{suggest(node, topology.nodes)}")
                continue
            if n.kind is not NodeKind.UE:
                src.error(line, p, f"'{node}' is a {n.kind.value}, not a ue")
                continue
        if not src.expect(spec, "mapping", line, p):
            continue
        src.check_keys(spec, p, UE_KEYS, required=("imsi",))
        imsi = _imsi(src, spec, "imsi", p)
        allow = src.get(spec, "allow_unknown", p, "boolean", default=False)
        if imsi is None:
            continue
        if imsi not in imsis and not allow:
            src.error(spec.line_of("imsi"), join(p, "imsi"),
                      f"IMSI {imsi} is not a subscriber (add it to 'subscribers', or set allow_unknown: true)")
            continue
        if imsi in seen:
            src.error(spec.line_of("imsi"), join(p, "imsi"), f"IMSI {imsi} is already used by '{seen[imsi]}'")
            continue
        seen[imsi] = node
        out[node] = UeSpec(node=node, imsi=imsi, allow_unknown=allow)
    return out


# ---- steps ----------------------------------------------------------------------------------
def _steps(data: LMap, src: Source, topology: Topology | None, state: ScenarioState, path: str) -> list[Step]:
    sl = _collection(src, data, "steps", "list")
    out: list[Step] = []
    for i, item in enumerate(sl):
        step = _step(src, item, i, sl.line_of(i), topology, state, path)
        if step is not None:
            out.append(step)
    for st in state.streams.values():
        if st.until_stop and not st.stopped:
            src.error(st.line, join(index("steps", st.index), "udp_stream.until_stop"),
                      f"stream '{st.name}' runs until stopped but no later stream_stop stops it")
    return out


def _step(src: Source, item: Any, i: int, line: int, topology: Topology | None, state: ScenarioState,
          path: str) -> Step | None:
    p = index("steps", i)
    if not isinstance(item, LMap) or len(item) != 1:
        if isinstance(item, LMap) and len(item) > 1:
            keys = list(item)
            hint = ""
            first = keys[0]
            if item.get(first) is None and first in STEP_SCHEMAS:
                hint = f"; indent the arguments under '{first}:'"
            src.error(line, p, f"a step is a one-key mapping {{kind: args}}, found keys "
                               f"{', '.join(map(str, keys))}{hint}")
        elif isinstance(item, str) and item in STEP_SCHEMAS:
            src.error(line, p, f"'{item}' needs arguments: '{item}: {{...}}'")
        else:
            src.error(line, p, f"a step is a one-key mapping {{kind: args}}, got {type_name(item)}")
        return None
    kind, args = next(iter(item.items()))
    if args is INVALID:
        return None
    kline = item.line_of(kind)
    schema = STEP_SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        src.error(kline, join(p, kind), f"unknown step kind{suggest(kind, STEP_SCHEMAS)} "
                                        f"(known: {', '.join(sorted(STEP_SCHEMAS))})")
        return None
    sp = join(p, kind)
    if args is None:
        args = LMap(line=kline)
    elif not isinstance(args, LMap):
        if schema.scalar is None:
            src.error(kline, sp, f"expected a mapping of arguments, got {type_name(args)}")
            return None
        m = LMap(line=kline)
        m[schema.scalar] = args
        m.key_lines[schema.scalar] = kline
        args = m
    before = len(src.issues)
    src.check_keys(args, sp, schema.keys)
    out: dict[str, Any] = {}
    for f in schema.fields:
        if f.name not in args:
            if f.required:
                src.error(args.line, join(sp, f.name), "required key missing")
            elif f.default is not None:
                out[f.name] = f.default
            elif f.type == "mapping":
                out[f.name] = {}
            continue
        if args[f.name] is INVALID:
            continue
        value, err = check_value(f, args[f.name], topology)
        if err:
            src.error(args.line_of(f.name), join(sp, f.name), err)
            continue
        out[f.name] = plain(value)
    for group in schema.exactly_one:
        given = [k for k in args if k in group]  # in the order written
        if len(given) != 1:
            where = args.line_of(given[1]) if len(given) > 1 else args.line
            what = "only one of" if given else "one of"
            src.error(where, join(sp, given[1] if len(given) > 1 else group[0]),
                      f"give {what}: {', '.join(group)}")
    # common keys
    display = src.get(args, "name", sp, "string") if "name" not in {f.name for f in schema.fields} else None
    timeout = src.get(args, "timeout", sp, "number", check=lambda v: None if v > 0 else "must be positive")
    out["timeout"] = float(timeout) if timeout is not None else None
    if schema.background == "always":
        out["background"] = True
    elif schema.background == "optional":
        out["background"] = bool(src.get(args, "background", sp, "boolean", default=False))
    else:
        out["background"] = False
    if len(src.issues) > before:
        return None
    state.index, state.line = i, kline
    if schema.check is not None:
        for fname, msg in schema.check(out, topology, state):
            fline = args.line_of(fname) if fname in args else args.line
            src.error(fline, join(sp, fname), msg)
        if len(src.issues) > before:
            return None
    name = display or _title(schema, out)
    return Step(index=i, kind=kind, args=out, name=name, line=kline, source=path)


def _title(schema: StepSchema, args: dict[str, Any]) -> str:
    if not schema.title:
        return schema.kind
    try:
        return f"{schema.kind} {schema.title.format_map(_Fmt(args))}".strip()
    except (ValueError, IndexError, AttributeError):
        return schema.kind


class _Fmt(dict):
    def __missing__(self, key: str) -> str:
        return "?"

