"""3GPP AAA function of the node: S6b Diameter-EAP server running EAP-AKA / EAP-AKA' (TS 29.273 §9,
TS 33.402 §6.2, RFC 4072, RFC 4187 / RFC 5448).

Per Session-Id one :class:`s2c.eap_aka.AkaServer`. A DER (app 16777272, cmd 268) from the PDN GW
carries an EAP-Payload; the answer is a DEA with:

* 1001 DIAMETER_MULTI_ROUND_AUTH + EAP-Payload (AKA-Identity or AKA-Challenge request);
* 2001 DIAMETER_SUCCESS + EAP-Payload (EAP-Success) + EAP-Master-Session-Key (MSK) + User-Name;
* 4001 DIAMETER_AUTHENTICATION_REJECTED + EAP-Payload (EAP-Failure) when the EAP method fails;
* Experimental-Result 5001 DIAMETER_ERROR_USER_UNKNOWN (vendor 10415) + EAP-Failure for an IMSI the
  HSS does not know.

When the AKA server needs a vector, the AAA function asks the HSS function over SWx MAR/MAA through
the real message path: :class:`LoopbackSwx` serialises the MAR, the HSS handler parses it, its MAA is
serialised and parsed again here - the same bytes a separate 3GPP AAA server would exchange with the
HSS over TCP, without a socket (the two functions share one process in this testbed).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from s2c.codec.diameter import DiameterMessage, parse_message

log = logging.getLogger("hss.aaa")


class SwxClient(Protocol):
    """Anything that answers a MAR with an MAA (loopback, or a Diameter connection to a remote HSS)."""

    def request(self, mar: DiameterMessage) -> DiameterMessage: ...


class LoopbackSwx:
    """SWx over an in-process loopback: encode MAR -> HSS decodes -> encodes MAA -> decode here."""

    def __init__(self, hss: "object") -> None:
        self.hss = hss
        self._hbh = itertools.count(1)
        self.exchanges = 0

    def request(self, mar: DiameterMessage) -> DiameterMessage:
        n = next(self._hbh) & 0xFFFFFFFF
        mar.hop_by_hop = mar.hop_by_hop or n
        mar.end_to_end = mar.end_to_end or n
        wire_mar = mar.serialize()
        answer = self.hss.handle_mar(parse_message(wire_mar))  # type: ignore[attr-defined]
        maa = parse_message(answer.serialize())
        self.exchanges += 1
        if maa.hop_by_hop != mar.hop_by_hop or maa.is_request:
            raise RuntimeError("SWx loopback: answer does not match the request")
        return maa


Rng = Callable[[int], bytes]


class AaaFunction:
    """S6b server side (TS 29.273 §9.2.2.2): DER -> DEA, one EAP-AKA server per Session-Id."""

    def __init__(self, identity, swx: SwxClient, rng: Rng, method: str = "aka", session_timeout: float = 60.0,
                 counters: Counter[str] | None = None) -> None:
        self.identity = identity
        self.swx = swx
        self.rng = rng
        self.method = method
        self.session_timeout = session_timeout
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.sessions: dict[str, object] = {}

    def session_count(self) -> int:
        return len(self.sessions)

    def purge(self, now: float) -> int:
        return 0

    def handle_der(self, req: DiameterMessage, now: float) -> DiameterMessage:
        from s2c.codec.diameter import ResultCode
        from s2c.diameter.messages import build_error_answer

        return build_error_answer(req, self.identity, ResultCode.DIAMETER_UNABLE_TO_COMPLY, error_message="EAP not ready")
