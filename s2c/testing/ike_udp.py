"""Run ONE sans-IO IKEv2 core (:class:`IkeInitiator` or :class:`IkeResponder`) over real UDP 500/4500.

For interop tests against strongSwan (tests/interop/test_ike_*.py, test_esp_*.py); not a daemon.

In-process use (blocking select loop, current network namespace)::

    drv = IkeUdpDriver(core, dataplane=dp)      # dp: optional s2c.dataplane.DataPlane (owns UDP 4500)
    drv.run_until(lambda: drv.seen("ChildSaEstablished"), timeout=10)

Datagrams the core hands out with the non-ESP marker leave from port 4500, the others from 500.
With a ``DataPlane``, port 4500 belongs to the plane: IKE arrives through its upcall and leaves
through ``send_ike``; every ``ChildSaEstablished`` is installed (``install_child_sa``), rekeys,
deletes and MOBIKE address updates follow.

As a child process in a namespace (what the tests do): ``python -m s2c.testing.ike_udp SPEC_JSON``
builds the core from a JSON spec (see :func:`build_core`), prints ``{"ready": true}`` and then one
JSON line per event; it reads JSON commands on stdin (``{"cmd": "initiate"}``, ``create_child``
(``child`` spec), ``rekey_child``, ``delete_child`` (``spi_in``), ``rekey_ike``, ``liveness_check``,
``delete``, ``update_addresses`` (``local``, ``remote``), ``send_transport``, ``keys`` (Wireshark IKEv2
and ESP key records), ``stats``, ``quit``) and answers each with a ``{"reply": name, ...}`` line.
:class:`IkeUdpProcess` is the test-side handle.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import time
import traceback
from typing import Any, Callable

from s2c.codec import ikev2 as c

NON_ESP_MARKER = b"\0\0\0\0"


# ============================================================================ event -> JSON

def to_jsonable(v: Any) -> Any:
    """A JSON-friendly view of an event field (bytes as hex, addresses/selectors as text)."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, enum.Enum):
        return v.value if isinstance(v.value, str) else int(v.value)
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(v)
    if isinstance(v, c.TrafficSelector):
        return ts_text(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: to_jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [to_jsonable(x) for x in v]
    return v


def ts_text(ts: c.TrafficSelector) -> str:
    """``addr[/len]`` or ``start-end``, then ``[proto]`` when a protocol is set (strongSwan-like)."""
    nets = list(ipaddress.summarize_address_range(ts.start_addr, ts.end_addr))
    s = str(nets[0]) if len(nets) == 1 else f"{ts.start_addr}-{ts.end_addr}"
    if ts.ip_protocol or (ts.start_port, ts.end_port) != (0, 65535):
        ports = "" if (ts.start_port, ts.end_port) == (0, 65535) else f"/{ts.start_port}-{ts.end_port}"
        s += f"[{ts.ip_protocol}{ports}]"
    return s


def event_json(e: Any) -> dict:
    d = {"event": type(e).__name__}
    for f in dataclasses.fields(e):
        if f.name in ("keys_in", "keys_out"):
            continue
        d[f.name] = to_jsonable(getattr(e, f.name))
    if type(e).__name__ == "ChildSaRekeyed":
        d["new"].pop("keys_in", None)
        d["new"].pop("keys_out", None)
    return d


# ============================================================================ the driver

class IkeUdpDriver:
    """Feeds one IKE core from UDP sockets on ports 500 and 4500 (IPv4 and IPv6) and a real clock."""

    def __init__(self, core: Any, bind4: str | None = "0.0.0.0", bind6: str | None = "::",
                 dataplane: Any = None, on_event: Callable[[Any], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, auto_net: bool = True) -> None:
        self.core = core
        self.dp = dataplane
        self.auto_net = auto_net and dataplane is not None
        self.on_event = on_event
        self.clock = clock
        self.events: list[Any] = []
        self.esp_sas: dict[int, Any] = {}   # spi -> EspSa (also when no DataPlane: for key export)
        self.ike_lines: list[str] = []      # Wireshark ikev2_decryption_table lines seen so far
        self.sent = 0
        self.send_errors = 0
        self.received = 0
        self._socks: dict[tuple[int, int], socket.socket] = {}
        ports = (500,) if dataplane is not None else (500, 4500)
        for fam, addr in ((socket.AF_INET, bind4), (socket.AF_INET6, bind6)):
            if addr is None:
                continue
            for port in ports:
                s = socket.socket(fam, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if fam == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((addr, port))
                s.setblocking(False)
                self._socks[(fam, port)] = s
        if dataplane is not None:
            # the plane strips the non-ESP marker; put it back so the core knows the datagram came in on 4500
            dataplane.set_ike_handler(lambda data, addr: self._rx(NON_ESP_MARKER + bytes(data), (addr[0], addr[1])))

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()
        if self.dp is not None:
            self.dp.set_ike_handler(None)

    # ---------------------------------------------------------------- io
    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.sent += 1
        try:
            if data[:4] == NON_ESP_MARKER:
                if self.dp is not None:
                    self.dp.send_ike(data[4:], (addr[0], addr[1]))
                    return
                self._socks[(fam, 4500)].sendto(data, addr)
            else:
                self._socks[(fam, 500)].sendto(data, addr)
        except OSError as e:  # e.g. no route while an address moves: the core retransmits
            self.send_errors += 1
            print(f"send to {addr} failed: {e}", file=sys.stderr, flush=True)

    def _rx(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        try:
            self.core.receive_datagram(data, addr, self.clock())
            self.flush()
        except Exception:  # a driver/dataplane bug must be visible, not swallowed by an upcall loop
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            raise

    def flush(self) -> None:
        """Send what the core queued and handle its events."""
        while True:
            out = self.core.datagrams_to_send(self.clock())
            for data, addr in out:
                self._send(data, addr)
            got = False
            while (e := self.core.next_event()) is not None:
                got = True
                self._handle_event(e)
            if not out and not got:
                return

    def _handle_event(self, e: Any) -> None:
        from s2c.esp.sa import Direction, EspSa
        from s2c.ike import events as ev

        self.events.append(e)
        if self.auto_net:
            self._auto_net(e)
        if isinstance(e, ev.IkeSaEstablished) or isinstance(e, ev.IkeSaRekeyed):
            self._note_ike_keys(e.sa_id)
        if isinstance(e, ev.ChildSaEstablished):
            if self.dp is not None:
                out, inn = self.dp.install_child_sa(e)
            else:
                out, inn = EspSa.from_child_sa(e, Direction.OUT, rng=os.urandom), EspSa.from_child_sa(e, Direction.IN)
            self.esp_sas[out.spi] = out
            self.esp_sas[inn.spi] = inn
        elif isinstance(e, ev.ChildSaRekeyed):
            if self.dp is not None:
                out, inn = self.dp.rekey_child_sa(e.old_spi_in, e.old_spi_out, e.new)
            else:
                out, inn = (EspSa.from_child_sa(e.new, Direction.OUT, rng=os.urandom),
                            EspSa.from_child_sa(e.new, Direction.IN))
            self.esp_sas[out.spi] = out
            self.esp_sas[inn.spi] = inn
        elif isinstance(e, ev.ChildSaDeleted):
            if self.dp is not None:
                for spi in (e.spi_in, e.spi_out):
                    if spi in self.dp.sas:
                        self.dp.remove_sa(spi)
        elif isinstance(e, ev.IkeSaAddressesUpdated):
            if self.dp is not None:
                for spi, sa in list(self.dp.sas.items()):
                    if sa.direction is Direction.OUT:
                        port = e.remote_addr[1] if sa.udp_encap else 4500
                        self.dp.update_peer(spi, e.remote_addr[0], port)
        if self.on_event is not None:
            self.on_event(e)

    def _auto_net(self, e: Any) -> None:
        """CP-assigned addresses go on the TUN device; tunnel-mode remote selectors are routed into it."""
        from pyroute2 import IPRoute

        from s2c.ike import events as ev

        assert self.dp is not None and self.dp.tun is not None
        idx = self.dp.tun.index
        with IPRoute() as ipr:
            if isinstance(e, ev.CpAssigned):
                for a in (e.ipv4, e.home_address):
                    if a is not None:
                        try:
                            ipr.addr("add", index=idx, address=str(a), prefixlen=a.max_prefixlen)
                        except Exception:  # noqa: BLE001 - already there
                            pass
            elif isinstance(e, ev.ChildSaEstablished) and e.mode.value == "tunnel":
                for ts in e.ts_remote:
                    for net in ipaddress.summarize_address_range(ts.start_addr, ts.end_addr):
                        if net.prefixlen == 0:
                            continue
                        ipr.route("replace", dst=str(net), oif=idx)

    def _note_ike_keys(self, sa_id: int) -> None:
        from s2c.ike import wireshark_ikev2_decryption_table_line

        sa = self.ike_sa(sa_id)
        if sa is not None and sa.keys is not None:
            line = wireshark_ikev2_decryption_table_line(sa)
            if line not in self.ike_lines:
                self.ike_lines.append(line)

    def ike_sa(self, sa_id: int | None = None):
        """The core's IkeSa (initiator: its only one; responder: by sa_id, default the first)."""
        if hasattr(self.core, "sas"):
            sas = self.core.sas()
            if sa_id is None:
                return sas[0] if sas else None
            return next((s for s in sas if s.sa_id == sa_id), None)
        return self.core.sa

    # ---------------------------------------------------------------- loop
    def fds(self) -> list[int]:
        fds = [s.fileno() for s in self._socks.values()]
        if self.dp is not None:
            fds.append(self.dp.upcall_fileno())
        return fds

    def poll(self, timeout: float, extra: list[Any] = ()) -> list[Any]:
        """Wait up to ``timeout`` for datagrams/timers; returns the ``extra`` objects that became readable."""
        t = self.core.get_timer()
        if t is not None:
            timeout = max(0.0, min(timeout, t - self.clock()))
        by_fd = {s.fileno(): s for s in self._socks.values()}
        r, _, _ = select.select(self.fds() + list(extra), [], [], timeout)
        ready_extra = []
        for x in r:
            if x in extra:
                ready_extra.append(x)
            elif self.dp is not None and x == self.dp.upcall_fileno():
                self.dp.poll_upcalls()
            elif x in by_fd:
                s = by_fd[x]
                while True:
                    try:
                        data, addr = s.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    self._rx(data, (addr[0], addr[1]))
        t = self.core.get_timer()
        if t is not None and t <= self.clock():
            self.core.handle_timer(self.clock())
        self.flush()
        return ready_extra

    def seen(self, name: str, count: int = 1) -> bool:
        return sum(1 for e in self.events if type(e).__name__ == name) >= count

    def run_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = self.clock() + timeout
        self.flush()
        while not cond():
            left = deadline - self.clock()
            if left <= 0:
                return False
            self.poll(min(left, 0.2))
        return True

    def esp_uat_records(self) -> list[list[str]]:
        """Wireshark ``esp_sa`` UAT records of every CHILD SA seen (both directions); addresses are
        wildcards so the records still match after a MOBIKE move (the SPI identifies the SA)."""
        from s2c.esp.wireshark import esp_sa_record

        return [esp_sa_record(sa, "*", "*") for sa in self.esp_sas.values()]


# ============================================================================ spec -> core

_ENCR = {"aes128": (c.EncrId.ENCR_AES_CBC, 128), "aes192": (c.EncrId.ENCR_AES_CBC, 192),
         "aes256": (c.EncrId.ENCR_AES_CBC, 256), "aes128gcm16": (c.EncrId.ENCR_AES_GCM_16, 128),
         "aes256gcm16": (c.EncrId.ENCR_AES_GCM_16, 256), "aes128gcm": (c.EncrId.ENCR_AES_GCM_16, 128),
         "aes256gcm": (c.EncrId.ENCR_AES_GCM_16, 256)}
_INTEG = {"sha256": c.IntegId.AUTH_HMAC_SHA2_256_128, "sha384": c.IntegId.AUTH_HMAC_SHA2_384_192,
          "sha512": c.IntegId.AUTH_HMAC_SHA2_512_256, "sha1": c.IntegId.AUTH_HMAC_SHA1_96}
_PRF = {"prfsha256": c.PrfId.PRF_HMAC_SHA2_256, "prfsha384": c.PrfId.PRF_HMAC_SHA2_384,
        "prfsha512": c.PrfId.PRF_HMAC_SHA2_512, "prfsha1": c.PrfId.PRF_HMAC_SHA1}
_DH = {"modp2048": c.DhGroup.MODP_2048, "ecp256": c.DhGroup.ECP_256, "ecp384": c.DhGroup.ECP_384,
       "ecp521": c.DhGroup.ECP_521, "x25519": c.DhGroup.CURVE25519, "curve25519": c.DhGroup.CURVE25519}
_INTEG_TO_PRF = {c.IntegId.AUTH_HMAC_SHA2_256_128: c.PrfId.PRF_HMAC_SHA2_256,
                 c.IntegId.AUTH_HMAC_SHA2_384_192: c.PrfId.PRF_HMAC_SHA2_384,
                 c.IntegId.AUTH_HMAC_SHA2_512_256: c.PrfId.PRF_HMAC_SHA2_512,
                 c.IntegId.AUTH_HMAC_SHA1_96: c.PrfId.PRF_HMAC_SHA1}


def _tokens(text: str) -> tuple:
    encr = integ = prf = None
    dh: list = []
    for tok in text.split("-"):
        if tok in ("esn", "noesn"):
            continue
        if tok in _ENCR:
            encr = _ENCR[tok]
        elif tok in _INTEG:
            integ = _INTEG[tok]
        elif tok in _PRF:
            prf = _PRF[tok]
        elif tok in _DH:
            dh.append(_DH[tok])
        else:
            raise ValueError(f"unknown proposal token {tok!r} in {text!r}")
    if encr is None:
        raise ValueError(f"no encryption algorithm in {text!r}")
    return encr, integ, prf, dh


def ike_proposal(text: str):
    """strongSwan proposal syntax (``aes128gcm16-prfsha256-x25519``, ``aes256-sha256-modp2048``)."""
    from s2c.ike import IkeProposal

    (encr, bits), integ, prf, dh = _tokens(text)
    aead = encr == c.EncrId.ENCR_AES_GCM_16
    if prf is None:
        if integ is None:
            raise ValueError(f"no PRF in {text!r}")
        prf = _INTEG_TO_PRF[integ]
    return IkeProposal(encr, bits, prf, c.IntegId.NONE if aead else (integ or c.IntegId.AUTH_HMAC_SHA2_256_128),
                       tuple(dh) or (c.DhGroup.ECP_256,))


def esp_proposal(text: str):
    from s2c.ike import EspProposal

    (encr, bits), integ, _prf, dh = _tokens(text)
    aead = encr == c.EncrId.ENCR_AES_GCM_16
    esn = c.EsnId.ESN if "esn" in text.split("-") else c.EsnId.NO_ESN
    return EspProposal(encr, bits, c.IntegId.NONE if aead else (integ or c.IntegId.AUTH_HMAC_SHA2_256_128),
                       esn, dh_groups=tuple(dh))


def parse_ts(text: str):
    """``dynamic``, ``dynamic6``, ``2001:db8::1/128``, optionally ``[proto]`` (e.g. ``dynamic6[135]``)."""
    from s2c.ike import DynamicTs

    proto = 0
    if text.endswith("]"):
        text, _, p = text[:-1].partition("[")
        proto = int(p)
    if text in ("dynamic", "dynamic4"):
        return DynamicTs(4, proto)
    if text == "dynamic6":
        return DynamicTs(6, proto)
    return c.TrafficSelector.from_network(text, proto)


def child_config(ch: dict, default_esp: tuple = ()):
    """``{"mode", "local_ts": [...], "remote_ts": [...], "esp_proposals"?: [...]}`` -> ChildConfig."""
    from s2c.ike import ChildConfig, ChildMode

    esp = tuple(esp_proposal(p) for p in ch["esp_proposals"]) if "esp_proposals" in ch else default_esp
    return ChildConfig(ChildMode(ch.get("mode", "tunnel")), tuple(parse_ts(t) for t in ch["local_ts"]),
                       tuple(parse_ts(t) for t in ch["remote_ts"]), esp or (esp_proposal("aes128gcm16"),))


def _identity(spec: Any):
    from s2c.ike import Identity

    if isinstance(spec, str):
        if "@" in spec:
            return Identity.rfc822(spec)
        try:
            return Identity.ip(spec)
        except ValueError:
            return Identity.fqdn(spec)
    kind, value = next(iter(spec.items()))
    return getattr(Identity, kind)(value)


def build_core(spec: dict, rng: Callable[[int], bytes] = os.urandom):
    """Build an IkeInitiator/IkeResponder from a JSON spec.

    Keys: ``role`` (initiator|responder), ``local`` (our IP), ``remote`` (initiator: peer IP),
    ``local_id``/``remote_id`` (text: "a@b" is RFC822, an IP is an IP id, else FQDN),
    ``auth`` ({"psk": text} or {"cert": pem path, "key": pem path}), ``ca`` (pem path),
    ``proposals`` / ``esp_proposals`` (strongSwan syntax lists), ``children`` (list of
    {"mode", "local_ts": [...], "remote_ts": [...]} with :func:`parse_ts` syntax; the first is the
    IKE_AUTH child, the others are responder policies), ``cp_request`` (CP attribute names),
    ``assign`` (responder: {"ipv4", "home_address", "ha_address", "ha_address4"}),
    ``cookie_threshold``, ``mobike``, ``retransmit_timeout``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from s2c.ike import CertAuth, CpAssignment, IkeConfig, IkeInitiator, IkeResponder, PskAuth, Timers

    auth_spec = spec["auth"]
    if "psk" in auth_spec:
        auth = PskAuth(auth_spec["psk"].encode())
    else:
        auth = CertAuth(serialization.load_pem_private_key(open(auth_spec["key"], "rb").read(), None),
                        x509.load_pem_x509_certificate(open(auth_spec["cert"], "rb").read()))
    trusted = tuple(x509.load_pem_x509_certificate(open(p, "rb").read())
                    for p in ([spec["ca"]] if isinstance(spec.get("ca"), str) else spec.get("ca", [])))
    esp = tuple(esp_proposal(p) for p in spec.get("esp_proposals", ["aes128gcm16", "aes256-sha256"]))
    children = [child_config(ch, esp) for ch in spec.get("children", [])]
    psk = auth_spec.get("psk")
    kw: dict = dict(
        local_id=_identity(spec["local_id"]), auth=auth,
        remote_id=_identity(spec["remote_id"]) if spec.get("remote_id") else None,
        trusted_certs=trusted,
        ike_proposals=tuple(ike_proposal(p) for p in spec.get("proposals", ["aes128gcm16-prfsha256-x25519"])),
        child=children[0] if children else None, extra_children=tuple(children[1:]),
        cp_request=tuple(c.CpAttributeType[a] for a in spec.get("cp_request", [])),
        mobike=spec.get("mobike", True),
        timers=Timers(retransmit_timeout=spec.get("retransmit_timeout", 0.5)),
    )
    if psk is not None:
        kw["psk_lookup"] = lambda ident: psk.encode()
    cfg = IkeConfig(**kw)
    if spec["role"] == "initiator":
        return IkeInitiator(cfg, (spec["local"], 500), (spec["remote"], 500), rng)
    asg = spec.get("assign") or {}

    def allocator(req):
        ip = ipaddress.ip_address
        return CpAssignment(
            home_address=ip(asg["home_address"]) if asg.get("home_address") else None,
            ha_address=ip(asg["ha_address"]) if asg.get("ha_address") else None,
            ha_address4=ip(asg["ha_address4"]) if asg.get("ha_address4") else None,
            ipv4=ip(asg["ipv4"]) if asg.get("ipv4") else None)

    return IkeResponder(cfg, (spec["local"], 500), rng, allocator=allocator if asg else None,
                        cookie_threshold=spec.get("cookie_threshold"))


def _build_dataplane(spec: dict | None):
    if not spec:
        return None
    from s2c.dataplane.plane import DataPlane

    return DataPlane(tun_name=spec.get("tun", "esp0"), tun_addresses=spec.get("addresses", []),
                     routes=spec.get("routes", []), workers=spec.get("workers", 1),
                     backend=spec.get("backend", "thread"), raw_esp=spec.get("raw_esp", False))


# ============================================================================ child-process main

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])

    def out(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    dp = _build_dataplane(spec.get("dataplane"))
    if dp is not None:
        dp.start()
    drv = None
    try:
        core = build_core(spec)
        drv = IkeUdpDriver(core, dataplane=dp, on_event=lambda e: out(event_json(e)),
                           auto_net=(spec.get("dataplane") or {}).get("auto_net", True))
        if dp is not None:
            dp.set_mh_handler(lambda nh, payload, src, spi: out(
                {"transport": {"next_header": nh, "payload": payload.hex(), "src": src, "spi": spi}}))
        out({"ready": True})
        if spec["role"] == "initiator" and spec.get("autostart", True):
            core.initiate(drv.clock())
        stdin = sys.stdin
        while True:
            ready = drv.poll(0.2, [stdin])
            if not ready:
                continue
            line = stdin.readline()
            if not line:
                break
            try:
                cmd = json.loads(line)
            except ValueError:
                out({"reply": "error", "error": f"bad command {line!r}"})
                continue
            name = cmd.get("cmd")
            now = drv.clock()
            try:
                if name == "quit":
                    out({"reply": "quit", "stats": dict(core.stats), "errors": list(core.errors)})
                    break
                _command(drv, core, dp, name, cmd, now, out)
            except Exception as e:  # noqa: BLE001 - report to the test, keep running
                out({"reply": name, "error": f"{type(e).__name__}: {e}"})
            drv.flush()
    finally:
        if drv is not None:
            drv.close()
        if dp is not None:
            dp.stop()
    return 0


def _command(drv: IkeUdpDriver, core: Any, dp: Any, name: str, cmd: dict, now: float, out: Callable) -> None:
    responder = hasattr(core, "sas")
    sa_id = cmd.get("sa_id") or (core.sas()[0].sa_id if responder and core.sas() else None)
    if name == "initiate":
        core.initiate(now)
    elif name == "update_addresses":
        new_remote = tuple(cmd["remote"]) if cmd.get("remote") else None
        core.update_addresses((cmd["local"], core.local_addr[1]), now, new_remote)
    elif name == "create_child":
        child = child_config(cmd["child"], core.config.child.esp_proposals if core.config.child else ()) \
            if cmd.get("child") else None
        core.create_child(sa_id, now, child) if responder else core.create_child(now, child)
    elif name == "rekey_child":
        sa = drv.ike_sa(sa_id)
        spi = cmd.get("spi_in") or sa.children[0].spi_in
        core.rekey_child(sa_id, spi, now) if responder else core.rekey_child(spi, now)
    elif name == "delete_child":
        spi = cmd.get("spi_in") or drv.ike_sa(sa_id).children[0].spi_in
        core.delete_child(sa_id, spi, now) if responder else core.delete_child(spi, now)
    elif name in ("rekey_ike", "delete", "liveness_check"):
        getattr(core, name)(sa_id, now) if responder else getattr(core, name)(now)
    elif name == "send_transport":
        ok = dp.send_transport(bytes.fromhex(cmd["payload"]), int(cmd.get("next_header", 135)), cmd["src"], cmd["dst"])
        out({"reply": name, "ok": bool(ok)})
        return
    elif name == "keys":
        for sa in (core.sas() if responder else [core.sa]):
            drv._note_ike_keys(sa.sa_id)
        out({"reply": "keys", "ike": drv.ike_lines, "esp": drv.esp_uat_records()})
        return
    elif name == "stats":
        out({"reply": "stats", "stats": dict(core.stats), "errors": list(core.errors),
             "dataplane": dp.stats() if dp is not None else None, "sent": drv.sent, "send_errors": drv.send_errors, "received": drv.received})
        return
    else:
        raise ValueError(f"unknown command {name!r}")
    out({"reply": name, "ok": True})


# ============================================================================ test-side handle

class IkeUdpProcess:
    """Runs ``python -m s2c.testing.ike_udp SPEC`` in network namespace ``netns``; JSON lines both ways."""

    def __init__(self, netns: str, spec: dict, stderr_path: str | None = None) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._stderr = open(stderr_path, "w") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-m", "s2c.testing.ike_udp", json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env,
            start_new_session=True)
        self.lines: list[dict] = []
        self._fd = self.proc.stdout.fileno()
        self._buf = b""
        self.stderr_path = stderr_path
        self.wait(lambda d: d.get("ready"), 20, "ready")

    @property
    def events(self) -> list[dict]:
        return [d for d in self.lines if "event" in d]

    def names(self) -> list[str]:
        return [d["event"] for d in self.events]

    def _read(self, timeout: float) -> bool:
        """Read what the driver printed (raw fd + own line buffer: select() and a buffered
        readline() would strand lines in Python's buffer)."""
        r, _, _ = select.select([self._fd], [], [], timeout)
        if not r:
            return False
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            raise AssertionError(f"driver exited ({self.proc.poll()}); lines: {self.lines[-5:]}; {self._err()}")
        self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if line.strip():
                self.lines.append(json.loads(line))
        return True

    def _err(self) -> str:
        if self.stderr_path:
            try:
                return open(self.stderr_path).read()[-3000:]
            except OSError:
                pass
        return ""

    def wait(self, pred: Callable[[dict], bool], timeout: float = 15.0, what: str = "", start: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        idx = start
        while True:
            while idx < len(self.lines):
                if pred(self.lines[idx]):
                    return self.lines[idx]
                idx += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timeout waiting for {what}; events: {self.names()}; tail: {self.lines[-3:]}")
            self._read(min(left, 0.2))

    def wait_event(self, name: str, count: int = 1, timeout: float = 15.0) -> dict:
        seen = [0]

        def pred(d: dict) -> bool:
            if d.get("event") == name:
                seen[0] += 1
                return seen[0] >= count
            return False
        return self.wait(pred, timeout, f"{name} #{count}")

    def settle(self, t: float) -> None:
        deadline = time.monotonic() + t
        while (left := deadline - time.monotonic()) > 0:
            self._read(min(left, 0.1))

    def cmd(self, name: str, timeout: float = 10.0, **kw: Any) -> dict:
        start = len(self.lines)
        self.proc.stdin.write(json.dumps({"cmd": name, **kw}) + "\n")
        self.proc.stdin.flush()
        reply = self.wait(lambda d: d.get("reply") == name, timeout, f"reply to {name}", start)
        if "error" in reply:
            raise AssertionError(f"{name}: {reply['error']}")
        return reply

    def close(self) -> dict:
        bye: dict = {}
        if self.proc.poll() is None:
            try:
                bye = self.cmd("quit", timeout=5)
            except (AssertionError, OSError, ValueError):
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(5)
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()
        return bye

    def __enter__(self) -> "IkeUdpProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
