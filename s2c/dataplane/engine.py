"""The forwarding loop: a dedicated epoll loop that drains each fd until EAGAIN.

Roles (one process each, or one process doing both):
  ``tx``   TUN -> SPD lookup -> ESP encapsulate -> UDP 4500 (RFC 3948) or raw IP protocol 50
  ``rx``   UDP 4500 / raw ESP -> SPI lookup -> ESP decapsulate -> TUN (tunnel) or upcall (transport)
  ``both`` both of the above in one loop

Outbound SAs live only in the tx loop and inbound SAs only in the rx loop, so sequence numbers and
replay windows are never shared between processes. Control messages (pickled tuples) arrive on a
SOCK_SEQPACKET socket and get a reply; upcalls (IKE datagrams seen on port 4500, transport-mode
payloads such as Mobility Header messages, learned peer ports, rekey-needed) go out on another.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import pickle
import select
import socket
import struct
import time
from collections import Counter
from typing import Any, NamedTuple

from s2c.codec.esp import NON_ESP_MARKER, EspError, IpProto, UnknownSpi
from s2c.dataplane.gso import GsoError, segment
from s2c.esp.sa import Direction, EspSa, Mode
from s2c.esp.spd import Policy, PolicyAction, Sad, Selector, Spd, selectors_from_ts

BATCH = 256
RCVBUF = 4 << 20
TUN_READ = 65536 + 64  # a TSO super-packet: up to 65535 bytes of IP + the 10-byte virtio_net_hdr
_SPI = struct.Struct("!I")
# UDP GSO/GRO (Linux >= 5.0): the tx loop hands runs of equal-sized ESP datagrams to the kernel as one
# sendmsg with UDP_SEGMENT; the rx socket sets UDP_GRO so such a run (or packets the kernel coalesced)
# arrives as one buffer plus the segment size. On the wire they are ordinary, separate datagrams.
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
GSO_MAX_SEGS = 64
GSO_MIN_SEGS = 8  # shorter runs (a fragmented ping, a few signalling packets) go datagram by datagram
GSO_MAX_BYTES = 65000
_U16 = struct.Struct("=H")
_I32 = struct.Struct("=i")
_GRO_CMSG = socket.CMSG_SPACE(4)
# With an IFF_VNET_HDR TUN the rx loop coalesces consecutive in-order segments of one TCP flow (same
# headers but the sequence number, like the kernel's GRO) and writes them as one GSO packet: struct
# virtio_net_hdr {flags, gso_type, hdr_len, gso_size, csum_start, csum_offset}, native byte order.
_VNET = struct.Struct("=BBHHHH")
_VNET_PLAIN = bytes(10)
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_TCPV6 = 4
COALESCE_MAX = 62000  # bytes of TCP payload in one GSO write (IPv4 total length is 16 bits)
_TCP_SEQ = struct.Struct("!I")
_U16BE = struct.Struct("!H")


def _fold(x: int) -> int:
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return x


def _ipv4_csum(hdr: bytes) -> int:
    return ~_fold(sum(struct.unpack("!10H", hdr))) & 0xFFFF


class _Ts(NamedTuple):
    """An IKE traffic selector as sent over the control socket (the attributes selectors_from_ts reads)."""

    start_addr: Any
    end_addr: Any
    ip_protocol: int
    start_port: int
    end_port: int


def _sel_dict(s: Selector) -> dict[str, Any]:
    return {"src": s.src, "dst": s.dst, "proto": s.proto, "sport": s.sport, "dport": s.dport}


def make_rng():
    return os.urandom


class Engine:
    """One forwarding loop. Sockets and TUN fds are handed in; the engine never creates devices."""

    def __init__(
        self,
        role: str,
        ctrl: socket.socket,
        upcall: socket.socket,
        tun_fd: int = -1,
        udp4: socket.socket | None = None,
        udp6: socket.socket | None = None,
        raw4: socket.socket | None = None,
        raw6: socket.socket | None = None,
        busy_poll_us: int = 0,
        vnet: bool | None = None,
        udp_gso: bool | None = None,
    ) -> None:
        if role not in ("tx", "rx", "both"):
            raise ValueError(role)
        if busy_poll_us < 0:
            raise ValueError("busy_poll_us must be >= 0")
        # After traffic, keep polling for this long instead of sleeping: on a VM the first tens of
        # microseconds after a wake-up from idle run many times slower (cold CPU), which dominates the
        # tunnel RTT. Costs CPU only while traffic flows (docs/dataplane.md, "Busy polling").
        self.busy_poll_us = busy_poll_us
        self.role = role
        self.ctrl = ctrl
        self.upcall = upcall
        self.tun_fd = tun_fd
        self.udp4, self.udp6, self.raw4, self.raw6 = udp4, udp6, raw4, raw6
        self.spd: Spd[EspSa] = Spd()
        self.sad: Sad[EspSa] = Sad()
        self.out_sas: dict[int, EspSa] = {}
        self.stats: Counter[str] = Counter()
        self.running = True
        self._buf = bytearray(65536)
        self._mv = memoryview(self._buf)
        self._rekey_reported: set[int] = set()
        self._routes: dict[int, tuple[Any, tuple[str, int]]] = {}
        self.in_spd: dict[int, Spd[bool]] = {}  # inbound SPI -> selectors its inner packets must match
        # UDP GSO for runs of ESP-in-UDP datagrams: opt-in (``udp_gso=True``, or S2C_ESP_GSO=1 when
        # None). Off by default because a capture on a veth shows a GSO run as ONE oversized UDP frame
        # (the kernel segments it only on a real NIC or at the receiver), which Wireshark reports as
        # malformed: the lab turns it on only for runs without captures. Cleared if the kernel refuses
        # UDP_SEGMENT.
        self.gso = udp_gso if udp_gso is not None else os.environ.get("S2C_ESP_GSO", "0") == "1"
        self._pend: list[bytes] = []  # ESP datagrams of one GSO run: same route, same size (last may be shorter)
        self._pend_route: Any = None
        self._pend_size = 0
        self._pend_bytes = 0
        # TUN opened with IFF_VNET_HDR: detected in run() unless given (tests use a socketpair as TUN)
        self._vnet_given = vnet
        self.vnet = bool(vnet)
        self._run: list[bytes] = []  # coalescing run: first whole packet, then TCP payloads
        self._run_key = b""
        self._run_seq = 0
        self._run_mss = 0
        self._run_len = 0
        self._run_hl = 0
        self._run_psh = 0

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        ep = select.epoll()
        handlers: dict[int, Any] = {self.ctrl.fileno(): self._on_ctrl}
        if self.tun_fd >= 0 and self._vnet_given is None:
            from s2c.dataplane.tun import tun_has_vnet_hdr

            self.vnet = tun_has_vnet_hdr(self.tun_fd)
        if self.role in ("tx", "both") and self.tun_fd >= 0:
            os.set_blocking(self.tun_fd, False)
            handlers[self.tun_fd] = self._on_tun
        if self.role in ("rx", "both"):
            for s in (self.udp4, self.udp6):
                if s is not None:
                    try:
                        s.setsockopt(SOL_UDP, UDP_GRO, 1)
                    except OSError:
                        pass
                    handlers[s.fileno()] = lambda s=s: self._on_udp(s)
            for s, v in ((self.raw4, 4), (self.raw6, 6)):
                if s is not None:
                    handlers[s.fileno()] = lambda s=s, v=v: self._on_raw(s, v)
        for fd in handlers:
            ep.register(fd, select.EPOLLIN)
        poll = ep.poll
        window = self.busy_poll_us / 1e6
        clock = time.monotonic
        yld = os.sched_yield
        hot_until = 0.0
        try:
            while self.running:
                try:
                    if window:
                        # adaptive busy polling: for ``window`` after the last packet, poll without
                        # sleeping (yielding the CPU to anything runnable); then sleep in epoll again
                        events = poll(0)
                        if events:
                            hot_until = clock() + window
                        elif clock() < hot_until:
                            self.stats["busy_polls"] += 1
                            yld()
                            continue
                        else:
                            events = poll(1.0)
                            if events:
                                hot_until = clock() + window
                    else:
                        events = poll(1.0)
                except InterruptedError:
                    continue
                for fd, _ in events:
                    handlers[fd]()
        finally:
            ep.close()

    # ------------------------------------------------------------------ outbound
    def _on_tun(self) -> None:
        read = os.read
        fd = self.tun_fd
        lookup = self.spd.lookup_packet
        send = self._send_esp
        protect = PolicyAction.PROTECT
        vnet = self.vnet
        n = dropped = 0
        try:
            for _ in range(BATCH):
                try:
                    pkt = read(fd, TUN_READ)
                except BlockingIOError:
                    return
                n += 1
                if vnet:
                    if pkt[:2] != b"\0\0":
                        # offloads on (TunDevice(tso=True)): a TCP super-packet to segment or a
                        # CHECKSUM_PARTIAL packet to complete (virtio_net_hdr flags / gso_type)
                        dropped += self._on_tun_offload(pkt)
                        continue
                    pkt = pkt[10:]  # a plain packet: all-zero header
                pol = lookup(pkt)
                if pol is None or pol.action is not protect or pol.sa is None:
                    dropped += 1
                    continue
                send(pol.sa, pkt, None)
        except OSError:
            self.stats["tun_read_errors"] += 1
        finally:
            if self._pend:
                self._flush()
            self.stats["tun_rx"] += n
            if dropped:
                self.stats["no_policy"] += dropped

    def _on_tun_offload(self, pkt: bytes) -> int:
        """One TUN read with a non-zero virtio_net_hdr: segment (GSO) or complete the checksum, then one
        SPD lookup for all segments (they share every selector field). Returns 1 if dropped for lack
        of a policy; a bad header is counted apart (``tun_gso_errors``)."""
        try:
            segs = segment(pkt, memoryview(pkt)[10:])
        except GsoError:
            self.stats["tun_gso_errors"] += 1
            return 0
        pol = self.spd.lookup_packet(segs[0])
        if pol is None or pol.action is not PolicyAction.PROTECT or pol.sa is None:
            return 1
        k = len(segs)
        if k > 1:
            self.stats["tun_tso_rx"] += 1
            self.stats["tun_tso_segs"] += k
        sa = pol.sa
        route = self._routes.get(sa.spi)
        if route is None or (route[2] and self.gso):  # UDP GSO runs: queued by _send_esp
            for seg in segs:
                self._send_esp(sa, seg, None)
            return 0
        # raw ESP / plain UDP: the per-packet part of _send_esp, with the route looked up once
        enc, sendto, addr = sa.encapsulate, route[0], route[1]
        sent = errors = 0
        for seg in segs:
            try:
                esp = enc(seg)
            except EspError:
                self.stats["seq_overflow"] += 1
                self._report_rekey(sa)
                break
            try:
                sendto(esp, addr)
                sent += 1
            except OSError:
                errors += 1
        self.stats["esp_tx"] += sent
        if errors:
            self.stats["send_errors"] += errors
        if sa.rekey_needed and sa.spi not in self._rekey_reported:
            self._report_rekey(sa)
        return 0

    def _dest(self, sa: EspSa) -> tuple[Any, tuple[str, int]]:
        """(sendto, address) for an outbound SA: UDP 4500 (RFC 3948) or raw IP protocol 50."""
        v6 = ":" in sa.remote
        if sa.udp_encap:
            sock = self.udp6 if v6 else self.udp4
            addr = (sa.remote, sa.remote_port)
        else:
            sock = self.raw6 if v6 else self.raw4
            addr = (sa.remote, 0)
        if sock is None:
            raise ValueError(f"no {'IPv6' if v6 else 'IPv4'} {'UDP' if sa.udp_encap else 'raw ESP'} socket")
        return sock.sendto, addr, sock if sa.udp_encap else None

    def _send_esp(self, sa: EspSa, payload: bytes, next_header: int | None) -> None:
        try:
            esp = sa.encapsulate(payload, next_header)
        except EspError:
            self.stats["seq_overflow"] += 1
            self._report_rekey(sa)
            return
        if sa.rekey_needed and sa.spi not in self._rekey_reported:
            self._report_rekey(sa)
        try:
            route = self._routes[sa.spi]
        except KeyError:
            self.stats["send_errors"] += 1
            return
        if route[2] and self.gso:
            # queue for one UDP_SEGMENT sendmsg; a shorter datagram ends the run (it may be its last)
            n = len(esp)
            pend = self._pend
            if pend and (route is not self._pend_route or n > self._pend_size
                         or self._pend_bytes + n > GSO_MAX_BYTES or len(pend) >= GSO_MAX_SEGS):
                self._flush()
            if not pend:
                self._pend_route, self._pend_size = route, n
            pend.append(esp)
            self._pend_bytes += n
            if n < self._pend_size:
                self._flush()
            return
        try:
            route[0](esp, route[1])
            self.stats["esp_tx"] += 1
        except OSError:
            self.stats["send_errors"] += 1

    def _flush(self) -> None:
        """Send the pending GSO run: a long one as one UDP_SEGMENT sendmsg, a short one datagram by
        datagram (a capture on a veth shows a GSO run as one frame, which tshark cannot dissect)."""
        pend = self._pend
        sock, addr = self._pend_route[2], self._pend_route[1]
        k = len(pend)
        try:
            if k < GSO_MIN_SEGS:
                for esp in pend:
                    sock.sendto(esp, addr)
            else:
                sock.sendmsg([b"".join(pend)], [(SOL_UDP, UDP_SEGMENT, _U16.pack(self._pend_size))], 0, addr)
                self.stats["gso_sends"] += 1
            self.stats["esp_tx"] += k
        except OSError as e:
            if k >= GSO_MIN_SEGS and e.errno in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                self.gso = False  # no UDP GSO here: plain sendto from now on
                for esp in pend:
                    try:
                        sock.sendto(esp, addr)
                        self.stats["esp_tx"] += 1
                    except OSError:
                        self.stats["send_errors"] += 1
            else:
                self.stats["send_errors"] += k
        pend.clear()
        self._pend_bytes = 0

    def _report_rekey(self, sa: EspSa) -> None:
        self._rekey_reported.add(sa.spi)
        self._up(("rekey_needed", sa.spi))

    # ------------------------------------------------------------------ inbound
    def _on_udp(self, sock: socket.socket) -> None:
        recv = sock.recvmsg_into
        bufs = [self._buf]
        mv = self._mv
        st = self.stats
        esp_in = self._esp_in
        try:
            self._udp_batch(recv, bufs, mv, st, esp_in)
        finally:
            if self._run:
                self._tun_flush()

    def _udp_batch(self, recv: Any, bufs: list, mv: memoryview, st: Counter, esp_in: Any) -> None:
        for _ in range(BATCH):
            try:
                n, anc, _flags, addr = recv(bufs, _GRO_CMSG, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                st["sock_errors"] += 1
                return
            seg = n
            if anc:
                for level, typ, data in anc:
                    if level == SOL_UDP and typ == UDP_GRO and len(data) >= 4:
                        seg = _I32.unpack_from(data)[0] or n
                if seg < n:
                    st["gro_rx"] += 1
            for off in range(0, n, seg) if seg < n else (0,):
                end = min(off + seg, n)
                if end - off >= 4 and mv[off:off + 4] == NON_ESP_MARKER:
                    st["ike_rx"] += 1
                    self._up(("ike", bytes(mv[off + 4:end]), addr[:2]))
                elif end - off == 1 and mv[off] == 0xFF:
                    st["nat_keepalive_rx"] += 1
                else:
                    esp_in(mv[off:end], addr[0], addr[1])

    def _on_raw(self, sock: socket.socket, version: int) -> None:
        try:
            self._raw_batch(sock, version)
        finally:
            if self._run:
                self._tun_flush()

    def _raw_batch(self, sock: socket.socket, version: int) -> None:
        recv = sock.recvfrom_into
        mv = self._mv
        st = self.stats
        for _ in range(BATCH):
            try:
                n, addr = recv(self._buf, 65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                st["sock_errors"] += 1
                return
            off = (mv[0] & 0x0F) * 4 if version == 4 else 0  # IPv4 raw sockets see the IP header
            if n - off < 8:
                st["malformed"] += 1
                continue
            self._esp_in(mv[off:n], addr[0], 0)

    def _esp_in(self, esp: memoryview, src: str, sport: int) -> None:
        st = self.stats
        st["esp_rx"] += 1
        if len(esp) < 8:
            st["malformed"] += 1
            return
        spi = _SPI.unpack_from(esp)[0]
        try:
            sa = self.sad.get(spi)
            nh, payload = sa.decapsulate(esp)
        except UnknownSpi:
            st["unknown_spi"] += 1
            return
        except EspError as e:
            st["esp_" + type(e).__name__] += 1
            return
        if sport and sa.udp_encap and (sport != sa.remote_port or src != sa.remote):
            # RFC 3948 §4 / RFC 4555: the peer's NAT mapping (or address) changed; learn it
            old = (sa.remote, sa.remote_port)
            sa.remote, sa.remote_port = src, sport
            st["peer_learned"] += 1
            self._up(("peer", spi, old, (src, sport)))
        if sa.mode is Mode.TUNNEL and (nh == IpProto.IPV4 or nh == IpProto.IPV6):
            check = self.in_spd.get(spi)
            if check is not None and check.lookup_packet(payload) is None:
                # RFC 4301 §5.2: the inner packet must match the SA's (inbound) traffic selectors
                st["inbound_policy_drops"] += 1
                return
            if self.vnet:
                self._tun_put(payload)
                return
            try:
                os.write(self.tun_fd, payload)
                st["tun_tx"] += 1
            except OSError:
                st["tun_write_errors"] += 1
        elif nh == IpProto.NO_NEXT_HEADER:
            st["dummy_rx"] += 1  # RFC 4303 §2.6 dummy packet
        else:
            st["transport_rx"] += 1
            self._up(("transport", spi, nh, payload, src))

    # ------------------------------------------------------------------ TUN writes (IFF_VNET_HDR)
    def _tun_put(self, pkt: bytes) -> None:
        """Queue one decrypted packet: extend the TCP run if it continues it, else flush and restart."""
        n = len(pkt)
        v = pkt[0] >> 4 if n else 0
        if v == 4 and n >= 40 and pkt[0] == 0x45 and pkt[9] == 6 and not (pkt[6] & 0x3F or pkt[7]):
            hl = 20
        elif v == 6 and n >= 60 and pkt[6] == 6:
            hl = 40
        else:
            hl = 0
        if hl:
            thl = (pkt[hl + 12] >> 4) * 4
            flags = pkt[hl + 13]
            plen = n - hl - thl
            if thl < 20 or plen <= 0 or (flags & 0xF7) != 0x10:  # only ACK (+PSH) segments with data
                hl = 0
        if not hl:
            if self._run:
                self._tun_flush()
            self._tun_write(_VNET_PLAIN + pkt if type(pkt) is bytes else _VNET_PLAIN + bytes(pkt))
            return
        # key: IP header without length/ID/checksum, ports, ack, header length/flags (minus PSH),
        # window, urgent pointer and options: everything but the sequence number must match
        if hl == 20:
            key = b"".join((pkt[1:2], pkt[6:10], pkt[12:24], pkt[28:33], bytes((flags & 0x10,)),
                            pkt[34:36], pkt[38:hl + thl]))
        else:
            key = b"".join((pkt[0:4], pkt[6:44], pkt[48:53], bytes((flags & 0x10,)), pkt[54:56], pkt[58:hl + thl]))
        seq = _TCP_SEQ.unpack_from(pkt, hl + 4)[0]
        run = self._run
        if run and (key != self._run_key or seq != self._run_seq or plen > self._run_mss
                    or self._run_len + plen > COALESCE_MAX):
            self._tun_flush()
        if not run:
            self._run_key, self._run_mss, self._run_hl, self._run_len = key, plen, hl, plen
            run.append(pkt)
        else:
            run.append(pkt[hl + thl:])
            self._run_len += plen
        self._run_seq = (seq + plen) & 0xFFFFFFFF
        self._run_psh = flags & 0x08
        if plen < self._run_mss or flags & 0x08:  # a short or PSH segment ends the run
            self._tun_flush()

    def _tun_flush(self) -> None:
        run = self._run
        first = run[0]
        k = len(run)
        if k == 1:
            self._tun_write(_VNET_PLAIN + first)
            run.clear()
            return
        hl = self._run_hl
        thl = (first[hl + 12] >> 4) * 4
        tcp_len = thl + self._run_len
        th = bytearray(first[hl:hl + thl])
        th[13] = (th[13] & 0xF7) | self._run_psh  # PSH as on the last segment
        if hl == 20:
            ip = bytearray(first[:20])
            ip[2:4] = _U16BE.pack(20 + tcp_len)
            ip[10:12] = b"\0\0"
            ip[10:12] = _U16BE.pack(_ipv4_csum(bytes(ip)))
            pseudo = sum(struct.unpack("!4H", ip[12:20])) + 6 + tcp_len
            gso = VIRTIO_NET_HDR_GSO_TCPV4
        else:
            ip = bytearray(first[:40])
            ip[4:6] = _U16BE.pack(tcp_len)
            pseudo = sum(struct.unpack("!16H", ip[8:40])) + 6 + tcp_len
            gso = VIRTIO_NET_HDR_GSO_TCPV6
        # CHECKSUM_PARTIAL: the check field holds the folded pseudo-header sum; the kernel finishes it
        # only if the packet leaves (segmentation); local TCP trusts it (the ESP ICV covered the data)
        th[16:18] = _U16BE.pack(_fold(pseudo))
        vh = _VNET.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso, hl + thl, self._run_mss, hl, 16)
        run[0] = first[hl + thl:]
        data = b"".join((vh, ip, th, *run))
        run.clear()
        self.stats["tun_gso_writes"] += 1
        self._tun_write(data, k)

    def _tun_write(self, data: bytes, k: int = 1) -> None:
        try:
            os.write(self.tun_fd, data)
            self.stats["tun_tx"] += k
        except OSError:
            self.stats["tun_write_errors"] += k

    # ------------------------------------------------------------------ control
    def _up(self, msg: tuple) -> None:
        try:
            self.upcall.send(pickle.dumps(msg), socket.MSG_DONTWAIT)
        except OSError:
            self.stats["upcall_drops"] += 1

    def _on_ctrl(self) -> None:
        while True:
            try:
                data = self.ctrl.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if not data:  # parent went away
                self.running = False
                return
            cmd, args = pickle.loads(data)
            try:
                reply: Any = ("ok", getattr(self, "cmd_" + cmd)(*args))
            except Exception as e:  # noqa: BLE001 - reported to the parent, never kills the loop
                reply = ("error", f"{type(e).__name__}: {e}")
            try:
                self.ctrl.send(pickle.dumps(reply))
            except OSError:
                self.running = False
                return

    def cmd_add_sa(self, cfg: dict, replaces: int | None = None, in_selectors: list[dict] | None = None) -> None:
        """Install an SA; an outbound SA takes over the policies of the same SPI or of ``replaces``.
        ``in_selectors`` (inbound tunnel SAs): decrypted packets must match one of them."""
        sa = EspSa.from_config(cfg, rng=make_rng())
        if sa.direction is Direction.IN:
            self.sad.add(sa.spi, sa)
            if in_selectors:
                spd: Spd[bool] = Spd()
                for sel in in_selectors:
                    spd.add(Policy(Selector(**sel), PolicyAction.PROTECT, True))
                self.in_spd[sa.spi] = spd
            else:
                self.in_spd.pop(sa.spi, None)
            return
        old = self.out_sas.get(sa.spi)
        self._routes[sa.spi] = self._dest(sa)
        self.out_sas[sa.spi] = sa
        if old is not None:
            self.spd.rebind(old, sa)
        if replaces is not None and replaces != sa.spi:
            prev = self.out_sas.pop(replaces, None)
            self._routes.pop(replaces, None)
            if prev is not None:
                self.spd.rebind(prev, sa)

    def cmd_remove_sa(self, spi: int) -> None:
        self.sad.remove(spi)
        self.in_spd.pop(spi, None)
        self._routes.pop(spi, None)
        old = self.out_sas.pop(spi, None)
        if old is not None:
            self.spd.remove_sa(old)

    def cmd_add_policy(self, sel: dict, spi: int | None, action: str, priority: int) -> None:
        sa = self.out_sas.get(spi) if spi is not None else None
        if action == "protect" and sa is None:
            raise KeyError(f"no outbound SA 0x{spi or 0:08x} in this worker")
        self.spd.add(Policy(Selector(**sel), PolicyAction(action), sa, priority))

    def cmd_remove_policies(self, sel: dict | None) -> int:
        keep = [p for p in self.spd if sel is not None and p.selector != Selector(**sel)]
        n = len(self.spd) - len(keep)
        self.spd = Spd()
        for p in keep:
            self.spd.add(p)
        return n

    def cmd_update_peer(self, spi: int, addr: str, port: int) -> bool:
        sa = self.out_sas.get(spi) or (self.sad.get(spi) if spi in self.sad else None)
        if sa is None:
            return False
        ipaddress.ip_address(addr)
        sa.remote, sa.remote_port = addr, port
        if spi in self.out_sas:
            self._routes[spi] = self._dest(sa)
        return True

    def cmd_send_transport(self, payload: bytes, next_header: int, src: str, dst: str) -> bool:
        s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        pol = self.spd.lookup(s, d, next_header)
        if pol is None or pol.sa is None or pol.action is not PolicyAction.PROTECT or pol.sa.mode is not Mode.TRANSPORT:
            self.stats["no_transport_policy"] += 1
            return False
        self._send_esp(pol.sa, payload, next_header)
        if self._pend:
            self._flush()
        return True

    def cmd_stats(self) -> dict:
        sas = {sa.spi: {"direction": "out", "seq": sa.seq, "rekey_needed": sa.rekey_needed,
                        "remote": sa.remote, "remote_port": sa.remote_port, **sa.counters.as_dict()}
               for sa in self.out_sas.values()}
        for sa in self.sad.values():
            w = sa.window
            sas[sa.spi] = {"direction": "in", "replay_top": w.top if w else 0, "remote": sa.remote,
                           "remote_port": sa.remote_port, **sa.counters.as_dict()}
        return {"engine": dict(self.stats), "sas": sas}

    def cmd_stop(self) -> None:
        self.running = False

    def cmd_add_child_sa(self, cfg: dict, ts_local: list[tuple], ts_remote: list[tuple], priority: int = 0) -> None:
        """One direction of a CHILD SA, its selectors computed here (off the daemon's loop) from the IKE
        traffic selectors, given as (start_addr, end_addr, ip_protocol, start_port, end_port): inbound =
        ``add_sa`` with the (remote -> local) selectors, outbound = ``add_sa`` + ``add_policy`` (local ->
        remote), as ``DataPlane.add_sa``/``add_policy`` would send them."""
        tl, tr = [_Ts(*t) for t in ts_local], [_Ts(*t) for t in ts_remote]
        if cfg["direction"] == Direction.IN.value:
            sels = [_sel_dict(s) for s in selectors_from_ts(tr, tl)]
            self.cmd_add_sa(cfg, None, sels or None)
            return
        self.cmd_add_sa(cfg)
        for sel in selectors_from_ts(tl, tr):
            self.cmd_add_policy(_sel_dict(sel), cfg["spi"], PolicyAction.PROTECT.value, priority)

    def cmd_batch(self, items: list[tuple[str, tuple]]) -> list[Any]:
        """Run several commands in order with one round trip (e.g. a CHILD SA: add_sa + add_policy);
        stops at the first failure, which is reported with the failing command's name."""
        out = []
        for cmd, args in items:
            if cmd in ("batch", "stop"):
                raise ValueError(f"{cmd} cannot be batched")
            try:
                out.append(getattr(self, "cmd_" + cmd)(*args))
            except Exception as e:  # noqa: BLE001
                raise RuntimeError(f"{cmd}: {type(e).__name__}: {e}") from e
        return out
