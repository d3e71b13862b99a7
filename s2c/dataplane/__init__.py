"""Userspace IPsec data plane: TUN device, ESP forwarding workers and the ``DataPlane`` API.

See docs/dataplane.md. The default backend is userspace (this kernel has XFRM but no ESP);
:func:`s2c.dataplane.xfrm.kernel_esp_available` reports whether a kernel backend could be used.
"""

from s2c.dataplane.plane import DataPlane, tun_mtu_for
from s2c.dataplane.tun import TunDevice

__all__ = ["DataPlane", "TunDevice", "tun_mtu_for"]
