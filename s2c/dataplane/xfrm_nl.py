"""NETLINK_XFRM messages as dataclasses (include/uapi/linux/xfrm.h, include/uapi/linux/netlink.h).

Pure sans-IO codec: ``encode_msg(body, seq=..)`` -> bytes and ``decode_msgs(buf)`` -> [(NlHeader, body)],
no sockets. Struct layouts are the x86_64/aarch64 ones (natural alignment, the kernel's own ABI;
xfrm_usersa_info is 224 bytes, xfrm_userpolicy_info 168, xfrm_user_tmpl 64, xfrm_selector 56).
Malformed input raises :class:`XfrmDecodeError`; a kernel NLMSG_ERROR with a non-zero errno becomes
:class:`XfrmKernelError` through :func:`raise_for_error` (both subclass ``ValueError``).

Mapping from the project's ESP model: :func:`sa_from_esp` (an ``s2c.esp.sa.EspSa``) and
:func:`selectors_from` (an ``s2c.esp.spd.Selector``; port ranges become port/mask blocks).
"""

from __future__ import annotations

import enum
import errno as _errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Union

XFRM_INF = (1 << 64) - 1
NETLINK_XFRM = 6
IPPROTO_ESP = 50
IPPROTO_MH = 135
AF_INET, AF_INET6 = 2, 10
UDP_ENCAP_ESPINUDP = 2
NLMSG_HDRLEN = 16


class XfrmDecodeError(ValueError):
    """Malformed NETLINK_XFRM bytes (short struct, bad attribute length, bad framing)."""


class XfrmKernelError(XfrmDecodeError):
    """The kernel answered a request with NLMSG_ERROR and a non-zero errno (netlink(7))."""

    def __init__(self, err: int, msg_type: int, ext_msg: str = "", what: str = "") -> None:
        self.errno = err
        self.msg_type = msg_type
        self.ext_msg = ext_msg
        self.what = what
        try:
            tname = XfrmMsgType(msg_type).name
        except ValueError:
            tname = f"message type {msg_type}"
        ename = _errno.errorcode.get(err, str(err))
        text = f"kernel refused {tname}"
        if what:
            text += f" ({what})"
        text += f": {ename} ({os.strerror(err)})"
        if ext_msg:
            text += f": {ext_msg}"
        super().__init__(text)


class NlMsgType(enum.IntEnum):
    """Netlink control message types (include/uapi/linux/netlink.h)."""

    NLMSG_NOOP = 1
    NLMSG_ERROR = 2
    NLMSG_DONE = 3


class NlFlag(enum.IntFlag):
    """nlmsghdr flags (netlink.h)."""

    NLM_F_REQUEST = 0x01
    NLM_F_MULTI = 0x02
    NLM_F_ACK = 0x04
    NLM_F_ECHO = 0x08
    NLM_F_ROOT = 0x100  # also NLM_F_REPLACE / NLM_F_CAPPED
    NLM_F_MATCH = 0x200  # also NLM_F_EXCL / NLM_F_ACK_TLVS
    NLM_F_DUMP = 0x300
    NLM_F_CREATE = 0x400


NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
NETLINK_EXT_ACK = 11
NETLINK_CAP_ACK = 10


class XfrmMsgType(enum.IntEnum):
    """XFRM_MSG_* (xfrm.h)."""

    XFRM_MSG_NEWSA = 0x10
    XFRM_MSG_DELSA = 0x11
    XFRM_MSG_GETSA = 0x12
    XFRM_MSG_NEWPOLICY = 0x13
    XFRM_MSG_DELPOLICY = 0x14
    XFRM_MSG_GETPOLICY = 0x15
    XFRM_MSG_ALLOCSPI = 0x16
    XFRM_MSG_ACQUIRE = 0x17
    XFRM_MSG_EXPIRE = 0x18
    XFRM_MSG_UPDPOLICY = 0x19
    XFRM_MSG_UPDSA = 0x1A
    XFRM_MSG_POLEXPIRE = 0x1B
    XFRM_MSG_FLUSHSA = 0x1C
    XFRM_MSG_FLUSHPOLICY = 0x1D
    XFRM_MSG_NEWAE = 0x1E
    XFRM_MSG_GETAE = 0x1F
    XFRM_MSG_REPORT = 0x20
    XFRM_MSG_MIGRATE = 0x21


class XfrmAttr(enum.IntEnum):
    """XFRMA_* attribute types (xfrm.h ``enum xfrm_attr_type_t``)."""

    XFRMA_UNSPEC = 0
    XFRMA_ALG_AUTH = 1
    XFRMA_ALG_CRYPT = 2
    XFRMA_ALG_COMP = 3
    XFRMA_ENCAP = 4
    XFRMA_TMPL = 5
    XFRMA_SA = 6
    XFRMA_POLICY = 7
    XFRMA_SEC_CTX = 8
    XFRMA_LTIME_VAL = 9
    XFRMA_REPLAY_VAL = 10
    XFRMA_REPLAY_THRESH = 11
    XFRMA_ETIMER_THRESH = 12
    XFRMA_SRCADDR = 13
    XFRMA_COADDR = 14
    XFRMA_LASTUSED = 15
    XFRMA_POLICY_TYPE = 16
    XFRMA_MIGRATE = 17
    XFRMA_ALG_AEAD = 18
    XFRMA_KMADDRESS = 19
    XFRMA_ALG_AUTH_TRUNC = 20
    XFRMA_MARK = 21
    XFRMA_TFCPAD = 22
    XFRMA_REPLAY_ESN_VAL = 23
    XFRMA_SA_EXTRA_FLAGS = 24
    XFRMA_PROTO = 25
    XFRMA_ADDRESS_FILTER = 26
    XFRMA_PAD = 27
    XFRMA_OFFLOAD_DEV = 28
    XFRMA_SET_MARK = 29
    XFRMA_SET_MARK_MASK = 30
    XFRMA_IF_ID = 31
    XFRMA_MTIMER_THRESH = 32


class XfrmMode(enum.IntEnum):
    """XFRM_MODE_* (xfrm.h)."""

    XFRM_MODE_TRANSPORT = 0
    XFRM_MODE_TUNNEL = 1
    XFRM_MODE_ROUTEOPTIMIZATION = 2
    XFRM_MODE_IN_TRIGGER = 3
    XFRM_MODE_BEET = 4


class XfrmPolicyDir(enum.IntEnum):
    """XFRM_POLICY_IN/OUT/FWD (xfrm.h); also the per-socket policy direction."""

    XFRM_POLICY_IN = 0
    XFRM_POLICY_OUT = 1
    XFRM_POLICY_FWD = 2


