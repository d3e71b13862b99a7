"""Shared lab for the strongSwan interop tests (no tests here; imported by test_ike_*/test_esp_*).

Side ``a`` of an :class:`NsPair` runs OUR IKEv2 core (``python -m s2c.testing.ike_udp``, optionally
with a userspace ESP ``DataPlane``); side ``b`` runs charon 5.9.8 with kernel-libipsec. Every
connection forces UDP encapsulation (``encap = yes``: kernel-libipsec only does ESP-in-UDP 4500, and
charon fakes a NAT to get it). tcpdump records every datagram on ``veth-a`` for the tshark checks.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from s2c import pki
from s2c.lab.strongswan import Charon, render
from s2c.testing.ike_udp import IkeUdpProcess
from s2c.testing.netns import NsPair

A4, B4 = "198.51.100.1", "198.51.100.2"          # ours (a), strongSwan (b)
A4_ALT = "198.51.100.11"                          # our second address (MOBIKE)
A6, B6 = "2001:db8:100::1", "2001:db8:100::2"     # IPv6 outer addresses (outer6 labs)
NET6 = "2001:db8:1::/64"                           # network behind our PDN GW (holds HA)
B4_ALT = "198.51.100.12"                          # strongSwan's second address (MOBIKE)
GW_ID, UE_ID = "pdngw.s2c.test", "ue1.s2c.test"
PSK = "s2c-interop-psk-0123456789"
HA, HOA = "2001:db8:1::1", "2001:db8:2::10"       # Home Agent / Home Address (RFC 4877 MH selectors)
VIP4 = "198.18.0.10"                               # virtual IPv4 our PDN GW hands out
NET4, GW_INNER4, SWAN_INNER4 = "203.0.113.0/24", "203.0.113.1", "203.0.113.2"
POOL4, POOL6 = "198.18.1.0/24", "2001:db8:3::/120"  # strongSwan's pools when it is the responder

# name -> (IKE proposal, ESP proposal), strongSwan syntax (also parsed by s2c.testing.ike_udp)
PROPOSALS = {
    "gcm-x25519": ("aes128gcm16-prfsha256-x25519", "aes128gcm16"),
    "gcm-ecp256": ("aes128gcm16-prfsha256-ecp256", "aes128gcm16"),
    "cbc-modp2048": ("aes256-sha256-modp2048", "aes256-sha256"),
}
# ESP proposals with a DH group: PFS in CREATE_CHILD_SA (RFC 7296 §1.3.1); none is used in IKE_AUTH
PFS = {
    "gcm-pfs-x25519": ("aes128gcm16-prfsha256-x25519", "aes128gcm16-x25519"),
    "cbc-pfs-ecp256": ("aes256-sha256-ecp256", "aes256-sha256-ecp256"),
}
AUTHS = ("psk", "rsa", "ecdsa")
DATAPLANE = {"backend": "process", "workers": 2}    # as the daemons run it (tx and rx worker processes)

_seq = itertools.count()


def parse_vici_raw(text: str) -> dict:
    """Parse ``swanctl --raw`` output (``key=value``, ``key {...}``, ``key=[a b]``) into dicts/lists."""
    toks = re.findall(r"[^\s{}\[\]=]+=\[[^\]]*\]|[^\s{}]+=[^\s{}]*|[^\s{}]+|[{}]", text)
    root: dict = {}
    stack = [root]
    pending: str | None = None
    for t in toks:
        if t == "{":
            key = pending or "_"
            if key in stack[-1]:          # repeated name (e.g. several list-sa events)
                key = f"{key}#{len(stack[-1])}"
            d: dict = {}
            stack[-1][key] = d
            stack.append(d)
            pending = None
        elif t == "}":
            if len(stack) > 1:
                stack.pop()
        elif "=" in t:
            k, _, v = t.partition("=")
            stack[-1][k] = v[1:-1].split() if v.startswith("[") else v
        else:
            pending = t
    return root


def pki_for(tmp: Path, kind: str) -> pki.PkiPaths:
    """CA + ``pdngw`` (GW_ID) + ``ue1`` (UE_ID) certificates of our PKI, RSA or ECDSA."""
    paths = pki.ensure_pki(tmp / f"pki-{kind}", fqdn=GW_ID, key_type=kind)
    if not paths.cert("ue1").exists():
        pki.issue(paths, "ue1", UE_ID, key_type=kind)
    return paths


class SwanLab:
    """Two namespaces, charon on side b, our driver(s) on side a, tcpdump on veth-a. Always torn down."""

    def __init__(self, tmp: Path, auth: str = "psk", log_level: int = 1, extra_conf: str = "",
                 capture: bool = True, outer6: bool = False) -> None:
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.auth = auth
        self.log_level = log_level
        self.extra_conf = extra_conf
        self.capture = capture
        self.outer6 = outer6
        self.a, self.b = (A6, B6) if outer6 else (A4, B4)   # our / charon's IKE address
        self.prefix = f"s2ct-io-{os.getpid() % 1000}{next(_seq)}"
        self.pair: NsPair | None = None
        self.charon: Charon | None = None
        self.drivers: list[IkeUdpProcess] = []
        self.pcap = self.tmp / "capture.pcap"
        self._tcpdump: subprocess.Popen | None = None
        self.pki = pki_for(self.tmp, auth) if auth in ("rsa", "ecdsa") else None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "SwanLab":
        try:
            self.pair = NsPair(self.prefix, [f"{A4}/24", f"{A6}/64"], [f"{B4}/24", f"{B6}/64"],
                               lo_b=[f"{SWAN_INNER4}/32"]).__enter__()
            for side in ("a", "b"):
                self.pair.run(side, ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"], check=False)
                # deleting the first address of a subnet must not take the second one along (MOBIKE moves)
                self.pair.run(side, ["sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1",
                                     f"net.ipv4.conf.veth-{side}.promote_secondaries=1"], check=False)
            if self.capture:
                self._start_capture()
            self.charon = Charon(self.pair.name("b"), self.tmp / "charon", self.extra_conf, self.log_level)
            self.charon._write_conf()
            if self.pki is not None:
                for name in ("pdngw", "ue1"):
                    shutil.copy(self.pki.cert(name), self.charon.workdir / "x509" / f"{name}.crt")
                    shutil.copy(self.pki.key(name), self.charon.workdir / "private" / f"{name}.key")
                shutil.copy(self.pki.ca_cert, self.charon.workdir / "x509ca" / "ca.crt")
            self.charon.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for d in self.drivers:
            try:
                d.close()
            except Exception:  # noqa: BLE001 - teardown must go on
                pass
        self.drivers.clear()
        if self.charon is not None:
            self.charon.stop()
        self.stop_capture()
        if self.pair is not None:
            self.pair.close()

    # ------------------------------------------------------------------ capture
    def _start_capture(self) -> None:
        assert self.pair is not None
        err = open(self.tmp / "tcpdump.err", "w")
        self._tcpdump = self.pair.popen("a", ["tcpdump", "-n", "-U", "--immediate-mode", "-s", "0", "-i", "veth-a", "-w", str(self.pcap)],
                                        stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if "listening on" in (self.tmp / "tcpdump.err").read_text():
                return
            time.sleep(0.05)

    def stop_capture(self) -> None:
        if self._tcpdump is not None:
            time.sleep(0.3)
            self._tcpdump.send_signal(signal.SIGTERM)
            try:
                self._tcpdump.wait(5)
            except subprocess.TimeoutExpired:
                self._tcpdump.kill()
                self._tcpdump.wait(5)
            self._tcpdump = None

    # ------------------------------------------------------------------ peers
    def driver(self, spec: dict) -> IkeUdpProcess:
        assert self.pair is not None
        d = IkeUdpProcess(self.pair.name("a"), spec, str(self.tmp / f"driver{len(self.drivers)}.err"))
        self.drivers.append(d)
        return d

    def swan_sas(self) -> dict:
        """charon's IKE SAs by connection name (``swanctl --list-sas --raw``)."""
        assert self.charon is not None
        raw = parse_vici_raw(self.charon._swanctl("--list-sas", "--raw").stdout)
        out = {}
        for k, v in raw.items():
            if k.startswith("event") and isinstance(v, dict):
                for name, sa in v.items():
                    if isinstance(sa, dict):
                        out[name] = sa
        return out

    def ping(self, side: str, src: str, dst: str, count: int = 3) -> subprocess.CompletedProcess:
        assert self.pair is not None
        return self.pair.run(side, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", "-I", src, dst], check=False)

    def charon_log(self) -> str:
        assert self.charon is not None
        return self.charon.log_path.read_text(errors="replace")

    # ------------------------------------------------------------------ credentials
    def our_auth(self, our_name: str) -> dict:
        if self.pki is None:
            return {"psk": PSK}
        return {"cert": str(self.pki.cert(our_name)), "key": str(self.pki.key(our_name))}

    def swan_auth(self, swan_name: str, swan_id: str, peer_id: str) -> tuple[dict, dict, dict | None]:
        """(local, remote, secrets) swanctl sections for charon's side."""
        if self.pki is None:
            return ({"auth": "psk", "id": swan_id}, {"auth": "psk", "id": peer_id},
                    {"ike-1": {"id-1": swan_id, "id-2": peer_id, "secret": PSK}})
        return ({"auth": "pubkey", "certs": f"{swan_name}.crt", "id": swan_id}, {"auth": "pubkey", "id": peer_id}, None)

    @property
    def ca(self) -> str | None:
        return str(self.pki.ca_cert) if self.pki is not None else None


# ---------------------------------------------------------------------- swanctl / driver specs

def swan_ue_conf(lab: SwanLab, proposal: str, esp: str, children: dict, vips: str = "0.0.0.0,::",
                 mobike: bool = True, extra: dict | None = None) -> str:
    """charon as the UE (initiator) towards our PDN GW at A4, asking for virtual IPs."""
    local, remote, secrets = lab.swan_auth("ue1", UE_ID, GW_ID)
    for ch in children.values():
        ch.setdefault("esp_proposals", esp)
    conn = {"local_addrs": lab.b, "remote_addrs": lab.a, "version": 2, "encap": True, "mobike": mobike,
            "proposals": proposal, "vips": vips, "local": local, "remote": remote, "children": children,
            **(extra or {})}
    conf: dict = {"connections": {"ue": conn}}
    if secrets:
        conf["secrets"] = secrets
    return render(conf)


def swan_gw_conf(lab: SwanLab, proposal: str, esp: str, children: dict, mobike: bool = True,
                 extra: dict | None = None) -> str:
    """charon as the PDN GW (responder) with address pools for CP."""
    local, remote, secrets = lab.swan_auth("pdngw", GW_ID, UE_ID)
    for ch in children.values():
        ch.setdefault("esp_proposals", esp)
    conn = {"local_addrs": lab.b, "remote_addrs": "%any", "version": 2, "encap": True, "mobike": mobike,
            "proposals": proposal, "pools": "pool4,pool6", "local": local, "remote": remote,
            "children": children, **(extra or {})}
    conf: dict = {"connections": {"gw": conn}, "pools": {"pool4": {"addrs": POOL4}, "pool6": {"addrs": POOL6}}}
    if secrets:
        conf["secrets"] = secrets
    return render(conf)


def our_gw_spec(lab: SwanLab, proposal: str, esp: str, dataplane: bool = True, **kw) -> dict:
    """Our IkeResponder (PDN GW): IKE_AUTH child policy = transport MH HA<->HoA (RFC 4877 §4.2),
    extra policy = tunnel NET4 <-> assigned IPv4; CP hands out VIP4 / HOA / HA."""
    spec = {"role": "responder", "local": lab.a, "local_id": GW_ID, "auth": lab.our_auth("pdngw"), "ca": lab.ca,
            "proposals": [proposal], "esp_proposals": [esp],
            "children": [{"mode": "transport", "local_ts": ["dynamic6[135]"], "remote_ts": ["dynamic6[135]"]},
                         {"mode": "tunnel", "local_ts": [NET4], "remote_ts": ["dynamic4"]}],
            "assign": {"ipv4": VIP4, "home_address": HOA, "ha_address": HA}}
    if dataplane:
        spec["dataplane"] = {"tun": "esp0", "addresses": [f"{GW_INNER4}/32", f"{HA}/128"], **DATAPLANE}
    spec.update(kw)
    if spec.get("ca") is None:
        spec.pop("ca")
    return spec


def our_ue_spec(lab: SwanLab, proposal: str, esp: str, dataplane: bool = True, **kw) -> dict:
    """Our IkeInitiator (UE) towards charon at B4: tunnel child (assigned IPv4) <-> NET4, CP request."""
    spec = {"role": "initiator", "local": lab.a, "remote": lab.b, "local_id": UE_ID, "remote_id": GW_ID,
            "auth": lab.our_auth("ue1"), "ca": lab.ca, "proposals": [proposal], "esp_proposals": [esp],
            "children": [{"mode": "tunnel", "local_ts": ["dynamic4"], "remote_ts": [NET4]}],
            "cp_request": ["INTERNAL_IP4_ADDRESS", "INTERNAL_IP6_ADDRESS"]}
    if dataplane:
        spec["dataplane"] = {"tun": "esp0", **DATAPLANE}
    spec.update(kw)
    if spec.get("ca") is None:
        spec.pop("ca")
    return spec


def child_spis(swan_sa: dict) -> dict[str, tuple[int, int]]:
    """charon's CHILD SAs of one IKE SA: name -> (spi_in, spi_out) as ints."""
    out = {}
    for v in (swan_sa.get("child-sas") or {}).values():
        if isinstance(v, dict):
            out[v["name"]] = (int(v["spi-in"], 16), int(v["spi-out"], 16))
    return out


# ---------------------------------------------------------------------- tshark (e)

TSHARK_BAD = ("_ws.malformed || isakmp.ikev2.integrity_checksum || isakmp.enc.iv.not_enough_data"
              " || isakmp.enc.pad_length.big || isakmp.enc_data_length_mult_block_size || esp.icv_bad == 1")


def tshark_report(pcap: Path, keys: dict, home: Path) -> dict:
    """Dissect ``pcap`` with tshark 4.0 using our exported keys (``keys`` = the driver's ``keys`` reply:
    ``ike`` = ikev2_decryption_table lines, ``esp`` = esp_sa UAT records). Counts frames per class."""
    import json

    conf = home / ".config" / "wireshark"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "ikev2_decryption_table").write_text("".join(line + "\n" for line in keys.get("ike", [])))
    (conf / "esp_sa").write_text("".join(",".join(json.dumps(f) for f in rec) + "\n" for rec in keys.get("esp", [])))
    names = {"isakmp": "isakmp", "ike_sk": "isakmp.enc.data", "ike_decrypted": "isakmp.enc.decrypted",
             "esp": "esp", "esp_decrypted": "esp.contained_data", "esp_icmp": "esp && icmp",
             "esp_icv_good": "esp.icv_good == 1", "bad": TSHARK_BAD}
    return tshark_counts(pcap, home, names)


