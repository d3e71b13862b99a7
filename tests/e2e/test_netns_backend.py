"""End-to-end tests of the network-namespace backend: real namespaces, real packets (root only).

Every lab uses a run id under this session's prefix (conftest.SESSION_PREFIX) and is torn down in
a fixture ``finally``. Connectivity is checked with ping run inside the nodes; NAT by the source
address tshark reads from the capture on the far side of the NAT router.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from s2c.lab import nsexec
from s2c.lab.backend import BACKENDS, Backend, LabError, get_backend
from s2c.lab.cleanup import cleanup
from s2c.lab.netns import NetnsBackend, _parse_rate, port_name
from s2c.lab.sample import small_topology
from s2c.model.topology import Endpoint, Node, NodeKind, Route, Topology

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TOPOLOGY = REPO / "scenarios" / "topologies" / "default.yaml"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def ping(lab: Backend, node: str, dst: str, count: int = 1, wait: float = 1.0, interval: float | None = None):
    argv = ["ping", "-n", "-c", str(count), "-W", str(wait)]
    if interval is not None:
        argv += ["-i", str(interval)]
    return lab.exec(node, argv + [dst], timeout=count * (interval or 1) + wait + 10)


def received(res: subprocess.CompletedProcess) -> int:
    m = re.search(r"(\d+) received", res.stdout)
    return int(m.group(1)) if m else 0


def our_namespaces(prefix: str) -> list[str]:
    return [n for n in nsexec.list_netns() if n.startswith(prefix)]


def tshark_fields(pcap: Path, display_filter: str, field: str) -> list[str]:
    res = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e", field],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return [line for line in res.stdout.splitlines() if line]


# --------------------------------------------------------------------------- pure helpers (no root)


def test_registry_names_netns_backend():
    assert BACKENDS["netns"] is NetnsBackend
    assert get_backend("netns") is NetnsBackend
    assert issubclass(NetnsBackend, Backend)
    with pytest.raises(LabError, match="unknown backend"):
        get_backend("nope")


def test_port_names_are_short_unique_and_deterministic():
    taken: set[str] = set()
    a = port_name(Endpoint("ue1", "wlan0"), taken)
    assert a == "ue1-wlan0"
    taken.add(a)
    long = Endpoint("a-very-long-node-name", "eth0")
    b = port_name(long, taken)
    assert len(b) <= 15 and b == port_name(long, set(taken))
    taken.add(b)
    c = port_name(Endpoint("ue1", "wlan0"), taken)  # clash -> hashed, still unique
    assert c not in taken and len(c) <= 15


def test_parse_rate():
    assert _parse_rate("1mbit") == 1_000_000
    assert _parse_rate("500kbit") == 500_000
    assert _parse_rate("2mbps") == 16_000_000
    for bad in ("fast", "1xb", "10bit"):
        with pytest.raises(LabError):
            _parse_rate(bad)


def test_bad_run_id_rejected():
    with pytest.raises(LabError):
        NetnsBackend("bad/id", Path("/tmp/x"), small_topology())


# --------------------------------------------------------------------------- build, addressing


@pytest.mark.netns
@needs_root
def test_build_namespaces_addresses_state(lab_factory, run_dir):
    lab = lab_factory()
    topo = lab.topology
    names = our_namespaces(lab.run_id + "-")
    assert sorted(names) == sorted(f"{lab.run_id}-{n}" for n in topo.nodes)
    assert lab.netns_path("ue1") == f"/run/netns/{lab.run_id}-ue1"

    ue = lab.addresses("ue1")
    assert ue["wlan0"]["ipv4"] == ["192.0.2.10/24"]  # first pool address, DHCP stand-in
    assert ue["wlan0"]["network"] == "wlan-a" and ue["wlan0"]["up"]
    assert lab.lease("ue1", "wlan0")["gateway4"] == "192.0.2.1"
    pdngw = lab.addresses("pdngw")
    assert pdngw["eth0"]["ipv4"] == ["198.51.100.1/24"]
    assert pdngw["eth0"]["ipv6"] == ["2001:db8:c::1/64"]  # global only, no link-local
    assert pdngw["eth0"]["network"] == "core"
    # bridge ports: short names, enslaved to br0
    core = lab.exec("core", ["ip", "-j", "link", "show", "master", "br0"])
    ports = sorted(link["ifname"] for link in json.loads(core.stdout))
    assert ports == ["ar-a-eth1", "ar-b-eth1", "pdngw-eth0"]
    # forwarding only where the model says; DAD off everywhere (addresses not tentative)
    fwd = lambda n: lab.exec(n, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()  # noqa: E731
    assert (fwd("ar-a"), fwd("pdngw"), fwd("cn"), fwd("ue1")) == ("1", "1", "0", "0")
    v6fwd = lab.exec("pdngw", ["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]).stdout.strip()
    assert v6fwd == "1"
    tentative = lab.exec("pdngw", ["ip", "-6", "addr", "show", "tentative"]).stdout
    assert tentative.strip() == ""
    lo = lab.exec("cn", ["ip", "-j", "link", "show", "lo"])
    assert "UP" in json.loads(lo.stdout)[0]["flags"]
    # the root namespace is untouched: no interface of ours there
    assert not [line for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
                if "ue1-wlan0" in line or "pdngw-eth0" in line]

    state = json.loads((run_dir / "state.json").read_text())
    assert state["run_id"] == lab.run_id and state["backend"] == "netns"
    assert sorted(state["created_namespaces"]) == sorted(names)
    assert any(t["table"].startswith("s2c") and t["node"] == "ar-a" for t in state["nft_tables"])
    assert len([p for p in state["pids"] if p["argv"][-1:] != []]) == len(topo.links)  # captures

    lab.teardown()
    assert our_namespaces(lab.run_id + "-") == []
    assert json.loads((run_dir / "state.json").read_text())["torn_down"] is True
    lab.teardown()  # idempotent


@pytest.mark.netns
@needs_root
def test_ping_through_nat44_seen_at_cn(lab_factory):
    lab = lab_factory()
    res = ping(lab, "ue1", "203.0.113.10", count=3, interval=0.2)
    assert received(res) == 3, res.stdout + res.stderr
    # IPv6 across the core: ar-b -> pdngw -> cn and back (static routes on both sides)
    assert received(ping(lab, "ar-b", "2001:db8:d::10")) == 1
    # the UE has no IPv6 on an IPv4-only access network
    assert ping(lab, "ue1", "2001:db8:d::10").returncode != 0

    pcaps = {p.name: p for p in lab.captures()}
    inside = pcaps["ue1.wlan0--wlan-a.pcap"]
    outside = pcaps["pdngw.eth1--cn.eth0.pcap"]
    lab.sync_captures()  # tcpdump has written what it saw (-U: per packet)
    assert set(tshark_fields(inside, "icmp.type == 8", "ip.src")) == {"192.0.2.10"}
    # beyond ar-a the UE's private source is gone: NAT44 rewrote it to ar-a's outside address
    srcs = set(tshark_fields(outside, "icmp.type == 8", "ip.src"))
    assert srcs == {"198.51.100.2"}, srcs
    # and the CN answered the NAT's address
    assert set(tshark_fields(outside, "icmp.type == 0", "ip.dst")) == {"198.51.100.2"}


@pytest.mark.netns
@needs_root
def test_link_down_breaks_and_up_restores(lab_factory):
    lab = lab_factory(capture=False)
    assert received(ping(lab, "ue1", "203.0.113.10")) == 1
    lab.set_link("ar-a", "eth1", False)
    assert lab.addresses("ar-a")["eth1"]["up"] is False
    assert received(ping(lab, "ue1", "203.0.113.10")) == 0
    lab.set_link("ar-a", "eth1", True)
    assert received(ping(lab, "ue1", "203.0.113.10")) == 1  # default route re-installed
    # the UE's own radio: down drops its default route, up brings it back
    lab.set_link("ue1", "wlan0", False)
    assert ping(lab, "ue1", "203.0.113.10").returncode != 0
    lab.set_link("ue1", "wlan0", True)
    assert received(ping(lab, "ue1", "203.0.113.10", wait=2)) == 1
    with pytest.raises(LabError):
        lab.set_link("ue1", "nope0", True)
    with pytest.raises(LabError):
        lab.set_link("nonode", "eth0", True)


@pytest.mark.netns
@needs_root
def test_move_changes_addresses_and_connectivity_follows(lab_factory):
    lab = lab_factory()
    assert received(ping(lab, "ue1", "203.0.113.10")) == 1
    new = lab.move("ue1", "wlan0", "wlan-b")
    assert new == {
        "network": "wlan-b",
        "ipv4": [],
        "ipv6": ["2001:db8:b::10/64"],
        "gateway4": None,
        "gateway6": "2001:db8:b::1",
    }
    ue = lab.addresses("ue1")["wlan0"]  # same interface name in the UE
    assert ue["ipv4"] == [] and ue["ipv6"] == ["2001:db8:b::10/64"] and ue["network"] == "wlan-b"
    assert received(ping(lab, "ue1", "2001:db8:d::10", wait=2)) == 1
    assert ping(lab, "ue1", "203.0.113.10").returncode != 0  # no IPv4 on wlan-b
    # the old access network lost its port, the new one gained it
    ports = lambda n: sorted(l["ifname"] for l in json.loads(lab.exec(n, ["ip", "-j", "link", "show", "master", "br0"]).stdout))  # noqa: E731,E741
    assert ports("wlan-a") == ["ar-a-eth0"]
    assert ports("wlan-b") == ["ar-b-eth0", "ue1-wlan0"]
    # and back: the released lease is handed out again, IPv4 works again
    back = lab.move("ue1", "wlan0", "wlan-a")
    assert back["ipv4"] == ["192.0.2.10/24"]
    assert received(ping(lab, "ue1", "203.0.113.10", wait=2)) == 1
    # a capture segment per attachment
    names = [p.name for p in lab.captures()]
    assert "ue1.wlan0--wlan-a.pcap" in names
    assert "ue1.wlan0--wlan-b.1.pcap" in names
    assert "ue1.wlan0--wlan-a.2.pcap" in names
    if shutil.which("tshark"):
        lab.sync_captures()
        pcap = lab.pcap_dir
        # each segment holds what the radio sent while attached there, and only that
        assert set(tshark_fields(pcap / "ue1.wlan0--wlan-b.1.pcap", "icmpv6.type == 128", "ipv6.src")) == {
            "2001:db8:b::10"
        }
        assert tshark_fields(pcap / "ue1.wlan0--wlan-b.1.pcap", "icmp", "ip.src") == []
        assert set(tshark_fields(pcap / "ue1.wlan0--wlan-a.2.pcap", "icmp.type == 8", "ip.src")) == {"192.0.2.10"}
        assert len(tshark_fields(pcap / "ue1.wlan0--wlan-a.pcap", "icmp.type == 8", "ip.src")) == 1
    with pytest.raises(LabError, match="not an access network"):
        lab.move("ue1", "wlan0", "core")
    with pytest.raises(LabError, match="not a UE"):
        lab.move("ar-a", "eth0", "wlan-b")


@pytest.mark.netns
@needs_root
def test_impair_loss_all_then_clear(lab_factory):
    lab = lab_factory(capture=False)
    assert received(ping(lab, "ue1", "203.0.113.10")) == 1
    lab.impair("ar-a", "eth1", loss=100)
    assert received(ping(lab, "ue1", "203.0.113.10", count=5, interval=0.05, wait=0.5)) == 0
    assert lab.impairments() == {"ar-a:eth1": {"loss": 100}}
    lab.impair("ar-a", "eth1", clear=True)
    assert lab.impairments() == {}
    assert received(ping(lab, "ue1", "203.0.113.10", count=3, interval=0.05)) == 3
    # partial loss: egress of one hop only, so about half of 60 echo requests are lost
    lab.impair("ar-a", "eth1", loss=50)
    got = received(ping(lab, "ue1", "203.0.113.10", count=60, interval=0.01, wait=0.5))
    assert 10 <= got <= 50, got
    lab.impair("ar-a", "eth1", clear=True)
    assert received(ping(lab, "ue1", "203.0.113.10", count=3, interval=0.05)) == 3
    with pytest.raises(LabError):
        lab.impair("ar-a", "eth1", loss=150)


def _iperf_mbps(lab: Backend, seconds: float = 2.0) -> float:
    server = lab.spawn("cn", ["iperf3", "-s", "-1", "-B", "203.0.113.10"], "iperf3-server")
    try:
        for _ in range(100):
            if lab.exec("cn", ["ss", "-ltn", "sport = :5201"]).stdout.count("LISTEN"):
                break
            time.sleep(0.02)
        res = lab.exec("pdngw", ["iperf3", "-c", "203.0.113.10", "-t", str(seconds), "-J"], timeout=seconds + 20)
        assert res.returncode == 0, res.stdout[-500:] + res.stderr
        data = json.loads(res.stdout)
        return data["end"]["sum_received"]["bits_per_second"] / 1e6
    finally:
        server.terminate(2)


@pytest.mark.netns
@needs_root
@pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3")
def test_impair_rate_limits_with_tbf(lab_factory):
    lab = lab_factory(capture=False)
    lab.impair("pdngw", "eth1", rate="4mbit")
    qdisc = lab.exec("pdngw", ["tc", "qdisc", "show", "dev", "eth1"]).stdout
    assert "tbf" in qdisc and "4Mbit" in qdisc
    limited = _iperf_mbps(lab)
    assert 2.0 <= limited <= 4.8, limited
    lab.impair("pdngw", "eth1", clear=True)
    assert "tbf" not in lab.exec("pdngw", ["tc", "qdisc", "show", "dev", "eth1"]).stdout
    free = _iperf_mbps(lab, 1.0)
    assert free > 4 * limited, (free, limited)


@pytest.mark.netns
@needs_root
def test_delay_needs_netem(lab_factory):
    lab = lab_factory(capture=False)
    caps = lab.capabilities()
    assert set(caps) >= {"netem", "tbf", "nft_egress", "xfrm", "esp"}
    if caps["netem"]:
        lab.impair("ar-a", "eth1", delay_ms=20)
        assert "netem" in lab.exec("ar-a", ["tc", "qdisc", "show", "dev", "eth1"]).stdout
    else:
        with pytest.raises(LabError) as info:
            lab.impair("ar-a", "eth1", delay_ms=20)
        assert str(info.value) == "delay needs the sch_netem qdisc, which this kernel lacks; use loss/rate"
    # nothing half-applied, the probe namespace is gone
    assert received(ping(lab, "ue1", "203.0.113.10")) == 1
    assert not [n for n in nsexec.list_netns() if "probe" in n and n.startswith(lab.run_id)]


@pytest.mark.netns
@needs_root
@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_pcaps_complete_and_readable(lab_factory):
    lab = lab_factory()
    res = ping(lab, "ue1", "203.0.113.10", count=2, interval=0.1)
    assert received(res) == 2, res.stdout
    res = ping(lab, "ar-b", "2001:db8:d::10", count=2, interval=0.1)
    assert received(res) == 2, res.stdout
    pcaps = lab.captures()
    assert len(pcaps) == len(lab.topology.links)
    lab.teardown()  # stops tcpdump cleanly: files complete
    for p in pcaps:
        assert p.exists() and p.stat().st_size >= 24, p
        res = subprocess.run(["tshark", "-n", "-r", str(p)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, (p, res.stderr)
    by_name = {p.name: p for p in pcaps}
    for name, flt, count in (
        ("ue1.wlan0--wlan-a.pcap", "icmp.type == 8", 2),
        ("ar-a.eth1--core.pcap", "icmp.type == 0", 2),
        ("pdngw.eth1--cn.eth0.pcap", "icmpv6.type == 129", 2),
        ("ar-b.eth1--core.pcap", "icmpv6.type == 128", 2),
    ):
        got = tshark_fields(by_name[name], flt, "frame.number")
        assert len(got) == count, (name, got, subprocess.run(["tshark", "-n", "-r", str(by_name[name])],
                                                             capture_output=True, text=True).stdout)


@pytest.mark.netns
@needs_root
def test_spawn_runs_in_namespace_and_teardown_kills_group(lab_factory, run_dir):
    lab = lab_factory(capture=False)
    proc = lab.spawn("cn", ["sh", "-c", "echo hello from $S2C_NODE $X; sleep 300 & sleep 301; wait"], "cn-test", env={"X": "42"})
    assert proc.alive() and proc.pid > 0
    time.sleep(0.3)
    assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat(lab.netns_path("cn")).st_ino
    in_ns = nsexec.pids_in_netns([lab.netns_path("cn")])[lab.netns_path("cn")]
    assert proc.pid in in_ns and len(in_ns) >= 3  # sh and both sleeps
    assert (run_dir / "logs" / "cn-test.log").read_text().startswith("hello from cn 42")
    state = json.loads((run_dir / "state.json").read_text())
    assert proc.pid in [p["pid"] for p in state["pids"]]
    # a terminated NodeProcess reports its status
    short = lab.spawn("cn", ["sleep", "300"], "short")
    assert short.terminate(2) == -signal.SIGTERM and not short.alive()
    lab.teardown()
    assert not proc.alive()
    for pid in in_ns:
        assert not nsexec._exists(pid), pid
    assert our_namespaces(lab.run_id + "-") == []
    with pytest.raises(LabError):
        lab.spawn("cn", ["true"], "late")


@pytest.mark.netns
@needs_root
def test_exec_captures_output_and_times_out(lab_factory):
    lab = lab_factory(capture=False)
    res = lab.exec("ue1", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")
    with pytest.raises(LabError, match="timed out"):
        lab.exec("ue1", ["sleep", "5"], timeout=0.3)
    with pytest.raises(LabError, match="no node"):
        lab.exec("nope", ["true"])


# --------------------------------------------------------------------------- failure paths, cleanup


def _broken_topology() -> Topology:
    topo = small_topology()
    nodes = dict(topo.nodes)
    cn = nodes["cn"]
    nodes["cn"] = Node(cn.name, cn.kind, cn.interfaces, routes=(Route("192.0.2.0/24", via="10.99.0.1"),))
    return Topology(topo.name, nodes, topo.links)


@pytest.mark.netns
@needs_root
def test_failed_build_removes_everything(lab_factory):
    lab = lab_factory(_broken_topology(), build=False)
    with pytest.raises(LabError) as info:
        lab.build()
    assert "cn" in str(info.value) and "\n" not in str(info.value)
    assert our_namespaces(lab.run_id + "-") == []
    lab.teardown()  # still fine


@pytest.mark.netns
@needs_root
def test_interrupt_during_build_removes_everything(lab_factory, monkeypatch):
    lab = lab_factory(build=False)

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(lab, "_setup_nat44", boom)
    with pytest.raises(KeyboardInterrupt):
        lab.build()
    assert our_namespaces(lab.run_id + "-") == []
    assert not [p for p in _tcpdumps() if str(lab.run_dir) in " ".join(p[1])]


@pytest.mark.netns
@needs_root
def test_stale_namespace_refused(lab_factory):
    lab = lab_factory(capture=False)
    twin = NetnsBackend(lab.run_id, lab.run_dir, lab.topology, capture=False)
    with pytest.raises(LabError, match="already exists"):
        twin.build()
    assert len(our_namespaces(lab.run_id + "-")) == len(lab.topology.nodes)  # the live lab untouched


@pytest.mark.netns
@needs_root
def test_cleanup_after_a_crash(lab_factory):
    lab = lab_factory()
    proc = lab.spawn("pdngw", ["sleep", "300"], "sleeper")
    prefix = lab.run_id
    report = cleanup(prefix)  # as `s2c clean` would after a crashed runner
    assert sorted(report["namespaces"]) == sorted(f"{prefix}-{n}" for n in lab.topology.nodes)
    assert proc.pid in report["pids"]
    assert len(report["pids"]) >= 1 + len(lab.topology.links)  # sleeper + tcpdumps
    assert our_namespaces(prefix) == []
    time.sleep(0.1)
    assert not proc.alive()
    assert cleanup(prefix)["namespaces"] == []
    lab.teardown()  # the lab object copes with its namespaces already gone


def _tcpdumps() -> list[tuple[int, list[str]]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            argv = [a.decode(errors="replace") for a in argv if a]
            if argv and argv[0].endswith("tcpdump"):
                out.append((int(entry), argv))
    return out


@pytest.mark.netns
@pytest.mark.slow
@needs_root
def test_twenty_cycles_leak_nothing(tmp_path, new_run_id):
    from s2c.model import load_topology

    topo = load_topology(DEFAULT_TOPOLOGY) if DEFAULT_TOPOLOGY.exists() else small_topology()
    prefix = new_run_id("cyc")
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = _thread_count()
    for i in range(20):
        lab = NetnsBackend(f"{prefix}{i}", tmp_path / f"r{i}", topo, capture=True)
        try:
            lab.build()
            assert len(our_namespaces(f"{prefix}{i}-")) == len(topo.nodes)
            lab.spawn(next(iter(topo.nodes)), ["sleep", "300"], "sleeper")
        finally:
            lab.teardown()
        assert our_namespaces(f"{prefix}{i}-") == [], i
    assert our_namespaces(prefix) == []
    assert not [p for p in _tcpdumps() if str(tmp_path) in " ".join(p[1])]
    assert not [pid for pid, argv in _procs_with(str(tmp_path))]
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2  # no netlink socket / ns fd leaks
    time.sleep(0.2)
    assert _thread_count() <= threads_before + 1


def _procs_with(text: str) -> list[tuple[int, list[str]]]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in raw:
                out.append((int(entry), raw.split(b"\0")))
    return out


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


# --------------------------------------------------------------------------- the default topology


@pytest.mark.netns
@needs_root
@pytest.mark.skipif(not DEFAULT_TOPOLOGY.exists(), reason="no scenarios/topologies/default.yaml")
def test_default_topology_end_to_end(lab_factory):
    from s2c.model import load_topology

    topo = load_topology(DEFAULT_TOPOLOGY)
    lab = lab_factory(topo)
    ue = lab.addresses("ue1")
    assert {i: (a["network"], bool(a["ipv4"]), bool(a["ipv6"])) for i, a in ue.items()} == {
        "wlan0": ("wlan-a", True, False),
        "wlan1": ("wlan-b", False, True),
    }
    cn = next(n for n in topo.nodes.values() if n.kind is NodeKind.CN)
    cn_if = next(iter(cn.interfaces.values()))
    assert received(ping(lab, "ue1", str(cn_if.ipv4[0].ip), wait=2)) == 1  # via NAT44 on wlan-a
    assert received(ping(lab, "ue1", str(cn_if.ipv6[0].ip), wait=2)) == 1  # via wlan-b
    hss = next(n for n in topo.nodes.values() if n.kind is NodeKind.HSS)
    pdngw = next(n for n in topo.nodes.values() if n.kind is NodeKind.PDNGW)
    assert received(ping(lab, pdngw.name, str(next(iter(hss.interfaces.values())).ipv4[0].ip))) == 1
    homes = [n for n, node in topo.nodes.items() if node.is_access_network and node.access.type.value == "3gpp"]
    if homes:
        lease = lab.move("ue1", "wlan1", homes[0])
        assert lease["network"] == homes[0] and lease["ipv6"]
        assert received(ping(lab, "ue1", str(cn_if.ipv6[0].ip), wait=2)) == 1


# --------------------------------------------------------------------------- plumbing details


@pytest.mark.netns
@needs_root
def test_backend_verbs_work_inside_a_running_event_loop(lab_factory):
    """The runner may drive the backend from asyncio: pyroute2's sync API must not see that loop."""
    import asyncio

    lab = lab_factory(capture=False)

    async def drive():
        assert lab.addresses("ue1")["wlan0"]["ipv4"] == ["192.0.2.10/24"]
        lab.set_link("ar-a", "eth1", False)
        lab.set_link("ar-a", "eth1", True)
        lease = lab.move("ue1", "wlan0", "wlan-b")
        return lease, await asyncio.to_thread(lab.addresses, "ue1")

    lease, addrs = asyncio.run(drive())
    assert lease["ipv6"] == addrs["wlan0"]["ipv6"] == ["2001:db8:b::10/64"]


