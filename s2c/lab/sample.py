"""A small reference topology built in code (no YAML): for backend tests and benchmarks.

    ue1:wlan0 -- wlan-a (192.0.2.0/24) -- ar-a [NAT44 out eth1] --+
                 wlan-b (2001:db8:b::/64) -- ar-b ----------------+-- core -- pdngw -- cn
"""

from __future__ import annotations

import ipaddress

from s2c.model.topology import (
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


def v4(*addrs: str) -> tuple[ipaddress.IPv4Interface, ...]:
    return tuple(ipaddress.IPv4Interface(a) for a in addrs)


def v6(*addrs: str) -> tuple[ipaddress.IPv6Interface, ...]:
    return tuple(ipaddress.IPv6Interface(a) for a in addrs)


def ep(text: str) -> Endpoint:
    node, _, iface = text.partition(":")
    return Endpoint(node, iface or None)


def small_topology() -> Topology:
    """UE radio on an IPv4 Wi-Fi behind a NAT44 router, an IPv6 Wi-Fi, a core segment, a PDN GW
    (forwarding) and a correspondent node.

        ue1:wlan0 -- wlan-a (192.0.2.0/24) -- ar-a [NAT44 out eth1] --+
                     wlan-b (2001:db8:b::/64) -- ar-b ----------------+-- core -- pdngw -- cn
    """
    nodes = [
        Node("ue1", NodeKind.UE, {"wlan0": Interface("wlan0")}),
        Node(
            "wlan-a",
            NodeKind.BRIDGE,
            access=AccessNetwork(
                AccessType.WLAN,
                ipv4_gateway=ipaddress.IPv4Address("192.0.2.1"),
                ipv4_pool=v4("192.0.2.10/24", "192.0.2.11/24", "192.0.2.12/24"),
            ),
        ),
        Node(
            "wlan-b",
            NodeKind.BRIDGE,
            access=AccessNetwork(
                AccessType.WLAN,
                ipv6_gateway=ipaddress.IPv6Address("2001:db8:b::1"),
                ipv6_pool=v6("2001:db8:b::10/64", "2001:db8:b::11/64"),
            ),
        ),
        Node(
            "ar-a",
            NodeKind.ROUTER,
            {
                "eth0": Interface("eth0", ipv4=v4("192.0.2.1/24")),
                "eth1": Interface("eth1", ipv4=v4("198.51.100.2/24")),
            },
            routes=(Route("default", via="198.51.100.1"),),
            nat44=Nat44("eth1"),
        ),
        Node(
            "ar-b",
            NodeKind.ROUTER,
            {
                "eth0": Interface("eth0", ipv6=v6("2001:db8:b::1/64")),
                "eth1": Interface("eth1", ipv6=v6("2001:db8:c::2/64")),
            },
            routes=(Route("default", via="2001:db8:c::1"),),
        ),
        Node("core", NodeKind.BRIDGE),
        Node(
            "pdngw",
            NodeKind.PDNGW,
            {
                "eth0": Interface("eth0", ipv4=v4("198.51.100.1/24"), ipv6=v6("2001:db8:c::1/64")),
                "eth1": Interface("eth1", ipv4=v4("203.0.113.1/24"), ipv6=v6("2001:db8:d::1/64")),
            },
            routes=(Route("2001:db8:b::/64", via="2001:db8:c::2"),),
        ),
        Node(
            "cn",
            NodeKind.CN,
            {"eth0": Interface("eth0", ipv4=v4("203.0.113.10/24"), ipv6=v6("2001:db8:d::10/64"))},
            routes=(Route("default", via="203.0.113.1"), Route("default", via="2001:db8:d::1")),
        ),
    ]
    links = [
        ("ue1:wlan0", "wlan-a"),
        ("ar-a:eth0", "wlan-a"),
        ("ar-b:eth0", "wlan-b"),
        ("ar-a:eth1", "core"),
        ("ar-b:eth1", "core"),
        ("pdngw:eth0", "core"),
        ("pdngw:eth1", "cn:eth0"),
    ]
    return Topology(
        name="e2e-small",
        nodes={n.name: n for n in nodes},
        links=tuple(Link(ep(a), ep(b)) for a, b in links),
    )
