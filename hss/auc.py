"""AuC functions of the HSS: the thin glue between the store and MILENAGE / the SQN scheme.

* vector generation: TS 33.102 §6.3.2 via :func:`s2c.crypto.milenage.generate_vector`;
* OPc derivation: TS 35.206 §4.1;
* AUTS verification and SQN_MS recovery: TS 33.102 §6.3.5;
* SQN = SEQ || IND generation (Annex C.3.2) and re-synchronisation (Annex C.3.4) via
  :mod:`s2c.crypto.sqn` (the same module the software USIM uses, so both ends agree).

Pure functions; no IO, no randomness.
"""

from __future__ import annotations

from s2c.crypto import milenage
from s2c.crypto import sqn as _sqn

IND_BITS = _sqn.IND_BITS
"""Length a of IND in bits (TS 33.102 Annex C.3.2 profile shared with the USIM: 5, a = 32)."""
DELTA = _sqn.DELTA
"""Δ: the largest forward SEQ jump a USIM accepts (Annex C.2.1)."""


def derive_opc(k: bytes, op: bytes) -> bytes:
    """OPc = OP xor E_K(OP) (TS 35.206 §4.1)."""
    return milenage.opc(k, op)


def split(sqn: int) -> tuple[int, int]:
    """SQN -> (SEQ, IND) (Annex C.1.1)."""
    return _sqn.split_sqn(sqn)


def join(seq: int, ind: int) -> int:
    """(SEQ, IND) -> SQN (Annex C.1.1)."""
    return _sqn.join_sqn(seq, ind)


def next_sqn(sqn_he: int) -> int:
    """The SQN following ``sqn_he`` (Annex C.3.2): SEQ + 1 and IND taking the next slot
    cyclically, so any vector issued later is strictly greater than every earlier one."""
    return _sqn.next_sqn(sqn_he)


def resync_sqn(sqn_he: int, sqn_ms: int) -> int:
    """New SQN_HE after a synchronisation failure reporting ``sqn_ms`` (TS 33.102 §6.3.5, Annex C.3.4):
    kept if its successor is acceptable to the USIM, else reset to SQN_MS."""
    return _sqn.resync_sqn_he(sqn_he, sqn_ms)


def generate(k: bytes, opc: bytes, amf: bytes, sqn: int, rand: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(XRES, CK, IK, AUTN) for one SQN and RAND (TS 33.102 §6.3.2)."""
    v = milenage.generate_vector(k, opc, rand, sqn.to_bytes(6, "big"), amf)
    return v.xres, v.ck, v.ik, v.autn


def verify_auts(k: bytes, opc: bytes, rand: bytes, auts: bytes) -> int | None:
    """SQN_MS if MAC-S = f1*(K, SQN_MS, RAND, AMF=0000) verifies, else None (TS 33.102 §6.3.5)."""
    sqn_ms = milenage.recover_sqn_ms(k, opc, rand, auts)
    return None if sqn_ms is None else int.from_bytes(sqn_ms, "big")