@pytest.mark.netns
@needs_root
def test_create_namespaces_failure_removes_only_its_own(new_run_id):
    prefix = new_run_id("mk")
    mine = nsexec.create_namespaces([nsexec.NsSpec(f"{prefix}-b")])
    for fd in mine.values():
        os.close(fd)
    try:
        with pytest.raises(OSError):
            nsexec.create_namespaces(
                [nsexec.NsSpec(f"{prefix}-a"), nsexec.NsSpec(f"{prefix}-b"), nsexec.NsSpec(f"{prefix}-c")]
            )
        # -a was made by the failed call and removed; -b pre-existed and is kept; -c never made
        assert our_namespaces(prefix) == [f"{prefix}-b"]
    finally:
        cleanup(prefix)
    assert our_namespaces(prefix) == []


@pytest.mark.netns
@needs_root
def test_namespace_sysctls_and_lo(new_run_id):
    prefix = new_run_id("sc")
    fds = nsexec.create_namespaces([nsexec.NsSpec(f"{prefix}-x", [("ipv4/ip_forward", "1")])])
    for fd in fds.values():
        os.close(fd)
    try:
        path = nsexec.netns_path(f"{prefix}-x")
        assert nsexec.run_in_netns(path, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
        assert "UP" in nsexec.run_in_netns(path, ["ip", "-o", "link", "show", "lo"]).stdout
        # the root namespace kept its own value (the sysctl was per namespace)
        assert nsexec.run_in_netns(path, ["ping", "-c1", "-W1", "127.0.0.1"]).returncode == 0
    finally:
        cleanup(prefix)


@pytest.mark.netns
@needs_root
def test_cleanup_removes_root_veths_with_prefix(e2e_prefix):
    from pyroute2 import IPRoute

    name = (e2e_prefix + "v")[:15]
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=name[:-1] + "w")
    try:
        report = cleanup(e2e_prefix)
        assert name in report["veths"]
        with IPRoute() as ipr:
            assert not ipr.link_lookup(ifname=name) and not ipr.link_lookup(ifname=name[:-1] + "w")
    finally:
        with IPRoute() as ipr:
            for n in (name, name[:-1] + "w"):
                for idx in ipr.link_lookup(ifname=n):
                    ipr.link("del", index=idx)


