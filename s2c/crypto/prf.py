"""IKEv2 pseudo-random functions and prf+ (RFC 7296 §2.13; HMAC PRFs RFC 2104/4868)."""

from __future__ import annotations

import hmac

from s2c.codec.ikev2 import PrfId

_PRF_HASH = {
    PrfId.PRF_HMAC_MD5: "md5",
    PrfId.PRF_HMAC_SHA1: "sha1",
    PrfId.PRF_HMAC_SHA2_256: "sha256",
    PrfId.PRF_HMAC_SHA2_384: "sha384",
    PrfId.PRF_HMAC_SHA2_512: "sha512",
}
_PRF_LEN = {
    PrfId.PRF_HMAC_MD5: 16,
    PrfId.PRF_HMAC_SHA1: 20,
    PrfId.PRF_HMAC_SHA2_256: 32,
    PrfId.PRF_HMAC_SHA2_384: 48,
    PrfId.PRF_HMAC_SHA2_512: 64,
}


class UnsupportedAlgorithm(ValueError):
    """An algorithm id this implementation does not provide."""


def prf_output_len(prf_id: int) -> int:
    try:
        return _PRF_LEN[prf_id]
    except KeyError:
        raise UnsupportedAlgorithm(f"PRF {prf_id} not supported") from None


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """prf(K, S) for the HMAC PRFs (RFC 7296 §2.13)."""
    try:
        name = _PRF_HASH[prf_id]
    except KeyError:
        raise UnsupportedAlgorithm(f"PRF {prf_id} not supported") from None
    return hmac.digest(key, data, name)


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+(K, S) = T1 | T2 | ... with Tn = prf(K, Tn-1 | S | n) (RFC 7296 §2.13)."""
    out = bytearray()
    t = b""
    n = 1
    while len(out) < length:
        if n > 255:
            raise ValueError("prf+ output limited to 255 iterations")
        t = prf(prf_id, key, t + seed + bytes([n]))
        out += t
        n += 1
    return bytes(out[:length])
