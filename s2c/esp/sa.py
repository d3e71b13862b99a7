"""One ESP security association: RFC 4303 processing with AES-GCM (RFC 4106) or AES-CBC (RFC 3602) +
HMAC-SHA-256-128 (RFC 4868). Sans-IO: no sockets, no clock; randomness (CBC IVs) comes from an
injected ``rng``. The IP/UDP headers around the ESP packet belong to the caller (the data plane).

Hot path notes: one AESGCM object per SA, ``struct`` packing into bytes, no per-packet objects beyond
the output buffer. ``cryptography`` does not release the GIL, so scale-out is by process.
"""

from __future__ import annotations

import enum
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.exceptions import InvalidTag

from s2c.codec.esp import (
    ESP_HEADER_LEN,
    IntegrityFailure,
    IpProto,
    MalformedEsp,
    ReplayedPacket,
    SequenceOverflow,
    UnknownSpi,
    strip_trailer,
    trailer,
)
from s2c.esp.replay import ReplayWindow

Rng = Callable[[int], bytes]

_HDR = struct.Struct("!II")
_HDR_IV = struct.Struct("!IIQ")  # SPI | seq (low 32) | 64-bit counter IV (RFC 4106 §3.1)
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_M32 = 0xFFFFFFFF


# trailer for (payload length mod 4, next header): padding to 4 bytes (RFC 4303 §2.4); one table for
# every GCM SA (building it per SA cost ~1 ms per CHILD SA install)
_GCM_TRAILERS: tuple[bytes, ...] = tuple(trailer(r, nh, 4) for r in range(4) for nh in range(256))


class EncrAlg(enum.IntEnum):
    """IKEv2 Transform Type 1 (Encryption Algorithm) IDs, IANA registry (RFC 7296 §3.3.2)."""

    ENCR_NULL = 11
    ENCR_AES_CBC = 12
    ENCR_AES_GCM_16 = 20


class IntegAlg(enum.IntEnum):
    """IKEv2 Transform Type 3 (Integrity Algorithm) IDs, IANA registry (RFC 7296 §3.3.2)."""

    NONE = 0
    AUTH_HMAC_SHA2_256_128 = 12


class Mode(enum.Enum):
    """IPsec mode (RFC 4301 §4.1)."""

    TRANSPORT = "transport"
    TUNNEL = "tunnel"


class Direction(enum.Enum):
    """Whether this SA protects outgoing (encapsulate) or incoming (decapsulate) traffic."""

    OUT = "out"
    IN = "in"


@dataclass
class SaCounters:
    """Per-SA counters (RFC 4301 §4.4.2.1 'statistics'; names as reported by ``stats()``)."""

    packets_out: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    bytes_in: int = 0
    replay_drops: int = 0
    auth_failures: int = 0
    malformed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


GCM_ICV_LEN = 16
GCM_IV_LEN = 8
CBC_IV_LEN = 16
HMAC_SHA256_128_LEN = 16
AES_BLOCK = 16


