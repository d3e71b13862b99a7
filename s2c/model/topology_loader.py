"""Topology YAML -> validated ``Topology`` (docs/scenarios.md, "Topology file"). Pure: reads one file."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import Issue, ModelError, suggest
from .source import INVALID, LList, LMap, Source, index, join, plain, type_name
from .topology import (
    FORWARDING_KINDS,
    AccessNetwork,
    AccessType,
    Endpoint,
    Interface,
    Link,
    Nat44,
    Node,
    NodeKind,
    Route,
    Topology,
)

IFNAMSIZ = 15  # Linux interface names: at most 15 characters
NODE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
IFACE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NODE_NAME = 15

TOP_KEYS = ("name", "description", "nodes", "links")
NODE_KEYS = ("kind", "interfaces", "routes", "nat44", "params")
BRIDGE_KEYS = ("kind", "access", "params")
IFACE_KEYS = ("ipv4", "ipv6", "mtu")
ROUTE_KEYS = ("to", "via", "dev")
ACCESS_KEYS = ("type", "ipv4", "ipv6")
FAMILY_KEYS = ("gateway", "pool")
KINDS = [k.value for k in NodeKind]


@dataclass
class _Addr:
    """A statically assigned (or access-pool) address and where it was written."""

    iface: Any  # IPv4Interface | IPv6Interface
    owner: str  # "node:iface" or "pool of wlan-a"
    line: int
    path: str


@dataclass
class _Segment:
    """An L2 segment: a bridge node (all its links) or one point-to-point link."""

    name: str
    members: list[tuple[str, str]] = field(default_factory=list)  # (node, iface)
    addrs: list[_Addr] = field(default_factory=list)


@dataclass
class _NodeDraft:
    name: str
    kind: NodeKind
    line: int
    m: LMap
    ifaces: dict[str, Interface] = field(default_factory=dict)
    iface_lines: dict[str, int] = field(default_factory=dict)
    addrs: list[_Addr] = field(default_factory=list)
    access: AccessNetwork | None = None
    access_addrs: list[_Addr] = field(default_factory=list)
    access_gateways: list[tuple[Any, int, str]] = field(default_factory=list)


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read and validate a topology YAML file; raise ``ModelError`` listing every problem."""
    path = os.fspath(path)
    src = Source(path)
    data = src.read(path)
    topo = None
    if data is not None or not src.issues:
        topo = build_topology(data, src, default_name=_stem(path))
    if src.issues or topo is None:
        raise ModelError(src.issues or [Issue(path, 0, "", "invalid topology")])
    return topo


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".yaml", ".yml"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def build_topology(data: Any, src: Source, default_name: str, path: str = "") -> Topology | None:
    """Validate parsed topology data (an LMap) found at field ``path`` of ``src``; None if invalid."""
    before = len(src.issues)
    if data is None:
        src.error(0, path, "empty topology: expected a mapping with 'nodes' and 'links'")
        return None
    if not isinstance(data, LMap):
        src.error(getattr(data, "line", 1), path, f"expected a mapping with 'nodes' and 'links', got {type_name(data)}")
        return None
    src.check_keys(data, path, TOP_KEYS, required=("nodes",))
    name = src.get(data, "name", path, "string", default=default_name)
    description = src.get(data, "description", path, "string", default="")
    nodes_m = src.get(data, "nodes", path, "mapping", default=None)
    links_l = src.get(data, "links", path, "list", default=LList())

    drafts: dict[str, _NodeDraft] = {}
    if nodes_m is not None:
        if not nodes_m:
            src.error(data.line_of("nodes"), join(path, "nodes"), "no nodes")
        for node_name, nm in nodes_m.items():
            d = _node(src, node_name, nm, nodes_m.line_of(node_name), join(join(path, "nodes"), node_name))
            if d is not None:
                drafts[node_name] = d

    nodes_p = join(path, "nodes")
    if nodes_m is None:
        links_l = LList()  # every endpoint would be reported as an unknown node
    links, segments = _links(src, links_l, join(path, "links"), drafts, nodes_m or LMap(), nodes_p)
    _addresses(src, drafts, segments, nodes_p)
    routes = {n: _routes(src, d, segments, join(join(path, "nodes"), n)) for n, d in drafts.items()}
    nat = {n: _nat44(src, d, join(join(path, "nodes"), n)) for n, d in drafts.items()}
    if len(src.issues) > before:
        return None
    nodes = {
        n: Node(
            name=n,
            kind=d.kind,
            interfaces=dict(d.ifaces),
            routes=tuple(routes[n]),
            nat44=nat[n],
            access=d.access,
            params=plain(d.m.get("params")) if isinstance(d.m.get("params"), LMap) else {},
        )
        for n, d in drafts.items()
    }
    return Topology(name=name, nodes=nodes, links=tuple(links), description=description)


