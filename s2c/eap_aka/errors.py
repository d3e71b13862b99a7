"""Errors raised by the EAP-AKA/AKA' state machines."""

from __future__ import annotations


class ProtocolError(Exception):
    """Input that is illegal in the current state (malformed, wrong Code/Identifier/Subtype,
    or anything after the exchange ended). The core's state is unchanged; daemons count,
    log and drop it (ARCHITECTURE "Sans-IO cores")."""
