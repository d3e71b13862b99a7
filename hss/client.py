"""Minimal Diameter clients for tests and the bench: blocking (``DiameterClient``) and asyncio
(``AsyncDiameterClient``). They do the RFC 6733 initiator chores (CER/CEA, DPR, hop-by-hop and
end-to-end identifiers) and match answers to requests by hop-by-hop id. Not used by the daemon.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket

from s2c.codec.diameter import ApplicationId, DiameterFramer, DiameterMessage, VENDOR_3GPP
from s2c.diameter.messages import LocalIdentity, build_cer, build_dpr

CLIENT_IDENTITY = LocalIdentity(
    origin_host="pgw.epc.mnc001.mcc001.3gppnetwork.org",
    origin_realm="epc.mnc001.mcc001.3gppnetwork.org",
    product_name="s2c-test-client",
    vendor_specific_application_ids=((VENDOR_3GPP, ApplicationId.SWX_3GPP), (VENDOR_3GPP, ApplicationId.S6B_3GPP)),
)


class _Ids:
    def __init__(self) -> None:
        seed = int.from_bytes(os.urandom(4), "big")
        self._hbh = itertools.count(seed & 0x7FFFFFFF)
        self._e2e = itertools.count((seed >> 12) << 20)

    def stamp(self, msg: DiameterMessage) -> DiameterMessage:
        msg.hop_by_hop = next(self._hbh) & 0xFFFFFFFF
        msg.end_to_end = next(self._e2e) & 0xFFFFFFFF
        return msg


class DiameterClient:
    """Blocking Diameter client over TCP (one outstanding request at a time)."""

    def __init__(self, host: str, port: int, identity: LocalIdentity = CLIENT_IDENTITY, timeout: float = 5.0):
        self.identity = identity
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = DiameterFramer()
        self.ids = _Ids()
        self._pending: list[DiameterMessage] = []

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> DiameterMessage:
        """Next message from the server; ConnectionError when the server closed the connection."""
        while not self._pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._pending.extend(self.framer.feed(data))
        return self._pending.pop(0)

    def request(self, msg: DiameterMessage) -> DiameterMessage:
        self.ids.stamp(msg)
        self.sock.sendall(msg.serialize())
        while True:
            ans = self.recv()
            if not ans.is_request and ans.hop_by_hop == msg.hop_by_hop:
                return ans

    def cer(self) -> DiameterMessage:
        return self.request(build_cer(self.identity))

    def close(self, dpr: bool = True) -> None:
        try:
            if dpr:
                self.request(build_dpr(self.identity))
        except (OSError, ConnectionError):
            pass
        finally:
            self.sock.close()

    def __enter__(self) -> "DiameterClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDiameterClient:
    """asyncio Diameter client: many outstanding requests, answers matched by hop-by-hop id."""

    def __init__(self, identity: LocalIdentity = CLIENT_IDENTITY):
        self.identity = identity
        self.ids = _Ids()
        self._waiters: dict[int, asyncio.Future[DiameterMessage]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, host: str, port: int) -> DiameterMessage:
        reader, self.writer = await asyncio.open_connection(host, port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
        return await self.request(build_cer(self.identity))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        framer = DiameterFramer()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for msg in framer.feed(data):
                    fut = self._waiters.pop(msg.hop_by_hop, None)
                    if fut is not None and not fut.done() and not msg.is_request:
                        fut.set_result(msg)
        finally:
            for fut in self._waiters.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))
            self._waiters.clear()

    async def request(self, msg: DiameterMessage, timeout: float = 10.0) -> DiameterMessage:
        assert self.writer is not None
        self.ids.stamp(msg)
        fut: asyncio.Future[DiameterMessage] = asyncio.get_running_loop().create_future()
        self._waiters[msg.hop_by_hop] = fut
        self.writer.write(msg.serialize())
        return await asyncio.wait_for(fut, timeout)

    async def close(self) -> None:
        if self.writer is None:
            return
        try:
            await self.request(build_dpr(self.identity), timeout=2.0)
        except (OSError, ConnectionError, asyncio.TimeoutError):
            pass
        self.writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
        self.writer = None
