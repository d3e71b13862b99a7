"""Method-dependent pieces shared by peer and server: key derivation, AT_MAC, AT_CHECKCODE."""

from __future__ import annotations

import hashlib
import hmac

from s2c.codec import eap_aka as ea
from s2c.codec.eap import EapDecodeError, EapType
from s2c.crypto import aka_kdf
from s2c.crypto.aka_kdf import AkaKeys

from .errors import ProtocolError

KDF_AKA_PRIME = 1  # RFC 5448 §3.2: "EAP-AKA' with CK'/IK'"


def check_method(method: int) -> int:
    if method not in (EapType.AKA, EapType.AKA_PRIME):
        raise ValueError("method must be EapType.AKA or EapType.AKA_PRIME")
    return EapType(method)


def derive_keys(method: int, identity: bytes, ck: bytes, ik: bytes, autn: bytes, network_name: bytes) -> AkaKeys:
    """RFC 4187 §7 for AKA; RFC 5448 §3.3 (CK'/IK' bound to network name and SQN xor AK) for AKA'."""
    if method == EapType.AKA:
        return aka_kdf.derive_aka_keys(identity, ik, ck)
    ck_p, ik_p = aka_kdf.ck_ik_prime(ck, ik, network_name, autn[:6])
    return aka_kdf.derive_aka_prime_keys(identity, ik_p, ck_p)


def mac(method: int, k_aut: bytes, data: bytes) -> bytes:
    """AT_MAC value over ``data`` (packet with zeroed MAC, plus any method extra)."""
    return aka_kdf.mac_aka(k_aut, data) if method == EapType.AKA else aka_kdf.mac_aka_prime(k_aut, data)


def sign(method: int, k_aut: bytes, packet: bytes, extra: bytes = b"") -> bytes:
    """Fill in AT_MAC of a freshly serialized packet (its AT_MAC value is all zero)."""
    return ea.set_mac(packet, mac(method, k_aut, packet + extra))


def mac_ok(method: int, k_aut: bytes, packet: bytes, extra: bytes = b"") -> bool:
    """Verify the single AT_MAC of a received packet; False if absent."""
    try:
        split = ea.mac_input(packet)
    except EapDecodeError as e:  # pragma: no cover - parse() already walked the attributes
        raise ProtocolError(str(e)) from e
    if split is None:
        return False
    zeroed, received = split
    return hmac.compare_digest(mac(method, k_aut, zeroed + extra), received)


def checkcode(method: int, identity_packets: bytes) -> bytes:
    """AT_CHECKCODE value: hash of the AKA-Identity packets, empty if none (RFC 4187 §10.13, RFC 5448 §3.4)."""
    if not identity_packets:
        return b""
    h = hashlib.sha1 if method == EapType.AKA else hashlib.sha256
    return h(identity_packets).digest()


def eap_bytes(packet: bytes) -> bytes:
    """The packet up to its EAP Length (drops link-layer padding)."""
    return packet[: int.from_bytes(packet[2:4], "big")]
