"""Software USIM: MILENAGE + SQN freshness (TS 33.102 §6.3.3, Annex C; TS 31.102 AUTHENTICATE).

Pure and deterministic: state is K, OPc and the :class:`~s2c.crypto.sqn.SqnWindow`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s2c.crypto import milenage
from s2c.crypto.sqn import SqnWindow, sqn_from_bytes, sqn_to_bytes

__all__ = ["MacFailure", "SyncFailure", "UmtsAuthResult", "Usim"]


@dataclass(frozen=True, slots=True)
class UmtsAuthResult:
    """Successful AKA at the USIM: RES, CK, IK and the accepted SQN/AMF (TS 33.102 §6.3.3)."""

    res: bytes
    ck: bytes = field(repr=False)
    ik: bytes = field(repr=False)
    sqn: int
    amf: bytes


@dataclass(frozen=True, slots=True)
class SyncFailure:
    """SQN not fresh: AUTS = (SQN_MS xor AK*) || MAC-S to return to the network (TS 33.102 §6.3.3)."""

    auts: bytes
    sqn_ms: int


@dataclass(frozen=True, slots=True)
class MacFailure:
    """XMAC != MAC-A: the network is not authentic (TS 33.102 §6.3.3)."""


class Usim:
    """A USIM holding K, OPc and the SEQ_MS array."""

    def __init__(self, k: bytes, opc: bytes, window: SqnWindow | None = None) -> None:
        if len(k) != 16 or len(opc) != 16:
            raise ValueError("K and OPc must be 16 bytes")
        self._k = bytes(k)
        self._opc = bytes(opc)
        self.window = window if window is not None else SqnWindow()

    @classmethod
    def from_op(cls, k: bytes, op: bytes, window: SqnWindow | None = None) -> Usim:
        return cls(k, milenage.opc(k, op), window)

    @property
    def sqn_ms(self) -> int:
        return self.window.sqn_ms

    def authenticate(self, rand: bytes, autn: bytes) -> UmtsAuthResult | SyncFailure | MacFailure:
        """Run AUTHENTICATE: verify MAC-A, then SQN freshness, then accept SQN (TS 33.102 §6.3.3)."""
        chk = milenage.check_autn(self._k, self._opc, rand, autn)
        if not chk.mac_ok:
            return MacFailure()
        verdict = self.window.accept(chk.sqn)
        if not verdict.ok:
            sqn_ms = verdict.sqn_ms
            auts = milenage.build_auts(self._k, self._opc, rand, sqn_to_bytes(sqn_ms))
            return SyncFailure(auts=auts, sqn_ms=sqn_ms)
        return UmtsAuthResult(res=chk.res, ck=chk.ck, ik=chk.ik, sqn=sqn_from_bytes(chk.sqn), amf=chk.amf)
