"""KernelEspBackend bookkeeping against an in-memory fake of the kernel's SAD/SPD (no root, no ESP):
what is installed for a CHILD SA, rollback on refusal, rekey under the same reqid, MOBIKE re-install
with the sequence state carried, removal and stop() cleanup, stats from GETSA, expiry events."""

from __future__ import annotations

import errno
import socket
from dataclasses import replace
from types import SimpleNamespace as NS

import pytest

from s2c.dataplane import xfrm_nl as nl
from s2c.dataplane.xfrm import KernelEspBackend, XfrmBackendError
from s2c.esp.spd import Selector

T = nl.XfrmMsgType


class FakeKernel:
    """Keeps SAs by (daddr, spi) and policies by (selector, dir); every body goes through encode/decode."""

    def __init__(self, refuse_spi: int | None = None) -> None:
        self.sas: dict[tuple[str, int], nl.XfrmSaMsg] = {}
        self.pols: dict[tuple[nl.XfrmSelector, int], nl.XfrmPolicyMsg] = {}
        self.log: list[tuple[str, object]] = []
        self.refuse_spi = refuse_spi
        self.oseq: dict[int, int] = {}

    def _rt(self, t, body):
        [(h, b)] = nl.decode_msgs(nl.encode_msg(t, body, seq=1))
        return b

    def request(self, t, body, what="", flags=0):
        b = self._rt(t, body)
        self.log.append((T(t).name, b))
        if t in (T.XFRM_MSG_NEWSA, T.XFRM_MSG_UPDSA):
            key = (b.info.id.daddr, b.info.id.spi)
            if b.info.id.spi == self.refuse_spi:
                raise nl.XfrmKernelError(errno.ENOSYS, t, "Requested AEAD algorithm not found", what)
            if key in self.sas and t == T.XFRM_MSG_NEWSA:
                raise nl.XfrmKernelError(errno.EEXIST, t, "", what)
            self.sas[key] = b
        elif t == T.XFRM_MSG_DELSA:
            if self.sas.pop((b.sa_id.daddr, b.sa_id.spi), None) is None:
                raise nl.XfrmKernelError(errno.ESRCH, t, "", what)
        elif t in (T.XFRM_MSG_NEWPOLICY, T.XFRM_MSG_UPDPOLICY):
            self.pols[(b.info.sel, b.info.dir)] = b
        elif t == T.XFRM_MSG_DELPOLICY:
            if self.pols.pop((b.pol_id.sel, b.pol_id.dir), None) is None:
                raise nl.XfrmKernelError(errno.ENOENT, t, "", what)

    def get(self, t, body, what=""):
        b = self._rt(t, body)
        m = self.sas.get((b.sa_id.daddr, b.sa_id.spi))
        if m is None:
            raise nl.XfrmKernelError(errno.ESRCH, t, "", what)
        spi = b.sa_id.spi
        seq = self.oseq.get(spi, 0)
        cur = nl.XfrmLifetimeCur(bytes=seq * 100, packets=seq)
        # the kernel always answers with its replay state: ESN form if the SA has one, else XFRMA_REPLAY_VAL
        if m.replay_esn is not None:
            return replace(m, info=replace(m.info, curlft=cur), replay_esn=replace(m.replay_esn, oseq=seq, seq=seq))
        return replace(m, info=replace(m.info, curlft=cur), replay=nl.XfrmReplayState(seq, seq, 0))

    def dump(self, t, body):
        return list(self.pols.values())

    def close(self):
        pass


def backend(kernel: FakeKernel, if_id: int | None = None) -> KernelEspBackend:
    b = KernelEspBackend(check=False)
    b.xs = kernel  # type: ignore[assignment]
    b.if_id = if_id
    b.started = True
    return b


def ts(a, z=None, proto=0, lo=0, hi=65535):
    return NS(start_addr=a, end_addr=z or a, ip_protocol=proto, start_port=lo, end_port=hi)


KEYS = NS(encr=20, encr_key=b"\x01" * 16, salt=b"\x02" * 4, integ=0, integ_key=b"", icv_len=16)


def tunnel(spi=0x100, local="192.0.2.1", remote="192.0.2.2", nat_t=True):
    return NS(spi_in=spi + 1, spi_out=spi + 2, keys_in=KEYS, keys_out=KEYS, mode="tunnel", suite=NS(esn=0),
              nat_t=nat_t, local_addr=(local, 4500), remote_addr=(remote, 4500),
              ts_local=[ts("10.9.0.1"), ts("2001:db8:9::1")],
              ts_remote=[ts("0.0.0.0", "255.255.255.255"), ts("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")])


