"""Encrypted IKE messages: build and open the SK payload around an inner payload chain (RFC 7296 §3.14)."""

from __future__ import annotations

import struct
from typing import Callable, Sequence

from s2c.codec.ikev2 import (
    IKE_HEADER_LEN, IkeDecodeError, IkeHeader, IkeMessage, Payload, PayloadType, decode_payloads, encode_payloads,
    EncryptedPayload,
)
from s2c.crypto.ike_suites import IkeKeys, IkeSuite, seal, unseal


def encrypt_message(header: IkeHeader, payloads: Sequence[Payload], suite: IkeSuite, keys: IkeKeys,
                    from_initiator: bool, rng: Callable[[int], bytes]) -> bytes:
    """Serialize ``HDR, SK {payloads}``; ``header``'s next_payload and length are recomputed."""
    first, inner = encode_payloads(payloads)
    body_len = suite.sk_body_len(len(inner))
    total = IKE_HEADER_LEN + 4 + body_len
    hdr = IkeHeader(header.spi_i, header.spi_r, PayloadType.SK, header.exchange, header.flags, header.message_id,
                    total).encode()
    aad = hdr + struct.pack("!BBH", first, 0, 4 + body_len)
    sk_e, sk_a = (keys.sk_ei, keys.sk_ai) if from_initiator else (keys.sk_er, keys.sk_ar)
    return aad + seal(suite, sk_e, sk_a, aad, inner, rng)


def decrypt_message(msg: IkeMessage, suite: IkeSuite, keys: IkeKeys, from_initiator: bool) -> list[Payload]:
    """Check and decrypt the SK payload of a parsed message; returns the inner payloads.

    Raises IntegrityError (drop silently), UnsupportedCriticalPayload or IkeDecodeError (answerable).
    """
    if not msg.payloads or not isinstance(msg.payloads[-1], EncryptedPayload):
        raise IkeDecodeError("message has no SK payload")
    sk = msg.payloads[-1]
    raw = msg.raw
    aad = raw[: len(raw) - len(sk.data)]
    sk_e, sk_a = (keys.sk_ei, keys.sk_ai) if from_initiator else (keys.sk_er, keys.sk_ar)
    inner = unseal(suite, sk_e, sk_a, aad, sk.data)
    outer = msg.payloads[:-1]
    return list(outer) + decode_payloads(sk.first_payload, inner, allow_encrypted=False)
