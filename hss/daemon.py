"""HSS / 3GPP AAA server daemon: Diameter over TCP serving SWx (HSS function) and S6b (AAA function).

``python -m hss --config node.json`` (see :mod:`s2c.runtime.node`). Params (docs/hss.md):

    db:          SQLite file (default: <control socket dir>/<node>-hss.db)
    subscribers: list of subscribers upserted at start (same fields as ``s2c hss import``)
    diameter:    {listen: [addresses] (default ["127.0.0.1"]), port: 3868,
                  origin_host: hss.epc.mnc001.mcc001.3gppnetwork.org,
                  origin_realm: epc.mnc001.mcc001.3gppnetwork.org,
                  cer_timeout: 5.0 (seconds a new connection has to send its CER),
                  watchdog_interval: 30.0 (RFC 3539 Tw)}
    method:      aka | aka'  (EAP method the AAA function runs on S6b; default aka)
    network_name: access network name / ANID for EAP-AKA' (AT_KDF_INPUT, SWx ANID; default WLAN)
    sqn_reserve: SQNs persisted ahead per fsync (default 32; 1 = one fsync per vector)
    session_timeout: seconds an unfinished S6b EAP session lives (default 60)
    av_prefetch: the AAA function keeps one spare vector per IMSI, fetched after each DEA that used
                 one (default true; false: a SWx MAR/MAA on every full authentication)
    av_max_age:  seconds a spare vector may wait for its authentication (default 30)
    av_refill_delay: seconds after the DEA before the spare is fetched (default 0.05: after the attach's
                 remaining IKE exchanges, so the refill does not compete with them for the CPU)

Each TCP connection drives a sans-IO :class:`s2c.diameter.peer.DiameterPeer` in the responder role
(RFC 6733 §5.6): CER/CEA (5010 and close without a common application), DWR/DWA, DPR/DPA,
requests before CER answered 3002 and the connection closed after ``cer_timeout``, unknown
applications 3007, unknown commands 3001, unknown mandatory AVPs 5001, unparsable AVPs 5014. A
stream that cannot be framed is counted as ``malformed`` and that connection is closed; other peers
are unaffected. Accepted requests are dispatched on (application, command): SWx MAR ->
:class:`hss.hss.HssFunction`, S6b DER -> :class:`hss.aaa.AaaFunction`. Stop: DPR (REBOOTING) to
every open peer, wait for the DPAs (1.5 s at most), then the DB is closed.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import socket
import sqlite3
import time
from typing import Any

from s2c.codec.diameter import (
    ApplicationId,
    CommandCode,
    DiameterDecodeError,
    DiameterMessage,
    DisconnectCause,
    ResultCode,
    VENDOR_3GPP,
)
from s2c.diameter.messages import LocalIdentity, build_error_answer
from s2c.diameter.peer import (
    CapabilitiesExchangeFailed,
    DiameterPeer,
    DisconnectRequested,
    MessageDropped,
    PeerClosed,
    PeerOpened,
    PeerRole,
    PeerState,
    RequestReceived,
)
from s2c.runtime.control import Handler
from s2c.runtime.node import NodeDaemon

from hss.aaa import AaaFunction, LoopbackSwx
from hss.hss import HssFunction
from hss.store import StoreError, SubscriberStore

DEFAULT_ORIGIN_HOST = "hss.epc.mnc001.mcc001.3gppnetwork.org"
DEFAULT_ORIGIN_REALM = "epc.mnc001.mcc001.3gppnetwork.org"
DEFAULT_PORT = 3868
SERVED_APPS = (ApplicationId.SWX_3GPP, ApplicationId.S6B_3GPP)
MAX_WRITE_BUFFER = 4 << 20
"""Bytes of unsent answers after which a connection is dropped (the peer is not reading)."""
COUNTER_NAMES = ("auth_ok", "auth_fail", "auth_resync", "auth_unknown", "malformed")


SUPPORTED_REQUESTS = {
    ApplicationId.SWX_3GPP: {CommandCode.MULTIMEDIA_AUTH},
    ApplicationId.S6B_3GPP: {CommandCode.DIAMETER_EAP},
}


class Connection(asyncio.Protocol):
    """One TCP connection driving a sans-IO :class:`DiameterPeer` (responder role)."""

    def __init__(self, daemon: "HssDaemon") -> None:
        self.daemon = daemon
        self.id = next(daemon._ids)
        self.loop = asyncio.get_running_loop()
        self.peer = DiameterPeer(
            PeerRole.RESPONDER, daemon.identity, self.loop.time(), rng=os.urandom,
            cer_timeout=daemon.cer_timeout, watchdog_interval=daemon.watchdog_interval,
            supported_requests=SUPPORTED_REQUESTS,
        )
        self.transport: asyncio.Transport | None = None
        self.address = "?"
        self.requests = 0
        self.closed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername") or ("?", 0)
        self.address = f"{peername[0]}:{peername[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.daemon.connections[self.id] = self
        self._pump()

    def data_received(self, data: bytes) -> None:
        self.peer.receive_data(data, self.loop.time())
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.connection_lost("transport closed" if exc is None else str(exc))
        self._pump()
        self._finish()

    # -- helpers ------------------------------------------------------------------------------
    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.peer.handle_timer(self.loop.time())
        self._pump()

    def disconnect(self) -> None:
        if self.peer.state is PeerState.OPEN:
            self.peer.disconnect(self.loop.time(), DisconnectCause.REBOOTING)
            self._pump()
        elif self.transport is not None:
            self.transport.close()

    def _pump(self) -> None:
        """Process the peer's events, send its bytes, re-arm its timer."""
        peer = self.peer
        closed = False
        while (ev := peer.next_event()) is not None:
            if isinstance(ev, RequestReceived):
                self.requests += 1
                answer = self.daemon.dispatch(ev.request, self)
                if peer.state is not PeerState.CLOSED:
                    peer.send_answer(answer)
            elif isinstance(ev, MessageDropped):
                self.daemon.on_dropped(self, ev)
            elif isinstance(ev, PeerOpened):
                self.daemon.log.info("peer %s open: %s (%s) apps %s", self.address, ev.remote_host,
                                     ev.remote_realm, sorted(ev.applications))
            elif isinstance(ev, CapabilitiesExchangeFailed):
                self.daemon.counters["cer_rejected"] += 1
                self.daemon.log.warning("peer %s: capabilities exchange failed (%s)", self.address, ev.result_code)
            elif isinstance(ev, DisconnectRequested):
                self.daemon.log.info("peer %s (%s) sent DPR (cause %s)", self.address, peer.remote_host, ev.cause)
            elif isinstance(ev, PeerClosed):
                closed = True
                self.daemon.on_closed(self, ev.reason)
        data = peer.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                # a peer that sends requests but never reads its answers: drop it, not our memory
                self.daemon.counters["peer_not_reading"] += 1
                self.daemon.log.warning("peer %s does not read its answers; closing", self.address)
                self.transport.abort()
                peer.connection_lost("peer not reading")
                closed = True
        if closed or peer.state is PeerState.CLOSED:
            if self.transport is not None:
                self.transport.close()
            self._finish()
            return
        when = peer.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(when, self._on_timer) if when is not None else None
            self._timer_at = when

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.daemon.connections.pop(self.id, None)
        self.closed.set()

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "address": self.address, "state": self.peer.state.value,
                "origin_host": self.peer.remote_host, "origin_realm": self.peer.remote_realm,
                "requests": self.requests}


