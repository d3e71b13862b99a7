"""UDP test streams: the datagram header (pure) and the sender process.

A stream datagram starts with a fixed header, then zero padding up to the requested size::

    !4s16sQd  magic b"S2CS" | stream id (ASCII, NUL padded, <= 16 bytes) | sequence | send time (s, wall clock)

The sender runs as its own process inside the source node's namespace::

    python -m s2c.lab.traffic send --id NAME --to ADDR[,ADDR6] --port 5001 --rate 100 --size 200 --duration 10
                                   [--src ADDR] [--dev IFACE]

It sends to the first destination address whose family is routable right now: when ``sendto`` fails
(ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, EPERM...) it tries the next address, every tick, counting
send errors, so a stream survives a move between IPv4-only and IPv6-only access. SIGTERM/SIGINT end the
stream early. On exit it prints one JSON summary line on stdout.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

# <linux/in.h>, <linux/in6.h>; the socket module lacks them
IP_FREEBIND = 15
IPV6_FREEBIND = 78

MAGIC = b"S2CS"
HEADER = struct.Struct("!4s16sQd")
HEADER_SIZE = HEADER.size  # 36
MAX_ID = 16
DEFAULT_PORT = 5001
STARTED_MARK = "traffic: sending stream"  # stderr line the runner waits for


class StreamFormatError(ValueError):
    """A datagram is not a well-formed stream datagram."""


@dataclass(frozen=True)
class StreamHeader:
    """Header of one stream datagram (s2c-testbed's own format, docs/control.md)."""

    stream: str
    seq: int
    sent_at: float


def pack(stream: str, seq: int, sent_at: float, size: int = HEADER_SIZE) -> bytes:
    sid = stream.encode("ascii")
    if not sid or len(sid) > MAX_ID or b"\0" in sid:
        raise ValueError(f"stream id must be 1..{MAX_ID} ASCII characters: {stream!r}")
    head = HEADER.pack(MAGIC, sid, seq, sent_at)
    return head + bytes(max(0, size - HEADER_SIZE))


def parse(data: bytes) -> StreamHeader:
    if len(data) < HEADER_SIZE:
        raise StreamFormatError(f"datagram of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, sid, seq, sent_at = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise StreamFormatError(f"bad magic {magic!r}")
    sid = sid.rstrip(b"\0")
    if not sid or b"\0" in sid:
        raise StreamFormatError("empty or malformed stream id")
    try:
        name = sid.decode("ascii")
    except UnicodeDecodeError as exc:
        raise StreamFormatError("stream id is not ASCII") from exc
    if not name.isprintable() or sent_at != sent_at:  # NaN check
        raise StreamFormatError("stream id not printable or timestamp NaN")
    return StreamHeader(name, seq, sent_at)


# -- sender ---------------------------------------------------------------------------------------

# sendto errors meaning "this family/destination is not usable from here right now"
UNROUTABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EPERM,
              errno.EACCES, errno.EAFNOSUPPORT, errno.ENOBUFS, errno.EINVAL, errno.ENODEV}


class Sender:
    """Paced UDP sender over a list of destinations tried in order each tick."""

    def __init__(self, stream: str, destinations: list[str], port: int, rate: float, size: int,
                 src: str | None = None, dev: str | None = None):
        if rate <= 0:
            raise ValueError("rate must be > 0 packets/s")
        pack(stream, 0, 0.0)  # validate the id early
        self.stream = stream
        self.port = port
        self.rate = rate
        self.size = max(size, HEADER_SIZE)
        self.destinations = [str(ipaddress.ip_address(a.strip().strip("[]"))) for a in destinations if a.strip()]
        if not self.destinations:
            raise ValueError("no destination address")
        self.socks: dict[int, socket.socket] = {}
        src_fam = None
        if src:
            src = str(ipaddress.ip_address(src.strip("[]")))
            src_fam = socket.AF_INET6 if ":" in src else socket.AF_INET
            self.destinations = [d for d in self.destinations if (":" in d) == (src_fam == socket.AF_INET6)]
            if not self.destinations:
                raise ValueError(f"no destination of the source address's family ({src})")
        for fam in (socket.AF_INET, socket.AF_INET6):
            if src_fam is not None and fam != src_fam:
                continue
            try:
                s = socket.socket(fam, socket.SOCK_DGRAM)
            except OSError:
                continue
            try:
                if dev:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
                if src:
                    if fam == socket.AF_INET6:
                        s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)  # the HoA may come later
                    else:
                        s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
                    s.bind((src, 0))
            except OSError as exc:
                s.close()
                raise ValueError(f"cannot bind to {src or dev}: {exc.strerror or exc}") from None
            s.setblocking(False)
            self.socks[fam] = s
        self.packets = 0  # sequence numbers used (ticks)
        self.sent = 0
        self.send_errors = 0
        self.errors: dict[str, int] = {}
        self.per_destination: dict[str, int] = {}
        self.current: str | None = None
        self.switches: list[dict[str, Any]] = []
        self.started = 0.0
        self.ended = 0.0
        self._stop = False

    def stop(self, *_a: Any) -> None:
        self._stop = True

    def send_one(self) -> bool:
        now = time.time()
        data = pack(self.stream, self.packets, now, self.size)
        self.packets += 1
        for dest in self.destinations:
            fam = socket.AF_INET6 if ":" in dest else socket.AF_INET
            sock = self.socks.get(fam)
            if sock is None:
                continue
            try:
                sock.sendto(data, (dest, self.port))
            except BlockingIOError:
                self.errors["EAGAIN"] = self.errors.get("EAGAIN", 0) + 1
                continue
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                self.errors[name] = self.errors.get(name, 0) + 1
                continue
            self.sent += 1
            self.per_destination[dest] = self.per_destination.get(dest, 0) + 1
            if dest != self.current:
                self.switches.append({"time": now, "to": dest})
                self.current = dest
            return True
        self.send_errors += 1
        return False

    def run(self, duration: float) -> dict[str, Any]:
        interval = 1.0 / self.rate
        self.started = time.time()
        t0 = time.monotonic()
        end = t0 + duration if duration > 0 else float("inf")
        n = 0
        while not self._stop:
            now = time.monotonic()
            if now >= end:
                break
            due = t0 + n * interval
            if due > now:
                time.sleep(min(due - now, end - now, 0.05))
                continue
            # catch up at most 50 ticks at once after a stall, then resynchronise
            behind = int((now - due) / interval)
            if behind > 50:
                n += behind - 50
            self.send_one()
            n += 1
        self.ended = time.time()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "destinations": self.destinations,
            "port": self.port,
            "rate": self.rate,
            "size": self.size,
            "packets": self.packets,
            "sent": self.sent,
            "send_errors": self.send_errors,
            "errors": self.errors,
            "per_destination": self.per_destination,
            "switches": self.switches,
            "started": self.started,
            "ended": self.ended,
            "duration": round(self.ended - self.started, 6) if self.ended else 0.0,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s2c.lab.traffic")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("send", help="send one UDP stream, print a JSON summary")
    p.add_argument("--id", required=True, help=f"stream id (<= {MAX_ID} ASCII chars)")
    p.add_argument("--to", required=True, help="destination addresses, comma separated, tried in order")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--rate", type=float, default=100.0, help="packets per second")
    p.add_argument("--size", type=int, default=200, help="UDP payload bytes (>= header)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds; 0 = until SIGTERM")
    p.add_argument("--src", help="source address to bind (only destinations of its family are used)")
    p.add_argument("--dev", help="interface to send through (SO_BINDTODEVICE)")
    args = parser.parse_args(argv)
    try:
        sender = Sender(args.id, args.to.split(","), args.port, args.rate, args.size, args.src, args.dev)
    except ValueError as exc:
        print(f"traffic: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, sender.stop)
    signal.signal(signal.SIGINT, sender.stop)
    print(f"{STARTED_MARK} {args.id}", file=sys.stderr, flush=True)
    summary = sender.run(args.duration)
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
