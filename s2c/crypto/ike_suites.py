"""IKEv2 cipher suites and key derivation (RFC 7296 §2.13-2.18, §3.14; AES-GCM for SK RFC 5282).

``IkeSuite`` names the negotiated ENCR/PRF/INTEG/DH of an IKE SA, ``EspSuite`` those of a CHILD SA.
``IkeKeys`` holds SK_d/ai/ar/ei/er/pi/pr. ``seal``/``unseal`` protect the SK payload body.
``child_keymat`` returns explicit per-direction ESP key material for the ESP layer.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from s2c.codec.ikev2 import DhGroup, EncrId, EsnId, IntegId, PrfId
from s2c.crypto.prf import UnsupportedAlgorithm, prf, prf_output_len, prf_plus

Rng = Callable[[int], bytes]

AEAD_ENCR = {EncrId.ENCR_AES_GCM_8: 8, EncrId.ENCR_AES_GCM_12: 12, EncrId.ENCR_AES_GCM_16: 16}
SUPPORTED_ENCR = (EncrId.ENCR_AES_CBC, EncrId.ENCR_AES_GCM_16, EncrId.ENCR_NULL)

# integrity: (hash name, key octets, ICV octets) - RFC 2404, RFC 4868
_INTEG = {
    IntegId.AUTH_HMAC_SHA1_96: ("sha1", 20, 12),
    IntegId.AUTH_HMAC_SHA2_256_128: ("sha256", 32, 16),
    IntegId.AUTH_HMAC_SHA2_384_192: ("sha384", 48, 24),
    IntegId.AUTH_HMAC_SHA2_512_256: ("sha512", 64, 32),
}


class IntegrityError(ValueError):
    """ICV or AEAD tag check failed, or the SK body was malformed."""


def integ_key_len(integ: int) -> int:
    if integ == IntegId.NONE:
        return 0
    try:
        return _INTEG[integ][1]
    except KeyError:
        raise UnsupportedAlgorithm(f"integrity {integ} not supported") from None


def integ_icv_len(integ: int) -> int:
    if integ == IntegId.NONE:
        return 0
    return _INTEG[integ][2]


def integ_mac(integ: int, key: bytes, data: bytes) -> bytes:
    name, _, icv = _INTEG[integ]
    return hmac.digest(key, data, name)[:icv]


def encr_key_len(encr: int, key_bits: int | None) -> int:
    """Octets of cipher key (without salt)."""
    if encr == EncrId.ENCR_NULL:
        return 0
    if encr in (EncrId.ENCR_AES_CBC, *AEAD_ENCR):
        if key_bits not in (128, 192, 256):
            raise UnsupportedAlgorithm(f"AES key length {key_bits} not supported")
        return key_bits // 8
    raise UnsupportedAlgorithm(f"encryption {encr} not supported")


def encr_salt_len(encr: int) -> int:
    return 4 if encr in AEAD_ENCR else 0


@dataclass(frozen=True)
class IkeSuite:
    """Negotiated IKE SA transforms (RFC 7296 §3.3.2)."""

    encr: EncrId
    key_bits: int | None
    prf: PrfId
    integ: IntegId
    dh: DhGroup

    @property
    def aead(self) -> bool:
        return self.encr in AEAD_ENCR

    @property
    def encr_key_len(self) -> int:
        return encr_key_len(self.encr, self.key_bits)

    @property
    def encr_keymat_len(self) -> int:
        """SK_e octets including the 4-octet GCM salt (RFC 5282 §7.1)."""
        return self.encr_key_len + encr_salt_len(self.encr)

    @property
    def integ_key_len(self) -> int:
        return 0 if self.aead else integ_key_len(self.integ)

    @property
    def prf_len(self) -> int:
        return prf_output_len(self.prf)

    @property
    def iv_len(self) -> int:
        return 8 if self.aead else 16

    @property
    def icv_len(self) -> int:
        return AEAD_ENCR[self.encr] if self.aead else integ_icv_len(self.integ)

    def sk_body_len(self, plaintext_len: int) -> int:
        """Length of IV | ciphertext | ICV for an inner payload chain of plaintext_len octets."""
        if self.aead:
            return self.iv_len + plaintext_len + 1 + self.icv_len
        padded = (plaintext_len + 1 + 15) // 16 * 16
        return self.iv_len + padded + self.icv_len


@dataclass(frozen=True)
class EspSuite:
    """Negotiated CHILD SA transforms for ESP (RFC 7296 §3.3.2, §3.3.3)."""

    encr: EncrId
    key_bits: int | None
    integ: IntegId = IntegId.NONE
    esn: EsnId = EsnId.NO_ESN
    dh: DhGroup = DhGroup.NONE

    @property
    def aead(self) -> bool:
        return self.encr in AEAD_ENCR


@dataclass(frozen=True)
class IkeKeys:
    """SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr (RFC 7296 §2.14)."""

    skeyseed: bytes
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes


@dataclass(frozen=True)
class EspKeys:
    """ESP key material for one direction: algorithm ids + keys (+ GCM salt, RFC 4106 §8.1)."""

    encr: EncrId
    encr_key: bytes
    salt: bytes
    integ: IntegId
    integ_key: bytes
    icv_len: int


def skeyseed(prf_id: int, ni: bytes, nr: bytes, shared: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14)."""
    return prf(prf_id, ni + nr, shared)


