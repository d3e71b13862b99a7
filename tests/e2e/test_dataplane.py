"""Two namespaces joined by a veth, a userspace ESP tunnel between them (needs root).

Checks: ping (IPv4/IPv6 inner) and a UDP flow through the tunnel, plain ESP and UDP-encapsulated
(RFC 3948), both cipher suites; the veth carries only ESP / UDP 4500; tshark decrypts the capture
with the exported keys; IKE datagrams on port 4500 reach the IKE handler; transport-mode MH payloads
reach the MH handler; NAT rebinding of the peer's port is learned.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from s2c.dataplane.testbed import EspLab, nsx
from s2c.esp.wireshark import tshark_fields

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not shutil.which("tcpdump") or not shutil.which("tshark"), reason="needs tcpdump and tshark"),
]

UDP_RECV = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.77.0.2", 9000)); s.settimeout(5)
print("bound", flush=True)
got = set()
try:
    while len(got) < int(sys.argv[1]):
        d = s.recv(2000)
        if d[4:] == bytes([int(d[:4]) % 251]) * (int(d[:4]) % 1300 + 20):
            got.add(int(d[:4]))
except socket.timeout:
    pass
print(len(got))
"""
UDP_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(b"%04d" % i + bytes([i % 251]) * (i % 1300 + 20), ("10.77.0.2", 9000)); time.sleep(0.002)
"""


def prefix() -> str:
    return "s2ct-es" + uuid.uuid4().hex[:4]


def udp_flow(lab: EspLab, n: int = 200) -> int:
    rx = subprocess.Popen(["ip", "netns", "exec", lab.ns_b, sys.executable, "-c", UDP_RECV, str(n)],
                          stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "bound"
        nsx(lab.ns_a, sys.executable, "-c", UDP_SEND, str(n))
        out, _ = rx.communicate(timeout=15)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return int(out.strip())


@pytest.mark.parametrize("udp_encap", [True, False], ids=["udp-encap", "raw-esp"])
@pytest.mark.parametrize("suite", ["gcm128", "cbc256"])
def test_tunnel_ping_udp_capture_and_tshark(tmp_path, udp_encap, suite):
    pcap = str(tmp_path / "veth.pcap")
    with EspLab(prefix(), suite=suite, udp_encap=udp_encap) as lab:
        cap = lab.start_capture("b", pcap)
        r = nsx(lab.ns_a, "ping", "-c", "5", "-i", "0.05", "-W", "2", "10.77.0.2", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        r6 = nsx(lab.ns_a, "ping", "-6", "-c", "3", "-i", "0.05", "-W", "2", "fd77::2", check=False)
        assert r6.returncode == 0, r6.stdout + r6.stderr
        assert udp_flow(lab, 200) == 200
        lab.stop_capture(cap, pcap)
        report = lab.capture_report
        sa = lab.stats("b")["sas"]
        st_a, st_b = lab.stats("a"), lab.stats("b")
        inbound_b = st_b["sas"][str(lab.spi_ab)]
        assert inbound_b["packets_in"] >= 5 + 3 + 200
        assert inbound_b["auth_failures"] == 0 and inbound_b["replay_drops"] == 0
        assert st_a["sas"][str(lab.spi_ab)]["packets_out"] == inbound_b["packets_in"]
        sas = lab.wireshark_sas()
    del sa
    # the wire carries only ESP (or UDP 4500), apart from ARP / IPv6 neighbour discovery
    leaks = tshark_fields(pcap, [], ["frame.number", "frame.protocols"],
                          "(ip or ipv6) and not esp and not udp.port == 4500 and not icmpv6")
    assert leaks == []
    n_esp = len(tshark_fields(pcap, [], ["frame.number"], "esp"))
    assert n_esp >= 2 * 5 + 2 * 3 + 200, report
    if udp_encap:
        assert len(tshark_fields(pcap, [], ["frame.number"], "esp and udp.port == 4500")) == n_esp
    else:
        assert tshark_fields(pcap, [], ["frame.number"], "udp") == []
    # tshark decrypts with the exported keys: inner ICMP echo request/reply and the UDP flow are visible
    icmp = tshark_fields(pcap, sas, ["icmp.type"], "esp and icmp")
    assert sorted({row[0] for row in icmp}) == ["0", "8"] and len(icmp) == 10
    icmp6 = tshark_fields(pcap, sas, ["icmpv6.type"], "esp and icmpv6")
    assert {row[0] for row in icmp6} == {"128", "129"}
    udp = tshark_fields(pcap, sas, ["udp.dstport"], "esp and udp.dstport == 9000")
    assert len(udp) == 200
    assert tshark_fields(pcap, sas, ["frame.number"], "_ws.malformed or _ws.expert.severity >= error") == []
    # and without keys nothing inner is visible
    assert tshark_fields(pcap, [], ["frame.number"], "esp and icmp") == []


def test_ike_split_and_transport_mh():
    """Non-ESP-marker datagrams on 4500 go to the IKE handler; send_ike adds the marker; MH rides transport ESP."""
    with EspLab(prefix(), udp_encap=True) as lab:
        # a peer's IKE message (marker + payload) sent to B's port 4500 from A's namespace
        nsx(lab.ns_a, sys.executable, "-c",
            "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.sendto(bytes(4)+b'IKEv2-hello', ('192.0.2.2', 4500)); s.sendto(b'\\xff', ('192.0.2.2', 4500))")
        # B answers through its data plane (send_ike): A's data plane delivers it to A's IKE handler
        assert lab.ask("b", "ike " + b"IKEv2-answer".hex() + " 192.0.2.1 4500") is True
        # transport-mode MH from A (fd77::1) to B (fd77::2)
        mh = bytes.fromhex("3b010500000000001234")
        assert lab.ask("a", f"mh {mh.hex()} fd77::1 fd77::2") is True
        assert lab.ask("a", f"mh {mh.hex()} fd77::1 2001:db8:99::1") is False  # no policy
        assert lab.ask("a", f"mh {mh.hex()} fd77::1 fd77::99") is False  # only a tunnel-mode policy
        time.sleep(0.3)
        ev_b = lab.ask("b", "events")
        ev_a = lab.ask("a", "events")
        st_b = lab.stats("b")
    assert ["ike", b"IKEv2-hello".hex()] in [e[:2] for e in ev_b]
    assert ["ike", b"IKEv2-answer".hex(), ["192.0.2.2", 4500]] in ev_a
    assert ["transport", 135, mh.hex(), "192.0.2.1", lab.spi_mh_ab] in ev_b
    assert st_b["workers"]["rx"]["nat_keepalive_rx"] == 1
    assert st_b["sas"][str(lab.spi_mh_ab)]["packets_in"] == 1


def test_nat_rebinding_is_learned():
    """A SNATs its ESP-in-UDP source port to 14500: B's inbound SA learns it and moves its outbound SA."""
    with EspLab(prefix(), udp_encap=True) as lab:
        # like a real NAT: outbound 4500 becomes 14500, unsolicited inbound to the old port is dropped
        # (otherwise B's first reply to the stale port would create a clashing conntrack entry)
        rules = "table ip s2ctes {\n chain post {\n  type nat hook postrouting priority 100;\n"
        rules += f'  oifname "{lab.veth["a"]}" udp sport 4500 snat to 192.0.2.1:14500\n }}\n'
        rules += " chain in {\n  type filter hook input priority 0;\n  udp dport 4500 ct state new drop\n }\n}\n"
        nsx(lab.ns_a, "nft", "-f", "-", input=rules)
        r = nsx(lab.ns_a, "ping", "-c", "3", "-i", "0.05", "-W", "2", "10.77.0.2", check=False)
        assert r.returncode == 0, r.stdout
        time.sleep(0.2)
        st_b = lab.stats("b")
    assert st_b["sas"][str(lab.spi_ab)]["remote_port"] == 14500
    assert st_b["sas"][str(lab.spi_ba)]["remote_port"] == 14500
    assert st_b["workers"]["rx"]["peer_learned"] == 1