class XfrmPolicyAction(enum.IntEnum):
    """XFRM_POLICY_ALLOW/BLOCK (xfrm.h)."""

    XFRM_POLICY_ALLOW = 0
    XFRM_POLICY_BLOCK = 1


XFRM_STATE_NOECN = 1
XFRM_STATE_DECAP_DSCP = 2
XFRM_STATE_NOPMTUDISC = 4
XFRM_STATE_WILDRECV = 8
XFRM_STATE_ICMP = 16
XFRM_STATE_AF_UNSPEC = 32
XFRM_STATE_ALIGN4 = 64
XFRM_STATE_ESN = 128
XFRM_SA_XFLAG_DONT_ENCAP_DSCP = 1
XFRM_SA_XFLAG_OSEQ_MAY_WRAP = 2
XFRM_POLICY_LOCALOK = 1
XFRM_POLICY_ICMP = 2
XFRM_POLICY_TYPE_MAIN = 0
XFRM_POLICY_TYPE_SUB = 1
XFRMNLGRP_ACQUIRE, XFRMNLGRP_EXPIRE, XFRMNLGRP_SA, XFRMNLGRP_POLICY = 1, 2, 3, 4  # multicast groups

# ---------------------------------------------------------------------------------------- addresses


def _family_of(addr: str) -> int:
    return AF_INET6 if ":" in addr else AF_INET


def addr_pack(addr: str) -> bytes:
    """xfrm_address_t (16 bytes): IPv4 in the first 4 bytes, '' = all zero."""
    if not addr:
        return bytes(16)
    try:
        return ipaddress.ip_address(addr).packed.ljust(16, b"\0")
    except ValueError as e:
        raise ValueError(f"bad address {addr!r}") from e


def addr_unpack(raw: bytes, family: int) -> str:
    """xfrm_address_t -> text for ``family`` (AF_INET/AF_INET6); other families give ''."""
    if family == AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == AF_INET6:
        return str(ipaddress.IPv6Address(raw[:16]))
    return "" if raw == bytes(16) else raw.hex()


def _need(buf: bytes, n: int, what: str) -> None:
    if len(buf) < n:
        raise XfrmDecodeError(f"{what}: {len(buf)} bytes, need {n}")


# ---------------------------------------------------------------------------------------- structs
_SEL = struct.Struct("=16s16sHHHHHBBBxxxiI")  # 56
_ID = struct.Struct("=16sIBxxx")  # 24 (spi in network order handled separately)
_LFT_CFG = struct.Struct("=8Q")  # 64
_LFT_CUR = struct.Struct("=4Q")  # 32
_STATS = struct.Struct("=3I")  # 12
_USERSA_TAIL = struct.Struct("=IIHBBBxxxxxxx")  # seq reqid family mode replay_window flags + pad -> 224
_USERSA_ID = struct.Struct("=16sIHBx")  # 24
_POLICY_TAIL = struct.Struct("=IIBBBBxxxx")  # priority index dir action flags share + pad -> 168
_POLICY_ID_TAIL = struct.Struct("=IBxxx")  # 56 + 8 = 64
_TMPL = struct.Struct("=24sHxx16sIBBBxIII")  # 64
_ALGO = struct.Struct("=64sI")  # 68 + key
_ALGO_X = struct.Struct("=64sII")  # 72 + key (aead icv_len / auth trunc_len)
_ENCAP = struct.Struct("=HHHxx16s")  # 24 (ports in network order handled separately)
_REPLAY = struct.Struct("=III")  # 12
_REPLAY_ESN = struct.Struct("=6I")  # 24 + 4 * bmp_len
_MARK = struct.Struct("=II")
_POLICY_TYPE = struct.Struct("=BxHBx")  # type, reserved1 (u16, aligned), reserved2 -> 6
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_NLHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")

SIZES = {
    "xfrm_selector": _SEL.size,
    "xfrm_id": _ID.size,
    "xfrm_lifetime_cfg": _LFT_CFG.size,
    "xfrm_lifetime_cur": _LFT_CUR.size,
    "xfrm_stats": _STATS.size,
    "xfrm_usersa_info": _SEL.size + _ID.size + 16 + _LFT_CFG.size + _LFT_CUR.size + _STATS.size + _USERSA_TAIL.size,
    "xfrm_usersa_id": _USERSA_ID.size,
    "xfrm_userpolicy_info": _SEL.size + _LFT_CFG.size + _LFT_CUR.size + _POLICY_TAIL.size,
    "xfrm_userpolicy_id": _SEL.size + _POLICY_ID_TAIL.size,
    "xfrm_user_tmpl": _TMPL.size,
    "xfrm_algo": _ALGO.size,
    "xfrm_algo_aead": _ALGO_X.size,
    "xfrm_algo_auth": _ALGO_X.size,
    "xfrm_encap_tmpl": _ENCAP.size,
    "xfrm_replay_state": _REPLAY.size,
    "xfrm_replay_state_esn": _REPLAY_ESN.size,
    "xfrm_mark": _MARK.size,
    "xfrm_userpolicy_type": _POLICY_TYPE.size,
    "nlmsghdr": _NLHDR.size,
}


def _be16(v: int) -> int:
    return socket.htons(v)


class _FlatStruct:
    """A C struct of plain integers, one dataclass field per member in order: ``_struct`` packs them,
    ``_what`` names the struct in decode errors. Subclasses are frozen dataclasses."""

    _struct: struct.Struct
    _what = ""

    def encode(self) -> bytes:
        return self._struct.pack(*(getattr(self, f.name) for f in fields(self)))  # type: ignore[arg-type]

    @classmethod
    def decode(cls, buf: bytes) -> Any:
        _need(buf, cls._struct.size, cls._what)
        return cls(*cls._struct.unpack_from(buf))


@dataclass(frozen=True)
class XfrmSelector:
    """struct xfrm_selector (xfrm.h): the packets a policy or SA applies to; ports are port/mask."""

    daddr: str = ""
    saddr: str = ""
    dport: int = 0
    dport_mask: int = 0
    sport: int = 0
    sport_mask: int = 0
    family: int = 0
    prefixlen_d: int = 0
    prefixlen_s: int = 0
    proto: int = 0
    ifindex: int = 0
    user: int = 0

    def encode(self) -> bytes:
        return _SEL.pack(addr_pack(self.daddr), addr_pack(self.saddr), _be16(self.dport), _be16(self.dport_mask),
                         _be16(self.sport), _be16(self.sport_mask), self.family, self.prefixlen_d, self.prefixlen_s,
                         self.proto, self.ifindex, self.user)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmSelector":
        _need(buf, _SEL.size, "xfrm_selector")
        d, s, dp, dpm, sp, spm, fam, pd, ps, proto, ifi, user = _SEL.unpack_from(buf)
        return cls(addr_unpack(d, fam), addr_unpack(s, fam), _be16(dp), _be16(dpm), _be16(sp), _be16(spm), fam, pd,
                   ps, proto, ifi, user)


