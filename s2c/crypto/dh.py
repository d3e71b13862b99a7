"""Diffie-Hellman groups for IKEv2 KE payloads: MODP (RFC 3526), ECP (RFC 5903), Curve25519 (RFC 8031).

Private keys come from an injected ``rng(n) -> bytes``; KE payload data and the shared secret are
encoded as each RFC specifies (MODP: big-endian padded to the prime length; ECP: x || y, shared = x;
Curve25519: the 32-octet u-coordinate).
"""

from __future__ import annotations

from typing import Callable

import functools

from cryptography.hazmat.primitives.asymmetric import dh, ec, x25519

from s2c.codec.ikev2 import DhGroup

Rng = Callable[[int], bytes]


class DhError(ValueError):
    """A peer KE value was invalid for its group."""


# RFC 3526 §3: 2048-bit MODP Group, generator 2.
MODP_2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D"
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)

_MODP = {DhGroup.MODP_2048: (MODP_2048_P, 2, 32)}  # (p, g, exponent octets)
_ECP = {DhGroup.ECP_256: (ec.SECP256R1(), 32), DhGroup.ECP_384: (ec.SECP384R1(), 48), DhGroup.ECP_521: (ec.SECP521R1(), 66)}
_ECP_ORDER = {
    DhGroup.ECP_256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    DhGroup.ECP_384: int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16),
    DhGroup.ECP_521: int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783B"
        "F2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16),
}

@functools.cache
def _modp_params(group: int) -> "dh.DHParameterNumbers":
    p, g, _ = _MODP[group]
    return dh.DHParameterNumbers(p, g)


SUPPORTED_GROUPS = (DhGroup.MODP_2048, DhGroup.ECP_256, DhGroup.ECP_384, DhGroup.ECP_521, DhGroup.CURVE25519)


def ke_length(group: int) -> int:
    """Octets of the KE payload data for a group."""
    if group in _MODP:
        return (_MODP[group][0].bit_length() + 7) // 8
    if group in _ECP:
        return 2 * _ECP[group][1]
    if group == DhGroup.CURVE25519:
        return 32
    raise DhError(f"DH group {group} not supported")


class DhPrivateKey:
    """One ephemeral key of a group: ``public`` is the KE payload data."""

    def __init__(self, group: int, rng: Rng) -> None:
        self.group = group
        if group in _MODP:
            p, g, nbytes = _MODP[group]
            self._x = int.from_bytes(rng(nbytes), "big") | (1 << (nbytes * 8 - 1))
            self._plen = (p.bit_length() + 7) // 8
            # g^x mod p computed by OpenSSL (about 10x faster than pow()): x "exchanged" with y = g
            pn = _modp_params(group)
            tmp = dh.DHPrivateNumbers(self._x, dh.DHPublicNumbers(g, pn)).private_key()
            y = int.from_bytes(tmp.exchange(dh.DHPublicNumbers(g, pn).public_key()), "big")
            self._modp_key = dh.DHPrivateNumbers(self._x, dh.DHPublicNumbers(y, pn)).private_key()
            self.public = y.to_bytes(self._plen, "big")
        elif group in _ECP:
            curve, clen = _ECP[group]
            n = _ECP_ORDER[group]
            d = 0
            while d == 0:  # RFC 5903 §3: 0 < d < n
                d = int.from_bytes(rng(clen), "big") % n
            self._key = ec.derive_private_key(d, curve)
            pub = self._key.public_key().public_numbers()
            self._clen = clen
            self.public = pub.x.to_bytes(clen, "big") + pub.y.to_bytes(clen, "big")
        elif group == DhGroup.CURVE25519:
            self._xkey = x25519.X25519PrivateKey.from_private_bytes(rng(32))
            from cryptography.hazmat.primitives import serialization as s

            self.public = self._xkey.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
        else:
            raise DhError(f"DH group {group} not supported")

    def shared_secret(self, peer: bytes) -> bytes:
        """g^ir from the peer's KE data; DhError if the value is invalid (RFC 7296 §2.14)."""
        group = self.group
        if group in _MODP:
            p = _MODP[group][0]
            if len(peer) != self._plen:
                raise DhError("bad MODP public value length")
            y = int.from_bytes(peer, "big")
            if not 1 < y < p - 1:
                raise DhError("MODP public value out of range")
            try:
                z = self._modp_key.exchange(dh.DHPublicNumbers(y, _modp_params(group)).public_key())
            except ValueError as e:
                raise DhError(f"invalid MODP value: {e}") from e
            return z.rjust(self._plen, b"\x00")
        if group in _ECP:
            if len(peer) != 2 * self._clen:
                raise DhError("bad ECP public value length")
            try:
                pk = ec.EllipticCurvePublicKey.from_encoded_point(self._key.curve, b"\x04" + peer)
                return self._key.exchange(ec.ECDH(), pk)
            except ValueError as e:
                raise DhError(f"invalid ECP point: {e}") from e
        if len(peer) != 32:
            raise DhError("bad Curve25519 public value length")
        try:
            out = self._xkey.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        except ValueError as e:
            raise DhError(f"invalid Curve25519 value: {e}") from e
        if out == bytes(32):
            raise DhError("all-zero Curve25519 shared secret (RFC 8031 §2)")
        return out


    def deferred_shared_secret(self, peer: bytes) -> "Callable[[], bytes]":
        """Check ``peer`` now (DhError exactly where :meth:`shared_secret` would raise) and return a
        function that computes g^ir later: a responder can answer IKE_SA_INIT first and do the scalar
        multiplication while the initiator works. ECP and MODP values are fully validated up front
        (point decoding, range); Curve25519 is computed now (its all-zero check needs the result)."""
        group = self.group
        if group in _ECP:
            if len(peer) != 2 * self._clen:
                raise DhError("bad ECP public value length")
            try:
                pk = ec.EllipticCurvePublicKey.from_encoded_point(self._key.curve, b"\x04" + peer)
            except ValueError as e:
                raise DhError(f"invalid ECP point: {e}") from e
            key = self._key
            return lambda: key.exchange(ec.ECDH(), pk)
        if group in _MODP:
            p = _MODP[group][0]
            if len(peer) != self._plen:
                raise DhError("bad MODP public value length")
            if not 1 < int.from_bytes(peer, "big") < p - 1:
                raise DhError("MODP public value out of range")
            return lambda: self.shared_secret(peer)
        secret = self.shared_secret(peer)
        return lambda: secret


def generate(group: int, rng: Rng) -> DhPrivateKey:
    return DhPrivateKey(group, rng)
