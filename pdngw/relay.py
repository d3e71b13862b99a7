"""EAP authenticator pass-through on the PDN GW (TS 33.402 §8.2.2, RFC 4072): the pure mapping between
the IKEv2 responder's EAP events and S6b Diameter-EAP messages. The daemon does the IO.

* IKE_AUTH without AUTH (EapAuthenticationRequested): the initiator's IDi becomes an
  EAP-Response/Identity (RFC 3748 §5.1) in the first DER, so the AAA can go straight to the
  AKA-Challenge.
* EapResponseReceived: its EAP packet goes in the next DER of the same Session-Id.
* A DEA becomes one responder command: :func:`dea_action`.
"""

from __future__ import annotations

from dataclasses import dataclass

from s2c.codec import eap as eapcodec
from s2c.codec.diameter import ExperimentalResultCode, ResultCode
from s2c.diameter.messages import DiameterEapAnswer


@dataclass(frozen=True)
class SendEapRequest:
    """DEA 1001 DIAMETER_MULTI_ROUND_AUTH: relay the EAP request to the UE."""

    eap: bytes


@dataclass(frozen=True)
class EapSuccess:
    """DEA 2001 with EAP-Master-Session-Key: EAP Success to the UE, MSK keys the AUTH payloads."""

    msk: bytes
    eap: bytes | None
    user_name: str | None


@dataclass(frozen=True)
class EapFailure:
    """Anything else (4001, Experimental-Result 5001 user unknown, errors, 2001 without MSK)."""

    eap: bytes | None
    reason: str


def identity_response(idi: bytes) -> bytes:
    """EAP-Response/Identity carrying the IKEv2 IDi (identifier 0)."""
    return eapcodec.serialize(eapcodec.identity_response(0, idi))


def dea_action(ans: DiameterEapAnswer) -> SendEapRequest | EapSuccess | EapFailure:
    """What the responder must do with this DEA."""
    if ans.is_multi_round:
        if ans.eap_payload:
            return SendEapRequest(ans.eap_payload)
        return EapFailure(None, "DEA 1001 without EAP-Payload")
    if ans.is_success:
        if ans.eap_master_session_key and len(ans.eap_master_session_key) >= 32:
            return EapSuccess(ans.eap_master_session_key, ans.eap_payload, ans.user_name)
        return EapFailure(ans.eap_payload, "DEA 2001 without a usable EAP-Master-Session-Key")
    if ans.experimental_result is not None:
        code = ans.experimental_result[1]
        try:
            name = ExperimentalResultCode(code).name
        except ValueError:
            name = f"experimental {code}"
        return EapFailure(ans.eap_payload, name)
    try:
        name = ResultCode(ans.result_code).name  # type: ignore[arg-type]
    except (ValueError, TypeError):
        name = f"result {ans.result_code}"
    return EapFailure(ans.eap_payload, name)
