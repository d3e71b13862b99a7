"""Real ``ue``, ``pdngw`` and ``hss`` daemons in two namespaces (NsPair): IKEv2 + EAP-AKA over S6b,
Home Address by CP, ESP SAs in the userspace data plane, user traffic from the HoA to a CN address
behind the PDN GW, detach, wrong K and unknown IMSI. Needs root (namespaces, TUN)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s2c.testing.daemons import DaemonHost
from s2c.testing.netns import NsPair

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OPC = "cd63cb71954a9f4e48a5994e37a02baf"
IMSI = "001010000000001"
UE4, PGW4 = "192.0.2.10", "192.0.2.1"
UE6, PGW6 = "2001:db8:c::10", "2001:db8:c::1"
CN6, CN4 = "2001:db8:5::10", "203.0.113.10"
HA = "2001:db8:1::1"


class Lab(DaemonHost):
    """hss + pdngw in namespace b, ue in namespace a, joined by one veth (the 'radio')."""

    def __init__(self, workdir: Path, imsi: str = IMSI, k: str = K, subscribers: list | None = None,
                 pdngw_extra: dict | None = None, **ue_extra) -> None:
        self.pdngw_extra = pdngw_extra or {}
        self.workdir = self.sockdir = workdir
        self.run_id = self.prefix = f"s2ct-ue-{secrets.token_hex(2)}"
        self.pair = NsPair(self.prefix, a_addrs=[f"{UE4}/24", f"{UE6}/64"], b_addrs=[f"{PGW4}/24", f"{PGW6}/64"],
                           lo_b=[f"{CN6}/128", f"{CN4}/32", f"{HA}/128"])
        self.procs: dict[str, subprocess.Popen] = {}
        self.subscribers = subscribers if subscribers is not None else [
            {"imsi": IMSI, "k": K, "opc": OPC, "amf": "8000", "sqn": 0, "apn": "internet"}]
        self.ue_params = {"imsi": imsi, "k": k, "opc": OPC, "sqn": 0, "ipv4_hoa": True,
                          "radios": {"veth-a": {"network": "wlan", "up": True}}, "dpd_interval": 1.0,
                          "retransmit_timeout": 0.3, "retransmit_tries": 3, **ue_extra}

    def daemon_defaults(self) -> dict:
        return {"pki": str(self.workdir / "pki"), "keys": str(self.workdir / "keys")}

    def start_hss(self) -> None:
        self.spawn("hss", "hss", "b", {"db": str(self.workdir / "hss.db"), "subscribers": self.subscribers,
                                       "diameter": {"listen": ["127.0.0.1"], "port": 3868}}, {})

    def start_pdngw(self) -> None:
        self.spawn("pdngw", "pdngw", "b", {"s2c": {"ipv4": [PGW4], "ipv6": [PGW6]}, "ha_address": HA, "workers": 1,
                                           **self.pdngw_extra},
                   {"hss": {"node": "hss", "diameter": {"address": "127.0.0.1", "port": 3868}}})
        self.wait(lambda: self.ctl("pdngw").call("status")["diameter"] == "open", 10,
                  "the S6b connection\n" + self.log("pdngw")[-3000:])

    def start_ue(self) -> None:
        self.spawn("ue", "ue", "a", self.ue_params,
                   {"pdngw": {"node": "pdngw", "kind": "pdngw", "ipv4": [PGW4], "ipv6": [PGW6]}})

    def __enter__(self) -> "Lab":
        self.pair.__enter__()
        try:
            # the UE's "radio" has default routes via the PDN GW (the UE pins its IKE/ESP route to them)
            self.pair.run("a", ["ip", "route", "add", "default", "via", PGW4])
            self.pair.run("a", ["ip", "-6", "route", "add", "default", "via", PGW6])
            self.start_hss()
            self.start_pdngw()
            self.start_ue()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.stop_daemons()
        self.pair.close()

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def workdir():
    # short path: control sockets must fit sun_path
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="s2ct-ue-"))
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def test_attach_eap_aka_hoa_sas_traffic_detach(workdir):
    with Lab(workdir) as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached", (res, lab.log("ue")[-3000:], lab.log("pdngw")[-3000:])
        hoa = res["hoa"]["ipv6"]
        assert hoa and hoa.startswith("2001:db8:1:") and res["ha"] == HA
        assert res["hoa"]["ipv4"] and res["hoa"]["ipv4"].startswith("198.19.0.")
        assert 0 < res["tunnel_sa_ms"] < 5000 and res["child_sa_ms"] <= res["tunnel_sa_ms"]
        st = lab.ctl("ue").call("status")
        assert st["state"] == "attached" and st["hoa"]["ipv6"] == hoa and st["imsi"] == IMSI
        # the UE's SAs: one IKE SA with a transport MH CHILD SA and a tunnel CHILD SA
        sas = lab.ctl("ue").call("sas")
        assert len(sas) == 1 and sas[0]["state"] == "established"
        modes = sorted(c["mode"] for c in sas[0]["children"])
        assert modes == ["transport", "tunnel"]
        mh = next(c for c in sas[0]["children"] if c["mode"] == "transport")
        assert mh["ts_local"] == [f"{hoa}/proto=135"] and mh["ts_remote"] == [f"{HA}/proto=135"]
        # the PDN GW's view of the same SAs
        psas = lab.ctl("pdngw").call("sas")
        assert len(psas) == 1 and psas[0]["nai"].startswith("0" + IMSI) and psas[0]["hoa"] == hoa
        assert psas[0]["auth"] == "success" and psas[0]["spi_i"] == sas[0]["spi_i"]
        assert sorted(c["mode"] for c in psas[0]["children"]) == ["transport", "tunnel"]
        assert {c["spi_in"] for c in psas[0]["children"]} == {c["spi_out"] for c in sas[0]["children"]}
        # user traffic from the HoA through ESP to a CN address behind the PDN GW (IPv6 and IPv4)
        r = lab.pair.run("a", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", hoa, CN6], check=False)
        assert r.returncode == 0, r.stdout + r.stderr + lab.log("ue")[-2000:]
        r = lab.pair.run("a", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-I", res["hoa"]["ipv4"], CN4],
                         check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        sas = lab.ctl("ue").call("sas")
        tun = next(c for c in sas[0]["children"] if c["mode"] == "tunnel")
        assert tun["counters"]["packets_out"] >= 5 and tun["counters"]["packets_in"] >= 5
        # key files for Wireshark
        assert (workdir / "keys" / "esp_sa").read_text().count("\n") == 8  # 4 SAs, IPv4 + IPv6 records
        assert (workdir / "keys" / "ikev2_decryption_table").read_text().count("\n") == 1
        # detach
        d = lab.ctl("ue").call("detach")
        assert d["state"] == "detached" and d["deleted"] is True
        assert lab.ctl("ue").call("sas") == []
        deadline = time.monotonic() + 3
        while lab.ctl("pdngw").call("status")["ike_sas"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = lab.pair.run("a", ["ping", "-n", "-c", "1", "-W", "1", "-I", hoa, CN6], check=False)
        assert r.returncode != 0  # the HoA is gone with the tunnel
        routes = lab.pair.run("a", ["ip", "-6", "route"]).stdout
        assert "esp0" not in routes.replace("fe80::/64 dev esp0", ""), routes


def test_wrong_k_authentication_failed_no_sa(workdir):
    with Lab(workdir, k="00112233445566778899aabbccddeeff") as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=15)
        assert res["state"] == "detached" and res["reason"] == "AUTHENTICATION_FAILED", res
        st = lab.ctl("ue").call("status")
        assert st["last_failure"]["reason"] == "AUTHENTICATION_FAILED" and st["hoa"]["ipv6"] is None
        assert lab.ctl("ue").call("sas") == []
        assert lab.ctl("pdngw").call("status")["ike_sas"] == 0
        assert lab.ctl("hss").call("counters").get("auth_fail", 0) >= 1


def test_unknown_imsi_authentication_failed(workdir):
    with Lab(workdir, imsi="001010000009999") as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=15)
        assert res["state"] == "detached" and res["reason"] == "AUTHENTICATION_FAILED", res
        assert lab.ctl("pdngw").call("status")["ike_sas"] == 0


def test_garbage_datagrams_do_not_hurt_other_ues(workdir):
    with Lab(workdir) as lab:
        import socket

        code = ("import socket,os\n"
                "for port in (500, 4500):\n"
                " s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                " for n in range(50): s.sendto(os.urandom(n*7), ('%s', port))\n") % PGW4
        lab.pair.run("a", [sys.executable, "-c", code])
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached", res
        c = lab.ctl("pdngw").call("counters")
        assert c.get("ike_dropped", 0) >= 40
        assert lab.procs["pdngw"].poll() is None
        del socket


def test_rekey_child_and_ike_sa_keeps_traffic(workdir):
    with Lab(workdir, child_rekey_time=1.0, ike_rekey_time=1.7) as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached", res
        before = lab.ctl("ue").call("sas")[0]
        hoa = res["hoa"]["ipv6"]
        r = lab.pair.run("a", ["ping", "-n", "-c", "25", "-i", "0.2", "-W", "1", "-I", hoa, CN6], check=False)
        after = lab.ctl("ue").call("sas")[0]
        # the IKE SA got new SPIs, every CHILD SA too, and pings kept going through the rekeys
        assert after["spi_i"] != before["spi_i"]
        assert not {c["spi_in"] for c in after["children"]} & {c["spi_in"] for c in before["children"]}
        assert sorted(c["mode"] for c in after["children"]) == ["transport", "tunnel"]
        received = int(r.stdout.split(" received")[0].rsplit(" ", 1)[-1])
        assert received >= 22, r.stdout
        # both ends agree on the SAs (sampled until no rekey is in flight between the two queries)
        for _ in range(40):
            ue_sa = lab.ctl("ue").call("sas")[0]
            psas = lab.ctl("pdngw").call("sas")
            if len(psas) == 1 and psas[0]["spi_i"] == ue_sa["spi_i"] and \
                    {c["spi_in"] for c in psas[0]["children"]} == {c["spi_out"] for c in ue_sa["children"]}:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"UE and PDN GW disagree: {ue_sa} vs {psas}")
        keys = (workdir / "keys" / "ikev2_decryption_table").read_text().splitlines()
        assert len(keys) >= 2  # the rekeyed IKE SA's keys were exported too


def test_garbage_during_a_session_leaves_it_working(workdir):
    with Lab(workdir) as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached", res
        spi_i = bytes.fromhex(lab.ctl("ue").call("sas")[0]["spi_i"])
        code = ("import socket,os,struct\n"
                "spi=bytes.fromhex('%s')\n"
                "s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
                "for n in range(40):\n"
                " hdr=spi+os.urandom(8)+bytes([46,0x20,37,8])+struct.pack('!II',n,28+n)\n"
                " s.sendto(hdr+os.urandom(n), ('%s', 500))\n"
                " s.sendto(b'\\0\\0\\0\\0'+hdr+os.urandom(n), ('%s', 4500))\n"
                " s.sendto(os.urandom(8+n), ('%s', 4500))\n") % (spi_i.hex(), PGW6, PGW6, PGW6)
        lab.pair.run("a", [sys.executable, "-c", code])
        time.sleep(0.5)
        assert lab.ctl("pdngw").call("status")["established"] == 1
        r = lab.pair.run("a", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", res["hoa"]["ipv6"], CN6],
                         check=False)
        assert r.returncode == 0, r.stdout
        assert lab.ctl("pdngw").call("counters").get("ike_dropped", 0) >= 40
        d = lab.ctl("ue").call("detach")
        assert d["deleted"] is True


def _wait(pred, timeout=5.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_mobike_on_address_change_and_family_change(workdir):
    with Lab(workdir) as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached" and res["coa"] == UE6, res
        hoa = res["hoa"]["ipv6"]
        spi_i = lab.ctl("ue").call("sas")[0]["spi_i"]
        # new address on the radio, the old one goes: MOBIKE to the new CoA (same family, no NAT)
        lab.pair.run("a", ["ip", "-6", "addr", "add", "2001:db8:c::20/64", "dev", "veth-a", "nodad"])
        lab.pair.run("a", ["ip", "-6", "addr", "del", f"{UE6}/64", "dev", "veth-a"])
        _wait(lambda: lab.ctl("pdngw").call("sas")[0]["remote"] == "2001:db8:c::20:500", what="MOBIKE to ::20")
        st = lab.ctl("ue").call("status")
        assert st["coa"] == "2001:db8:c::20" and st["state"] == "attached" and st["hoa"]["ipv6"] == hoa
        r = lab.pair.run("a", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", hoa, CN6], check=False)
        assert r.returncode == 0, r.stdout
        # no IPv6 left on the radio: MOBIKE moves the SAs to IPv4 (ESP over IPv4 from now on)
        lab.pair.run("a", ["ip", "-6", "addr", "del", "2001:db8:c::20/64", "dev", "veth-a"])
        _wait(lambda: lab.ctl("pdngw").call("sas")[0]["remote"] == f"{UE4}:500", what="MOBIKE to IPv4")
        assert lab.ctl("ue").call("sas")[0]["spi_i"] == spi_i  # the same IKE SA throughout
        r = lab.pair.run("a", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", hoa, CN6], check=False)
        assert r.returncode == 0, r.stdout + lab.log("ue")[-2000:]
        assert lab.ctl("pdngw").call("counters")["mobike_updates"] == 2
        assert lab.ctl("hss").call("counters")["auth_ok"] == 1  # no new EAP run


def test_psk_auth_both_ways(workdir):
    """Interop mode: PSK authentication on both sides (no EAP, no HSS round trip)."""
    with Lab(workdir, pdngw_extra={"auth": "psk", "psk": "s2c-interop-psk"}, auth="psk", psk="s2c-interop-psk") as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached", res
        assert lab.ctl("hss").call("counters").get("auth_ok", 0) == 0  # no EAP happened
        r = lab.pair.run("a", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-I", res["hoa"]["ipv6"], CN6],
                         check=False)
        assert r.returncode == 0, r.stdout
    with Lab(workdir, pdngw_extra={"auth": "psk", "psk": "s2c-interop-psk"}, auth="psk", psk="wrong") as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=10)
        assert res["state"] == "detached" and res["reason"] == "AUTHENTICATION_FAILED", res


def test_cert_auth_ue(workdir):
    """Interop mode: the UE authenticates with a certificate from the run's CA (RFC 822 SAN = its NAI)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from s2c.eap_aka import permanent_nai
    from s2c.pki import ensure_pki

    paths = ensure_pki(workdir / "pki")
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    nai = permanent_nai(IMSI)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, nai)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(nai)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (workdir / "ue.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "ue.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    with Lab(workdir, auth="cert", cert=str(workdir / "ue.crt"), key=str(workdir / "ue.key")) as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached", res
        psas = lab.ctl("pdngw").call("sas")
        assert psas[0]["nai"] == nai and psas[0]["auth"] is None  # authenticated by certificate, not EAP


def test_forced_udp_encapsulation(workdir):
    """Interop mode for kernel-libipsec peers: ESP in UDP 4500 without a NAT (fake NAT-D hash)."""
    with Lab(workdir, force_encap=True) as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached" and res["udp_encap"] is True, res
        psas = lab.ctl("pdngw").call("sas")
        assert psas[0]["udp_encap"] is True and psas[0]["remote"].endswith(":4500")
        r = lab.pair.run("a", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-I", res["hoa"]["ipv6"], CN6],
                         check=False)
        assert r.returncode == 0, r.stdout
        # IKE on port 4500 (IKE_AUTH onwards) reached both daemons' own sockets, not via the workers
        ue_st, pgw_st = lab.ctl("ue").call("status"), lab.ctl("pdngw").call("status")
        assert ue_st["ike_steered"] >= 3 and pgw_st["ike_steered"] >= 3, (ue_st, pgw_st)
    with Lab(workdir, pdngw_extra={"force_encap": True}) as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached" and res["udp_encap"] is True, res


def test_pdngw_reconnects_to_a_restarted_hss(workdir):
    with Lab(workdir) as lab:
        lab.stop_daemon("hss")
        _wait(lambda: lab.ctl("pdngw").call("status")["diameter"] == "closed", what="S6b down")
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=15)
        assert res["state"] == "detached" and res["reason"] == "AUTHENTICATION_FAILED", res  # no AAA: no EAP
        lab.start_hss()
        _wait(lambda: lab.ctl("pdngw").call("status")["diameter"] == "open", timeout=10, what="S6b back")
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=15)
        assert res["state"] == "attached", res
        assert lab.ctl("pdngw").call("counters")["diameter_connects"] == 2


