"""Port 4500 split in the kernel (s2c/dataplane/steer.py): IKE (non-ESP marker) to the daemon's socket,
ESP and NAT keepalives to the worker's, over loopback."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from s2c.dataplane.steer import _INSN, attach_reuseport_cbpf, ike_steering_program, open_ike_socket


def _drain(s: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(s.recv(2048))
        except BlockingIOError:
            return out


def _worker(fam: int, host: str) -> socket.socket:
    w = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        w.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    w.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    w.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    w.bind((host, 0))
    w.setblocking(False)
    return w


@pytest.mark.parametrize("fam,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_ike_to_the_daemon_esp_and_keepalives_to_the_worker(fam, host):
    w = _worker(fam, host)
    ike = open_ike_socket(w)
    assert ike is not None and ike.getsockname()[:2] == w.getsockname()[:2]
    c = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        dst = w.getsockname()[:2]
        for i in range(30):  # many source ports: without the program, reuseport would hash them apart
            c2 = socket.socket(fam, socket.SOCK_DGRAM)
            c2.sendto(b"\0\0\0\0" + b"IKE%02d" % i, dst)
            c2.sendto(struct.pack("!I", 0x1000 + i) + b"ESP%02d" % i, dst)
            c2.close()
        c.sendto(b"\xff", dst)  # NAT keepalive (RFC 3948 §2.3): too short for the load -> index 0
        time.sleep(0.1)
        to_worker, to_ike = _drain(w), _drain(ike)
        assert len(to_ike) == 30 and all(d.startswith(b"\0\0\0\0IKE") for d in to_ike)
        assert len(to_worker) == 31 and b"\xff" in to_worker
        assert all(d[:4] != b"\0\0\0\0" for d in to_worker)
    finally:
        for s in (w, ike, c):
            s.close()


def test_program_shape_and_bad_programs():
    prog = ike_steering_program()
    assert len(prog) == 4 * _INSN.size
    assert [_INSN.unpack_from(prog, i * 8)[0] for i in range(4)] == [0x20, 0x15, 0x06, 0x06]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError):
            attach_reuseport_cbpf(s, prog[:-1])
    finally:
        s.close()


def test_no_reuseport_no_steering():
    w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    w.bind(("127.0.0.1", 0))  # without SO_REUSEPORT there is no group to steer in
    try:
        assert open_ike_socket(w) is None
    finally:
        w.close()
