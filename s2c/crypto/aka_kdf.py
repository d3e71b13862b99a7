"""EAP-AKA and EAP-AKA' key derivation (RFC 4187 §7, RFC 5448/RFC 9048 §3.3-§3.4, TS 33.402 Annex A.2).

* EAP-AKA: MK = SHA1(Identity|IK|CK), then the FIPS 186-2 change-notice-1 PRF (G built on
  the raw SHA-1 compression function, RFC 4187 Appendix A) expands MK into
  K_encr(16) | K_aut(16) | MSK(64) | EMSK(64). AT_MAC is HMAC-SHA1-128.
* EAP-AKA': CK'|IK' = HMAC-SHA-256(CK|IK, FC=0x20 | P0=network name | L0 | P1=SQN xor AK | L1),
  MK = PRF'(IK'|CK', "EAP-AKA'"|Identity) with PRF' the HMAC-SHA-256 iteration, split into
  K_encr(16) | K_aut(32) | K_re(32) | MSK(64) | EMSK(64). AT_MAC is HMAC-SHA-256-128.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "AkaKeys",
    "aka_master_key",
    "ck_ik_prime",
    "derive_aka_keys",
    "derive_aka_prime_keys",
    "fips186_2_prf",
    "mac_aka",
    "mac_aka_prime",
    "prf_prime",
    "sha1_compress",
]

_M32 = 0xFFFFFFFF
_SHA1_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


def sha1_compress(state: tuple[int, int, int, int, int], block: bytes) -> tuple[int, int, int, int, int]:
    """One SHA-1 compression of a 64-byte block into a 5-word state (FIPS 180-4 §6.1.2, no padding)."""
    if len(block) != 64:
        raise ValueError("SHA-1 block must be 64 bytes")
    w = list(struct.unpack(">16I", block))
    for t in range(16, 80):
        w.append(_rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1))
    a, b, c, d, e = state
    for t in range(80):
        if t < 20:
            f, k = (b & c) | (~b & d), 0x5A827999
        elif t < 40:
            f, k = b ^ c ^ d, 0x6ED9EBA1
        elif t < 60:
            f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
        else:
            f, k = b ^ c ^ d, 0xCA62C1D6
        a, b, c, d, e = (_rotl(a, 5) + (f & _M32) + e + k + w[t]) & _M32, a, _rotl(b, 30), c, d
    s = state
    return ((s[0] + a) & _M32, (s[1] + b) & _M32, (s[2] + c) & _M32, (s[3] + d) & _M32, (s[4] + e) & _M32)


def _load_native_compress() -> Callable[[tuple[int, int, int, int, int], bytes], tuple[int, ...]] | None:
    """OpenSSL's ``SHA1_Transform`` (libcrypto, through ctypes) as a drop-in for :func:`sha1_compress`.

    The pure-Python compression costs ~60 us per block warm (8 blocks per EAP-AKA key derivation,
    on both the USIM and the AAA side of every attach, and several times that on a cold CPU); OpenSSL's
    costs ~1 us. Used only if the library loads and agrees with :func:`sha1_compress` on a test block,
    else None (then the pure-Python one is used)."""
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("crypto")
        if not name:
            return None
        lib = ctypes.CDLL(name)
        transform = lib.SHA1_Transform
    except (OSError, AttributeError, ImportError):
        return None
    transform.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
    transform.restype = None
    ctx_type = ctypes.c_uint32 * 24  # SHA_CTX: h0..h4, Nl, Nh, data[16], num (OpenSSL 1.1 / 3.x)

    def native(state: tuple[int, int, int, int, int], block: bytes) -> tuple[int, ...]:
        if len(block) != 64:
            raise ValueError("SHA-1 block must be 64 bytes")
        ctx = ctx_type(*state)
        transform(ctx, block)
        return tuple(ctx[0:5])

    probe_state = (0x01234567, 0x89ABCDEF, 0xFEDCBA98, 0x76543210, 0xF0E1D2C3)
    probe = bytes(range(64))
    try:
        if native(probe_state, probe) != sha1_compress(probe_state, probe):
            return None
    except (OSError, ValueError, TypeError):  # pragma: no cover - a broken library build
        return None
    return native


_native_compress = _load_native_compress()


def _g(xval: int) -> int:
    """G(t, c) of FIPS 186-2 Appendix 3.3: SHA-1 compression of c zero-padded to 512 bits, H = t."""
    compress = _native_compress or sha1_compress
    out = compress(_SHA1_IV, xval.to_bytes(20, "big") + bytes(44))
    return int.from_bytes(struct.pack(">5I", *out), "big")


def fips186_2_prf(xkey: bytes, length: int) -> bytes:
    """FIPS 186-2 change notice 1 PRF with XSEED = 0 (RFC 4187 Appendix A), ``length`` bytes."""
    if len(xkey) != 20:
        raise ValueError("XKEY must be 20 bytes")
    mod = 1 << 160
    x = int.from_bytes(xkey, "big")
    out = bytearray()
    while len(out) < length:
        for _ in range(2):
            w = _g(x)  # XVAL = XKEY + XSEED_j, XSEED_j = 0
            out += w.to_bytes(20, "big")
            x = (1 + x + w) % mod
    return bytes(out[:length])


@dataclass(frozen=True, slots=True)
class AkaKeys:
    """Keys derived from one full authentication (RFC 4187 §7 / RFC 5448 §3.3); ``k_re`` is AKA' only."""

    mk: bytes
    k_encr: bytes
    k_aut: bytes
    msk: bytes
    emsk: bytes
    k_re: bytes | None = None

    def __repr__(self) -> str:  # never print key material by accident
        return f"AkaKeys(k_aut={len(self.k_aut)}B, msk={len(self.msk)}B, prime={self.k_re is not None})"