def test_ue_crash_and_new_attach_replaces_the_old_sa(workdir):
    """A UE that vanished without a Delete attaches again: INITIAL_CONTACT makes the PDN GW drop the
    stale IKE SA; the UE gets the same home prefix back."""
    with Lab(workdir) as lab:
        res = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res["state"] == "attached", res
        lab.procs.pop("ue").kill()
        time.sleep(0.5)
        lab.start_ue()
        res2 = lab.ctl("ue", 30).call("attach", timeout=30, radio="veth-a", wait=20)
        assert res2["state"] == "attached", (res2, lab.log("ue")[-2000:])
        assert res2["hoa"] == res["hoa"]
        _wait(lambda: lab.ctl("pdngw").call("status")["ike_sas"] == 1, what="stale SA dropped")
        r = lab.pair.run("a", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-I", res2["hoa"]["ipv6"], CN6],
                         check=False)
        assert r.returncode == 0, r.stdout


def test_xfrm_dataplane_is_refused_here_with_the_reason(workdir):
    """params.dataplane: xfrm on a kernel without ESP: the pdngw says why and exits (no half-started node)."""
    from s2c.dataplane.xfrm import kernel_esp_available

    ok, _ = kernel_esp_available()
    if ok:
        pytest.skip("this kernel has ESP: the xfrm backend starts (tests/e2e/test_xfrm_backend.py)")
    lab = Lab(workdir, pdngw_extra={"dataplane": "xfrm"})
    lab.pair.__enter__()
    try:
        lab.start_hss()
        with pytest.raises(RuntimeError) as ei:
            lab.start_pdngw()
        assert "kernel ESP not available here" in str(ei.value), str(ei.value)[-2000:]
    finally:
        lab.close()
