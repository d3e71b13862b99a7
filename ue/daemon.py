"""UE daemon: IKEv2 initiator with EAP-AKA from a software USIM towards the PDN GW over one radio,
Home Address from CP, userspace ESP through the TUN device ``esp0``, MOBIKE when the radio's
address changes, liveness checks and re-attach (docs/ike.md).

Params (docs/control.md): ``imsi``, ``k``, ``opc`` or ``op``, ``sqn`` (the USIM's SQN_MS), ``ipv4_hoa``
(ask for an IPv4 HoA too, default true), ``radios``; optional ``pdngw_fqdn`` (IDr),
``pki`` (folder with ``ca.crt``; default <run dir>/pki), ``dpd_interval`` (s, default 2),
``retransmit_timeout`` (s, default 0.5), ``retransmit_tries`` (default 4), ``reattach`` (default true),
``ike_rekey_time`` / ``child_rekey_time`` (s, default 3600 / 1200: the UE rekeys, RFC 7296 §2.8),
``workers`` (data plane processes, default 1 on <= 2 CPUs, else 2), ``busy_poll_us`` (data plane
busy-poll window after traffic, default 20000; 0 = always sleep in epoll), ``dataplane`` (``userspace``
default, ``xfrm`` = kernel ESP where the kernel has it, ``auto``; docs/dataplane.md), ``udp_gso`` (UDP GSO on
ESP-in-UDP, default false: captures show one frame per datagram; the lab sets it for runs without
captures), ``keys`` (Wireshark key files, default <run dir>/keys);
interop: ``auth`` (``eap`` default, ``psk`` with ``psk``, ``cert`` with ``cert``/``key`` PEM paths),
``ue_id`` (IDi instead of the NAI), ``pdngw_id`` (IDr instead of ``pdngw_fqdn``), ``check_id_in_cert``,
``force_encap`` (fake NAT-D source hash: ESP in UDP 4500 even without a NAT, for kernel-libipsec peers),
``mh_child`` (default true; false: the IKE_AUTH CHILD SA is the tunnel one and no transport-mode MH SA is
asked for, for peers that cannot install transport mode, e.g. strongSwan with kernel-libipsec).
Peers: ``pdngw`` (its S2c addresses).

Control: ``attach {radio, wait, k?, opc?}``, ``detach``, ``handover {radio}`` / ``radio_changed {radio}``,
``sas``, and ``status`` with ``state``, ``imsi``, ``hoa``, ``coa``, ``radios``, ``last_failure``.
User traffic goes into the tunnel: ``default dev esp0 metric 5`` (before the radios' defaults) and
``ip rule from <HoA> lookup 220`` (``default dev esp0`` in table 220); IKE and ESP to the PDN GW keep
using the radio through a pinned host route (plus an ``unreachable`` fallback, so they never loop
into the tunnel while the radio moves).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from s2c.codec.ikev2 import CpAttributeType, DhGroup, EncrId, IntegId, NotifyType, TrafficSelector
from s2c.crypto.sqn import SqnWindow
from s2c.eap_aka import AkaPeer, AuthenticationFailed as AkaFailed, AuthenticationRejected, \
    AuthenticationSucceeded, ProtocolError as AkaProtocolError, Usim, permanent_nai
from s2c.ike import (
    DSMIP6_CP_REQUEST, ChildConfig, DynamicTs, EapAuth, EspProposal, Identity, IkeConfig, IkeInitiator, IkeProposal,
    ProtocolError, PskAuth, SaState, Timers,
)
from s2c.ike import events as ev
from s2c.ike.events import ChildMode
from s2c.pki import DEFAULT_PDNGW_FQDN
from s2c.runtime.control import ControlError, Handler
from s2c.runtime.dataplane import DataPlaneParams, loose_rp_filter, make_dataplane, stop_dataplane
from s2c.runtime.node import NodeDaemon

from s2c.runtime.ike_io import (
    CoreTimer, drain_core,
    KeyLog, UdpIke, child_view, esp_pair, identity_from, ike_view, load_cert_auth, pki_dir_of, psk_bytes, run_dir_of,
)

HOA_TABLE = 220
HOA_RULE_PREF = 100
TUN_METRIC = 5
IKE_PROPOSALS = (
    IkeProposal(EncrId.ENCR_AES_GCM_16, 256, integ=IntegId.NONE, dh_groups=(DhGroup.ECP_256,)),
    IkeProposal(EncrId.ENCR_AES_CBC, 128, dh_groups=(DhGroup.ECP_256,)),
)
ESP_PROPOSALS = (EspProposal(EncrId.ENCR_AES_GCM_16, 128),
                 EspProposal(EncrId.ENCR_AES_CBC, 128, IntegId.AUTH_HMAC_SHA2_256_128))
MH_CHILD = ChildConfig(ChildMode.TRANSPORT, (DynamicTs(6, 135),), (DynamicTs(6, 135),), ESP_PROPOSALS)


def _hex(v: Any) -> bytes | None:
    if v in (None, ""):
        return None
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return bytes.fromhex(str(v).replace(" ", "").removeprefix("0x"))


class AttachFailed(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class UeDaemon(NodeDaemon):
    kind = "ue"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        p = config.params or {}
        self.imsi = str(p.get("imsi") or "")
        self.nai = permanent_nai(self.imsi) if self.imsi.isdigit() and 6 <= len(self.imsi) <= 15 else None
        self.fqdn = str(p.get("pdngw_fqdn") or DEFAULT_PDNGW_FQDN)
        self.want_v4 = bool(p.get("ipv4_hoa", True))
        self.dpd = float(p.get("dpd_interval") or 2.0)
        self.rto = float(p.get("retransmit_timeout") or 0.5)
        self.tries = int(p.get("retransmit_tries") or 4)
        self.reattach = bool(p.get("reattach", True))
        self.force_encap = bool(p.get("force_encap", False))
        self.ike_rekey = float(p.get("ike_rekey_time") or 3600.0)
        self.child_rekey = float(p.get("child_rekey_time") or 1200.0)
        self.dpp = DataPlaneParams.from_params(p)
        self.dataplane = "userspace"  # until start() chose the backend
        window = SqnWindow.starting_at(int(p["sqn"])) if p.get("sqn") else SqnWindow()
        self.window = window  # one USIM for the daemon's life: SQN freshness spans re-attaches
        rd = run_dir_of(config)
        keys = p.get("keys") or (rd / "keys" if rd is not None else None)
        self.keylog = KeyLog(None if keys is None else Path(keys), prefix=f"{config.node}-")
        self.state = "detached"
        self.radio: str | None = None
        self.coa: str | None = None
        self.pgw: str | None = None
        self.ike: IkeInitiator | None = None
        self.aka: AkaPeer | None = None
        self.hoa6: str | None = None
        self.hoa4: str | None = None
        self.hnp: str | None = None
        self.ha: str | None = None
        self.children: dict[int, Any] = {}  # spi_in -> ChildSaEstablished
        self.last_failure: dict[str, Any] | None = None
        self.timings: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.dp: Any = None
        self.io = UdpIke(self._on_datagram)
        self._timer = CoreTimer(self._on_timer)
        self._done: asyncio.Future[dict[str, Any]] | None = None
        self._t0 = 0.0
        self._mh_child = bool(p.get("mh_child", True))
        self._tunnel_requested = False
        self._monitor: asyncio.Task[None] | None = None
        self._reattach_task: asyncio.Task[None] | None = None
        self._want_attached = False
        self._lock: asyncio.Lock | None = None
        self._mobike_pending: dict[str, Any] | None = None
        self.ipr: Any = None
        self._pinned: set[tuple[str, int, int]] = set()
        self._configured: tuple[str | None, str | None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self.ipr = _ThreadedIPRoute()
        self.dp, self.dataplane, why = make_dataplane(self.dpp, tun_name="esp0")
        self.log.info("ESP data plane: %s (%s)", self.dataplane, why)
        if self.dataplane == "xfrm":
            loose_rp_filter()
        await loop.run_in_executor(None, self.dp.start)
        await loop.run_in_executor(None, self.dp.stats)  # returns once every worker process runs its loop
        self.dp.set_ike_handler(lambda data, addr: self._on_datagram(data, (addr[0], addr[1]), None))
        self.dp.attach(loop)
        self.io.dataplane = self.dp
        await self.io.bind(["0.0.0.0", "::"])
        self._write_sysctl("ipv4/conf/esp0/rp_filter", "0")
        self._monitor = loop.create_task(self._watch_radio())

    async def stop(self) -> None:
        self._want_attached = False
        for t in (self._monitor, self._reattach_task):
            if t is not None:
                t.cancel()
        if self.ike is not None and self.ike.state == SaState.ESTABLISHED:
            try:
                self.ike.delete(self._now())
                self._pump()
            except ProtocolError:
                pass
        self._timer.cancel()
        self.io.close()
        self._unconfigure_hoa()
        stop_dataplane(self.dp, self.log)
        self.dp = None
        if self.ipr is not None:
            self.ipr.close()
            self.ipr = None

    @staticmethod
    def _write_sysctl(path: str, value: str) -> None:
        try:
            with open(f"/proc/sys/net/{path}", "w") as fh:
                fh.write(value)
        except OSError:
            pass

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # -- radios ---------------------------------------------------------------------------------------
    def _radio_names(self) -> list[str]:
        radios = (self.config.params or {}).get("radios") or {}
        names = list(radios) if isinstance(radios, dict) else list(radios)
        return names or [i for i in (self.config.interfaces or {}) if i != "esp0"]

    def _addresses(self, iface: str) -> list[str]:
        """Global addresses of ``iface`` now (IPv6 first), from netlink."""
        if self.ipr is None:
            return []
        try:
            idx = self.ipr.link_lookup(ifname=iface)
            if not idx:
                return []
            out6, out4 = [], []
            for msg in self.ipr.get_addr(index=idx[0]):
                a = msg.get_attr("IFA_ADDRESS")
                if a is None:
                    continue
                ip = ipaddress.ip_address(a)
                if ip.is_link_local or ip.is_loopback or ip.is_multicast:
                    continue
                (out6 if ip.version == 6 else out4).append(str(ip))
            return out6 + out4
        except Exception:  # noqa: BLE001 - the interface may vanish mid-query (move)
            return []

    def _pgw_addresses(self) -> dict[int, list[str]]:
        """The PDN GW's addresses by family, ``params.pdngw_address`` (str or list) first; never our HA
        (the lab lists every address of the node, the home-link one too)."""
        p = (self.config.peers or {}).get("pdngw") or {}
        pref = (self.config.params or {}).get("pdngw_address") or []
        pref = [pref] if isinstance(pref, str) else list(pref)
        out: dict[int, list[str]] = {4: [], 6: []}
        for a in [*pref, *(p.get("ipv4") or []), *(p.get("ipv6") or [])]:
            fam = ipaddress.ip_address(a).version
            if a not in out[fam] and a != self.ha:
                out[fam].append(a)
        return out

    def _pick_path(self, radio: str) -> tuple[str, str] | None:
        """(CoA on radio, PDN GW address) of one family both have (IPv6 preferred: no NAT)."""
        pgw = self._pgw_addresses()
        for a in self._addresses(radio):
            fam = ipaddress.ip_address(a).version
            if pgw[fam]:
                return a, pgw[fam][0]
        return None

    def _radio_gateway(self, radio: str, fam: int) -> tuple[int, str | None] | None:
        """(ifindex, gateway) of the radio's default route of that family (None: no route yet)."""
        try:
            idx = self.ipr.link_lookup(ifname=radio)
            if not idx:
                return None
            for r in self.ipr.get_routes(family=socket.AF_INET6 if fam == 6 else socket.AF_INET, table=254):
                if r.get("dst_len") == 0 and r.get_attr("RTA_OIF") == idx[0]:
                    return idx[0], r.get_attr("RTA_GATEWAY")
        except Exception:  # noqa: BLE001 - the radio may vanish mid-query (move)
            return None
        return None

    def _pin_pgw_route(self, radio: str, pgw: str) -> bool:
        """Host route to the PDN GW via the radio (so IKE/ESP never enter the tunnel), and an
        unreachable fallback of lower preference (no ESP-in-ESP loop while the radio moves)."""
        fam = ipaddress.ip_address(pgw).version
        gw = self._radio_gateway(radio, fam)
        if gw is None:
            return False
        plen = 128 if fam == 6 else 32
        afam = socket.AF_INET6 if fam == 6 else socket.AF_INET
        try:
            # a gateway that is the PDN GW itself (on-link) would resolve through our own /128: dev route
            kw = {"gateway": gw[1]} if gw[1] and gw[1] != pgw else {}
            self.ipr.route("replace", family=afam, dst=pgw, dst_len=plen, oif=gw[0], priority=10, **kw)
            self._pinned.add((pgw, plen, afam))
        except Exception as exc:  # noqa: BLE001
            self.counters["route_errors"] += 1
            (self.log.warning if self.counters["route_errors"] < 5 else self.log.debug)(
                "host route to %s via %s: %s", pgw, radio, exc)
            return False
        try:
            self.ipr.route("replace", family=afam, dst=pgw, dst_len=plen, type="unreachable", priority=4000)
        except Exception as exc:  # noqa: BLE001
            self.log.debug("unreachable fallback for %s: %s", pgw, exc)
        return True

    # -- configuration of the core ----------------------------------------------------------------------
    def _usim(self, args: dict[str, Any]) -> Usim:
        p = self.config.params or {}
        k = _hex(args.get("k")) or _hex(p.get("k")) or bytes(16)
        opc = _hex(args.get("opc")) or _hex(p.get("opc"))
        op = _hex(p.get("op"))
        if opc is None and op is not None:
            return Usim.from_op(k, op, self.window)
        return Usim(k, opc or bytes(16), self.window)

    def _ike_config(self) -> IkeConfig:
        ca_path = pki_dir_of(self.config) / "ca.crt"
        try:
            ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise AttachFailed("NO_TRUST_ANCHOR", f"{ca_path}: {exc}") from None
        cp = tuple(DSMIP6_CP_REQUEST) + ((CpAttributeType.INTERNAL_IP4_ADDRESS,) if self.want_v4 else ())
        p = self.config.params or {}
        method = str(p.get("auth") or "eap")
        if method == "eap":
            auth: Any = EapAuth()
        elif method == "psk":
            auth = PskAuth(psk_bytes(p.get("psk") or ""))
        elif method == "cert":
            try:
                auth = load_cert_auth(p["cert"], p["key"])
            except (KeyError, OSError, ValueError) as exc:
                raise AttachFailed("NO_CREDENTIALS", f"cert/key: {exc}") from None
        else:
            raise AttachFailed("NO_CREDENTIALS", f"unknown auth method {method!r} (eap, psk, cert)")
        local_id = identity_from(str(p["ue_id"])) if p.get("ue_id") else Identity.rfc822(self.nai or "")
        remote_id = identity_from(str(p["pdngw_id"])) if p.get("pdngw_id") else Identity.fqdn(self.fqdn)
        return IkeConfig(
            local_id=local_id, auth=auth, remote_id=remote_id, check_id_in_cert=bool(p.get("check_id_in_cert", True)),
            trusted_certs=(ca,), ike_proposals=IKE_PROPOSALS, cp_request=cp, mobike=True,
            child=MH_CHILD if self._mh_child else self._tunnel_child(v4=self.want_v4),
            timers=Timers(retransmit_timeout=self.rto, retransmit_factor=1.5, retransmit_tries=self.tries,
                          dpd_interval=self.dpd, ike_rekey_time=self.ike_rekey, child_rekey_time=self.child_rekey),
        )

    def _tunnel_child(self, v4: bool | None = None) -> ChildConfig:
        local: tuple[Any, ...] = (DynamicTs(6, 0),)
        remote: tuple[Any, ...] = (TrafficSelector.any(6),)
        if self.hoa4 if v4 is None else v4:
            local += (DynamicTs(4, 0),)
            remote += (TrafficSelector.any(4),)
        return ChildConfig(ChildMode.TUNNEL, local, remote, ESP_PROPOSALS)

    # -- attach / detach ----------------------------------------------------------------------------------
    async def _attach_cmd(self, args: dict[str, Any]) -> dict[str, Any]:
        radio = args.get("radio") or next((r for r in self._radio_names() if self._pick_path(r)), None)
        if not radio:
            raise ControlError("no radio with an address the PDN GW can be reached on")
        wait = float(args.get("wait") or 20.0)
        assert self._lock is not None
        async with self._lock:
            if self.state == "attached":
                if radio == self.radio:
                    return self._result()
                raise ControlError(f"attached over {self.radio}; detach first or use handover")
            self._want_attached = True
            try:
                return await self._attach(radio, wait, args)
            except AttachFailed as exc:
                self._want_attached = False
                return self._result(failure=exc)

    async def _attach(self, radio: str, wait: float, args: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.nai and str((self.config.params or {}).get("auth") or "eap") == "eap":
            raise AttachFailed("NO_SUBSCRIPTION", "the UE has no IMSI")
        path = self._pick_path(radio)
        if path is None:
            raise AttachFailed("NO_ADDRESS", f"{radio} has no address of a family the PDN GW has")
        cfg = self._ike_config()
        self._teardown_sas()
        coa, pgw = path
        self.radio, self.coa, self.pgw = radio, coa, pgw
        self._pin_pgw_route(radio, pgw)
        self.state = "attaching"
        self.last_failure = None
        self._tunnel_requested = False
        self.aka = AkaPeer(self._usim(args or {}), self.imsi, identity=self.nai.encode()) if self.nai else None
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        local = (_fake_address(coa) if self.force_encap else coa, 500)
        self.ike = IkeInitiator(cfg, local, (pgw, 500), os.urandom)
        self._t0 = time.perf_counter()
        self.timings = {}
        self.log.info("attach over %s: %s -> %s (%s)", radio, coa, pgw, self.nai)
        self.ike.initiate(self._now())
        self._pump()
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), wait)
        except asyncio.TimeoutError:
            self._fail("TIMEOUT", f"no CHILD SA within {wait:g} s (IKE state {self.ike.state.value})")
            raise AttachFailed("TIMEOUT", self.last_failure["detail"] if self.last_failure else "") from None

    def _result(self, failure: AttachFailed | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "radio": self.radio, "coa": self.coa, "pdngw": self.pgw,
                               "hoa": {"ipv4": self.hoa4, "ipv6": self.hoa6}, "home_prefix": self.hnp,
                               "ha": self.ha, **{f"{k}_ms": round(v * 1000, 3) for k, v in self.timings.items()}}
        if self.ike is not None:
            out["nat_detected"] = self.ike.sa.nat_detected
            out["udp_encap"] = self.ike.sa.natt
        if failure is not None or self.state != "attached":
            out["reason"] = failure.reason if failure else (self.last_failure or {}).get("reason")
            out["detail"] = failure.detail if failure else (self.last_failure or {}).get("detail")
        return out

    def _fail(self, reason: str, detail: str) -> None:
        self.log.warning("attach failed: %s (%s)", reason, detail)
        self.last_failure = {"reason": reason, "detail": detail, "time": time.time()}
        self.history = (self.history + [{"event": "failure", **self.last_failure}])[-20:]
        self.state = "detached"
        if self.ike is not None and self.ike.state not in (SaState.CLOSED, SaState.IDLE):
            try:
                self.ike.delete(self._now())  # half-open: closed at once; established: INFORMATIONAL Delete
            except ProtocolError:
                pass
            self._pump()
        self._teardown_sas()
        if self._done is not None and not self._done.done():
            self._done.set_exception(AttachFailed(reason, detail))
            self._done.exception()  # retrieved: no "never retrieved" warning if nobody awaits

    async def _detach_cmd(self, _args: dict[str, Any]) -> dict[str, Any]:
        self._want_attached = False
        if self._reattach_task is not None:
            self._reattach_task.cancel()
        if self.ike is None or self.state == "detached":
            self.state = "detached"
            return {"state": "detached", "deleted": False}
        t0 = time.perf_counter()
        deleted = False
        if self.ike.state == SaState.ESTABLISHED:
            self._closing = asyncio.get_running_loop().create_future()
            self.ike.delete(self._now())
            self._pump()
            try:
                await asyncio.wait_for(self._closing, 3.0)
                deleted = True
            except asyncio.TimeoutError:
                pass
        self._teardown_sas()
        self.state = "detached"
        self.history = (self.history + [{"event": "detach", "time": time.time()}])[-20:]
        return {"state": "detached", "deleted": deleted, "detach_ms": round((time.perf_counter() - t0) * 1000, 3)}

    # -- IO -------------------------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, addr: tuple[str, int], local: tuple[str, int] | None) -> None:
        if self.ike is None:
            self.counters["ike_rx_no_sa"] += 1
            return
        self.counters["ike_rx"] += 1
        before = sum(self.ike.stats.values())
        try:
            self.ike.receive_datagram(data, addr, self._now())
        except Exception:  # noqa: BLE001
            self.counters["ike_internal_errors"] += 1
            self.log.exception("IKE datagram from %s", addr)
        if sum(self.ike.stats.values()) > before:
            self.counters["ike_dropped"] += 1
        self._pump()

    def _pump(self) -> None:
        ike = self.ike
        if ike is None:
            return
        drain_core(ike, self._now, self.io.send, self._on_event, self.counters, self.log)
        self._arm()

    def _arm(self) -> None:
        self._timer.arm(self.ike.get_timer() if self.ike is not None else None)

    def _on_timer(self) -> None:
        if self.ike is not None:
            self.ike.handle_timer(self._now())
        self._pump()

    # -- events -----------------------------------------------------------------------------------------------
    def _mark(self, name: str) -> None:
        self.timings.setdefault(name, time.perf_counter() - self._t0)

    def _on_event(self, e: ev.IkeEvent) -> None:
        ike = self.ike
        assert ike is not None
        now = self._now()
        if isinstance(e, ev.EapRequestReceived):
            self._mark("first_eap")
            self._on_eap(e.eap, now)
        elif isinstance(e, ev.IkeSaEstablished):
            self._mark("ike_sa")
            self.log.info("IKE SA established with %s (NAT %s, MOBIKE %s)", e.remote_id, e.nat_detected, e.mobike)
            try:
                self.keylog.ike(ike.sa.wireshark_line())
            except ValueError:
                pass
        elif isinstance(e, ev.CpAssigned):
            self.hoa6 = str(e.home_address) if e.home_address else None
            self.hoa4 = str(e.ipv4) if e.ipv4 else None
            self.hnp = str(e.home_prefix) if e.home_prefix else None
            self.ha = str(e.ha_address) if e.ha_address else None
            self._hoa_pending = True  # configured once the tunnel CHILD SA is asked for (attach latency)
        elif isinstance(e, ev.ChildSaEstablished):
            self.children[e.spi_in] = e
            if e.mode == ChildMode.TRANSPORT:
                self._mark("child_sa")
                if not self._tunnel_requested:
                    self._tunnel_requested = True
                    ike.create_child(now, self._tunnel_child())
                    for data, addr in ike.datagrams_to_send(now):  # on the wire before the local work
                        self.io.send(data, addr)
                        self.counters["ike_tx"] += 1
            if getattr(self, "_hoa_pending", False):
                self._hoa_pending = False
                self._configure_hoa()
            if self.dp is not None:
                self.dp.install_child_sa(e, priority=10 if e.mode == ChildMode.TRANSPORT else 0)
            for sa in esp_pair(e):
                self.keylog.esp(sa)
            self.log.info("CHILD SA %08x/%08x %s %s <-> %s", e.spi_in, e.spi_out, e.mode.value,
                          ",".join(map(str, e.ts_local)), ",".join(map(str, e.ts_remote)))
            if e.mode == ChildMode.TUNNEL:
                self._mark("tunnel_sa")
                self._attached()
        elif isinstance(e, ev.ChildSaFailed):
            self.counters["child_sa_failed"] += 1
            if self.state == "attaching":
                name = _notify_name(e.notify)
                self._fail(name, e.reason)
        elif isinstance(e, ev.ChildSaRekeyed):
            self.children.pop(e.old_spi_in, None)
            self.children[e.new.spi_in] = e.new
            if self.dp is not None:
                self.dp.rekey_child_sa(e.old_spi_in, e.old_spi_out, e.new)
            for sa in esp_pair(e.new):
                self.keylog.esp(sa)
        elif isinstance(e, ev.IkeSaRekeyed):
            try:
                self.keylog.ike(ike.sa.wireshark_line())
            except ValueError:
                pass
        elif isinstance(e, ev.ChildSaDeleted):
            self.children.pop(e.spi_in, None)
            self._remove_spis(e.spi_in, e.spi_out)
        elif isinstance(e, ev.IkeSaAddressesUpdated):
            self.counters["mobike_updates"] += 1
            if self._mobike_pending is not None:
                self._mobike_pending["done_ms"] = round((time.perf_counter() - self._mobike_pending["t0"]) * 1000, 3)
                self._mobike_pending.pop("t0", None)
                self.history = (self.history + [{"event": "mobike", **self._mobike_pending}])[-20:]
                self._mobike_pending = None
            self.log.info("MOBIKE: IKE SA now %s:%d -> %s:%d (NAT %s)", e.local_addr[0], e.local_addr[1],
                          e.remote_addr[0], e.remote_addr[1], e.nat_detected)
            if self.dp is not None:
                for ch in self.children.values():
                    for spi in (ch.spi_out, ch.spi_in):
                        try:
                            self.dp.update_peer(spi, e.remote_addr[0], e.remote_addr[1], local=e.local_addr[0])
                        except Exception:  # noqa: BLE001
                            self.counters["dp_errors"] += 1
        elif isinstance(e, ev.AuthenticationFailed):
            self._fail("AUTHENTICATION_FAILED", e.reason)
        elif isinstance(e, ev.IkeSaFailed):
            self._fail(_notify_name(e.notify) if e.notify else "IKE_SA_FAILED", e.reason)
        elif isinstance(e, ev.PeerDead):
            self.counters["peer_dead"] += 1
            was = self.state
            self._fail("PEER_DEAD", "the PDN GW stopped answering (liveness check / retransmissions)")
            if was == "attached" and self.reattach and self._want_attached:
                self._schedule_reattach()
        elif isinstance(e, ev.IkeSaDeleted):
            closing = getattr(self, "_closing", None)
            if closing is not None and not closing.done():
                closing.set_result(True)
            if self.state != "detached":
                self.log.info("IKE SA deleted (%s)", e.reason)
                by_peer = "peer" in e.reason
                self._teardown_sas()
                self.state = "detached"
                if by_peer:
                    self.last_failure = {"reason": "DELETED_BY_PEER", "detail": e.reason, "time": time.time()}
                    if self.reattach and self._want_attached:
                        self._schedule_reattach()  # an always-on PDN connection comes back

    def _on_eap(self, eap: bytes, now: float) -> None:
        aka, ike = self.aka, self.ike
        assert ike is not None
        if aka is None:
            self._fail("EAP_PROTOCOL_ERROR", "EAP from the PDN GW but no USIM")
            return
        try:
            aka.receive(eap)
        except AkaProtocolError as exc:
            self._fail("EAP_PROTOCOL_ERROR", str(exc))
            return
        while (msg := aka.next_message()) is not None:
            try:
                ike.send_eap_response(msg, now)
            except ProtocolError as exc:
                self.counters["eap_response_dropped"] += 1
                self.log.info("EAP response not sent: %s", exc)
        while (a := aka.next_event()) is not None:
            if isinstance(a, AuthenticationSucceeded):
                ike.provide_eap_result(a.msk, now)
            elif isinstance(a, (AkaFailed, AuthenticationRejected)):
                self.counters["aka_" + type(a).__name__] += 1
                self.last_failure = {"reason": "AUTHENTICATION_FAILED", "detail": f"USIM: {a.reason}",
                                     "time": time.time()}

    def _attached(self) -> None:
        self.state = "attached"
        self.history = (self.history + [{"event": "attached", "radio": self.radio, "coa": self.coa,
                                         "time": time.time(), **{k: round(v * 1000, 3) for k, v in
                                                                 self.timings.items()}}])[-20:]
        self.log.info("attached: HoA %s / %s, %s", self.hoa6, self.hoa4,
                      ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.timings.items()))
        routes = getattr(self, "_routes_future", None)
        if routes is not None and not routes.done():
            routes.add_done_callback(lambda _f: self._report_attached())
        else:
            self._report_attached()

    def _report_attached(self) -> None:
        self._mark("routes")
        if self._done is not None and not self._done.done():
            self._done.set_result(self._result())

    # -- re-attach after a dead PDN GW --------------------------------------------------------------------------
    def _schedule_reattach(self) -> None:
        if self._reattach_task is not None and not self._reattach_task.done():
            return
        self._reattach_task = asyncio.get_running_loop().create_task(self._reattach_loop())

    async def _reattach_loop(self) -> None:
        assert self._lock is not None
        delay = 0.5
        while self._want_attached and self.state != "attached":
            await asyncio.sleep(delay)
            radio = self.radio or (self._radio_names() or [None])[0]
            if radio is None:
                return
            async with self._lock:
                if not self._want_attached or self.state == "attached":
                    return
                self.counters["reattach_attempts"] += 1
                try:
                    await self._attach(radio, 10.0)
                    self.counters["reattaches"] += 1
                    self.history = (self.history + [{"event": "reattached", "time": time.time()}])[-20:]
                    return
                except AttachFailed as exc:
                    self.log.info("re-attach failed: %s", exc)
            delay = min(delay * 2, 4.0)

    # -- MOBIKE ---------------------------------------------------------------------------------------------------
    async def _watch_radio(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:
                self._check_radio()
                self._check_dataplane_events()
            except Exception:  # noqa: BLE001
                self.counters["monitor_errors"] += 1
                self.log.exception("radio monitor")

    def _check_radio(self, radio: str | None = None) -> dict[str, Any]:
        """If the attached radio lost our CoA (or ``radio`` differs), move the IKE SA (RFC 4555 §3.5)."""
        if self.state != "attached" or self.ike is None or not self.ike.sa.mobike:
            return {"moved": False, "state": self.state}
        target = radio or self.radio
        assert target is not None
        addrs = self._addresses(target)
        if target == self.radio and self.coa in addrs:
            return {"moved": False, "coa": self.coa}
        path = self._pick_path(target)
        if path is None:
            return {"moved": False, "coa": None, "waiting": True}
        coa, pgw = path
        if not self._pin_pgw_route(target, pgw):
            return {"moved": False, "coa": None, "waiting": "no route on the radio yet"}
        natt = self.ike.sa.natt
        remote = (pgw, 4500 if natt else 500)
        t0 = time.perf_counter()
        self._mobike_pending = {"from": self.coa, "to": coa, "radio": target, "t0": t0, "time": time.time()}
        self.log.info("MOBIKE: %s -> %s over %s (PDN GW %s)", self.coa, coa, target, pgw)
        self.radio, self.coa, self.pgw = target, coa, pgw
        try:
            self.ike.update_addresses((coa, 0), self._now(), remote)
        except ProtocolError as exc:
            self.counters["mobike_errors"] += 1
            return {"moved": False, "error": str(exc)}
        self._pump()
        return {"moved": True, "coa": coa, "pdngw": pgw}

    def _check_dataplane_events(self) -> None:
        """An outbound SA near its sequence-number limit asks for a rekey (RFC 4303 §3.3.3)."""
        if self.dp is None or not self.dp.events:
            return
        events, self.dp.events = self.dp.events, []
        for e in events:
            if e and e[0] == "rekey_needed" and self.ike is not None and self.state == "attached":
                ch = next((c for c in self.children.values() if c.spi_out == e[1]), None)
                if ch is not None:
                    self.counters["rekey_needed"] += 1
                    try:
                        self.ike.rekey_child(ch.spi_in, self._now())
                    except ProtocolError:
                        pass
                    self._pump()

    def _radio_changed_cmd(self, args: dict[str, Any]) -> dict[str, Any]:
        radio = args.get("radio")
        if radio is not None and radio not in self._radio_names():
            raise ControlError(f"unknown radio {radio!r} (radios: {', '.join(self._radio_names())})")
        return self._check_radio(radio)

    # -- data plane and routing -----------------------------------------------------------------------------------
    def _remove_spis(self, spi_in: int, spi_out: int) -> None:
        if self.dp is None:
            return
        for spi in (spi_out, spi_in):
            try:
                self.dp.remove_sa(spi)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _teardown_sas(self) -> None:
        for ch in list(self.children.values()):
            self._remove_spis(ch.spi_in, ch.spi_out)
        self.children.clear()
        self._unconfigure_hoa()

    def _tun_index(self) -> int | None:
        try:
            idx = self.ipr.link_lookup(ifname="esp0") if self.ipr is not None else []
            return idx[0] if idx else None
        except Exception:  # noqa: BLE001
            return None

    def _configure_hoa(self) -> None:
        """HoA(s) on esp0; user traffic into the tunnel: ``default dev esp0`` (metric 5, before the
        radios' defaults) and ``from <HoA> lookup 220`` (HoA-sourced traffic whatever the main table says).

        Done in the netlink thread without waiting (a dozen round trips): the event loop meanwhile
        handles the tunnel CHILD SA exchange; ``_attached`` reports once this is done."""
        idx = self._tun_index()
        if idx is None:
            return
        self._unconfigure_hoa(keep=True)
        plan = [(a, f, p) for a, f, p in ((self.hoa6, socket.AF_INET6, 128), (self.hoa4, socket.AF_INET, 32)) if a]
        log = self.log

        def work(ipr: Any) -> None:
            for addr, fam, plen in plan:
                default = "::/0" if fam == socket.AF_INET6 else "0.0.0.0/0"
                steps = [
                    ("address", lambda: ipr.addr("replace", index=idx, address=addr, prefixlen=plen,
                                                 **({"flags": 0x02} if fam == socket.AF_INET6 else {}))),
                    ("rule", lambda: ipr.rule("add", family=fam, src=addr, src_len=plen, table=HOA_TABLE,
                                              priority=HOA_RULE_PREF)),
                    ("table route", lambda: ipr.route("replace", family=fam, dst=default, oif=idx, table=HOA_TABLE)),
                    ("default route", lambda: ipr.route("replace", family=fam, dst=default, oif=idx,
                                                        priority=TUN_METRIC)),
                ]
                for what, fn in steps:
                    try:
                        fn()
                    except Exception as exc:  # noqa: BLE001 - e.g. the rule exists already
                        log.debug("HoA %s %s: %s", addr, what, exc)

        self._routes_future = asyncio.wrap_future(self.ipr.background(work))
        self._configured = (self.hoa6, self.hoa4)

    def _unconfigure_hoa(self, keep: bool = False) -> None:
        conf = self._configured
        if not conf or self.ipr is None:
            return
        self._configured = None
        idx = self._tun_index()
        for addr, fam, plen in ((conf[0], socket.AF_INET6, 128), (conf[1], socket.AF_INET, 32)):
            if not addr:
                continue
            default = "::/0" if fam == socket.AF_INET6 else "0.0.0.0/0"
            for fn in (lambda: self.ipr.rule("del", family=fam, src=addr, src_len=plen, table=HOA_TABLE,
                                             priority=HOA_RULE_PREF),
                       lambda: self.ipr.route("del", family=fam, dst=default, oif=idx, priority=TUN_METRIC),
                       lambda: self.ipr.route("del", family=fam, dst=default, oif=idx, table=HOA_TABLE),
                       lambda: self.ipr.addr("del", index=idx, address=addr, prefixlen=plen) if idx else None):
                try:
                    fn()
                except Exception:  # noqa: BLE001 - already gone
                    pass
        if not keep:
            self.hoa6 = self.hoa4 = self.hnp = self.ha = None
            for pgw, plen, afam in list(self._pinned):
                for kw in ({"priority": 10}, {"priority": 4000, "type": "unreachable"}):
                    try:
                        self.ipr.route("del", family=afam, dst=pgw, dst_len=plen, **kw)
                    except Exception:  # noqa: BLE001
                        pass
            self._pinned.clear()

    # -- control ------------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        radios = {}
        for r in self._radio_names():
            radios[r] = {"addresses": self._addresses(r)}
        return {
            "imsi": self.imsi or None,
            "nai": self.nai,
            "state": self.state,
            "radio": self.radio,
            "radios": radios,
            "coa": self.coa,
            "pdngw": self.pgw,
            "hoa": {"ipv4": self.hoa4, "ipv6": self.hoa6},
            "dataplane": self.dataplane,
            "ike_steered": getattr(self.dp, "ike_counters", {}).get("ike_steered", 0),  # 0: no plane / xfrm
            "home_prefix": self.hnp,
            "ha": self.ha,
            "ike": self.ike.state.value if self.ike is not None else None,
            "child_sas": len(self.children),
            "last_failure": self.last_failure,
            "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings.items()},
            "history": self.history[-10:],
            "interfaces": self.config.interfaces,
        }

    def commands(self) -> dict[str, Handler]:
        return {
            "attach": self._attach_cmd,
            "detach": self._detach_cmd,
            "sas": self._sas_cmd,
            "handover": self._radio_changed_cmd,
            "radio_changed": self._radio_changed_cmd,
        }

    def _sas_cmd(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        if self.ike is None or self.ike.state in (SaState.CLOSED, SaState.IDLE):
            return []
        stats: dict[Any, Any] = {}
        if self.dp is not None:
            try:
                stats = self.dp.stats().get("sas", {})
            except Exception:  # noqa: BLE001
                stats = {}
        d = ike_view(self.ike.sa)
        d["children"] = [child_view(ch, stats) for ch in self.ike.sa.children]
        return [d]


class _ThreadedIPRoute:
    """pyroute2's synchronous IPRoute refuses to run inside a running asyncio loop (0.9): keep one in a
    dedicated thread and call it synchronously (each call is one quick netlink round trip)."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from pyroute2 import IPRoute

        self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._ipr = self._ex.submit(IPRoute).result()

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._ipr, name)

        def call(*a: Any, **kw: Any) -> Any:
            res = self._ex.submit(lambda: fn(*a, **kw)).result(5.0)
            return list(res) if hasattr(res, "__iter__") and not isinstance(res, (list, tuple, dict, str)) else res
        return call

    def background(self, fn: Any) -> Any:
        """Run ``fn(ipr)`` in the netlink thread (after the calls queued before); a concurrent Future."""
        return self._ex.submit(fn, self._ipr)

    def close(self) -> None:
        try:
            self._ex.submit(self._ipr.close).result(5.0)
        finally:
            self._ex.shutdown(wait=False)


def _fake_address(addr: str) -> str:
    """A documentation address of the same family for the NAT_DETECTION_SOURCE_IP hash: the peer then
    sees a NAT and both sides use UDP encapsulation (forced encapsulation, as strongSwan's encap=yes)."""
    return "2001:db8:ffff::1" if ":" in addr else "192.0.2.254"


def _notify_name(n: int | None) -> str:
    if n is None:
        return "FAILED"
    try:
        return NotifyType(n).name
    except ValueError:
        return f"NOTIFY_{n}"
