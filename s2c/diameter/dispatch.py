"""Dispatch table ``(application_id, command_code, is_request) -> handler`` for Diameter applications."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from s2c.codec.diameter import DiameterMessage

Handler = Callable[..., Any]
"""``handler(msg, *context) -> DiameterMessage | Awaitable[DiameterMessage] | None``."""

H = TypeVar("H", bound=Handler)


class Dispatcher:
    """Routes messages by ``DiameterMessage.key``; also tells the peer which requests exist."""

    def __init__(self) -> None:
        self._table: dict[tuple[int, int, bool], Handler] = {}

    def register(self, application_id: int, command_code: int, is_request: bool = True) -> Callable[[H], H]:
        """Decorator: ``@d.register(ApplicationId.S6B_3GPP, CommandCode.DIAMETER_EAP)``."""

        def deco(fn: H) -> H:
            self.add(application_id, command_code, fn, is_request)
            return fn

        return deco

    def add(self, application_id: int, command_code: int, handler: Handler, is_request: bool = True) -> None:
        key = (int(application_id), int(command_code), bool(is_request))
        if key in self._table:
            raise ValueError(f"handler already registered for {key}")
        self._table[key] = handler

    def lookup(self, msg: DiameterMessage) -> Handler | None:
        return self._table.get(msg.key)

    def supported_requests(self) -> dict[int, frozenset[int]]:
        """``{application_id: {command_code}}`` for ``DiameterPeer(supported_requests=...)``."""
        out: dict[int, set[int]] = {}
        for app, cmd, req in self._table:
            if req:
                out.setdefault(app, set()).add(cmd)
        return {a: frozenset(c) for a, c in out.items()}

    def __call__(self, msg: DiameterMessage, *context: Any) -> DiameterMessage | Awaitable[DiameterMessage] | None:
        """Call the handler for ``msg``; None when there is none (the peer already filters unknown requests)."""
        h = self._table.get(msg.key)
        if h is None:
            return None
        result: DiameterMessage | Awaitable[DiameterMessage] | None = h(msg, *context)
        return result
