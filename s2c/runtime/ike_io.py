"""IO glue shared by the ``pdngw`` and ``ue`` daemons around the sans-IO IKEv2 core (docs/ike.md).

Nothing protocol-specific lives here: where the run directory and the PKI are, the Wireshark key
files of a run, UDP port 500 sockets, and JSON views of IKE/CHILD SAs for the ``sas`` command.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from s2c.codec.ikev2 import NON_ESP_MARKER
from s2c.esp.sa import Direction, EspSa
from s2c.esp.wireshark import esp_sa_record, _quote

log = logging.getLogger("s2c.ike_io")

IKE_PORT = 500
NATT_PORT = 4500

Addr = tuple[str, int]


# -- where things are ---------------------------------------------------------------------------

def config_path_from_argv(argv: list[str] | None = None) -> Path | None:
    """The ``--config FILE`` the daemon was started with (``s2c.runtime.node.main`` parses it)."""
    argv = sys.argv if argv is None else argv
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith("--config="):
            return Path(a.split("=", 1)[1])
    return None


def run_dir_of(config: Any) -> Path | None:
    """``params.run_dir`` if the lab gave it, else ``runs/<id>`` from ``runs/<id>/config/<node>.json``."""
    params = config.params or {}
    if params.get("run_dir"):
        return Path(params["run_dir"])
    cfg = config_path_from_argv()
    if cfg is not None and cfg.resolve().parent.name == "config":
        return cfg.resolve().parent.parent
    return None


def pki_dir_of(config: Any) -> Path:
    """``params.pki``, else ``<run dir>/pki``, else ``pki`` beside the control socket.

    The pdngw creates the CA and its certificate there; the UE reads ``ca.crt`` from the same place,
    so both must resolve it alike (same run dir or same socket dir)."""
    params = config.params or {}
    if params.get("pki"):
        return Path(params["pki"])
    rd = run_dir_of(config)
    if rd is not None:
        return rd / "pki"
    return Path(config.control).resolve().parent / "pki"


def drain_core(core: Any, now: Callable[[], float], send: Callable[[bytes, Any], None],
               on_event: Callable[[Any], None], counters: Any, log: logging.Logger, rounds: int = 100) -> None:
    """Move a sans-IO IKE core's datagrams to ``send`` and its events to ``on_event`` until it is quiet
    (bounded by ``rounds``); an event handler that raises is counted and logged, never fatal."""
    for _ in range(rounds):
        out = core.datagrams_to_send(now())
        for data, addr in out:
            send(data, addr)
            counters["ike_tx"] += 1
        got = False
        while (e := core.next_event()) is not None:
            got = True
            try:
                on_event(e)
            except Exception:  # noqa: BLE001 - a bad event never kills the daemon
                counters["event_errors"] += 1
                log.exception("handling %s", type(e).__name__)
        if not got and not out:
            break


class CoreTimer:
    """One asyncio timer kept at a sans-IO core's ``get_timer()`` deadline (loop.time() clock)."""

    def __init__(self, on_fire: Callable[[], None]):
        self._on_fire = on_fire
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self, deadline: float | None) -> None:
        """Fire at ``deadline`` (None: not at all); re-arms only when the deadline changed."""
        if deadline == self._at and (deadline is None or self._handle is not None):
            return
        self.cancel()
        self._at = deadline
        if deadline is not None:
            self._handle = asyncio.get_running_loop().call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = None

    def _fire(self) -> None:
        self._handle = None
        self._at = None
        self._on_fire()


# -- Wireshark key files ------------------------------------------------------------------------

