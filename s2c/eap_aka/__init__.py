"""EAP-AKA / EAP-AKA' sans-IO cores: :class:`AkaPeer` (UE with a software :class:`Usim`) and
:class:`AkaServer` (3GPP AAA; vectors come from the HSS via events). RFC 4187, RFC 5448/9048."""

from s2c.codec.eap import EapType
from s2c.crypto.milenage import AuthVector

from .errors import ProtocolError
from .events import (
    AuthenticationFailed,
    AuthenticationRejected,
    AuthenticationSucceeded,
    Event,
    SynchronizationFailureReported,
    VectorRequired,
)
from .identity import imsi_from_nai, permanent_nai
from .peer import AkaPeer, PeerState
from .server import AkaServer, ServerState
from .usim import MacFailure, SyncFailure, UmtsAuthResult, Usim

__all__ = [
    "AkaPeer",
    "AkaServer",
    "AuthVector",
    "AuthenticationFailed",
    "AuthenticationRejected",
    "AuthenticationSucceeded",
    "EapType",
    "Event",
    "MacFailure",
    "PeerState",
    "ProtocolError",
    "ServerState",
    "SyncFailure",
    "SynchronizationFailureReported",
    "UmtsAuthResult",
    "Usim",
    "VectorRequired",
    "imsi_from_nai",
    "permanent_nai",
]