# ---- nodes --------------------------------------------------------------------------------
def _node(src: Source, name: Any, nm: Any, line: int, path: str) -> _NodeDraft | None:
    if not isinstance(name, str) or not NODE_NAME_RE.match(name):
        src.error(line, path, f"invalid node name '{name}' (letters, digits, '-' and '_', starting with a letter)")
        return None
    if len(name) > MAX_NODE_NAME:
        src.error(line, path, f"node name '{name}' is longer than {MAX_NODE_NAME} characters")
        return None
    if nm is INVALID:
        return None
    if nm is None:
        src.error(line, path, "expected a mapping with 'kind', got null")
        return None
    if not src.expect(nm, "mapping", line, path):
        return None
    kind_s = src.enum(nm, "kind", path, KINDS, required=True)
    if kind_s is None:
        return None
    kind = NodeKind(kind_s)
    d = _NodeDraft(name=name, kind=kind, line=line, m=nm)
    if kind is NodeKind.BRIDGE:
        allowed = BRIDGE_KEYS
        for key in nm:
            if key in NODE_KEYS and key not in BRIDGE_KEYS:
                src.error(nm.line_of(key), join(path, key),
                          "a bridge is a plain L2 segment: it has no " + str(key) + " (its ports are named by the lab)")
        src.check_keys(_without(nm, set(NODE_KEYS) - set(BRIDGE_KEYS)), path, allowed)
        if "access" in nm:
            _access(src, d, nm, path)
    else:
        src.check_keys(nm, path, NODE_KEYS)
        ifs = src.get(nm, "interfaces", path, "mapping", default=LMap())
        for iname, im in ifs.items():
            ip = join(join(path, "interfaces"), iname)
            iline = ifs.line_of(iname)
            if not _iface_name_ok(src, iname, iline, ip):
                continue
            d.iface_lines[iname] = iline
            if im is None:
                im = LMap(line=iline)
            if not src.expect(im, "mapping", iline, ip):
                continue
            src.check_keys(im, ip, IFACE_KEYS)
            v4 = src.address_list(im, "ipv4", ip, 4)
            v6 = src.address_list(im, "ipv6", ip, 6)
            mtu = src.get(im, "mtu", ip, "integer",
                          check=lambda v: None if 68 <= v <= 65535 else f"mtu {v} out of range 68..65535")
            d.ifaces[iname] = Interface(name=iname, ipv4=tuple(a for a, _, _ in v4),
                                        ipv6=tuple(a for a, _, _ in v6), mtu=mtu)
            d.addrs += [_Addr(a, f"{name}:{iname}", ln, p) for a, ln, p in v4 + v6]
    if "params" in nm:
        src.get(nm, "params", path, "mapping")
    return d


def _without(m: LMap, drop: set[str]) -> LMap:
    out = LMap(line=m.line)
    for k, v in m.items():
        if k not in drop:
            out[k] = v
            out.key_lines[k] = m.line_of(k)
    return out


def _iface_name_ok(src: Source, iname: Any, line: int, path: str) -> bool:
    if not isinstance(iname, str) or not IFACE_NAME_RE.match(iname):
        src.error(line, path, f"invalid interface name '{iname}'")
        return False
    if len(iname) > IFNAMSIZ:
        src.error(line, path, f"interface name '{iname}' is longer than {IFNAMSIZ} characters")
        return False
    return True


