"""AKA sequence numbers SQN = SEQ || IND (3GPP TS 33.102 Annex C, profile of C.3).

One module for both ends so the HSS store and the software USIM agree:

* HE/AuC side: :func:`next_sqn` generates a fresh SQN from the stored SQN_HE
  (Annex C.1.1/C.1.2, C.3.2: SEQ_HE counter incremented by one per vector, IND values
  allocated cyclically) and :func:`resync_sqn_he` applies a verified SQN_MS from AUTS
  (§6.3.5).
* USIM side: :class:`SqnWindow` keeps the array SEQ_MS(0..a-1) and applies the freshness
  checks of Annex C.2.1 (``SEQ - SEQ_MS <= delta``), C.2.2 (``SEQ > SEQ_MS(IND)``) and the
  optional limit L (``SEQ_MS - SEQ < L``).

SQN values are 48-bit and may be given either as ``int`` or as 6 bytes (big endian).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "DELTA",
    "IND_BITS",
    "IND_COUNT",
    "SEQ_BITS",
    "SQN_MAX",
    "SqnResult",
    "SqnVerdict",
    "SqnWindow",
    "join_sqn",
    "next_sqn",
    "resync_sqn_he",
    "split_sqn",
    "sqn_from_bytes",
    "sqn_to_bytes",
]

SQN_BITS = 48
IND_BITS = 5  # Annex C.3.2 profile: IND is 5 bits, array of a = 32 entries.
SEQ_BITS = SQN_BITS - IND_BITS  # 43
IND_COUNT = 1 << IND_BITS
SQN_MAX = (1 << SQN_BITS) - 1
SEQ_MAX = (1 << SEQ_BITS) - 1
DELTA = 1 << 28  # Annex C.3.2 profile: Delta = 2^28.


def sqn_to_bytes(sqn: int) -> bytes:
    """48-bit SQN as 6 bytes, big endian."""
    if not 0 <= sqn <= SQN_MAX:
        raise ValueError("SQN out of range")
    return sqn.to_bytes(6, "big")


def sqn_from_bytes(b: bytes) -> int:
    """6-byte SQN to int."""
    if len(b) != 6:
        raise ValueError("SQN must be 6 bytes")
    return int.from_bytes(b, "big")


def _as_int(sqn: int | bytes) -> int:
    if isinstance(sqn, (bytes, bytearray)):
        return sqn_from_bytes(bytes(sqn))
    if not 0 <= sqn <= SQN_MAX:
        raise ValueError("SQN out of range")
    return sqn


def split_sqn(sqn: int | bytes) -> tuple[int, int]:
    """SQN -> (SEQ, IND) (Annex C.1.1)."""
    v = _as_int(sqn)
    return v >> IND_BITS, v & (IND_COUNT - 1)


def join_sqn(seq: int, ind: int) -> int:
    """(SEQ, IND) -> SQN (Annex C.1.1)."""
    if not 0 <= seq <= SEQ_MAX or not 0 <= ind < IND_COUNT:
        raise ValueError("SEQ or IND out of range")
    return (seq << IND_BITS) | ind


def next_sqn(sqn_he: int | bytes) -> int:
    """HE/AuC: the fresh SQN following SQN_HE: SEQ + 1, IND + 1 mod a (Annex C.1.2, C.3.2).

    The caller stores the result as the new SQN_HE. Raises ValueError at SEQ exhaustion.
    """
    seq, ind = split_sqn(sqn_he)
    if seq >= SEQ_MAX:
        raise ValueError("SEQ_HE exhausted")
    return join_sqn(seq + 1, (ind + 1) % IND_COUNT)


def resync_sqn_he(sqn_he: int | bytes, sqn_ms: int | bytes, delta: int = DELTA) -> int:
    """HE/AuC re-synchronisation with a verified SQN_MS (TS 33.102 §6.3.5).

    If the next SQN generated from SQN_HE would be accepted by the USIM (its SEQ is above
    SEQ_MS and not more than delta ahead), SQN_HE is kept; otherwise SQN_HE is reset to
    SQN_MS. Returns the new SQN_HE; the next vector then uses ``next_sqn(result)``.
    """
    he = _as_int(sqn_he)
    ms = _as_int(sqn_ms)
    seq_next, _ = split_sqn(next_sqn(he))
    seq_ms, _ = split_sqn(ms)
    if seq_ms < seq_next and seq_next - seq_ms <= delta:
        return he
    return ms


class SqnVerdict(Enum):
    """Outcome of the USIM freshness check (Annex C.2)."""

    FRESH = "fresh"
    OUT_OF_RANGE = "out_of_range"  # C.2.1: SEQ - SEQ_MS > delta, or C.2.2 limit L exceeded
    REPLAYED = "replayed"  # C.2.2: SEQ <= SEQ_MS(IND)


@dataclass(frozen=True, slots=True)
class SqnResult:
    """Verdict of :meth:`SqnWindow.check`; ``sqn_ms`` is what AUTS must carry on failure."""

    verdict: SqnVerdict
    sqn_ms: int

    @property
    def ok(self) -> bool:
        return self.verdict is SqnVerdict.FRESH


@dataclass
class SqnWindow:
    """USIM sequence-number state: array SEQ_MS(0..a-1) (TS 33.102 Annex C.2).

    ``sqn_ms`` is the highest previously accepted SQN anywhere in the array (SEQ with
    its IND), the value reported in AUTS. ``limit`` is the optional L of C.2.2 (None = off).
    """

    seq_ms: list[int] = field(default_factory=lambda: [0] * IND_COUNT)
    sqn_ms: int = 0
    delta: int = DELTA
    limit: int | None = None

    def __post_init__(self) -> None:
        if len(self.seq_ms) != IND_COUNT:
            raise ValueError(f"SEQ_MS array must have {IND_COUNT} entries")

    @classmethod
    def starting_at(cls, sqn_ms: int | bytes, **kw: int | None) -> SqnWindow:
        """A USIM that has already accepted SEQ up to that of ``sqn_ms`` in every IND slot.

        Every SEQ_MS(i) is set to SEQ(sqn_ms), so any SQN with SEQ <= SEQ(sqn_ms) is a replay.
        """
        seq, _ind = split_sqn(sqn_ms)
        return cls(seq_ms=[seq] * IND_COUNT, sqn_ms=_as_int(sqn_ms), **kw)  # type: ignore[arg-type]

    @property
    def highest_seq(self) -> int:
        return self.sqn_ms >> IND_BITS

    def check(self, sqn: int | bytes) -> SqnResult:
        """Verify freshness of a received SQN without changing state (Annex C.2.1, C.2.2)."""
        seq, ind = split_sqn(sqn)
        top = self.highest_seq
        if seq > top and seq - top > self.delta:
            return SqnResult(SqnVerdict.OUT_OF_RANGE, self.sqn_ms)
        if self.limit is not None and top - seq >= self.limit:
            return SqnResult(SqnVerdict.OUT_OF_RANGE, self.sqn_ms)
        if seq > self.seq_ms[ind]:
            return SqnResult(SqnVerdict.FRESH, self.sqn_ms)
        return SqnResult(SqnVerdict.REPLAYED, self.sqn_ms)

    def accept(self, sqn: int | bytes) -> SqnResult:
        """Check and, if fresh, record SQN: SEQ_MS(IND) := SEQ, update SQN_MS (Annex C.2.2)."""
        res = self.check(sqn)
        if res.ok:
            v = _as_int(sqn)
            seq, ind = split_sqn(v)
            self.seq_ms[ind] = seq
            if seq > self.highest_seq:
                self.sqn_ms = v
            res = SqnResult(SqnVerdict.FRESH, self.sqn_ms)
        return res

    def snapshot(self) -> tuple[Sequence[int], int]:
        """Copy of (SEQ_MS array, SQN_MS) for persistence."""
        return tuple(self.seq_ms), self.sqn_ms
