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
from collections import Counter
from typing import Any

from s2c.codec.esp import NON_ESP_MARKER, EspError, IpProto, UnknownSpi
from s2c.esp.sa import Direction, EspSa, Mode
from s2c.esp.spd import Policy, PolicyAction, Sad, Selector, Spd

BATCH = 256
RCVBUF = 4 << 20
_SPI = struct.Struct("!I")


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
    ) -> None:
        if role not in ("tx", "rx", "both"):
            raise ValueError(role)
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

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        ep = select.epoll()
        handlers: dict[int, Any] = {self.ctrl.fileno(): self._on_ctrl}
        if self.role in ("tx", "both") and self.tun_fd >= 0:
            os.set_blocking(self.tun_fd, False)
            handlers[self.tun_fd] = self._on_tun
        if self.role in ("rx", "both"):
            for s in (self.udp4, self.udp6):
                if s is not None:
                    handlers[s.fileno()] = lambda s=s: self._on_udp(s)
            for s, v in ((self.raw4, 4), (self.raw6, 6)):
                if s is not None:
                    handlers[s.fileno()] = lambda s=s, v=v: self._on_raw(s, v)
        for fd in handlers:
            ep.register(fd, select.EPOLLIN)
        try:
            while self.running:
                try:
                    events = ep.poll(1.0)
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
        n = dropped = 0
        try:
            for _ in range(BATCH):
                try:
                    pkt = read(fd, 65536)
                except BlockingIOError:
                    return
                n += 1
                pol = lookup(pkt)
                if pol is None or pol.action is not protect or pol.sa is None:
                    dropped += 1
                    continue
                send(pol.sa, pkt, None)
        except OSError:
            self.stats["tun_read_errors"] += 1
        finally:
            self.stats["tun_rx"] += n
            if dropped:
                self.stats["no_policy"] += dropped

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
        return sock.sendto, addr

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
            sendto, addr = self._routes[sa.spi]
            sendto(esp, addr)
            self.stats["esp_tx"] += 1
        except (OSError, KeyError):
            self.stats["send_errors"] += 1

    def _report_rekey(self, sa: EspSa) -> None:
        self._rekey_reported.add(sa.spi)
        self._up(("rekey_needed", sa.spi))

    # ------------------------------------------------------------------ inbound
    def _on_udp(self, sock: socket.socket) -> None:
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
            if n >= 4 and mv[:4] == NON_ESP_MARKER:
                st["ike_rx"] += 1
                self._up(("ike", bytes(mv[4:n]), addr[:2]))
            elif n == 1 and mv[0] == 0xFF:
                st["nat_keepalive_rx"] += 1
            else:
                self._esp_in(mv[:n], addr[0], addr[1])

    def _on_raw(self, sock: socket.socket, version: int) -> None:
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
