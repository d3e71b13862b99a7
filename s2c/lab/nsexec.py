"""Low-level network-namespace plumbing: create, enter, inspect and remove named namespaces.

Namespaces are created the way iproute2 does (``ip netns add``): a file under /run/netns is bind
mounted onto the namespace of a process that called ``unshare(CLONE_NEWNET)``. Here one short forked
child creates *all* namespaces of a lab in a row (unshare, bind mount, write the namespace's sysctls,
open a netlink socket inside it) and hands each socket back over SCM_RIGHTS, so a whole lab costs a
single fork instead of one per node. The parent never changes its own namespace.

Commands run inside a namespace through ``nsenter --net=PATH`` (which execs, so the pid is the
command's pid).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field

NETNS_RUN_DIR = "/run/netns"

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
NETLINK_ROUTE = 0

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lc = ctypes.CDLL(None, use_errno=True)
        for fn in ("unshare", "mount", "umount2", "setns"):
            getattr(lc, fn)  # resolve symbols now, never first in a forked child
        _libc = lc
    return _libc


def netns_path(name: str) -> str:
    return f"{NETNS_RUN_DIR}/{name}"


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


@dataclass
class NsSpec:
    """A namespace to create: its name and the /proc/sys/net values to write inside it."""

    name: str
    sysctls: list[tuple[str, str]] = field(default_factory=list)  # ("ipv4/ip_forward", "1")
    lo_up: bool = True


class NsCreateError(OSError):
    pass


def _share_rundir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so bind mounts propagate."""
    lc = libc()
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    rundir = NETNS_RUN_DIR.encode()
    if lc.mount(b"", rundir, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if lc.mount(rundir, rundir, b"none", MS_BIND | MS_REC, None) != 0:
        raise OSError(ctypes.get_errno(), "bind mount of /run/netns failed")
    if lc.mount(b"", rundir, b"none", MS_SHARED | MS_REC, None) != 0:
        raise OSError(ctypes.get_errno(), "making /run/netns shared failed")


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _set_up(ifname: bytes) -> None:
    """Set IFF_UP on ``ifname`` in the current namespace (ioctl: no netlink round trip)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh14x", ifname, 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh14x", ifname, flags | IFF_UP))


def _child_create(ctrl: socket.socket, specs: list[NsSpec]) -> None:
    """Runs in the forked child: never returns."""
    code = 0
    try:
        lc = libc()
        _share_rundir()
        for spec in specs:
            path = netns_path(spec.name).encode()
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
            ctrl.send(b"~" + spec.name.encode())  # the parent owns this path from now on
            if lc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"unshare for {spec.name} failed")
            if lc.mount(b"/proc/self/ns/net", path, b"none", MS_BIND, None) != 0:
                raise OSError(ctypes.get_errno(), f"bind mount of {spec.name} failed")
            for key, value in spec.sysctls:
                with open(f"/proc/sys/net/{key}", "w") as fh:
                    fh.write(value)
            if spec.lo_up:
                _set_up(b"lo")
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
            socket.send_fds(ctrl, [b"+" + spec.name.encode()], [sock.fileno()])
            sock.close()
        ctrl.send(b".")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        try:
            ctrl.send(b"!" + f"{type(exc).__name__}: {exc}".encode(errors="replace")[:3000])
        except OSError:
            pass
        code = 1
    finally:
        os._exit(code)


def create_namespaces(specs: list[NsSpec], timeout: float = 10.0) -> dict[str, int]:
    """Create every namespace in ``specs``; return name -> fd of a NETLINK_ROUTE socket inside it.

    On failure, namespaces created so far by this call are removed and NsCreateError is raised.
    """
    if not specs:
        return {}
    libc()  # dlopen in the parent: the child of a threaded process must not take loader locks
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        parent.close()
        _child_create(child, specs)
    child.close()
    fds: dict[str, int] = {}
    owned: list[str] = []
    error: str | None = None
    deadline = time.monotonic() + timeout
    try:
        parent.settimeout(timeout)
        while True:
            parent.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg, got, _flags, _addr = socket.recv_fds(parent, 4096, 1)
            except socket.timeout:
                error = "timed out creating namespaces"
                break
            if not msg:
                error = "namespace creator exited early"
                break
            if msg == b".":
                break
            if msg.startswith(b"!"):
                error = msg[1:].decode(errors="replace")
                break
            if msg.startswith(b"~"):
                owned.append(msg[1:].decode())
                continue
            fds[msg[1:].decode()] = got[0]
    finally:
        parent.close()
        if error:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
    if error:
        for fd in fds.values():
            os.close(fd)
        for name in owned:
            remove_namespace(name)
        raise NsCreateError(errno.EIO, error)
    return fds


def remove_namespace(name: str) -> bool:
    """Unmount and unlink /run/netns/<name>; True if it existed. The kernel frees the namespace
    once no process, socket or mount refers to it any more."""
    path = netns_path(name)
    if not os.path.lexists(path):
        return False
    libc().umount2(path.encode(), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def ns_inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_netns(paths: list[str]) -> dict[str, list[int]]:
    """path -> pids whose network namespace is that namespace (via /proc/<pid>/ns/net inodes)."""
    wanted: dict[tuple[int, int], str] = {}
    for p in paths:
        key = ns_inode(p)
        if key is not None:
            wanted[key] = p
    result: dict[str, list[int]] = {p: [] for p in paths}
    if not wanted:
        return result
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        key = ns_inode(f"/proc/{entry}/ns/net")
        if key in wanted:
            result[wanted[key]].append(pid)
    return result


def pids_entering(prefix: str = "", names: list[str] | None = None) -> list[int]:
    """Pids still in ``nsenter --net=/run/netns/<prefix>...`` (or exactly one of ``names``):
    about to enter one of the namespaces, so not yet found by inode. A cleanup racing a spawn
    must not miss them."""
    want = f"--net={NETNS_RUN_DIR}/{prefix}".encode()
    exact = {f"--net={NETNS_RUN_DIR}/{n}".encode() for n in names} if names is not None else None
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"nsenter"):
            continue
        if exact is not None:
            hit = any(a in exact for a in argv[1:4])
        else:
            hit = any(a.startswith(want) for a in argv[1:4])
        if hit:
            out.append(int(entry))
    return out


def kill_pids(pids: list[int], grace: float = 1.0) -> list[int]:
    """SIGTERM, wait up to ``grace`` s, SIGKILL what is left; return the pids that were signalled."""
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = list(signalled)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _exists(p)]
        if alive:
            time.sleep(0.01)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return signalled


def _exists(pid: int) -> bool:
    # reap our own children so they do not linger as zombies (which os.kill still "finds")
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def nsenter_argv(path: str, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={path}", "--", *argv]


def run_in_netns(
    path: str, argv: list[str], *, input: str | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess:
    """Run a command to completion inside the namespace at ``path`` (text in/out captured)."""
    return subprocess.run(
        nsenter_argv(path, argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
