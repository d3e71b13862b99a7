"""Events emitted by :class:`AkaPeer` and :class:`AkaServer` (past tense, frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class VectorRequired:
    """Server needs an authentication vector for ``imsi`` (SWx MAR / TS 29.273 §8.1.2.1).

    ``resync`` is ``(rand, auts)`` after a Synchronization-Failure (TS 33.102 §6.3.5): the HSS
    must recover SQN_MS from AUTS, re-synchronise and return a fresh vector.
    """

    imsi: str
    identity: bytes
    resync: tuple[bytes, bytes] | None = None


@dataclass(frozen=True, slots=True)
class AuthenticationSucceeded:
    """EAP-AKA/AKA' full authentication completed; MSK/EMSK per RFC 4187 §7 / RFC 5448 §3.3."""

    msk: bytes = field(repr=False)
    emsk: bytes = field(repr=False)
    imsi: str
    identity: bytes = b""
    method: int = 23


@dataclass(frozen=True, slots=True)
class AuthenticationFailed:
    """The exchange ended without authentication; ``reason`` is a short machine-friendly text."""

    reason: str


@dataclass(frozen=True, slots=True)
class SynchronizationFailureReported:
    """Peer answered a Challenge with Synchronization-Failure carrying SQN_MS (RFC 4187 §6.3.1... §9.6)."""

    sqn_ms: int


@dataclass(frozen=True, slots=True)
class AuthenticationRejected:
    """Peer refused the network (bad AUTN MAC, AMF separation bit, KDF) with Authentication-Reject (RFC 4187 §9.5)."""

    reason: str


Event = VectorRequired | AuthenticationSucceeded | AuthenticationFailed | SynchronizationFailureReported | AuthenticationRejected