class HssDaemon(NodeDaemon):
    kind = "hss"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        p = config.params or {}
        dia = p.get("diameter") or {}
        self.listen: list[str] = list(dia.get("listen") or ["127.0.0.1"])
        self.port = int(dia.get("port", DEFAULT_PORT))
        self.cer_timeout = float(dia.get("cer_timeout", 5.0))
        origin_host = dia.get("origin_host", DEFAULT_ORIGIN_HOST)
        origin_realm = dia.get("origin_realm", DEFAULT_ORIGIN_REALM)
        self.method = str(p.get("method", "aka"))
        if self.method not in ("aka", "aka'"):
            raise ValueError(f"method must be aka or aka', got {self.method!r}")
        self.db_path = p.get("db") or os.path.join(os.path.dirname(config.control) or ".", f"{config.node}-hss.db")
        self.sqn_reserve = int(p.get("sqn_reserve", 32))
        self.session_timeout = float(p.get("session_timeout", 60.0))
        self.av_prefetch = bool(p.get("av_prefetch", True))
        self.av_max_age = float(p.get("av_max_age", 30.0))
        self.av_refill_delay = max(0.0, float(p.get("av_refill_delay", 0.05)))
        self._refill_scheduled = False
        self.network_name = str(p.get("network_name", "WLAN"))
        self.initial_subscribers = list(p.get("subscribers") or [])
        self.identity = LocalIdentity(
            origin_host=origin_host,
            origin_realm=origin_realm,
            host_ip_addresses=tuple(a for a in self.listen if a not in ("0.0.0.0", "::")) or ("127.0.0.1",),
            product_name="s2c-hss",
            vendor_specific_application_ids=tuple((VENDOR_3GPP, a) for a in SERVED_APPS),
            origin_state_id=int(time.time()) & 0xFFFFFFFF,
        )
        for name in COUNTER_NAMES:
            self.counters[name] += 0
        self.store: SubscriberStore | None = None
        self.hss: HssFunction | None = None
        self.aaa: AaaFunction | None = None
        self.watchdog_interval = float(dia.get("watchdog_interval", 30.0))
        self.connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._servers: list[asyncio.base_events.Server] = []
        self._purger: asyncio.Task[None] | None = None
        self.bound: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.store = SubscriberStore(self.db_path, sqn_reserve=self.sqn_reserve)
        for i, entry in enumerate(self.initial_subscribers):
            try:
                self.store.upsert(entry)
            except StoreError as exc:
                raise ValueError(f"params.subscribers[{i}]: {exc}") from None
        self.hss = HssFunction(self.store, os.urandom, self.identity, self.counters)
        self.aaa = AaaFunction(
            identity=self.identity,
            swx=LoopbackSwx(self.hss),
            rng=os.urandom,
            method=self.method,
            session_timeout=self.session_timeout,
            counters=self.counters,
            network_name=self.network_name,
            profile=self.store.get,
            av_prefetch=self.av_prefetch,
            av_max_age=self.av_max_age,
        )
        loop = asyncio.get_running_loop()
        for host in self.listen:
            server = await loop.create_server(lambda: Connection(self), host=host, port=self.port, reuse_address=True)
            self._servers.append(server)
            for sock in server.sockets:
                addr = sock.getsockname()
                self.bound.append(f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}")
        self._purger = asyncio.get_running_loop().create_task(self._purge_loop())
        # Hot-path hygiene: log records skip thread/process lookups, and start-up objects leave
        # the cyclic GC's generations (fewer, shorter collections while serving).
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        gc.collect()
        gc.freeze()
        self.log.info("diameter %s as %s (%s), %d subscriber(s), db %s, method %s",
                      " ".join(self.bound), self.identity.origin_host, self.identity.origin_realm,
                      self.store.count(), self.db_path, self.method)

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            self._purger = None
        for server in self._servers:
            server.close()
        self._servers.clear()
        conns = list(self.connections.values())
        for c in conns:
            c.disconnect()  # DPR (REBOOTING) to open peers, wait for DPA below
        if conns:
            try:
                await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in conns)), 1.5)
            except asyncio.TimeoutError:
                pass
        for c in list(self.connections.values()):
            if c.transport is not None:
                c.transport.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    # -- control ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "listening": self.bound,
            "origin_host": self.identity.origin_host,
            "origin_realm": self.identity.origin_realm,
            "method": self.method,
            "db": self.db_path,
            "subscribers": self.store.count() if self.store else 0,
            "sessions": self.aaa.session_count() if self.aaa else 0,
            "peers": [c.public() for c in self.connections.values()],
        }

    def commands(self) -> dict[str, Handler]:
        return {"subscribers": self._subscribers_cmd}

    def _subscribers_cmd(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        return [s.public() for s in self.store.list()] if self.store else []

    # -- sessions ---------------------------------------------------------------------------------
    async def _purge_loop(self) -> None:
        period = max(0.5, min(5.0, self.session_timeout / 4))
        while True:
            await asyncio.sleep(period)
            if self.aaa is not None:
                n = self.aaa.purge(asyncio.get_running_loop().time())
                if n:
                    self.log.info("purged %d timed-out S6b session(s)", n)

    # -- Diameter --------------------------------------------------------------------------------
    def dispatch(self, req: DiameterMessage, conn: Connection) -> DiameterMessage:
        """Answer one application request the peer accepted (SWx MAR or S6b DER)."""
        app, cmd = req.application_id, req.command_code
        try:
            if app == ApplicationId.SWX_3GPP and cmd == CommandCode.MULTIMEDIA_AUTH:
                return self.hss.handle_mar(req)  # type: ignore[union-attr]
            if app == ApplicationId.S6B_3GPP and cmd == CommandCode.DIAMETER_EAP:
                answer = self.aaa.handle_der(req, self.loop_time())  # type: ignore[union-attr]
                if self.aaa.refill_pending and not self._refill_scheduled:  # type: ignore[union-attr]
                    # after the caller has written this DEA and the attach has moved on
                    self._refill_scheduled = True
                    asyncio.get_running_loop().call_later(self.av_refill_delay, self._refill)
                return answer
        except DiameterDecodeError as exc:
            self.counters["malformed"] += 1
            self.log.warning("peer %s: malformed request (%s)", conn.address, exc)
            return build_error_answer(req, self.identity, ResultCode.DIAMETER_INVALID_AVP_VALUE,
                                      error_message=str(exc)[:120])
        except (StoreError, sqlite3.Error) as exc:
            self.counters["store_error"] += 1
            self.log.error("peer %s: store error %s", conn.address, exc)
            return build_error_answer(req, self.identity, ResultCode.DIAMETER_UNABLE_TO_COMPLY)
        except Exception:  # noqa: BLE001 - one bad request never takes the daemon down
            self.counters["internal_error"] += 1
            self.log.exception("peer %s: request %d/%d failed", conn.address, app, cmd)
            return build_error_answer(req, self.identity, ResultCode.DIAMETER_UNABLE_TO_COMPLY)
        return build_error_answer(req, self.identity, ResultCode.DIAMETER_COMMAND_UNSUPPORTED)

    def _refill(self) -> None:
        self._refill_scheduled = False
        if self.aaa is None:
            return
        try:
            self.aaa.refill(self.loop_time())
        except (StoreError, sqlite3.Error) as exc:
            self.counters["store_error"] += 1
            self.log.error("spare vector refill: store error %s", exc)
        except Exception:  # noqa: BLE001 - a refill never takes the daemon down
            self.counters["internal_error"] += 1
            self.log.exception("spare vector refill failed")

    @staticmethod
    def loop_time() -> float:
        return asyncio.get_running_loop().time()

    def on_dropped(self, conn: Connection, ev: MessageDropped) -> None:
        if ev.reason.startswith("malformed"):
            self.counters["malformed"] += 1
        else:
            self.counters["dropped"] += 1
        if ev.result_code is not None:
            self.counters[f"rejected_{int(ev.result_code)}"] += 1
        self.log.info("peer %s: dropped message (%s%s)", conn.address, ev.reason,
                      "" if ev.result_code is None else f", answered {int(ev.result_code)}")

    def on_closed(self, conn: Connection, reason: str) -> None:
        if reason.startswith("framing error"):
            self.counters["malformed"] += 1
        if "no CER" in reason:
            self.counters["peer_no_cer"] += 1
        level = self.log.warning if ("error" in reason or "no CER" in reason) else self.log.info
        level("peer %s (%s) closed: %s", conn.address, conn.peer.remote_host, reason)


__all__ = ["HssDaemon", "Connection"]
