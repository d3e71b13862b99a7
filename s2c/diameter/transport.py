"""Thin asyncio glue around :class:`DiameterPeer` over TCP (RFC 6733 §2.1, default port 3868).

``serve(host, port, make_peer, on_request)`` runs a responder per accepted connection;
``connect(host, port, identity) -> DiameterClient`` opens an initiator and waits for CEA.
``DiameterClient.request(msg)`` supports any number of requests in flight on one connection.
All protocol decisions live in the sans-IO peer; this module only moves bytes, runs one timer
and maps peer events to futures / the application's request handler.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from s2c.codec.diameter import DIAMETER_PORT, DiameterMessage, DisconnectCause, ResultCode
from s2c.diameter.messages import LocalIdentity, build_error_answer
from s2c.diameter.peer import (
    AnswerReceived,
    CapabilitiesExchangeFailed,
    DiameterPeer,
    MessageDropped,
    PeerClosed,
    PeerNotOpen,
    PeerOpened,
    PeerRole,
    RequestReceived,
    RequestTimedOut,
)

__all__ = [
    "DIAMETER_PORT",
    "DiameterConnection",
    "DiameterClient",
    "DiameterError",
    "DiameterTimeout",
    "DiameterConnectionClosed",
    "RequestHandler",
    "serve",
    "connect",
]

log = logging.getLogger(__name__)

RequestHandler = Callable[
    [DiameterMessage, "DiameterConnection"], "DiameterMessage | Awaitable[DiameterMessage | None] | None"
]
"""``on_request(request, connection)`` returns the answer (or an awaitable of it); None = answer later
via ``connection.send_answer``."""


class DiameterError(Exception):
    """Transport-level failure of a Diameter request or connection."""


class DiameterTimeout(DiameterError):
    """No answer within the peer's request timeout."""


class DiameterConnectionClosed(DiameterError):
    """The connection closed (or never opened) before an answer arrived."""


