"""Export ESP SA keys for Wireshark/tshark (the ``esp_sa`` UAT of the ESP dissector, packet-ipsec.c).

One UAT record per SA and direction:
    "IPv4","192.0.2.1","192.0.2.2","0xa0000001","AES-GCM with 16 octet ICV [RFC4106]","0x<key+salt>","NULL",""
Strings are the ones Wireshark 4.0 lists in ``esp_encryption_type_vals`` / ``esp_authentication_type_vals``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Iterable, Sequence

from s2c.esp.sa import EncrAlg, EspSa, IntegAlg

WS_ENCR = {
    EncrAlg.ENCR_NULL: "NULL",
    EncrAlg.ENCR_AES_CBC: "AES-CBC [RFC3602]",
    EncrAlg.ENCR_AES_GCM_16: "AES-GCM with 16 octet ICV [RFC4106]",
}
WS_AUTH = {
    IntegAlg.NONE: "NULL",
    IntegAlg.AUTH_HMAC_SHA2_256_128: "HMAC-SHA-256-128 [RFC4868]",
}


def esp_sa_record(sa: EspSa, src: str | None = None, dst: str | None = None) -> list[str]:
    """The 8 UAT fields for ``sa``; ``src``/``dst`` are the outer addresses of packets carrying this SPI
    (default: local->remote for outbound SAs, remote->local for inbound ones; "*" matches any)."""
    if src is None or dst is None:
        a, b = (sa.local or "*", sa.remote or "*")
        src, dst = (a, b) if sa.direction.value == "out" else (b, a)
    proto = "IPv6" if ":" in (src + dst) else "IPv4"
    if src == dst == "*":  # tshark 4.0 knows only "IPv4"/"IPv6" here ("Any" matches nothing): use the SA's family
        proto = "IPv6" if ":" in f"{sa.local}{sa.remote}" else "IPv4"
    key = "0x" + sa.encr_key.hex() if sa.encr_key else ""
    ikey = "0x" + sa.integ_key.hex() if sa.integ_key else ""
    return [proto, src, dst, f"0x{sa.spi:08x}", WS_ENCR[sa.encr], key, WS_AUTH[sa.integ], ikey]


def _quote(fields: Sequence[str]) -> str:
    return ",".join(json.dumps(f) for f in fields)


def esp_sa_uat_file(sas: Iterable[EspSa]) -> str:
    """Contents for ``~/.config/wireshark/esp_sa`` (one quoted record per line)."""
    return "".join(_quote(esp_sa_record(sa)) + "\n" for sa in sas)


def tshark_esp_options(sas: Iterable[EspSa]) -> list[str]:
    """tshark ``-o`` arguments that enable ESP decryption with these SAs."""
    args = ["-o", "esp.enable_encryption_decode:TRUE"]
    for sa in sas:
        args += ["-o", "uat:esp_sa:" + _quote(esp_sa_record(sa))]
    return args


def tshark_fields(pcap: str, sas: Iterable[EspSa], fields: Sequence[str], display_filter: str = "",
                  tshark: str | None = None, timeout: float = 60) -> list[list[str]]:
    """Run tshark over ``pcap`` with the SA keys and return one list of field values per packet."""
    exe = tshark or shutil.which("tshark") or "tshark"
    cmd = [exe, "-n", "-r", pcap, *tshark_esp_options(sas), "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        cmd += ["-e", f]
    if display_filter:
        cmd += ["-Y", display_filter]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]
