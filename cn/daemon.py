"""Correspondent node daemon: UDP echo and a UDP stream sink on all its addresses (IPv4 and IPv6).

Params (docs/control.md): ``echo_port`` (default 7, 0 disables), ``sink_port`` (default 5001).
Control commands beyond the base ones: ``streams`` (all stream stats), ``stream`` (``id``: one stream),
``reset`` (``id`` optional: forget stream stats).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from typing import Any

from cn.streams import StreamSink
from s2c.runtime.control import ControlError, Handler
from s2c.runtime.node import NodeDaemon

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; not exported by Python 3.11
IN_PKTINFO = struct.Struct("=i4s4s")  # ifindex, spec_dst, addr
IN6_PKTINFO = struct.Struct("=16si")  # addr, ifindex
DEFAULT_ECHO_PORT = 7
DEFAULT_SINK_PORT = 5001
MAX_DATAGRAM = 65535


def _host(addr: tuple) -> str:
    host = addr[0]
    return host.split("%", 1)[0]


class CnDaemon(NodeDaemon):
    kind = "cn"

    def __init__(self, config) -> None:
        super().__init__(config)
        params = config.params or {}
        self.echo_port = int(params.get("echo_port", DEFAULT_ECHO_PORT))
        self.sink_port = int(params.get("sink_port", DEFAULT_SINK_PORT))
        self.sink = StreamSink()
        self._socks: list[socket.socket] = []
        self.bound: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for family in (socket.AF_INET, socket.AF_INET6):
            if self.sink_port:
                sock = self._open(family, self.sink_port, pktinfo=False)
                if sock is not None:
                    loop.add_reader(sock.fileno(), self._on_sink, sock)
            if self.echo_port:
                sock = self._open(family, self.echo_port, pktinfo=True)
                if sock is not None:
                    loop.add_reader(sock.fileno(), self._on_echo, sock)
        if not self._socks:
            raise RuntimeError("cn: could not open any UDP socket")

    def _open(self, family: int, port: int, pktinfo: bool) -> socket.socket | None:
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            self.log.warning("no %s socket: %s", family.name, exc)
            return None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if pktinfo:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                sock.bind(("::", port))
            else:
                if pktinfo:
                    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                sock.bind(("0.0.0.0", port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            self.log.warning("cannot bind %s port %d: %s", family.name, port, exc)
            return None
        self._socks.append(sock)
        self.bound.append(f"{'[::]' if family == socket.AF_INET6 else '0.0.0.0'}:{port}")
        return sock

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._socks:
            try:
                loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        self._socks.clear()

    # -- datagrams ------------------------------------------------------------------------------
    def _on_sink(self, sock: socket.socket) -> None:
        for _ in range(256):  # drain what is queued, bounded per wake-up
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.counters["sink_errors"] += 1
                self.log.debug("sink recv: %s", exc)
                return
            stats = self.sink.receive(data, _host(addr), time.time())
            if stats is None:
                self.counters["malformed"] += 1
            else:
                self.counters["stream_datagrams"] += 1

    def _on_echo(self, sock: socket.socket) -> None:
        for _ in range(256):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(MAX_DATAGRAM, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.counters["echo_errors"] += 1
                self.log.debug("echo recv: %s", exc)
                return
            self.counters["echo_requests"] += 1
            reply_anc = []
            for level, ctype, cdata in ancdata:
                # reply from the address the request was sent to (the CN may have several)
                if level == socket.IPPROTO_IP and ctype == IP_PKTINFO and len(cdata) >= IN_PKTINFO.size:
                    _ifi, _spec, dst = IN_PKTINFO.unpack_from(cdata)
                    reply_anc.append((socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(0, dst, bytes(4))))
                elif level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_PKTINFO and len(cdata) >= IN6_PKTINFO.size:
                    dst, _ifi = IN6_PKTINFO.unpack_from(cdata)
                    if not ipaddress.IPv6Address(dst).is_link_local:
                        reply_anc.append((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, IN6_PKTINFO.pack(dst, 0)))
            try:
                sock.sendmsg([data], reply_anc, 0, addr)
                self.counters["echo_replies"] += 1
            except OSError as exc:
                self.counters["echo_errors"] += 1
                self.log.debug("echo reply to %s: %s", addr, exc)

    # -- control --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "echo_port": self.echo_port,
            "sink_port": self.sink_port,
            "bound": list(self.bound),
            "streams": len(self.sink.streams),
            "malformed": self.sink.malformed,
        }

    def commands(self) -> dict[str, Handler]:
        return {"streams": self._streams, "stream": self._stream, "reset": self._reset}

    def _streams(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {name: st.as_dict() for name, st in self.sink.streams.items()}

    def _stream(self, args: dict[str, Any]) -> dict[str, Any]:
        sid = args.get("id")
        if not isinstance(sid, str):
            raise ControlError("stream: 'id' (string) required")
        stats = self.sink.streams.get(sid)
        if stats is None:
            raise ControlError(f"no stream {sid!r} seen (known: {sorted(self.sink.streams)})")
        return stats.as_dict()

    def _reset(self, args: dict[str, Any]) -> dict[str, Any]:
        sid = args.get("id")
        self.sink.reset(sid if isinstance(sid, str) else None)
        return {"reset": sid or "all"}