def tshark_counts(pcap: Path, home: Path, names: dict[str, str]) -> dict:
    """Frames of ``pcap`` matching each display filter of ``names`` (name -> filter), with ESP decryption
    and ICV checks on and Wireshark's key tables from ``home``/.config/wireshark: one tshark pass
    (io,stat with one column per filter over the whole capture, interval 0)."""
    import subprocess

    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    opts = ["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"]
    res = subprocess.run(["tshark", "-n", "-r", str(pcap), *opts, "-q", "-z", "io,stat,0," + ",".join(names.values())],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    row = [line for line in res.stdout.splitlines() if "<>" in line]
    if not row:
        return dict.fromkeys(names, 0)
    cells = [c.strip() for c in row[-1].split("|")[2:-1]]
    frames = [int(cells[i]) for i in range(0, len(cells), 2)]
    return dict(zip(names, frames))


def assert_capture_clean(lab: SwanLab, keys: dict, min_esp: int = 0) -> dict:
    """Stop the capture; tshark must dissect it without malformed packets, decrypt every IKE SK
    payload and every ESP packet with our exported keys, and find every ESP ICV correct."""
    lab.stop_capture()
    rep = tshark_report(lab.pcap, keys, lab.tmp / "wireshark-home")
    assert rep["bad"] == 0, rep
    assert rep["ike_sk"] >= 2 and rep["ike_decrypted"] == rep["ike_sk"], rep
    assert rep["esp"] >= min_esp and rep["esp_decrypted"] == rep["esp"] == rep["esp_icv_good"], rep
    return rep
