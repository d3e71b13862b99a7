"""Worker process entry: ``python -m s2c.dataplane.worker --role tx --ctrl FD --upcall FD ...``.

The parent (:class:`s2c.dataplane.plane.DataPlane`) creates the TUN device and sockets and passes their
file descriptors; the worker only runs :class:`s2c.dataplane.engine.Engine`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys


def _sock(fd: int) -> socket.socket | None:
    return socket.socket(fileno=fd) if fd >= 0 else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--role", required=True, choices=["tx", "rx", "both"])
    for name in ("ctrl", "upcall", "tun", "udp4", "udp6", "raw4", "raw6"):
        p.add_argument(f"--{name}", type=int, default=-1)
    p.add_argument("--cpu", type=int, default=-1)
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--busy-poll-us", type=int, default=0)
    p.add_argument("--udp-gso", choices=["on", "off", "env"], default="env")
    a = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    if a.cpu >= 0:
        try:
            os.sched_setaffinity(0, {a.cpu})
        except OSError:
            pass
    if a.nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, a.nice)
        except OSError:
            pass
    from s2c.dataplane.engine import Engine

    eng = Engine(
        a.role,
        ctrl=socket.socket(fileno=a.ctrl),
        upcall=socket.socket(fileno=a.upcall),
        tun_fd=a.tun,
        udp4=_sock(a.udp4),
        udp6=_sock(a.udp6),
        raw4=_sock(a.raw4),
        raw6=_sock(a.raw6),
        busy_poll_us=a.busy_poll_us,
        udp_gso={"on": True, "off": False}.get(a.udp_gso),
    )
    prof_dir = os.environ.get("S2C_ESP_PROFILE")  # debugging aid: cProfile each worker into this directory
    if prof_dir:
        import cProfile

        cProfile.runctx("eng.run()", globals(), {"eng": eng}, os.path.join(prof_dir, f"{a.role}-{os.getpid()}.prof"))
    else:
        eng.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