@dataclass(frozen=True)
class XfrmId:
    """struct xfrm_id (xfrm.h): destination, SPI, protocol - the key of an SA. ``daddr`` is decoded
    with the family of the enclosing struct."""

    daddr: str = ""
    spi: int = 0
    proto: int = IPPROTO_ESP

    def encode(self) -> bytes:
        return _ID.pack(addr_pack(self.daddr), socket.htonl(self.spi), self.proto)

    @classmethod
    def decode(cls, buf: bytes, family: int) -> "XfrmId":
        _need(buf, _ID.size, "xfrm_id")
        d, spi, proto = _ID.unpack_from(buf)
        return cls(addr_unpack(d, family), socket.ntohl(spi), proto)


@dataclass(frozen=True)
class XfrmLifetimeCfg(_FlatStruct):
    """struct xfrm_lifetime_cfg (xfrm.h); XFRM_INF everywhere = no kernel expiry (IKE rekeys)."""

    soft_byte_limit: int = XFRM_INF
    hard_byte_limit: int = XFRM_INF
    soft_packet_limit: int = XFRM_INF
    hard_packet_limit: int = XFRM_INF
    soft_add_expires_seconds: int = 0
    hard_add_expires_seconds: int = 0
    soft_use_expires_seconds: int = 0
    hard_use_expires_seconds: int = 0

    _struct = _LFT_CFG
    _what = "xfrm_lifetime_cfg"


@dataclass(frozen=True)
class XfrmLifetimeCur(_FlatStruct):
    """struct xfrm_lifetime_cur (xfrm.h): the SA's byte/packet counters and times."""

    bytes: int = 0
    packets: int = 0
    add_time: int = 0
    use_time: int = 0

    _struct = _LFT_CUR
    _what = "xfrm_lifetime_cur"


@dataclass(frozen=True)
class XfrmStats(_FlatStruct):
    """struct xfrm_stats (xfrm.h): replay window drops, replays, integrity failures."""

    replay_window: int = 0
    replay: int = 0
    integrity_failed: int = 0

    _struct = _STATS
    _what = "xfrm_stats"


@dataclass(frozen=True)
class XfrmUsersaInfo:
    """struct xfrm_usersa_info (xfrm.h, 224 bytes): the fixed part of XFRM_MSG_NEWSA/UPDSA."""

    sel: XfrmSelector = field(default_factory=XfrmSelector)
    id: XfrmId = field(default_factory=XfrmId)
    saddr: str = ""
    lft: XfrmLifetimeCfg = field(default_factory=XfrmLifetimeCfg)
    curlft: XfrmLifetimeCur = field(default_factory=XfrmLifetimeCur)
    stats: XfrmStats = field(default_factory=XfrmStats)
    seq: int = 0
    reqid: int = 0
    family: int = AF_INET
    mode: int = XfrmMode.XFRM_MODE_TUNNEL
    replay_window: int = 0
    flags: int = 0

    SIZE = 224

    def encode(self) -> bytes:
        return b"".join((self.sel.encode(), self.id.encode(), addr_pack(self.saddr), self.lft.encode(),
                         self.curlft.encode(), self.stats.encode(),
                         _USERSA_TAIL.pack(self.seq, self.reqid, self.family, self.mode, self.replay_window, self.flags)))

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmUsersaInfo":
        _need(buf, cls.SIZE, "xfrm_usersa_info")
        seq, reqid, fam, mode, rw, flags = _USERSA_TAIL.unpack_from(buf, 204)
        return cls(XfrmSelector.decode(buf[0:56]), XfrmId.decode(buf[56:80], fam), addr_unpack(buf[80:96], fam),
                   XfrmLifetimeCfg.decode(buf[96:160]), XfrmLifetimeCur.decode(buf[160:192]),
                   XfrmStats.decode(buf[192:204]), seq, reqid, fam, mode, rw, flags)


@dataclass(frozen=True)
class XfrmUsersaId:
    """struct xfrm_usersa_id (xfrm.h): (daddr, spi, family, proto) for XFRM_MSG_DELSA/GETSA."""

    daddr: str = ""
    spi: int = 0
    family: int = AF_INET
    proto: int = IPPROTO_ESP

    def encode(self) -> bytes:
        return _USERSA_ID.pack(addr_pack(self.daddr), socket.htonl(self.spi), self.family, self.proto)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmUsersaId":
        _need(buf, _USERSA_ID.size, "xfrm_usersa_id")
        d, spi, fam, proto = _USERSA_ID.unpack_from(buf)
        return cls(addr_unpack(d, fam), socket.ntohl(spi), fam, proto)


@dataclass(frozen=True)
class XfrmUserpolicyInfo:
    """struct xfrm_userpolicy_info (xfrm.h, 168 bytes): the fixed part of XFRM_MSG_NEWPOLICY/UPDPOLICY
    and of a per-socket policy (IP_XFRM_POLICY / IPV6_XFRM_POLICY)."""

    sel: XfrmSelector = field(default_factory=XfrmSelector)
    lft: XfrmLifetimeCfg = field(default_factory=XfrmLifetimeCfg)
    curlft: XfrmLifetimeCur = field(default_factory=XfrmLifetimeCur)
    priority: int = 0
    index: int = 0
    dir: int = XfrmPolicyDir.XFRM_POLICY_OUT
    action: int = XfrmPolicyAction.XFRM_POLICY_ALLOW
    flags: int = 0
    share: int = 0

    SIZE = 168

    def encode(self) -> bytes:
        return b"".join((self.sel.encode(), self.lft.encode(), self.curlft.encode(),
                         _POLICY_TAIL.pack(self.priority, self.index, self.dir, self.action, self.flags, self.share)))

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmUserpolicyInfo":
        _need(buf, cls.SIZE, "xfrm_userpolicy_info")
        return cls(XfrmSelector.decode(buf[0:56]), XfrmLifetimeCfg.decode(buf[56:120]),
                   XfrmLifetimeCur.decode(buf[120:152]), *_POLICY_TAIL.unpack_from(buf, 152))


