"""Anti-replay sliding window (RFC 4303 §3.4.3, Appendix A2; ESN high-bit inference Appendix A3).

Sequence numbers handled here are full 64-bit values when ESN is used (the low 32 bits otherwise).
The window is a Python int used as a bitmap: bit ``i`` set means ``top - i`` was received.
Callers check first (cheap), verify the ICV, then ``update`` - so a forged packet never moves the window.
"""

from __future__ import annotations

_M32 = 0xFFFFFFFF


class ReplayWindow:
    """Receive window of ``size`` sequence numbers, right edge ``top`` (RFC 4303 Appendix A2)."""

    __slots__ = ("size", "top", "bitmap", "_mask")

    def __init__(self, size: int = 64) -> None:
        if size < 32:
            raise ValueError("replay window must be at least 32 (RFC 4303 §3.4.3)")
        self.size = size
        self.top = 0
        self.bitmap = 0
        self._mask = (1 << size) - 1

    def check(self, seq: int) -> bool:
        """True if ``seq`` is new and not left of the window."""
        top = self.top
        if seq > top:
            return True
        diff = top - seq
        if diff >= self.size or seq == 0:
            return False
        return not (self.bitmap >> diff) & 1

    def update(self, seq: int) -> None:
        """Mark ``seq`` as received (call only after the ICV verified)."""
        top = self.top
        if seq > top:
            shift = seq - top
            self.bitmap = (((self.bitmap << shift) | 1) & self._mask) if shift < self.size else 1
            self.top = seq
        else:
            self.bitmap |= 1 << (top - seq)

    def infer_esn(self, seq_lo: int) -> int:
        """Reconstruct the 64-bit sequence number from its transmitted low half (RFC 4303 Appendix A3)."""
        top = self.top
        tl = top & _M32
        th = top >> 32
        w = self.size
        if tl >= w - 1:
            # window lies within one sub-space
            seq_hi = th + 1 if seq_lo < tl - w + 1 else th
        else:
            # window spans two sub-spaces
            seq_hi = th - 1 if (seq_lo >= ((tl - w + 1) & _M32) and th > 0) else th
        return (seq_hi << 32) | seq_lo
