"""Two network namespaces joined by a veth, for daemon/interop tests and benchmarks (needs root).

    with NsPair("s2ct-x", a_addrs=["198.51.100.1/24"], b_addrs=["198.51.100.2/24"]) as pair:
        pair.run("a", ["ping", "-c1", "198.51.100.2"])

Namespaces are named ``<prefix>-a`` / ``<prefix>-b`` and always removed on exit.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass, field

from pyroute2 import NetNS, netns


@dataclass
class NsPair:
    prefix: str
    a_addrs: list[str] = field(default_factory=list)
    b_addrs: list[str] = field(default_factory=list)
    lo_a: list[str] = field(default_factory=list)  # extra addresses on lo (e.g. inner/virtual IPs)
    lo_b: list[str] = field(default_factory=list)

    def name(self, side: str) -> str:
        return f"{self.prefix}-{side}"

    def __enter__(self) -> "NsPair":
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        for side in ("a", "b"):
            netns.create(self.name(side))
        # sysctls before any address: DAD off so IPv6 addresses are usable at once
        for side in ("a", "b"):
            self.run(side, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                            "net.ipv6.conf.default.accept_dad=0"])
        with NetNS(self.name("a")) as ns_a:
            ns_a.link("add", ifname="veth-a", kind="veth",
                      peer={"ifname": "veth-b", "net_ns_fd": self.name("b")})
        for side, addrs, lo_addrs, ifname in (("a", self.a_addrs, self.lo_a, "veth-a"),
                                              ("b", self.b_addrs, self.lo_b, "veth-b")):
            with NetNS(self.name(side)) as ns:
                for dev, items in ((ifname, addrs), ("lo", lo_addrs)):
                    idx = ns.link_lookup(ifname=dev)[0]
                    for addr in items:
                        iface = ipaddress.ip_interface(addr)
                        ns.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
                    ns.link("set", index=idx, state="up")

    def run(self, side: str, argv: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.name(side)}", *argv],
                              capture_output=True, text=True, timeout=timeout, check=check)

    def popen(self, side: str, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{self.name(side)}", *argv], **kw)

    def close(self) -> None:
        for side in ("a", "b"):
            try:
                netns.remove(self.name(side))
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        self.close()
