"""A daemon's ESP data plane, chosen by its ``dataplane`` param (docs/dataplane.md):

``userspace`` (default)  :class:`s2c.dataplane.DataPlane`: userspace ESP over the TUN device ``esp0``;
``xfrm``                 :class:`s2c.dataplane.xfrm.KernelEspBackend`: the host kernel's ESP (XFRM
                         states and policies); refused at start, with the detection's reason, where
                         the kernel has no ESP (as here);
``auto``                 ``xfrm`` where :func:`kernel_esp_available` says yes, else ``userspace``.

The ue and pdngw daemons both open, start and stop their data plane through here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

BACKENDS = ("userspace", "xfrm", "auto")


class DataPlaneConfigError(ValueError):
    """A ``dataplane`` param that names no backend."""


def choose_backend(value: Any, probe: Callable[[], tuple[bool, str]] | None = None) -> tuple[str, str]:
    """(``userspace`` | ``xfrm``, why) for a ``dataplane`` param value (None = the default)."""
    name = "userspace" if value in (None, "") else str(value).strip().lower()
    if name not in BACKENDS:
        raise DataPlaneConfigError(f"params.dataplane: {value!r} is not one of {', '.join(BACKENDS)}")
    if name == "userspace":
        return "userspace", "configured (the default)"
    if name == "xfrm":
        return "xfrm", "configured"
    if probe is None:
        from s2c.dataplane.xfrm import kernel_esp_available as probe
    ok, why = probe()
    return ("xfrm", f"auto: kernel ESP available ({why})") if ok else ("userspace", f"auto: no kernel ESP ({why})")


@dataclass(frozen=True)
class DataPlaneParams:
    """The data plane part of a ue/pdngw daemon's params (docs/control.md)."""

    dataplane: str | None = None  # userspace | xfrm | auto (None: userspace)
    workers: int = 1
    busy_poll_us: int = 0
    udp_gso: bool = False

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> "DataPlaneParams":
        """Read and check them; a bad ``dataplane`` name fails here, when the daemon loads its config."""
        from s2c.dataplane.plane import DEFAULT_BUSY_POLL_US, default_workers

        out = cls(p.get("dataplane"), int(p.get("workers") or default_workers()),
                  int(p.get("busy_poll_us", DEFAULT_BUSY_POLL_US)), bool(p.get("udp_gso", False)))
        choose_backend(out.dataplane, probe=lambda: (False, "not probed at load"))
        return out


def make_dataplane(dpp: DataPlaneParams, **kwargs: Any) -> tuple[Any, str, str]:
    """An unstarted data plane for these params: (plane, backend name, why). ``kwargs`` (tun_name,
    routes, bind4, bind6, ...) go to either backend's constructor; workers/busy polling/UDP GSO tune
    the userspace plane only."""
    backend, why = choose_backend(dpp.dataplane)
    if backend == "xfrm":
        from s2c.dataplane.xfrm import KernelEspBackend

        return KernelEspBackend(**kwargs), backend, why
    from s2c.dataplane.plane import DataPlane

    # steer_ike: IKE on port 4500 reaches the daemon's loop without a hop through the worker process
    return (DataPlane(workers=dpp.workers, busy_poll_us=dpp.busy_poll_us, udp_gso=dpp.udp_gso, steer_ike=True,
                      **kwargs), backend, why)


def loose_rp_filter() -> None:
    """Kernel ESP hands decrypted tunnel packets in on the outer interface (no TUN in between):
    strict IPv4 reverse-path filtering would drop them, so make it loose (2) namespace-wide."""
    for conf in ("all", "default"):
        try:
            with open(f"/proc/sys/net/ipv4/conf/{conf}/rp_filter", "w") as fh:
                fh.write("2")
        except OSError:
            pass


def stop_dataplane(dp: Any, log: logging.Logger) -> None:
    """Stop a data plane, logging (never raising) what goes wrong: daemon shutdown goes on."""
    if dp is None:
        return
    try:
        dp.stop()
    except Exception:  # noqa: BLE001
        log.exception("data plane stop")