class KeyLog:
    """Appends Wireshark UAT records for every SA to ``<dir>/esp_sa`` and ``<dir>/ikev2_decryption_table``.

    ESP records use wildcard addresses ("*"): behind the NAT44 the outer addresses differ per link,
    the SPI alone identifies the SA in a run's pcaps. The files are Wireshark's UAT format: copy them
    to ``~/.config/wireshark/`` or pass each line as ``-o uat:esp_sa:<line>`` to tshark."""

    def __init__(self, directory: Path | None, prefix: str = "") -> None:
        self.dir = directory
        self.prefix = prefix
        self._seen: set[str] = set()

    def _append(self, name: str, line: str) -> None:
        self._append_lines(name, (line,))

    def _append_lines(self, name: str, lines: Iterable[str]) -> None:
        """Append the lines not written before, with one open of the file."""
        if self.dir is None:
            return
        new = [ln for ln in dict.fromkeys(lines) if ln not in self._seen]
        if not new:
            return
        self._seen.update(new)
        path = self.dir / f"{self.prefix}{name}"
        try:
            try:
                fh = open(path, "a", encoding="utf-8")
            except FileNotFoundError:  # the folder is made on the first write (and again if removed)
                self.dir.mkdir(parents=True, exist_ok=True)
                fh = open(path, "a", encoding="utf-8")
            with fh:
                fh.write("".join(ln + "\n" for ln in new))
        except OSError as exc:  # keys are a convenience: never fail the daemon for them
            log.warning("cannot write %s: %s", name, exc)

    def ike(self, wireshark_line: str) -> None:
        self._append("ikev2_decryption_table", wireshark_line)

    def esp(self, *sas: EspSa) -> None:
        # Wireshark 4.0 knows no "Any" protocol in esp_sa: one record per family (MOBIKE may move
        # the SA from IPv4 to IPv6); several SAs (a CHILD SA's pair) are written with one open
        lines = []
        for sa in sas:
            rec = esp_sa_record(sa, "*", "*")
            lines += [_quote([proto, *rec[1:]]) for proto in ("IPv4", "IPv6")]
        self._append_lines("esp_sa", lines)


# -- UDP port 500 -------------------------------------------------------------------------------

class _Proto(asyncio.DatagramProtocol):
    def __init__(self, cb: Callable[[bytes, Addr, Addr], None], local: Addr) -> None:
        self.cb = cb
        self.local = local

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.cb(data, (addr[0], addr[1]), self.local)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: the peer is unreachable for now
        log.debug("udp error: %s", exc)


