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