def _access(src: Source, d: _NodeDraft, nm: LMap, path: str) -> None:
    ap = join(path, "access")
    am = src.get(nm, "access", path, "mapping")
    if am is None:
        return
    src.check_keys(am, ap, ACCESS_KEYS, required=("type",))
    type_s = src.enum(am, "type", ap, [t.value for t in AccessType])
    fams: dict[int, tuple[Any, tuple]] = {}
    for version, key in ((4, "ipv4"), (6, "ipv6")):
        fm = src.get(am, key, ap, "mapping")
        if fm is None:
            continue
        fp = join(ap, key)
        src.check_keys(fm, fp, FAMILY_KEYS, required=("gateway", "pool"))
        gw = None
        if "gateway" in fm:
            gw = src.address(fm["gateway"], fm.line_of("gateway"), join(fp, "gateway"), version)
        pool = src.address_list(fm, "pool", fp, version)
        if "pool" in fm and isinstance(fm["pool"], LList) and not fm["pool"]:
            src.error(fm.line_of("pool"), join(fp, "pool"), "empty pool")
        if pool:
            net = pool[0][0].network
            seen: dict[Any, int] = {}
            for a, ln, p in pool:
                if a.network != net:
                    src.error(ln, p, f"'{a}' is not in the pool's subnet {net}")
                if a.ip in seen:
                    src.error(ln, p, f"address {a.ip} already in the pool (line {seen[a.ip]})")
                seen.setdefault(a.ip, ln)
                if gw is not None and a.ip == gw:
                    src.error(ln, p, f"pool address {a.ip} is the gateway")
            if gw is not None and gw not in net:
                src.error(fm.line_of("gateway"), join(fp, "gateway"), f"gateway {gw} is not in the pool's subnet {net}")
            d.access_addrs += [_Addr(a, f"the {key} pool of '{d.name}'", ln, p) for a, ln, p in pool]
        if gw is not None:
            d.access_gateways.append((gw, fm.line_of("gateway"), join(fp, "gateway")))
        fams[version] = (gw, tuple(a for a, _, _ in pool))
    if not fams and ("ipv4" not in am and "ipv6" not in am):
        src.error(am.line, ap, "an access network needs 'ipv4' and/or 'ipv6' (gateway and pool)")
    if type_s is not None:
        d.access = AccessNetwork(
            type=AccessType(type_s),
            ipv4_gateway=fams.get(4, (None, ()))[0],
            ipv4_pool=fams.get(4, (None, ()))[1],
            ipv6_gateway=fams.get(6, (None, ()))[0],
            ipv6_pool=fams.get(6, (None, ()))[1],
        )


# ---- links --------------------------------------------------------------------------------
def _endpoint(src: Source, value: Any, line: int, path: str, drafts: dict[str, _NodeDraft],
              nodes_m: LMap) -> Endpoint | None:
    if value is INVALID:
        return None
    if not isinstance(value, str):
        src.error(line, path, f"expected an endpoint string 'node:interface' or 'bridge', got {type_name(value)}")
        return None
    node, sep, iface = value.partition(":")
    if node not in nodes_m:
        src.error(line, path, f"unknown node '{node}'{suggest(node, nodes_m)}")
        return None
    d = drafts.get(node)
    if d is None:
        return None  # the node itself is invalid (already reported)
    if d.kind is NodeKind.BRIDGE:
        if sep:
            src.error(line, path, f"'{node}' is a bridge: write just '{node}' (its ports are named by the lab)")
            return None
        return Endpoint(node, None)
    if not sep or not iface:
        src.error(line, path, f"'{node}' is a {d.kind.value}: the endpoint needs an interface ('{node}:eth0')")
        return None
    if not _iface_name_ok(src, iface, line, path):
        return None
    return Endpoint(node, iface)


def _links(src: Source, links_l: LList, path: str, drafts: dict[str, _NodeDraft],
           nodes_m: LMap, nodes_p: str) -> tuple[list[Link], dict[str, _Segment]]:
    links: list[Link] = []
    segments: dict[str, _Segment] = {n: _Segment(n) for n, d in drafts.items() if d.kind is NodeKind.BRIDGE}
    used: dict[tuple[str, str], tuple[int, str]] = {}
    for i, item in enumerate(links_l):
        line = links_l.line_of(i)
        lp = index(path, i)
        eps_l = item
        if isinstance(item, LMap):
            src.check_keys(item, lp, ("endpoints",), required=("endpoints",))
            eps_l = item.get("endpoints")
            lp = join(lp, "endpoints")
            line = item.line_of("endpoints")
        if not isinstance(eps_l, LList) or len(eps_l) != 2:
            what = f"a list of {len(eps_l)}" if isinstance(eps_l, LList) else type_name(eps_l)
            src.error(line, lp, f"a link is a pair of endpoints ['node:iface', 'node:iface' or 'bridge'], got {what}")
            continue
        eps = [_endpoint(src, eps_l[j], eps_l.line_of(j), index(lp, j), drafts, nodes_m) for j in (0, 1)]
        if eps[0] is None or eps[1] is None:
            continue
        a, b = eps
        if a.iface is None and b.iface is None:
            src.error(line, lp, "a link cannot join two bridges")
            continue
        if a == b:
            src.error(line, lp, f"a link cannot join '{a}' to itself")
            continue
        bad = False
        for j, ep in enumerate(eps):
            if ep.iface is None:
                continue
            key = (ep.node, ep.iface)
            if key in used:
                first_line, first_path = used[key]
                src.error(eps_l.line_of(j), index(lp, j),
                          f"interface '{ep}' is already connected by {first_path} (line {first_line})")
                bad = True
            else:
                used[key] = (eps_l.line_of(j), lp)
        if bad:
            continue
        link = Link(a, b)
        links.append(link)
        bridge = a.node if a.iface is None else b.node if b.iface is None else None
        seg = segments[bridge] if bridge else segments.setdefault(link.name, _Segment(link.name))
        for ep in eps:
            if ep.iface is not None:
                seg.members.append((ep.node, ep.iface))
    # every declared interface is used by exactly one link; linked undeclared ones exist without addresses
    for n, d in drafts.items():
        for iname in d.ifaces:
            if (n, iname) not in used:
                src.error(d.iface_lines[iname], join(join(join(nodes_p, n), "interfaces"), iname),
                          "interface is not connected by any link")
    for (n, iname) in used:
        d = drafts[n]
        if iname not in d.ifaces:
            d.ifaces[iname] = Interface(name=iname)
    return links, segments


