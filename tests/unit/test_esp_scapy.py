"""Oracle: scapy's independent ESP implementation decrypts our packets and we decrypt its packets."""

from __future__ import annotations

import os

import pytest

scapy_ipsec = pytest.importorskip("scapy.layers.ipsec")
from scapy.layers.inet import ICMP, IP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

from s2c.esp.sa import EspSa  # noqa: E402

SUITES = {
    "gcm128": dict(encr=20, encr_key=os.urandom(20), scapy=("AES-GCM", "NULL")),
    "gcm256": dict(encr=20, encr_key=os.urandom(36), scapy=("AES-GCM", "NULL")),
    "cbc128": dict(encr=12, encr_key=os.urandom(16), integ=12, integ_key=os.urandom(32), scapy=("AES-CBC", "SHA2-256-128")),
    "cbc256": dict(encr=12, encr_key=os.urandom(32), integ=12, integ_key=os.urandom(32), scapy=("AES-CBC", "SHA2-256-128")),
}
OUTER = IP(src="192.0.2.1", dst="192.0.2.2")


def scapy_sa(cfg, spi, tunnel=True):
    crypt, auth = cfg["scapy"]
    return SecurityAssociation(
        ESP,
        spi=spi,
        crypt_algo=crypt,
        crypt_key=cfg["encr_key"],
        auth_algo=auth,
        auth_key=cfg.get("integ_key") or None,
        tunnel_header=OUTER if tunnel else None,
    )


def ours(cfg, spi, direction, mode="tunnel"):
    kw = {k: v for k, v in cfg.items() if k != "scapy"}
    return EspSa(spi=spi, direction=direction, mode=mode, rng=os.urandom, **kw)


INNER4 = IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(id=7, seq=1) / (b"x" * 57)
INNER6 = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1234, dport=5678) / (b"y" * 300)


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("inner", [INNER4, INNER6], ids=["ipv4", "ipv6"])
def test_scapy_decrypts_ours(suite, inner):
    cfg = SUITES[suite]
    sa = ours(cfg, 0x4242, "out")
    ref = scapy_sa(cfg, 0x4242)
    for _ in range(3):
        esp = sa.encapsulate(bytes(inner))
        got = ref.decrypt(OUTER / ESP(esp))
        assert bytes(got) == bytes(inner)


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("inner", [INNER4, INNER6], ids=["ipv4", "ipv6"])
def test_we_decrypt_scapy(suite, inner):
    cfg = SUITES[suite]
    sa = ours(cfg, 0x4343, "in")
    ref = scapy_sa(cfg, 0x4343)
    for i in range(1, 4):
        enc = ref.encrypt(inner, seq_num=i)
        nh, payload = sa.decapsulate(bytes(enc[ESP]))
        assert payload == bytes(inner)
        assert nh == (4 if inner.version == 4 else 41)


@pytest.mark.parametrize("suite", list(SUITES))
def test_transport_mode_against_scapy(suite):
    """Transport mode, IPv6 with a Mobility Header payload (next header 135) both ways."""
    cfg = SUITES[suite]
    mh_payload = bytes.fromhex("3b01050000000000") + os.urandom(16)  # an MH-shaped blob
    pkt6 = IPv6(src="2001:db8:1::10", dst="2001:db8:2::1", nh=135) / mh_payload
    ref = scapy_sa(cfg, 0x5151, tunnel=False)
    sa_in = ours(cfg, 0x5151, "in", "transport")
    enc = ref.encrypt(pkt6, seq_num=1)
    assert sa_in.decapsulate(bytes(enc[ESP])) == (135, mh_payload)
    sa_out = ours(cfg, 0x5151, "out", "transport")
    esp = sa_out.encapsulate(mh_payload, 135)
    dec = ref.decrypt(IPv6(src="2001:db8:1::10", dst="2001:db8:2::1", nh=50) / ESP(esp))
    assert dec.nh == 135 and bytes(dec.payload) == mh_payload
