"""Key export: Wireshark 4.0 esp_sa UAT strings, and tshark decrypts ESP that our SA code produced."""

from __future__ import annotations

import os
import shutil

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from s2c.esp.sa import EspSa
from s2c.esp.wireshark import esp_sa_record, esp_sa_uat_file, tshark_esp_options, tshark_fields


def gcm(spi, local="192.0.2.1", remote="192.0.2.2", n=36):
    return EspSa(spi=spi, direction="out", mode="tunnel", encr=20, encr_key=os.urandom(n), local=local, remote=remote)


def cbc(spi, local="192.0.2.1", remote="192.0.2.2"):
    return EspSa(spi=spi, direction="out", mode="tunnel", encr=12, encr_key=os.urandom(16), integ=12,
                 integ_key=os.urandom(32), local=local, remote=remote, rng=os.urandom)


def test_uat_records():
    sa = gcm(0x1234ABCD)
    rec = esp_sa_record(sa)
    assert rec == ["IPv4", "192.0.2.1", "192.0.2.2", "0x1234abcd", "AES-GCM with 16 octet ICV [RFC4106]",
                   "0x" + sa.encr_key.hex(), "NULL", ""]
    c = cbc(0x100, "2001:db8::1", "2001:db8::2")
    assert esp_sa_record(c)[:1] + esp_sa_record(c)[4:5] + esp_sa_record(c)[6:7] == [
        "IPv6", "AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"]
    inbound = EspSa(spi=0x200, direction="in", mode="tunnel", encr=20, encr_key=bytes(20), local="192.0.2.1",
                    remote="192.0.2.2")
    assert esp_sa_record(inbound)[1:3] == ["192.0.2.2", "192.0.2.1"]
    # wildcard addresses: tshark 4.0 matches only "IPv4"/"IPv6" protocol fields, never "Any"
    wild = EspSa(spi=0x300, direction="in", mode="tunnel", encr=20, encr_key=bytes(20))
    assert esp_sa_record(wild)[:3] == ["IPv4", "*", "*"]
    assert esp_sa_record(wild, "*", "*")[0] == "IPv4"
    text = esp_sa_uat_file([sa, c])
    assert text.count("\n") == 2 and text.startswith('"IPv4","192.0.2.1","192.0.2.2","0x1234abcd"')
    opts = tshark_esp_options([sa])
    assert opts[:2] == ["-o", "esp.enable_encryption_decode:TRUE"] and opts[3].startswith('uat:esp_sa:"IPv4"')


@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
@pytest.mark.parametrize("udp_encap", [True, False], ids=["udp-encap", "plain"])
def test_tshark_decrypts_our_pcap(tmp_path, udp_encap):
    sas = [gcm(0xA0000001), gcm(0xA0000002, n=20), cbc(0xA0000003), gcm(0xA0000004, "2001:db8::1", "2001:db8::2")]
    inner4 = IP(src="10.1.0.1", dst="10.1.0.2") / ICMP(type=8, id=1, seq=1) / Raw(b"p" * 40)
    inner_udp = IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=40001, dport=40002) / Raw(b"u" * 333)
    frames = []
    for sa in sas:
        for inner in (inner4, inner_udp):
            esp = sa.encapsulate(bytes(inner))
            if ":" in sa.local:
                outer = IPv6(src=sa.local, dst=sa.remote)
                frames.append(outer / UDP(sport=4500, dport=4500) / Raw(esp) if udp_encap else
                              IPv6(bytes(IPv6(src=sa.local, dst=sa.remote, nh=50) / Raw(esp))))
            else:
                frames.append(IP(src=sa.local, dst=sa.remote) / UDP(sport=4500, dport=4500) / Raw(esp) if udp_encap
                              else IP(bytes(IP(src=sa.local, dst=sa.remote, proto=50) / Raw(esp))))
    pcap = str(tmp_path / "esp.pcap")
    wrpcap(pcap, [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / f for f in frames])
    rows = tshark_fields(pcap, sas, ["esp.spi", "icmp.type", "udp.dstport", "data.len"], "esp")
    assert len(rows) == 8
    assert sum(1 for r in rows if r[1] == "8") == 4
    assert sum(1 for r in rows if "40002" in r[2]) == 4
    assert tshark_fields(pcap, sas, ["frame.number"], "_ws.malformed or _ws.expert.severity >= error") == []
    # wrong key: tshark cannot see the inner packets
    wrong = [gcm(s.spi) for s in sas[:2]]
    assert tshark_fields(pcap, wrong, ["frame.number"], "icmp and ip.src == 10.1.0.1") == []
