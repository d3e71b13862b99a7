"""The responder answers IKE_SA_INIT before deriving g^ir/SKEYSEED/SK_* and makes the next DH key ahead
(IkeResponder.precompute, DhPrivateKey.deferred_shared_secret): same keys, same checks, no key reuse."""

from __future__ import annotations

import os

import pytest

from s2c.codec.ikev2 import DhGroup
from s2c.crypto import dh as dhmod
from s2c.ike import SaState
from s2c.ike import IkeInitiator
from s2c.ike.testkit import GW_IP, gw_config, make_pair, ue_config
from s2c.testing.fake import seeded_rng

GROUPS = [DhGroup.ECP_256, DhGroup.ECP_384, DhGroup.CURVE25519, DhGroup.MODP_2048]


@pytest.mark.parametrize("group", GROUPS)
def test_deferred_secret_equals_the_direct_one(group):
    a, b = dhmod.generate(group, os.urandom), dhmod.generate(group, os.urandom)
    assert a.deferred_shared_secret(b.public)() == a.shared_secret(b.public) == b.shared_secret(a.public)


@pytest.mark.parametrize("group,bad", [
    (DhGroup.ECP_256, bytes(64)),                         # not on the curve
    (DhGroup.ECP_256, b"\x01" * 63),                      # wrong length
    (DhGroup.MODP_2048, (1).to_bytes(256, "big")),        # 1 is out of range (RFC 7296 §2.14)
    (DhGroup.CURVE25519, bytes(32)),                      # low order: all-zero shared secret (RFC 8031 §2)
])
def test_bad_peer_values_are_refused_up_front(group, bad):
    k = dhmod.generate(group, os.urandom)
    with pytest.raises(dhmod.DhError):
        k.deferred_shared_secret(bad)


def _init_exchange(p, ue):
    """Hand one IKE_SA_INIT request to the responder by hand; return the responder's answer(s)."""
    (req, dst), = ue.datagrams_to_send(p.clock.now)
    p.gw.receive_datagram(req, tuple(ue.local_addr), p.clock.now)
    return p.gw.datagrams_to_send(p.clock.now)


def test_answer_first_keys_later_and_a_fresh_dh_key_per_sa():
    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    out = _init_exchange(p, p.ue)
    assert len(out) == 1  # the IKE_SA_INIT response is ready ...
    sa = p.gw.sas()[0]
    assert sa.state == SaState.INIT_DONE and sa.ctx.keys_pending  # ... before g^ir and SK_* exist
    group = sa._dh.group
    assert p.gw.precompute() == 2  # this SA's keys + a spare key of the group for the next IKE_SA_INIT
    assert not sa.ctx.keys_pending and sa.ctx.keys is not None
    assert p.gw.precompute() == 0  # nothing left to do
    spare = p.gw._spare_dh[group]
    p.ue.receive_datagram(out[0][0], (GW_IP, 500), p.clock.now)
    p.pump()
    assert p.types("ue")[0] == "IkeSaEstablished" and "IkeSaEstablished" in p.types("gw")
    # a second UE: its SA takes the spare key (once), a third one would get a new one
    ue2 = IkeInitiator(ue_config(), ("192.0.2.77", 500), (GW_IP, 500), seeded_rng(9))
    p.net.attach(ue2, "192.0.2.77")
    ue2.initiate(p.clock.now)
    _init_exchange(p, ue2)
    sa2 = [s for s in p.gw.sas() if s is not sa][0]
    assert sa2._dh is spare and sa2._dh.public != sa._dh.public
    assert group not in p.gw._spare_dh  # used up: never handed to another SA
    assert p.gw.precompute() == 2 and p.gw._spare_dh[group].public not in (sa._dh.public, spare.public)


def test_without_precompute_the_keys_come_on_first_use():
    p = make_pair(ue_config(), gw_config())
    p.ue.initiate(p.clock.now)
    p.pump()  # never calls precompute(): IKE_AUTH forces the derivation
    assert p.types("ue")[:1] == ["IkeSaEstablished"] and "IkeSaEstablished" in p.types("gw")
    assert not p.gw.sas()[0].ctx.keys_pending
