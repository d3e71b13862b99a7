"""Linux TUN device (Documentation/networking/tuntap.rst): open, configure with pyroute2, close.

Runs in the calling process's network namespace. Never used inside an asyncio callback that must not
block: creation does a few netlink round trips.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import threading
from typing import Any, Callable, Iterable

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000  # every read/write starts with a struct virtio_net_hdr (10 bytes): GSO writes
TUNGETIFF = 0x800454D2
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int): offloads the reader handles (include/uapi/linux/if_tun.h)
TUN_F_CSUM = 0x01  # reads may be CHECKSUM_PARTIAL (virtio_net_hdr NEEDS_CSUM): the reader completes them
TUN_F_TSO4 = 0x02  # reads may be TCPv4 GSO super-packets (up to 64 KB): the reader segments them
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08  # ... also with CWR set on the first segment
TSO_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
VNET_HDR_LEN = 10
IFNAMSIZ = 16


def _netlink(fn: Callable[[], Any]) -> Any:
    """Run a synchronous pyroute2 call; inside a running asyncio loop, do it in a short-lived thread
    (pyroute2 0.9's sync IPRoute drives its own event loop and refuses to nest in a running one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, name="tun-netlink")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def tun_has_vnet_hdr(fd: int) -> bool:
    """True if the TUN file descriptor was opened with IFF_VNET_HDR (TUNGETIFF)."""
    try:
        ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    except OSError:
        return False
    return bool(struct.unpack_from("H", ifr, 16)[0] & IFF_VNET_HDR)


def set_offload(fd: int, offloads: int) -> None:
    """TUNSETOFFLOAD: tell the kernel which offloads the reader handles (0: none, every read is a
    complete packet with its checksums)."""
    fcntl.ioctl(fd, TUNSETOFFLOAD, offloads)


class TunDevice:
    """A layer-3 TUN interface (IFF_TUN | IFF_NO_PI): every read/write is one raw IPv4/IPv6 packet,
    preceded by a 10-byte struct virtio_net_hdr if ``vnet_hdr`` (the default: the data plane writes
    coalesced TCP segments as one GSO packet). With ``tso`` (needs ``vnet_hdr``) the device offers
    checksum offload and TSO (TUNSETOFFLOAD CSUM|TSO4|TSO6|TSO_ECN): the local TCP stack hands it
    super-packets of up to 64 KB that the reader segments (``s2c.dataplane.gso``); without it reads
    carry an all-zero header. ``tso`` is silently off without ``vnet_hdr``."""

    def __init__(
        self,
        name: str,
        mtu: int = 1400,
        txqueuelen: int = 5000,
        addresses: Iterable[str] = (),
        queues: int = 1,
        up: bool = True,
        vnet_hdr: bool = True,
        tso: bool = False,
    ) -> None:
        if not 0 < len(name.encode()) < IFNAMSIZ:
            raise ValueError(f"bad interface name {name!r}")
        self.name = name
        self.mtu = mtu
        self.queues = queues
        self.vnet_hdr = vnet_hdr
        self.tso = tso and vnet_hdr
        flags = IFF_TUN | IFF_NO_PI | (IFF_MULTI_QUEUE if queues > 1 else 0) | (IFF_VNET_HDR if vnet_hdr else 0)
        self.fds: list[int] = []
        try:
            for _ in range(queues):
                fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
                self.fds.append(fd)
                fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
            if self.tso:
                set_offload(self.fds[0], TSO_OFFLOADS)  # a device property: one queue is enough
            _netlink(lambda: self._configure(mtu, txqueuelen, list(addresses), up))
        except BaseException:
            self.close()
            raise

    @property
    def fd(self) -> int:
        return self.fds[0]

    def _configure(self, mtu: int, txqueuelen: int, addresses: list[str], up: bool) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.name)[0]
            self.index = idx
            ipr.link("set", index=idx, mtu=mtu, txqlen=txqueuelen)
            for a in addresses:
                addr, _, plen = a.partition("/")
                if ":" in addr:
                    ipr.addr("add", index=idx, address=addr, prefixlen=int(plen or 128), flags=0x02)  # IFA_F_NODAD
                else:
                    ipr.addr("add", index=idx, address=addr, prefixlen=int(plen or 32))
            if up:
                ipr.link("set", index=idx, state="up")

    def add_route(self, prefix: str) -> None:
        """Route ``prefix`` into the tunnel."""
        from pyroute2 import IPRoute

        def run() -> None:
            with IPRoute() as ipr:
                ipr.route("replace", dst=prefix, oif=self.index)

        _netlink(run)

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def __enter__(self) -> "TunDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