@dataclass(frozen=True)
class XfrmUserpolicyId:
    """struct xfrm_userpolicy_id (xfrm.h, 64 bytes): selector + direction (or index) for DEL/GETPOLICY."""

    sel: XfrmSelector = field(default_factory=XfrmSelector)
    index: int = 0
    dir: int = XfrmPolicyDir.XFRM_POLICY_OUT

    SIZE = 64

    def encode(self) -> bytes:
        return self.sel.encode() + _POLICY_ID_TAIL.pack(self.index, self.dir)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmUserpolicyId":
        _need(buf, cls.SIZE, "xfrm_userpolicy_id")
        return cls(XfrmSelector.decode(buf[:56]), *_POLICY_ID_TAIL.unpack_from(buf, 56))


@dataclass(frozen=True)
class XfrmUserTmpl:
    """struct xfrm_user_tmpl (xfrm.h, 64 bytes): the SA a policy wants (XFRMA_TMPL carries an array).
    ``saddr``/``id.daddr`` empty = any (transport mode takes them from the packet)."""

    id: XfrmId = field(default_factory=XfrmId)
    family: int = AF_INET
    saddr: str = ""
    reqid: int = 0
    mode: int = XfrmMode.XFRM_MODE_TUNNEL
    share: int = 0
    optional: int = 0
    aalgos: int = 0xFFFFFFFF
    ealgos: int = 0xFFFFFFFF
    calgos: int = 0xFFFFFFFF

    def encode(self) -> bytes:
        return _TMPL.pack(self.id.encode(), self.family, addr_pack(self.saddr), self.reqid, self.mode, self.share,
                          self.optional, self.aalgos, self.ealgos, self.calgos)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmUserTmpl":
        _need(buf, _TMPL.size, "xfrm_user_tmpl")
        idb, fam, saddr, reqid, mode, share, opt, a, e, c = _TMPL.unpack_from(buf)
        return cls(XfrmId.decode(idb, fam), fam, addr_unpack(saddr, fam), reqid, mode, share, opt, a, e, c)


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _key(buf: bytes, off: int, bits: int, what: str) -> bytes:
    n = (bits + 7) // 8
    if len(buf) < off + n:
        raise XfrmDecodeError(f"{what}: key of {bits} bits does not fit in {len(buf) - off} bytes")
    return bytes(buf[off:off + n])


def _name_enc(name: str) -> bytes:
    raw = name.encode("ascii")
    if len(raw) > 63:
        raise ValueError(f"algorithm name {name!r} longer than 63 bytes")
    return raw


@dataclass(frozen=True)
class XfrmAlgo:
    """struct xfrm_algo (xfrm.h): XFRMA_ALG_CRYPT / XFRMA_ALG_AUTH / XFRMA_ALG_COMP; key length in bits."""

    name: str
    key: bytes = b""

    def encode(self) -> bytes:
        return _ALGO.pack(_name_enc(self.name), len(self.key) * 8) + self.key

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmAlgo":
        _need(buf, _ALGO.size, "xfrm_algo")
        name, bits = _ALGO.unpack_from(buf)
        return cls(_name(name), _key(buf, _ALGO.size, bits, "xfrm_algo"))


class _AlgoWithLen:
    """xfrm_algo_aead and xfrm_algo_auth share one layout: alg_name[64], alg_key_len (bits), a length in
    bits (ICV or truncation), then the key. Subclasses are dataclasses (name, key, that length)."""

    _what = ""

    def encode(self) -> bytes:
        name, key, bits = (getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]
        return _ALGO_X.pack(_name_enc(name), len(key) * 8, bits) + key

    @classmethod
    def decode(cls, buf: bytes) -> Any:
        _need(buf, _ALGO_X.size, cls._what)
        name, bits, third = _ALGO_X.unpack_from(buf)
        return cls(_name(name), _key(buf, _ALGO_X.size, bits, cls._what), third)  # type: ignore[call-arg]


@dataclass(frozen=True)
class XfrmAlgoAead(_AlgoWithLen):
    """struct xfrm_algo_aead (xfrm.h): XFRMA_ALG_AEAD, e.g. rfc4106(gcm(aes)) with the salt in the key."""

    name: str
    key: bytes = b""
    icv_len: int = 128
    _what = "xfrm_algo_aead"


@dataclass(frozen=True)
class XfrmAlgoAuth(_AlgoWithLen):
    """struct xfrm_algo_auth (xfrm.h): XFRMA_ALG_AUTH_TRUNC, e.g. hmac(sha256) truncated to 128 bits."""

    name: str
    key: bytes = b""
    trunc_len: int = 128
    _what = "xfrm_algo_auth"


@dataclass(frozen=True)
class XfrmEncapTmpl:
    """struct xfrm_encap_tmpl (xfrm.h): XFRMA_ENCAP, UDP encapsulation of ESP (RFC 3948)."""

    encap_type: int = UDP_ENCAP_ESPINUDP
    sport: int = 4500
    dport: int = 4500
    oa: bytes = bytes(16)

    def encode(self) -> bytes:
        return _ENCAP.pack(self.encap_type, _be16(self.sport), _be16(self.dport), self.oa)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmEncapTmpl":
        _need(buf, _ENCAP.size, "xfrm_encap_tmpl")
        t, sp, dp, oa = _ENCAP.unpack_from(buf)
        return cls(t, _be16(sp), _be16(dp), oa)


@dataclass(frozen=True)
class XfrmReplayState(_FlatStruct):
    """struct xfrm_replay_state (xfrm.h): XFRMA_REPLAY_VAL, 32-bit sequence numbers and bitmap."""

    oseq: int = 0
    seq: int = 0
    bitmap: int = 0

    _struct = _REPLAY
    _what = "xfrm_replay_state"


