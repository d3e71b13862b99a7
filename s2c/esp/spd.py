"""Security Policy Database and SA Database (RFC 4301 §4.4.1-4.4.2), sized for a testbed.

``Spd.lookup_outbound(src, dst, proto, sport, dport)`` walks policies in priority order over raw
address bytes (ints and masks, no ipaddress objects on the hot path) with a small flow cache;
``Sad`` maps an inbound SPI to its SA. Both are pure data structures.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Any, Generic, Iterable, Iterator, TypeVar

from s2c.codec.esp import UnknownSpi

T = TypeVar("T")

_ANY_PORTS = (0, 65535)


def selectors_from_ts(ts_local: Iterable[Any], ts_remote: Iterable[Any]) -> list["Selector"]:
    """Outbound selectors (src = local, dst = remote) for IKEv2 traffic selectors (RFC 7296 §3.13.1).

    Each TS is an address range (``start_addr``, ``end_addr``, ``ip_protocol``, ``start_port``,
    ``end_port``); ranges become CIDR prefixes; a protocol mismatch between the two sides narrows to
    the non-zero one.
    """
    out = []
    for lt in ts_local:
        for rt in ts_remote:
            if ipaddress.ip_address(lt.start_addr).version != ipaddress.ip_address(rt.start_addr).version:
                continue
            lp, rp = int(lt.ip_protocol), int(rt.ip_protocol)
            if lp and rp and lp != rp:
                continue
            for sn in ipaddress.summarize_address_range(ipaddress.ip_address(lt.start_addr), ipaddress.ip_address(lt.end_addr)):
                for dn in ipaddress.summarize_address_range(ipaddress.ip_address(rt.start_addr), ipaddress.ip_address(rt.end_addr)):
                    out.append(Selector(str(sn), str(dn), lp or rp, (int(lt.start_port), int(lt.end_port)),
                                        (int(rt.start_port), int(rt.end_port))))
    return out


class PolicyAction(enum.Enum):
    """RFC 4301 §4.4.1 processing choices."""

    PROTECT = "protect"
    BYPASS = "bypass"
    DISCARD = "discard"


def _prefix(p: str) -> tuple[int, int, int, int]:
    """(version, network int, mask int, prefix length) of a prefix string like 2001:db8::/64."""
    net = ipaddress.ip_network(p, strict=False)
    bits = net.max_prefixlen
    mask = ((1 << bits) - 1) ^ ((1 << (bits - net.prefixlen)) - 1)
    return net.version, int(net.network_address), mask, net.prefixlen


@dataclass(frozen=True)
class Selector:
    """Traffic selector (RFC 4301 §4.4.1.1): prefixes, next-layer protocol (0 = any) and port ranges."""

    src: str
    dst: str
    proto: int = 0
    sport: tuple[int, int] = _ANY_PORTS
    dport: tuple[int, int] = _ANY_PORTS

    def __post_init__(self) -> None:
        s, d = _prefix(self.src), _prefix(self.dst)
        if s[0] != d[0]:
            raise ValueError("selector src and dst are of different IP versions")
        object.__setattr__(self, "_s", s)
        object.__setattr__(self, "_d", d)

    @property
    def version(self) -> int:
        return self._s[0]  # type: ignore[attr-defined]

    def matches(self, src: int, dst: int, proto: int, sport: int, dport: int) -> bool:
        _, sn, sm, _ = self._s  # type: ignore[attr-defined]
        _, dn, dm, _ = self._d  # type: ignore[attr-defined]
        if src & sm != sn or dst & dm != dn:
            return False
        if self.proto and proto != self.proto:
            return False
        if self.sport != _ANY_PORTS and not self.sport[0] <= sport <= self.sport[1]:
            return False
        if self.dport != _ANY_PORTS and not self.dport[0] <= dport <= self.dport[1]:
            return False
        return True

    def specificity(self) -> tuple[int, ...]:
        s, d = self._s, self._d  # type: ignore[attr-defined]
        return (bool(self.proto), d[3], s[3], self.dport != _ANY_PORTS, self.sport != _ANY_PORTS)


@dataclass
class Policy(Generic[T]):
    """One SPD entry: selector -> action, and for PROTECT the outbound SA (RFC 4301 §4.4.1.2)."""

    selector: Selector
    action: PolicyAction = PolicyAction.PROTECT
    sa: T | None = None
    priority: int = 0  # lower wins; ties broken by specificity


class Spd(Generic[T]):
    """Ordered outbound policies with a per-flow cache."""

    def __init__(self, cache_size: int = 4096) -> None:
        self._policies: list[Policy[T]] = []
        self._cache: dict[tuple, Policy[T] | None] = {}
        self._cache_size = cache_size
        # per IP version: True when no policy looks beyond addresses, so (src, dst) bytes are the key
        self._addr_only = {4: True, 6: True}
        self._fast: dict[bytes, Policy[T] | None] = {}

    def _changed(self) -> None:
        self._cache.clear()
        self._fast.clear()
        for v in (4, 6):
            self._addr_only[v] = all(
                not p.selector.proto and p.selector.sport == _ANY_PORTS and p.selector.dport == _ANY_PORTS
                for p in self._policies if p.selector.version == v
            )

    def __iter__(self) -> Iterator[Policy[T]]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)

    def add(self, policy: Policy[T]) -> None:
        self._policies.append(policy)
        self._policies.sort(key=lambda p: (p.priority, tuple(-x for x in p.selector.specificity())))
        self._changed()

    def remove_sa(self, sa: T) -> int:
        """Drop policies bound to ``sa``; return how many."""
        before = len(self._policies)
        self._policies = [p for p in self._policies if p.sa is not sa]
        self._changed()
        return before - len(self._policies)

    def rebind(self, old: T, new: T) -> None:
        """Point policies of ``old`` at ``new`` (make-before-break rekey)."""
        for p in self._policies:
            if p.sa is old:
                p.sa = new
        self._changed()

    def clear_cache(self) -> None:
        self._changed()

    def lookup(self, src: bytes, dst: bytes, proto: int = 0, sport: int = 0, dport: int = 0) -> Policy[T] | None:
        """First matching policy for a packet (addresses as 4- or 16-byte strings), or None."""
        key = (src, dst, proto, sport, dport)
        cache = self._cache
        try:
            return cache[key]
        except KeyError:
            pass
        version = 4 if len(dst) == 4 else 6
        s = int.from_bytes(src, "big")
        d = int.from_bytes(dst, "big")
        found = None
        for p in self._policies:
            sel = p.selector
            if sel.version == version and sel.matches(s, d, proto, sport, dport):
                found = p
                break
        if len(cache) >= self._cache_size:
            cache.clear()
        cache[key] = found
        return found

    def lookup_packet(self, packet: bytes) -> Policy[T] | None:
        """Look up an IPv4/IPv6 packet as read from a TUN device (no extension-header walk)."""
        if len(packet) < 20:
            return None
        v = packet[0] >> 4
        if self._addr_only.get(v):
            key = packet[12:20] if v == 4 else packet[8:40]
            try:
                return self._fast[key]
            except KeyError:
                pass
            if v == 6 and len(packet) < 40:
                return None
            found = self.lookup(key[: len(key) // 2], key[len(key) // 2 :])
            if len(self._fast) >= self._cache_size:
                self._fast.clear()
            self._fast[key] = found
            return found
        if v == 4:
            ihl = (packet[0] & 0x0F) * 4
            proto = packet[9]
            src, dst = bytes(packet[12:16]), bytes(packet[16:20])
            off = ihl
        elif v == 6 and len(packet) >= 40:
            proto = packet[6]
            src, dst = bytes(packet[8:24]), bytes(packet[24:40])
            off = 40
        else:
            return None
        sport = dport = 0
        if proto in (6, 17, 132) and len(packet) >= off + 4:
            sport = (packet[off] << 8) | packet[off + 1]
            dport = (packet[off + 2] << 8) | packet[off + 3]
        return self.lookup(src, dst, proto, sport, dport)


class Sad(Generic[T]):
    """Inbound SAD: SPI -> SA (RFC 4301 §4.4.2; unicast SAs are identified by SPI alone)."""

    def __init__(self) -> None:
        self._by_spi: dict[int, T] = {}

    def add(self, spi: int, sa: T) -> None:
        self._by_spi[spi] = sa

    def remove(self, spi: int) -> T | None:
        return self._by_spi.pop(spi, None)

    def get(self, spi: int) -> T:
        try:
            return self._by_spi[spi]
        except KeyError:
            raise UnknownSpi(f"no inbound SA for SPI 0x{spi:08x}") from None

    def __contains__(self, spi: int) -> bool:
        return spi in self._by_spi

    def __len__(self) -> int:
        return len(self._by_spi)

    def values(self) -> Iterator[T]:
        return iter(list(self._by_spi.values()))
