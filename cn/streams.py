"""Per-stream receive statistics of the correspondent node's UDP sink (pure: time comes in as ``now``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from s2c.lab.traffic import StreamFormatError, parse

# sequence numbers remembered for duplicate detection (a sliding window below the highest seen)
DUP_WINDOW = 1 << 16


@dataclass
class StreamStats:
    """What the sink saw of one stream: counts, gaps, reordering, and the sources it came from."""

    stream: str
    received: int = 0  # unique datagrams
    duplicates: int = 0
    reordered: int = 0  # arrived after a higher sequence number
    max_seq: int = -1
    bytes: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    max_gap: float = 0.0  # largest time between consecutive arrivals (interruption)
    max_gap_at: float = 0.0  # arrival time that ended the largest gap
    delay_sum: float = 0.0
    delay_max: float = 0.0
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None
    source_changes: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[int] = field(default_factory=set, repr=False)

    def add(self, seq: int, sent_at: float, src: str, size: int, now: float) -> None:
        if seq in self._seen or (self.max_seq - seq >= DUP_WINDOW):
            self.duplicates += 1
            return
        self._seen.add(seq)
        if seq < self.max_seq:
            self.reordered += 1
        else:
            self.max_seq = seq
        if len(self._seen) > 2 * DUP_WINDOW:
            floor = self.max_seq - DUP_WINDOW
            self._seen = {s for s in self._seen if s > floor}
        if self.received == 0:
            self.first_at = now
        else:
            gap = now - self.last_at
            if gap > self.max_gap:
                self.max_gap = gap
                self.max_gap_at = now
        self.received += 1
        self.bytes += size
        self.last_at = now
        delay = max(0.0, now - sent_at)
        self.delay_sum += delay
        self.delay_max = max(self.delay_max, delay)
        info = self.sources.get(src)
        if info is None:
            info = self.sources[src] = {"first_seen": now, "last_seen": now, "count": 0}
        info["last_seen"] = now
        info["count"] += 1
        if src != self.source:
            self.source_changes.append({"time": now, "from": self.source, "to": src, "seq": seq})
            self.source = src

    @property
    def lost(self) -> int:
        """Sequence numbers below the highest seen that never arrived (tail losses are invisible here)."""
        return max(0, self.max_seq + 1 - self.received)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "max_seq": self.max_seq,
            "bytes": self.bytes,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "max_gap": round(self.max_gap, 6),
            "max_gap_at": self.max_gap_at,
            "delay_avg": round(self.delay_sum / self.received, 6) if self.received else None,
            "delay_max": round(self.delay_max, 6),
            "source": self.source,
            "sources": self.sources,
            "source_changes": self.source_changes,
        }


class StreamSink:
    """All streams seen by one sink; malformed datagrams are counted and dropped."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamStats] = {}
        self.malformed = 0
        self.datagrams = 0

    def receive(self, data: bytes, src: str, now: float) -> StreamStats | None:
        self.datagrams += 1
        try:
            head = parse(data)
        except StreamFormatError:
            self.malformed += 1
            return None
        stats = self.streams.get(head.stream)
        if stats is None:
            stats = self.streams[head.stream] = StreamStats(head.stream)
        stats.add(head.seq, head.sent_at, src, len(data), now)
        return stats

    def reset(self, stream: str | None = None) -> None:
        if stream is None:
            self.streams.clear()
        else:
            self.streams.pop(stream, None)