def transport(spi=0x300, local="2001:db8::1", remote="2001:db8::2"):
    return NS(spi_in=spi + 1, spi_out=spi + 2, keys_in=KEYS, keys_out=KEYS, mode="transport", suite=NS(esn=0),
              nat_t=False, local_addr=(local, 500), remote_addr=(remote, 500),
              ts_local=[ts(local, proto=135)], ts_remote=[ts(remote, proto=135)])


def test_install_child_sa_tunnel():
    k = FakeKernel()
    b = backend(k)
    out, inn = b.install_child_sa(tunnel(), priority=0)
    assert (out.spi, inn.spi) == (0x102, 0x101)
    assert set(k.sas) == {("192.0.2.2", 0x102), ("192.0.2.1", 0x101)}
    sa_out = k.sas[("192.0.2.2", 0x102)]
    assert sa_out.info.saddr == "192.0.2.1" and sa_out.encap.sport == 4500 and sa_out.aead.key == b"\x01" * 16 + b"\x02" * 4
    assert sa_out.info.lft.soft_packet_limit == (1 << 32) - (1 << 16)  # soft expiry -> rekey_needed
    reqid = sa_out.info.reqid
    assert k.sas[("192.0.2.1", 0x101)].info.reqid == reqid and reqid > 0
    dirs = sorted((p.info.sel.family, p.info.dir) for p in k.pols.values())
    assert dirs == sorted([(f, d) for f in (nl.AF_INET, nl.AF_INET6) for d in (0, 1, 2)])
    for p in k.pols.values():
        t = p.tmpls[0]
        assert t.reqid == reqid and t.mode == nl.XfrmMode.XFRM_MODE_TUNNEL and t.family == nl.AF_INET
        if p.info.dir == nl.XfrmPolicyDir.XFRM_POLICY_OUT:
            assert (t.saddr, t.id.daddr) == ("192.0.2.1", "192.0.2.2")
            assert p.info.sel.saddr in ("10.9.0.1", "2001:db8:9::1") and p.info.sel.prefixlen_d == 0
        else:
            assert (t.saddr, t.id.daddr) == ("192.0.2.2", "192.0.2.1")
            assert p.info.sel.daddr in ("10.9.0.1", "2001:db8:9::1")
    b.stop()
    assert k.sas == {} and k.pols == {}


def test_if_id_only_on_tunnel_mode():
    k = FakeKernel()
    b = backend(k, if_id=7)
    b.install_child_sa(tunnel())
    b.install_child_sa(transport(), priority=10)
    for (daddr, spi), m in k.sas.items():
        assert m.if_id == (7 if spi < 0x300 else None)
    for p in k.pols.values():
        assert p.if_id == (None if p.info.sel.proto == 135 else 7)
    tp = [p for p in k.pols.values() if p.info.sel.proto == 135]
    assert len(tp) == 2 and all(p.tmpls[0].saddr == "::" and p.tmpls[0].id.daddr == "::" for p in tp)  # any: from the packet
    tun_prio = min(p.info.priority for p in k.pols.values() if p.info.sel.proto != 135)
    assert max(p.info.priority for p in tp) > tun_prio  # daemon priority 10 sorts after 0 (lower wins)


def test_refused_out_sa_rolls_back():
    k = FakeKernel(refuse_spi=0x102)
    b = backend(k)
    with pytest.raises(nl.XfrmKernelError, match="ESP SA spi 0x00000102"):
        b.install_child_sa(tunnel())
    assert k.sas == {} and k.pols == {} and b.sas == {} and b._children == {}


def test_rekey_keeps_reqid_and_policies_then_drops_old():
    k = FakeKernel()
    b = backend(k)
    b.install_child_sa(tunnel())
    pols_before = dict(k.pols)
    n_log = len(k.log)
    b.rekey_child_sa(0x101, 0x102, tunnel(spi=0x200))
    assert set(k.sas) == {("192.0.2.2", 0x202), ("192.0.2.1", 0x201)}
    assert k.pols == pols_before
    names = [n for n, _ in k.log[n_log:]]
    assert names == ["XFRM_MSG_NEWSA", "XFRM_MSG_NEWSA", "XFRM_MSG_DELSA", "XFRM_MSG_DELSA"]  # make before break
    assert {m.info.reqid for m in k.sas.values()} == {pols_before[next(iter(pols_before))].tmpls[0].reqid}
    assert set(b.sas) == {0x201, 0x202}


