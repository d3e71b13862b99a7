"""AuC functions of the HSS: the thin glue between the store and MILENAGE / the SQN scheme.

* vector generation: TS 33.102 §6.3.2 via :func:`s2c.crypto.milenage.generate_vector`;
* OPc derivation: TS 35.206 §4.1;
* AUTS verification and SQN_MS recovery: TS 33.102 §6.3.5;
* SQN = SEQ || IND generation (Annex C.3.2) and re-synchronisation (Annex C.3.4) via
  :mod:`s2c.crypto.sqn` when present (see ``_sqn_impl`` below).

Pure functions; no IO, no randomness.
"""

from __future__ import annotations

from s2c.crypto import milenage

IND_BITS = 5
"""Length a of IND in bits (TS 33.102 Annex C.3.2; 5 is the value of Annex C.3.4's example)."""
SQN_BITS = 48
DELTA = 1 << 28
"""Δ: the largest forward SEQ jump a USIM accepts (Annex C.2.1, value recommended in C.3.4/C.2)."""


def derive_opc(k: bytes, op: bytes) -> bytes:
    """OPc = OP xor E_K(OP) (TS 35.206 §4.1)."""
    return milenage.opc(k, op)


def split(sqn: int, ind_bits: int = IND_BITS) -> tuple[int, int]:
    """SQN -> (SEQ, IND) (Annex C.3.2)."""
    return sqn >> ind_bits, sqn & ((1 << ind_bits) - 1)


def join(seq: int, ind: int, ind_bits: int = IND_BITS) -> int:
    return ((seq << ind_bits) | (ind & ((1 << ind_bits) - 1))) & ((1 << SQN_BITS) - 1)


def next_sqn(sqn_he: int, ind_bits: int = IND_BITS) -> int:
    """The SQN following ``sqn_he`` (Annex C.3.2): SEQ incremented by one and IND taking the next
    slot cyclically, so consecutive vectors land in different USIM array entries and any vector
    issued later is strictly greater than every earlier one."""
    impl = _sqn_impl()
    if impl is not None:
        return impl.next_sqn(sqn_he, ind_bits)
    seq, ind = split(sqn_he, ind_bits)
    if seq + 1 >= 1 << (SQN_BITS - ind_bits):
        raise OverflowError("SEQ_HE exhausted (Annex C.3.2: SEQ must never wrap)")
    return join(seq + 1, ind + 1, ind_bits)


def resync_sqn(sqn_he: int, sqn_ms: int, ind_bits: int = IND_BITS) -> int:
    """New SQN_HE after a synchronisation failure reporting ``sqn_ms`` (TS 33.102 §6.3.5, Annex C.3.4).

    If the next SQN the HE would generate is acceptable to the USIM (SEQ strictly above SEQ_MS and
    at most Δ ahead of it), SQN_HE is kept; otherwise SEQ_HE is set to SEQ_MS so the next vector is
    SEQ_MS + 1. The HE never moves backwards unless the USIM would reject everything ahead (a Δ
    overrun), which is what the spec prescribes.
    """
    impl = _sqn_impl()
    if impl is not None:
        return impl.resync_sqn(sqn_he, sqn_ms, ind_bits)
    seq_he, _ = split(sqn_he, ind_bits)
    seq_ms, ind_ms = split(sqn_ms, ind_bits)
    if seq_ms < seq_he and (seq_he + 1) - seq_ms <= DELTA:
        return sqn_he
    return join(seq_ms, ind_ms, ind_bits)


def generate(k: bytes, opc: bytes, amf: bytes, sqn: int, rand: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(XRES, CK, IK, AUTN) for one SQN and RAND (TS 33.102 §6.3.2)."""
    v = milenage.generate_vector(k, opc, rand, sqn.to_bytes(6, "big"), amf)
    return v.xres, v.ck, v.ik, v.autn


def verify_auts(k: bytes, opc: bytes, rand: bytes, auts: bytes) -> int | None:
    """SQN_MS if MAC-S = f1*(K, SQN_MS, RAND, AMF=0000) verifies, else None (TS 33.102 §6.3.5)."""
    sqn_ms = milenage.recover_sqn_ms(k, opc, rand, auts)
    return None if sqn_ms is None else int.from_bytes(sqn_ms, "big")


def _sqn_impl():  # noqa: ANN202
    """Hook for a shared SQN policy module; the local Annex C profile above is used otherwise."""
    return None
