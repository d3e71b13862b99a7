"""The PDN GW's EAP pass-through mapping (pdngw/relay.py): DEA -> responder command, IDi -> EAP
identity; against DEAs built by the same builders the HSS/AAA uses (no sockets, no root)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from s2c.codec import eap
from s2c.codec.diameter import ExperimentalResultCode, ResultCode
from s2c.diameter.messages import DiameterEapAnswer, LocalIdentity, build_dea, build_der

from pdngw.relay import EapFailure, EapSuccess, SendEapRequest, dea_action, identity_response

ID = LocalIdentity("aaa.example", "example")
NAI = b"0001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org"


def der():
    return build_der(ID, session_id="pgw;1;1", destination_realm="example", eap_payload=identity_response(NAI))


def test_identity_response_carries_idi():
    pkt = eap.parse(identity_response(NAI))
    assert pkt.code == 2 and pkt.identifier == 0 and pkt.type == 1 and pkt.type_data == NAI


def test_multi_round_relays_the_request():
    req = bytes([1, 7, 0, 8, 23, 1, 0, 0])
    act = dea_action(DiameterEapAnswer.from_message(build_dea(der(), ID, result_code=ResultCode.DIAMETER_MULTI_ROUND_AUTH,
                                                               eap_payload=req)))
    assert act == SendEapRequest(req)


def test_success_with_msk():
    msk = bytes(range(64))
    act = dea_action(DiameterEapAnswer.from_message(build_dea(der(), ID, result_code=ResultCode.DIAMETER_SUCCESS,
                                                               eap_payload=bytes([3, 7, 0, 4]),
                                                               eap_master_session_key=msk, user_name="001010000000001")))
    assert isinstance(act, EapSuccess) and act.msk == msk and act.eap == bytes([3, 7, 0, 4])
    assert act.user_name == "001010000000001"


def test_success_without_msk_is_a_failure():
    act = dea_action(DiameterEapAnswer.from_message(build_dea(der(), ID, result_code=ResultCode.DIAMETER_SUCCESS,
                                                               eap_payload=bytes([3, 7, 0, 4]))))
    assert isinstance(act, EapFailure) and "Master-Session-Key" in act.reason


def test_rejected_and_unknown_user():
    act = dea_action(DiameterEapAnswer.from_message(build_dea(
        der(), ID, result_code=ResultCode.DIAMETER_AUTHENTICATION_REJECTED, eap_payload=bytes([4, 7, 0, 4]))))
    assert act == EapFailure(bytes([4, 7, 0, 4]), "DIAMETER_AUTHENTICATION_REJECTED")
    act = dea_action(DiameterEapAnswer.from_message(build_dea(
        der(), ID, experimental_result=ExperimentalResultCode.DIAMETER_ERROR_USER_UNKNOWN, eap_payload=bytes([4, 0, 0, 4]))))
    assert isinstance(act, EapFailure) and act.reason == "DIAMETER_ERROR_USER_UNKNOWN"


@given(st.integers(0, 0xFFFFFFFF), st.one_of(st.none(), st.binary(max_size=40)), st.one_of(st.none(), st.binary(max_size=80)))
def test_any_result_code_maps_to_exactly_one_action(code, payload, msk):
    ans = DiameterEapAnswer("s", code, None, payload, msk)
    act = dea_action(ans)
    assert isinstance(act, (SendEapRequest, EapSuccess, EapFailure))
    if isinstance(act, EapSuccess):
        assert code == 2001 and msk is not None and len(msk) >= 32
    if isinstance(act, SendEapRequest):
        assert code == 1001 and act.eap == payload


def test_home_address_pool():
    import ipaddress

    from s2c.codec.ikev2 import CpAttributeType
    from s2c.ike import DSMIP6_CP_REQUEST, AddressRequest

    from pdngw.daemon import HomeAddressPool

    ha = ipaddress.IPv6Address("2001:db8:1::1")
    pool = HomeAddressPool("2001:db8:1::/62", 64, ha, "198.19.0.0/30")
    v4 = tuple(DSMIP6_CP_REQUEST) + (CpAttributeType.INTERNAL_IP4_ADDRESS,)
    a = pool.allocate(AddressRequest(1, "ue-a", v4))
    b = pool.allocate(AddressRequest(2, "ue-b", tuple(DSMIP6_CP_REQUEST)))
    assert str(a.home_prefix) == "2001:db8:1:1::/64" and str(a.home_address) == "2001:db8:1:1::1"
    assert str(b.home_prefix) == "2001:db8:1:2::/64" and b.ipv4 is None  # no IPv4 unless asked
    assert a.ha_address == ha and str(a.ipv4) == "198.19.0.2"  # .1 is left to the pool's gateway
    again = pool.allocate(AddressRequest(3, "ue-a", v4))  # same UE again (re-attach): same addresses
    assert again.home_prefix == a.home_prefix and again.ipv4 == a.ipv4
    assert pool.allocate(AddressRequest(4, "ue-c", tuple(DSMIP6_CP_REQUEST))).home_prefix.network_address == \
        ipaddress.IPv6Address("2001:db8:1:3::")
    assert pool.allocate(AddressRequest(5, "ue-d", tuple(DSMIP6_CP_REQUEST))) is None  # /62 holds 3 UEs + home link
