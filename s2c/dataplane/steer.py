"""Port 4500 split between the IKE daemon and the ESP worker in the kernel (RFC 3948 §2.2 demultiplexing).

Both sockets are bound to the same address and port in one SO_REUSEPORT group: the worker's first
(index 0), the daemon's second (index 1). A classic BPF program attached with SO_ATTACH_REUSEPORT_CBPF
looks at the first 32 bits of the UDP payload (the kernel runs it with the data pointer just past the
UDP header): four zero octets - the non-ESP marker - mean IKE and select the daemon's socket; anything
else (an ESP SPI, which is never 0) selects the worker's. A payload shorter than four octets (a NAT
keepalive, 0xFF) makes the load fail, which returns 0: the worker, which counts keepalives. So an
IKE message on port 4500 reaches the daemon's asyncio loop directly, instead of waking the worker
process and being relayed to the daemon over a socketpair (one process hop per IKE message).
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = 51
# struct sock_filter {__u16 code; __u8 jt; __u8 jf; __u32 k;} (include/uapi/linux/filter.h)
_INSN = struct.Struct("=HBBI")
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
WORKER_INDEX, IKE_INDEX = 0, 1


def ike_steering_program() -> bytes:
    """The cBPF program: ``ld [0]; jeq #0, ike, esp; ike: ret #1; esp: ret #0``."""
    return b"".join((
        _INSN.pack(BPF_LD_W_ABS, 0, 0, 0),
        _INSN.pack(BPF_JEQ_K, 0, 1, 0),
        _INSN.pack(BPF_RET_K, 0, 0, IKE_INDEX),
        _INSN.pack(BPF_RET_K, 0, 0, WORKER_INDEX),
    ))


def attach_reuseport_cbpf(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_REUSEPORT_CBPF on ``sock``'s reuseport group (OSError if the kernel refuses).
    ``struct sock_fprog {unsigned short len; struct sock_filter *filter;}`` holds a pointer, so the
    program lives in a ctypes buffer for the duration of the call (the kernel copies it)."""
    if len(program) % _INSN.size:
        raise ValueError("a cBPF program is a whole number of 8-octet instructions")
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HP", len(program) // _INSN.size, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def open_ike_socket(worker_sock: socket.socket) -> socket.socket | None:
    """A second socket on ``worker_sock``'s address/port (which must have SO_REUSEPORT) that receives
    only IKE (non-ESP-marker) datagrams; None where the kernel cannot steer (then the worker keeps
    relaying IKE, as without this)."""
    fam = worker_sock.family
    addr = worker_sock.getsockname()
    try:
        # the program goes on the group first: until the second socket joins, index 1 does not exist
        # and the kernel falls back to the only member, so no datagram can reach the wrong socket
        attach_reuseport_cbpf(worker_sock, ike_steering_program())
    except OSError:
        return None
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(addr[:2] if fam == socket.AF_INET else addr[:4])
    except OSError:
        s.close()
        return None
    s.setblocking(False)
    return s