# ---- addresses ----------------------------------------------------------------------------
def _addresses(src: Source, drafts: dict[str, _NodeDraft], segments: dict[str, _Segment], nodes_p: str) -> None:
    seg_of: dict[tuple[str, str], str] = {}
    for s in segments.values():
        for m in s.members:
            seg_of[m] = s.name
    for d in drafts.values():
        for a in d.addrs:
            node, _, iface = a.owner.partition(":")
            s = seg_of.get((node, iface))
            if s is not None:
                segments[s].addrs.append(a)
        if d.kind is NodeKind.BRIDGE:
            segments[d.name].addrs.extend(d.access_addrs)
    # UE radios on an access network take their addresses from it
    for s in segments.values():
        bd = drafts.get(s.name)
        if bd is None or bd.access is None:
            continue
        for node, iface in s.members:
            md = drafts[node]
            if md.kind is NodeKind.UE and (md.ifaces[iface].ipv4 or md.ifaces[iface].ipv6):
                src.error(md.iface_lines.get(iface, md.line), join(join(join(nodes_p, node), "interfaces"), iface),
                          f"a UE radio on access network '{s.name}' takes its addresses from it; remove ipv4/ipv6")
        radios = sum(1 for node, _ in s.members if drafts[node].kind is NodeKind.UE)
        am = bd.m.get("access")
        for fam, pool in (("ipv4", bd.access.ipv4_pool), ("ipv6", bd.access.ipv6_pool)):
            if pool and radios > len(pool) and isinstance(am, LMap) and isinstance(am.get(fam), LMap):
                fm = am[fam]
                src.error(fm.line_of("pool"), join(join(join(join(nodes_p, s.name), "access"), fam), "pool"),
                          f"{radios} UE radios start on '{s.name}' but the pool has only {len(pool)} addresses")
    # duplicate addresses within a segment, overlapping prefixes between segments
    seen_ip: dict[Any, _Addr] = {}
    nets: list[tuple[Any, str, _Addr]] = []
    for s in segments.values():
        seg_nets: dict[Any, _Addr] = {}
        for a in s.addrs:
            if a.iface.ip in seen_ip and seen_ip[a.iface.ip].owner != a.owner:
                first = seen_ip[a.iface.ip]
                src.error(a.line, a.path, f"address {a.iface.ip} is already used by {first.owner} (line {first.line})")
            elif a.iface.ip in seen_ip:
                src.error(a.line, a.path, f"address {a.iface.ip} listed twice (line {seen_ip[a.iface.ip].line})")
            seen_ip.setdefault(a.iface.ip, a)
            seg_nets.setdefault(a.iface.network, a)
        for net, a in seg_nets.items():
            for onet, oseg, oa in nets:
                if oseg != s.name and net.version == onet.version and net.overlaps(onet):
                    later, earlier = (a, oa) if (a.line, a.path) >= (oa.line, oa.path) else (oa, a)
                    lseg, eseg = (s.name, oseg) if later is a else (oseg, s.name)
                    src.error(later.line, later.path,
                              f"prefix {later.iface.network} on segment '{lseg}' overlaps {earlier.iface.network} "
                              f"on segment '{eseg}' (line {earlier.line})")
            nets.append((net, s.name, a))
    # an access network's gateway is an address of a router on that segment
    for d in drafts.values():
        if d.kind is not NodeKind.BRIDGE:
            continue
        seg = segments[d.name]
        static = {a.iface.ip for a in seg.addrs if not a.owner.startswith("the ")}
        for gw, line, p in d.access_gateways:
            if gw not in static:
                src.error(line, p, f"gateway {gw} is not an address of any interface on '{d.name}'")


