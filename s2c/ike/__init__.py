"""IKEv2 (RFC 7296) sans-IO cores: IkeInitiator (UE) and IkeResponder (PDN GW)."""

from s2c.ike.config import (  # noqa: F401
    AddressRequest, CertAuth, ChildConfig, CpAssignment, DSMIP6_CP_REQUEST, DynamicTs, EapAuth, EspProposal,
    Identity, IkeConfig, IkeProposal, PskAuth, Timers,
)
from s2c.ike.core import IkeInitiator, IkeResponder, wireshark_ikev2_decryption_table_line  # noqa: F401
from s2c.ike.events import *  # noqa: F401,F403
from s2c.ike.sa import ChildSa, IkeSa, ProtocolError, SaState  # noqa: F401
