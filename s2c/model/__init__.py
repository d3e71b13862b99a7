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
from .scenario import Scenario, Settings, Step, Subscriber, UeSpec, load_scenario
from .steps import STEP_SCHEMAS, FieldSpec, ScenarioState, StepSchema, register_step
from .topology_loader import load_topology

__all__ = [
    "DAEMON_KINDS",
    "FORWARDING_KINDS",
    "AccessNetwork",
    "AccessType",
    "Endpoint",
    "FieldSpec",
    "Interface",
    "Issue",
    "Link",
    "ModelError",
    "Nat44",
    "Node",
    "NodeKind",
    "Route",
    "STEP_SCHEMAS",
    "Scenario",
    "ScenarioState",
    "Settings",
    "Step",
    "StepSchema",
    "Subscriber",
    "Topology",
    "UeSpec",
    "load_scenario",
    "load_topology",
    "register_step",
]
