"""``DataPlane``: the API daemons use to run userspace ESP in their own network namespace.

    dp = DataPlane(tun_name="esp0", tun_addresses=["10.9.0.1/24"], routes=["10.9.0.0/24"])
    dp.start()                        # creates TUN + sockets, spawns the worker process(es)
    dp.add_sa(sa_out); dp.add_sa(sa_in)
    dp.add_policy(Selector("10.9.0.0/24", "10.9.0.0/24"), spi=sa_out.spi)
    loop.add_reader(dp.upcall_fileno(), dp.poll_upcalls)   # or dp.attach(loop)
    ...
    dp.stop()

Workers are separate processes (``cryptography`` keeps the GIL, so threads do not scale): with
``workers=2`` one encrypts (TUN -> network) and one decrypts (network -> TUN); with ``workers=1`` a
single process does both; ``backend="thread"`` runs the same loop in a thread (tests, tiny nodes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
from typing import Any, Callable, Iterable

from s2c.codec.esp import IKE_NATT_PORT, NON_ESP_MARKER
from s2c.esp.sa import Direction, EspSa
from s2c.esp.spd import PolicyAction, Selector, selectors_from_ts
from s2c.dataplane.engine import RCVBUF, Engine
from s2c.dataplane.tun import TunDevice

log = logging.getLogger("s2c.dataplane")

IkeHandler = Callable[[bytes, tuple[str, int]], None]
TransportHandler = Callable[[int, bytes, str, int], None]  # (next_header, payload, src, spi)


DEFAULT_BUSY_POLL_US = 20000  # daemons' default adaptive busy-poll window (docs/dataplane.md)


def default_workers() -> int:
    """Worker processes per daemon: one loop on a host with <= 2 CPUs (where the UE, the PDN GW and the
    traffic share them, a second loop per daemon costs more in scheduling than it gains), else tx + rx."""
    return 1 if (os.cpu_count() or 1) <= 2 else 2


def tun_mtu_for(outer_mtu: int = 1500, ipv6_outer: bool = True, udp_encap: bool = True, block: int = 16,
                iv: int = 16, icv: int = 16) -> int:
    """Largest inner MTU that never fragments the outer packet (worst case: CBC, IPv6, UDP)."""
    overhead = (40 if ipv6_outer else 20) + (8 if udp_encap else 0) + 8 + iv + icv + 2 + (block - 1)
    return outer_mtu - overhead


def _sel_dict(s: Selector) -> dict[str, Any]:
    return {"src": s.src, "dst": s.dst, "proto": s.proto, "sport": s.sport, "dport": s.dport}


class DataPlaneError(RuntimeError):
    """A worker refused a control command or died."""


class DataPlane:
    """Userspace ESP data plane in the current process's network namespace (see docs/dataplane.md)."""

    def __init__(
        self,
        tun_name: str = "esp0",
        tun_addresses: Iterable[str] = (),
        routes: Iterable[str] = (),
        mtu: int | None = None,
        txqueuelen: int = 5000,
        udp_port: int = IKE_NATT_PORT,
        bind4: str | None = "0.0.0.0",
        bind6: str | None = "::",
        raw_esp: bool = True,
        workers: int = 2,
        backend: str = "process",
        sock_buf: int = RCVBUF,
        cpus: tuple[int, ...] = (),
        nice: int = 0,
        busy_poll_us: int = 0,
        tso: bool | None = None,
        udp_gso: bool | None = None,
        steer_ike: bool = False,
    ) -> None:
        if workers not in (1, 2):
            raise ValueError("workers must be 1 (one loop) or 2 (tx and rx loops)")
        if backend not in ("process", "thread"):
            raise ValueError("backend must be 'process' or 'thread'")
        self.tun_name = tun_name
        self.tun_addresses = list(tun_addresses)
        self.routes = list(routes)
        self.mtu = mtu or tun_mtu_for()
        self.txqueuelen = txqueuelen
        self.udp_port = udp_port
        self.bind4, self.bind6 = bind4, bind6
        self.raw_esp = raw_esp
        self.workers = workers
        self.backend = backend
        self.sock_buf = sock_buf
        self.cpus = cpus
        self.nice = nice
        if busy_poll_us < 0:
            raise ValueError("busy_poll_us must be >= 0")
        self.busy_poll_us = busy_poll_us
        # TSO from the TUN (docs/dataplane.md, "Batching"): None = environment S2C_ESP_TSO ("1" turns it
        # on, for A/B measurements), else off - it measured no faster here (Python segments and checksums
        # what the kernel would have segmented in C)
        # UDP GSO on ESP-in-UDP runs (Engine): None = environment S2C_ESP_GSO ("1" turns it on)
        self.udp_gso = udp_gso
        # IKE on port 4500 straight to the caller's loop (s2c/dataplane/steer.py; needs attach(loop))
        self.steer_ike = steer_ike
        self._ike_socks: dict[str, socket.socket] = {}
        self.ike_counters: dict[str, int] = {"ike_steered": 0, "ike_socket_other": 0}
        self.tso = tso if tso is not None else os.environ.get("S2C_ESP_TSO", "0") == "1"
        self.tun: TunDevice | None = None
        self._socks: dict[str, socket.socket] = {}
        self._ctrl: dict[str, socket.socket] = {}
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        self._thread_socks: list[socket.socket] = []
        self._upcall_r: socket.socket | None = None
        self._upcall_w: socket.socket | None = None
        self.sas: dict[int, EspSa] = {}
        self._ike_handler: IkeHandler | None = None
        self._transport_handler: TransportHandler | None = None
        self.events: list[tuple] = []  # rekey_needed / peer events not consumed by a handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Create the TUN device and sockets, then the worker(s). Idempotent."""
        if self.started:
            return
        try:
            self.tun = TunDevice(self.tun_name, mtu=self.mtu, txqueuelen=self.txqueuelen,
                                 addresses=self.tun_addresses, tso=self.tso)
            for r in self.routes:
                self.tun.add_route(r)
            self._open_sockets()
            self._upcall_r, self._upcall_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._upcall_r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._upcall_r.setblocking(False)
            roles = ["both"] if self.workers == 1 else ["tx", "rx"]
            for i, role in enumerate(roles):
                self._spawn(role, self.cpus[i] if i < len(self.cpus) else -1)
            self.started = True
        except BaseException:
            self.stop()
            raise

    def _open_sockets(self) -> None:
        def tune(s: socket.socket) -> socket.socket:
            for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_*BUFFORCE
                try:
                    s.setsockopt(socket.SOL_SOCKET, force, self.sock_buf)
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, opt, self.sock_buf)
            return s

        if self.bind4 is not None:
            u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            u4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            u4.bind((self.bind4, self.udp_port))
            self._socks["udp4"] = tune(u4)
            if self.raw_esp:
                self._socks["raw4"] = tune(socket.socket(socket.AF_INET, socket.SOCK_RAW, 50))
        if self.bind6 is not None and socket.has_ipv6:
            u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            u6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            u6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            u6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            u6.bind((self.bind6, self.udp_port))
            self._socks["udp6"] = tune(u6)
            if self.raw_esp:
                self._socks["raw6"] = tune(socket.socket(socket.AF_INET6, socket.SOCK_RAW, 50))
        if self.steer_ike:
            from s2c.dataplane.steer import open_ike_socket

            for name in ("udp4", "udp6"):
                if name in self._socks:
                    s = open_ike_socket(self._socks[name])
                    if s is not None:
                        self._ike_socks[name] = s
                    else:
                        log.info("IKE steering on %s not available: IKE on port 4500 goes through the worker",
                                 name)

    def _spawn(self, role: str, cpu: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent.settimeout(10.0)
        self._ctrl[role] = parent
        assert self.tun is not None and self._upcall_w is not None
        fds = {"ctrl": child.fileno(), "upcall": self._upcall_w.fileno(), "tun": self.tun.fd}
        fds.update({k: s.fileno() for k, s in self._socks.items()})
        if self.backend == "thread":
            eng = Engine(role, ctrl=child, upcall=self._upcall_w, tun_fd=self.tun.fd,  # type: ignore[arg-type]
                         busy_poll_us=self.busy_poll_us, udp_gso=self.udp_gso, **self._socks)
            t = threading.Thread(target=eng.run, name=f"esp-{role}", daemon=True)
            t.start()
            self._threads.append(t)
            self._thread_socks.append(child)
            return
        argv = [sys.executable, "-m", "s2c.dataplane.worker", "--role", role, "--cpu", str(cpu),
                "--nice", str(self.nice), "--busy-poll-us", str(self.busy_poll_us),
                "--udp-gso", {True: "on", False: "off"}.get(self.udp_gso, "env")]
        for k, fd in fds.items():
            argv += [f"--{k}", str(fd)]
        proc = subprocess.Popen(argv, pass_fds=list(fds.values()), close_fds=True)
        child.close()
        self._procs.append(proc)

    def stop(self) -> None:
        """Stop workers, close sockets and the TUN device (the interface disappears). Idempotent."""
        if self._loop is not None and self._upcall_r is not None:
            for s in [self._upcall_r, *self._ike_socks.values()]:
                try:
                    self._loop.remove_reader(s.fileno())
                except Exception:  # noqa: BLE001
                    pass
            self._loop = None
        for role, s in list(self._ctrl.items()):
            try:
                s.settimeout(2.0)
                s.send(pickle.dumps(("stop", ())))
                s.recv(1 << 16)
            except OSError:
                pass
            s.close()
        self._ctrl.clear()
        for p in self._procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._procs.clear()
        for t in self._threads:
            t.join(timeout=3)
        self._threads.clear()
        for s in self._thread_socks:
            s.close()
        self._thread_socks = []
        for s in self._socks.values():
            s.close()
        self._socks.clear()
        for s in self._ike_socks.values():
            s.close()
        self._ike_socks.clear()
        for s in (self._upcall_r, self._upcall_w):
            if s is not None:
                s.close()
        self._upcall_r = self._upcall_w = None
        if self.tun is not None:
            self.tun.close()
            self.tun = None
        self.started = False

    def __enter__(self) -> "DataPlane":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ control
    def _call(self, role: str, cmd: str, *args: Any) -> Any:
        s = self._ctrl.get(role)
        if s is None:
            raise DataPlaneError(f"data plane not started (no {role} worker)")
        try:
            s.send(pickle.dumps((cmd, args)))
            reply = s.recv(1 << 22)
        except OSError as e:  # includes the timeout
            raise DataPlaneError(f"{role} worker: {cmd}: {type(e).__name__}: {e}") from e
        if not reply:
            raise DataPlaneError(f"{role} worker exited (command {cmd})")
        status, value = pickle.loads(reply)
        if status != "ok":
            raise DataPlaneError(f"{role} worker: {cmd}: {value}")
        return value

    def _call_batches(self, batches: dict[str, list[tuple[str, tuple]]]) -> dict[str, Any]:
        """One ``batch`` command per worker, sent to all of them before any reply is read (they work
        in parallel); returns {role: results or the DataPlaneError}. Every reply is read, so the
        request/reply pairing on each control socket stays in step even when one worker fails."""
        sent: dict[str, Any] = {}
        for role, items in batches.items():
            s = self._ctrl.get(role)
            if s is None:
                sent[role] = DataPlaneError(f"data plane not started (no {role} worker)")
                continue
            try:
                s.send(pickle.dumps(("batch", (items,))))
                sent[role] = s
            except OSError as e:
                sent[role] = DataPlaneError(f"{role} worker: batch: {type(e).__name__}: {e}")
        out: dict[str, Any] = {}
        for role, s in sent.items():
            if isinstance(s, DataPlaneError):
                out[role] = s
                continue
            try:
                reply = s.recv(1 << 22)
            except OSError as e:  # includes the timeout
                out[role] = DataPlaneError(f"{role} worker: batch: {type(e).__name__}: {e}")
                continue
            if not reply:
                out[role] = DataPlaneError(f"{role} worker exited (command batch)")
                continue
            status, value = pickle.loads(reply)
            out[role] = value if status == "ok" else DataPlaneError(f"{role} worker: batch: {value}")
        return out

    def _role_for(self, direction: Direction) -> str:
        if self.workers == 1:
            return "both"
        return "tx" if direction is Direction.OUT else "rx"

    def add_sa(self, sa: EspSa, inbound_selectors: Iterable[Selector] | None = None) -> None:
        """Install an SA (outbound SAs go to the encrypting loop, inbound ones to the decrypting loop).

        Re-adding an outbound SPI replaces the SA and moves its policies to the new one. For an inbound
        tunnel SA, ``inbound_selectors`` (src = peer side, dst = our side) are enforced on every
        decrypted packet (RFC 4301 §5.2); without them any inner packet is accepted.
        """
        sels = [_sel_dict(s) for s in inbound_selectors] if inbound_selectors else None
        self._call(self._role_for(sa.direction), "add_sa", sa.to_config(), None, sels)
        self.sas[sa.spi] = sa

    def install_child_sa(self, event: Any, rng: Callable[[int], bytes] = os.urandom, replay_window: int = 1024,
                         priority: int = 0) -> tuple[EspSa, EspSa]:
        """Install both directions of an IKE ``ChildSaEstablished`` and outbound policies from its
        traffic selectors (``ts_local`` -> ``ts_remote``). Returns (sa_out, sa_in)."""
        sa_out = EspSa.from_child_sa(event, Direction.OUT, rng=rng)
        sa_in = EspSa.from_child_sa(event, Direction.IN, rng=rng, replay_window=replay_window)
        # add_sa(sa_in, selectors) + add_sa(sa_out) + add_policy(...) in one round trip per worker, the
        # workers computing the selectors from the traffic selectors (Engine.cmd_add_child_sa)
        tl = [(t.start_addr, t.end_addr, int(t.ip_protocol), int(t.start_port), int(t.end_port)) for t in event.ts_local]
        tr = [(t.start_addr, t.end_addr, int(t.ip_protocol), int(t.start_port), int(t.end_port)) for t in event.ts_remote]
        in_role, out_role = self._role_for(Direction.IN), self._role_for(Direction.OUT)
        batches: dict[str, list[tuple[str, tuple]]] = {in_role: [("add_child_sa", (sa_in.to_config(), tl, tr))]}
        batches.setdefault(out_role, []).append(("add_child_sa", (sa_out.to_config(), tl, tr, priority)))
        res = self._call_batches(batches)
        if not isinstance(res[in_role], DataPlaneError):
            self.sas[sa_in.spi] = sa_in
        if not isinstance(res[out_role], DataPlaneError):
            self.sas[sa_out.spi] = sa_out
        for r in (in_role, out_role):
            if isinstance(res[r], DataPlaneError):
                raise res[r]
        return sa_out, sa_in

    def rekey_child_sa(self, old_spi_in: int, old_spi_out: int, new_event: Any,
                       rng: Callable[[int], bytes] = os.urandom, replay_window: int = 1024) -> tuple[EspSa, EspSa]:
        """Make-before-break CHILD_SA rekey (RFC 7296 §2.8): install the new pair, move policies, drop the old."""
        sa_out = EspSa.from_child_sa(new_event, Direction.OUT, rng=rng)
        sa_in = EspSa.from_child_sa(new_event, Direction.IN, rng=rng, replay_window=replay_window)
        self.add_sa(sa_in, selectors_from_ts(new_event.ts_remote, new_event.ts_local))
        self._call(self._role_for(Direction.OUT), "add_sa", sa_out.to_config(), old_spi_out)
        self.sas[sa_out.spi] = sa_out
        self.sas.pop(old_spi_out, None)
        self.remove_sa(old_spi_in)
        return sa_out, sa_in

    def remove_sa(self, spi: int) -> None:
        """Delete an SA and any policy bound to it."""
        sa = self.sas.pop(spi, None)
        roles = [self._role_for(sa.direction)] if sa else list(self._ctrl)
        for r in roles:
            self._call(r, "remove_sa", spi)

    def update_peer(self, spi: int, addr: str, port: int = IKE_NATT_PORT, local: str | None = None) -> None:
        """Move an SA to a new peer address/port (MOBIKE, RFC 4555 §3.5). ``local`` (the new local address)
        is for the kernel backend's SA identity; here the outer source follows routing."""
        for r in self._ctrl:
            self._call(r, "update_peer", spi, addr, port)
        if spi in self.sas:
            self.sas[spi].remote, self.sas[spi].remote_port = addr, port

    def add_policy(self, selector: Selector, spi: int | None = None, action: str | PolicyAction = "protect",
                   priority: int = 0) -> None:
        """Outbound policy: packets matching ``selector`` are protected with outbound SA ``spi``."""
        action = PolicyAction(action).value
        self._call(self._role_for(Direction.OUT), "add_policy", _sel_dict(selector), spi, action, priority)

    def remove_policies(self, selector: Selector | None = None) -> int:
        """Remove the policies with exactly this selector (all if None); returns how many."""
        sel = None if selector is None else _sel_dict(selector)
        return self._call(self._role_for(Direction.OUT), "remove_policies", sel)

    def send_transport(self, payload: bytes, next_header: int, src: str, dst: str) -> bool:
        """Protect an upper-layer payload (e.g. a Mobility Header, 135) with the transport SA whose
        policy matches (src, dst, next_header) and send it to the SA's peer; False if no policy."""
        return self._call(self._role_for(Direction.OUT), "send_transport", payload, next_header, src, dst)

    def send_ike(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send an IKE message from UDP port 4500 with the non-ESP marker (RFC 3948 §2.2)."""
        sock = self._socks["udp6" if ":" in addr[0] else "udp4"]
        sock.sendto(NON_ESP_MARKER + data, addr)

    def set_ike_handler(self, cb: IkeHandler | None) -> None:
        """``cb(ike_message_without_marker, (src, port))`` for IKE datagrams arriving on port 4500."""
        self._ike_handler = cb

    def set_mh_handler(self, cb: TransportHandler | None) -> None:
        """``cb(next_header, payload, src, spi)`` for transport-mode ESP payloads (MH is next header 135)."""
        self._transport_handler = cb

    def stats(self) -> dict[str, Any]:
        """Engine counters per worker and per-SA counters (packets/bytes in/out, replay drops, auth failures)."""
        out: dict[str, Any] = {"workers": {}, "sas": {}, "alive": self.alive(), "ike_steering": sorted(self._ike_socks),
                               **self.ike_counters}
        for r in self._ctrl:
            st = self._call(r, "stats")
            out["workers"][r] = st["engine"]
            out["sas"].update(st["sas"])
        return out

    def alive(self) -> bool:
        """True while every worker process/thread runs."""
        if not self.started:
            return False
        return all(p.poll() is None for p in self._procs) and all(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ upcalls
    def upcall_fileno(self) -> int:
        assert self._upcall_r is not None
        return self._upcall_r.fileno()

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Deliver upcalls from the asyncio loop (``add_reader`` on the upcall socket)."""
        self._loop = loop or asyncio.get_running_loop()
        self._loop.add_reader(self.upcall_fileno(), self.poll_upcalls)
        for s in self._ike_socks.values():
            self._loop.add_reader(s.fileno(), self._on_ike_socket, s)

    def _on_ike_socket(self, sock: socket.socket) -> None:
        """IKE datagrams steered to our own port 4500 socket: strip the non-ESP marker, hand them on."""
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.ike_counters["ike_socket_other"] += 1
                return
            if data[:4] != NON_ESP_MARKER:  # only while a worker socket was alone in the group
                self.ike_counters["ike_socket_other"] += 1
                continue
            self.ike_counters["ike_steered"] += 1
            if self._ike_handler is not None:
                try:
                    self._ike_handler(data[4:], addr[:2])
                except Exception:  # noqa: BLE001 - a handler bug must not stop the plane
                    log.exception("IKE handler failed")

    def poll_upcalls(self) -> int:
        """Dispatch pending upcalls to the handlers; returns how many were handled."""
        n = 0
        while self._upcall_r is not None:
            try:
                data = self._upcall_r.recv(1 << 17)
            except (BlockingIOError, InterruptedError):
                break
            msg = pickle.loads(data)
            n += 1
            kind = msg[0]
            try:
                if kind == "ike":
                    if self._ike_handler:
                        self._ike_handler(msg[1], msg[2])
                elif kind == "transport":
                    _, spi, nh, payload, src = msg
                    if self._transport_handler:
                        self._transport_handler(nh, payload, src, spi)
                elif kind == "peer":
                    self._on_peer_learned(*msg[1:])
                else:
                    self.events.append(msg)
            except Exception:  # noqa: BLE001 - a handler bug must not stop the plane
                log.exception("upcall handler failed for %s", kind)
        return n

    def _on_peer_learned(self, spi: int, old: tuple[str, int], new: tuple[str, int]) -> None:
        """An inbound UDP-encapsulated SA saw its peer at a new address/port: move outbound SAs to it."""
        self.events.append(("peer", spi, old, new))
        for sa in list(self.sas.values()):
            if sa.direction is Direction.OUT and sa.udp_encap and (sa.remote, sa.remote_port) == tuple(old):
                self.update_peer(sa.spi, new[0], new[1])
        if spi in self.sas:
            self.sas[spi].remote, self.sas[spi].remote_port = new