@dataclass(frozen=True)
class XfrmReplayStateEsn:
    """struct xfrm_replay_state_esn (xfrm.h): XFRMA_REPLAY_ESN_VAL, windows > 32 and ESN (RFC 4303 §2.2.1).

    ``bmp`` empty = the short form iproute2 sends (the 24-byte header only; the kernel accepts it).
    """

    bmp_len: int = 0
    oseq: int = 0
    seq: int = 0
    oseq_hi: int = 0
    seq_hi: int = 0
    replay_window: int = 0
    bmp: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.bmp and len(self.bmp) != self.bmp_len:
            raise ValueError("xfrm_replay_state_esn: bmp must be empty or bmp_len words")

    def encode(self) -> bytes:
        return _REPLAY_ESN.pack(self.bmp_len, self.oseq, self.seq, self.oseq_hi, self.seq_hi,
                                self.replay_window) + b"".join(_U32.pack(b) for b in self.bmp)

    @classmethod
    def for_window(cls, window: int, **kw: int) -> "XfrmReplayStateEsn":
        """The short form for a window of ``window`` packets (bitmap of ceil(window / 32) words)."""
        return cls(bmp_len=(window + 31) // 32, replay_window=window, **kw)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmReplayStateEsn":
        _need(buf, _REPLAY_ESN.size, "xfrm_replay_state_esn")
        bmp_len, oseq, seq, oseq_hi, seq_hi, rw = _REPLAY_ESN.unpack_from(buf)
        if len(buf) == _REPLAY_ESN.size or bmp_len == 0:
            bmp: tuple[int, ...] = ()
        else:
            _need(buf, _REPLAY_ESN.size + 4 * bmp_len, "xfrm_replay_state_esn bitmap")
            bmp = struct.unpack_from(f"={bmp_len}I", buf, _REPLAY_ESN.size)
        return cls(bmp_len, oseq, seq, oseq_hi, seq_hi, rw, tuple(bmp))


@dataclass(frozen=True)
class XfrmMark(_FlatStruct):
    """struct xfrm_mark (xfrm.h): XFRMA_MARK value/mask."""

    v: int = 0
    m: int = 0

    _struct = _MARK
    _what = "xfrm_mark"


# ---------------------------------------------------------------------------------------- attributes


def _attr(t: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return _NLATTR.pack(n, t) + payload + bytes((-n) % 4)


def iter_attrs(buf: bytes) -> list[tuple[int, bytes]]:
    """Split a run of struct nlattr (4-byte aligned) into (type without flags, payload)."""
    out = []
    off = 0
    while off < len(buf):
        if len(buf) - off < 4:
            raise XfrmDecodeError(f"truncated nlattr header at offset {off}")
        n, t = _NLATTR.unpack_from(buf, off)
        if n < 4 or off + n > len(buf):
            raise XfrmDecodeError(f"nlattr length {n} at offset {off} overruns {len(buf)} bytes")
        out.append((t & 0x3FFF, bytes(buf[off + 4:off + n])))
        off += (n + 3) & ~3
    return out


def _u32(b: bytes, what: str) -> int:
    _need(b, 4, what)
    return _U32.unpack_from(b)[0]


@dataclass(frozen=True)
class XfrmSaMsg:
    """XFRM_MSG_NEWSA / XFRM_MSG_UPDSA (and GETSA replies): xfrm_usersa_info + attributes (xfrm.h)."""

    info: XfrmUsersaInfo = field(default_factory=XfrmUsersaInfo)
    aead: XfrmAlgoAead | None = None
    crypt: XfrmAlgo | None = None
    auth_trunc: XfrmAlgoAuth | None = None
    auth: XfrmAlgo | None = None
    encap: XfrmEncapTmpl | None = None
    replay: XfrmReplayState | None = None
    replay_esn: XfrmReplayStateEsn | None = None
    lifetime: XfrmLifetimeCur | None = None
    mark: XfrmMark | None = None
    if_id: int | None = None
    extra_flags: int | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    msg_type = XfrmMsgType.XFRM_MSG_NEWSA

    def encode(self) -> bytes:
        parts = [self.info.encode()]
        A = XfrmAttr
        for t, v in ((A.XFRMA_ALG_AEAD, self.aead), (A.XFRMA_ALG_CRYPT, self.crypt), (A.XFRMA_ALG_AUTH_TRUNC, self.auth_trunc),
                     (A.XFRMA_ALG_AUTH, self.auth), (A.XFRMA_ENCAP, self.encap), (A.XFRMA_REPLAY_VAL, self.replay),
                     (A.XFRMA_REPLAY_ESN_VAL, self.replay_esn), (A.XFRMA_LTIME_VAL, self.lifetime), (A.XFRMA_MARK, self.mark)):
            if v is not None:
                parts.append(_attr(t, v.encode()))
        if self.if_id is not None:
            parts.append(_attr(A.XFRMA_IF_ID, _U32.pack(self.if_id)))
        if self.extra_flags is not None:
            parts.append(_attr(A.XFRMA_SA_EXTRA_FLAGS, _U32.pack(self.extra_flags)))
        parts += [_attr(t, v) for t, v in self.other]
        return b"".join(parts)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmSaMsg":
        info = XfrmUsersaInfo.decode(buf)
        kw: dict[str, Any] = {}
        other = []
        A = XfrmAttr
        for t, v in iter_attrs(buf[XfrmUsersaInfo.SIZE:]):
            if t == A.XFRMA_ALG_AEAD:
                kw["aead"] = XfrmAlgoAead.decode(v)
            elif t == A.XFRMA_ALG_CRYPT:
                kw["crypt"] = XfrmAlgo.decode(v)
            elif t == A.XFRMA_ALG_AUTH_TRUNC:
                kw["auth_trunc"] = XfrmAlgoAuth.decode(v)
            elif t == A.XFRMA_ALG_AUTH:
                kw["auth"] = XfrmAlgo.decode(v)
            elif t == A.XFRMA_ENCAP:
                kw["encap"] = XfrmEncapTmpl.decode(v)
            elif t == A.XFRMA_REPLAY_VAL:
                kw["replay"] = XfrmReplayState.decode(v)
            elif t == A.XFRMA_REPLAY_ESN_VAL:
                kw["replay_esn"] = XfrmReplayStateEsn.decode(v)
            elif t == A.XFRMA_LTIME_VAL:
                kw["lifetime"] = XfrmLifetimeCur.decode(v)
            elif t == A.XFRMA_MARK:
                kw["mark"] = XfrmMark.decode(v)
            elif t == A.XFRMA_IF_ID:
                kw["if_id"] = _u32(v, "XFRMA_IF_ID")
            elif t == A.XFRMA_SA_EXTRA_FLAGS:
                kw["extra_flags"] = _u32(v, "XFRMA_SA_EXTRA_FLAGS")
            else:
                other.append((t, v))
        return cls(info, other=tuple(other), **kw)


@dataclass(frozen=True)
class XfrmSaIdMsg:
    """XFRM_MSG_DELSA / XFRM_MSG_GETSA request: xfrm_usersa_id + optional XFRMA_SRCADDR/MARK/IF_ID (xfrm.h)."""

    sa_id: XfrmUsersaId = field(default_factory=XfrmUsersaId)
    srcaddr: str | None = None
    mark: XfrmMark | None = None
    if_id: int | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    def encode(self) -> bytes:
        parts = [self.sa_id.encode()]
        if self.srcaddr is not None:
            parts.append(_attr(XfrmAttr.XFRMA_SRCADDR, addr_pack(self.srcaddr)))
        if self.mark is not None:
            parts.append(_attr(XfrmAttr.XFRMA_MARK, self.mark.encode()))
        if self.if_id is not None:
            parts.append(_attr(XfrmAttr.XFRMA_IF_ID, _U32.pack(self.if_id)))
        parts += [_attr(t, v) for t, v in self.other]
        return b"".join(parts)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmSaIdMsg":
        sa_id = XfrmUsersaId.decode(buf)
        kw: dict[str, Any] = {}
        other = []
        for t, v in iter_attrs(buf[_USERSA_ID.size:]):
            if t == XfrmAttr.XFRMA_SRCADDR:
                _need(v, 16, "XFRMA_SRCADDR")
                kw["srcaddr"] = addr_unpack(v, sa_id.family)
            elif t == XfrmAttr.XFRMA_MARK:
                kw["mark"] = XfrmMark.decode(v)
            elif t == XfrmAttr.XFRMA_IF_ID:
                kw["if_id"] = _u32(v, "XFRMA_IF_ID")
            else:
                other.append((t, v))
        return cls(sa_id, other=tuple(other), **kw)


@dataclass(frozen=True)
class XfrmPolicyMsg:
    """XFRM_MSG_NEWPOLICY / XFRM_MSG_UPDPOLICY (and GETPOLICY replies): xfrm_userpolicy_info +
    XFRMA_TMPL (array of xfrm_user_tmpl), XFRMA_IF_ID, XFRMA_MARK, XFRMA_POLICY_TYPE (xfrm.h)."""

    info: XfrmUserpolicyInfo = field(default_factory=XfrmUserpolicyInfo)
    tmpls: tuple[XfrmUserTmpl, ...] = ()
    if_id: int | None = None
    mark: XfrmMark | None = None
    policy_type: int | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    def encode(self) -> bytes:
        parts = [self.info.encode()]
        if self.tmpls:
            parts.append(_attr(XfrmAttr.XFRMA_TMPL, b"".join(t.encode() for t in self.tmpls)))
        if self.policy_type is not None:
            parts.append(_attr(XfrmAttr.XFRMA_POLICY_TYPE, _POLICY_TYPE.pack(self.policy_type, 0, 0)))
        if self.mark is not None:
            parts.append(_attr(XfrmAttr.XFRMA_MARK, self.mark.encode()))
        if self.if_id is not None:
            parts.append(_attr(XfrmAttr.XFRMA_IF_ID, _U32.pack(self.if_id)))
        parts += [_attr(t, v) for t, v in self.other]
        return b"".join(parts)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmPolicyMsg":
        info = XfrmUserpolicyInfo.decode(buf)
        kw: dict[str, Any] = {}
        other = []
        for t, v in iter_attrs(buf[XfrmUserpolicyInfo.SIZE:]):
            if t == XfrmAttr.XFRMA_TMPL:
                if len(v) % _TMPL.size:
                    raise XfrmDecodeError(f"XFRMA_TMPL of {len(v)} bytes is not a multiple of {_TMPL.size}")
                kw["tmpls"] = tuple(XfrmUserTmpl.decode(v[i:i + _TMPL.size]) for i in range(0, len(v), _TMPL.size))
            elif t == XfrmAttr.XFRMA_IF_ID:
                kw["if_id"] = _u32(v, "XFRMA_IF_ID")
            elif t == XfrmAttr.XFRMA_MARK:
                kw["mark"] = XfrmMark.decode(v)
            elif t == XfrmAttr.XFRMA_POLICY_TYPE:
                _need(v, _POLICY_TYPE.size, "XFRMA_POLICY_TYPE")
                kw["policy_type"] = v[0]
            else:
                other.append((t, v))
        return cls(info, other=tuple(other), **kw)


@dataclass(frozen=True)
class XfrmPolicyIdMsg:
    """XFRM_MSG_DELPOLICY / XFRM_MSG_GETPOLICY request: xfrm_userpolicy_id + optional IF_ID/MARK (xfrm.h)."""

    pol_id: XfrmUserpolicyId = field(default_factory=XfrmUserpolicyId)
    if_id: int | None = None
    mark: XfrmMark | None = None
    policy_type: int | None = None
    other: tuple[tuple[int, bytes], ...] = ()

    def encode(self) -> bytes:
        parts = [self.pol_id.encode()]
        if self.policy_type is not None:
            parts.append(_attr(XfrmAttr.XFRMA_POLICY_TYPE, _POLICY_TYPE.pack(self.policy_type, 0, 0)))
        if self.mark is not None:
            parts.append(_attr(XfrmAttr.XFRMA_MARK, self.mark.encode()))
        if self.if_id is not None:
            parts.append(_attr(XfrmAttr.XFRMA_IF_ID, _U32.pack(self.if_id)))
        parts += [_attr(t, v) for t, v in self.other]
        return b"".join(parts)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmPolicyIdMsg":
        pid = XfrmUserpolicyId.decode(buf)
        kw: dict[str, Any] = {}
        other = []
        for t, v in iter_attrs(buf[XfrmUserpolicyId.SIZE:]):
            if t == XfrmAttr.XFRMA_IF_ID:
                kw["if_id"] = _u32(v, "XFRMA_IF_ID")
            elif t == XfrmAttr.XFRMA_MARK:
                kw["mark"] = XfrmMark.decode(v)
            elif t == XfrmAttr.XFRMA_POLICY_TYPE:
                _need(v, _POLICY_TYPE.size, "XFRMA_POLICY_TYPE")
                kw["policy_type"] = v[0]
            else:
                other.append((t, v))
        return cls(pid, other=tuple(other), **kw)


@dataclass(frozen=True)
class XfrmFlushSaMsg:
    """XFRM_MSG_FLUSHSA: struct xfrm_usersa_flush {u8 proto} (xfrm.h); 0 = every protocol."""

    proto: int = IPPROTO_ESP

    def encode(self) -> bytes:
        return bytes((self.proto,)) + bytes(3)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmFlushSaMsg":
        _need(buf, 1, "xfrm_usersa_flush")
        return cls(buf[0])


@dataclass(frozen=True)
class XfrmExpireMsg:
    """XFRM_MSG_EXPIRE (multicast group XFRMNLGRP_EXPIRE): struct xfrm_user_expire {xfrm_usersa_info
    state; u8 hard} (xfrm.h, 232 bytes) - a soft (rekey now) or hard (SA gone) lifetime expiry."""

    state: XfrmUsersaInfo = field(default_factory=XfrmUsersaInfo)
    hard: int = 0

    SIZE = 232

    def encode(self) -> bytes:
        return self.state.encode() + bytes((self.hard,)) + bytes(7)

    @classmethod
    def decode(cls, buf: bytes) -> "XfrmExpireMsg":
        _need(buf, XfrmUsersaInfo.SIZE + 1, "xfrm_user_expire")
        return cls(XfrmUsersaInfo.decode(buf), buf[XfrmUsersaInfo.SIZE])


@dataclass(frozen=True)
class NlError:
    """NLMSG_ERROR (netlink(7)): errno (0 = ACK), the request's header, the extended-ACK message."""

    error: int = 0
    orig: "NlHeader | None" = None
    ext_msg: str = ""

    def encode(self) -> bytes:
        o = self.orig or NlHeader(16, 0, 0, 0, 0)
        out = struct.pack("=i", -self.error) + _NLHDR.pack(o.length, o.type, o.flags, o.seq, o.pid)
        if self.ext_msg:
            out += _attr(NLMSGERR_ATTR_MSG, self.ext_msg.encode() + b"\0")
        return out

    @classmethod
    def decode(cls, buf: bytes, flags: int = 0) -> "NlError":
        _need(buf, 4 + NLMSG_HDRLEN, "nlmsgerr")
        (err,) = struct.unpack_from("=i", buf)
        o = NlHeader(*_NLHDR.unpack_from(buf, 4))
        ext = ""
        if flags & NLM_F_ACK_TLVS:
            off = 4 + (NLMSG_HDRLEN if flags & NLM_F_CAPPED or err == 0 else max(o.length, NLMSG_HDRLEN))
            off = (off + 3) & ~3
            if off <= len(buf):
                for t, v in iter_attrs(buf[off:]):
                    if t == NLMSGERR_ATTR_MSG:
                        ext = v.split(b"\0", 1)[0].decode("utf-8", "replace")
        return cls(-err, o, ext)


@dataclass(frozen=True)
class NlDone:
    """NLMSG_DONE: the end of a dump (netlink(7))."""

    def encode(self) -> bytes:
        return bytes(4)

    @classmethod
    def decode(cls, buf: bytes) -> "NlDone":
        return cls()


@dataclass(frozen=True)
class NlRaw:
    """A message of a type this codec does not model (payload kept as bytes)."""

    payload: bytes = b""

    def encode(self) -> bytes:
        return self.payload


Body = Union[XfrmSaMsg, XfrmSaIdMsg, XfrmExpireMsg, XfrmPolicyMsg, XfrmPolicyIdMsg, XfrmFlushSaMsg, NlError, NlDone, NlRaw]

_BODY_BY_TYPE: dict[int, Any] = {
    XfrmMsgType.XFRM_MSG_NEWSA: XfrmSaMsg,
    XfrmMsgType.XFRM_MSG_UPDSA: XfrmSaMsg,
    XfrmMsgType.XFRM_MSG_DELSA: XfrmSaIdMsg,
    XfrmMsgType.XFRM_MSG_GETSA: XfrmSaIdMsg,
    XfrmMsgType.XFRM_MSG_NEWPOLICY: XfrmPolicyMsg,
    XfrmMsgType.XFRM_MSG_UPDPOLICY: XfrmPolicyMsg,
    XfrmMsgType.XFRM_MSG_DELPOLICY: XfrmPolicyIdMsg,
    XfrmMsgType.XFRM_MSG_GETPOLICY: XfrmPolicyIdMsg,
    XfrmMsgType.XFRM_MSG_FLUSHSA: XfrmFlushSaMsg,
    XfrmMsgType.XFRM_MSG_EXPIRE: XfrmExpireMsg,
    NlMsgType.NLMSG_DONE: NlDone,
}


@dataclass(frozen=True)
class NlHeader:
    """struct nlmsghdr (netlink(7)): length, type, flags, sequence number, port id."""

    length: int
    type: int
    flags: int
    seq: int
    pid: int


def encode_msg(msg_type: int, body: Body, seq: int = 0, flags: int = NlFlag.NLM_F_REQUEST | NlFlag.NLM_F_ACK,
               pid: int = 0) -> bytes:
    """One netlink message: nlmsghdr + ``body.encode()`` (padded to 4 bytes)."""
    payload = body.encode()
    n = NLMSG_HDRLEN + len(payload)
    return _NLHDR.pack(n, int(msg_type), int(flags), seq & 0xFFFFFFFF, pid) + payload + bytes((-n) % 4)


def decode_msgs(buf: bytes) -> list[tuple[NlHeader, Body]]:
    """Split a netlink datagram into (header, body) pairs; unknown types give :class:`NlRaw`."""
    out: list[tuple[NlHeader, Body]] = []
    off = 0
    while off < len(buf):
        if len(buf) - off < NLMSG_HDRLEN:
            raise XfrmDecodeError(f"truncated nlmsghdr at offset {off}")
        h = NlHeader(*_NLHDR.unpack_from(buf, off))
        if h.length < NLMSG_HDRLEN or off + h.length > len(buf):
            raise XfrmDecodeError(f"nlmsg_len {h.length} at offset {off} overruns {len(buf)} bytes")
        payload = bytes(buf[off + NLMSG_HDRLEN:off + h.length])
        if h.type == NlMsgType.NLMSG_ERROR:
            body: Body = NlError.decode(payload, h.flags)
        else:
            cls = _BODY_BY_TYPE.get(h.type)
            body = cls.decode(payload) if cls is not None else NlRaw(payload)
        out.append((h, body))
        off += (h.length + 3) & ~3
    return out


def raise_for_error(body: Body, what: str = "") -> None:
    """Raise :class:`XfrmKernelError` for an NLMSG_ERROR with a non-zero errno (an ACK passes)."""
    if isinstance(body, NlError) and body.error:
        raise XfrmKernelError(body.error, body.orig.type if body.orig else 0, body.ext_msg, what)


# ---------------------------------------------------------------------------------------- mapping

AEAD_GCM = "rfc4106(gcm(aes))"
CRYPT_CBC = "cbc(aes)"
CRYPT_NULL = "ecb(cipher_null)"
AUTH_HMAC_SHA256 = "hmac(sha256)"
ENCR_AES_CBC, ENCR_NULL, ENCR_AES_GCM_16 = 12, 11, 20  # IKEv2 transform IDs (RFC 7296 §3.3.2)
AUTH_HMAC_SHA2_256_128 = 12


def port_blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """A port range as (port, mask) blocks for xfrm_selector; (0, 65535) -> [(0, 0)] (any)."""
    if not 0 <= lo <= hi <= 0xFFFF:
        raise ValueError(f"bad port range {lo}-{hi}")
    if (lo, hi) == (0, 0xFFFF):
        return [(0, 0)]
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while lo + size - 1 > hi:
            size >>= 1
        out.append((lo, (0xFFFF & ~(size - 1))))
        lo += size
    return out


def selectors_from(sel: Any) -> list[XfrmSelector]:
    """xfrm_selector(s) for an ``s2c.esp.spd.Selector`` (src/dst prefixes, proto, port ranges)."""
    s, d = ipaddress.ip_network(sel.src, strict=False), ipaddress.ip_network(sel.dst, strict=False)
    fam = AF_INET6 if s.version == 6 else AF_INET
    out = []
    for sp, spm in port_blocks(*sel.sport):
        for dp, dpm in port_blocks(*sel.dport):
            out.append(XfrmSelector(str(d.network_address), str(s.network_address), dp, dpm, sp, spm, fam,
                                    d.prefixlen, s.prefixlen, int(sel.proto)))
    return out


def sa_from_esp(sa: Any, reqid: int = 0, sel: XfrmSelector | None = None, if_id: int | None = None,
                seq: int | None = None, replay_esn: XfrmReplayStateEsn | None = None,
                replay: XfrmReplayState | None = None, lft: XfrmLifetimeCfg | None = None) -> XfrmSaMsg:
    """XFRM_MSG_NEWSA body for an ``s2c.esp.sa.EspSa`` (or its ``to_config()`` dict).

    Outbound SA: src = local, dst = remote; inbound: src = remote, dst = local. AES-GCM-16 ->
    XFRMA_ALG_AEAD rfc4106(gcm(aes)) (key + 4-byte salt, ICV 128); AES-CBC -> XFRMA_ALG_CRYPT cbc(aes) +
    XFRMA_ALG_AUTH_TRUNC hmac(sha256)/128; ENCR_NULL -> ecb(cipher_null). UDP encapsulation ->
    XFRMA_ENCAP ESPINUDP with the SA's own ports (RFC 3948). A replay window over 32 or ESN ->
    XFRMA_REPLAY_ESN_VAL (the kernel then wants usersa_info.replay_window = 0). ``replay``/``replay_esn``
    carry sequence state across a re-install (MOBIKE address update).
    """
    c = sa if isinstance(sa, dict) else sa.to_config()
    direction = str(getattr(c["direction"], "value", c["direction"]))
    mode = str(getattr(c["mode"], "value", c["mode"]))
    out = direction == "out"
    src, dst = (c["local"], c["remote"]) if out else (c["remote"], c["local"])
    if not src or not dst:
        raise ValueError("the SA needs both local and remote addresses for the kernel")
    fam = _family_of(dst)
    if _family_of(src) != fam:
        raise ValueError("SA local and remote addresses are of different families")
    encr, integ = int(c["encr"]), int(c.get("integ") or 0)
    kw: dict[str, Any] = {}
    if encr == ENCR_AES_GCM_16:
        if len(c["encr_key"]) not in (20, 28, 36):
            raise ValueError("AES-GCM key must be 16/24/32 bytes + 4-byte salt")
        kw["aead"] = XfrmAlgoAead(AEAD_GCM, bytes(c["encr_key"]), 128)
    elif encr in (ENCR_AES_CBC, ENCR_NULL):
        kw["crypt"] = XfrmAlgo(CRYPT_CBC if encr == ENCR_AES_CBC else CRYPT_NULL,
                               bytes(c["encr_key"]) if encr == ENCR_AES_CBC else b"")
        if integ != AUTH_HMAC_SHA2_256_128:
            raise ValueError(f"integrity transform {integ} not mapped (only AUTH_HMAC_SHA2_256_128 = 12)")
        kw["auth_trunc"] = XfrmAlgoAuth(AUTH_HMAC_SHA256, bytes(c["integ_key"]), 128)
    else:
        raise ValueError(f"encryption transform {encr} not mapped")
    if c.get("udp_encap"):
        sport, dport = (c["local_port"], c["remote_port"]) if out else (c["remote_port"], c["local_port"])
        kw["encap"] = XfrmEncapTmpl(UDP_ENCAP_ESPINUDP, int(sport), int(dport))
    window = 0 if out else int(c.get("replay_window") or 0)  # outbound: no replay check
    esn = bool(c.get("esn"))
    flags = 0
    rw = 0
    if replay_esn is not None:
        kw["replay_esn"] = replay_esn
    elif esn or window > 32:
        # an ESN SA needs a non-zero window even outbound (xfrm_init_replay); 32 for outbound
        w = max(window, 32) if esn else window
        osq = int(seq if seq is not None else c.get("seq") or 0)
        kw["replay_esn"] = XfrmReplayStateEsn.for_window(w, oseq=osq & 0xFFFFFFFF, oseq_hi=osq >> 32)
    else:
        rw = window
        if replay is not None:
            kw["replay"] = replay
        elif seq or c.get("seq"):
            kw["replay"] = XfrmReplayState(oseq=int(seq if seq is not None else c["seq"]) & 0xFFFFFFFF)
    if esn:
        flags |= XFRM_STATE_ESN
    xmode = XfrmMode.XFRM_MODE_TUNNEL if mode == "tunnel" else XfrmMode.XFRM_MODE_TRANSPORT
    if xmode == XfrmMode.XFRM_MODE_TUNNEL:
        flags |= XFRM_STATE_AF_UNSPEC  # inner packets of either family (strongSwan does the same)
    info = XfrmUsersaInfo(
        sel=sel if sel is not None else XfrmSelector(family=fam if xmode == XfrmMode.XFRM_MODE_TRANSPORT else 0),
        id=XfrmId(dst, int(c["spi"]), IPPROTO_ESP), saddr=src, lft=lft or XfrmLifetimeCfg(), family=fam,
        mode=xmode, reqid=reqid, replay_window=rw, flags=flags)
    return XfrmSaMsg(info, if_id=if_id, **kw)


def bypass_socket_policy(family: int, direction: int) -> bytes:
    """Per-socket policy that lets a socket's traffic bypass every SPD entry (``setsockopt(IP_XFRM_POLICY
    / IPV6_XFRM_POLICY)``, as strongSwan's kernel-netlink does for its IKE sockets): an ALLOW policy
    with no template."""
    return XfrmUserpolicyInfo(sel=XfrmSelector(family=family), dir=direction,
                              action=XfrmPolicyAction.XFRM_POLICY_ALLOW).encode()


def with_seq(msg: XfrmSaMsg, **info_changes: Any) -> XfrmSaMsg:
    """A copy of ``msg`` with fields of its xfrm_usersa_info replaced (``dataclasses.replace``)."""
    return replace(msg, info=replace(msg.info, **info_changes))


def attrs_of(items: Iterable[tuple[int, bytes]]) -> bytes:
    """Encode (type, payload) pairs as a run of nlattrs (tests, unmodelled attributes)."""
    return b"".join(_attr(t, v) for t, v in items)