@dataclass
class EspSa:
    """One ESP SA (RFC 4303; GCM per RFC 4106 §3-5, CBC per RFC 3602, HMAC per RFC 4868).

    ``encr_key`` for GCM is the AES key followed by the 4-byte salt (the KEYMAT layout of RFC 4106 §8.1).
    ``local``/``remote`` are the outer (tunnel) endpoint addresses; ``remote_port`` is the peer's UDP
    source port when ``udp_encap`` (RFC 3948), updated by the data plane when it changes (NAT rebinding).
    """

    spi: int
    direction: Direction
    mode: Mode
    encr: EncrAlg
    encr_key: bytes
    integ: IntegAlg = IntegAlg.NONE
    integ_key: bytes = b""
    local: str = ""
    remote: str = ""
    udp_encap: bool = False
    local_port: int = 4500
    remote_port: int = 4500
    replay_window: int = 64
    esn: bool = False
    rng: Rng | None = None
    rekey_margin: int = 1 << 16
    seq: int = 0  # last sequence number sent (outbound)
    rekey_needed: bool = False
    counters: SaCounters = field(default_factory=SaCounters)

    def __post_init__(self) -> None:
        self.direction = Direction(self.direction)
        self.mode = Mode(self.mode)
        self.encr = EncrAlg(self.encr)
        self.integ = IntegAlg(self.integ)
        if not 0 < self.spi <= _M32 or self.spi < 256:
            raise ValueError("SPI must be in 256..2^32-1 (RFC 4303 §2.1)")
        self._window = ReplayWindow(self.replay_window) if self.replay_window else None
        self._seq_limit = (1 << 64) - 1 if self.esn else _M32
        if self.encr is EncrAlg.ENCR_AES_GCM_16:
            if len(self.encr_key) not in (20, 36):
                raise ValueError("AES-GCM key must be 16 or 32 bytes plus a 4-byte salt (RFC 4106 §8.1)")
            if self.integ is not IntegAlg.NONE:
                raise ValueError("AES-GCM is combined mode: no integrity transform (RFC 4106 §8)")
            self._aead = AESGCM(self.encr_key[:-4])
            self._salt = self.encr_key[-4:]
            self._gcm_trailers = _GCM_TRAILERS
            self._iv_len = GCM_IV_LEN
            self._icv_len = GCM_ICV_LEN
            self._align = 4
        elif self.encr is EncrAlg.ENCR_AES_CBC:
            if len(self.encr_key) not in (16, 24, 32):
                raise ValueError("AES-CBC key must be 16, 24 or 32 bytes")
            if self.integ is not IntegAlg.AUTH_HMAC_SHA2_256_128 or len(self.integ_key) != 32:
                raise ValueError("AES-CBC needs HMAC-SHA-256-128 with a 32-byte key (RFC 4868)")
            if self.direction is Direction.OUT and self.rng is None:
                raise ValueError("AES-CBC outbound SA needs an rng for its random IVs (RFC 3602 §3)")
            # Long-lived CBC contexts (never finalized; every input is whole blocks). Encrypt: feeding a
            # fresh random block R first yields C0 = E(R ^ chain), an unpredictable IV (RFC 3602 §2.4), and
            # the packet continues the chain from C0 - plain CBC with IV C0. Decrypt: feeding the IV first
            # resets the chain to it; the first output block is discarded.
            aes = algorithms.AES(self.encr_key)
            self._cbc_enc = Cipher(aes, modes.CBC(bytes(16))).encryptor()
            self._cbc_dec = Cipher(aes, modes.CBC(bytes(16))).decryptor()
            self._iv_len = CBC_IV_LEN
            self._icv_len = HMAC_SHA256_128_LEN
            self._align = AES_BLOCK
        elif self.encr is EncrAlg.ENCR_NULL:
            if self.integ is not IntegAlg.AUTH_HMAC_SHA2_256_128 or len(self.integ_key) != 32:
                raise ValueError("ENCR_NULL needs HMAC-SHA-256-128 (RFC 4303 §3.2)")
            self._iv_len = 0
            self._icv_len = HMAC_SHA256_128_LEN
            self._align = 4
        self._overhead = ESP_HEADER_LEN + self._iv_len + self._icv_len

    # ------------------------------------------------------------------ properties
    @property
    def overhead(self) -> int:
        """Worst-case bytes ESP adds to a payload (header, IV, max alignment padding, trailer, ICV)."""
        return self._overhead + self._align - 1 + 2

    @property
    def window(self) -> ReplayWindow | None:
        return self._window

    # ------------------------------------------------------------------ outbound
    def encapsulate(self, payload: bytes | memoryview, next_header: int | None = None) -> bytes:
        """Protect ``payload`` and return the ESP packet (RFC 4303 §3.3).

        Tunnel mode: ``payload`` is the inner IP packet and ``next_header`` defaults to 4/41 by version.
        Transport mode: ``next_header`` is the upper-layer protocol (e.g. 135 for the Mobility Header).
        """
        if next_header is None:
            if self.mode is not Mode.TUNNEL or not payload:
                raise ValueError("next_header is required in transport mode")
            next_header = IpProto.IPV6 if payload[0] >> 4 == 6 else IpProto.IPV4
        seq = self.seq + 1
        if seq > self._seq_limit - self.rekey_margin:
            self.rekey_needed = True
            if seq > self._seq_limit:
                raise SequenceOverflow(f"SA 0x{self.spi:08x} exhausted its sequence numbers")
        self.seq = seq
        n = len(payload)
        c = self.counters
        if self.encr is EncrAlg.ENCR_AES_GCM_16:
            # the IV is the 64-bit sequence counter: unique per key (RFC 4106 §3.1)
            hdr_iv = _HDR_IV.pack(self.spi, seq & _M32, seq)
            aad = hdr_iv[:8] if not self.esn else _HDR.pack(self.spi, seq >> 32) + hdr_iv[4:8]
            if type(payload) is not bytes:
                payload = bytes(payload)
            ct = self._aead.encrypt(self._salt + hdr_iv[8:], payload + self._gcm_trailers[((n & 3) << 8) | next_header], aad)
            c.packets_out += 1
            c.bytes_out += n
            return hdr_iv + ct
        header = _HDR.pack(self.spi, seq & _M32)
        if self.encr is EncrAlg.ENCR_AES_CBC:
            r = self.rng(CBC_IV_LEN)  # type: ignore[misc]
            body = self._cbc_enc.update(b"".join((r, payload, trailer(n, next_header, AES_BLOCK))))
        else:
            body = b"".join((payload, trailer(n, next_header, 4)))
        signed = header + body
        mac_input = signed + _U32.pack(seq >> 32) if self.esn else signed
        out = signed + hmac.digest(self.integ_key, mac_input, "sha256")[:16]
        c.packets_out += 1
        c.bytes_out += n
        return out

    # ------------------------------------------------------------------ inbound
    def decapsulate(self, packet: bytes | memoryview) -> tuple[int, bytes]:
        """Verify and decrypt an ESP packet; return (next_header, payload) (RFC 4303 §3.4).

        Order: replay pre-check, ICV, then window update, so a forgery never moves the window.
        """
        c = self.counters
        n = len(packet)
        if n < self._overhead + 4 - (self._iv_len == 0) * 2:
            c.malformed += 1
            raise MalformedEsp(f"ESP packet of {n} bytes is too short for SA 0x{self.spi:08x}")
        spi, seq_lo = _HDR.unpack_from(packet)
        if spi != self.spi:
            raise UnknownSpi(f"packet SPI 0x{spi:08x} given to SA 0x{self.spi:08x}")
        window = self._window
        if self.esn:
            seq = window.infer_esn(seq_lo) if window else seq_lo
        else:
            seq = seq_lo
        if window is not None and not window.check(seq):
            c.replay_drops += 1
            raise ReplayedPacket(f"sequence number {seq} replayed or too old")
        mv = memoryview(packet)
        if self.encr is EncrAlg.ENCR_AES_GCM_16:
            body_len = n - ESP_HEADER_LEN - GCM_IV_LEN
            if body_len < GCM_ICV_LEN + 2 or (body_len - GCM_ICV_LEN) % 4:
                c.malformed += 1
                raise MalformedEsp("AES-GCM ciphertext not 4-byte aligned")
            aad = mv[:8] if not self.esn else bytes(mv[:4]) + _HDR.pack(seq >> 32, seq_lo)
            try:
                plain = self._aead.decrypt(self._salt + mv[8:16].tobytes(), mv[16:], aad)
            except InvalidTag:
                c.auth_failures += 1
                raise IntegrityFailure(f"AES-GCM tag mismatch on SA 0x{self.spi:08x}") from None
        else:
            signed = mv[: n - 16]
            mac_input = bytes(signed) + _U32.pack(seq >> 32) if self.esn else signed
            if not hmac.compare_digest(hmac.digest(self.integ_key, mac_input, "sha256")[:16], mv[n - 16 :]):
                c.auth_failures += 1
                raise IntegrityFailure(f"HMAC-SHA-256-128 mismatch on SA 0x{self.spi:08x}")
            if self.encr is EncrAlg.ENCR_AES_CBC:
                ct = mv[ESP_HEADER_LEN + CBC_IV_LEN : n - 16]
                if not len(ct) or len(ct) % AES_BLOCK:
                    c.malformed += 1
                    raise MalformedEsp("AES-CBC ciphertext is not a whole number of blocks")
                plain = self._cbc_dec.update(mv[ESP_HEADER_LEN : n - 16])[CBC_IV_LEN:]
            else:
                plain = mv[ESP_HEADER_LEN : n - 16]
        if window is not None:
            # re-check: the window may have moved while we verified (a true duplicate racing in)
            if not window.check(seq):
                c.replay_drops += 1
                raise ReplayedPacket(f"sequence number {seq} replayed")
            window.update(seq)
        try:
            next_header, payload = strip_trailer(plain)
        except MalformedEsp:
            c.malformed += 1
            raise
        c.packets_in += 1
        c.bytes_in += len(payload)
        return next_header, payload

    # ------------------------------------------------------------------ transfer / adapters
    def to_config(self) -> dict[str, Any]:
        """Plain, picklable description (keys included) to rebuild this SA in a worker process."""
        return {
            "spi": self.spi,
            "direction": self.direction.value,
            "mode": self.mode.value,
            "encr": int(self.encr),
            "encr_key": self.encr_key,
            "integ": int(self.integ),
            "integ_key": self.integ_key,
            "local": self.local,
            "remote": self.remote,
            "udp_encap": self.udp_encap,
            "local_port": self.local_port,
            "remote_port": self.remote_port,
            "replay_window": self.replay_window,
            "esn": self.esn,
            "seq": self.seq,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], rng: Rng | None = None) -> "EspSa":
        return cls(**cfg, rng=rng)

    @classmethod
    def from_child_sa(
        cls,
        event: Any,
        direction: Direction | str,
        rng: Rng | None = None,
        replay_window: int = 1024,
    ) -> "EspSa":
        """Build one direction of a CHILD_SA from ``s2c.ike.events.ChildSaEstablished`` (duck-typed).

        Uses ``spi_in``/``spi_out``, ``keys_in``/``keys_out`` (``EspKeys``: encr, encr_key, salt, integ,
        integ_key, icv_len), ``mode``, ``suite.esn``, ``nat_t``, ``local_addr``/``remote_addr`` ((ip, port)).
        "in" is what the peer sends to us (our SPI). For GCM the salt is appended to the key (RFC 4106 §8.1).
        """
        d = Direction(direction)
        inbound = d is Direction.IN
        keys = event.keys_in if inbound else event.keys_out
        encr = EncrAlg(int(keys.encr))
        key = bytes(keys.encr_key)
        if encr is EncrAlg.ENCR_AES_GCM_16:
            if getattr(keys, "icv_len", 16) != 16:
                raise ValueError("only the 16-octet ICV AES-GCM is supported")
            key += bytes(keys.salt)
        mode = getattr(event.mode, "value", event.mode)
        suite = getattr(event, "suite", None)
        esn = bool(int(getattr(suite, "esn", 0) or 0))
        local, remote = event.local_addr, event.remote_addr
        nat_t = bool(getattr(event, "nat_t", False))
        return cls(
            spi=int(event.spi_in if inbound else event.spi_out),
            direction=d,
            mode=Mode(str(mode).lower()),
            encr=encr,
            encr_key=key,
            integ=IntegAlg(int(keys.integ or 0)),
            integ_key=bytes(keys.integ_key or b""),
            local=str(local[0]),
            remote=str(remote[0]),
            udp_encap=nat_t,
            local_port=int(local[1]) if nat_t else 4500,
            remote_port=int(remote[1]) if nat_t else 4500,
            replay_window=replay_window if inbound else 0,
            esn=esn,
            rng=rng,
        )
