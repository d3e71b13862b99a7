"""Daemon-level strongSwan lab: the real ``python -m pdngw`` / ``python -m ue`` processes on side ``a``
of an :class:`NsPair`, charon 5.9.8 (kernel-libipsec) on side ``b`` (no tests here).

Builds on :class:`test_ike_lab.SwanLab` (namespaces, charon with our PKI, tcpdump on ``veth-a``,
swanctl builders and ``--list-sas --raw`` parser); adds the daemons (config files as the lab writes
them, docs/control.md), their control clients, and a tshark check fed with the key files the daemons
export themselves (``params.keys``: ``ikev2_decryption_table`` and ``esp_sa`` in Wireshark's UAT
format). Daemons always stop through the control ``stop`` command, then are killed if still alive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from s2c import pki
from s2c.testing.daemons import DaemonHost

from test_ike_lab import TSHARK_BAD, SwanLab, _seq, tshark_counts

# addresses at/behind our PDN GW (on lo of side a) when it is ours; behind strongSwan (lo of side b)
CN4, CN6 = "203.0.113.10", "2001:db8:5::10"       # our PDN GW's SGi side (case a)
SWAN_CN6 = "2001:db8:6::2"                          # behind charon as PDN GW (case b), with SWAN_INNER4
DI_HA = "2001:db8:1::1"                             # our Home Agent address (on lo)
HOME_PREFIX, IPV4_POOL = "2001:db8:1::/48", "198.19.0.0/24"


class DaemonSwanLab(DaemonHost, SwanLab):
    """SwanLab whose side ``a`` runs our daemons. Namespaces ``s2ct-di-<n>-a/-b``; always torn down."""

    def __init__(self, tmp: Path, auth: str = "psk", **kw) -> None:
        super().__init__(tmp, auth, **kw)
        self.run_id = self.prefix = f"s2ct-di-{os.getpid()}-{next(_seq)}"  # unique across concurrent pytest runs
        # control sockets need a short path (sun_path); pytest's tmp_path may be too long
        self.sockdir = Path(tempfile.mkdtemp(prefix="s2ct-di-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.keys = self.tmp / "keys"
        self.workdir = self.tmp

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "DaemonSwanLab":
        super().__enter__()
        try:
            assert self.pair is not None
            for side in ("a", "b"):
                self.pair.run(side, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
                              check=False)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.stop_daemons()
        super().close()
        shutil.rmtree(self.sockdir, ignore_errors=True)

    # ------------------------------------------------------------------ daemons (s2c.testing.daemons)
    def daemon_defaults(self) -> dict:
        return {"keys": str(self.keys)}

    def add_lo(self, side: str, *addrs: str) -> None:
        assert self.pair is not None
        for a in addrs:
            self.pair.run(side, ["ip", "addr", "add", a if "/" in a else f"{a}/{128 if ':' in a else 32}",
                                 "dev", "lo"])

    def trust_pki(self, name: str = "psk") -> pki.PkiPaths:
        """The PKI our daemons read (``params.pki``): the lab's certificate PKI, or a fresh CA for PSK runs
        (the UE insists on a trust anchor even when it authenticates with a PSK)."""
        if self.pki is not None:
            return self.pki
        return pki.ensure_pki(self.tmp / f"pki-{name}", fqdn="pdngw.s2c.test")

    def ping_ok(self, side: str, src: str, dst: str, count: int = 3) -> tuple[bool, str]:
        res = self.ping(side, src, dst, count)
        return (" 0% packet loss" in res.stdout, res.stdout + res.stderr)


# ---------------------------------------------------------------------- tshark (d)

def tshark_daemon_report(pcap: Path, keydir: Path, home: Path) -> dict:
    """Dissect ``pcap`` with tshark 4.0 using the key files our daemon exported to ``keydir``
    (any ``*ikev2_decryption_table`` / ``*esp_sa`` file there). Counts frames per class."""
    conf = home / ".config" / "wireshark"
    conf.mkdir(parents=True, exist_ok=True)
    ike = "".join(p.read_text() for p in sorted(keydir.glob("*ikev2_decryption_table")))
    esp = "".join(p.read_text() for p in sorted(keydir.glob("*esp_sa")))
    (conf / "ikev2_decryption_table").write_text(ike)
    (conf / "esp_sa").write_text(esp)
    names = {"frames": "frame", "isakmp": "isakmp", "ike_sk": "isakmp.enc.data",
             "ike_decrypted": "isakmp.enc.decrypted", "esp": "esp", "esp_decrypted": "esp.contained_data",
             "esp_icmp": "esp && (icmp || icmpv6)", "esp_icv_good": "esp.icv_good == 1", "bad": TSHARK_BAD}
    return tshark_counts(pcap, home, names)


def assert_daemon_capture_clean(lab: DaemonSwanLab, min_esp: int = 1) -> dict:
    """Stop the capture; no malformed packet, every IKE SK payload and every ESP packet decrypted with
    the daemon's own key files, every ESP ICV correct."""
    lab.stop_capture()
    rep = tshark_daemon_report(lab.pcap, lab.keys, lab.tmp / "wireshark-home")
    assert rep["bad"] == 0, rep
    assert rep["ike_sk"] >= 2 and rep["ike_decrypted"] == rep["ike_sk"], rep
    assert rep["esp"] >= min_esp and rep["esp_decrypted"] == rep["esp"] == rep["esp_icv_good"], rep
    return rep


def esp_sources(pcap: Path) -> set[str]:
    """Outer source addresses (IPv4 and IPv6) of the ESP packets in a capture."""
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "esp", "-T", "fields", "-e", "ip.src", "-e", "ipv6.src"],
                         capture_output=True, text=True, timeout=60).stdout
    return set(out.split())


def ike_fields(lab: DaemonSwanLab, display_filter: str, fields: list[str]) -> list[list[str]]:
    """Fields of the (decrypted) IKE messages in the stopped capture, one row per frame."""
    home = lab.tmp / "wireshark-home"
    tshark_daemon_report(lab.pcap, lab.keys, home)  # writes the key tables into home
    res = subprocess.run(["tshark", "-n", "-r", str(lab.pcap), "-Y", display_filter, "-T", "fields",
                          *[a for f in fields for a in ("-e", f)]],
                         capture_output=True, text=True, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
                         timeout=60)
    assert res.returncode == 0, res.stderr
    return [line.split("\t") for line in res.stdout.splitlines() if line.strip()]