# ---- routes and NAT -----------------------------------------------------------------------
def _routes(src: Source, d: _NodeDraft, segments: dict[str, _Segment], path: str) -> list[Route]:
    if d.kind is NodeKind.BRIDGE or "routes" not in d.m:
        return []
    rl = src.get(d.m, "routes", path, "list")
    if rl is None:
        return []
    out = []
    for i, rm in enumerate(rl):
        rp = index(join(path, "routes"), i)
        line = rl.line_of(i)
        if not src.expect(rm, "mapping", line, rp):
            continue
        if not src.check_keys(rm, rp, ROUTE_KEYS, required=("to",)):
            continue
        to = src.get(rm, "to", rp, "string")
        via_s = src.get(rm, "via", rp, "string")
        dev = src.get(rm, "dev", rp, "string")
        if to is None or ("via" in rm and via_s is None) or ("dev" in rm and dev is None):
            continue
        net = None
        if to != "default":
            try:
                net = ipaddress.ip_network(to)
            except ValueError as exc:
                msg = "has host bits set" if "host bits" in str(exc) else "is not a prefix (e.g. 2001:db8:1::/48) or 'default'"
                src.error(rm.line_of("to"), join(rp, "to"), f"'{to}' {msg}")
                continue
        if via_s is None and dev is None:
            src.error(line, rp, "a route needs 'via' and/or 'dev'")
            continue
        if to == "default" and via_s is None:
            src.error(line, rp, "a default route needs 'via' (its address family picks IPv4 or IPv6)")
            continue
        if dev is not None and dev not in d.ifaces:
            src.error(rm.line_of("dev"), join(rp, "dev"), f"unknown interface '{dev}' of '{d.name}'{suggest(dev, d.ifaces)}")
            continue
        if via_s is not None:
            via = src.address(via_s, rm.line_of("via"), join(rp, "via"))
            if via is None:
                continue
            if net is not None and net.version != via.version:
                src.error(rm.line_of("via"), join(rp, "via"), f"gateway {via} is not of the same family as {net}")
                continue
            msg = _via_problem(d, via, dev, segments)
            if msg:
                src.error(rm.line_of("via"), join(rp, "via"), msg)
                continue
        out.append(Route(to=to if net is None else str(net), via=via_s if via_s is None else str(via), dev=dev))
    return out


def _via_problem(d: _NodeDraft, via: Any, dev: str | None, segments: dict[str, _Segment]) -> str | None:
    own = [a for a in d.addrs if dev is None or a.owner == f"{d.name}:{dev}"]
    if any(a.iface.ip == via for a in d.addrs):
        return f"gateway {via} is an address of '{d.name}' itself"
    on = [a for a in own if via in a.iface.network]
    if not on:
        where = f"interface '{dev}'" if dev else f"'{d.name}'"
        return f"gateway {via} is not in a subnet connected to {where}"
    iface = on[0].owner.partition(":")[2]
    for s in segments.values():
        if (d.name, iface) in s.members:
            if any(a.iface.ip == via for a in s.addrs):
                return None
            return f"no node on segment '{s.name}' has address {via}"
    return None


def _nat44(src: Source, d: _NodeDraft, path: str) -> Nat44 | None:
    if d.kind is NodeKind.BRIDGE or "nat44" not in d.m:
        return None
    np_ = join(path, "nat44")
    nm = src.get(d.m, "nat44", path, "mapping")
    if nm is None:
        return None
    if d.kind not in FORWARDING_KINDS:
        src.error(d.m.line_of("nat44"), np_, f"NAT44 needs a forwarding node (router or pdngw), not a {d.kind.value}")
        return None
    src.check_keys(nm, np_, ("outside",), required=("outside",))
    out = src.get(nm, "outside", np_, "string")
    if out is None:
        return None
    if out not in d.ifaces:
        src.error(nm.line_of("outside"), join(np_, "outside"),
                  f"unknown interface '{out}' of '{d.name}'{suggest(out, d.ifaces)}")
        return None
    if not d.ifaces[out].ipv4:
        src.error(nm.line_of("outside"), join(np_, "outside"), f"interface '{out}' has no IPv4 address to masquerade to")
        return None
    return Nat44(outside=out)