_LAB_SCRIPT = r"""
import sys, time
from pathlib import Path
from s2c.lab.netns import NetnsBackend
from s2c.lab.sample import small_topology
lab = NetnsBackend(sys.argv[1], Path(sys.argv[2]), small_topology(), capture=True)
try:
    lab.build()
    sleeper = lab.spawn("cn", ["sleep", "300"], "sleeper")
    print("ready", sleeper.pid, flush=True)
    time.sleep(300)
finally:
    lab.teardown()
"""


def _start_lab_process(run_id: str, run_dir: Path) -> tuple[subprocess.Popen, int]:
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _LAB_SCRIPT, run_id, str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline().split()
    assert line[:1] == ["ready"], proc.stderr.read() if proc.poll() is not None else line
    return proc, int(line[1])


@pytest.mark.netns
@needs_root
def test_ctrl_c_in_a_lab_process_tears_down(tmp_path, new_run_id):
    run_id = new_run_id("int")
    proc, sleeper = _start_lab_process(run_id, tmp_path / "run")
    try:
        assert len(our_namespaces(run_id + "-")) == len(small_topology().nodes)
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        assert our_namespaces(run_id + "-") == []
        assert not nsexec._exists(sleeper)
        assert not _procs_with(str(tmp_path))  # tcpdumps and the sleeper are gone
        state = json.loads((tmp_path / "run" / "state.json").read_text())
        assert state["torn_down"] is True and state["created_namespaces"] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        cleanup(run_id)


@pytest.mark.netns
@needs_root
def test_sigkilled_lab_process_is_cleaned_by_prefix(tmp_path, new_run_id):
    run_id = new_run_id("kil")
    proc, sleeper = _start_lab_process(run_id, tmp_path / "run")
    try:
        proc.kill()  # no teardown at all: namespaces, tcpdumps and the sleeper stay behind
        proc.wait(10)
        assert len(our_namespaces(run_id + "-")) == len(small_topology().nodes)
        assert _procs_with(str(tmp_path))
        report = cleanup(run_id, run_dirs=[tmp_path / "run"])
        assert len(report["namespaces"]) == len(small_topology().nodes)
        assert sleeper in report["pids"]
        time.sleep(0.2)
        assert not nsexec._exists(sleeper)
        assert our_namespaces(run_id + "-") == []
        assert not _procs_with(str(tmp_path)), _procs_with(str(tmp_path))
    finally:
        cleanup(run_id)
