"""Two namespaces joined by a veth, each running a standalone ``DataPlane`` with mirrored SAs.

Shared by tests/e2e/test_dataplane*.py and bench/esp.py. Everything created here is removed by
``close()`` (also on errors during setup). Needs root.

    left  ns  {prefix}-a: veth {prefix}a  192.0.2.1/24,  TUN esp0 10.77.0.1/24, fd77::1/64
    right ns  {prefix}-b: veth {prefix}b  192.0.2.2/24,  TUN esp0 10.77.0.2/24, fd77::2/64
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

SUITES = {
    "gcm128": {"encr": 20, "key_len": 20, "integ": 0, "integ_len": 0},
    "gcm256": {"encr": 20, "key_len": 36, "integ": 0, "integ_len": 0},
    "cbc128": {"encr": 12, "key_len": 16, "integ": 12, "integ_len": 32},
    "cbc256": {"encr": 12, "key_len": 32, "integ": 12, "integ_len": 32},
}


def sh(*args: str, check: bool = True, timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout, **kw)


def nsx(ns: str, *args: str, **kw: Any) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, **kw)


@dataclass
class EspLab:
    prefix: str
    suite: str = "gcm128"
    udp_encap: bool = True
    workers: int = 2
    backend: str = "process"
    outer6: bool = False
    mtu: int | None = None  # TUN MTU (None: DataPlane default, no outer fragmentation)
    cpus: dict = field(default_factory=dict)  # side -> list of CPUs for the worker processes
    nice: int = 0  # worker process niceness (negative: scheduled ahead of the load on a busy host)
    busy_poll_us: int = 0  # adaptive busy polling window of the workers (Engine)
    rng: Any = os.urandom
    spi_ab: int = 0xA0000001
    spi_ba: int = 0xB0000002
    transport: bool = True  # also a transport-mode SA pair for MH (next header 135) fd77::1 <-> fd77::2
    spi_mh_ab: int = 0xC0000003
    spi_mh_ba: int = 0xD0000004
    nodes: dict[str, subprocess.Popen] = field(default_factory=dict)
    keys: dict[int, dict] = field(default_factory=dict)
    _captures: list = field(default_factory=list)
    capture_report: str = ""  # tcpdump's closing statistics of the last stopped capture

    @property
    def ns_a(self) -> str:
        return f"{self.prefix}-a"

    @property
    def ns_b(self) -> str:
        return f"{self.prefix}-b"

    outer = {"a": "192.0.2.1", "b": "192.0.2.2"}
    outer_v6 = {"a": "2001:db8:77::1", "b": "2001:db8:77::2"}
    inner = {"a": "10.77.0.1", "b": "10.77.0.2"}
    inner6 = {"a": "fd77::1", "b": "fd77::2"}

    def addr(self, side: str) -> str:
        return (self.outer_v6 if self.outer6 else self.outer)[side]

    # ------------------------------------------------------------------ network
    def build_network(self) -> None:
        self.close_network()
        sh("ip", "netns", "add", self.ns_a)
        sh("ip", "netns", "add", self.ns_b)
        va, vb = f"{self.prefix}a"[:15], f"{self.prefix}b"[:15]
        sh("ip", "link", "add", va, "netns", self.ns_a, "type", "veth", "peer", "name", vb, "netns", self.ns_b)
        for ns, v, side in ((self.ns_a, va, "a"), (self.ns_b, vb, "b")):
            nsx(ns, "ip", "link", "set", "lo", "up")
            nsx(ns, "ip", "addr", "add", f"{self.outer[side]}/24", "dev", v)
            nsx(ns, "ip", "addr", "add", f"{self.outer_v6[side]}/64", "dev", v, "nodad")
            nsx(ns, "ip", "link", "set", v, "up")
        self.veth = {"a": va, "b": vb}

    def close_network(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            sh("ip", "netns", "del", ns, check=False)

    # ------------------------------------------------------------------ data planes
    def _sa_cfg(self, spi: int, direction: str, local: str, remote: str, mode: str = "tunnel") -> dict:
        s = SUITES[self.suite]
        if spi not in self.keys:
            self.keys[spi] = {"encr_key": self.rng(s["key_len"]).hex(), "integ_key": self.rng(s["integ_len"]).hex()}
        return {
            "spi": spi, "direction": direction, "mode": mode, "encr": s["encr"], "integ": s["integ"],
            **self.keys[spi], "local": local, "remote": remote, "udp_encap": self.udp_encap,
            "local_port": 4500, "remote_port": 4500, "replay_window": 1024, "esn": False, "seq": 0,
        }

    def node_config(self, side: str) -> dict:
        other = "b" if side == "a" else "a"
        out_spi, in_spi = (self.spi_ab, self.spi_ba) if side == "a" else (self.spi_ba, self.spi_ab)
        cfg = {
            "tun": "esp0",
            "addresses": [f"{self.inner[side]}/24", f"{self.inner6[side]}/64"],
            "workers": self.workers,
            "backend": self.backend,
            "raw_esp": not self.udp_encap,
            "mtu": self.mtu,
            "nice": self.nice,
            "busy_poll_us": self.busy_poll_us,
            "cpus": self.cpus.get(side, []),
            "sas": [self._sa_cfg(out_spi, "out", self.addr(side), self.addr(other)),
                    dict(self._sa_cfg(in_spi, "in", self.addr(side), self.addr(other)),
                         in_selectors=[{"src": "10.77.0.0/24", "dst": "10.77.0.0/24"},
                                       {"src": "fd77::/64", "dst": "fd77::/64"}])],
            "policies": [{"src": "10.77.0.0/24", "dst": "10.77.0.0/24", "spi": out_spi},
                         {"src": "fd77::/64", "dst": "fd77::/64", "spi": out_spi}],
        }
        if self.transport:
            mo, mi = (self.spi_mh_ab, self.spi_mh_ba) if side == "a" else (self.spi_mh_ba, self.spi_mh_ab)
            cfg["sas"] += [self._sa_cfg(mo, "out", self.addr(side), self.addr(other), "transport"),
                           self._sa_cfg(mi, "in", self.addr(side), self.addr(other), "transport")]
            cfg["policies"].append({"src": f"{self.inner6[side]}/128", "dst": f"{self.inner6[other]}/128",
                                    "proto": 135, "spi": mo})
        return cfg

    def start_planes(self) -> None:
        for side, ns in (("a", self.ns_a), ("b", self.ns_b)):
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "s2c.dataplane.standalone",
                 json.dumps(self.node_config(side))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            self.nodes[side] = p
            line = p.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "ready":
                raise RuntimeError(f"data plane in {ns} failed to start: {line!r}")

    def ask(self, side: str, line: str) -> Any:
        p = self.nodes[side]
        p.stdin.write(line + "\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
        return json.loads(p.stdout.readline())  # type: ignore[union-attr]

    def stats(self, side: str) -> dict:
        return self.ask(side, "stats")

    def stop_planes(self) -> None:
        for p in self.nodes.values():
            try:
                p.stdin.write("quit\n")  # type: ignore[union-attr]
                p.stdin.flush()  # type: ignore[union-attr]
            except OSError:
                pass
        for p in self.nodes.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.nodes.clear()

    def wireshark_sas(self) -> list:
        """The outbound ``EspSa`` of each side (with keys), for the Wireshark key export."""
        from s2c.esp.sa import EspSa

        out = []
        for side in ("a", "b"):
            for c in self.node_config(side)["sas"]:
                if c["direction"] == "out":
                    cfg = dict(c, encr_key=bytes.fromhex(c["encr_key"]), integ_key=bytes.fromhex(c["integ_key"]))
                    out.append(EspSa.from_config(cfg, rng=os.urandom))
        return out

    # ------------------------------------------------------------------ captures
    def start_capture(self, side: str, path: str) -> subprocess.Popen:
        """tcpdump on ``side``'s veth into ``path``; returns once tcpdump is listening."""
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns_a if side == "a" else self.ns_b, "tcpdump", "-n", "-U", "--immediate-mode", "-B", "8192",
             "-i", self.veth[side], "-w", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._captures.append(p)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = p.stderr.readline()  # type: ignore[union-attr]
            if not line or "listening on" in line:
                break
        return p

    def stop_capture(self, p: subprocess.Popen, path: str | None = None) -> None:
        """Stop tcpdump once ``path`` stopped growing (a loaded machine lets tcpdump lag behind)."""
        last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 10
        while path and time.monotonic() < deadline:
            size = os.path.getsize(path) if os.path.exists(path) else 0
            if size != last:
                last, stable_since = size, time.monotonic()
            elif time.monotonic() - stable_since > 0.7:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        if p.poll() is None:
            p.terminate()
        try:
            _, err = p.communicate(timeout=5)
            self.capture_report = err or ""
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p in self._captures:
            self._captures.remove(p)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "EspLab":
        try:
            self.build_network()
            self.start_planes()
            time.sleep(0.2)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for p in list(self._captures):
            self.stop_capture(p)
        self.stop_planes()
        self.close_network()

    def __exit__(self, *exc: object) -> None:
        self.close()