def test_update_peer_reinstalls_with_sequence_and_moves_policies():
    k = FakeKernel()
    b = backend(k)
    b.install_child_sa(tunnel())
    b.install_child_sa(transport(), priority=10)
    k.oseq[0x102] = 77
    b.update_peer(0x102, "192.0.2.3", 4501, local="192.0.2.9")
    new_out = k.sas[("192.0.2.3", 0x102)]
    assert new_out.info.saddr == "192.0.2.9" and new_out.encap.dport == 4501 and new_out.replay.oseq == 77
    assert new_out.info.lft.soft_packet_limit == (1 << 32) - (1 << 16) - 77
    new_in = k.sas[("192.0.2.9", 0x101)]
    assert new_in.info.saddr == "192.0.2.3" and new_in.encap.sport == 4501
    assert new_in.replay_esn is not None  # the 1024-packet inbound window came back from GETSA
    assert ("192.0.2.2", 0x102) not in k.sas
    tun = [p for p in k.pols.values() if p.info.sel.proto != 135]
    assert all({p.tmpls[0].saddr, p.tmpls[0].id.daddr} == {"192.0.2.9", "192.0.2.3"} for p in tun)
    before = len(k.log)
    b.update_peer(0x101, "192.0.2.3", 4501, local="192.0.2.9")  # the daemon's second call: nothing to do
    assert [n for n, _ in k.log[before:]] == []
    # transport: the selectors named the old outer addresses and follow them
    b.update_peer(0x302, "2001:db8::3", 500, local="2001:db8::7")
    mh = [p for p in k.pols.values() if p.info.sel.proto == 135]
    assert sorted((p.info.sel.saddr, p.info.sel.daddr) for p in mh) == [("2001:db8::3", "2001:db8::7"),
                                                                          ("2001:db8::7", "2001:db8::3")]
    with pytest.raises(XfrmBackendError):
        b.update_peer(0x999, "192.0.2.3", 4500)


def test_remove_sa_takes_its_policies():
    k = FakeKernel()
    b = backend(k)
    b.install_child_sa(tunnel())
    b.remove_sa(0x102)
    assert all(p.info.dir != nl.XfrmPolicyDir.XFRM_POLICY_OUT for p in k.pols.values()) and len(k.pols) == 4
    b.remove_sa(0x101)
    assert k.sas == {} and k.pols == {} and b._children == {}
    b.remove_sa(0x101)  # already gone: no error


def test_stats_from_getsa():
    k = FakeKernel()
    b = backend(k)
    b.install_child_sa(tunnel())
    k.oseq.update({0x102: 5, 0x101: 3})
    st = b.stats()["sas"]
    assert st[0x102]["packets_out"] == 5 and st[0x102]["bytes_out"] == 500 and st[0x102]["seq"] == 5
    assert st[0x101]["packets_in"] == 3 and st[0x101]["direction"] == "in"
    assert st[0x102]["remote"] == "192.0.2.2" and st[0x102]["remote_port"] == 4500


def test_policies_and_errors():
    k = FakeKernel()
    b = backend(k)
    with pytest.raises(XfrmBackendError):
        b.add_policy(Selector("10.0.0.0/8", "10.1.0.0/16"), spi=0x999)
    b.add_policy(Selector("10.0.0.0/8", "10.1.0.0/16"), action="discard")
    b.add_policy(Selector("10.0.0.0/8", "10.2.0.0/16"), action="bypass")
    assert sorted(p.info.action for p in k.pols.values()) == [0, 1] and all(not p.tmpls for p in k.pols.values())
    assert b.remove_policies(Selector("10.0.0.0/8", "10.1.0.0/16")) == 1 and len(k.pols) == 1
    b.stop()
    assert k.pols == {}


def test_expire_notification_becomes_an_event():
    k = FakeKernel()
    b = backend(k)
    b.install_child_sa(tunnel())
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r.setblocking(False)
    b.events_sock = NS(sock=r, close=r.close)  # type: ignore[assignment]
    info = k.sas[("192.0.2.2", 0x102)].info
    w.send(nl.encode_msg(T.XFRM_MSG_EXPIRE, nl.XfrmExpireMsg(info, 0), flags=0))
    w.send(b"\x01\x02")  # garbage is counted, not raised
    b._on_netlink_event()
    assert b.events == [("rekey_needed", 0x102)] and b.counters["malformed_netlink"] == 1
    w.close()


def test_send_transport_without_a_matching_sa_is_false():
    b = backend(FakeKernel())
    b.install_child_sa(transport(), priority=10)
    assert b.send_transport(b"\0" * 8, 135, "2001:db8::1", "2001:db8::99") is False
    assert b.send_transport(b"\0" * 8, 6, "2001:db8::1", "2001:db8::2") is False


def test_bypass_socket_sets_both_directions():
    import os

    if os.geteuid() != 0:
        pytest.skip("IP_XFRM_POLICY needs CAP_NET_ADMIN")
    for fam in (socket.AF_INET, socket.AF_INET6):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            KernelEspBackend.bypass_socket(s)  # raises OSError if the kernel refuses the policy
        finally:
            s.close()