class UdpIke:
    """IKE sockets on port 500 (one per bound address) plus the data plane's port 4500 sockets.

    ``send(data, addr)``: a datagram starting with the non-ESP marker leaves from port 4500 (via the
    data plane, which adds the marker itself), any other from port 500 of the address family."""

    def __init__(self, on_datagram: Callable[[bytes, Addr, Addr], None]) -> None:
        self.on_datagram = on_datagram
        self.transports: dict[Addr, asyncio.DatagramTransport] = {}
        self.dataplane: Any = None
        self.sent = 0
        self.send_errors = 0

    async def bind(self, addresses: list[str], port: int = IKE_PORT) -> None:
        loop = asyncio.get_running_loop()
        for a in addresses:
            fam = socket.AF_INET6 if ":" in a else socket.AF_INET
            sock = socket.socket(fam, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if a in ("0.0.0.0", "::"):
                pass
            else:
                try:
                    sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: bind before DAD/at move time
                except OSError:
                    pass
            sock.bind((a, port))
            bypass = getattr(self.dataplane, "bypass_socket", None)
            if bypass is not None:  # kernel ESP: IKE itself must never be caught by an IPsec policy
                bypass(sock)
            sock.setblocking(False)
            local = (a, sock.getsockname()[1])
            tr, _ = await loop.create_datagram_endpoint(lambda local=local: _Proto(self.on_datagram, local), sock=sock)
            self.transports[local] = tr  # type: ignore[assignment]

    def port_of(self, family: int) -> int:
        for (a, p) in self.transports:
            if (":" in a) == (family == 6):
                return p
        return IKE_PORT

    def send(self, data: bytes, addr: Addr, local_ip: str | None = None) -> None:
        try:
            if data[:4] == NON_ESP_MARKER:
                if self.dataplane is None:
                    raise OSError("no port 4500 socket")
                self.dataplane.send_ike(data[4:], addr)
            else:
                v6 = ":" in addr[0]
                cands = [(k, t) for k, t in self.transports.items() if (":" in k[0]) == v6]
                if local_ip is not None:
                    cands.sort(key=lambda kt: kt[0][0] != local_ip)
                if not cands:
                    raise OSError(f"no IPv{6 if v6 else 4} IKE socket")
                cands[0][1].sendto(data, addr)
            self.sent += 1
        except OSError as exc:
            self.send_errors += 1
            log.debug("IKE send to %s failed: %s", addr, exc)

    def close(self) -> None:
        for t in self.transports.values():
            t.close()
        self.transports.clear()


# -- credentials and identities (params of both daemons) ----------------------------------------

def identity_from(text: str, default_kind: str = "fqdn") -> Any:
    """An IKE identity from a params string: an IP address, ``user@realm`` (RFC 822), else an FQDN;
    ``fqdn:``/``rfc822:``/``ip:``/``keyid:`` prefixes force the type."""
    from s2c.ike import Identity

    kind, sep, rest = text.partition(":")
    if sep and kind in ("fqdn", "rfc822", "ip", "keyid") and not _is_ip(text):
        text, default_kind = rest, kind
        if kind == "ip":
            return Identity.ip(text)
        if kind == "keyid":
            return Identity.key_id(text.encode())
        return Identity.fqdn(text) if kind == "fqdn" else Identity.rfc822(text)
    if _is_ip(text):
        return Identity.ip(text)
    if "@" in text and default_kind != "fqdn-only":
        return Identity.rfc822(text)
    return Identity.fqdn(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def psk_bytes(value: Any) -> bytes:
    """A PSK from params: ``0x<hex>`` or plain text (UTF-8)."""
    text = str(value)
    if text.startswith("0x"):
        return bytes.fromhex(text[2:])
    return text.encode()


def load_cert_auth(cert_path: str | Path, key_path: str | Path) -> Any:
    """CertAuth from PEM files (RSA: AUTH method 14 with RFC 7427; ECDSA likewise)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from s2c.ike import CertAuth

    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return CertAuth(key, cert)


# -- views --------------------------------------------------------------------------------------

def _name(v: Any) -> Any:
    return getattr(v, "name", v)


def suite_view(suite: Any) -> dict[str, Any]:
    if suite is None:
        return {}
    out = {"encr": _name(suite.encr), "key_bits": suite.key_bits, "integ": _name(suite.integ)}
    if hasattr(suite, "prf"):
        out["prf"] = _name(suite.prf)
    if getattr(suite, "dh", None):
        out["dh"] = _name(suite.dh)
    if hasattr(suite, "esn"):
        out["esn"] = _name(suite.esn)
    return out


def ts_view(ts: Any) -> list[str]:
    return [str(t) for t in ts]


def child_view(ch: Any, stats: dict[Any, Any] | None = None) -> dict[str, Any]:
    stats = stats or {}
    out = {
        "spi_in": f"{ch.spi_in:08x}", "spi_out": f"{ch.spi_out:08x}", "mode": getattr(ch.mode, "value", ch.mode),
        "protocol": "esp", "suite": suite_view(ch.suite), "ts_local": ts_view(ch.ts_local),
        "ts_remote": ts_view(ch.ts_remote),
    }
    sin, sout = stats.get(ch.spi_in) or {}, stats.get(ch.spi_out) or {}
    out["counters"] = {
        "packets_in": sin.get("packets_in", 0), "bytes_in": sin.get("bytes_in", 0),
        "packets_out": sout.get("packets_out", 0), "bytes_out": sout.get("bytes_out", 0),
        "replay_drops": sin.get("replay_drops", 0), "auth_failures": sin.get("auth_failures", 0),
    }
    if sout:
        out["peer"] = f"{sout.get('remote')}:{sout.get('remote_port')}"
    return out


def ike_view(sa: Any) -> dict[str, Any]:
    asg = getattr(sa, "assignment", None)
    return {
        "sa_id": sa.sa_id, "spi_i": sa.spi_i.hex(), "spi_r": sa.spi_r.hex(), "state": sa.state.value,
        "local": f"{sa.local_addr[0]}:{sa.local_addr[1]}", "remote": f"{sa.remote_addr[0]}:{sa.remote_addr[1]}",
        "nat_detected": sa.nat_detected, "udp_encap": sa.natt, "mobike": sa.mobike,
        "peer_id": str(sa.peer_id) if sa.peer_id is not None else None, "suite": suite_view(sa.suite),
        "hoa": str(asg.home_address) if asg is not None and asg.home_address else None,
        "hoa4": str(asg.ipv4) if asg is not None and asg.ipv4 else None,
        "home_prefix": str(asg.home_prefix) if asg is not None and asg.home_prefix else None,
        "ha": str(asg.ha_address) if asg is not None and asg.ha_address else None,
        "retransmissions": sa.retransmissions,
    }


def esp_pair(event: Any) -> tuple[EspSa, EspSa]:
    """Both directions of a ChildSaEstablished as EspSa (only for key export)."""
    return (EspSa.from_child_sa(event, Direction.OUT, rng=os.urandom),
            EspSa.from_child_sa(event, Direction.IN, rng=os.urandom))


def family(addr: str) -> int:
    return ipaddress.ip_address(addr.split("%")[0]).version
