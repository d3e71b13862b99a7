"""Our IKEv2 cores against strongSwan 5.9 (charon, kernel-libipsec) over real UDP in namespaces.

Needs root and strongSwan (marked ``interop``/``netns``; skipped otherwise). Our side runs in a
child process (this file run as a script: a minimal select() loop around IkeInitiator/IkeResponder
that prints events as JSON lines and takes commands on stdin), inside namespace ``s2ct-ik-*-a``.
charon runs in ``-b`` with ``encap = yes`` (NAT-T forced), so the NAT-T path is exercised too.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time

import pytest

A_IP, B_IP = "198.51.100.1", "198.51.100.2"
UE_ID, GW_ID = "ue1.s2c.test", "pdngw.s2c.test"
PSK = "s2c-ike-interop-psk"
EAP_PW = "s2c-md5-pw"


# ============================================================================ driver (child process)

def _eap_md5_peer(identity: bytes, password: bytes):
    """A tiny EAP peer: Identity (RFC 3748 §5.1) and MD5-Challenge (RFC 3748 §5.4, RFC 1994)."""
    import hashlib

    def respond(eap: bytes) -> bytes | None:
        code, ident, typ = eap[0], eap[1], eap[4] if len(eap) > 4 else 0
        if code != 1:
            return None
        if typ == 1:
            body = bytes([1]) + identity
        elif typ == 4:
            n = eap[5]
            chal = eap[6:6 + n]
            body = bytes([4, 16]) + hashlib.md5(bytes([ident]) + password + chal).digest()
        else:
            body = bytes([3, 4])  # Nak, desired type MD5-Challenge
        return bytes([2, ident]) + (4 + len(body)).to_bytes(2, "big") + body
    return respond


def _driver(spec: dict) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from s2c.codec import ikev2 as c
    from s2c.ike import (
        CertAuth, ChildConfig, ChildMode, CpAssignment, DynamicTs, EapAuth, EspProposal, Identity, IkeConfig,
        IkeInitiator, IkeProposal, IkeResponder, PskAuth, Timers,
    )
    from s2c.ike import events as ev

    def out(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    trusted = ()
    if spec.get("ca"):
        trusted = (x509.load_pem_x509_certificate(open(spec["ca"], "rb").read()),)
    if spec["auth"] == "psk":
        auth = PskAuth(PSK.encode())
    elif spec["auth"] == "cert":
        auth = CertAuth(serialization.load_pem_private_key(open(spec["key"], "rb").read(), None),
                        x509.load_pem_x509_certificate(open(spec["cert"], "rb").read()))
    else:
        auth = EapAuth()
    local_id = Identity.fqdn(spec["local_id"])
    remote_id = Identity.fqdn(spec["remote_id"])
    proposals = (IkeProposal(), IkeProposal(c.EncrId.ENCR_AES_GCM_16, 128, c.PrfId.PRF_HMAC_SHA2_256,
                                            c.IntegId.NONE, (c.DhGroup.CURVE25519,)))
    esp = (EspProposal(c.EncrId.ENCR_AES_GCM_16, 128), EspProposal(c.EncrId.ENCR_AES_CBC, 128,
                                                                     c.IntegId.AUTH_HMAC_SHA2_256_128))
    net = c.TrafficSelector.from_network("203.0.113.0/24")
    if spec["role"] == "initiator":
        child = ChildConfig(ChildMode.TUNNEL, (DynamicTs(4),), (net,), esp)
        cfg = IkeConfig(local_id=local_id, auth=auth, remote_id=remote_id, trusted_certs=trusted,
                        ike_proposals=proposals, child=child, mobike=bool(spec.get("mobike")),
                        cp_request=(c.CpAttributeType.INTERNAL_IP4_ADDRESS,),
                        timers=Timers(retransmit_timeout=0.5))
        core = IkeInitiator(cfg, (A_IP, 500), (B_IP, 500), os.urandom)
    else:
        child = ChildConfig(ChildMode.TUNNEL, (net,), (DynamicTs(4),), esp)
        cfg = IkeConfig(local_id=local_id, auth=auth, trusted_certs=trusted, ike_proposals=proposals, child=child,
                        psk_lookup=lambda ident: PSK.encode(), timers=Timers(retransmit_timeout=0.5))
        core = IkeResponder(cfg, (A_IP, 500), os.urandom,
                            allocator=lambda req: CpAssignment(ipv4=ipaddress.IPv4Address("198.18.0.10")))
    eap_peer = _eap_md5_peer(spec["local_id"].encode(), EAP_PW.encode())
    md5_state: dict = {}

    socks: dict[tuple[str, int], socket.socket] = {}

    def sock(ip: str, port: int) -> socket.socket:
        if (ip, port) not in socks:
            x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            x.bind((ip, port))
            socks[(ip, port)] = x
        return socks[(ip, port)]
    sock(A_IP, 500)
    sock(A_IP, 4500)
    stdin = sys.stdin.fileno()
    now = time.monotonic
    if spec["role"] == "initiator":
        core.initiate(now())
    out({"ready": True})
    while True:
        src_ip = core.local_addr[0]
        for data, addr in core.datagrams_to_send(now()):
            sock(src_ip, 4500 if data[:4] == b"\0\0\0\0" else 500).sendto(data, addr)
        while (e := core.next_event()) is not None:
            d = {"event": type(e).__name__}
            for k in ("reason", "spi_in", "spi_out", "old_spi_in", "exchange", "notify", "nat_detected"):
                if hasattr(e, k):
                    d[k] = getattr(e, k)
            if isinstance(e, ev.ChildSaEstablished):
                d.update(ts_local=[str(t) for t in e.ts_local], ts_remote=[str(t) for t in e.ts_remote],
                         mode=e.mode.value, nat_t=e.nat_t, encr=int(e.suite.encr))
            if isinstance(e, ev.CpAssigned):
                d["ipv4"] = str(e.ipv4)
            if isinstance(e, ev.IkeSaEstablished):
                d["suite"] = [int(e.suite.encr), int(e.suite.dh)]
                d["mobike"] = e.mobike
            if isinstance(e, ev.IkeSaAddressesUpdated):
                d["local_addr"], d["remote_addr"] = list(e.local_addr), list(e.remote_addr)
            out(d)
            if isinstance(e, ev.EapAuthenticationRequested):   # responder: EAP-MD5 server
                md5_state["challenge"] = os.urandom(16)
                body = bytes([4, 16]) + md5_state["challenge"] + b"s2c"
                core.send_eap_request(e.sa_id, bytes([1, 7]) + (4 + len(body)).to_bytes(2, "big") + body, now())
            if isinstance(e, ev.EapResponseReceived):
                import hashlib

                ok = e.eap[4] == 4 and e.eap[6:22] == hashlib.md5(
                    bytes([7]) + EAP_PW.encode() + md5_state["challenge"]).digest()
                if ok:
                    core.eap_success(e.sa_id, None, now(), bytes([3, 7, 0, 4]))
                else:
                    core.eap_failure(e.sa_id, now(), bytes([4, 7, 0, 4]))
            if isinstance(e, ev.EapRequestReceived):
                if e.eap[0] == 3:
                    core.provide_eap_result(None, now())
                else:
                    core.send_eap_response(eap_peer(e.eap), now())
        t = core.get_timer()
        timeout = 0.2 if t is None else max(0.0, min(0.2, t - now()))
        r, _, _ = select.select([*socks.values(), stdin], [], [], timeout)
        for s in r:
            if s is stdin:
                line = sys.stdin.readline().strip()
                if not line or line == "quit":
                    out({"bye": True, "stats": dict(core.stats), "errors": list(core.errors)[-5:]})
                    return
                sa = core if spec["role"] == "initiator" else None
                if line == "rekey_child":
                    if sa:
                        sa.rekey_child(sa.children[0].spi_in, now())
                    else:
                        x = core.sas()[0]
                        core.rekey_child(x.sa_id, x.children[0].spi_in, now())
                elif line == "rekey_ike":
                    sa.rekey_ike(now()) if sa else core.rekey_ike(core.sas()[0].sa_id, now())
                elif line == "dpd":
                    sa.liveness_check(now()) if sa else core.liveness_check(core.sas()[0].sa_id, now())
                elif line.startswith("mobike "):
                    sa.update_addresses((line.split()[1], 0), now())
                elif line == "delete":
                    sa.delete(now()) if sa else core.delete(core.sas()[0].sa_id, now())
            else:
                data, addr = s.recvfrom(65535)
                core.receive_datagram(data, addr[:2], now())
        if core.get_timer() is not None and core.get_timer() <= now():
            core.handle_timer(now())


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--driver":
    _driver(json.loads(sys.argv[2]))
    sys.exit(0)


# ============================================================================ tests

pytestmark = [pytest.mark.interop, pytest.mark.netns]


@pytest.fixture(autouse=True)
def _need_root_and_strongswan():
    if os.geteuid() != 0:
        pytest.skip("interop tests need root (network namespaces)")
    from s2c.lab import strongswan

    ok, why = strongswan.available()
    if not ok:
        pytest.skip(why)


class Driver:
    def __init__(self, pair, spec: dict) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.proc = pair.popen("a", [sys.executable, os.path.abspath(__file__), "--driver", json.dumps(spec)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=root, env=dict(os.environ, PYTHONPATH=root), bufsize=0)
        self.events: list[dict] = []
        self._buf = b""
        self.wait_for("ready", key="ready")

    def _read(self, timeout: float) -> bool:
        """Read what the driver printed (raw fd + own line buffer: select() and a buffered
        TextIOWrapper do not mix)."""
        fd = self.proc.stdout.fileno()
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return True
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if line.strip():
                self.events.append(json.loads(line))
        return True

    def wait_for(self, name: str, timeout: float = 15.0, key: str = "event", count: int = 1) -> dict:
        """Wait for the count-th event called ``name`` (or, with key != "event", a line with ``key``)."""
        def matches() -> list[dict]:
            return [e for e in self.events if (e.get("event") == name if key == "event" else key in e)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(matches()) >= count:
                return matches()[count - 1]
            if not self._read(0.2):
                break
        raise AssertionError(f"no {name} within {timeout}s; got {self.names()}; stderr: {self._stderr()}")

    def settle(self, t: float = 1.0) -> None:
        deadline = time.monotonic() + t
        while time.monotonic() < deadline and self._read(0.1):
            pass

    def names(self) -> list[str]:
        return [e["event"] for e in self.events if "event" in e]

    def cmd(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def _stderr(self) -> str:
        if self.proc.poll() is not None:
            return self.proc.stderr.read()[-2000:].decode(errors="replace")
        return "(running)"

    def close(self) -> dict:
        try:
            self.cmd("quit")
            self.wait_for("bye", key="bye", timeout=5)
        except Exception:
            pass
        self.proc.kill()
        self.proc.wait(5)
        return next((e for e in self.events if e.get("bye")), {})


@pytest.fixture
def pair():
    from s2c.testing.netns import NsPair

    with NsPair(f"s2ct-ik-{os.getpid() % 10000}", [f"{A_IP}/24"], [f"{B_IP}/24"], lo_b=["203.0.113.2/32"]) as p:
        yield p


@pytest.fixture
def pki_paths(tmp_path):
    from s2c import pki

    paths = pki.ensure_pki(tmp_path / "pki", fqdn=GW_ID)
    pki.issue(paths, "ue1", UE_ID)
    return paths


class _LoggedCharon:
    """A Charon whose log is printed (captured by pytest) once it has stopped and flushed."""

    def __init__(self, ch) -> None:
        self.ch = ch

    def __enter__(self):
        return self.ch.__enter__()

    def __exit__(self, *exc):
        self.ch.__exit__(*exc)
        print(self.ch.log_path.read_text(errors="replace")[-12000:])


def _charon(pair, tmp_path, pki_paths=None, name="pdngw", extra_plugins=""):
    from s2c.lab.strongswan import PLUGINS, Charon

    extra = f"  load = {PLUGINS} {extra_plugins}\n" if extra_plugins else ""
    ch = Charon(pair.name("b"), tmp_path / "charon", log_level=1, extra_conf=extra)
    ch._write_conf()
    if pki_paths is not None:
        shutil.copy(pki_paths.ca_cert, ch.workdir / "x509ca" / "ca.crt")
        shutil.copy(pki_paths.cert(name), ch.workdir / "x509" / f"{name}.crt")
        shutil.copy(pki_paths.key(name), ch.workdir / "private" / f"{name}.key")
    return _LoggedCharon(ch)


def _responder_conf(local_auth: dict, remote_auth: dict, secrets: dict | None = None, mobike=False) -> str:
    from s2c.lab.strongswan import render

    conf = {
        "connections": {"c": {
            "local_addrs": B_IP, "remote_addrs": "%any" if mobike else A_IP, "version": 2, "encap": True,
            "mobike": mobike,
            "proposals": "aes128-sha256-ecp256,aes128gcm16-prfsha256-x25519", "pools": "vip",
            "local": local_auth, "remote": remote_auth,
            "children": {"t": {"local_ts": "203.0.113.0/24", "remote_ts": "dynamic", "mode": "tunnel",
                               "esp_proposals": "aes128gcm16,aes128-sha256"}},
        }},
        "pools": {"vip": {"addrs": "198.18.0.0/24"}},
    }
    if secrets:
        conf["secrets"] = secrets
    return render(conf)


def _check_initiator_established(drv: Driver, charon) -> dict:
    drv.wait_for("ChildSaEstablished")
    assert drv.names()[:3] == ["IkeSaEstablished", "CpAssigned", "ChildSaEstablished"], drv.names()
    ike, cp, child = drv.events[1:4]
    assert ike["nat_detected"] is True  # charon's encap=yes fakes a NAT: we moved to 4500
    assert cp["ipv4"].startswith("198.18.0.")
    assert child["ts_local"] == [f"{cp['ipv4']}/proto=0"] and child["ts_remote"] == ["203.0.113.0/24/proto=0"]
    assert child["mode"] == "tunnel" and child["nat_t"] is True
    sas = charon.list_sas()
    assert "ESTABLISHED" in sas and "INSTALLED" in sas, sas
    return child


def test_initiator_psk_against_charon(pair, tmp_path):
    with _charon(pair, tmp_path) as ch:
        ch.load(_responder_conf({"auth": "psk", "id": GW_ID}, {"auth": "psk", "id": UE_ID},
                                {"ike-1": {"id-1": UE_ID, "id-2": GW_ID, "secret": PSK}}))
        drv = Driver(pair, {"role": "initiator", "auth": "psk", "local_id": UE_ID, "remote_id": GW_ID})
        try:
            child = _check_initiator_established(drv, ch)
            drv.cmd("rekey_child")
            drv.wait_for("ChildSaDeleted")
            assert drv.names()[3:5] == ["ChildSaRekeyed", "ChildSaDeleted"]
            assert drv.events[-1]["spi_in"] == child["spi_in"]
            drv.cmd("rekey_ike")
            drv.wait_for("IkeSaRekeyed")
            drv.cmd("dpd")
            drv.settle(1.0)
            assert "INSTALLED" in ch.list_sas()
            # charon rekeys too (it initiates CREATE_CHILD_SA towards us)
            ch._swanctl("--rekey", "--child", "t")
            drv.wait_for("ChildSaDeleted", count=2)
            ch._swanctl("--rekey", "--ike", "c")
            drv.wait_for("IkeSaRekeyed", count=2)
            drv.cmd("delete")
            drv.wait_for("IkeSaDeleted")
            time.sleep(0.3)
            assert ch.established_count() == 0
        finally:
            bye = drv.close()
            print(bye, *drv.events, sep="\n")
        assert not bye.get("stats"), bye


def test_initiator_cert_and_charon_terminates(pair, tmp_path, pki_paths):
    with _charon(pair, tmp_path, pki_paths) as ch:
        ch.load(_responder_conf({"auth": "pubkey", "certs": "pdngw.crt", "id": GW_ID},
                                {"auth": "pubkey", "id": UE_ID}))
        drv = Driver(pair, {"role": "initiator", "auth": "cert", "local_id": UE_ID, "remote_id": GW_ID,
                            "ca": str(pki_paths.ca_cert), "cert": str(pki_paths.cert("ue1")),
                            "key": str(pki_paths.key("ue1"))})
        try:
            _check_initiator_established(drv, ch)
            ch.terminate("c")
            drv.wait_for("IkeSaDeleted")
            assert drv.names()[-2:] == ["ChildSaDeleted", "IkeSaDeleted"]
        finally:
            print(drv.close())


def test_initiator_eap_md5_against_charon(pair, tmp_path, pki_paths):
    with _charon(pair, tmp_path, pki_paths, extra_plugins="eap-md5") as ch:
        ch.load(_responder_conf({"auth": "pubkey", "certs": "pdngw.crt", "id": GW_ID},
                                {"auth": "eap-md5", "id": UE_ID, "eap_id": "%any"},
                                {"eap-ue": {"id": UE_ID, "secret": EAP_PW}}))
        drv = Driver(pair, {"role": "initiator", "auth": "eap", "local_id": UE_ID, "remote_id": GW_ID,
                            "ca": str(pki_paths.ca_cert)})
        try:
            drv.wait_for("ChildSaEstablished")
            names = drv.names()
            assert names[0] == "EapRequestReceived" and names[-3:] == ["IkeSaEstablished", "CpAssigned",
                                                                        "ChildSaEstablished"], names
            assert "ESTABLISHED" in ch.list_sas()
        finally:
            print(drv.close())


def test_responder_psk_charon_initiates(pair, tmp_path):
    from s2c.lab.strongswan import render

    conf = render({
        "connections": {"c": {
            "local_addrs": B_IP, "remote_addrs": A_IP, "version": 2, "encap": True, "mobike": False,
            "proposals": "aes128gcm16-prfsha256-x25519", "vips": "0.0.0.0",
            "local": {"auth": "psk", "id": UE_ID}, "remote": {"auth": "psk", "id": GW_ID},
            "children": {"t": {"remote_ts": "203.0.113.0/24", "mode": "tunnel", "esp_proposals": "aes128gcm16"}},
        }},
        "secrets": {"ike-1": {"id-1": UE_ID, "id-2": GW_ID, "secret": PSK}},
    })
    with _charon(pair, tmp_path) as ch:
        ch.load(conf)
        drv = Driver(pair, {"role": "responder", "auth": "psk", "local_id": GW_ID, "remote_id": UE_ID})
        try:
            ch.initiate(child="t", timeout=10)
            drv.wait_for("ChildSaEstablished")
            assert drv.names()[:2] == ["IkeSaEstablished", "ChildSaEstablished"]
            child = drv.events[2]
            assert child["ts_remote"] == ["198.18.0.10/proto=0"] and child["nat_t"] is True
            assert "198.18.0.10" in ch.list_sas()
            ch._swanctl("--rekey", "--child", "t")
            drv.wait_for("ChildSaDeleted")
            ch._swanctl("--rekey", "--ike", "c")
            drv.wait_for("IkeSaRekeyed")
            drv.cmd("rekey_child")
            drv.wait_for("ChildSaDeleted", count=2)
            drv.cmd("rekey_ike")
            drv.wait_for("IkeSaRekeyed", count=2)
            assert "INSTALLED" in ch.list_sas()
            ch.terminate("c")
            drv.wait_for("IkeSaDeleted")
        finally:
            bye = drv.close()
            print(bye, *drv.events, sep="\n")
        assert not bye.get("stats"), bye


def test_responder_eap_md5_charon_is_peer(pair, tmp_path, pki_paths):
    from s2c.lab.strongswan import render

    conf = render({
        "connections": {"c": {
            "local_addrs": B_IP, "remote_addrs": A_IP, "version": 2, "encap": True, "mobike": False,
            "proposals": "aes128-sha256-ecp256", "vips": "0.0.0.0",
            "local": {"auth": "eap-md5", "id": UE_ID}, "remote": {"auth": "pubkey", "id": GW_ID},
            "children": {"t": {"remote_ts": "203.0.113.0/24", "mode": "tunnel", "esp_proposals": "aes128-sha256"}},
        }},
        "secrets": {"eap-ue": {"id": UE_ID, "secret": EAP_PW}},
    })
    with _charon(pair, tmp_path, pki_paths, name="ue1", extra_plugins="eap-md5") as ch:
        ch.load(conf)
        drv = Driver(pair, {"role": "responder", "auth": "cert", "local_id": GW_ID, "remote_id": UE_ID,
                            "cert": str(pki_paths.cert("pdngw")), "key": str(pki_paths.key("pdngw"))})
        try:
            ch.initiate(child="t", timeout=10)
            drv.wait_for("ChildSaEstablished")
            assert drv.names() == ["EapAuthenticationRequested", "EapResponseReceived", "IkeSaEstablished",
                                   "ChildSaEstablished"]
            assert "198.18.0.10" in ch.list_sas()
        finally:
            bye = drv.close()
            print(bye, *drv.events, sep="\n")
        assert not bye.get("stats"), bye


def test_initiator_mobike_update_with_charon(pair, tmp_path):
    pair.run("a", ["ip", "addr", "add", "198.51.100.11/24", "dev", "veth-a"])
    with _charon(pair, tmp_path) as ch:
        ch.load(_responder_conf({"auth": "psk", "id": GW_ID}, {"auth": "psk", "id": UE_ID},
                                {"ike-1": {"id-1": UE_ID, "id-2": GW_ID, "secret": PSK}}, mobike=True))
        drv = Driver(pair, {"role": "initiator", "auth": "psk", "local_id": UE_ID, "remote_id": GW_ID,
                            "mobike": True})
        try:
            _check_initiator_established(drv, ch)
            assert drv.events[1]["mobike"] is True
            drv.cmd("mobike 198.51.100.11")
            upd = drv.wait_for("IkeSaAddressesUpdated")
            assert upd["local_addr"][0] == "198.51.100.11"
            time.sleep(0.3)
            sas = ch.list_sas()
            assert "198.51.100.11" in sas and "ESTABLISHED" in sas, sas
            drv.cmd("dpd")
            drv.settle(1.0)
            drv.cmd("delete")
            drv.wait_for("IkeSaDeleted")
        finally:
            bye = drv.close()
            print(bye, *drv.events, sep="\n")
        assert not bye.get("stats"), bye
