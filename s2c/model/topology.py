"""Topology model: a pure, validated graph of nodes, interfaces and links (no IO).

Produced by ``s2c.model.load`` from YAML (see docs/scenarios.md); consumed by ``s2c.lab`` backends.
Everything here is resolved: every interface has its addresses, every link names two existing
endpoints, and access networks carry what DHCP/SLAAC would give a UE that attaches to them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

IPv4If = ipaddress.IPv4Interface
IPv6If = ipaddress.IPv6Interface


class NodeKind(str, Enum):
    UE = "ue"
    PDNGW = "pdngw"
    HSS = "hss"
    CN = "cn"
    ROUTER = "router"
    BRIDGE = "bridge"


# kinds that run a daemon (python -m <kind>); routers and bridges are plain namespaces
DAEMON_KINDS = frozenset({NodeKind.UE, NodeKind.PDNGW, NodeKind.HSS, NodeKind.CN})
# kinds with IP forwarding on
FORWARDING_KINDS = frozenset({NodeKind.ROUTER, NodeKind.PDNGW})


class AccessType(str, Enum):
    """What a bridge segment emulates, for a UE radio attached to it."""

    WLAN = "wlan"  # untrusted non-3GPP access (S2c through it)
    HOME = "3gpp"  # the 3GPP home link (the UE is at home: no binding needed)


@dataclass(frozen=True)
class Route:
    """A static route; ``to`` is a prefix or 'default' (both families: 'default' + family of via)."""

    to: str
    via: str | None = None
    dev: str | None = None


@dataclass(frozen=True)
class Interface:
    name: str  # <= 15 chars, unique within its node
    ipv4: tuple[IPv4If, ...] = ()
    ipv6: tuple[IPv6If, ...] = ()
    mtu: int | None = None


@dataclass(frozen=True)
class AccessNetwork:
    """Addressing a UE radio gets when it attaches to this access network (DHCP/SLAAC stand-in)."""

    type: AccessType
    ipv4_gateway: ipaddress.IPv4Address | None = None
    ipv4_pool: tuple[IPv4If, ...] = ()  # addresses handed to radios, in order
    ipv6_gateway: ipaddress.IPv6Address | None = None
    ipv6_pool: tuple[IPv6If, ...] = ()


@dataclass(frozen=True)
class Nat44:
    """Masquerade traffic leaving ``outside`` (RFC 3022 NAPT, as a Wi-Fi hotspot does)."""

    outside: str


@dataclass(frozen=True)
class Node:
    name: str
    kind: NodeKind
    interfaces: dict[str, Interface] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    nat44: Nat44 | None = None
    access: AccessNetwork | None = None  # bridges only
    params: dict = field(default_factory=dict)  # kind-specific, passed to the daemon verbatim

    @property
    def is_access_network(self) -> bool:
        return self.kind is NodeKind.BRIDGE and self.access is not None


@dataclass(frozen=True)
class Endpoint:
    node: str
    iface: str | None  # None: a port on a bridge node, named by the lab

    def __str__(self) -> str:
        return f"{self.node}:{self.iface}" if self.iface else self.node


@dataclass(frozen=True)
class Link:
    """A veth pair between two endpoints (an endpoint on a bridge node becomes a bridge port)."""

    a: Endpoint
    b: Endpoint

    @property
    def name(self) -> str:
        return f"{self.a}--{self.b}"


@dataclass(frozen=True)
class Topology:
    name: str
    nodes: dict[str, Node]
    links: tuple[Link, ...]
    description: str = ""

    def access_networks(self) -> dict[str, Node]:
        return {n: node for n, node in self.nodes.items() if node.is_access_network}

    def nodes_of(self, kind: NodeKind) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind is kind]

    def link_of(self, node: str, iface: str) -> Link | None:
        for link in self.links:
            for ep in (link.a, link.b):
                if ep.node == node and ep.iface == iface:
                    return link
        return None
