"""UE daemon (minimal shell): reports its identity and radios; IKEv2/DSMIPv6 come with their issues.

Params (docs/control.md): ``imsi``, ``k``, ``opc``, ``sqn``, ``apn``; ``radios`` lists the interfaces
the UE may attach with. Peers: ``pdngw`` (its S2c addresses), ``hss`` (informational).
"""

from __future__ import annotations

from typing import Any

from s2c.runtime.node import NodeDaemon


class UeDaemon(NodeDaemon):
    kind = "ue"

    def status(self) -> dict[str, Any]:
        params = self.config.params or {}
        return {
            "imsi": params.get("imsi"),
            "state": "detached",
            "radios": list(params.get("radios") or self.config.interfaces),
            "interfaces": self.config.interfaces,
            "pdngw": (self.config.peers or {}).get("pdngw"),
        }
