"""MILENAGE authentication and key generation functions (3GPP TS 35.205/35.206).

Pure functions, bytes in and bytes out. The kernel E_K is AES-128 (TS 35.206 §4.1);
one ECB encryptor per K is cached, so generating many vectors for one subscriber costs
six block encryptions each (f1/f1* one, f2..f5* five, plus TEMP).

Also the AKA glue of TS 33.102 §6.3 that is a direct function of MILENAGE:
AUTN = (SQN xor AK) || AMF || MAC-A, AUTS = (SQN_MS xor AK*) || MAC-S, the USIM-side
MAC check of AUTN and the HE-side recovery of SQN_MS from AUTS. Sequence-number
freshness policy (Annex C) lives in :mod:`s2c.crypto.sqn`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "AMF_RESYNC",
    "AuthVector",
    "AutnCheck",
    "MilenageError",
    "build_autn",
    "build_auts",
    "check_autn",
    "f1",
    "f1star",
    "f2345",
    "f5star",
    "generate_vector",
    "opc",
    "recover_sqn_ms",
]

# TS 35.206 §4.1: rotation amounts r1..r5 (bits) and constants c1..c5.
_R1, _R2, _R3, _R4, _R5 = 64, 0, 32, 64, 96
_C1, _C2, _C3, _C4, _C5 = 0, 1, 2, 4, 8
_MASK128 = (1 << 128) - 1

AMF_RESYNC = b"\x00\x00"
"""Dummy AMF used with f1* when computing MAC-S for AUTS (TS 33.102 §6.3.3)."""


class MilenageError(ValueError):
    """Bad argument length given to a MILENAGE/AKA function."""


@lru_cache(maxsize=4096)
def _encryptor(k: bytes):  # noqa: ANN202 - cryptography's CipherContext
    return Cipher(algorithms.AES(k), modes.ECB()).encryptor()


def _check(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != size:
        raise MilenageError(f"{name} must be {size} bytes")


def _e(k: bytes, x: int) -> int:
    """E_K on a 128-bit integer block."""
    return int.from_bytes(_encryptor(bytes(k)).update(x.to_bytes(16, "big")), "big")


def _rot(x: int, r: int) -> int:
    """Cyclic left rotation of a 128-bit value by r bits (TS 35.206 §4.1)."""
    if r == 0:
        return x
    return ((x << r) | (x >> (128 - r))) & _MASK128


def opc(k: bytes, op: bytes) -> bytes:
    """OPc = OP xor E_K(OP) (TS 35.206 §4.1)."""
    _check("K", k, 16)
    _check("OP", op, 16)
    op_i = int.from_bytes(op, "big")
    return (_e(k, op_i) ^ op_i).to_bytes(16, "big")


def _temp(k: bytes, opc_i: int, rand: bytes) -> int:
    return _e(k, int.from_bytes(rand, "big") ^ opc_i)


def f1(k: bytes, opc_: bytes, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, bytes]:
    """f1 and f1*: returns (MAC-A, MAC-S), 8 bytes each (TS 35.206 §4.1, OUT1)."""
    _check("K", k, 16)
    _check("OPc", opc_, 16)
    _check("RAND", rand, 16)
    _check("SQN", sqn, 6)
    _check("AMF", amf, 2)
    opc_i = int.from_bytes(opc_, "big")
    temp = _temp(k, opc_i, rand)
    in1 = int.from_bytes(bytes(sqn) + bytes(amf) + bytes(sqn) + bytes(amf), "big")
    out1 = _e(k, temp ^ _rot(in1 ^ opc_i, _R1) ^ _C1) ^ opc_i
    b = out1.to_bytes(16, "big")
    return b[:8], b[8:]


def f1star(k: bytes, opc_: bytes, rand: bytes, sqn: bytes, amf: bytes = AMF_RESYNC) -> bytes:
    """f1* alone: MAC-S (TS 35.206 §4.1)."""
    return f1(k, opc_, rand, sqn, amf)[1]


def f2345(k: bytes, opc_: bytes, rand: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """f2, f3, f4, f5: returns (RES 8 bytes, CK 16, IK 16, AK 6) (TS 35.206 §4.1, OUT2..OUT4)."""
    _check("K", k, 16)
    _check("OPc", opc_, 16)
    _check("RAND", rand, 16)
    opc_i = int.from_bytes(opc_, "big")
    x = _temp(k, opc_i, rand) ^ opc_i
    out2 = (_e(k, _rot(x, _R2) ^ _C2) ^ opc_i).to_bytes(16, "big")
    out3 = (_e(k, _rot(x, _R3) ^ _C3) ^ opc_i).to_bytes(16, "big")
    out4 = (_e(k, _rot(x, _R4) ^ _C4) ^ opc_i).to_bytes(16, "big")
    return out2[8:], out3, out4, out2[:6]


def f5star(k: bytes, opc_: bytes, rand: bytes) -> bytes:
    """f5*: AK used to conceal SQN_MS in AUTS, 6 bytes (TS 35.206 §4.1, OUT5)."""
    _check("K", k, 16)
    _check("OPc", opc_, 16)
    _check("RAND", rand, 16)
    opc_i = int.from_bytes(opc_, "big")
    x = _temp(k, opc_i, rand) ^ opc_i
    return (_e(k, _rot(x, _R5) ^ _C5) ^ opc_i).to_bytes(16, "big")[:6]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True, slots=True)
class AuthVector:
    """UMTS authentication vector RAND, XRES, CK, IK, AUTN (TS 33.102 §6.3.2)."""

    rand: bytes
    xres: bytes
    autn: bytes
    ck: bytes
    ik: bytes


def build_autn(sqn: bytes, ak: bytes, amf: bytes, mac_a: bytes) -> bytes:
    """AUTN = (SQN xor AK) || AMF || MAC-A, 16 bytes (TS 33.102 §6.3.2)."""
    _check("SQN", sqn, 6)
    _check("AK", ak, 6)
    _check("AMF", amf, 2)
    _check("MAC-A", mac_a, 8)
    return _xor(sqn, ak) + bytes(amf) + bytes(mac_a)


def generate_vector(k: bytes, opc_: bytes, rand: bytes, sqn: bytes, amf: bytes) -> AuthVector:
    """HE/AuC: one authentication vector for a given SQN (TS 33.102 §6.3.2).

    Same result as f1 + f2345 + build_autn, with TEMP computed once (5 AES blocks).
    """
    _check("K", k, 16)
    _check("OPc", opc_, 16)
    _check("RAND", rand, 16)
    _check("SQN", sqn, 6)
    _check("AMF", amf, 2)
    enc = _encryptor(bytes(k)).update
    opc_i = int.from_bytes(opc_, "big")
    temp = int.from_bytes(enc((int.from_bytes(rand, "big") ^ opc_i).to_bytes(16, "big")), "big")
    in1 = int.from_bytes(bytes(sqn) + bytes(amf) + bytes(sqn) + bytes(amf), "big")
    blocks = b"".join(
        v.to_bytes(16, "big")
        for v in (
            temp ^ _rot(in1 ^ opc_i, _R1) ^ _C1,
            _rot(temp ^ opc_i, _R2) ^ _C2,
            _rot(temp ^ opc_i, _R3) ^ _C3,
            _rot(temp ^ opc_i, _R4) ^ _C4,
        )
    )
    out = int.from_bytes(enc(blocks), "big") ^ int.from_bytes(opc_ * 4, "big")
    o = out.to_bytes(64, "big")
    mac_a, out2, ck, ik = o[0:8], o[16:32], o[32:48], o[48:64]
    autn = (int.from_bytes(sqn, "big") ^ int.from_bytes(out2[:6], "big")).to_bytes(6, "big") + bytes(amf) + mac_a
    return AuthVector(rand=bytes(rand), xres=out2[8:], autn=autn, ck=ck, ik=ik)


def build_auts(k: bytes, opc_: bytes, rand: bytes, sqn_ms: bytes) -> bytes:
    """USIM: AUTS = (SQN_MS xor AK*) || MAC-S, MAC-S = f1*(SQN_MS, RAND, AMF=0000) (TS 33.102 §6.3.3)."""
    _check("SQN_MS", sqn_ms, 6)
    mac_s = f1star(k, opc_, rand, sqn_ms, AMF_RESYNC)
    return _xor(sqn_ms, f5star(k, opc_, rand)) + mac_s


def recover_sqn_ms(k: bytes, opc_: bytes, rand: bytes, auts: bytes) -> bytes | None:
    """HE/AuC: SQN_MS from AUTS if MAC-S verifies, else None (TS 33.102 §6.3.5)."""
    _check("AUTS", auts, 14)
    sqn_ms = _xor(auts[:6], f5star(k, opc_, rand))
    mac_s = f1star(k, opc_, rand, sqn_ms, AMF_RESYNC)
    if not hmac.compare_digest(mac_s, bytes(auts[6:])):
        return None
    return sqn_ms


@dataclass(frozen=True, slots=True)
class AutnCheck:
    """Result of the USIM's AUTN processing (TS 33.102 §6.3.3); ``mac_ok`` False means reject."""

    mac_ok: bool
    sqn: bytes
    amf: bytes
    res: bytes
    ck: bytes
    ik: bytes


def check_autn(k: bytes, opc_: bytes, rand: bytes, autn: bytes) -> AutnCheck:
    """USIM: recover SQN, verify XMAC == MAC-A and compute RES/CK/IK (TS 33.102 §6.3.3).

    Sequence-number freshness is the caller's job (see :class:`s2c.crypto.sqn.SqnWindow`).
    """
    _check("AUTN", autn, 16)
    res, ck, ik, ak = f2345(k, opc_, rand)
    sqn = _xor(autn[:6], ak)
    amf = bytes(autn[6:8])
    xmac, _ = f1(k, opc_, rand, sqn, amf)
    ok = hmac.compare_digest(xmac, bytes(autn[8:16]))
    return AutnCheck(mac_ok=ok, sqn=sqn, amf=amf, res=res, ck=ck, ik=ik)
