"""Fakes for sans-IO tests: a settable clock and an in-memory datagram network between cores.

A core is anything with ``datagrams_to_send(now) -> [(bytes, (ip, port))]``,
``receive_datagram(data, addr, now)``, ``get_timer()``, ``handle_timer(now)`` and a ``local_addr``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable


class FakeClock:
    """Monotonic time that only moves when a test says so."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> float:
        self.now += dt
        return self.now

    def set(self, t: float) -> float:
        if t < self.now:
            raise ValueError("time cannot go backwards")
        self.now = t
        return self.now


def seeded_rng(seed: int = 0) -> Callable[[int], bytes]:
    """A deterministic ``rng(n) -> bytes`` for reproducible tests (never for real keys)."""
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


@dataclass
class Datagram:
    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytes
    dropped: bool = False


@dataclass
class FakeNetwork:
    """Routes datagrams between cores by destination IP; can drop or rewrite them (NAT)."""

    clock: FakeClock
    drop: Callable[[Datagram], bool] | None = None
    rewrite_src: Callable[[tuple[str, int]], tuple[str, int]] | None = None
    log: list[Datagram] = field(default_factory=list)
    _by_ip: dict[str, Any] = field(default_factory=dict)
    _cores: list[Any] = field(default_factory=list)

    def attach(self, core: Any, *ips: str) -> None:
        if core not in self._cores:
            self._cores.append(core)
        for ip in ips:
            self._by_ip[ip] = core

    def detach_ip(self, ip: str) -> None:
        self._by_ip.pop(ip, None)

    def flush(self, max_rounds: int = 1000) -> int:
        """Deliver until every core is quiet; returns the number of datagrams delivered."""
        delivered = 0
        for _ in range(max_rounds):
            moved = False
            for core in list(self._cores):
                for data, dst in core.datagrams_to_send(self.clock.now):
                    moved = True
                    src = tuple(core.local_addr)
                    if self.rewrite_src is not None:
                        src = self.rewrite_src(src)
                    d = Datagram(self.clock.now, src, tuple(dst), data)
                    self.log.append(d)
                    target = self._by_ip.get(dst[0])
                    if target is None or (self.drop is not None and self.drop(d)):
                        d.dropped = True
                        continue
                    target.receive_datagram(data, src, self.clock.now)
                    delivered += 1
            if not moved:
                return delivered
        raise RuntimeError("network did not settle")

    def next_timer(self) -> float | None:
        ts = [t for t in (core.get_timer() for core in self._cores) if t is not None]
        return min(ts) if ts else None

    def run_timers_until(self, deadline: float) -> None:
        """Advance the clock timer by timer (delivering traffic) up to ``deadline``."""
        self.flush()
        while True:
            t = self.next_timer()
            if t is None or t > deadline:
                break
            self.clock.set(max(t, self.clock.now))
            for core in list(self._cores):
                ct = core.get_timer()
                if ct is not None and ct <= self.clock.now:
                    core.handle_timer(self.clock.now)
            self.flush()
        self.clock.set(max(deadline, self.clock.now))
