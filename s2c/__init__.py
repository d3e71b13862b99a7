"""s2c-testbed: EPS S2c (DSMIPv6 over IKEv2/ESP) testbed emulator.

Layers (see docs/architecture.md):
- ``s2c.codec``, ``s2c.crypto``: pure bytes <-> dataclasses and primitives.
- ``s2c.ike``, ``s2c.eap_aka``, ``s2c.mip6``, ``s2c.diameter``: sans-IO state machines.
- ``s2c.model``: pure topology/scenario model, YAML loading and validation.
- ``s2c.runtime``: asyncio helpers shared by the node daemons (control socket, logging).
- ``s2c.lab``: IO orchestration (netns/docker backends, runner, reports, CLI).
"""

__version__ = "0.1.0"
