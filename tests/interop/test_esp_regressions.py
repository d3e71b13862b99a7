"""Regression tests for ESP/key-export bugs found while decrypting strongSwan interop captures."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from s2c.esp.sa import EspSa
from s2c.esp.wireshark import esp_sa_record

pytestmark = pytest.mark.interop


@pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")
def test_wildcard_address_record_decrypts_after_a_move(tmp_path):
    """After a MOBIKE move the outer addresses differ from the ones the SA was made with; a record with
    "*" addresses must still decrypt. tshark 4.0 knows the protocols "IPv4"/"IPv6" only: a record
    with protocol "Any" silently matches nothing."""
    sa = EspSa(spi=0xC0FFEE01, direction="out", mode="tunnel", encr=20, encr_key=os.urandom(20),
               local="198.51.100.1", remote="198.51.100.2")
    inner = IP(src="10.1.0.1", dst="10.1.0.2") / ICMP(type=8, id=1, seq=1) / Raw(b"p" * 40)
    frames = [IP(src=src, dst="198.51.100.2") / UDP(sport=4500, dport=4500) / Raw(sa.encapsulate(bytes(inner)))
              for src in ("198.51.100.1", "198.51.100.11")]
    pcap = tmp_path / "moved.pcap"
    wrpcap(str(pcap), [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / f for f in frames])
    rec = esp_sa_record(sa, "*", "*")
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE",
                          "-o", "uat:esp_sa:" + ",".join(f'"{f}"' for f in rec), "-Y", "icmp", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "2"], (rec, out.stderr)
