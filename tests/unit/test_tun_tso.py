"""TSO from a real TUN, with the kernel as the oracle (needs root: two namespaces s2ct-tso<hex>-a/-b).

A relay process owns two TUN devices: ``tsoa`` in namespace A with offloads on (TunDevice(tso=True)),
``tsob`` in namespace B without. A TCP client in A sends to a server in B; the relay segments what
A's stack hands it (s2c.dataplane.gso.segment) and writes the segments to B as plain packets, so B's
TCP stack verifies every IP/TCP checksum, sequence number and length. B's replies go back unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
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
