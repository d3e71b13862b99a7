"""The embedded backend: every node is a Linux network namespace named ``<run-id>-<node>``.

Built through pyroute2 netlink sockets opened inside each namespace (never by changing the
namespace of this process, never with IPDB): a ``bridge`` node gets a Linux bridge ``br0`` and an
endpoint on it becomes a bridge port; every link is a veth pair created with its peer already in
the target namespace. UE radios attached to an access network get the next free pool address and
a default route through that network's gateway (what DHCP/SLAAC would give them); ``move`` deletes
the radio's veth and recreates it on another access network, as a break-before-make handover.

Sysctls are written inside each namespace by the short child that creates it (see nsexec). NAT44
and loss are nftables tables named ``s2c_*`` inside the node; rate is a tc tbf qdisc; delay needs
sch_netem. Packet captures are one tcpdump per link (one pcap segment per attachment of a radio).

Every namespace, process and nft table is recorded in ``run_dir/state.json`` as it is made, so
``s2c.lab.cleanup`` can remove what a killed run left behind.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from s2c.lab import nsexec
from s2c.lab.backend import Backend, LabError, NodeProcess
from s2c.model.topology import (
    FORWARDING_KINDS,
    Endpoint,
    Link,
    Node,
    NodeKind,
    Route,
    Topology,
)

IFA_F_NODAD = 0x02
BRIDGE_IF = "br0"
IFNAMSIZ = 15
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
NFT_IMPAIR_TABLE = "s2c_impair"
NFT_NAT_TABLE = "s2c_nat"
UE_DEFAULT_METRIC = 100
CAPTURE_READY_TIMEOUT = 5.0

_CAPS: dict[str, bool] | None = None
_CAPS_LOCK = threading.Lock()


def _ifname_ok(name: str) -> bool:
    return bool(_IFNAME_RE.match(name)) and name not in (".", "..")


def port_name(other: Endpoint, taken: set[str]) -> str:
    """Deterministic bridge-port name for the port facing ``other`` (<= 15 chars, unique)."""
    base = f"{other.node}-{other.iface}" if other.iface else other.node
    if _ifname_ok(base) and base not in taken and base != BRIDGE_IF:
        return base
    digest = hashlib.sha1(str(other).encode()).hexdigest()
    for i in range(0, 30):
        name = f"p{digest[i:i + 8]}"
        if name not in taken:
            return name
    raise LabError(f"cannot name a bridge port for {other}")


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]", ".", text.replace(":", "."))


@dataclass
class _Side:
    node: str
    ifname: str
    bridge_port: bool  # True: a port of br0 in a bridge node


@dataclass
class _Wire:
    """One veth pair as built: ``a`` creates it (the bridge port, if one side is a bridge)."""

    key: str  # link name as in the model, or "<node>:<iface>@<network>" after a move
    a: _Side
    b: _Side
    pcap_stem: str
    capture: NodeProcess | None = None
    pcap: Path | None = None

    def capture_side(self) -> _Side:
        """The non-bridge side when there is one, else the creating bridge port."""
        return self.b if self.a.bridge_port and not self.b.bridge_port else self.a


@dataclass
class _Radio:
    """A UE interface attached to an access network (DHCP/SLAAC stand-in state)."""

    node: str
    iface: str
    network: str
    ipv4: list[ipaddress.IPv4Interface] = field(default_factory=list)
    ipv6: list[ipaddress.IPv6Interface] = field(default_factory=list)
    metric: int = UE_DEFAULT_METRIC
    segment: int = 0  # capture segment number, bumped on every move


class NetnsBackend(Backend):
    """Network namespaces on this host (needs root)."""

    name = "netns"

    def __init__(self, run_id: str, run_dir: Path, topology: Topology, capture: bool = True):
        super().__init__(run_id, run_dir, topology, capture)
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", run_id):
            raise LabError(f"run id {run_id!r} must be letters, digits, '.', '_' or '-'")
        bad = [n for n in topology.nodes if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", n)]
        if bad:
            raise LabError(f"node name {bad[0]!r} cannot name a namespace (letters, digits, '.', '_', '-')")
        self._nsname = {n: f"{run_id}-{n}" for n in topology.nodes}
        self._ipr: dict[str, Any] = {}  # node -> pyroute2 IPRoute living in that namespace
        self._nsfd: dict[str, int] = {}  # node -> O_RDONLY fd of /run/netns/<ns> (for net_ns_fd)
        self._created_ns: list[str] = []
        self._procs: list[NodeProcess] = []
        self._wires: list[_Wire] = []
        self._radios: dict[tuple[str, str], _Radio] = {}
        self._pool_used: dict[str, set[str]] = {}
        self._ports: dict[str, set[str]] = {}  # bridge node -> port names in use
        self._nft_tables: list[dict[str, str]] = []
        self._impaired: dict[tuple[str, str], dict[str, Any]] = {}
        self._pcaps: list[Path] = []
        self._lock = threading.RLock()
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"s2c-netlink-{run_id}"
        )
        self._worker_ident: int | None = None
        self._built = False
        self._torn = False
        self._cancel = threading.Event()

    # ------------------------------------------------------------------ plumbing
    def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run ``fn`` in the netlink worker thread (pyroute2 sync objects must not run inside a
        caller's asyncio loop, and must stay on one thread)."""
        if threading.get_ident() == self._worker_ident:
            return fn(*args, **kw)

        def wrapped() -> Any:
            self._worker_ident = threading.get_ident()
            return fn(*args, **kw)

        try:
            fut = self._worker.submit(wrapped)
        except RuntimeError as exc:  # worker shut down
            raise LabError(f"lab {self.run_id} is torn down") from exc
        return fut.result()

    def _node(self, node: str) -> Node:
        try:
            return self.topology.nodes[node]
        except KeyError:
            raise LabError(f"no node {node!r} in topology {self.topology.name!r}") from None

    def _ipr_of(self, node: str) -> Any:
        self._node(node)
        ipr = self._ipr.get(node)
        if ipr is None:
            raise LabError(f"node {node!r} is not built")
        return ipr

    def netns_path(self, node: str) -> str:
        self._node(node)
        return nsexec.netns_path(self._nsname[node])

    def namespace(self, node: str) -> str:
        """The namespace name of ``node`` (``<run-id>-<node>``)."""
        self._node(node)
        return self._nsname[node]

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def pcap_dir(self) -> Path:
        return self.run_dir / "pcap"

    def _save_state(self) -> None:
        state = {
            "run_id": self.run_id,
            "backend": self.name,
            "topology": self.topology.name,
            "namespaces": {n: self._nsname[n] for n in self.topology.nodes},
            "created_namespaces": list(self._created_ns),
            "pids": [
                {"pid": p.pid, "node": p.node, "argv": p.argv[:6], "alive": p.alive()}
                for p in self._procs + [w.capture for w in self._wires if w.capture]
            ],
            "nft_tables": list(self._nft_tables),
            "captures": [str(p) for p in self._pcaps],
            "torn_down": self._torn,
        }
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.run_dir / ".state.json.tmp"
            tmp.write_text(json.dumps(state, indent=1))
            os.replace(tmp, self.run_dir / "state.json")
        except OSError:
            pass

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        with self._lock:
            if self._built:
                raise LabError(f"lab {self.run_id} is already built")
            if self._torn:
                raise LabError(f"lab {self.run_id} was torn down; make a new backend")
            if os.geteuid() != 0:
                raise LabError("the netns backend needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
            for tool in ("nsenter",) + (("tcpdump",) if self.capture else ()):
                if shutil.which(tool) is None:
                    raise LabError(f"{tool} not found (install util-linux / tcpdump)")
            clash = [ns for ns in self._nsname.values() if ns in nsexec.list_netns()]
            if clash:
                raise LabError(f"namespace {clash[0]} already exists (stale run? try `s2c clean`)")
            self._built = True
            try:
                self.logs_dir.mkdir(parents=True, exist_ok=True)
                if self.capture:
                    self.pcap_dir.mkdir(parents=True, exist_ok=True)
                self._save_state()
                self._call(self._build)
            except BaseException as exc:
                self._cancel.set()
                self.teardown()
                if isinstance(exc, LabError):
                    raise
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise LabError(f"building {self.topology.name}: {_one_line(exc)}") from exc

    def _build(self) -> None:
        topo = self.topology
        # 1. namespaces + sysctls + a netlink socket in each, from one forked child
        specs = [nsexec.NsSpec(self._nsname[n], self._sysctls(node)) for n, node in topo.nodes.items()]
        try:
            fds = nsexec.create_namespaces(specs)
        except OSError as exc:
            raise LabError(f"creating namespaces: {exc.strerror or exc}") from exc
        from pyroute2 import IPRoute

        self._created_ns.extend(self._nsname[n] for n in topo.nodes)
        pending = dict(fds)  # fds not yet owned by an IPRoute (which closes its fd itself)
        try:
            for n in topo.nodes:
                ns = self._nsname[n]
                self._ipr[n] = IPRoute(fileno=pending[ns])
                del pending[ns]
                self._nsfd[n] = os.open(nsexec.netns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
        finally:
            for fd in pending.values():
                os.close(fd)
        self._save_state()
        self._check_cancel()

        # 2. bridges and lo
        for n, node in topo.nodes.items():
            ipr = self._ipr[n]  # lo is up already (nsexec did it)
            if node.kind is NodeKind.BRIDGE:
                ipr.link(
                    "add",
                    ifname=BRIDGE_IF,
                    kind="bridge",
                    state="up",
                    br_stp_state=0,
                    br_forward_delay=0,
                    br_mcast_snooping=0,
                )
                self._ports[n] = set()

        # 3. veth pairs, created up (and enslaved to br0 when the creating side is a bridge port)
        for link in topo.links:
            self._wires.append(self._plan_wire(link))
        bridge_index = {n: self._ipr[n].link_lookup(ifname=BRIDGE_IF)[0] for n in self._ports}
        for wire in self._wires:
            self._make_veth(wire, bridge_index.get(wire.a.node))
        self._check_cancel()

        # 4. interfaces of the model that no link carries become dummies (loopback-like addresses)
        linked = {(w.a.node, w.a.ifname) for w in self._wires} | {
            (w.b.node, w.b.ifname) for w in self._wires
        }
        for n, node in topo.nodes.items():
            for ifname in node.interfaces:
                if node.kind is NodeKind.BRIDGE and ifname == BRIDGE_IF:
                    continue
                if (n, ifname) not in linked:
                    self._add_standalone(n, ifname)

        # 5. the peer ends up (and into br0 when they are bridge ports)
        index = {n: self._index_map(n) for n in topo.nodes}
        for wire in self._wires:
            self._peer_up(wire, index)

        # 6. captures start now and get ready while the addressing goes on
        if self.capture:
            for wire in self._wires:
                self._start_capture(wire, wait=False)

        # 7. addresses, routes
        for n, node in topo.nodes.items():
            ipr = self._ipr[n]
            for ifname, iface in node.interfaces.items():
                idx = index[n].get(ifname)
                if idx is None:
                    continue
                if iface.mtu and (n, ifname) not in linked:
                    ipr.link("set", index=idx, mtu=iface.mtu)
                self._add_addresses(ipr, idx, iface.ipv4, iface.ipv6)
                if (n, ifname) not in linked or (node.kind is NodeKind.BRIDGE and ifname == BRIDGE_IF):
                    ipr.link("set", index=idx, state="up")
        # UE radios on access networks: pool addresses + default routes
        for wire in self._wires:
            radio = self._radio_for(wire)
            if radio is not None:
                self._assign_radio(radio, index[radio.node][radio.iface])
        for n, node in topo.nodes.items():
            for route in node.routes:
                self._add_route(n, route, index[n])
        self._check_cancel()

        # 8. NAT44
        for n, node in topo.nodes.items():
            if node.nat44 is not None:
                self._setup_nat44(n, node)

        # 9. every capture listening before anything else runs
        if self.capture:
            self._wait_captures([w for w in self._wires if w.capture])
        self._save_state()

    def _add_standalone(self, node: str, ifname: str) -> None:
        """An interface no link carries: a dummy, or a port-less bridge where there is no dummy."""
        ipr = self._ipr[node]
        try:
            ipr.link("add", ifname=ifname, kind="dummy")
        except Exception:  # noqa: BLE001 - no dummy driver on this kernel
            ipr.link("add", ifname=ifname, kind="bridge", br_stp_state=0)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise LabError("build cancelled")

    def _sysctls(self, node: Node) -> list[tuple[str, str]]:
        values = [
            ("ipv6/conf/all/accept_dad", "0"),
            ("ipv6/conf/default/accept_dad", "0"),
            ("ipv6/conf/default/dad_transmits", "0"),
            # an interface set down keeps its IPv6 addresses (as IPv4 does), so up restores it
            ("ipv6/conf/all/keep_addr_on_down", "1"),
            ("ipv6/conf/default/keep_addr_on_down", "1"),
            # IPv4 settings are copied from the host's namespace: make the ones that matter to
            # tunnels and asymmetric paths (home address on a TUN, replies via another radio)
            # the same on every host
            ("ipv4/conf/all/rp_filter", "0"),
            ("ipv4/conf/default/rp_filter", "0"),
        ]
        if node.kind is NodeKind.BRIDGE and not any(
            i.ipv4 or i.ipv6 for i in node.interfaces.values()
        ):
            # a pure L2 segment: keep its ports and br0 from chattering (RS, MLD) into the pcaps
            values += [("ipv6/conf/default/disable_ipv6", "1"), ("ipv6/conf/all/disable_ipv6", "1")]
        if node.kind in FORWARDING_KINDS:
            values += [
                ("ipv4/ip_forward", "1"),
                ("ipv6/conf/all/forwarding", "1"),
                ("ipv6/conf/default/forwarding", "1"),
            ]
        return values

    def _is_bridge(self, node: str) -> bool:
        return self._node(node).kind is NodeKind.BRIDGE

    def _plan_wire(self, link: Link, key: str | None = None, segment: int = 0) -> _Wire:
        ends = [link.a, link.b]
        if self._is_bridge(ends[1].node) and not self._is_bridge(ends[0].node):
            ends.reverse()  # the bridge port creates the pair: enslaved and up in one request
        sides = []
        for ep, other in ((ends[0], ends[1]), (ends[1], ends[0])):
            if self._is_bridge(ep.node):
                taken = self._ports.setdefault(ep.node, set())
                name = ep.iface if ep.iface else port_name(other, taken)
                if not _ifname_ok(name) or name in taken or name == BRIDGE_IF:
                    raise LabError(f"bad or duplicate bridge port name {name!r} on {ep.node}")
                taken.add(name)
                sides.append(_Side(ep.node, name, True))
            else:
                if not ep.iface or not _ifname_ok(ep.iface):
                    raise LabError(f"bad interface name in link {link.name}")
                sides.append(_Side(ep.node, ep.iface, False))
        # pcap named from the non-bridge side, as the link reads: "ue1.wlan0--wlan-a"
        stem = _sanitize(f"{ends[1]}--{ends[0]}" if sides[0].bridge_port and not sides[1].bridge_port
                         else f"{ends[0]}--{ends[1]}")
        if segment:
            stem += f".{segment}"
        return _Wire(key or link.name, sides[0], sides[1], stem)

    def _make_veth(self, wire: _Wire, master: int | None = None) -> None:
        ipr = self._ipr[wire.a.node]
        mtu = self._mtu_of(wire.a) or self._mtu_of(wire.b)
        peer: dict[str, Any] = {"ifname": wire.b.ifname, "net_ns_fd": self._nsfd[wire.b.node]}
        kw: dict[str, Any] = {"state": "up"}
        if wire.a.bridge_port:
            if master is None:
                master = self._ipr[wire.a.node].link_lookup(ifname=BRIDGE_IF)[0]
            kw["master"] = master
        if mtu:
            peer["mtu"] = mtu
            kw["mtu"] = mtu
        try:
            ipr.link("add", ifname=wire.a.ifname, kind="veth", peer=peer, **kw)
        except Exception as exc:
            raise LabError(f"creating veth for {wire.key}: {_one_line(exc)}") from exc

    def _mtu_of(self, side: _Side) -> int | None:
        iface = self._node(side.node).interfaces.get(side.ifname)
        return iface.mtu if iface else None

    def _index_map(self, node: str) -> dict[str, int]:
        return {
            link.get("ifname"): link["index"] for link in self._ipr[node].get_links()
        }

    def _peer_up(self, wire: _Wire, index: dict[str, dict[str, int]]) -> None:
        """Bring up the peer end of a new veth (the creating end is up already)."""
        side = wire.b
        kw: dict[str, Any] = {"state": "up"}
        if side.bridge_port:
            kw["master"] = index[side.node][BRIDGE_IF]
        self._ipr[side.node].link("set", index=index[side.node][side.ifname], **kw)

    def _add_addresses(self, ipr: Any, idx: int, v4: Any, v6: Any) -> None:
        for a in v4:
            ipr.addr("add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen)
        for a in v6:
            ipr.addr(
                "add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen, flags=IFA_F_NODAD
            )

    # -- access networks (DHCP/SLAAC stand-in)
    def _radio_for(self, wire: _Wire) -> _Radio | None:
        """If ``wire`` attaches a UE interface to an access network, register it as a radio."""
        if wire.a.bridge_port == wire.b.bridge_port:
            return None
        ue_side, net_side = (wire.b, wire.a) if wire.a.bridge_port else (wire.a, wire.b)
        node = self._node(ue_side.node)
        if node.kind is not NodeKind.UE or not self._node(net_side.node).is_access_network:
            return None
        key = (ue_side.node, ue_side.ifname)
        radio = self._radios.get(key)
        if radio is None:
            ue_ifaces = list(node.interfaces)
            pos = ue_ifaces.index(ue_side.ifname) if ue_side.ifname in ue_ifaces else len(self._radios)
            radio = _Radio(ue_side.node, ue_side.ifname, net_side.node, metric=UE_DEFAULT_METRIC + pos)
            self._radios[key] = radio
        return radio

    def _assign_radio(self, radio: _Radio, idx: int) -> None:
        net = self._node(radio.network)
        access = net.access
        assert access is not None
        used = self._pool_used.setdefault(radio.network, set())
        radio.ipv4, radio.ipv6 = [], []
        for pool, out in ((access.ipv4_pool, radio.ipv4), (access.ipv6_pool, radio.ipv6)):
            if not pool:
                continue
            for addr in pool:
                if str(addr.ip) not in used:
                    used.add(str(addr.ip))
                    out.append(addr)
                    break
            else:
                raise LabError(f"address pool of access network {radio.network} is exhausted")
        ipr = self._ipr[radio.node]
        self._add_addresses(ipr, idx, radio.ipv4, radio.ipv6)
        self._radio_routes(radio, idx)

    def _radio_routes(self, radio: _Radio, idx: int, command: str = "add") -> None:
        access = self._node(radio.network).access
        assert access is not None
        ipr = self._ipr[radio.node]
        if access.ipv4_gateway is not None and radio.ipv4:
            ipr.route(
                command, dst="0.0.0.0/0", gateway=str(access.ipv4_gateway), oif=idx, priority=radio.metric
            )
        if access.ipv6_gateway is not None and radio.ipv6:
            ipr.route(
                command, dst="::/0", gateway=str(access.ipv6_gateway), oif=idx, priority=radio.metric
            )

    def _release_radio(self, radio: _Radio) -> None:
        used = self._pool_used.get(radio.network, set())
        for a in (*radio.ipv4, *radio.ipv6):
            used.discard(str(a.ip))

    def _add_route(self, node: str, route: Route, index: dict[str, int], command: str = "add") -> None:
        ipr = self._ipr[node]
        oif = None
        if route.dev:
            oif = index.get(route.dev)
            if oif is None:
                raise LabError(f"route {route.to} on {node}: no interface {route.dev}")
        if route.to == "default":
            if route.via:
                fams = ["::/0" if ":" in route.via else "0.0.0.0/0"]
            else:
                fams = ["0.0.0.0/0", "::/0"]
        else:
            fams = [str(ipaddress.ip_network(route.to, strict=False))]
        for dst in fams:
            kw: dict[str, Any] = {"dst": dst}
            if route.via:
                kw["gateway"] = route.via
            if oif is not None:
                kw["oif"] = oif
            try:
                ipr.route(command, **kw)
            except Exception as exc:
                raise LabError(f"route {route.to} via {route.via or route.dev} on {node}: {_one_line(exc)}") from exc

    # -- nftables
    def _nft(self, node: str, ruleset: str) -> None:
        res = nsexec.run_in_netns(self.netns_path(node), ["nft", "-f", "-"], input=ruleset, timeout=10)
        if res.returncode != 0:
            raise LabError(f"nft on {node}: {_one_line(res.stderr) or 'failed'}")

    def _setup_nat44(self, n: str, node: Node) -> None:
        assert node.nat44 is not None
        outside = node.nat44.outside
        if outside not in node.interfaces:
            raise LabError(f"nat44 on {n}: no interface {outside}")
        self._nft(
            n,
            f"table ip {NFT_NAT_TABLE} {{\n"
            f" chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n"
            f'  oifname "{outside}" masquerade\n }}\n}}\n',
        )
        self._nft_tables.append({"node": n, "family": "ip", "table": NFT_NAT_TABLE})

    # -- captures
    def _start_capture(self, wire: _Wire, wait: bool = True) -> None:
        side = wire.capture_side()
        pcap = self.pcap_dir / f"{wire.pcap_stem}.pcap"
        log = self.logs_dir / f"capture.{wire.pcap_stem}.log"
        argv = ["tcpdump", "-i", side.ifname, "-w", str(pcap), "-U", "--immediate-mode", "-n", "-Z", "root", "-s", "0"]
        fh = open(log, "wb")
        try:
            popen = subprocess.Popen(
                nsexec.nsenter_argv(self.netns_path(side.node), argv),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            fh.close()
        wire.capture = NodeProcess(side.node, argv, log, popen)
        wire.pcap = pcap
        self._pcaps.append(pcap)
        if wait:
            self._wait_captures([wire])

    def _wait_captures(self, wires: list[_Wire]) -> None:
        deadline = time.monotonic() + CAPTURE_READY_TIMEOUT
        pending = list(wires)
        while pending:
            still = []
            for w in pending:
                assert w.capture is not None and w.capture.log_path is not None
                try:
                    text = w.capture.log_path.read_bytes()
                except OSError:
                    text = b""
                if b"listening on" in text:
                    continue
                if not w.capture.alive():
                    raise LabError(
                        f"tcpdump on {w.capture_side().node}:{w.capture_side().ifname} exited: "
                        f"{_one_line(text.decode(errors='replace')) or w.capture.returncode}"
                    )
                still.append(w)
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"tcpdump on {pending[0].capture_side().node}:{pending[0].capture_side().ifname} "
                        f"not listening after {CAPTURE_READY_TIMEOUT:.0f} s"
                    )
                time.sleep(0.003)

    def _stop_capture(self, wire: _Wire) -> None:
        if wire.capture is not None:
            _quiesce([wire.capture])
            wire.capture.terminate(2.0)
            wire.capture = None

    def captures(self) -> list[Path]:
        return list(self._pcaps)

    def sync_captures(self, timeout: float = 0.5) -> None:
        """Wait until the running captures have written every packet seen so far (read pcaps
        mid-run after this)."""
        _quiesce([w.capture for w in self._wires if w.capture], timeout)

    # ------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        self._cancel.set()  # a build running in the worker stops at its next checkpoint
        with self._lock:
            if self._torn:
                return
            self._torn = True
            # wait for the worker to be idle (FIFO: anything queued before us has finished), so
            # nothing is created behind our back while we remove things
            if threading.get_ident() != self._worker_ident:
                try:
                    self._worker.submit(lambda: None).result(timeout=15)
                except BaseException:  # noqa: BLE001
                    pass
            # every step runs even if an earlier one failed or a Ctrl-C arrives: teardown
            # never raises and leaves as little as it can
            for step in (
                self._stop_processes,
                self._stop_captures,
                self._kill_namespace_residents,
                self._close_sockets,
                self._remove_namespaces,
            ):
                try:
                    step()
                except BaseException:  # noqa: BLE001
                    pass
            try:
                self._save_state()
            except BaseException:  # noqa: BLE001
                pass
            self._worker.shutdown(wait=False)

    def _stop_processes(self) -> None:
        # node processes first (they may hold sockets in the namespaces); all signalled at once
        _terminate_all(list(self._procs), grace=3.0)

    def _stop_captures(self) -> None:
        # then captures, so the pcaps hold everything up to the end; tcpdump flushes on SIGTERM
        caps = [w.capture for w in self._wires if w.capture]
        _quiesce(caps)
        _terminate_all(caps, grace=2.0)
        for w in self._wires:
            w.capture = None

    def _kill_namespace_residents(self) -> None:
        # anything else still living in one of our namespaces (children that left the group,
        # commands run with exec that outlived their timeout)
        paths = [nsexec.netns_path(ns) for ns in self._created_ns]
        pids = [p for found in nsexec.pids_in_netns(paths).values() for p in found]
        pids += nsexec.pids_entering(names=list(self._created_ns))
        if pids:
            nsexec.kill_pids(pids, grace=1.0)

    def _close_sockets(self) -> None:
        def close_all() -> None:
            for ipr in self._ipr.values():
                try:
                    ipr.close()  # closes its netlink fd too
                except Exception:  # noqa: BLE001
                    pass

        try:
            if self._ipr:
                self._call(close_all)
        finally:
            self._ipr.clear()
            for fd in self._nsfd.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._nsfd.clear()

    def _remove_namespaces(self) -> None:
        # their veths, bridges, qdiscs and nft tables go with them
        for ns in list(self._created_ns):
            try:
                nsexec.remove_namespace(ns)
            except OSError:
                continue
            self._created_ns.remove(ns)
        self._nft_tables.clear()

    # ------------------------------------------------------------------ processes
    def spawn(
        self, node: str, argv: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> NodeProcess:
        self._node(node)
        if not self._built or self._torn:
            raise LabError(f"lab {self.run_id} is not running")
        if not argv:
            raise LabError("spawn needs a command")
        if "/" in log_name or not log_name:
            raise LabError(f"bad log name {log_name!r}")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = self.logs_dir / f"{log_name}.log"
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        full_env["S2C_NODE"] = node
        full_env["S2C_RUN_ID"] = self.run_id
        if env:
            full_env.update(env)
        fh = open(log, "ab")
        try:
            popen = subprocess.Popen(
                nsexec.nsenter_argv(self.netns_path(node), list(argv)),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        except OSError as exc:
            raise LabError(f"spawning {argv[0]} on {node}: {exc.strerror or exc}") from exc
        finally:
            fh.close()
        proc = NodeProcess(node, list(argv), log, popen)
        with self._lock:
            self._procs.append(proc)
            self._save_state()
        return proc

    def processes(self) -> list[NodeProcess]:
        """Every process started with ``spawn`` (alive or not)."""
        return list(self._procs)

    def exec(self, node: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        self._node(node)
        if not self._built or self._torn:
            raise LabError(f"lab {self.run_id} is not running")
        try:
            res = subprocess.run(
                nsexec.nsenter_argv(self.netns_path(node), list(argv)),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)[:60]} on {node} timed out after {timeout:g} s") from exc
        except OSError as exc:
            raise LabError(f"running {argv[0]} on {node}: {exc.strerror or exc}") from exc
        res.args = list(argv)
        return res

    # ------------------------------------------------------------------ links
    def set_link(self, node: str, iface: str, up: bool) -> None:
        """Administratively up/down. The kernel drops the routes through an interface that goes
        down; bringing it up re-installs the node's static routes and a radio's default route
        (addresses stay: keep_addr_on_down)."""

        def do() -> None:
            ipr = self._ipr_of(node)
            idx = ipr.link_lookup(ifname=iface)
            if not idx:
                raise LabError(f"no interface {iface} on {node}")
            ipr.link("set", index=idx[0], state="up" if up else "down")
            if up:
                self._restore_routes(node)

        with self._lock:
            self._call(do)

    def _restore_routes(self, node: str) -> None:
        index = self._index_map(node)
        for radio in self._radios.values():
            if radio.node == node and radio.iface in index:
                self._radio_routes(radio, index[radio.iface], command="replace")
        for route in self._node(node).routes:
            try:
                self._add_route(node, route, index, command="replace")
            except LabError:
                pass  # its next hop is behind another interface that is still down

    def move(self, node: str, iface: str, network: str) -> dict[str, Any]:
        with self._lock:
            return self._call(self._move, node, iface, network)

    def _move(self, node: str, iface: str, network: str) -> dict[str, Any]:
        self._ipr_of(node)
        if self._node(node).kind is not NodeKind.UE:
            raise LabError(f"move: {node} is not a UE")
        net = self._node(network)
        if not net.is_access_network:
            raise LabError(f"move: {network} is not an access network")
        radio = self._radios.get((node, iface))
        wire = next(
            (
                w
                for w in self._wires
                for side in (w.a, w.b)
                if (side.node, side.ifname) == (node, iface) and not side.bridge_port
            ),
            None,
        )
        if wire is None:
            raise LabError(f"move: {node}:{iface} is not attached to anything")
        if radio is None:
            raise LabError(f"move: {node}:{iface} is not a radio on an access network")
        ipr = self._ipr[node]
        # break: stop the capture, delete the veth (the bridge port goes with it), free the lease
        self._stop_capture(wire)
        idx = ipr.link_lookup(ifname=iface)
        if idx:
            ipr.link("del", index=idx[0])
        port = wire.a if wire.a.bridge_port else wire.b
        self._ports.get(port.node, set()).discard(port.ifname)
        self._wires.remove(wire)
        self._release_radio(radio)
        self._impaired.pop((node, iface), None)
        self._drop_impair_chain(node, iface)
        # make: a new veth on the new network, same name on the UE side
        radio.network = network
        radio.segment += 1
        link = Link(Endpoint(node, iface), Endpoint(network, None))
        new = self._plan_wire(link, key=f"{node}:{iface}@{network}", segment=radio.segment)
        self._make_veth(new)
        self._wires.append(new)
        index = {node: self._index_map(node), network: self._index_map(network)}
        self._peer_up(new, index)
        # the new segment's capture listens before the radio gets addresses, so it holds the
        # first packets the UE sends on the new network (binding update, ND)
        if self.capture:
            self._start_capture(new, wait=True)
        model_if = self._node(node).interfaces.get(iface)
        ue_idx = index[node][iface]
        if model_if is not None:
            self._add_addresses(ipr, ue_idx, model_if.ipv4, model_if.ipv6)
        self._assign_radio(radio, ue_idx)
        self._save_state()
        return self._lease(radio)

    def _lease(self, radio: _Radio) -> dict[str, Any]:
        access = self._node(radio.network).access
        assert access is not None
        return {
            "network": radio.network,
            "ipv4": [str(a) for a in radio.ipv4],
            "ipv6": [str(a) for a in radio.ipv6],
            "gateway4": str(access.ipv4_gateway) if access.ipv4_gateway and radio.ipv4 else None,
            "gateway6": str(access.ipv6_gateway) if access.ipv6_gateway and radio.ipv6 else None,
        }

    def lease(self, node: str, iface: str) -> dict[str, Any] | None:
        """The addressing a UE radio currently holds (as ``move`` returns it), or None."""
        radio = self._radios.get((node, iface))
        return self._lease(radio) if radio else None

    # ------------------------------------------------------------------ impairments
    def impair(
        self,
        node: str,
        iface: str,
        *,
        loss: float | None = None,
        rate: str | None = None,
        delay_ms: float | None = None,
        clear: bool = False,
    ) -> None:
        self._ipr_of(node)
        if not self._call(lambda: bool(self._ipr[node].link_lookup(ifname=iface))):
            raise LabError(f"no interface {iface} on {node}")
        if loss is not None and not (0 <= loss <= 100):
            raise LabError(f"loss must be a percentage in 0..100, not {loss}")
        if delay_ms is not None:
            if delay_ms < 0:
                raise LabError(f"delay must be >= 0 ms, not {delay_ms}")
            if not self.capabilities().get("netem"):
                raise LabError("delay needs the sch_netem qdisc, which this kernel lacks; use loss/rate")
        rate_bps = _parse_rate(rate) if rate is not None else None
        path = self.netns_path(node)
        key = (node, iface)
        if clear:
            self._drop_impair_chain(node, iface)
            nsexec.run_in_netns(path, ["tc", "qdisc", "del", "dev", iface, "root"], timeout=10)
            self._impaired.pop(key, None)
        if loss is not None:
            self._drop_impair_chain(node, iface)
            if loss > 0:
                self._ensure_impair_table(node)
                verdict = "drop" if loss >= 100 else f"numgen random mod 10000 < {int(round(loss * 100))} drop"
                chain = _impair_chain(iface)
                self._nft(
                    node,
                    f"table netdev {NFT_IMPAIR_TABLE} {{\n"
                    f' chain {chain} {{ type filter hook egress device "{iface}" priority 0; policy accept;\n'
                    f"  {verdict}\n }}\n}}\n",
                )
        if rate_bps is not None or delay_ms is not None:
            argv = ["tc", "qdisc", "replace", "dev", iface, "root"]
            if delay_ms is not None:
                argv += ["handle", "1:", "netem", "delay", f"{delay_ms}ms"]
                if rate_bps is not None:
                    argv += ["rate", f"{rate_bps}bit"]
            else:
                burst = max(3200, rate_bps // 8 // 100)  # >= 2 full frames, ~10 ms at rate
                argv += ["tbf", "rate", f"{rate_bps}bit", "burst", str(burst), "latency", "100ms"]
            res = nsexec.run_in_netns(path, argv, timeout=10)
            if res.returncode != 0:
                raise LabError(f"tc on {node}:{iface}: {_one_line(res.stderr)}")
        state = self._impaired.setdefault(key, {})
        for k, v in (("loss", loss), ("rate", rate), ("delay_ms", delay_ms)):
            if v is not None:
                state[k] = v
        if state.get("loss") == 0:
            state.pop("loss")
        if not state:
            self._impaired.pop(key, None)

    def impairments(self) -> dict[str, dict[str, Any]]:
        """"node:iface" -> the impairments currently applied through ``impair``."""
        return {f"{n}:{i}": dict(v) for (n, i), v in self._impaired.items()}

    def _ensure_impair_table(self, node: str) -> None:
        entry = {"node": node, "family": "netdev", "table": NFT_IMPAIR_TABLE}
        if entry not in self._nft_tables:
            self._nft(node, f"table netdev {NFT_IMPAIR_TABLE} {{\n}}\n")
            self._nft_tables.append(entry)
            self._save_state()

    def _drop_impair_chain(self, node: str, iface: str) -> None:
        if {"node": node, "family": "netdev", "table": NFT_IMPAIR_TABLE} not in self._nft_tables:
            return
        nsexec.run_in_netns(
            self.netns_path(node),
            ["nft", "delete", "chain", "netdev", NFT_IMPAIR_TABLE, _impair_chain(iface)],
            timeout=10,
        )

    # ------------------------------------------------------------------ inspection
    def addresses(self, node: str) -> dict[str, dict[str, Any]]:
        return self._call(self._addresses, node)

    def _addresses(self, node: str) -> dict[str, dict[str, Any]]:
        ipr = self._ipr_of(node)
        out: dict[str, dict[str, Any]] = {}
        names: dict[int, str] = {}
        for link in ipr.get_links():
            name = link.get("ifname")
            if name == "lo":
                continue
            names[link["index"]] = name
            out[name] = {
                "ipv4": [],
                "ipv6": [],
                "up": bool(link["flags"] & 1),
                "carrier": link.get("carrier") == 1 if link.get("carrier") is not None else None,
                "network": self._network_of(node, name),
            }
        for addr in ipr.get_addr():
            name = names.get(addr["index"])
            if name is None:
                continue
            ip = addr.get("address")
            text = f"{ip}/{addr['prefixlen']}"
            if addr["family"] == socket.AF_INET:
                out[name]["ipv4"].append(text)
            elif not ipaddress.IPv6Address(ip).is_link_local:
                out[name]["ipv6"].append(text)
        return out

    def _network_of(self, node: str, ifname: str) -> str | None:
        for w in self._wires:
            for side, other in ((w.a, w.b), (w.b, w.a)):
                if (side.node, side.ifname) == (node, ifname):
                    return other.node if other.bridge_port else None
        return None

    def capabilities(self) -> dict[str, bool]:
        return detect_capabilities(self.run_id)


def _impair_chain(iface: str) -> str:
    return "egress_" + re.sub(r"[^A-Za-z0-9_]", "_", iface)


def _quiesce(captures: list[NodeProcess], timeout: float = 0.5) -> None:
    """Wait until every capture has read what the kernel queued for it.

    A packet that reaches a capture socket wakes tcpdump at once (state R); only when it is back
    asleep in poll (S) is its ring empty. SIGTERM ends tcpdump's loop without draining the ring,
    so stopping a capture that is still awake would lose the last packets of a run.
    """
    deadline = time.monotonic() + timeout
    quiet_rounds = 0
    while time.monotonic() < deadline:
        states = [_proc_state(p.pid) for p in captures if p.alive()]
        if all(st in ("S", None) for st in states):
            quiet_rounds += 1
            if quiet_rounds >= 2:
                return
        else:
            quiet_rounds = 0
        time.sleep(0.005)


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def _terminate_all(procs: list[NodeProcess], grace: float) -> None:
    """SIGTERM every process group, wait up to ``grace`` s for all, SIGKILL the rest."""
    live = [p for p in procs if p is not None]
    for p in live:
        if p.alive():
            p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in live:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            p.wait(remaining)
        except subprocess.TimeoutExpired:
            pass
    for p in live:
        p.signal(signal.SIGKILL)  # the group may hold children even if the leader left
        if p.alive():
            try:
                p.wait(1.0)
            except subprocess.TimeoutExpired:
                pass


_RATE_UNITS = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9,
}


def _parse_rate(text: str) -> int:
    """tc-style rate ("1mbit", "500kbit", "2mbps" = bytes/s) -> bits per second."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m:
        raise LabError(f"bad rate {text!r} (use e.g. 1mbit, 500kbit)")
    unit = (m.group(2) or "bit").lower()
    if unit not in _RATE_UNITS:
        raise LabError(f"bad rate unit in {text!r} (bit, kbit, mbit, gbit, bps, kbps, mbps)")
    bps = int(float(m.group(1)) * _RATE_UNITS[unit])
    if bps < 8000:
        raise LabError(f"rate {text!r} is below 8kbit")
    return bps


def _one_line(exc: object) -> str:
    text = str(exc).strip()
    return " ".join(text.split())[:300] if text else type(exc).__name__


def detect_capabilities(prefix: str = "s2c-probe") -> dict[str, bool]:
    """Probe, once per process, what this kernel offers inside a throwaway namespace:
    netem (delay), tbf (rate), nft netdev egress (loss), xfrm, kernel ESP, dummy links."""
    global _CAPS
    with _CAPS_LOCK:
        if _CAPS is not None:
            return dict(_CAPS)
        name = f"{prefix}-probe{os.getpid()}"
        caps = {
            "netem": False, "tbf": False, "nft_egress": False, "xfrm": False, "esp": False,
            "dummy": False,
            "tcpdump": shutil.which("tcpdump") is not None,
            "tshark": shutil.which("tshark") is not None,
        }
        try:
            fds = nsexec.create_namespaces([nsexec.NsSpec(name)])
        except OSError:
            return dict(caps)
        for fd in fds.values():
            os.close(fd)
        path = nsexec.netns_path(name)
        try:
            def ok(argv: list[str], input: str | None = None) -> bool:
                try:
                    return nsexec.run_in_netns(path, argv, input=input, timeout=10).returncode == 0
                except (OSError, subprocess.TimeoutExpired):
                    return False

            caps["dummy"] = ok(["ip", "link", "add", "d0", "type", "dummy"])
            ok(["ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
            ok(["ip", "link", "set", "p0", "up"])
            ok(["ip", "link", "set", "p1", "up"])
            caps["netem"] = ok(["tc", "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms"])
            ok(["tc", "qdisc", "del", "dev", "p0", "root"])
            caps["tbf"] = ok(
                ["tc", "qdisc", "add", "dev", "p0", "root", "tbf", "rate", "1mbit", "burst", "3200", "latency", "50ms"]
            )
            caps["nft_egress"] = ok(
                ["nft", "-f", "-"],
                'table netdev s2c_probe {\n chain e {\n  type filter hook egress device "p0" priority 0; policy accept;\n }\n}\n',
            )
            caps["xfrm"] = ok(["ip", "xfrm", "state", "list"])
            caps["esp"] = ok(
                ["ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
                 "spi", "0x100", "enc", "cbc(aes)", "0x" + "00" * 16,
                 "auth", "hmac(sha256)", "0x" + "00" * 32]
            )
        finally:
            pids = nsexec.pids_in_netns([path]).get(path, [])
            if pids:
                nsexec.kill_pids(pids)
            nsexec.remove_namespace(name)
        _CAPS = caps
        return dict(caps)