def aka_master_key(identity: bytes, ik: bytes, ck: bytes) -> bytes:
    """MK = SHA1(Identity|IK|CK) (RFC 4187 §7)."""
    return hashlib.sha1(bytes(identity) + bytes(ik) + bytes(ck)).digest()


def derive_aka_keys(identity: bytes, ik: bytes, ck: bytes) -> AkaKeys:
    """EAP-AKA key hierarchy: K_encr, K_aut, MSK, EMSK from the PRF over MK (RFC 4187 §7)."""
    mk = aka_master_key(identity, ik, ck)
    x = fips186_2_prf(mk, 160)
    return AkaKeys(mk=mk, k_encr=x[0:16], k_aut=x[16:32], msk=x[32:96], emsk=x[96:160])


def ck_ik_prime(ck: bytes, ik: bytes, network_name: bytes, sqn_xor_ak: bytes) -> tuple[bytes, bytes]:
    """(CK', IK') = KDF(CK||IK, FC=0x20, P0=network name, P1=SQN xor AK) (TS 33.402 Annex A.2, RFC 5448 §3.3)."""
    if len(sqn_xor_ak) != 6:
        raise ValueError("SQN xor AK must be 6 bytes")
    name = bytes(network_name)
    s = b"\x20" + name + len(name).to_bytes(2, "big") + bytes(sqn_xor_ak) + b"\x00\x06"
    out = hmac.new(bytes(ck) + bytes(ik), s, hashlib.sha256).digest()
    return out[:16], out[16:]


def prf_prime(key: bytes, s: bytes, length: int) -> bytes:
    """PRF'(K, S) = T1|T2|..., T1 = HMAC-SHA-256(K, S|0x01), Tn = HMAC(K, Tn-1|S|n) (RFC 5448 §3.4)."""
    out = bytearray()
    t = b""
    n = 1
    while len(out) < length:
        t = hmac.new(key, t + s + bytes([n]), hashlib.sha256).digest()
        out += t
        n += 1
    return bytes(out[:length])


def derive_aka_prime_keys(identity: bytes, ik_prime: bytes, ck_prime: bytes) -> AkaKeys:
    """EAP-AKA' key hierarchy: MK = PRF'(IK'|CK', "EAP-AKA'"|Identity) (RFC 5448 §3.3)."""
    mk = prf_prime(bytes(ik_prime) + bytes(ck_prime), b"EAP-AKA'" + bytes(identity), 208)
    return AkaKeys(mk=mk, k_encr=mk[0:16], k_aut=mk[16:48], k_re=mk[48:80], msk=mk[80:144], emsk=mk[144:208])


def mac_aka(k_aut: bytes, data: bytes) -> bytes:
    """AT_MAC for EAP-AKA: HMAC-SHA1-128 (RFC 4187 §10.15)."""
    return hmac.new(k_aut, data, hashlib.sha1).digest()[:16]


def mac_aka_prime(k_aut: bytes, data: bytes) -> bytes:
    """AT_MAC for EAP-AKA': HMAC-SHA-256-128 (RFC 5448 §3.4)."""
    return hmac.new(k_aut, data, hashlib.sha256).digest()[:16]