def rekey_skeyseed(prf_id: int, old_sk_d: bytes, shared: bytes, ni: bytes, nr: bytes) -> bytes:
    """SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) (RFC 7296 §2.18)."""
    return prf(prf_id, old_sk_d, shared + ni + nr)


def derive_ike_keys(suite: IkeSuite, seed: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes) -> IkeKeys:
    """{SK_d|SK_ai|SK_ar|SK_ei|SK_er|SK_pi|SK_pr} = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr) (RFC 7296 §2.14)."""
    pl, il, el = suite.prf_len, suite.integ_key_len, suite.encr_keymat_len
    km = prf_plus(suite.prf, seed, ni + nr + spi_i + spi_r, 3 * pl + 2 * il + 2 * el)
    parts = []
    pos = 0
    for n in (pl, il, il, el, el, pl, pl):
        parts.append(km[pos : pos + n])
        pos += n
    return IkeKeys(seed, *parts)


def child_keymat(prf_id: int, sk_d: bytes, suite: EspSuite, ni: bytes, nr: bytes,
                 shared: bytes | None = None) -> tuple[EspKeys, EspKeys]:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC 7296 §2.17); returns (i->r, r->i)."""
    ek = encr_key_len(suite.encr, suite.key_bits)
    sl = encr_salt_len(suite.encr)
    ik = 0 if suite.aead else integ_key_len(suite.integ)
    icv = AEAD_ENCR[suite.encr] if suite.aead else integ_icv_len(suite.integ)
    km = prf_plus(prf_id, sk_d, (shared or b"") + ni + nr, 2 * (ek + sl + ik))
    out = []
    pos = 0
    for _ in range(2):
        e = km[pos : pos + ek]
        s = km[pos + ek : pos + ek + sl]
        a = km[pos + ek + sl : pos + ek + sl + ik]
        pos += ek + sl + ik
        out.append(EspKeys(suite.encr, e, s, IntegId.NONE if suite.aead else suite.integ, a, icv))
    return out[0], out[1]


def seal(suite: IkeSuite, sk_e: bytes, sk_a: bytes, aad: bytes, plaintext: bytes, rng: Rng) -> bytes:
    """Protect an inner payload chain: returns IV | ciphertext | ICV (RFC 7296 §3.14, RFC 5282 §3).

    ``aad`` is the IKE header and SK generic header with their final lengths.
    """
    if suite.aead:
        key, salt = sk_e[:-4], sk_e[-4:]
        iv = rng(8)
        ct = AESGCM(key).encrypt(salt + iv, plaintext + b"\x00", aad)  # pad length 0
        if AEAD_ENCR[suite.encr] != 16:
            raise UnsupportedAlgorithm("only the 16-octet ICV AES-GCM is implemented")
        return iv + ct
    padded_len = (len(plaintext) + 1 + 15) // 16 * 16
    padlen = padded_len - len(plaintext) - 1
    pt = plaintext + bytes(padlen) + bytes([padlen])
    iv = rng(16)
    enc = Cipher(algorithms.AES(sk_e), modes.CBC(iv)).encryptor()
    ct = enc.update(pt) + enc.finalize()
    icv = integ_mac(suite.integ, sk_a, aad + iv + ct)
    return iv + ct + icv


def unseal(suite: IkeSuite, sk_e: bytes, sk_a: bytes, aad: bytes, body: bytes) -> bytes:
    """Check and decrypt IV | ciphertext | ICV; returns the inner payload chain or IntegrityError."""
    if suite.aead:
        if len(body) < 8 + 16 + 1:
            raise IntegrityError("SK payload too short")
        key, salt = sk_e[:-4], sk_e[-4:]
        try:
            pt = AESGCM(key).decrypt(salt + body[:8], body[8:], aad)
        except InvalidTag:
            raise IntegrityError("AES-GCM tag mismatch") from None
    else:
        icv_len = suite.icv_len
        if len(body) < 16 + 16 + icv_len or (len(body) - 16 - icv_len) % 16:
            raise IntegrityError("SK payload length not a whole number of blocks")
        icv = body[-icv_len:]
        if not hmac.compare_digest(integ_mac(suite.integ, sk_a, aad + body[:-icv_len]), icv):
            raise IntegrityError("ICV mismatch")
        dec = Cipher(algorithms.AES(sk_e), modes.CBC(body[:16])).decryptor()
        pt = dec.update(body[16:-icv_len]) + dec.finalize()
    padlen = pt[-1]
    if padlen + 1 > len(pt):
        raise IntegrityError("bad SK pad length")
    return pt[: len(pt) - padlen - 1]


# Wireshark's IKEv2 decryption table algorithm names (epan/dissectors/packet-isakmp.c)
WIRESHARK_ENCR = {
    (EncrId.ENCR_NULL, None): "NULL [RFC2410]",
    (EncrId.ENCR_AES_CBC, 128): "AES-CBC-128 [RFC3602]",
    (EncrId.ENCR_AES_CBC, 192): "AES-CBC-192 [RFC3602]",
    (EncrId.ENCR_AES_CBC, 256): "AES-CBC-256 [RFC3602]",
    (EncrId.ENCR_AES_GCM_16, 128): "AES-GCM-128 with 16 octet ICV [RFC5282]",
    (EncrId.ENCR_AES_GCM_16, 192): "AES-GCM-192 with 16 octet ICV [RFC5282]",
    (EncrId.ENCR_AES_GCM_16, 256): "AES-GCM-256 with 16 octet ICV [RFC5282]",
}
WIRESHARK_INTEG = {
    IntegId.NONE: "NONE [RFC4306]",
    IntegId.AUTH_HMAC_SHA1_96: "HMAC_SHA1_96 [RFC2404]",
    IntegId.AUTH_HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    IntegId.AUTH_HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    IntegId.AUTH_HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
}


def wireshark_decryption_line(suite: IkeSuite, spi_i: bytes, spi_r: bytes, keys: IkeKeys) -> str:
    """One line of Wireshark's ``ikev2_decryption_table`` UAT file."""
    encr = WIRESHARK_ENCR[(suite.encr, suite.key_bits if suite.encr != EncrId.ENCR_NULL else None)]
    integ = WIRESHARK_INTEG[IntegId.NONE if suite.aead else suite.integ]
    return (
        f'{spi_i.hex()},{spi_r.hex()},{keys.sk_ei.hex()},{keys.sk_er.hex()},"{encr}",'
        f'{keys.sk_ai.hex()},{keys.sk_ar.hex()},"{integ}"'
    )
