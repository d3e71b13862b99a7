"""The forwarding loop without root: a socketpair stands in for the TUN device, UDP on loopback."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import threading
import time

import pytest

from s2c.dataplane.engine import Engine
from s2c.dataplane.gso import GsoType, VnetFlags, VnetHdr, ones_sum, segment
from s2c.esp.sa import EspSa

KEY_AB = bytes(range(20))
KEY_BA = bytes(range(20, 40))


def ipv4(src: str, dst: str, proto: int = 17, payload: bytes = b"\x00\x01\x00\x02" + b"data") -> bytes:
    total = 20 + len(payload)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0, socket.inet_aton(src),
                       socket.inet_aton(dst)) + payload


class Harness:
    def __init__(self, role: str = "both", busy_poll_us: int = 0, vnet: bool | None = None):
        self.tun_app, tun_eng = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ctrl, ctrl_eng = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.up, up_eng = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind(("127.0.0.1", 0))
        self.peer.settimeout(2)
        self.tun_app.settimeout(2)
        self.up.settimeout(2)
        self.ctrl.settimeout(5)
        self._keep = (tun_eng, ctrl_eng, up_eng)
        self.engine = Engine(role, ctrl=ctrl_eng, upcall=up_eng, tun_fd=tun_eng.fileno(), udp4=self.udp,
                             busy_poll_us=busy_poll_us, vnet=vnet)
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()

    def call(self, cmd, *args):
        self.ctrl.send(pickle.dumps((cmd, args)))
        status, value = pickle.loads(self.ctrl.recv(1 << 20))
        assert status == "ok", value
        return value

    def upcall(self):
        return pickle.loads(self.up.recv(1 << 20))

    def close(self):
        self.call("stop")
        self.thread.join(timeout=5)
        for s in (self.tun_app, self.ctrl, self.up, self.udp, self.peer, *self._keep):
            s.close()


@pytest.fixture
def h():
    harness = Harness()
    yield with_sas(harness)
    harness.close()


@pytest.fixture
def hv():
    """The engine reading a TUN opened with IFF_VNET_HDR (every read/write has a virtio_net_hdr)."""
    harness = Harness(vnet=True)
    yield with_sas(harness)
    harness.close()


def with_sas(harness: Harness) -> Harness:
    peer_port = harness.peer.getsockname()[1]
    # our inbound SA (peer -> us) with selectors, our outbound SA (us -> peer)
    sa_in = EspSa(spi=0xAB00, direction="in", mode="tunnel", encr=20, encr_key=KEY_AB, remote="127.0.0.1",
                  udp_encap=True, remote_port=peer_port, replay_window=64)
    sa_out = EspSa(spi=0xBA00, direction="out", mode="tunnel", encr=20, encr_key=KEY_BA, remote="127.0.0.1",
                   udp_encap=True, remote_port=peer_port)
    harness.call("add_sa", sa_in.to_config(), None, [{"src": "10.9.0.0/24", "dst": "10.8.0.0/24"}])
    harness.call("add_sa", sa_out.to_config())
    harness.call("add_policy", {"src": "10.8.0.0/24", "dst": "10.9.0.0/24", "proto": 0, "sport": (0, 65535),
                                "dport": (0, 65535)}, 0xBA00, "protect", 0)
    harness.peer_out = EspSa(spi=0xAB00, direction="out", mode="tunnel", encr=20, encr_key=KEY_AB)
    harness.peer_in = EspSa(spi=0xBA00, direction="in", mode="tunnel", encr=20, encr_key=KEY_BA)
    return harness


def stats(h):
    return h.call("stats")["engine"]


def test_inbound_to_tun_and_selector_check(h):
    good = ipv4("10.9.0.5", "10.8.0.1")
    h.peer.sendto(h.peer_out.encapsulate(good), ("127.0.0.1", h.port))
    assert h.tun_app.recv(4096) == good
    bad = ipv4("192.0.2.66", "10.8.0.1")  # authenticated, but outside the SA's selectors
    h.peer.sendto(h.peer_out.encapsulate(bad), ("127.0.0.1", h.port))
    h.peer.sendto(h.peer_out.encapsulate(good), ("127.0.0.1", h.port))
    assert h.tun_app.recv(4096) == good
    st = stats(h)
    assert st["inbound_policy_drops"] == 1 and st["tun_tx"] == 2


def test_outbound_from_tun(h):
    pkt = ipv4("10.8.0.1", "10.9.0.7")
    h.tun_app.send(pkt)
    esp, addr = h.peer.recvfrom(4096)
    assert addr == ("127.0.0.1", h.port)  # sent from the engine's port-4500 socket
    assert h.peer_in.decapsulate(esp) == (4, pkt)
    h.tun_app.send(ipv4("10.8.0.1", "203.0.113.1"))  # no policy
    h.tun_app.send(pkt)
    assert h.peer_in.decapsulate(h.peer.recvfrom(4096)[0]) == (4, pkt)
    st = stats(h)
    assert st["no_policy"] == 1 and st["esp_tx"] == 2 and st["tun_rx"] == 3


def test_port_4500_demux_and_error_counters(h):
    to = ("127.0.0.1", h.port)
    h.peer.sendto(b"\x00\x00\x00\x00IKE_SA_INIT...", to)
    assert h.upcall() == ("ike", b"IKE_SA_INIT...", ("127.0.0.1", h.peer.getsockname()[1]))
    h.peer.sendto(b"\xff", to)  # NAT-keepalive
    h.peer.sendto(struct.pack("!II", 0x9999, 1) + bytes(40), to)  # unknown SPI
    pkt = h.peer_out.encapsulate(ipv4("10.9.0.5", "10.8.0.1"))
    h.peer.sendto(pkt, to)
    h.peer.sendto(pkt, to)  # replay
    forged = bytearray(h.peer_out.encapsulate(ipv4("10.9.0.5", "10.8.0.1")))
    forged[-1] ^= 1
    h.peer.sendto(bytes(forged), to)
    h.peer.sendto(b"\x01\x02\x03", to)  # too short to be anything
    time.sleep(0.3)
    st = stats(h)
    assert st["nat_keepalive_rx"] == 1 and st["ike_rx"] == 1
    assert st["unknown_spi"] == 1
    assert st["esp_ReplayedPacket"] == 1
    assert st["esp_IntegrityFailure"] == 1
    assert st["malformed"] == 1
    sas = h.call("stats")["sas"]
    assert sas[0xAB00]["replay_drops"] == 1 and sas[0xAB00]["auth_failures"] == 1


def test_peer_port_learning_and_update_peer(h):
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    try:
        other.sendto(h.peer_out.encapsulate(ipv4("10.9.0.5", "10.8.0.1")), ("127.0.0.1", h.port))
        kind, spi, old, new = h.upcall()
        assert (kind, spi, new) == ("peer", 0xAB00, ("127.0.0.1", other.getsockname()[1]))
        assert old == ("127.0.0.1", h.peer.getsockname()[1])
        # the parent moves the outbound SA (DataPlane._on_peer_learned does this)
        assert h.call("update_peer", 0xBA00, "127.0.0.1", other.getsockname()[1]) is True
        h.tun_app.send(ipv4("10.8.0.1", "10.9.0.7"))
        other.settimeout(2)
        assert h.peer_in.decapsulate(other.recv(4096))[0] == 4
    finally:
        other.close()


def test_transport_payload_goes_up_and_send_transport(h):
    peer_port = h.peer.getsockname()[1]
    t_in = EspSa(spi=0xC100, direction="in", mode="transport", encr=20, encr_key=KEY_AB, remote="127.0.0.1",
                 udp_encap=True, remote_port=peer_port)
    t_out = EspSa(spi=0xC200, direction="out", mode="transport", encr=20, encr_key=KEY_BA, remote="127.0.0.1",
                  udp_encap=True, remote_port=peer_port)
    h.call("add_sa", t_in.to_config())
    h.call("add_sa", t_out.to_config())
    h.call("add_policy", {"src": "2001:db8:1::10/128", "dst": "2001:db8:2::1/128", "proto": 135,
                          "sport": (0, 65535), "dport": (0, 65535)}, 0xC200, "protect", 0)
    mh = b"\x3b\x01\x05\x00" + bytes(12)
    peer_t_out = EspSa(spi=0xC100, direction="out", mode="transport", encr=20, encr_key=KEY_AB)
    h.peer.sendto(peer_t_out.encapsulate(mh, 135), ("127.0.0.1", h.port))
    assert h.upcall() == ("transport", 0xC100, 135, mh, "127.0.0.1")
    assert h.call("send_transport", mh, 135, "2001:db8:1::10", "2001:db8:2::1") is True
    peer_t_in = EspSa(spi=0xC200, direction="in", mode="transport", encr=20, encr_key=KEY_BA)
    assert peer_t_in.decapsulate(h.peer.recv(4096)) == (135, mh)
    assert h.call("send_transport", mh, 135, "2001:db8:1::10", "2001:db8:2::99") is False


def test_rekey_needed_upcall_and_overflow(h):
    cfg = EspSa(spi=0xBA00, direction="out", mode="tunnel", encr=20, encr_key=KEY_BA, remote="127.0.0.1",
                udp_encap=True, remote_port=h.peer.getsockname()[1]).to_config()
    cfg["seq"] = 0xFFFFFFFF - 2
    h.call("add_sa", cfg)  # replaces the SA, keeps the policy
    pkt = ipv4("10.8.0.1", "10.9.0.7")
    h.tun_app.send(pkt)
    assert h.upcall() == ("rekey_needed", 0xBA00)
    h.peer.recv(4096)
    h.tun_app.send(pkt)  # seq 2^32 - 1 is the last one
    h.peer.recv(4096)
    h.tun_app.send(pkt)
    time.sleep(0.2)
    assert stats(h)["seq_overflow"] == 1


def test_control_errors_are_reported_not_fatal(h):
    h.ctrl.send(pickle.dumps(("add_policy", ({"src": "10.0.0.0/8", "dst": "10.0.0.0/8"}, 0x7777, "protect", 0))))
    status, msg = pickle.loads(h.ctrl.recv(4096))
    assert status == "error" and "0x00007777" in msg
    h.ctrl.send(pickle.dumps(("no_such_command", ())))
    assert pickle.loads(h.ctrl.recv(4096))[0] == "error"
    assert stats(h) is not None  # still alive


def test_batched_child_sa_install_and_batch_errors():
    """``add_child_sa`` in one ``batch`` installs both directions with selectors computed in the worker
    (as DataPlane.install_child_sa sends it); a failing item names its command; stop is not batchable."""
    h = Harness()
    try:
        peer_port = h.peer.getsockname()[1]
        sa_in = EspSa(spi=0xAB00, direction="in", mode="tunnel", encr=20, encr_key=KEY_AB, remote="127.0.0.1",
                      udp_encap=True, remote_port=peer_port, replay_window=64)
        sa_out = EspSa(spi=0xBA00, direction="out", mode="tunnel", encr=20, encr_key=KEY_BA, remote="127.0.0.1",
                       udp_encap=True, remote_port=peer_port)
        ts_local = [("10.8.0.0", "10.8.0.255", 0, 0, 65535)]
        ts_remote = [("10.9.0.0", "10.9.0.255", 0, 0, 65535)]
        h.call("batch", [("add_child_sa", (sa_in.to_config(), ts_local, ts_remote)),
                         ("add_child_sa", (sa_out.to_config(), ts_local, ts_remote))])
        peer_out = EspSa(spi=0xAB00, direction="out", mode="tunnel", encr=20, encr_key=KEY_AB)
        peer_in = EspSa(spi=0xBA00, direction="in", mode="tunnel", encr=20, encr_key=KEY_BA)
        pkt = ipv4("10.8.0.1", "10.9.0.7")
        h.tun_app.send(pkt)  # outbound policy from ts_local -> ts_remote
        assert peer_in.decapsulate(h.peer.recvfrom(4096)[0]) == (4, pkt)
        bad = ipv4("192.0.2.66", "10.8.0.1")  # inbound selectors (ts_remote -> ts_local) enforced
        good = ipv4("10.9.0.5", "10.8.0.1")
        h.peer.sendto(peer_out.encapsulate(bad), ("127.0.0.1", h.port))
        h.peer.sendto(peer_out.encapsulate(good), ("127.0.0.1", h.port))
        assert h.tun_app.recv(4096) == good
        assert stats(h)["inbound_policy_drops"] == 1

        for items, needle in (([("remove_sa", (0x1234,)), ("no_such", ())], "no_such"),
                              ([("stop", ())], "stop cannot be batched")):
            h.ctrl.send(pickle.dumps(("batch", (items,))))
            status, value = pickle.loads(h.ctrl.recv(1 << 20))
            assert status != "ok" and needle in str(value), (status, value)
        assert h.call("stats")["engine"]["esp_tx"] == 1  # the engine still runs
    finally:
        h.close()


def test_busy_poll_window_then_sleep():
    """After a packet the loop polls without sleeping for the window, then sleeps in epoll again."""
    h = Harness(busy_poll_us=20000)
    try:
        sa_out = EspSa(spi=0xBA00, direction="out", mode="tunnel", encr=20, encr_key=KEY_BA, remote="127.0.0.1",
                       udp_encap=True, remote_port=h.peer.getsockname()[1])
        h.call("add_sa", sa_out.to_config())
        h.call("add_policy", {"src": "10.8.0.0/24", "dst": "10.9.0.0/24", "proto": 0, "sport": (0, 65535),
                              "dport": (0, 65535)}, 0xBA00, "protect", 0)
        time.sleep(0.1)  # the control calls' own window ends
        before = h.engine.stats["busy_polls"]
        h.tun_app.send(ipv4("10.8.0.1", "10.9.0.7"))
        h.peer.recvfrom(4096)
        time.sleep(0.1)
        during = h.engine.stats["busy_polls"]
        assert during > before  # it polled after the packet
        time.sleep(0.2)
        assert h.engine.stats["busy_polls"] == during  # and sleeps once the window is over
    finally:
        h.close()


def test_no_busy_poll_by_default(h):
    h.tun_app.send(ipv4("10.8.0.1", "10.9.0.7"))
    h.peer.recvfrom(4096)
    time.sleep(0.05)
    assert h.engine.stats["busy_polls"] == 0
    with pytest.raises(ValueError):
        Engine("both", ctrl=h.ctrl, upcall=h.up, busy_poll_us=-1)


# ---------------------------------------------------------------- TSO from the TUN (virtio_net_hdr reads)
def tcp4(payload: bytes, seq: int = 5000, flags: int = 0x18, src: str = "10.8.0.1", dst: str = "10.9.0.7") -> bytes:
    """An IPv4/TCP packet (timestamps option) as a TSO device gets it: checksum field = pseudo-header sum."""
    opts = b"\x01\x01\x08\x0a" + struct.pack("!II", 1, 2)
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 77, (32 // 4) << 4, flags, 500, 0, 0) + opts
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x1234, 0x4000, 64, 6, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", (0xFFFF - ones_sum(ip)) or 0xFFFF) + ip[12:]
    pseudo = ones_sum(ip[12:20] + struct.pack("!HH", 6, len(tcp) + len(payload)))
    return ip + tcp[:16] + struct.pack("!H", pseudo) + tcp[18:] + payload


def tcp_ok(seg: bytes) -> bool:
    ihl = (seg[0] & 15) * 4
    return ones_sum(seg[12:20] + struct.pack("!HH", 6, len(seg) - ihl) + seg[ihl:]) == 0xFFFF \
        and ones_sum(seg[:ihl]) == 0xFFFF


def test_tso_super_packet_is_segmented_then_encrypted(hv):
    payload = bytes(range(256)) * 16  # 4096 bytes, MSS 1400 -> 1400 + 1400 + 1296
    pkt = tcp4(payload)
    vh = VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 52, 1400, 20, 16).pack()
    hv.tun_app.send(vh + pkt)
    segs = [hv.peer_in.decapsulate(hv.peer.recv(4096)) for _ in range(3)]
    assert all(nh == 4 for nh, _ in segs)
    inner = [p for _, p in segs]
    assert inner == segment(vh, pkt)  # exactly the pure segmenter's output, in order
    assert [len(p) for p in inner] == [52 + 1400, 52 + 1400, 52 + 1296]
    assert b"".join(p[52:] for p in inner) == payload
    assert all(tcp_ok(p) for p in inner)
    assert [struct.unpack_from("!I", p, 24)[0] for p in inner] == [5000, 6400, 7800]
    assert [p[33] for p in inner] == [0x10, 0x10, 0x18]  # PSH only on the last segment
    st = stats(hv)
    assert st["tun_tso_rx"] == 1 and st["tun_tso_segs"] == 3 and st["esp_tx"] == 3 and st["tun_rx"] == 1
    assert st["esp_tx"] == hv.call("stats")["sas"][0xBA00]["packets_out"]


def test_needs_csum_packet_is_completed(hv):
    """A non-GSO CHECKSUM_PARTIAL read (TUN_F_CSUM): the checksum is filled in before encryption."""
    pkt = tcp4(b"small")
    hv.tun_app.send(VnetHdr(VnetFlags.NEEDS_CSUM, 0, 0, 0, 20, 16).pack() + pkt)
    nh, inner = hv.peer_in.decapsulate(hv.peer.recv(4096))
    assert nh == 4 and inner[:36] == pkt[:36] and inner[38:] == pkt[38:] and tcp_ok(inner)
    assert not tcp_ok(pkt)  # it was partial
    hv.tun_app.send(bytes(10) + pkt)  # an all-zero header: sent as it is
    assert hv.peer_in.decapsulate(hv.peer.recv(4096)) == (4, pkt)


def test_bad_vnet_header_counted_and_dropped(hv):
    big = tcp4(b"u" * 3000)
    hv.tun_app.send(VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.UDP_L4, 28, 1400, 20, 6).pack() + big)  # USO
    hv.tun_app.send(VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 52, 1400, 20, 16).pack() + big[:-1])  # length
    hv.tun_app.send(VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 52, 1400, 20, 16).pack()
                    + tcp4(b"v" * 3000, dst="203.0.113.1"))  # no policy: dropped after one lookup
    hv.tun_app.send(b"\x01")  # shorter than a virtio_net_hdr (a real TUN never does this)
    good = ipv4("10.8.0.1", "10.9.0.7")
    hv.tun_app.send(bytes(10) + good)
    assert hv.peer_in.decapsulate(hv.peer.recv(4096)) == (4, good)  # the engine still forwards
    st = stats(hv)
    assert st["tun_gso_errors"] == 3 and st["no_policy"] == 1 and st["esp_tx"] == 1 and st["tun_rx"] == 5


def test_vnet_rx_writes_carry_a_header(hv):
    """With IFF_VNET_HDR the decrypted packet reaches the TUN behind a (plain) virtio_net_hdr."""
    good = ipv4("10.9.0.5", "10.8.0.1")
    hv.peer.sendto(hv.peer_out.encapsulate(good), ("127.0.0.1", hv.port))
    assert hv.tun_app.recv(4096) == bytes(10) + good


def test_tso_segments_stop_at_sequence_overflow(hv):
    cfg = EspSa(spi=0xBA00, direction="out", mode="tunnel", encr=20, encr_key=KEY_BA, remote="127.0.0.1",
                udp_encap=True, remote_port=hv.peer.getsockname()[1]).to_config()
    cfg["seq"] = 0xFFFFFFFF - 2  # two sequence numbers left
    hv.call("add_sa", cfg)
    vh = VnetHdr(VnetFlags.NEEDS_CSUM, GsoType.TCPV4, 52, 1000, 20, 16).pack()
    hv.tun_app.send(vh + tcp4(b"s" * 3000))  # three segments
    assert hv.upcall() == ("rekey_needed", 0xBA00)
    hv.peer.recv(4096)
    hv.peer.recv(4096)
    time.sleep(0.2)
    st = stats(hv)
    assert st["esp_tx"] == 2 and st["seq_overflow"] == 1


def test_udp_gso_param_overrides_the_environment(monkeypatch):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        monkeypatch.setenv("S2C_ESP_GSO", "1")
        assert Engine("both", ctrl=a, upcall=b).gso is True
        assert Engine("both", ctrl=a, upcall=b, udp_gso=False).gso is False
        monkeypatch.delenv("S2C_ESP_GSO")
        assert Engine("both", ctrl=a, upcall=b).gso is False
        assert Engine("both", ctrl=a, upcall=b, udp_gso=True).gso is True
    finally:
        a.close()
        b.close()
