"""Pure model: topology and scenario dataclasses, YAML loading and validation (docs/scenarios.md)."""

from .errors import Issue, ModelError
from .topology import (
    DAEMON_KINDS,
    FORWARDING_KINDS,
    AccessNetwork,
    AccessType,
    Endpoint,
    Interface,
    Link,
    Nat44,
    Node,
    NodeKind,
    Route,
    Topology,
)
from .topology_loader import load_topology

__all__ = [
    "DAEMON_KINDS",
    "FORWARDING_KINDS",
    "AccessNetwork",
    "AccessType",
    "Endpoint",
    "Interface",
    "Issue",
    "Link",
    "ModelError",
    "Nat44",
    "Node",
    "NodeKind",
    "Route",
    "Topology",
    "load_topology",
]
