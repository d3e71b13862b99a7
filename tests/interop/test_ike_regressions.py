"""In-memory regression tests for interop bugs found against strongSwan (see docs/interop.md).

Each one reproduces, with two cores on a FakeNetwork, what charon did on the wire; the matching
end-to-end test lives in the test_ike_*/test_esp_* modules next to this one.
"""

from __future__ import annotations

import pytest

from s2c.codec import ikev2 as c
from s2c.codec.ikev2 import ExchangeType, NotifyPayload, NotifyType
from s2c.ike.protect import decrypt_message
from s2c.ike.testkit import GW_IP, UE_IP, gw_config, make_pair, ue_config

pytestmark = pytest.mark.interop


def _responses_to_ue(p, exchange: int) -> list[list]:
    sa = p.ue.sa
    out = []
    for d in p.net.log:
        if d.dst[0] != p.ue.local_addr[0] and d.src[0] != GW_IP:
            continue
        data = d.data[4:] if d.data[:4] == c.NON_ESP_MARKER else d.data
        msg = c.parse_message(data)
        if msg.exchange == exchange and msg.is_response and not msg.is_initiator:
            out.append(decrypt_message(msg, sa.ctx.suite, sa.ctx.keys, False))
    return out


@pytest.mark.parametrize("with_update", [True, False])
def test_cookie2_is_echoed_in_informational_response(with_update):
    """charon's MOBIKE path (RFC 4555 §3.5/§5.4) sends UPDATE_SA_ADDRESSES with COOKIE2 and closes
    the IKE SA ("COOKIE2 mismatch") unless the response carries the same COOKIE2 (RFC 7296 §3.10.1:
    COOKIE2 is echoed)."""
    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    p.pump()
    assert "IkeSaEstablished" in p.types("ue")
    sa = p.ue.sa
    cookie2 = bytes(range(16))
    ps = [NotifyPayload(NotifyType.COOKIE2, cookie2)]
    if with_update:
        ps.insert(0, NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES))
        ps += [NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, bytes(20)),
               NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, bytes(20))]
    p.net.log.clear()
    sa._request(sa.ctx, ExchangeType.INFORMATIONAL, ps, "dpd", p.clock.now)
    p.ue._collect(sa)
    p.pump()
    (resp,) = _responses_to_ue(p, ExchangeType.INFORMATIONAL)
    echoed = [x.data for x in resp if isinstance(x, NotifyPayload) and x.type == NotifyType.COOKIE2]
    assert echoed == [cookie2], resp


def test_responder_reports_port_4500_once_the_peer_moved_there():
    """After NAT-T the responder talks on port 4500 (RFC 7296 §2.23, RFC 3948): its events must say so
    (charon interop: our IkeSaEstablished/ChildSaEstablished said local port 500 while every IKE_AUTH
    and ESP packet used 4500), and its MOBIKE NAT_DETECTION_SOURCE_IP must hash the port it uses."""
    from s2c.ike import events as ev

    def nat(src):
        return ("203.0.113.9", 40000 if src[1] == 500 else 40001) if src[0] == UE_IP else src

    p = make_pair(ue_config(), gw_config(), rewrite_src=nat)
    p.net.attach(p.ue, "203.0.113.9")
    p.ue.initiate(p.clock.now)
    p.pump()
    ike = next(e for e in p.gw_events if isinstance(e, ev.IkeSaEstablished))
    child = next(e for e in p.gw_events if isinstance(e, ev.ChildSaEstablished))
    assert ike.nat_detected and child.nat_t
    assert ike.local_addr == (GW_IP, 4500) and child.local_addr == (GW_IP, 4500)


def test_simultaneous_ike_rekey_keeps_both_sides_on_one_working_sa():
    """Both ends rekey the IKE SA at once and each sees the other's request before the answer to its
    own (charon interop: our core installed the peer's new SA, then derived its own new SA from the
    wrong SK_d and lost the original SA's state: ICV failures, charon stuck in REKEYING). Whatever
    RFC 7296 §2.8.2/§2.25.2 resolution is used, both must end on the same IKE SA and it must work."""
    from s2c.ike import events as ev

    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    p.pump()
    p.clear()
    p.ue.rekey_ike(p.clock.now)
    p.gw.rekey_ike(1, p.clock.now)
    p.pump()
    p.run_until(p.clock.now + 40)
    ue_sa, gw_sa = p.ue.sa, p.gw.sa(1)
    assert (ue_sa.ctx.spi_i, ue_sa.ctx.spi_r) == (gw_sa.ctx.spi_i, gw_sa.ctx.spi_r)
    assert ue_sa.ctx.keys == gw_sa.ctx.keys
    assert not [e for e in list(p.ue.errors) + list(p.gw.errors) if "integrity" in e]
    p.clear()
    p.ue.liveness_check(p.clock.now)
    p.pump()
    p.run_until(p.clock.now + 40)
    assert not any(isinstance(e, (ev.PeerDead, ev.IkeSaDeleted)) for e in p.ue_events + p.gw_events)
    assert ue_sa.ctx.pending is None


@pytest.mark.parametrize("seed", range(1, 7))
def test_child_rekey_collision_loser_leaves_the_old_sa_to_the_winner(seed):
    """Simultaneous CHILD SA rekey, each side sees the other's request before its own answer. Only the
    creator of the surviving SA deletes the old one; the loser deletes just its redundant new SA
    (RFC 7296 §2.8.1). charon treats a Delete of the SA it is rekeying as a rekey/delete collision and
    drops its own new SA, so a loser that also deleted the old SA left no CHILD SA at all."""
    p = make_pair(ue_config(), gw_config(), seed=seed)
    p.ue.initiate(p.clock.now)
    p.pump()
    ue_sa, gw_sa = p.ue.sa, p.gw.sa(1)
    old_ue, old_gw = ue_sa.children[0], gw_sa.children[0]
    deleted: dict[str, list[int]] = {"ue": [], "gw": []}
    for name, sa in (("ue", ue_sa), ("gw", gw_sa)):
        orig = sa.delete_child

        def spy(spi_in, now, _orig=orig, _name=name):
            deleted[_name].append(spi_in)
            return _orig(spi_in, now)
        sa.delete_child = spy
    p.ue.rekey_child(old_ue.spi_in, p.clock.now)
    p.gw.rekey_child(1, old_gw.spi_in, p.clock.now)
    p.pump()
    p.run_until(p.clock.now + 40)
    olds = [old_ue.spi_in in deleted["ue"], old_gw.spi_in in deleted["gw"]]
    assert olds.count(True) == 1, (deleted, olds)          # only the winner deletes the old SA
    assert len(deleted["ue"]) + len(deleted["gw"]) == 2     # plus the loser's redundant new SA
    ue_live = [(c.spi_in, c.spi_out) for c in ue_sa.children]
    gw_live = [(c.spi_out, c.spi_in) for c in gw_sa.children]
    assert ue_live == gw_live and len(ue_live) == 1