@pytest.mark.parametrize("workers,backend", [(1, "process"), (1, "thread"), (2, "thread")])
def test_other_worker_layouts(workers, backend):
    with EspLab(prefix(), workers=workers, backend=backend, suite="gcm256") as lab:
        r = nsx(lab.ns_a, "ping", "-c", "3", "-i", "0.05", "-W", "2", "10.77.0.2", check=False)
        assert r.returncode == 0, r.stdout
        assert udp_flow(lab, 50) == 50


def test_namespaces_cleaned_up():
    p = prefix()
    with EspLab(p):
        pass
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert p not in out


@pytest.mark.parametrize("udp_encap", [True, False], ids=["udp-encap", "raw-esp"])
def test_ipv6_outer(tmp_path, udp_encap):
    """Outer IPv6 (2001:db8:77::1 <-> ::2), inner IPv4 and IPv6; tshark decrypts with the exported keys."""
    pcap = str(tmp_path / "veth6.pcap")
    with EspLab(prefix(), udp_encap=udp_encap, outer6=True, suite="cbc128") as lab:
        cap = lab.start_capture("b", pcap)
        r = nsx(lab.ns_a, "ping", "-c", "3", "-i", "0.05", "-W", "2", "10.77.0.2", check=False)
        assert r.returncode == 0, r.stdout
        r6 = nsx(lab.ns_a, "ping", "-6", "-c", "3", "-i", "0.05", "-W", "2", "fd77::2", check=False)
        assert r6.returncode == 0, r6.stdout
        lab.stop_capture(cap, pcap)
        sas = lab.wireshark_sas()
    assert len(tshark_fields(pcap, [], ["frame.number"], "ipv6 and esp")) >= 12
    assert tshark_fields(pcap, [], ["frame.number"], "ip and esp") == []
    assert len(tshark_fields(pcap, sas, ["icmp.type"], "esp and icmp")) == 6
    assert len(tshark_fields(pcap, sas, ["icmpv6.type"], "esp and icmpv6")) == 6


