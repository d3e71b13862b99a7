"""Userspace IPsec ESP: security associations, anti-replay and the SPD/SAD (sans-IO)."""

from s2c.codec.esp import (
    EspError,
    IntegrityFailure,
    MalformedEsp,
    ReplayedPacket,
    SequenceOverflow,
    UnknownSpi,
)
from s2c.esp.replay import ReplayWindow
from s2c.esp.sa import Direction, EncrAlg, EspSa, IntegAlg, Mode

__all__ = [
    "Direction",
    "EncrAlg",
    "EspError",
    "EspSa",
    "IntegAlg",
    "IntegrityFailure",
    "MalformedEsp",
    "Mode",
    "ReplayWindow",
    "ReplayedPacket",
    "SequenceOverflow",
    "UnknownSpi",
]
