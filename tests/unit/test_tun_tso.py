"""TSO from a real TUN, with the kernel as the oracle (needs root: two namespaces s2ct-tso<hex>-a/-b).

A relay process owns two TUN devices: ``tsoa`` in namespace A with offloads on (TunDevice(tso=True)),
``tsob`` in namespace B without. A TCP client in A sends to a server in B; the relay segments what
A's stack hands it (s2c.dataplane.gso.segment) and writes the segments to B as plain packets, so B's
TCP stack verifies every IP/TCP checksum, sequence number and length. B's replies go back unchanged. A second test runs TCP through the ESP testbed with TSO on and has tshark
decrypt the capture with checksum validation.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and iproute2"),
]

RELAY = r"""
import ctypes, json, os, select, sys
from s2c.dataplane.tun import TunDevice
from s2c.dataplane.gso import segment
a = TunDevice("tsoa", mtu=1400, addresses=["10.99.0.1/24", "fd00:99::1/64"], tso=True)
libc = ctypes.CDLL(None, use_errno=True)
with open("/run/netns/" + sys.argv[1]) as f:
    assert libc.setns(f.fileno(), 0x40000000) == 0  # CLONE_NEWNET: the second TUN lives in namespace B
b = TunDevice("tsob", mtu=1400, addresses=["10.99.0.2/24", "fd00:99::2/64"], tso=False)
st = {"reads": 0, "gso": 0, "segments": 0, "csum_only": 0, "max_read": 0}
print("ready", flush=True)
while True:
    r, _, _ = select.select([a.fd, b.fd, sys.stdin], [], [])
    if sys.stdin in r:
        break
    if a.fd in r:
        pkt = os.read(a.fd, 70000)
        st["reads"] += 1
        st["max_read"] = max(st["max_read"], len(pkt) - 10)
        segs = segment(pkt[:10], pkt[10:])
        if len(segs) > 1:
            st["gso"] += 1
        elif pkt[0]:
            st["csum_only"] += 1
        st["segments"] += len(segs)
        for s in segs:
            os.write(b.fd, bytes(10) + s)  # plain packet: B's kernel checks every checksum
    if b.fd in r:
        os.write(a.fd, os.read(b.fd, 70000))
print(json.dumps(st), flush=True)
"""

SERVER = r"""
import hashlib, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.bind((sys.argv[1], 5299)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(20)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    h.update(d); n += len(d)
print(n, h.hexdigest(), flush=True)
"""

CLIENT = r"""
import random, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
data = random.Random(7).randbytes(int(sys.argv[2]))
c = socket.create_connection((sys.argv[1], 5299), timeout=20)
c.sendall(data); c.close()
"""


def nsx(ns: str, *argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def namespaces():
    base = "s2ct-tso" + uuid.uuid4().hex[:4]
    na, nb = base + "-a", base + "-b"
    try:
        for ns in (na, nb):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            nsx(ns, "ip", "link", "set", "lo", "up")
        yield na, nb
    finally:
        for ns in (na, nb):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.parametrize("server", ["10.99.0.2", "fd00:99::2"], ids=["ipv4", "ipv6"])
def test_kernel_accepts_our_segments(namespaces, server):
    na, nb = namespaces
    size = 3_000_000
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    relay = subprocess.Popen(["ip", "netns", "exec", na, sys.executable, "-c", RELAY, nb], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    srv = None
    try:
        assert relay.stdout.readline().strip() == "ready"
        srv = subprocess.Popen(["ip", "netns", "exec", nb, sys.executable, "-c", SERVER, server],
                               stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline().strip() == "listening"
        cl = nsx(na, sys.executable, "-c", CLIENT, server, str(size))
        assert cl.returncode == 0, cl.stderr
        out, _ = srv.communicate(timeout=30)
        relay.stdin.close()
        st = json.loads(relay.stdout.readline())
    finally:
        for p in (relay, srv):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    want = hashlib.sha256(random.Random(7).randbytes(size)).hexdigest()
    assert out.split() == [str(size), want]
    assert st["gso"] > 0 and st["max_read"] > 1400, st  # the kernel handed us super-packets
    assert st["segments"] > st["reads"], st
    if shutil.which("nstat"):
        rows = [ln.split() for ln in nsx(nb, "nstat", "-az", "TcpInCsumErrors").stdout.splitlines()]
        assert [r[1] for r in rows if r and r[0] == "TcpInCsumErrors"] == ["0"], rows


@pytest.mark.skipif(not shutil.which("tshark") or not shutil.which("tcpdump") or not shutil.which("iperf3"),
                    reason="needs tshark, tcpdump and iperf3")
@pytest.mark.parametrize("udp_encap", [False, True], ids=["raw-esp", "udp-encap"])
def test_tso_tunnel_capture_checksums_verify_in_tshark(monkeypatch, tmp_path, udp_encap):
    """TSO on in both planes (S2C_ESP_TSO=1): a TCP transfer through the ESP testbed; tshark decrypts the
    veth capture with checksum validation on: every inner IPv4/TCP checksum is good, nothing malformed."""
    from s2c.dataplane.testbed import EspLab
    from s2c.dataplane.testbed import nsx as lab_nsx
    from s2c.esp.wireshark import tshark_esp_options

    monkeypatch.setenv("S2C_ESP_TSO", "1")
    pcap = str(tmp_path / "tso.pcap")
    with EspLab("s2ct-tso" + uuid.uuid4().hex[:4], udp_encap=udp_encap, workers=1, transport=False) as lab:
        srv = subprocess.Popen(["ip", "netns", "exec", lab.ns_b, "iperf3", "-s", "-1", "-B", lab.inner["b"]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            cap = lab.start_capture("b", pcap)
            lab_nsx(lab.ns_a, "iperf3", "-c", lab.inner["b"], "-n", "2M", check=False, timeout=60)
            lab.stop_capture(cap, pcap)
        finally:
            try:
                srv.wait(timeout=5)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()
        st = lab.stats("a")["workers"]["both"]
        sas = lab.wireshark_sas()
    assert st.get("tun_tso_rx", 0) > 0 and st["tun_tso_segs"] > st["tun_tso_rx"], st
    assert st.get("tun_gso_errors", 0) == 0, st
    base = ["tshark", "-n", "-r", pcap, *tshark_esp_options(sas), "-o", "tcp.check_checksum:TRUE",
            "-o", "ip.check_checksum:TRUE", "-T", "fields", "-e", "frame.number"]

    def count(flt: str) -> int:
        return len(subprocess.run(base + ["-Y", flt], capture_output=True, text=True, check=True,
                                  timeout=120).stdout.split())

    n_tcp = count("esp and tcp")
    assert n_tcp > 500 and count("esp and tcp.len > 1000") > 300
    assert count("tcp.checksum.status == 1") == n_tcp  # 1 = good (0 bad, 2 unverified)
    assert count("ip.checksum.status == 0") == 0
    assert count("_ws.malformed or _ws.expert.severity >= error") == 0
