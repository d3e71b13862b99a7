"""Kernel ESP (XFRM) detection and the kernel data plane backend.

The userspace plane (:class:`s2c.dataplane.plane.DataPlane`) is the default. Where the kernel has ESP
(CONFIG_INET_ESP / CONFIG_INET6_ESP) :class:`KernelEspBackend` offers the same API with the packets
protected by the kernel: SAs and policies are installed over NETLINK_XFRM (codec in
:mod:`s2c.dataplane.xfrm_nl`), IKE port 4500 sockets carry ``UDP_ENCAP_ESPINUDP`` (RFC 3948) and a
per-socket bypass policy. This machine's kernel has XFRM but no ESP, so :func:`kernel_esp_available`
reports ``(False, reason)`` here and ``KernelEspBackend.start()`` refuses with that reason.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import ipaddress
import itertools
import logging
import os
import select
import shutil
import socket
import subprocess
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from s2c.dataplane import xfrm_nl as nl
from s2c.dataplane.xfrm_nl import (
    AF_INET,
    AF_INET6,
    IPPROTO_ESP,
    XfrmAttr,
    XfrmDecodeError,
    XfrmKernelError,
    XfrmMode,
    XfrmMsgType,
    XfrmPolicyAction,
    XfrmPolicyDir,
)

log = logging.getLogger("s2c.dataplane.xfrm")

_PROBE_KEY = "0x" + "11" * 20
IKE_NATT_PORT = 4500
NON_ESP_MARKER = b"\0\0\0\0"
SOL_UDP = 17
UDP_ENCAP = 100
IP_XFRM_POLICY = 17
IPV6_XFRM_POLICY = 35
IPV6_PKTINFO = 50
IPV6_RECVPKTINFO = 49
IPPROTO_MH = 135


def _kernel_config() -> dict[str, str]:
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            text = fh.read()
    except OSError:
        return {}
    cfg: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            cfg[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            cfg[line[2:-11]] = "n"
    return cfg


def _probe_xfrm_state(args: list[str]) -> tuple[bool, str]:
    """Add an ESP state in a throwaway, anonymous network namespace (unshare -n): nothing to clean up."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip:
        return False, "unshare/ip not found"
    cmd = [unshare, "--net", ip, "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
           "spi", "0x1000", "mode", "tunnel", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"probe failed to run: {e}"
    if r.returncode == 0:
        return True, "ip xfrm state add proto esp succeeded"
    return False, (r.stderr or r.stdout).strip() or f"exit {r.returncode}"


def kernel_esp_available(probe: bool = True) -> tuple[bool, str]:
    """Can this kernel do ESP itself? Returns (answer, human-readable reason)."""
    if not os.path.exists("/proc/net/xfrm_stat") and not os.path.exists("/proc/sys/net/core/xfrm_aevent_etime"):
        return False, "kernel has no XFRM (no /proc/net/xfrm_stat)"
    reasons: list[str] = []
    cfg = _kernel_config()
    if cfg:
        esp4, esp6 = cfg.get("CONFIG_INET_ESP", "n"), cfg.get("CONFIG_INET6_ESP", "n")
        if esp4 == "n" and esp6 == "n":
            reasons.append("CONFIG_INET_ESP and CONFIG_INET6_ESP are not set in /proc/config.gz")
    if os.path.isdir("/sys/module/esp4") or os.path.isdir("/sys/module/esp6"):
        return True, "esp4/esp6 module loaded"
    if probe and os.geteuid() == 0:
        ok, msg = _probe_xfrm_state(["aead", "rfc4106(gcm(aes))", _PROBE_KEY, "128"])
        if ok:
            return True, msg
        reasons.append(f"AES-GCM ESP state refused: {msg}")
        ok, msg = _probe_xfrm_state(["enc", "cbc(aes)", "0x" + "22" * 16, "auth-trunc", "hmac(sha256)",
                                     "0x" + "33" * 32, "128"])
        if ok:
            return True, msg
        reasons.append(f"AES-CBC/HMAC ESP state refused: {msg}")
    elif probe:
        reasons.append("not root: XFRM state probe skipped")
    if not reasons:
        return False, "no evidence of kernel ESP support (no esp4/esp6 module)"
    return False, "; ".join(reasons)


# ============================================================================== NETLINK_XFRM socket


class XfrmSocket:
    """A NETLINK_XFRM socket in the calling process's network namespace: one request, one reply.

    ``request(type, body, what=...)`` sends with NLM_F_ACK and raises :class:`XfrmKernelError` (with
    the kernel's extended-ACK text) on a refusal; ``dump(type, body)`` collects a multi-part reply.
    """

    def __init__(self, groups: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_XFRM)
        try:
            self.sock.setsockopt(270, nl.NETLINK_EXT_ACK, 1)  # SOL_NETLINK
        except OSError:
            pass
        self.sock.bind((0, groups))
        self.sock.settimeout(5.0)
        self._seq = itertools.count(1)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def _exchange(self, msg_type: int, body: nl.Body, flags: int, what: str) -> list[tuple[nl.NlHeader, nl.Body]]:
        seq = next(self._seq)
        self.sock.send(nl.encode_msg(msg_type, body, seq=seq, flags=flags))
        out: list[tuple[nl.NlHeader, nl.Body]] = []
        while True:
            data = self.sock.recv(1 << 20)
            for h, b in nl.decode_msgs(data):
                if h.seq != seq:
                    continue
                if isinstance(b, nl.NlError):
                    nl.raise_for_error(b, what)
                    return out
                if isinstance(b, nl.NlDone):
                    return out
                out.append((h, b))
                if not h.flags & nl.NlFlag.NLM_F_MULTI:
                    return out

    def request(self, msg_type: int, body: nl.Body, what: str = "", flags: int = 0) -> None:
        self._exchange(msg_type, body, nl.NlFlag.NLM_F_REQUEST | nl.NlFlag.NLM_F_ACK | flags, what)

    def get(self, msg_type: int, body: nl.Body, what: str = "") -> nl.Body:
        got = self._exchange(msg_type, body, nl.NlFlag.NLM_F_REQUEST, what)
        if not got:
            raise XfrmDecodeError(f"no reply to {XfrmMsgType(msg_type).name}")
        return got[0][1]

    def dump(self, msg_type: int, body: nl.Body) -> list[nl.Body]:
        return [b for _, b in self._exchange(msg_type, body, nl.NlFlag.NLM_F_REQUEST | nl.NlFlag.NLM_F_DUMP, "dump")]


# ============================================================================== backend


class KernelEspUnavailable(RuntimeError):
    """The kernel cannot do ESP (no esp4/esp6): the XFRM backend cannot start here."""


class XfrmBackendError(RuntimeError):
    """The XFRM backend could not do what was asked (the kernel refused, or nothing matches)."""


def _fam(addr: str) -> int:
    return AF_INET6 if ":" in addr else AF_INET


@dataclass
class _Child:
    """One CHILD SA in the kernel: its two SAs (EspSa objects keep keys and addresses), its reqid and
    the policies it owns, keyed (selector, dir)."""

    reqid: int
    mode: str
    sa_out: Any = None
    sa_in: Any = None
    out_sels: list[Any] = field(default_factory=list)  # s2c.esp.spd.Selector (local -> remote)
    in_sels: list[Any] = field(default_factory=list)  # remote -> local
    priority: int = 0
    policies: dict[tuple[nl.XfrmSelector, int], nl.XfrmPolicyMsg] = field(default_factory=dict)


def _kernel_priority(user_priority: int, sel: nl.XfrmSelector) -> int:
    """Kernel policy priority (lower wins): the caller's priority first, then specificity."""
    spec = sel.prefixlen_d + sel.prefixlen_s + (8 if sel.proto else 0) + (4 if sel.dport_mask else 0) + \
        (2 if sel.sport_mask else 0)
    return 0x10000 + (user_priority << 10) + (300 - spec)


class KernelEspBackend:
    """The ``DataPlane`` API over the kernel's XFRM (docs/dataplane.md, "Kernel ESP").

    Constructor parameters as ``DataPlane`` (the userspace-only ones - ``txqueuelen``, ``raw_esp``,
    ``workers``, ``backend``, ``sock_buf``, ``cpus``, ``nice`` - are accepted and ignored), plus:

    ``interface``: ``"auto"`` (an XFRM interface ``type xfrm`` with ``if_id`` where the kernel has
    CONFIG_XFRM_INTERFACE, else a TUN device that only holds addresses and routes: policies without
    if_id protect the traffic before it reaches it), ``"xfrmi"`` or ``"tun"``;
    ``if_id``: the XFRM interface id (default 0x5c2); ``check``: refuse to start without kernel ESP
    (tests turn it off to exercise policies on a kernel without ESP).
    """

    def __init__(
        self,
        tun_name: str = "esp0",
        tun_addresses: Iterable[str] = (),
        routes: Iterable[str] = (),
        mtu: int | None = None,
        udp_port: int = IKE_NATT_PORT,
        bind4: str | None = "0.0.0.0",
        bind6: str | None = "::",
        interface: str = "auto",
        if_id: int = 0x5C2,
        check: bool = True,
        **_userspace_only: Any,
    ) -> None:
        if interface not in ("auto", "xfrmi", "tun"):
            raise ValueError("interface must be 'auto', 'xfrmi' or 'tun'")
        self.tun_name = tun_name
        self.tun_addresses = list(tun_addresses)
        self.routes = list(routes)
        self.mtu = mtu or 1400
        self.udp_port = udp_port
        self.bind4, self.bind6 = bind4, bind6
        self.interface = interface
        self.if_id_value = if_id
        self.check = check
        self.if_id: int | None = None  # set when an XFRM interface is in use
        self.device_kind: str | None = None  # "xfrmi" | "tun"
        self.tun: Any = None
        self.xs: XfrmSocket | None = None
        self.events_sock: XfrmSocket | None = None
        self._socks: dict[str, socket.socket] = {}
        self._raw: dict[tuple[int, int], socket.socket] = {}
        self._ep: select.epoll | None = None
        self._handlers: dict[int, Callable[[], None]] = {}
        self._ike_handler: Callable[[bytes, tuple[str, int]], None] | None = None
        self._transport_handler: Callable[[int, bytes, str, int], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.events: list[tuple] = []
        self.sas: dict[int, Any] = {}  # spi -> EspSa
        self._children: dict[int, _Child] = {}  # reqid -> child
        self._by_spi: dict[int, _Child] = {}
        self._installed_sas: dict[int, nl.XfrmSaMsg] = {}  # spi -> what we gave the kernel
        self._policies: dict[tuple[nl.XfrmSelector, int], tuple[int, nl.XfrmPolicyMsg]] = {}  # -> (owner reqid, msg)
        self._reqids = itertools.count(1)
        self.counters: dict[str, int] = {"ike_rx": 0, "ike_tx": 0, "transport_rx": 0, "transport_tx": 0,
                                         "tun_unprotected_drops": 0, "expire_soft": 0, "expire_hard": 0,
                                         "malformed_netlink": 0}
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Check kernel ESP, then create the interface, sockets and netlink channels. Idempotent;
        everything created is removed again if a step fails."""
        if self.started:
            return
        if self.check:
            ok, why = kernel_esp_available()
            if not ok:
                raise KernelEspUnavailable(f"kernel ESP not available here: {why}")
        try:
            self.xs = XfrmSocket()
            self.events_sock = XfrmSocket(groups=1 << (nl.XFRMNLGRP_EXPIRE - 1))
            self.events_sock.sock.setblocking(False)
            self._make_device()
            self._open_sockets()
            self._ep = select.epoll()
            self._watch(self.events_sock.sock, self._on_netlink_event)
            for name, s in self._socks.items():
                if name.startswith("udp"):
                    self._watch(s, lambda s=s: self._on_ike(s))
            for s in self._raw.values():
                self._watch(s, lambda s=s: self._on_raw(s))
            if self.tun is not None:
                fd = self.tun.fd
                os.set_blocking(fd, False)
                self._ep.register(fd, select.EPOLLIN)
                self._handlers[fd] = self._drain_tun
            self.started = True
        except BaseException:
            self.stop()
            raise

    def _make_device(self) -> None:
        from s2c.dataplane.tun import TunDevice

        if self.interface in ("auto", "xfrmi"):
            ip = shutil.which("ip") or "ip"
            r = subprocess.run([ip, "link", "add", self.tun_name, "type", "xfrm", "dev", "lo", "if_id",
                                str(self.if_id_value)], capture_output=True, text=True)
            if r.returncode == 0:
                self.device_kind, self.if_id = "xfrmi", self.if_id_value
                self._configure_link()
                return
            if self.interface == "xfrmi":
                raise XfrmBackendError(f"cannot create XFRM interface {self.tun_name}: "
                                       f"{(r.stderr or r.stdout).strip()}")
            log.info("no XFRM interface (%s): TUN device %s holds addresses, policies without if_id",
                     (r.stderr or "").strip(), self.tun_name)
        self.tun = TunDevice(self.tun_name, mtu=self.mtu, addresses=self.tun_addresses, vnet_hdr=False)
        self.device_kind = "tun"
        for rt in self.routes:
            self.tun.add_route(rt)

    def _configure_link(self) -> None:
        from pyroute2 import IPRoute

        from s2c.dataplane.tun import _netlink

        def run() -> None:
            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=self.tun_name)[0]
                ipr.link("set", index=idx, mtu=self.mtu)
                for a in self.tun_addresses:
                    addr, _, plen = a.partition("/")
                    if ":" in addr:
                        ipr.addr("add", index=idx, address=addr, prefixlen=int(plen or 128), flags=0x02)
                    else:
                        ipr.addr("add", index=idx, address=addr, prefixlen=int(plen or 32))
                ipr.link("set", index=idx, state="up")
                for rt in self.routes:
                    ipr.route("replace", dst=rt, oif=idx)

        _netlink(run)

    @staticmethod
    def bypass_socket(s: socket.socket) -> None:
        """Let this socket's packets skip every XFRM policy (e.g. the daemon's IKE port 500 sockets)."""
        KernelEspBackend._bypass(s, AF_INET6 if s.family == socket.AF_INET6 else AF_INET)

    @staticmethod
    def _bypass(s: socket.socket, family: int) -> None:
        """Per-socket ALLOW policy in both directions: this socket's packets skip the SPD."""
        level, opt = (socket.IPPROTO_IPV6, IPV6_XFRM_POLICY) if family == AF_INET6 else (socket.IPPROTO_IP, IP_XFRM_POLICY)
        for d in (XfrmPolicyDir.XFRM_POLICY_IN, XfrmPolicyDir.XFRM_POLICY_OUT):
            s.setsockopt(level, opt, nl.bypass_socket_policy(family, d))

    def _open_sockets(self) -> None:
        for key, fam, bind in (("udp4", socket.AF_INET, self.bind4), ("udp6", socket.AF_INET6, self.bind6)):
            if bind is None or (fam == socket.AF_INET6 and not socket.has_ipv6):
                continue
            s = socket.socket(fam, socket.SOCK_DGRAM)
            self._socks[key] = s
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self._bypass(s, AF_INET6 if fam == socket.AF_INET6 else AF_INET)
            s.setsockopt(SOL_UDP, UDP_ENCAP, nl.UDP_ENCAP_ESPINUDP)
            s.bind((bind, self.udp_port))
            s.setblocking(False)
        if self.bind6 is not None and socket.has_ipv6:
            self._raw_socket(AF_INET6, IPPROTO_MH)

    def _raw_socket(self, family: int, proto: int) -> socket.socket:
        s = self._raw.get((family, proto))
        if s is None:
            s = socket.socket(socket.AF_INET6 if family == AF_INET6 else socket.AF_INET, socket.SOCK_RAW, proto)
            s.setblocking(False)
            self._raw[(family, proto)] = s
            if self._ep is not None:
                self._watch(s, lambda s=s: self._on_raw(s))
        return s

    def _watch(self, s: socket.socket, fn: Callable[[], None]) -> None:
        assert self._ep is not None
        self._ep.register(s.fileno(), select.EPOLLIN)
        self._handlers[s.fileno()] = fn

    def stop(self) -> None:
        """Delete every SA and policy this backend installed, close sockets, remove the interface.
        Idempotent; keeps going past individual failures."""
        if self._loop is not None and self._ep is not None:
            try:
                self._loop.remove_reader(self._ep.fileno())
            except Exception:  # noqa: BLE001
                pass
        self._loop = None
        if self.xs is not None:
            for key in list(self._policies):
                self._del_policy(key)
            for spi in list(self._installed_sas):
                self._del_sa(spi)
        self._policies.clear()
        self._installed_sas.clear()
        self._children.clear()
        self._by_spi.clear()
        self.sas.clear()
        for s in [*self._socks.values(), *self._raw.values()]:
            s.close()
        self._socks.clear()
        self._raw.clear()
        if self._ep is not None:
            self._ep.close()
            self._ep = None
        self._handlers.clear()
        for x in (self.xs, self.events_sock):
            if x is not None:
                x.close()
        self.xs = self.events_sock = None
        if self.tun is not None:
            self.tun.close()
            self.tun = None
        if self.device_kind == "xfrmi":
            subprocess.run([shutil.which("ip") or "ip", "link", "del", self.tun_name], capture_output=True)
        self.device_kind = None
        self.if_id = None
        self.started = False

    def __enter__(self) -> "KernelEspBackend":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.started and self.xs is not None

    # ------------------------------------------------------------------ SA / policy primitives
    def _x(self) -> XfrmSocket:
        if self.xs is None:
            raise XfrmBackendError("XFRM backend not started")
        return self.xs

    def _if_id_for(self, mode: str) -> int | None:
        """XFRM interface id for tunnel-mode SAs/policies; transport mode (MH between the outer
        addresses, never routed through the interface) stays global."""
        return self.if_id if mode == "tunnel" else None

    def _sa_msg(self, sa: Any, reqid: int, **kw: Any) -> nl.XfrmSaMsg:
        mode = getattr(sa.mode, "value", sa.mode)
        if sa.direction.value == "out" and not sa.esn:
            # soft expiry near the 32-bit sequence limit -> XFRM_MSG_EXPIRE -> ("rekey_needed", spi)
            # (the kernel's packet count restarts on a re-install, the carried sequence number does not)
            sent = kw["replay"].oseq if kw.get("replay") is not None else 0
            kw.setdefault("lft", nl.XfrmLifetimeCfg(
                soft_packet_limit=max(1, (1 << 32) - getattr(sa, "rekey_margin", 1 << 16) - sent)))
        return nl.sa_from_esp(sa, reqid=reqid, if_id=self._if_id_for(mode), **kw)

    def _install_sa(self, sa: Any, reqid: int, **kw: Any) -> None:
        mode = getattr(sa.mode, "value", sa.mode)
        msg = self._sa_msg(sa, reqid, **kw)
        what = (f"ESP SA spi 0x{sa.spi:08x} {msg.info.saddr} -> {msg.info.id.daddr} {mode} "
                f"{'aead ' + msg.aead.name if msg.aead else (msg.crypt.name if msg.crypt else '')}")
        self._x().request(XfrmMsgType.XFRM_MSG_NEWSA, msg, what=what)
        self._installed_sas[sa.spi] = msg
        self.sas[sa.spi] = sa

    def _sa_id(self, spi: int) -> nl.XfrmSaIdMsg:
        m = self._installed_sas[spi]
        return nl.XfrmSaIdMsg(nl.XfrmUsersaId(m.info.id.daddr, spi, m.info.family, IPPROTO_ESP))

    def _del_sa(self, spi: int) -> bool:
        if spi not in self._installed_sas:
            return False
        try:
            self._x().request(XfrmMsgType.XFRM_MSG_DELSA, self._sa_id(spi), what=f"ESP SA spi 0x{spi:08x}")
        except XfrmKernelError as e:
            if e.errno != errno.ESRCH:
                log.warning("%s", e)
        except OSError as e:
            log.warning("DELSA 0x%08x: %s", spi, e)
        self._installed_sas.pop(spi, None)
        return True

    def _add_policy_msg(self, owner: int, msg: nl.XfrmPolicyMsg) -> None:
        key = (msg.info.sel, msg.info.dir)
        what = (f"policy {nl.XfrmPolicyDir(msg.info.dir).name} {msg.info.sel.saddr}/{msg.info.sel.prefixlen_s} -> "
                f"{msg.info.sel.daddr}/{msg.info.sel.prefixlen_d} proto {msg.info.sel.proto}")
        # UPDPOLICY: create or replace (a newer CHILD SA with the same selectors takes them over)
        self._x().request(XfrmMsgType.XFRM_MSG_UPDPOLICY, msg, what=what)
        prev = self._policies.get(key)
        if prev is not None and prev[0] in self._children and prev[0] != owner:
            self._children[prev[0]].policies.pop(key, None)
        self._policies[key] = (owner, msg)
        if owner in self._children:
            self._children[owner].policies[key] = msg

    def _del_policy(self, key: tuple[nl.XfrmSelector, int]) -> None:
        entry = self._policies.pop(key, None)
        if entry is None:
            return
        owner, msg = entry
        if owner in self._children:
            self._children[owner].policies.pop(key, None)
        pid = nl.XfrmPolicyIdMsg(nl.XfrmUserpolicyId(msg.info.sel, 0, msg.info.dir), if_id=msg.if_id)
        try:
            self._x().request(XfrmMsgType.XFRM_MSG_DELPOLICY, pid, what="policy")
        except XfrmKernelError as e:
            if e.errno != errno.ENOENT:
                log.warning("%s", e)
        except OSError as e:
            log.warning("DELPOLICY: %s", e)

    def _policy_msgs(self, child: _Child) -> list[nl.XfrmPolicyMsg]:
        """OUT policies (local -> remote) and IN (+FWD in tunnel mode) policies (remote -> local) with a
        template naming the child's reqid; tunnel templates carry the outer addresses, transport
        templates leave them to the packet (as strongSwan does)."""
        out: list[nl.XfrmPolicyMsg] = []
        tunnel = child.mode == "tunnel"
        mode = XfrmMode.XFRM_MODE_TUNNEL if tunnel else XfrmMode.XFRM_MODE_TRANSPORT
        ref = child.sa_out or child.sa_in
        local, remote = ref.local, ref.remote
        fam = _fam(remote)

        def tmpl(src: str, dst: str) -> nl.XfrmUserTmpl:
            return nl.XfrmUserTmpl(nl.XfrmId(dst if tunnel else "", 0, IPPROTO_ESP), fam, src if tunnel else "",
                                   child.reqid, mode)

        for sels, dirs, t in ((child.out_sels, (XfrmPolicyDir.XFRM_POLICY_OUT,), tmpl(local, remote)),
                              (child.in_sels, (XfrmPolicyDir.XFRM_POLICY_IN,) + ((XfrmPolicyDir.XFRM_POLICY_FWD,) if tunnel else ()),
                               tmpl(remote, local))):
            for s in sels:
                for xs in nl.selectors_from(s):
                    for d in dirs:
                        info = nl.XfrmUserpolicyInfo(sel=xs, priority=_kernel_priority(child.priority, xs), dir=d,
                                                     action=XfrmPolicyAction.XFRM_POLICY_ALLOW)
                        out.append(nl.XfrmPolicyMsg(info, tmpls=(t,), if_id=self._if_id_for(child.mode)))
        return out

    def _sync_policies(self, child: _Child) -> None:
        want = {(m.info.sel, m.info.dir): m for m in self._policy_msgs(child)}
        for key in [k for k in child.policies if k not in want]:
            self._del_policy(key)
        for key, m in want.items():
            if child.policies.get(key) != m:
                self._add_policy_msg(child.reqid, m)

    # ------------------------------------------------------------------ DataPlane API
    def install_child_sa(self, event: Any, rng: Callable[[int], bytes] = os.urandom, replay_window: int = 1024,
                         priority: int = 0) -> tuple[Any, Any]:
        """Both SAs of an IKE ``ChildSaEstablished`` plus OUT/IN(/FWD) policies from its traffic
        selectors, under one new reqid. Returns (sa_out, sa_in) as ``EspSa`` objects (counters stay 0:
        the kernel counts; see :meth:`stats`). On a refusal nothing of this CHILD SA is left behind."""
        child = self._child_from_event(event, next(self._reqids), rng, replay_window, priority)
        sa_out, sa_in = child.sa_out, child.sa_in
        self._children[child.reqid] = child
        try:
            self._install_sa(sa_in, child.reqid)
            self._install_sa(sa_out, child.reqid)
            self._sync_policies(child)
        except BaseException:
            self._drop_child(child)
            raise
        self._by_spi[sa_out.spi] = self._by_spi[sa_in.spi] = child
        return sa_out, sa_in

    @staticmethod
    def _child_from_event(event: Any, reqid: int, rng: Callable[[int], bytes] = os.urandom,
                          replay_window: int = 1024, priority: int = 0) -> _Child:
        from s2c.esp.sa import Direction, EspSa
        from s2c.esp.spd import selectors_from_ts

        sa_out = EspSa.from_child_sa(event, Direction.OUT, rng=rng)
        sa_in = EspSa.from_child_sa(event, Direction.IN, rng=rng, replay_window=replay_window)
        return _Child(reqid, sa_out.mode.value, sa_out, sa_in, selectors_from_ts(event.ts_local, event.ts_remote),
                      selectors_from_ts(event.ts_remote, event.ts_local), priority)

    def messages_for(self, event: Any, reqid: int = 1, priority: int = 0,
                     replay_window: int = 1024) -> tuple[list[nl.XfrmSaMsg], list[nl.XfrmPolicyMsg]]:
        """The NEWSA bodies (inbound first) and policy bodies ``install_child_sa`` would send for
        ``event`` - pure, nothing is installed (tests, debugging, ``ip xfrm`` comparisons)."""
        child = self._child_from_event(event, reqid, os.urandom, replay_window, priority)
        sas = [self._sa_msg(sa, reqid) for sa in (child.sa_in, child.sa_out)]
        return sas, self._policy_msgs(child)

    def _drop_child(self, child: _Child) -> None:
        for key in list(child.policies):
            self._del_policy(key)
        for sa in (child.sa_out, child.sa_in):
            if sa is not None:
                self._del_sa(sa.spi)
                self.sas.pop(sa.spi, None)
                self._by_spi.pop(sa.spi, None)
        self._children.pop(child.reqid, None)

    def rekey_child_sa(self, old_spi_in: int, old_spi_out: int, new_event: Any,
                       rng: Callable[[int], bytes] = os.urandom, replay_window: int = 1024) -> tuple[Any, Any]:
        """Make-before-break rekey (RFC 7296 §2.8): the new pair under the old reqid (the kernel prefers
        the newest SA for a template), policies updated if the selectors changed, then the old SAs go."""
        from s2c.esp.sa import Direction, EspSa
        from s2c.esp.spd import selectors_from_ts

        child = self._by_spi.get(old_spi_in) or self._by_spi.get(old_spi_out)
        if child is None:
            return self.install_child_sa(new_event, rng=rng, replay_window=replay_window)
        sa_out = EspSa.from_child_sa(new_event, Direction.OUT, rng=rng)
        sa_in = EspSa.from_child_sa(new_event, Direction.IN, rng=rng, replay_window=replay_window)
        self._install_sa(sa_in, child.reqid)
        try:
            self._install_sa(sa_out, child.reqid)
        except BaseException:
            self._del_sa(sa_in.spi)
            self.sas.pop(sa_in.spi, None)
            raise
        old = (child.sa_out, child.sa_in)
        child.sa_out, child.sa_in = sa_out, sa_in
        child.out_sels = selectors_from_ts(new_event.ts_local, new_event.ts_remote)
        child.in_sels = selectors_from_ts(new_event.ts_remote, new_event.ts_local)
        self._sync_policies(child)
        self._by_spi[sa_out.spi] = self._by_spi[sa_in.spi] = child
        for sa in old:
            if sa is not None:
                self._del_sa(sa.spi)
                self.sas.pop(sa.spi, None)
                self._by_spi.pop(sa.spi, None)
        return sa_out, sa_in

    def remove_sa(self, spi: int) -> None:
        """Delete an SA; an outbound SA takes its OUT policies with it, an inbound one its IN/FWD
        policies; the CHILD SA record goes with its last SA."""
        child = self._by_spi.pop(spi, None)
        self._del_sa(spi)
        sa = self.sas.pop(spi, None)
        if child is None:
            return
        out = sa is child.sa_out
        dirs = {XfrmPolicyDir.XFRM_POLICY_OUT} if out else {XfrmPolicyDir.XFRM_POLICY_IN, XfrmPolicyDir.XFRM_POLICY_FWD}
        for key in [k for k in child.policies if k[1] in dirs]:
            self._del_policy(key)
        if out:
            child.sa_out = None
        else:
            child.sa_in = None
        if child.sa_out is None and child.sa_in is None:
            for key in list(child.policies):
                self._del_policy(key)
            self._children.pop(child.reqid, None)

    def _replay_of(self, spi: int) -> dict[str, Any]:
        """The kernel's sequence state of an SA (to carry it over a re-install)."""
        got = self.query_sa(spi)
        kw: dict[str, Any] = {}
        if got.replay_esn is not None:
            kw["replay_esn"] = got.replay_esn
        elif got.replay is not None:
            kw["replay"] = got.replay
        return kw

    @staticmethod
    def _route_source(addr: str, port: int) -> str:
        """The local address the kernel would use towards ``addr`` (a connected UDP socket sends nothing)."""
        fam = _fam(addr)
        s = socket.socket(socket.AF_INET6 if fam == AF_INET6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            KernelEspBackend._bypass(s, fam)
            s.connect((addr, port or IKE_NATT_PORT))
            return s.getsockname()[0]
        finally:
            s.close()

    def update_peer(self, spi: int, addr: str, port: int = IKE_NATT_PORT, local: str | None = None) -> None:
        """Move a CHILD SA (both directions) to a new peer address/port (MOBIKE, RFC 4555 §3.5) and, if
        ``local`` is given or the route to the peer now leaves from another address, a new local
        address: each SA is re-installed with its sequence/replay state (XFRM SAs are keyed by
        destination, so DELSA + NEWSA as strongSwan does), then the policies follow (tunnel
        templates; transport selectors that named the old outer addresses)."""
        ipaddress.ip_address(addr)
        child = self._by_spi.get(spi)
        if child is None:
            raise XfrmBackendError(f"no SA 0x{spi:08x}")
        ref = child.sa_out or child.sa_in
        new_local = local or self._route_source(addr, port)
        old_local, old_remote = ref.local, ref.remote
        for sa in (child.sa_out, child.sa_in):
            if sa is None:
                continue
            if (sa.remote, sa.local) == (addr, new_local) and (not sa.udp_encap or sa.remote_port == port):
                continue
            kw = self._replay_of(sa.spi) if sa.spi in self._installed_sas else {}
            self._del_sa(sa.spi)
            sa.remote, sa.local = addr, new_local
            if sa.udp_encap:
                sa.remote_port = port
            self._install_sa(sa, child.reqid, **kw)

        def move(sels: list[Any]) -> list[Any]:
            from s2c.esp.spd import Selector

            def sub(p: str) -> str:
                net = ipaddress.ip_network(p, strict=False)
                full = net.prefixlen == net.max_prefixlen
                if full and str(net.network_address) == old_local:
                    return f"{new_local}/{net.prefixlen}"
                if full and str(net.network_address) == old_remote:
                    return f"{addr}/{net.prefixlen}"
                return p

            return [Selector(sub(s.src), sub(s.dst), s.proto, s.sport, s.dport) for s in sels]

        if child.mode == "transport":
            child.out_sels, child.in_sels = move(child.out_sels), move(child.in_sels)
        self._sync_policies(child)

    def add_sa(self, sa: Any, inbound_selectors: Iterable[Any] | None = None) -> None:
        """Install one SA (its own reqid). An inbound tunnel SA with ``inbound_selectors`` (src = peer
        side) also gets IN/FWD policies requiring it."""
        child = _Child(next(self._reqids), sa.mode.value)
        if sa.direction.value == "out":
            child.sa_out = sa
        else:
            child.sa_in = sa
            child.in_sels = list(inbound_selectors or [])
        self._children[child.reqid] = child
        try:
            self._install_sa(sa, child.reqid)
            self._sync_policies(child)
        except BaseException:
            self._drop_child(child)
            raise
        self._by_spi[sa.spi] = child

    def add_policy(self, selector: Any, spi: int | None = None, action: str = "protect", priority: int = 0) -> None:
        """Outbound policy: ``protect`` with outbound SA ``spi``, ``bypass`` (ALLOW, no template) or
        ``discard`` (BLOCK)."""
        action = str(getattr(action, "value", action))
        if action == "protect":
            child = self._by_spi.get(spi) if spi is not None else None
            if child is None or child.sa_out is None or child.sa_out.spi != spi:
                raise XfrmBackendError(f"no outbound SA 0x{(spi or 0):08x} for a protect policy")
            child.out_sels.append(selector)
            child.priority = priority
            self._sync_policies(child)
            return
        for xs in nl.selectors_from(selector):
            info = nl.XfrmUserpolicyInfo(sel=xs, priority=_kernel_priority(priority, xs),
                                         dir=XfrmPolicyDir.XFRM_POLICY_OUT,
                                         action=XfrmPolicyAction.XFRM_POLICY_ALLOW if action == "bypass"
                                         else XfrmPolicyAction.XFRM_POLICY_BLOCK)
            self._add_policy_msg(0, nl.XfrmPolicyMsg(info, if_id=self.if_id))

    def remove_policies(self, selector: Any | None = None) -> int:
        """Remove the OUT policies with exactly this selector (all OUT policies if None); returns how many."""
        want = None if selector is None else set(nl.selectors_from(selector))
        n = 0
        for key in list(self._policies):
            if key[1] == XfrmPolicyDir.XFRM_POLICY_OUT and (want is None or key[0] in want):
                self._del_policy(key)
                n += 1
        for child in self._children.values():
            if selector is None:
                child.out_sels = []
            else:
                child.out_sels = [s for s in child.out_sels if s != selector]
        return n

    def query_sa(self, spi: int) -> nl.XfrmSaMsg:
        """XFRM_MSG_GETSA for one of our SAs: the kernel's view (lifetime counters, replay state)."""
        got = self._x().get(XfrmMsgType.XFRM_MSG_GETSA, self._sa_id(spi), what=f"ESP SA spi 0x{spi:08x}")
        if not isinstance(got, nl.XfrmSaMsg):
            raise XfrmDecodeError(f"GETSA 0x{spi:08x}: unexpected reply {type(got).__name__}")
        return got

    def list_policies(self) -> list[nl.XfrmPolicyMsg]:
        """Every policy in this namespace (XFRM_MSG_GETPOLICY dump)."""
        return [b for b in self._x().dump(XfrmMsgType.XFRM_MSG_GETPOLICY, nl.XfrmPolicyIdMsg())
                if isinstance(b, nl.XfrmPolicyMsg)]

    def stats(self) -> dict[str, Any]:
        """Per-SA counters from XFRM_MSG_GETSA (lifetime_cur bytes/packets, xfrm_stats replay and
        integrity failures), shaped like ``DataPlane.stats()``."""
        sas: dict[int, dict[str, Any]] = {}
        for spi, sa in list(self.sas.items()):
            if spi not in self._installed_sas:
                continue
            try:
                got = self.query_sa(spi)
            except (XfrmKernelError, OSError) as e:
                sas[spi] = {"direction": sa.direction.value, "error": str(e)}
                continue
            d = sa.direction.value
            cur, st = got.info.curlft, got.info.stats
            row: dict[str, Any] = {"direction": d, "remote": sa.remote, "remote_port": sa.remote_port,
                                   "replay_drops": st.replay + st.replay_window, "auth_failures": st.integrity_failed,
                                   "malformed": 0, "packets_out": 0, "bytes_out": 0, "packets_in": 0, "bytes_in": 0}
            row[f"packets_{d}"], row[f"bytes_{d}"] = cur.packets, cur.bytes
            if got.replay_esn is not None:
                r = got.replay_esn
                row["seq" if d == "out" else "replay_top"] = ((r.oseq_hi << 32) | r.oseq) if d == "out" else \
                    ((r.seq_hi << 32) | r.seq)
            elif got.replay is not None:
                row["seq" if d == "out" else "replay_top"] = got.replay.oseq if d == "out" else got.replay.seq
            sas[spi] = row
        return {"workers": {"kernel": dict(self.counters)}, "sas": sas, "alive": self.alive(),
                "device": self.device_kind, "if_id": self.if_id}

    # ------------------------------------------------------------------ sending
    def send_ike(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send an IKE message from UDP port 4500 with the non-ESP marker (RFC 3948 §2.2)."""
        sock = self._socks["udp6" if ":" in addr[0] else "udp4"]
        sock.sendto(NON_ESP_MARKER + data, addr)
        self.counters["ike_tx"] += 1

    def send_transport(self, payload: bytes, next_header: int, src: str, dst: str) -> bool:
        """Send an upper-layer payload (e.g. a Mobility Header, 135) on a raw socket of that protocol to
        the peer of the transport CHILD SA whose OUT selector matches (src, dst, next_header), from
        the SA's local address: the kernel's OUT policy protects it. False if no transport SA matches."""
        s_i, d_i = int(ipaddress.ip_address(src)), int(ipaddress.ip_address(dst))
        for child in self._children.values():
            sa = child.sa_out
            if child.mode != "transport" or sa is None:
                continue
            if any(sel.version == ipaddress.ip_address(src).version and sel.matches(s_i, d_i, next_header, 0, 0)
                   for sel in child.out_sels):
                fam = _fam(sa.remote)
                sock = self._raw_socket(fam, next_header)
                if fam == AF_INET6:
                    pktinfo = ipaddress.IPv6Address(sa.local).packed + bytes(4)
                    sock.sendmsg([payload], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo)], 0, (sa.remote, 0))
                else:
                    sock.sendto(payload, (sa.remote, 0))
                self.counters["transport_tx"] += 1
                return True
        return False

    def set_ike_handler(self, cb: Callable[[bytes, tuple[str, int]], None] | None) -> None:
        """``cb(ike_message_without_marker, (src, port))`` for IKE datagrams arriving on port 4500."""
        self._ike_handler = cb

    def set_mh_handler(self, cb: Callable[[int, bytes, str, int], None] | None) -> None:
        """``cb(next_header, payload, src, spi)`` for transport payloads the kernel decrypted (MH = 135)."""
        self._transport_handler = cb

    # ------------------------------------------------------------------ upcalls
    def upcall_fileno(self) -> int:
        """An epoll descriptor, readable when any of the backend's sockets is."""
        if self._ep is None:
            raise XfrmBackendError("XFRM backend not started")
        return self._ep.fileno()

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._loop.add_reader(self.upcall_fileno(), self.poll_upcalls)

    def poll_upcalls(self) -> int:
        """Handle whatever is ready (IKE on 4500, decrypted transport payloads, kernel expiry
        notifications, packets that reached the placeholder TUN unprotected); returns how many fds."""
        if self._ep is None:
            return 0
        n = 0
        for fd, _ev in self._ep.poll(0):
            fn = self._handlers.get(fd)
            if fn is None:
                continue
            n += 1
            try:
                fn()
            except Exception:  # noqa: BLE001 - a handler bug must not stop the plane
                log.exception("XFRM backend upcall failed")
        return n

    def _on_ike(self, s: socket.socket) -> None:
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            if len(data) < 4 or data[:4] != NON_ESP_MARKER:
                continue  # keepalives (0xff) are eaten by the kernel; ESP never reaches the socket
            self.counters["ike_rx"] += 1
            if self._ike_handler:
                self._ike_handler(data[4:], (addr[0], addr[1]))

    def _on_raw(self, s: socket.socket) -> None:
        proto = s.proto
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            src = addr[0]
            if s.family == socket.AF_INET:
                ihl = (data[0] & 0x0F) * 4 if data else 0
                data = data[ihl:]
            # only from a peer we hold an inbound transport SA with: its IN policy made the kernel check
            child = next((c for c in self._children.values()
                          if c.mode == "transport" and c.sa_in is not None and c.sa_in.remote == src), None)
            if child is None:
                continue
            self.counters["transport_rx"] += 1
            if self._transport_handler:
                self._transport_handler(proto, data, src, child.sa_in.spi)

    def _on_netlink_event(self) -> None:
        assert self.events_sock is not None
        while True:
            try:
                data = self.events_sock.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            try:
                msgs = nl.decode_msgs(data)
            except XfrmDecodeError:
                self.counters["malformed_netlink"] += 1
                continue
            for _h, b in msgs:
                if isinstance(b, nl.XfrmExpireMsg) and b.state.id.spi in self._installed_sas:
                    spi = b.state.id.spi
                    if b.hard:
                        self.counters["expire_hard"] += 1
                        self.events.append(("expired", spi))
                    else:
                        self.counters["expire_soft"] += 1
                        self.events.append(("rekey_needed", spi))

    def _drain_tun(self) -> None:
        assert self.tun is not None
        while True:
            try:
                os.read(self.tun.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.counters["tun_unprotected_drops"] += 1
