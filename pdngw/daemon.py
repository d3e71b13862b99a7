"""PDN GW daemon: IKEv2 responder on S2c (UDP 500/4500), EAP authenticator relaying EAP-AKA to the
3GPP AAA over Diameter S6b, Home Address allocation (CP), userspace ESP (docs/ike.md).

Params (docs/control.md; all optional except what the lab writes):

    s2c:          {"ipv4": [...], "ipv6": [...]} addresses IKE listens on (lab-written)
    fqdn:         IDr and certificate name (default pdngw.epc.mnc001.mcc001.3gppnetwork.org)
    pki:          folder of ca.crt/pdngw.crt/pdngw.key (default <run dir>/pki; created if missing)
    home_prefix:  pool of home network prefixes, one /home_prefix_len per UE (default 2001:db8:1::/48)
    home_prefix_len: 64
    ha_address:   Home Agent address (default: our address inside home_prefix, e.g. 2001:db8:1::1)
    ipv4_pool:    IPv4 home addresses (default 198.19.0.0/24), given when the UE asks for one
    realm:        Diameter realm (default epc.mnc001.mcc001.3gppnetwork.org)
    cookie_threshold: half-open IKE SAs before COOKIEs are asked (default 50)
    workers:      data plane worker processes, 1 or 2 (default 1 on <= 2 CPUs, else 2)
    busy_poll_us: data plane busy-poll window after traffic (default 20000; 0 = always sleep in epoll)
    dataplane:    ``userspace`` (default), ``xfrm`` (kernel ESP, where the kernel has it) or ``auto``
    udp_gso:      UDP GSO on ESP-in-UDP (default false; the lab sets it for runs without captures)
    keys:         folder for Wireshark key files (default <run dir>/keys)
    interop:      ``auth`` (``cert`` default, or ``psk``), ``psk`` (also accepted from PSK initiators),
                  ``cert``/``key`` (PEM paths instead of the run PKI's), ``id`` (IDr instead of fqdn),
                  ``check_id_in_cert`` (default true), ``force_encap`` (fake NAT-D hash: ESP in UDP 4500)

Peers: ``hss.diameter`` = {"address", "port"} (lab-written).

Per IKE SA one S6b session (Session-Id per IKE SA): the initiator's IDi becomes an
EAP-Response/Identity in the first DER; DEA 1001 -> EAP request to the UE, 2001 + MSK -> EAP
Success and the MSK-keyed AUTH, 4001/5001/errors -> EAP Failure. The first CHILD SA is the
transport-mode MH SA between HoA and HA (RFC 4877 §4.2); a tunnel-mode CHILD SA (HoA <-> any)
carries user traffic through the TUN device ``esp0``; the home prefix pool is routed into it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from s2c.codec.diameter import ApplicationId, VENDOR_3GPP
from s2c.codec.ikev2 import NON_ESP_MARKER, CpAttributeType, DhGroup, EncrId, IntegId, TrafficSelector
from s2c.diameter.messages import DiameterEapAnswer, LocalIdentity, SessionIdGenerator, build_der
from s2c.ike import (
    AddressRequest, CertAuth, ChildConfig, CpAssignment, DynamicTs, EspProposal, Identity, IkeConfig, IkeProposal,
    IkeResponder, ProtocolError, PskAuth, Timers,
)
from s2c.ike import events as ev
from s2c.ike.events import ChildMode
from s2c.pki import DEFAULT_PDNGW_FQDN, ensure_pki
from s2c.runtime.control import ControlError, Handler
from s2c.runtime.dataplane import DataPlaneParams, loose_rp_filter, make_dataplane, stop_dataplane
from s2c.runtime.node import NodeDaemon

from pdngw.relay import EapSuccess, SendEapRequest, dea_action, identity_response
from s2c.runtime.ike_io import (
    CoreTimer, drain_core,
    KeyLog, UdpIke, child_view, esp_pair, identity_from, ike_view, load_cert_auth, pki_dir_of, psk_bytes, run_dir_of,
)

DEFAULT_REALM = "epc.mnc001.mcc001.3gppnetwork.org"
DEFAULT_HOME_PREFIX = "2001:db8:1::/48"
DEFAULT_IPV4_POOL = "198.19.0.0/24"

IKE_PROPOSALS = (
    IkeProposal(EncrId.ENCR_AES_GCM_16, 256, integ=IntegId.NONE,
                dh_groups=(DhGroup.ECP_256, DhGroup.CURVE25519, DhGroup.MODP_2048)),
    IkeProposal(EncrId.ENCR_AES_GCM_16, 128, integ=IntegId.NONE,
                dh_groups=(DhGroup.ECP_256, DhGroup.CURVE25519, DhGroup.MODP_2048)),
    IkeProposal(EncrId.ENCR_AES_CBC, 128, dh_groups=(DhGroup.ECP_256, DhGroup.CURVE25519, DhGroup.MODP_2048)),
    IkeProposal(EncrId.ENCR_AES_CBC, 256, dh_groups=(DhGroup.ECP_256, DhGroup.CURVE25519, DhGroup.MODP_2048)),
)
ESP_PROPOSALS = (
    EspProposal(EncrId.ENCR_AES_GCM_16, 128), EspProposal(EncrId.ENCR_AES_GCM_16, 256),
    EspProposal(EncrId.ENCR_AES_CBC, 128, IntegId.AUTH_HMAC_SHA2_256_128),
    EspProposal(EncrId.ENCR_AES_CBC, 256, IntegId.AUTH_HMAC_SHA2_256_128),
)
MH_CHILD = ChildConfig(ChildMode.TRANSPORT, (DynamicTs(6, 135),), (DynamicTs(6, 135),), ESP_PROPOSALS)
TUNNEL_CHILD = ChildConfig(ChildMode.TUNNEL, (TrafficSelector.any(6), TrafficSelector.any(4)),
                           (DynamicTs(6, 0), DynamicTs(4, 0)), ESP_PROPOSALS)


class HomeAddressPool:
    """One home network prefix per UE identity (stable while the daemon runs) and optional IPv4 HoAs."""

    def __init__(self, prefix: str, plen: int, ha: ipaddress.IPv6Address, ipv4_pool: str | None) -> None:
        self.net = ipaddress.IPv6Network(prefix, strict=False)
        self.plen = max(plen, self.net.prefixlen)
        self.ha = ha
        self._subnets = self.net.subnets(new_prefix=self.plen)
        self._by_peer: dict[str, ipaddress.IPv6Network] = {}
        self.v4 = ipaddress.IPv4Network(ipv4_pool, strict=False) if ipv4_pool else None
        self._v4_hosts = self.v4.hosts() if self.v4 else iter(())
        self._v4_by_peer: dict[str, ipaddress.IPv4Address] = {}
        self.active: dict[int, str] = {}  # IKE sa_id -> peer

    def prefix_for(self, peer: str) -> ipaddress.IPv6Network | None:
        if peer in self._by_peer:
            return self._by_peer[peer]
        for sub in self._subnets:
            if self.ha in sub:
                continue  # the home link itself
            self._by_peer[peer] = sub
            return sub
        return None

    def ipv4_for(self, peer: str) -> ipaddress.IPv4Address | None:
        if peer not in self._v4_by_peer:
            nxt = next(self._v4_hosts, None)
            if nxt is None:
                return None
            if nxt == next(self.v4.hosts()):  # type: ignore[union-attr]
                nxt = next(self._v4_hosts, None)  # .1 is the pool's gateway
                if nxt is None:
                    return None
            self._v4_by_peer[peer] = nxt
        return self._v4_by_peer[peer]

    def allocate(self, req: AddressRequest) -> CpAssignment | None:
        prefix = self.prefix_for(req.peer_id)
        if prefix is None:
            return None
        v4 = None
        if CpAttributeType.INTERNAL_IP4_ADDRESS in req.attributes and self.v4 is not None:
            v4 = self.ipv4_for(req.peer_id)
        self.active[req.sa_id] = req.peer_id
        return CpAssignment(home_address=prefix[1], home_prefix=prefix, prefix_lifetime=0xFFFFFFFF,
                            ha_address=self.ha, ipv4=v4,
                            ipv4_netmask=ipaddress.IPv4Address("255.255.255.255") if v4 else None)


class PdnGwDaemon(NodeDaemon):
    kind = "pdngw"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        p = config.params or {}
        self.fqdn = str(p.get("fqdn") or DEFAULT_PDNGW_FQDN)
        self.realm = str(p.get("realm") or DEFAULT_REALM)
        s2c = p.get("s2c") or {}
        self.s2c4 = list(s2c.get("ipv4") or [])
        self.s2c6 = list(s2c.get("ipv6") or [])
        if not self.s2c4 and not self.s2c6:
            self.s2c4 = ["127.0.0.1"]
        home = str(p.get("home_prefix") or DEFAULT_HOME_PREFIX)
        ha = p.get("ha_address") or self._own_address_in(home) or (self.s2c6 or ["2001:db8:1::1"])[0]
        self.pool = HomeAddressPool(home, int(p.get("home_prefix_len") or 64), ipaddress.IPv6Address(ha),
                                    p.get("ipv4_pool", DEFAULT_IPV4_POOL))
        self.cookie_threshold = int(p.get("cookie_threshold") or 50)
        self.force_encap = bool(p.get("force_encap", False))
        self.dpp = DataPlaneParams.from_params(p)
        self.dataplane = "userspace"  # until start() chose the backend
        rd = run_dir_of(config)
        keys = p.get("keys") or (rd / "keys" if rd is not None else None)
        self.keylog = KeyLog(None if keys is None else Path(keys))
        self.responder: IkeResponder | None = None
        self.dp: Any = None
        self.io = UdpIke(self._on_datagram)
        self._timer = CoreTimer(self._on_timer)
        self._diam: Any = None
        self._diam_ready = asyncio.Event()
        self._diam_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sessions: dict[int, str] = {}  # IKE sa_id -> S6b Session-Id
        self._local_for: dict[tuple[str, int], str] = {}  # peer (ip, port) -> our address it used (port 500)
        self._sid = SessionIdGenerator(f"pgw.{self.realm}", int.from_bytes(os.urandom(4), "big"))
        self._children: dict[int, list[Any]] = {}  # sa_id -> ChildSaEstablished events alive
        self._auth: dict[int, dict[str, Any]] = {}  # sa_id -> {imsi, result, started}
        self.failures: list[dict[str, Any]] = []
        self.started_at = time.time()
        self._profile: tuple[Any, str] | None = None

    def _own_address_in(self, prefix: str) -> str | None:
        net = ipaddress.ip_network(prefix, strict=False)
        for info in (self.config.interfaces or {}).values():
            for a in info.get("addresses") or ():
                ip = ipaddress.ip_interface(a).ip
                if ip.version == net.version and ip in net:
                    return str(ip)
        return None

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        prof = os.environ.get("S2C_PDNGW_PROFILE")  # debugging aid: cProfile the daemon's loop into this file
        if prof:
            import cProfile

            self._profile = (cProfile.Profile(), prof)
            self._profile[0].enable()
        paths = ensure_pki(pki_dir_of(self.config), self.fqdn)
        key = serialization.load_pem_private_key(paths.key("pdngw").read_bytes(), None)
        cert = x509.load_pem_x509_certificate(paths.cert("pdngw").read_bytes())
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        p = self.config.params or {}
        own: Any = CertAuth(key, cert)
        if str(p.get("auth") or "cert") == "psk":
            own = PskAuth(psk_bytes(p.get("psk") or ""))
        elif p.get("cert") and p.get("key"):
            own = load_cert_auth(p["cert"], p["key"])
        psk = psk_bytes(p["psk"]) if p.get("psk") else None
        cfg = IkeConfig(
            local_id=identity_from(str(p["id"])) if p.get("id") else Identity.fqdn(self.fqdn), auth=own,
            trusted_certs=(ca,), psk_lookup=(lambda _peer: psk) if psk is not None else None,
            check_id_in_cert=bool(p.get("check_id_in_cert", True)),
            ike_proposals=IKE_PROPOSALS, child=MH_CHILD, extra_children=(TUNNEL_CHILD,), eap_allowed=True,
            timers=Timers(retransmit_timeout=0.5, retransmit_factor=2.0, retransmit_tries=5, half_open_timeout=30.0),
        )
        local = (self.s2c4 or self.s2c6)[0]
        self.responder = IkeResponder(cfg, (local, 500), os.urandom, allocator=self.pool.allocate,
                                      cookie_threshold=self.cookie_threshold)
        routes = [str(self.pool.net)] + ([str(self.pool.v4)] if self.pool.v4 else [])
        # port 4500 on every address (the lab lists all of the node's addresses as S2c ones)
        self.dp, self.dataplane, why = make_dataplane(
            self.dpp, tun_name="esp0", routes=routes, bind4="0.0.0.0" if self.s2c4 else None,
            bind6="::" if self.s2c6 else None)
        self.log.info("ESP data plane: %s (%s)", self.dataplane, why)
        if self.dataplane == "xfrm":
            loose_rp_filter()
        await loop.run_in_executor(None, self.dp.start)
        await loop.run_in_executor(None, self.dp.stats)  # returns once every worker process runs its loop
        # the plane strips the non-ESP marker: put it back so the core knows the peer floated to 4500
        # (its local port, NAT-D hashes and replies follow, RFC 3948 §2.2 / RFC 7296 §2.23)
        self.dp.set_ike_handler(lambda data, addr: self._on_datagram(NON_ESP_MARKER + bytes(data),
                                                                     (addr[0], addr[1]), None))
        self.dp.set_mh_handler(self._on_transport)
        self.dp.attach(loop)
        self.io.dataplane = self.dp
        await self.io.bind(self.s2c4 + self.s2c6)
        self._diam_task = loop.create_task(self._diameter_loop())
        self.log.info("IKEv2 responder %s on %s (500/4500), home prefixes %s, HA %s", self.fqdn,
                      ", ".join(self.s2c4 + self.s2c6), self.pool.net, self.pool.ha)

    async def stop(self) -> None:
        self._timer.cancel()
        for t in list(self._tasks):
            t.cancel()
        if self._diam_task is not None:
            self._diam_task.cancel()
        if self._diam is not None:
            try:
                await asyncio.wait_for(self._diam.close(), 1.5)
            except Exception:  # noqa: BLE001 - best effort DPR
                pass
            self._diam = None
        self.io.close()
        stop_dataplane(self.dp, self.log)
        self.dp = None
        if self._profile is not None:
            self._profile[0].disable()
            self._profile[0].dump_stats(self._profile[1])
            self._profile = None

    # -- Diameter S6b -------------------------------------------------------------------------------
    def _identity(self) -> LocalIdentity:
        addrs = tuple(self.s2c4 + self.s2c6) or ("127.0.0.1",)
        return LocalIdentity(origin_host=f"pgw.{self.realm}", origin_realm=self.realm, host_ip_addresses=addrs[:1],
                             product_name="s2c-pdngw",
                             vendor_specific_application_ids=((VENDOR_3GPP, ApplicationId.S6B_3GPP),))

    async def _diameter_loop(self) -> None:
        from s2c.diameter.transport import connect

        hss = ((self.config.peers or {}).get("hss") or {}).get("diameter") or {}
        host, port = hss.get("address"), int(hss.get("port") or 3868)
        if not host:
            self.log.warning("no HSS/AAA peer configured: EAP authentication will fail")
            return
        delay = 0.2
        while True:
            try:
                self._diam = await connect(host, port, self._identity(), request_timeout=5.0, watchdog_interval=30.0)
            except (OSError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - retry forever
                self.counters["diameter_connect_failures"] += 1
                self.log.debug("S6b connect to %s:%s failed: %s", host, port, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.2
            self.counters["diameter_connects"] += 1
            self.log.info("S6b connection to %s:%s open", host, port)
            self._diam_ready.set()
            await self._diam.closed.wait()
            self._diam_ready.clear()
            self.log.warning("S6b connection closed: %s", self._diam.close_reason)
            self._diam = None
            await asyncio.sleep(0.2)

    async def _der(self, sa_id: int, payload: bytes, user: str | None) -> None:
        """One DER/DEA round; feeds the answer into the responder."""
        sid = self._sessions.setdefault(sa_id, self._sid("s6b"))
        self.counters["s6b_der"] += 1
        try:
            if not self._diam_ready.is_set():  # (wait_for costs a task and loop turns on every DER)
                await asyncio.wait_for(self._diam_ready.wait(), 1.0)  # S6b down: fail fast, the UE retries
            der = build_der(self._identity(), session_id=sid, destination_realm=self.realm, eap_payload=payload,
                            user_name=user, rat_type=0)
            # while the AAA works, build the first EAP round's IDr + CERT + AUTH (IkeResponder.prepare_auth)
            ans = DiameterEapAnswer.from_message(
                await self._diam.request(der, after_send=lambda: self._prepare_auth(sa_id)))
        except Exception as exc:  # noqa: BLE001 - any S6b trouble fails this authentication only
            self.counters["s6b_errors"] += 1
            self.log.warning("S6b for IKE SA %d failed: %s", sa_id, exc)
            self._feed(lambda now: self.responder.eap_failure(sa_id, now), sa_id)
            return
        info = self._auth.setdefault(sa_id, {})
        act = dea_action(ans)
        if isinstance(act, SendEapRequest):
            self._feed(lambda now: self.responder.send_eap_request(sa_id, act.eap, now), sa_id)
        elif isinstance(act, EapSuccess):
            info["result"] = "success"
            info["user"] = act.user_name
            self.counters["auth_ok"] += 1
            self._feed(lambda now: self.responder.eap_success(sa_id, act.msk, now, act.eap), sa_id)
        else:
            info["result"] = f"failure {act.reason}"
            self.counters["auth_fail"] += 1
            self.log.info("EAP for IKE SA %d rejected by the AAA (%s)", sa_id, act.reason)
            self._feed(lambda now: self.responder.eap_failure(sa_id, now, act.eap), sa_id)

    def _prepare_auth(self, sa_id: int) -> None:
        if self.responder is not None:
            try:
                self.responder.prepare_auth(sa_id, self._now())
            except Exception:  # noqa: BLE001 - an optimisation only: the answer path builds it otherwise
                self.log.exception("prepare_auth for IKE SA %d", sa_id)

    def _feed(self, fn: Any, sa_id: int) -> None:
        try:
            fn(self._now())
        except ProtocolError as exc:
            self.counters["stale_eap"] += 1
            self.log.info("IKE SA %d: %s", sa_id, exc)
        self._pump()

    # -- IKE IO ---------------------------------------------------------------------------------------
    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _on_datagram(self, data: bytes, addr: tuple[str, int], local: tuple[str, int] | None) -> None:
        if self.responder is None:
            return
        self.counters["ike_rx"] += 1
        before = sum(self.responder.stats.values())
        if local is not None:
            # a new IKE SA takes the responder's local address (NAT detection hashes): the one this
            # datagram came in on (the core has one local address; we listen on several); answers to
            # this peer leave from that address (a NAT only lets replies from it through)
            self.responder.local_addr = local if not self.force_encap else (
                "2001:db8:ffff::1" if ":" in local[0] else "192.0.2.254", local[1])  # fake NAT-D: forced UDP encap
            self._local_for[addr] = local[0]
            if len(self._local_for) > 10000:
                self._local_for.clear()
        try:
            self.responder.receive_datagram(data, addr, self._now())
        except Exception:  # noqa: BLE001 - a core bug must not take the daemon down
            self.counters["ike_internal_errors"] += 1
            self.log.exception("IKE datagram from %s", addr)
        if sum(self.responder.stats.values()) > before:
            self.counters["ike_dropped"] += 1
            if self.responder.errors:
                self.log.info("IKE datagram from %s:%s dropped: %s", addr[0], addr[1], self.responder.errors[-1])
        self._pump()

    def _on_transport(self, nh: int, payload: bytes, src: str, spi: int) -> None:
        self.counters[f"transport_rx_{nh}"] += 1

    def _pump(self) -> None:
        r = self.responder
        if r is None:
            return
        drain_core(r, self._now, lambda data, addr: self.io.send(data, addr, self._local_for.get(addr)),
                   self._on_event, self.counters, self.log)
        r.precompute()  # after the answers left: SK_* of the SAs just answered, the next DH key
        self._arm()

    def _arm(self) -> None:
        r = self.responder
        self._timer.arm(r.get_timer() if r is not None else None)

    def _on_timer(self) -> None:
        if self.responder is not None:
            self.responder.handle_timer(self._now())
        self._pump()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- events -----------------------------------------------------------------------------------------
    def _on_event(self, e: ev.IkeEvent) -> None:
        r = self.responder
        assert r is not None
        if isinstance(e, ev.EapAuthenticationRequested):
            self.counters["eap_started"] += 1
            self._auth[e.sa_id] = {"peer": e.peer_id, "started": time.time()}
            # User-Name = the NAI from IDi in every DER of the session (TS 29.273 §9.2.2.2.1)
            self._spawn(self._der(e.sa_id, identity_response(e.peer_id_data), e.peer_id))
        elif isinstance(e, ev.EapResponseReceived):
            self._spawn(self._der(e.sa_id, e.eap, self._auth.get(e.sa_id, {}).get("peer")))
        elif isinstance(e, ev.IkeSaEstablished):
            self.counters["ike_sa_established"] += 1
            self.log.info("IKE SA %d established with %s (%s:%d, NAT %s)", e.sa_id, e.remote_id, e.remote_addr[0],
                          e.remote_addr[1], e.nat_detected)
            try:
                self.keylog.ike(r.sa(e.sa_id).wireshark_line())
            except (ProtocolError, ValueError):
                pass
        elif isinstance(e, ev.IkeSaRekeyed):
            try:
                self.keylog.ike(r.sa(e.sa_id).wireshark_line())
            except (ProtocolError, ValueError):
                pass
        elif isinstance(e, ev.ChildSaEstablished):
            self._install(e)
        elif isinstance(e, ev.ChildSaRekeyed):
            self._children[e.sa_id] = [c for c in self._children.get(e.sa_id, []) if c.spi_in != e.old_spi_in]
            self._children[e.sa_id].append(e.new)
            if self.dp is not None:
                self.dp.rekey_child_sa(e.old_spi_in, e.old_spi_out, e.new)
            self.keylog.esp(*esp_pair(e.new))
        elif isinstance(e, ev.ChildSaDeleted):
            self._remove_child(e.sa_id, e.spi_in, e.spi_out)
        elif isinstance(e, ev.IkeSaAddressesUpdated):
            self.counters["mobike_updates"] += 1
            self.log.info("IKE SA %d moved to %s:%d (NAT %s)", e.sa_id, e.remote_addr[0], e.remote_addr[1],
                          e.nat_detected)
            if self.dp is not None:
                for ch in self._children.get(e.sa_id, []):
                    for spi in (ch.spi_out, ch.spi_in):
                        try:
                            self.dp.update_peer(spi, e.remote_addr[0], e.remote_addr[1], local=e.local_addr[0])
                        except Exception:  # noqa: BLE001
                            self.counters["dp_errors"] += 1
        elif isinstance(e, (ev.IkeSaDeleted, ev.PeerDead, ev.IkeSaFailed, ev.AuthenticationFailed)):
            name = type(e).__name__
            self.counters[name] += 1
            reason = getattr(e, "reason", None) or name
            if not isinstance(e, ev.IkeSaDeleted):
                self.failures = (self.failures + [{"sa_id": e.sa_id, "event": name, "reason": str(reason),
                                                   "time": time.time()}])[-20:]
            self.log.info("IKE SA %d: %s (%s)", e.sa_id, name, reason)
            self._sessions.pop(e.sa_id, None)
            self.pool.active.pop(e.sa_id, None)
            for ch in self._children.pop(e.sa_id, []):
                self._remove_child(e.sa_id, ch.spi_in, ch.spi_out)
        elif isinstance(e, ev.ChildSaFailed):
            self.counters["child_sa_failed"] += 1
            self.log.info("IKE SA %d: CHILD SA refused: %s", e.sa_id, e.reason)

    def _install(self, e: ev.ChildSaEstablished) -> None:
        self.counters["child_sa_established"] += 1
        self._children.setdefault(e.sa_id, []).append(e)
        self.keylog.esp(*esp_pair(e))
        if self.dp is None:
            return
        self.dp.install_child_sa(e, priority=10 if e.mode == ChildMode.TRANSPORT else 0)
        self.log.info("IKE SA %d: CHILD SA %08x/%08x %s %s <-> %s", e.sa_id, e.spi_in, e.spi_out, e.mode.value,
                      ",".join(map(str, e.ts_local)), ",".join(map(str, e.ts_remote)))

    def _remove_child(self, sa_id: int, spi_in: int, spi_out: int) -> None:
        self._children[sa_id] = [c for c in self._children.get(sa_id, []) if c.spi_in != spi_in]
        if self.dp is None:
            return
        for spi in (spi_out, spi_in):
            try:
                self.dp.remove_sa(spi)
            except Exception:  # noqa: BLE001 - already gone
                pass

    # -- control ------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        r = self.responder
        sas = r.sas() if r is not None else []
        states: dict[str, int] = {}
        for sa in sas:
            states[sa.state.value] = states.get(sa.state.value, 0) + 1
        return {
            "s2c": {"ipv4": self.s2c4, "ipv6": self.s2c6},
            "fqdn": self.fqdn,
            "hss": (self.config.peers or {}).get("hss"),
            "diameter": "open" if self._diam_ready.is_set() else "closed",
            "dataplane": self.dataplane,
            "ike_steered": getattr(self.dp, "ike_counters", {}).get("ike_steered", 0),  # 0: no plane / xfrm
            "ike_sas": len(sas),
            "established": states.get("established", 0),
            "states": states,
            "home_prefix": str(self.pool.net),
            "ha_address": str(self.pool.ha),
            "core": dict(r.stats) if r is not None else {},
            "last_failures": self.failures[-5:],
            "bindings": 0,
        }

    def commands(self) -> dict[str, Handler]:
        return {"sas": self._sas_cmd, "ike_errors": lambda _a: list(self.responder.errors) if self.responder else []}

    def _sas_cmd(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.responder
        if r is None:
            raise ControlError("IKE not started")
        stats: dict[Any, Any] = {}
        if self.dp is not None:
            try:
                stats = self.dp.stats().get("sas", {})
            except Exception:  # noqa: BLE001
                stats = {}
        out = []
        for sa in r.sas():
            d = ike_view(sa)
            d["nai"] = d.pop("peer_id")
            d["auth"] = self._auth.get(sa.sa_id, {}).get("result")
            d["children"] = [child_view(ch, stats) for ch in sa.children]
            out.append(d)
        return out
