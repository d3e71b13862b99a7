"""HSS (SWx) and AAA (S6b) functions in memory, without sockets: answers for hostile input and the
SWx loopback. Property tests: no input makes them raise; the store never changes on rejected input."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hss.aaa import AaaFunction, LoopbackSwx
from hss.hss import HssFunction, imsi_from_user_name
from hss.store import InvalidSubscriber, SubscriberStore
from hss.testing import IMSI, K, OPC, REALM, der, eap_over_s6b, identity_response, make_peer
from s2c.codec.diameter import Avp, AvpCode, DiameterMessage, ResultCode, parse_message
from s2c.diameter.messages import LocalIdentity, MultimediaAuthAnswer, build_mar
from s2c.eap_aka import AuthenticationSucceeded

IDENT = LocalIdentity("hss.test", "test", vendor_specific_application_ids=((10415, 16777265), (10415, 16777272)))


@pytest.fixture(scope="module")
def funcs(tmp_path_factory):
    store = SubscriberStore(str(tmp_path_factory.mktemp("hss") / "hss.db"), sqn_reserve=8)
    store.add({"imsi": IMSI, "k": K.hex(), "opc": OPC.hex(), "apn": "internet", "static_hoa": "2001:db8::5"})
    counters: Counter[str] = Counter()
    hss = HssFunction(store, os.urandom, IDENT, counters)
    aaa = AaaFunction(IDENT, LoopbackSwx(hss), os.urandom, counters=counters, profile=store.get)
    yield store, hss, aaa, counters
    store.close()


def test_imsi_from_user_name():
    assert imsi_from_user_name("001010000000001") == "001010000000001"
    assert imsi_from_user_name("0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org") == "001010000000001"
    assert imsi_from_user_name("6001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org") == "001010000000001"
    for bad in ("", "abc", "alice@example.org", "1234", "0012345678901234567@x"):
        with pytest.raises(InvalidSubscriber):
            imsi_from_user_name(bad)


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_imsi_from_user_name_only_raises_invalid(name):
    try:
        out = imsi_from_user_name(name)
    except InvalidSubscriber:
        return
    assert out.isdigit() and 5 <= len(out) <= 15


def test_loopback_swx_really_serialises(funcs):
    _, hss, _, _ = funcs
    seen = []
    orig = hss.handle_mar

    def spy(req):
        seen.append(req)
        return orig(req)

    hss.handle_mar = spy
    try:
        mar = build_mar(IDENT, session_id="s;1;1", destination_realm=REALM, user_name=IMSI)
        maa = LoopbackSwx(hss).request(mar)
    finally:
        hss.handle_mar = orig
    assert seen[0] is not mar and seen[0].serialize() == mar.serialize()  # parsed from bytes
    assert MultimediaAuthAnswer.from_message(maa).is_success


def test_aaa_in_memory_success(funcs):
    _, _, aaa, _ = funcs
    peer, nai = make_peer(IMSI)
    answers, events = eap_over_s6b(lambda m: aaa.handle_der(parse_message(m.serialize()), 0.0), peer, "pgw;m;1",
                                   identity_response(nai))
    assert answers[-1].result_code == ResultCode.DIAMETER_SUCCESS
    ok = next(e for e in events if isinstance(e, AuthenticationSucceeded))
    assert answers[-1].get_bytes(AvpCode.EAP_MASTER_SESSION_KEY) == ok.msk
    assert aaa.session_count() == 0


def test_aaa_purge(funcs):
    _, _, aaa, _ = funcs
    peer, nai = make_peer(IMSI)
    aaa.handle_der(der("pgw;m;2", identity_response(nai)), now=100.0)
    assert aaa.session_count() == 1
    assert aaa.purge(now=100.0 + aaa.session_timeout / 2) == 0
    assert aaa.purge(now=100.0 + aaa.session_timeout + 1) == 1
    assert aaa.session_count() == 0


avp_values = st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"EAP-AKA", b"EAP-AKA'", IMSI.encode()]))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(user=st.text(max_size=20), scheme=st.text(max_size=10), authz=st.one_of(st.none(), st.binary(max_size=40)),
       items=st.integers(0, 2**32 - 1), junk=st.lists(st.tuples(st.integers(0, 2000), avp_values), max_size=4))
def test_mar_never_raises_and_bad_input_moves_no_sqn(funcs, user, scheme, authz, items, junk):
    store, hss, _, _ = funcs
    store.flush()
    before = store.get(IMSI).sqn
    mar = build_mar(IDENT, session_id="s;h;1", destination_realm=REALM, user_name=user or "x", scheme=scheme or "x",
                    number_auth_items=items, resync_authorization=authz)
    mar.avps += [Avp(code, 0, value) for code, value in junk]
    ans = hss.handle_mar(parse_message(mar.serialize()))
    assert isinstance(ans, DiameterMessage) and not ans.is_request
    assert ans.result_code is not None or ans.experimental_result is not None
    store.flush()
    if ans.result_code != ResultCode.DIAMETER_SUCCESS:
        assert store.get(IMSI).sqn == before  # a rejected MAR moves nothing


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(payload=st.binary(max_size=80), sid=st.sampled_from(["a;1", "a;2", "a;3"]))
def test_der_never_raises(funcs, payload, sid):
    _, _, aaa, _ = funcs
    ans = aaa.handle_der(parse_message(der(sid, payload).serialize()), 0.0)
    assert isinstance(ans, DiameterMessage) and not ans.is_request
    assert ans.result_code in (1001, 4001, 5012) or ans.experimental_result == (10415, 5001)
