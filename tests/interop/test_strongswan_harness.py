"""The strongSwan harness itself: two charons (kernel-libipsec) in namespaces, PSK and certificates.

This proves the harness and our PKI against an independent implementation before our own IKEv2
daemons are tested against it.
"""

import shutil

import pytest

from s2c import pki
from s2c.lab.strongswan import Charon, render
from s2c.testing.netns import NsPair

pytestmark = pytest.mark.interop


def _conf(local, remote, local_auth, remote_auth, local_ts, remote_ts, secrets=None):
    conf = {
        "connections": {
            "c": {
                "local_addrs": local, "remote_addrs": remote, "encap": True, "version": 2,
                "proposals": "aes128gcm16-prfsha256-x25519,aes256-sha256-modp2048",
                "local": local_auth, "remote": remote_auth,
                "children": {"t": {"local_ts": local_ts, "remote_ts": remote_ts,
                                   "esp_proposals": "aes128gcm16,aes256-sha256", "mode": "tunnel"}},
            }
        }
    }
    if secrets:
        conf["secrets"] = secrets
    return render(conf)


@pytest.fixture
def pair():
    with NsPair("s2ct-sw", ["198.51.100.1/24"], ["198.51.100.2/24"],
                lo_a=["203.0.113.1/32"], lo_b=["203.0.113.2/32"]) as p:
        yield p


def _ping_through(pair):
    res = pair.run("a", ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "203.0.113.1", "203.0.113.2"], check=False)
    assert " 0% packet loss" in res.stdout, res.stdout + res.stderr


def test_psk_tunnel(pair, tmp_path):
    secrets = {"ike-1": {"secret": "s2c-interop-psk"}}
    with Charon(pair.name("a"), tmp_path / "a") as a, Charon(pair.name("b"), tmp_path / "b") as b:
        a.load(_conf("198.51.100.1", "198.51.100.2", {"auth": "psk", "id": "a@s2c.test"},
                     {"auth": "psk", "id": "b@s2c.test"}, "203.0.113.1/32", "203.0.113.2/32", secrets))
        b.load(_conf("198.51.100.2", "198.51.100.1", {"auth": "psk", "id": "b@s2c.test"},
                     {"auth": "psk", "id": "a@s2c.test"}, "203.0.113.2/32", "203.0.113.1/32", secrets))
        elapsed = a.initiate(child="t")
        assert elapsed < 5
        assert a.established_count() == 1 and b.established_count() == 1
        _ping_through(pair)


def test_certificate_from_our_pki(pair, tmp_path):
    paths = pki.ensure_pki(tmp_path / "pki", fqdn="pdngw.s2c.test")
    pki.issue(paths, "ue1", "ue1.s2c.test")
    a, b = Charon(pair.name("a"), tmp_path / "a"), Charon(pair.name("b"), tmp_path / "b")
    for ch, name in ((a, "ue1"), (b, "pdngw")):
        ch._write_conf()
        shutil.copy(paths.ca_cert, ch.workdir / "x509ca" / "ca.crt")
        shutil.copy(paths.cert(name), ch.workdir / "x509" / f"{name}.crt")
        shutil.copy(paths.key(name), ch.workdir / "private" / f"{name}.key")
    with a, b:
        a.load(_conf("198.51.100.1", "198.51.100.2",
                     {"auth": "pubkey", "certs": "ue1.crt", "id": "ue1.s2c.test"},
                     {"auth": "pubkey", "id": "pdngw.s2c.test"}, "203.0.113.1/32", "203.0.113.2/32"))
        b.load(_conf("198.51.100.2", "198.51.100.1",
                     {"auth": "pubkey", "certs": "pdngw.crt", "id": "pdngw.s2c.test"},
                     {"auth": "pubkey", "id": "ue1.s2c.test"}, "203.0.113.2/32", "203.0.113.1/32"))
        a.initiate(child="t")
        assert "ESTABLISHED" in b.list_sas()
        _ping_through(pair)
