"""Topology YAML loading and validation (s2c.model.load_topology): good files load, bad ones say file:line: field."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from s2c.model import AccessType, ModelError, NodeKind, Topology, load_topology

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TOPOLOGY = REPO / "scenarios" / "topologies" / "default.yaml"

# a small valid topology; the bad cases below are edits of it (line numbers matter: keep in sync)
BASE = """\
name: t
nodes:
  ue1: {kind: ue}
  wlan-a:
    kind: bridge
    access:
      type: wlan
      ipv4: {gateway: 192.0.2.1, pool: [192.0.2.10/24, 192.0.2.11/24]}
  ar-a:
    kind: router
    interfaces:
      eth0: {ipv4: [198.51.100.2/24]}
      eth1: {ipv4: [192.0.2.1/24]}
    nat44: {outside: eth0}
    routes:
      - {to: default, via: 198.51.100.1}
  pdngw:
    kind: pdngw
    interfaces:
      core0: {ipv4: [198.51.100.1/24]}
links:
  - [ue1:wlan0, wlan-a]
  - [ar-a:eth1, wlan-a]
  - [ar-a:eth0, pdngw:core0]
"""


def write(tmp_path: Path, text: str, name: str = "topo.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ModelError) as ei:
        load_topology(path)
    err = ei.value
    assert str(err) == str(err.errors[0]) and "\n" not in str(err)
    return [str(e) for e in err.errors]


def assert_error(path: Path, line: int, field: str, fragment: str) -> None:
    lines = errors_of(path)
    prefix = f"{path}:{line}: {field}: "
    hits = [e for e in lines if e.startswith(prefix)]
    assert hits, f"no error at {prefix!r}; got:\n" + "\n".join(lines)
    assert any(fragment in e for e in hits), f"{fragment!r} not in {hits}"


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# ---- good files -----------------------------------------------------------------------------
def test_base_topology_loads(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, BASE))
    assert isinstance(topo, Topology)
    assert topo.name == "t"
    assert set(topo.nodes) == {"ue1", "wlan-a", "ar-a", "pdngw"}
    assert topo.nodes["ue1"].interfaces["wlan0"].ipv4 == ()  # a radio: addresses come from the access network
    acc = topo.nodes["wlan-a"].access
    assert acc is not None and acc.type is AccessType.WLAN
    assert acc.ipv4_gateway == ipaddress.ip_address("192.0.2.1")
    assert [str(a) for a in acc.ipv4_pool] == ["192.0.2.10/24", "192.0.2.11/24"]
    assert topo.nodes["ar-a"].nat44 is not None and topo.nodes["ar-a"].nat44.outside == "eth0"
    assert topo.link_of("ar-a", "eth0") is not None
    assert str(topo.links[0].a) == "ue1:wlan0" and str(topo.links[0].b) == "wlan-a"


def test_default_topology() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    assert topo.name == "default"
    kinds = {n: node.kind for n, node in topo.nodes.items()}
    assert kinds["ue1"] is NodeKind.UE and kinds["pdngw"] is NodeKind.PDNGW and kinds["hss"] is NodeKind.HSS
    assert kinds["cn1"] is NodeKind.CN and kinds["ar-a"] is NodeKind.ROUTER and kinds["ar-b"] is NodeKind.ROUTER
    assert set(topo.access_networks()) == {"wlan-a", "wlan-b", "home"}
    assert topo.nodes["home"].access.type is AccessType.HOME
    assert topo.nodes["wlan-a"].access.ipv6_pool == () and topo.nodes["wlan-a"].access.ipv4_pool
    assert topo.nodes["wlan-b"].access.ipv4_pool == () and topo.nodes["wlan-b"].access.ipv6_pool
    # wlan0 starts on wlan-a, wlan1 on wlan-b, no radio on home
    peers = {str(l.a): str(l.b) for l in topo.links}
    assert peers["ue1:wlan0"] == "wlan-a" and peers["ue1:wlan1"] == "wlan-b"
    assert not any("ue1" in str(l) for l in topo.links if "home" in str(l))
    assert topo.nodes["ar-a"].nat44.outside == "eth0"
    # documentation prefixes only
    doc4 = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15")]
    doc6 = ipaddress.ip_network("2001:db8::/32")
    for node in topo.nodes.values():
        for itf in node.interfaces.values():
            assert all(any(a.ip in n for n in doc4) for a in itf.ipv4), itf
            assert all(a.ip in doc6 for a in itf.ipv6), itf
        for r in node.routes:
            assert r.via is None or ipaddress.ip_address(r.via) in doc6 or any(
                ipaddress.ip_address(r.via) in n for n in doc4)


# ---- bad files ------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.yaml"
    lines = errors_of(p)
    assert lines == [f"{p}: no such file '{p}'"]


def test_yaml_syntax_error_line(tmp_path: Path) -> None:
    p = write(tmp_path, edit("  ue1: {kind: ue}\n", "  ue1: {kind: ue\n"))
    lines = errors_of(p)
    assert len(lines) == 1 and "YAML syntax error" in lines[0]
    assert lines[0].startswith(f"{p}:4: ")  # the parser notices at the next line


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    p = write(tmp_path, edit("    nat44: {outside: eth0}", "    nat44: {outsde: eth0}"))
    assert_error(p, 14, "nodes.ar-a.nat44.outsde", "unknown key (did you mean 'outside'?)")
    assert_error(p, 14, "nodes.ar-a.nat44.outside", "required key missing")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    p = write(tmp_path, BASE + "link:\n  - [a, b]\n")
    assert_error(p, 25, "link", "did you mean 'links'?")


def test_unknown_kind_suggests(tmp_path: Path) -> None:
    p = write(tmp_path, edit("    kind: router", "    kind: routr"))
    assert_error(p, 10, "nodes.ar-a.kind", "invalid value 'routr' (did you mean 'router'?)")


def test_wrong_type(tmp_path: Path) -> None:
    p = write(tmp_path, edit("    routes:\n      - {to: default, via: 198.51.100.1}", "    routes: {to: default}"))
    assert_error(p, 15, "nodes.ar-a.routes", "expected a list, got mapping")


def test_nodes_must_be_mapping(tmp_path: Path) -> None:
    p = write(tmp_path, "nodes: [a, b]\n")
    assert_error(p, 1, "nodes", "expected a mapping, got list")


def test_dangling_link_node(tmp_path: Path) -> None:
    p = write(tmp_path, edit("  - [ar-a:eth0, pdngw:core0]", "  - [ar-a:eth0, pdgw:core0]"))
    assert_error(p, 24, "links[2][1]", "unknown node 'pdgw' (did you mean 'pdngw'?)")


def test_link_endpoint_needs_interface(tmp_path: Path) -> None:
    p = write(tmp_path, edit("  - [ar-a:eth0, pdngw:core0]", "  - [ar-a:eth0, pdngw]"))
    assert_error(p, 24, "links[2][1]", "'pdngw' is a pdngw: the endpoint needs an interface")


def test_bridge_endpoint_takes_no_interface(tmp_path: Path) -> None:
    p = write(tmp_path, edit("  - [ar-a:eth1, wlan-a]", "  - [ar-a:eth1, wlan-a:p1]"))
    assert_error(p, 23, "links[1][1]", "'wlan-a' is a bridge: write just 'wlan-a'")


def test_link_must_be_pair(tmp_path: Path) -> None:
    p = write(tmp_path, edit("  - [ar-a:eth1, wlan-a]", "  - [ar-a:eth1, wlan-a, ue1:x]"))
    assert_error(p, 23, "links[1]", "a link is a pair of endpoints")


def test_interface_used_twice(tmp_path: Path) -> None:
    p = write(tmp_path, BASE + "  - [ar-a:eth0, ue1:wlan9]\n")
    assert_error(p, 25, "links[3][0]", "interface 'ar-a:eth0' is already connected by links[2] (line 24)")


def test_declared_interface_not_linked(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      eth1: {ipv4: [192.0.2.1/24]}",
                             "      eth1: {ipv4: [192.0.2.1/24]}\n      eth2: {ipv4: [203.0.113.1/24]}"))
    assert_error(p, 14, "nodes.ar-a.interfaces.eth2", "interface is not connected by any link")


def test_duplicate_node_name_is_duplicate_key(tmp_path: Path) -> None:
    p = write(tmp_path, edit("  ue1: {kind: ue}\n", "  ue1: {kind: ue}\n  ue1: {kind: cn}\n"))
    assert_error(p, 4, "nodes.ue1", "duplicate key 'ue1' (first defined on line 3)")


def test_duplicate_interface_key(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      eth1: {ipv4: [192.0.2.1/24]}",
                             "      eth1: {ipv4: [192.0.2.1/24]}\n      eth1: {}"))
    assert_error(p, 14, "nodes.ar-a.interfaces.eth1", "duplicate key 'eth1' (first defined on line 13)")


def test_overlapping_prefixes_between_segments(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      core0: {ipv4: [198.51.100.1/24]}",
                             "      core0: {ipv4: [198.51.100.1/24]}\n      home0: {ipv4: [192.0.2.129/25]}")
              + "  - [pdngw:home0, ue1:eth9]\n")
    assert_error(p, 21, "nodes.pdngw.interfaces.home0.ipv4[0]",
                 "prefix 192.0.2.128/25 on segment 'pdngw:home0--ue1:eth9' overlaps 192.0.2.0/24 on segment 'wlan-a'")


def test_duplicate_address(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      core0: {ipv4: [198.51.100.1/24]}", "      core0: {ipv4: [198.51.100.2/24]}"))
    assert_error(p, 20, "nodes.pdngw.interfaces.core0.ipv4[0]",
                 "address 198.51.100.2 is already used by ar-a:eth0 (line 12)")


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("198.51.100.300/24", "invalid address '198.51.100.300/24'"),
        ("198.51.100.2", "needs a prefix length"),
        ("2001:db8::1/64", "is not an IPv4 address"),
        ("198.51.100.0/24", "is the network address of 198.51.100.0/24"),
    ],
)
def test_bad_address(tmp_path: Path, value: str, fragment: str) -> None:
    p = write(tmp_path, edit("      eth0: {ipv4: [198.51.100.2/24]}", f"      eth0: {{ipv4: ['{value}']}}"))
    assert_error(p, 12, "nodes.ar-a.interfaces.eth0.ipv4[0]", fragment)


def test_interface_name_too_long(tmp_path: Path) -> None:
    p = write(tmp_path, edit("  - [ue1:wlan0, wlan-a]", "  - [ue1:wlan0123456789abc, wlan-a]"))
    assert_error(p, 22, "links[0][0]", "interface name 'wlan0123456789abc' is longer than 15 characters")


def test_declared_interface_name_too_long(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      eth1: {ipv4", "      eth1-long-name-x: {ipv4"))
    assert_error(p, 13, "nodes.ar-a.interfaces.eth1-long-name-x", "is longer than 15 characters")


def test_route_via_unreachable(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      - {to: default, via: 198.51.100.1}", "      - {to: default, via: 203.0.113.1}"))
    assert_error(p, 16, "nodes.ar-a.routes[0].via", "gateway 203.0.113.1 is not in a subnet connected to 'ar-a'")


def test_route_via_no_neighbour(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      - {to: default, via: 198.51.100.1}", "      - {to: default, via: 198.51.100.9}"))
    assert_error(p, 16, "nodes.ar-a.routes[0].via", "no node on segment 'ar-a:eth0--pdngw:core0' has address")


def test_route_host_bits(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      - {to: default, via: 198.51.100.1}", "      - {to: 203.0.113.1/24, via: 198.51.100.1}"))
    assert_error(p, 16, "nodes.ar-a.routes[0].to", "'203.0.113.1/24' has host bits set")


def test_nat44_outside_unknown(tmp_path: Path) -> None:
    p = write(tmp_path, edit("    nat44: {outside: eth0}", "    nat44: {outside: eth3}"))
    assert_error(p, 14, "nodes.ar-a.nat44.outside", "unknown interface 'eth3' of 'ar-a'")


def test_access_gateway_must_be_a_router_address(tmp_path: Path) -> None:
    p = write(tmp_path, edit("gateway: 192.0.2.1,", "gateway: 192.0.2.2,"))
    assert_error(p, 8, "nodes.wlan-a.access.ipv4.gateway", "gateway 192.0.2.2 is not an address of any interface on 'wlan-a'")


def test_access_bad_type(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      type: wlan", "      type: wifi"))
    assert_error(p, 7, "nodes.wlan-a.access.type", "invalid value 'wifi'")


def test_bridge_has_no_interfaces(tmp_path: Path) -> None:
    p = write(tmp_path, edit("    kind: bridge\n", "    kind: bridge\n    interfaces: {}\n"))
    assert_error(p, 6, "nodes.wlan-a.interfaces", "a bridge is a plain L2 segment")


def test_many_errors_collected(tmp_path: Path) -> None:
    text = edit("    kind: router", "    kind: router\n    nat: 1")
    text = text.replace("  - [ar-a:eth0, pdngw:core0]", "  - [ar-a:eth0, pdgw:core0]")
    lines = errors_of(write(tmp_path, text))
    assert len(lines) >= 2
    assert any(".nat: unknown key" in e for e in lines) and any("unknown node 'pdgw'" in e for e in lines)


def test_empty_file(tmp_path: Path) -> None:
    p = write(tmp_path, "")
    assert "empty topology" in errors_of(p)[0]


def test_no_io_beyond_reading(tmp_path: Path) -> None:
    p = write(tmp_path, BASE)
    before = sorted(tmp_path.iterdir())
    load_topology(p)
    assert sorted(tmp_path.iterdir()) == before


def test_pool_too_small_for_radios(tmp_path: Path) -> None:
    p = write(tmp_path, edit("pool: [192.0.2.10/24, 192.0.2.11/24]", "pool: [192.0.2.10/24]")
              + "  - [ue1:wlan1, wlan-a]\n")
    assert_error(p, 8, "nodes.wlan-a.access.ipv4.pool", "2 UE radios start on 'wlan-a' but the pool has only 1")


def test_pool_outside_gateway_subnet(tmp_path: Path) -> None:
    p = write(tmp_path, edit("pool: [192.0.2.10/24, 192.0.2.11/24]", "pool: [192.0.2.10/24, 198.51.100.11/24]"))
    assert_error(p, 8, "nodes.wlan-a.access.ipv4.pool[1]", "'198.51.100.11/24' is not in the pool's subnet 192.0.2.0/24")


def test_pool_contains_gateway(tmp_path: Path) -> None:
    p = write(tmp_path, edit("pool: [192.0.2.10/24, 192.0.2.11/24]", "pool: [192.0.2.10/24, 192.0.2.1/24]"))
    assert_error(p, 8, "nodes.wlan-a.access.ipv4.pool[1]", "pool address 192.0.2.1 is the gateway")


def test_ue_radio_on_access_network_has_no_static_address(tmp_path: Path) -> None:
    p = write(tmp_path, edit("  ue1: {kind: ue}", "  ue1: {kind: ue, interfaces: {wlan0: {ipv4: [192.0.2.50/24]}}}"))
    assert_error(p, 3, "nodes.ue1.interfaces.wlan0", "takes its addresses from it")


def test_two_bridges_cannot_be_linked(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.replace("  pdngw:\n", "  br2: {kind: bridge}\n  pdngw:\n") + "  - [wlan-a, br2]\n")
    assert_error(p, 26, "links[3]", "a link cannot join two bridges")


def test_link_mapping_form_and_single_address_string(tmp_path: Path) -> None:
    text = edit("  - [ar-a:eth0, pdngw:core0]", "  - endpoints: [ar-a:eth0, pdngw:core0]")
    text = text.replace("      core0: {ipv4: [198.51.100.1/24]}", "      core0: {ipv4: 198.51.100.1/24}")
    topo = load_topology(write(tmp_path, text))
    assert str(topo.nodes["pdngw"].interfaces["core0"].ipv4[0]) == "198.51.100.1/24"
    assert str(topo.links[2].b) == "pdngw:core0"


def test_nat44_needs_forwarding_node(tmp_path: Path) -> None:
    p = write(tmp_path, edit("    kind: pdngw\n", "    kind: cn\n    nat44: {outside: core0}\n"))
    assert_error(p, 19, "nodes.pdngw.nat44", "NAT44 needs a forwarding node (router or pdngw), not a cn")


def test_route_family_mismatch_and_default_without_via(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      - {to: default, via: 198.51.100.1}",
                             "      - {to: '2001:db8:1::/48', via: 198.51.100.1}\n      - {to: default, dev: eth0}"))
    assert_error(p, 16, "nodes.ar-a.routes[0].via", "is not of the same family as 2001:db8:1::/48")
    assert_error(p, 17, "nodes.ar-a.routes[1]", "a default route needs 'via'")


def test_mtu_range(tmp_path: Path) -> None:
    p = write(tmp_path, edit("      eth0: {ipv4: [198.51.100.2/24]}", "      eth0: {ipv4: [198.51.100.2/24], mtu: 40}"))
    assert_error(p, 12, "nodes.ar-a.interfaces.eth0.mtu", "mtu 40 out of range 68..65535")
