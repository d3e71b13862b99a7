"""PDN GW daemon (minimal shell): reports its S2c addresses and HSS peer; IKEv2/HA come with their issues.

Params (docs/control.md): ``s2c`` (addresses the UE reaches it on), ``home_prefix``; peers: ``hss``
(``diameter``: ``[address, port]``).
"""

from __future__ import annotations

from typing import Any

from s2c.runtime.node import NodeDaemon


class PdnGwDaemon(NodeDaemon):
    kind = "pdngw"

    def status(self) -> dict[str, Any]:
        params = self.config.params or {}
        return {
            "s2c": params.get("s2c"),
            "hss": (self.config.peers or {}).get("hss"),
            "bindings": 0,
            "interfaces": self.config.interfaces,
        }
