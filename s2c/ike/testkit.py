"""Test kit for IKE cores (tests and bench only): configs, certificates, a Pair of cores on a FakeNetwork, a toy EAP."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from s2c.ike import (
    DSMIP6_CP_REQUEST, CertAuth, CpAssignment, EapAuth, Identity, IkeConfig, IkeInitiator, IkeResponder, PskAuth,
)
from s2c.testing.fake import FakeClock, FakeNetwork, seeded_rng

UE_IP, GW_IP = "192.0.2.1", "192.0.2.2"
NAI = "0001010123456789@nai.epc.mnc001.mcc001.3gppnetwork.org"
GW_FQDN = "pgw.example.org"
HOA = ipaddress.IPv6Address("2001:db8:2::10")
PREFIX = ipaddress.IPv6Network("2001:db8:2::/64")
HA = ipaddress.IPv6Address("2001:db8:1::1")
T0 = datetime.datetime(2026, 1, 1)


def make_cert(cn: str, key, issuer_key=None, issuer_name=None, san=None, ca=False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(T0)
         .not_valid_after(T0 + datetime.timedelta(days=3650)))
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


@dataclass
class Pki:
    ca_key: object
    ca: x509.Certificate
    gw_key: object
    gw_cert: x509.Certificate
    ue_key: object
    ue_cert: x509.Certificate
    rogue_key: object
    rogue_cert: x509.Certificate


_PKI: dict[str, Pki] = {}


def pki(kind: str = "ecdsa") -> Pki:
    if kind not in _PKI:
        def key():
            return ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else rsa.generate_private_key(65537, 2048)
        ca_key = key()
        ca = make_cert("s2c test CA", ca_key, ca=True)
        gw_key, ue_key, rogue_key = key(), key(), key()
        gw = make_cert(GW_FQDN, gw_key, ca_key, ca.subject, [x509.DNSName(GW_FQDN)])
        ue = make_cert(NAI, ue_key, ca_key, ca.subject, [x509.RFC822Name(NAI)])
        rogue = make_cert(GW_FQDN, rogue_key, san=[x509.DNSName(GW_FQDN)])
        _PKI[kind] = Pki(ca_key, ca, gw_key, gw, ue_key, ue, rogue_key, rogue)
    return _PKI[kind]


def allocator(req):
    return CpAssignment(home_address=HOA, home_prefix=PREFIX, ha_address=HA, prefix_lifetime=3600,
                        ipv4=ipaddress.IPv4Address("198.51.100.7"))


def ue_config(auth=None, **kw) -> IkeConfig:
    kw.setdefault("remote_id", Identity.fqdn(GW_FQDN))
    kw.setdefault("cp_request", DSMIP6_CP_REQUEST)
    kw.setdefault("local_id", Identity.rfc822(NAI))
    return IkeConfig(auth=auth or PskAuth(b"s3cr3t-psk"), **kw)


def gw_config(auth=None, **kw) -> IkeConfig:
    return IkeConfig(local_id=Identity.fqdn(GW_FQDN), auth=auth or PskAuth(b"s3cr3t-psk"), **kw)


@dataclass
class Pair:
    clock: FakeClock
    net: FakeNetwork
    ue: IkeInitiator
    gw: IkeResponder
    ue_events: list = field(default_factory=list)
    gw_events: list = field(default_factory=list)

    def pump(self) -> None:
        """Deliver traffic, collect events, and let the fake EAP endpoints react (if any)."""
        for _ in range(50):
            self.net.flush()
            got = False
            for core, sink in ((self.ue, self.ue_events), (self.gw, self.gw_events)):
                while (e := core.next_event()) is not None:
                    sink.append(e)
                    got = True
                    for hook in getattr(self, "hooks", []):
                        hook(core, e)
            if not got:
                return

    def run_until(self, t: float) -> None:
        self.pump()
        while True:
            nt = self.net.next_timer()
            if nt is None or nt > t:
                break
            self.clock.set(max(nt, self.clock.now))
            for core in (self.ue, self.gw):
                ct = core.get_timer()
                if ct is not None and ct <= self.clock.now:
                    core.handle_timer(self.clock.now)
            self.pump()
        self.clock.set(max(t, self.clock.now))

    def types(self, side: str) -> list[str]:
        return [type(e).__name__ for e in (self.ue_events if side == "ue" else self.gw_events)]

    def clear(self) -> None:
        self.ue_events.clear()
        self.gw_events.clear()


def make_pair(ue_cfg: IkeConfig, gw_cfg: IkeConfig, *, alloc=allocator, cookie_threshold=None, seed=1,
              drop=None, rewrite_src=None) -> Pair:
    clock = FakeClock(1000.0)
    net = FakeNetwork(clock, drop=drop, rewrite_src=rewrite_src)
    ue = IkeInitiator(ue_cfg, (UE_IP, 500), (GW_IP, 500), seeded_rng(seed))
    gw = IkeResponder(gw_cfg, (GW_IP, 500), seeded_rng(seed + 100), allocator=alloc, cookie_threshold=cookie_threshold)
    net.attach(ue, UE_IP)
    net.attach(gw, GW_IP)
    p = Pair(clock, net, ue, gw)
    p.hooks = []
    return p


class FakeEap:
    """A toy EAP method: the server sends one challenge request, the peer echoes a hash; both derive
    MSK = SHA-512(secret | challenge). Enough to drive RFC 7296 §2.16 without EAP-AKA."""

    def __init__(self, pair: Pair, secret_server=b"k", secret_peer=b"k", rounds=1, msk_early=True,
                 fail=False, keyless=False) -> None:
        self.pair, self.ss, self.sp, self.rounds, self.msk_early, self.fail = pair, secret_server, secret_peer, rounds, msk_early, fail
        self.keyless = keyless
        self.ident = 0
        self.challenge = b""
        self.done_rounds = 0
        self.peer_msk = None
        pair.hooks.append(self.on_event)

    def _req(self) -> bytes:
        self.ident += 1
        self.challenge = bytes([self.ident]) * 16
        body = bytes([254]) + self.challenge
        return bytes([1, self.ident]) + (4 + len(body)).to_bytes(2, "big") + body

    def on_event(self, core, e) -> None:
        from s2c.ike import EapAuthenticationRequested, EapRequestReceived, EapResponseReceived

        now = self.pair.clock.now
        if isinstance(e, EapAuthenticationRequested):
            core.send_eap_request(e.sa_id, self._req(), now)
        elif isinstance(e, EapResponseReceived):
            self.done_rounds += 1
            expect = hashlib.sha256(self.ss + self.challenge).digest()
            if e.eap[5:] != expect or self.fail:
                core.eap_failure(e.sa_id, now, bytes([4, e.eap[1], 0, 4]))
            elif self.done_rounds < self.rounds:
                core.send_eap_request(e.sa_id, self._req(), now)
            else:
                core.eap_success(e.sa_id, None if self.keyless else hashlib.sha512(self.ss + self.challenge).digest(), now,
                                 bytes([3, e.eap[1], 0, 4]))
        elif isinstance(e, EapRequestReceived):
            code = e.eap[0]
            if code == 1:
                ch = e.eap[5:]
                body = bytes([254]) + hashlib.sha256(self.sp + ch).digest()
                self.peer_msk = None if self.keyless else hashlib.sha512(self.sp + ch).digest()
                core.send_eap_response(bytes([2, e.eap[1]]) + (4 + len(body)).to_bytes(2, "big") + body, now)
                if self.msk_early:
                    core.provide_eap_result(self.peer_msk, now)
            elif code == 3:
                core.provide_eap_result(self.peer_msk, now)


def eap_ue_config(**kw) -> IkeConfig:
    p = pki("ecdsa")
    return ue_config(auth=EapAuth(), trusted_certs=(p.ca,), **kw)


def eap_gw_config(**kw) -> IkeConfig:
    p = pki("ecdsa")
    return gw_config(auth=CertAuth(p.gw_key, p.gw_cert), **kw)