class DiameterConnection:
    """Drives one :class:`DiameterPeer` over an asyncio stream pair."""

    def __init__(
        self,
        peer: DiameterPeer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_request: RequestHandler | None = None,
    ) -> None:
        self.peer = peer
        self._reader = reader
        self._writer = writer
        self._on_request = on_request
        self._loop = asyncio.get_running_loop()
        self._futures: dict[int, asyncio.Future[DiameterMessage]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.opened: asyncio.Future[PeerOpened] = self._loop.create_future()
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self.failure: CapabilitiesExchangeFailed | None = None
        self.dropped = 0
        self.peername = writer.get_extra_info("peername")

    # ---- public ------------------------------------------------------------------------------
    async def request(self, msg: DiameterMessage,
                      after_send: Callable[[], None] | None = None) -> DiameterMessage:
        """Send a request and wait for its answer (raises DiameterTimeout / DiameterConnectionClosed).

        ``after_send``: called once the request has been handed to the socket (right after the flush
        that writes it), while the answer is awaited - for work that can overlap the peer's."""
        if self.closed.is_set():
            raise DiameterConnectionClosed(self.close_reason or "closed")
        try:
            self.peer.send_request(msg, self._loop.time())
        except PeerNotOpen as exc:
            raise DiameterConnectionClosed(str(exc)) from None
        fut: asyncio.Future[DiameterMessage] = self._loop.create_future()
        self._futures[msg.hop_by_hop] = fut
        self._after_input()  # schedules the flush (call_soon) unless one is pending already
        if after_send is not None:
            self._loop.call_soon(after_send)  # FIFO: runs after that flush has written the request
        return await fut

    def send_answer(self, answer: DiameterMessage) -> None:
        """Answer a request later (when ``on_request`` returned None)."""
        if self.closed.is_set():
            return
        self.peer.send_answer(answer)
        self._after_input()

    async def close(self, cause: int = DisconnectCause.REBOOTING, timeout: float = 5.0) -> None:
        """DPR/DPA then close the socket."""
        if not self.closed.is_set():
            self.peer.disconnect(self._loop.time(), cause)
            self._after_input()
            try:
                await asyncio.wait_for(self.closed.wait(), timeout)
            except asyncio.TimeoutError:
                self.peer.connection_lost("close timeout")
                self._after_input()
        await self._close_transport()

    async def run(self) -> None:
        """Read loop; returns when the connection is closed."""
        self._after_input()  # initiator's CER, responder's CER timer
        try:
            while not self.closed.is_set():
                data = await self._reader.read(65536)
                if not data:
                    self.peer.connection_lost("connection closed by peer")
                    self._after_input()
                    break
                self.peer.receive_data(data, self._loop.time())
                self._after_input()
        except (ConnectionError, OSError) as exc:
            self.peer.connection_lost(f"transport error: {exc}")
            self._after_input()
        finally:
            await self._close_transport()

    # ---- internals ---------------------------------------------------------------------------
    def _after_input(self) -> None:
        peer = self.peer
        while (ev := peer.next_event()) is not None:
            self._handle_event(ev)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        self._arm_timer()

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.peer.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)
        if self.closed.is_set() and not self._writer.is_closing():
            self._writer.close()

    def _arm_timer(self) -> None:
        t = self.peer.get_timer()
        if t is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        if self._timer_at is not None and self._timer_at <= t:
            return  # already scheduled earlier; it will re-arm
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = t
        self._timer = self._loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.peer.handle_timer(self._loop.time())
        self._after_input()

    def _handle_event(self, ev: object) -> None:
        if isinstance(ev, AnswerReceived):
            fut = self._futures.pop(ev.request.hop_by_hop, None)
            if fut is not None and not fut.done():
                fut.set_result(ev.answer)
        elif isinstance(ev, RequestReceived):
            self._dispatch(ev.request)
        elif isinstance(ev, RequestTimedOut):
            fut = self._futures.pop(ev.request.hop_by_hop, None)
            if fut is not None and not fut.done():
                if self.peer.is_open:
                    fut.set_exception(DiameterTimeout(f"no answer to command {ev.request.command_code}"))
                else:
                    fut.set_exception(DiameterConnectionClosed("connection closed"))
        elif isinstance(ev, PeerOpened):
            if not self.opened.done():
                self.opened.set_result(ev)
        elif isinstance(ev, CapabilitiesExchangeFailed):
            self.failure = ev
        elif isinstance(ev, MessageDropped):
            self.dropped += 1
            log.debug("diameter %s: dropped: %s", self.peername, ev.reason)
        elif isinstance(ev, PeerClosed):
            self.close_reason = ev.reason
            log.info("diameter %s: closed: %s", self.peername, ev.reason)
            self.closed.set()
            if not self.opened.done():
                self.opened.set_exception(DiameterConnectionClosed(ev.reason))
                self.opened.exception()  # mark retrieved
            for fut in self._futures.values():
                if not fut.done():
                    fut.set_exception(DiameterConnectionClosed(ev.reason))
            self._futures.clear()

    def _dispatch(self, req: DiameterMessage) -> None:
        if self._on_request is None:
            self._answer_error(req, "no request handler")
            return
        try:
            result = self._on_request(req, self)
        except Exception:
            log.exception("diameter request handler failed")
            self._answer_error(req, "handler error")
            return
        if result is None:
            return
        if isinstance(result, DiameterMessage):
            self.peer.send_answer(result)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._await_answer(req, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _await_answer(self, req: DiameterMessage, aw: Awaitable[DiameterMessage | None]) -> None:
        try:
            ans = await aw
        except Exception:
            log.exception("diameter request handler failed")
            self._answer_error(req, "handler error")
            self._after_input()
            return
        if ans is not None:
            self.send_answer(ans)

    def _answer_error(self, req: DiameterMessage, why: str) -> None:
        if not self.closed.is_set():
            self.peer.send_answer(build_error_answer(req, self.peer.identity, ResultCode.DIAMETER_UNABLE_TO_COMPLY,
                                                     error_message=why))

    async def _close_transport(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if not self.closed.is_set():
            self.peer.connection_lost("transport closed")
            while (ev := self.peer.next_event()) is not None:
                self._handle_event(ev)
        data = self.peer.data_to_send()
        if not self._writer.is_closing():
            if data:
                self._writer.write(data)
            self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        for t in list(self._tasks):
            t.cancel()


class DiameterClient(DiameterConnection):
    """Initiator side connection returned by :func:`connect`."""

    _run_task: asyncio.Task[None]

    async def __aenter__(self) -> DiameterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect(
    host: str,
    port: int = DIAMETER_PORT,
    identity: LocalIdentity | None = None,
    *,
    peer: DiameterPeer | None = None,
    on_request: RequestHandler | None = None,
    timeout: float = 10.0,
    **peer_kwargs: Any,
) -> DiameterClient:
    """Open TCP, run CER/CEA; return the Open client or raise DiameterConnectionClosed.

    Pass either ``identity`` (a :class:`DiameterPeer` initiator is built with ``peer_kwargs``,
    e.g. ``watchdog_interval``, ``request_timeout``, ``rng``) or a ready ``peer``.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    loop = asyncio.get_running_loop()
    if peer is None:
        if identity is None:
            raise ValueError("connect() needs identity or peer")
        peer = DiameterPeer(PeerRole.INITIATOR, identity, loop.time(), **peer_kwargs)
    client = DiameterClient(peer, reader, writer, on_request)
    client._run_task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(asyncio.shield(client.opened), timeout)
    except (asyncio.TimeoutError, DiameterConnectionClosed) as exc:
        client.peer.connection_lost("CER/CEA failed")
        await client._close_transport()
        reason = client.failure.result_code if client.failure else exc
        raise DiameterConnectionClosed(f"capabilities exchange failed: {reason}") from None
    return client


async def serve(
    host: str,
    port: int,
    make_peer: Callable[[float], DiameterPeer],
    on_request: RequestHandler,
    *,
    on_connection: Callable[[DiameterConnection], None] | None = None,
) -> asyncio.Server:
    """Listen on TCP; each connection gets ``make_peer(now)`` (a responder) and ``on_request``.

    Returns the started ``asyncio.Server`` (use ``async with server`` / ``server.close()``).
    """
    loop = asyncio.get_running_loop()
    conns: set[DiameterConnection] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = DiameterConnection(make_peer(loop.time()), reader, writer, on_request)
        conns.add(conn)
        if on_connection is not None:
            on_connection(conn)
        try:
            await conn.run()
        finally:
            conns.discard(conn)

    server = await asyncio.start_server(handle, host, port)
    server.diameter_connections = conns  # type: ignore[attr-defined]
    return server
