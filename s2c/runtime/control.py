"""Control channel between the scenario runner and node daemons (docs/control.md).

A Unix stream socket carrying JSON lines. Request ``{"id": N, "cmd": "status", "args": {...}}``;
reply ``{"id": N, "ok": true, "result": {...}}`` or ``{"id": N, "ok": false, "error": "text"}``.
The server side is asyncio (inside daemons); the client is blocking (runner, CLI, tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]
MAX_LINE = 1 << 20


class ControlError(Exception):
    """A control request failed (transport error, or the daemon answered ok=false)."""


class ControlServer:
    """Serve ``handlers[cmd](args)`` on a Unix socket; one JSON line per request and reply."""

    def __init__(self, path: str, handlers: dict[str, Handler]):
        self.path = path
        self.handlers = handlers
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_LINE)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - closing best effort
                pass
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._reply(writer, {"id": None, "ok": False, "error": "request line too long"})
                    break
                if not line:
                    break
                reply = await self.dispatch(line)
                await self._reply(writer, reply)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply, default=_json_default).encode() + b"\n")
        await writer.drain()

    async def dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError("request must be an object with a string 'cmd'")
        except ValueError as exc:
            return {"id": None, "ok": False, "error": f"bad request: {exc}"}
        rid = request.get("id")
        cmd = request["cmd"]
        args = request.get("args") or {}
        handler = self.handlers.get(cmd)
        if handler is None:
            return {"id": rid, "ok": False, "error": f"unknown command {cmd!r}; known: {sorted(self.handlers)}"}
        if not isinstance(args, dict):
            return {"id": rid, "ok": False, "error": "'args' must be an object"}
        try:
            result = handler(args)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except ControlError as exc:
            return {"id": rid, "ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bad command never kills the daemon
            log.exception("control command %s failed", cmd)
            return {"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"id": rid, "ok": True, "result": result}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


class ControlClient:
    """Blocking client: ``ControlClient(path).call("status")``."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.timeout = timeout
        self._next_id = 1

    def call(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        rid = self._next_id
        self._next_id += 1
        data = json.dumps({"id": rid, "cmd": cmd, "args": args}, default=_json_default).encode() + b"\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout if timeout is None else timeout)
                sock.connect(self.path)
                sock.sendall(data)
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except (OSError, socket.timeout) as exc:
            raise ControlError(f"control socket {self.path}: {exc}") from exc
        if not buf:
            raise ControlError(f"control socket {self.path}: connection closed without a reply")
        reply = json.loads(buf)
        if not reply.get("ok"):
            raise ControlError(reply.get("error") or "request failed")
        return reply.get("result")


async def acall(path: str, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
    """Asyncio client for one request (used by daemons talking to each other in tests)."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path, limit=MAX_LINE), timeout)
    try:
        writer.write(json.dumps({"id": 1, "cmd": cmd, "args": args}, default=_json_default).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    reply = json.loads(line)
    if not reply.get("ok"):
        raise ControlError(reply.get("error") or "request failed")
    return reply.get("result")