def test_jumbo_tun_mtu_fragments_outer_esp(tmp_path):
    """mtu=9000: inner 8000-byte pings cross as IP-fragmented ESP-in-UDP that tshark reassembles and decrypts."""
    pcap = str(tmp_path / "jumbo.pcap")
    with EspLab(prefix(), mtu=9000, transport=False) as lab:
        cap = lab.start_capture("b", pcap)
        r = nsx(lab.ns_a, "ping", "-c", "3", "-i", "0.05", "-W", "2", "-s", "8000", "-M", "do", "10.77.0.2",
                check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        lab.stop_capture(cap, pcap)
        sas = lab.wireshark_sas()
    assert len(tshark_fields(pcap, [], ["frame.number"], "ip.flags.mf == 1")) >= 6 * 5
    rows = tshark_fields(pcap, sas, ["icmp.type", "data.len"], "esp and icmp")
    assert sorted(r[0] for r in rows) == ["0", "0", "0", "8", "8", "8"]
    assert {r[1] for r in rows} == {"7992"}  # 8000 bytes of ICMP data minus the 8-byte timestamp



GSO_RECV = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("10.77.0.2", 9000)); s.settimeout(3)
print("bound", flush=True)
got = set()
try:
    while len(got) < int(sys.argv[1]):
        d = s.recv(2000)
        if len(d) == 1200 and d[4:] == bytes([int(d[:4]) % 251]) * 1196:
            got.add(int(d[:4]))
except socket.timeout:
    pass
print(len(got))
"""
GSO_FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(b"%04d" % i + bytes([i % 251]) * 1196, ("10.77.0.2", 9000))
"""


def test_udp_gso_runs_arrive_whole(monkeypatch, tmp_path):
    """S2C_ESP_GSO=1: bursts of equal-sized ESP-in-UDP datagrams leave as UDP GSO sends, and every inner
    datagram still arrives intact (the receiver splits the GRO buffer by segment size)."""
    monkeypatch.setenv("S2C_ESP_GSO", "1")
    n = 400
    with EspLab(prefix(), udp_encap=True, transport=False) as lab:
        rx = subprocess.Popen(["ip", "netns", "exec", lab.ns_b, sys.executable, "-c", GSO_RECV, str(n)],
                              stdout=subprocess.PIPE, text=True)
        try:
            assert rx.stdout.readline().strip() == "bound"
            nsx(lab.ns_a, sys.executable, "-c", GSO_FLOOD, str(n))
            out, _ = rx.communicate(timeout=15)
        finally:
            if rx.poll() is None:
                rx.kill()
                rx.wait()
        stats = json.dumps(lab.stats("a"))
    assert int(out.strip()) >= n * 0.95, out  # a local veth: essentially nothing lost
    assert '"gso_sends"' in stats, stats
