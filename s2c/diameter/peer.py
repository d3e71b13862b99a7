"""Sans-IO Diameter peer for one transport connection (RFC 6733 §5.6 simplified, RFC 3539 watchdog).

One class, ``DiameterPeer``, plays either role on an already-established TCP connection:

* initiator: sends CER at construction, waits for CEA (``cer_timeout``), then Open;
* responder: waits for CER (``cer_timeout``), answers CEA (5010 and close if no common
  application), then Open.

Inputs: ``receive_data(data, now)``, ``handle_timer(now)``, commands ``send_request(msg, now)``,
``send_answer(msg)``, ``disconnect(now, cause)``.  Outputs: ``data_to_send()``, ``next_event()``,
``get_timer()``.  No sockets, clocks or randomness: ``now`` is passed in and the initial
hop-by-hop / end-to-end identifiers come from an injected ``rng``.

The peer answers DWR and DPR itself, rejects requests it cannot serve (3001 command unsupported,
3007 application unsupported, 3008 invalid header bits, 5001 unknown M-bit AVP with Failed-AVP,
5014 malformed AVPs, 3002 before the connection is Open) and hands every other request to the
application as :class:`RequestReceived`; the application replies with ``send_answer``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from s2c.codec.diameter import (
    AVP_FLAG_MANDATORY,
    FLAG_ERROR,
    FLAG_REQUEST,
    ApplicationId,
    Avp,
    AvpCode,
    CommandCode,
    DiameterDecodeError,
    DiameterFramer,
    DiameterMessage,
    DisconnectCause,
    ResultCode,
    parse_message,
    serialize_message,
)
from s2c.codec.diameter_dict import AVP_DICTIONARY
from s2c.diameter.messages import (
    LocalIdentity,
    advertised_applications,
    build_cea,
    build_cer,
    build_dpa,
    build_dpr,
    build_dwa,
    build_dwr,
    build_error_answer,
)

__all__ = [
    "PeerRole",
    "PeerState",
    "ProtocolError",
    "PeerNotOpen",
    "DiameterPeer",
    "PeerEvent",
    "PeerOpened",
    "CapabilitiesExchangeFailed",
    "RequestReceived",
    "AnswerReceived",
    "RequestTimedOut",
    "WatchdogAnswered",
    "MessageDropped",
    "DisconnectRequested",
    "PeerClosed",
    "KNOWN_REQUESTS",
]

RngFn = Callable[[int], bytes]

KNOWN_REQUESTS: Mapping[int, frozenset[int]] = {
    ApplicationId.S6B_3GPP: frozenset(
        {CommandCode.DIAMETER_EAP, CommandCode.AA, CommandCode.SESSION_TERMINATION,
         CommandCode.ABORT_SESSION, CommandCode.RE_AUTH}
    ),
    ApplicationId.SWX_3GPP: frozenset(
        {CommandCode.MULTIMEDIA_AUTH, CommandCode.SERVER_ASSIGNMENT,
         CommandCode.REGISTRATION_TERMINATION, CommandCode.PUSH_PROFILE}
    ),
    ApplicationId.DIAMETER_EAP: frozenset({CommandCode.DIAMETER_EAP}),
}
"""Application requests per application (TS 29.273 §8.2.2 SWx, §9.2.2 S6b; RFC 4072 §3)."""


class PeerRole(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class PeerState(enum.Enum):
    """Connection states (RFC 6733 §5.6, one connection, no election)."""

    WAIT_CEA = "Wait-I-CEA"
    WAIT_CER = "Wait-CER"
    OPEN = "Open"
    CLOSING = "Closing"
    CLOSED = "Closed"


class ProtocolError(Exception):
    """A command that is illegal in the current state (daemons count, log and drop)."""


class PeerNotOpen(ProtocolError):
    """send_request() before the capabilities exchange completed or after close."""


# ---- events (past tense, frozen) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerOpened:
    """CER/CEA succeeded; the connection is Open (RFC 6733 §5.3)."""

    remote_host: str
    remote_realm: str
    applications: frozenset[int]


@dataclass(frozen=True, slots=True)
class CapabilitiesExchangeFailed:
    """The CEA carried an error, or no common application (5010); a PeerClosed follows."""

    result_code: int
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """An application request the application must answer with ``send_answer``."""

    request: DiameterMessage


@dataclass(frozen=True, slots=True)
class AnswerReceived:
    """An answer matched (by hop-by-hop id) to a request we sent."""

    request: DiameterMessage
    answer: DiameterMessage


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """No answer within ``request_timeout`` (or the connection closed first)."""

    request: DiameterMessage


@dataclass(frozen=True, slots=True)
class WatchdogAnswered:
    """A DWA came back for our DWR (RFC 3539 §3.4)."""

    result_code: int | None


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """An inbound message was discarded (or rejected with an error answer); counted by daemons."""

    reason: str
    result_code: int | None = None
    message: DiameterMessage | None = None


@dataclass(frozen=True, slots=True)
class DisconnectRequested:
    """The remote peer sent DPR; we answered DPA and close (RFC 6733 §5.4)."""

    cause: int | None


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The connection is over: flush ``data_to_send()`` and close the transport."""

    reason: str


PeerEvent = (
    PeerOpened | CapabilitiesExchangeFailed | RequestReceived | AnswerReceived | RequestTimedOut
    | WatchdogAnswered | MessageDropped | DisconnectRequested | PeerClosed
)

_BASE_CMDS = frozenset({CommandCode.CAPABILITIES_EXCHANGE, CommandCode.DEVICE_WATCHDOG, CommandCode.DISCONNECT_PEER})


class DiameterPeer:
    """One Diameter connection, either role (RFC 6733 §5.6 / RFC 3539), sans-IO."""

    def __init__(
        self,
        role: PeerRole,
        identity: LocalIdentity,
        now: float,
        *,
        rng: RngFn | None = None,
        watchdog_interval: float = 30.0,
        cer_timeout: float = 10.0,
        request_timeout: float = 10.0,
        disconnect_timeout: float = 5.0,
        supported_requests: Mapping[int, Collection[int]] | None = None,
        max_message_length: int | None = None,
    ) -> None:
        self.role = role
        self.identity = identity
        self.watchdog_interval = watchdog_interval
        self.cer_timeout = cer_timeout
        self.request_timeout = request_timeout
        self.disconnect_timeout = disconnect_timeout
        self._supported = {
            int(app): frozenset(int(c) for c in cmds)
            for app, cmds in (supported_requests if supported_requests is not None else KNOWN_REQUESTS).items()
        }
        self._framer = DiameterFramer() if max_message_length is None else DiameterFramer(max_message_length)
        self._out: list[bytes] = []
        self._events: deque[PeerEvent] = deque()
        seed = rng(8) if rng is not None else bytes(8)
        self._next_hbh = int.from_bytes(seed[:4], "big")
        self._next_e2e = int.from_bytes(seed[4:], "big")
        self._pending: dict[int, tuple[float, DiameterMessage]] = {}
        self._base_pending: dict[int, int] = {}  # hop-by-hop -> command of our CER/DWR/DPR
        self.remote_host: str | None = None
        self.remote_realm: str | None = None
        self.common_applications: frozenset[int] = frozenset()
        self._dwr_hbh: int | None = None
        self._watchdog_at: float | None = None
        self._deadline: float | None = now + cer_timeout  # CER/CEA or DPA deadline
        self.state = PeerState.WAIT_CEA if role is PeerRole.INITIATOR else PeerState.WAIT_CER
        self.counters: dict[str, int] = {"rx": 0, "tx": 0, "dropped": 0, "rejected": 0}
        if role is PeerRole.INITIATOR:
            self._send_request_internal(build_cer(identity), now, track=False)

    # ---- outputs -----------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """All bytes queued for the transport since the last call."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def next_event(self) -> PeerEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """Earliest time at which ``handle_timer`` must be called, or None."""
        if self.state is PeerState.CLOSED:
            return None
        t = self._deadline
        if self._watchdog_at is not None and (t is None or self._watchdog_at < t):
            t = self._watchdog_at
        if self._pending:
            first = next(iter(self._pending.values()))[0]  # insertion order == deadline order
            if t is None or first < t:
                t = first
        return t

    @property
    def _closed(self) -> bool:
        return self.state is PeerState.CLOSED

    @property
    def is_open(self) -> bool:
        return self.state is PeerState.OPEN

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # ---- commands ----------------------------------------------------------------------------
    def send_request(self, msg: DiameterMessage, now: float) -> DiameterMessage:
        """Queue an application request; assigns hop-by-hop and end-to-end ids (returned in ``msg``)."""
        if self.state is not PeerState.OPEN:
            raise PeerNotOpen(f"cannot send request in state {self.state.value}")
        if not msg.is_request:
            raise ProtocolError("send_request() needs a message with the R bit")
        self._send_request_internal(msg, now, track=True)
        return msg

    def send_answer(self, answer: DiameterMessage) -> None:
        """Queue the application's answer to a RequestReceived."""
        if answer.is_request:
            raise ProtocolError("send_answer() needs a message without the R bit")
        if self.state is PeerState.CLOSED:
            raise PeerNotOpen("connection closed")
        self._emit(answer)

    def disconnect(self, now: float, cause: int = DisconnectCause.REBOOTING) -> None:
        """Send DPR and wait for DPA (or ``disconnect_timeout``) before closing (RFC 6733 §5.4)."""
        if self.state is PeerState.OPEN:
            self._send_request_internal(build_dpr(self.identity, cause), now, track=False)
            self.state = PeerState.CLOSING
            self._deadline = now + self.disconnect_timeout
            self._watchdog_at = None
        elif self.state is not PeerState.CLOSED and self.state is not PeerState.CLOSING:
            self._close("local disconnect before open")

    def connection_lost(self, reason: str = "transport closed") -> None:
        """The transport reports the TCP connection is gone."""
        if self.state is not PeerState.CLOSED:
            self._close(reason)

    # ---- inputs ------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        if self.state is PeerState.CLOSED:
            return
        try:
            frames = self._framer.feed_frames(data)
        except DiameterDecodeError as exc:
            self._close(f"framing error: {exc}")
            return
        for frame in frames:
            if self._closed:
                return
            self.counters["rx"] += 1
            try:
                msg = parse_message(frame)
            except DiameterDecodeError as exc:
                self._reject_frame(frame, str(exc))
                continue
            if self.state is PeerState.OPEN:
                self._watchdog_at = now + self.watchdog_interval  # any traffic resets Tw (RFC 3539 §3.4.1)
            if msg.is_request:
                self._on_request(msg, now)
            else:
                self._on_answer(msg, now)

    def handle_timer(self, now: float) -> None:
        if self.state is PeerState.CLOSED:
            return
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            if self.state is PeerState.WAIT_CER:
                self._close("no CER received within timeout")
            elif self.state is PeerState.WAIT_CEA:
                self._close("no CEA received within timeout")
            elif self.state is PeerState.CLOSING:
                self._close("no DPA received within timeout")
            if self._closed:
                return
        while self._pending:
            hbh, (deadline, req) = next(iter(self._pending.items()))
            if deadline > now:
                break
            del self._pending[hbh]
            self._events.append(RequestTimedOut(req))
        if self._watchdog_at is not None and now >= self._watchdog_at:
            if self._dwr_hbh is not None:
                self._close("watchdog: no DWA and no traffic within Tw")
                return
            dwr = build_dwr(self.identity)
            self._send_request_internal(dwr, now, track=False)
            self._dwr_hbh = dwr.hop_by_hop
            self._watchdog_at = now + self.watchdog_interval

    # ---- internals ---------------------------------------------------------------------------
    def _emit(self, msg: DiameterMessage) -> None:
        self._out.append(serialize_message(msg))
        self.counters["tx"] += 1

    def _send_request_internal(self, msg: DiameterMessage, now: float, *, track: bool) -> None:
        msg.flags |= FLAG_REQUEST
        msg.hop_by_hop = self._next_hbh
        msg.end_to_end = self._next_e2e
        self._next_hbh = (self._next_hbh + 1) & 0xFFFFFFFF
        self._next_e2e = (self._next_e2e + 1) & 0xFFFFFFFF
        if track:
            self._pending[msg.hop_by_hop] = (now + self.request_timeout, msg)
        elif msg.command_code in _BASE_CMDS:
            self._base_pending[msg.hop_by_hop] = msg.command_code
        self._emit(msg)

    def _close(self, reason: str) -> None:
        self.state = PeerState.CLOSED
        self._deadline = None
        self._watchdog_at = None
        pending = list(self._pending.values())
        self._pending.clear()
        for _, req in pending:
            self._events.append(RequestTimedOut(req))
        self._events.append(PeerClosed(reason))

    def _drop(self, reason: str, msg: DiameterMessage | None = None, result_code: int | None = None) -> None:
        self.counters["dropped" if result_code is None else "rejected"] += 1
        self._events.append(MessageDropped(reason, result_code, msg))

    def _reject(self, msg: DiameterMessage, result_code: int, reason: str, failed: list[Avp] | None = None) -> None:
        self._emit(build_error_answer(msg, self.identity, result_code, error_message=reason, failed_avps=failed or ()))
        self._drop(reason, msg, result_code)

    def _reject_frame(self, frame: bytes, reason: str) -> None:
        """Header parsed by the framer but AVPs malformed: answer 5014 if it was a request (RFC 6733 §7.1.5)."""
        flags = frame[4]
        if flags & FLAG_REQUEST and not flags & FLAG_ERROR:
            hdr = DiameterMessage(
                int.from_bytes(frame[5:8], "big"), int.from_bytes(frame[8:12], "big"), flags,
                int.from_bytes(frame[12:16], "big"), int.from_bytes(frame[16:20], "big"),
            )
            self._reject(hdr, ResultCode.DIAMETER_INVALID_AVP_LENGTH, f"malformed message: {reason}")
        else:
            self._drop(f"malformed message: {reason}")

    def _on_request(self, msg: DiameterMessage, now: float) -> None:
        cmd = msg.command_code
        state = self.state
        if msg.flags & FLAG_ERROR:
            self._reject(msg, ResultCode.DIAMETER_INVALID_HDR_BITS, "E bit set in a request")
            return
        if cmd == CommandCode.CAPABILITIES_EXCHANGE:
            if state is PeerState.WAIT_CER:
                self._on_cer(msg, now)
            else:
                self._reject(msg, ResultCode.DIAMETER_UNABLE_TO_COMPLY, f"CER in state {state.value}")
            return
        if state is PeerState.WAIT_CER or state is PeerState.WAIT_CEA:
            self._reject(msg, ResultCode.DIAMETER_UNABLE_TO_DELIVER, "request before capabilities exchange")
            return
        if cmd == CommandCode.DEVICE_WATCHDOG:
            self._emit(build_dwa(msg, self.identity))
            return
        if cmd == CommandCode.DISCONNECT_PEER:
            self._emit(build_dpa(msg, self.identity))
            try:
                cause = msg.get_u32(AvpCode.DISCONNECT_CAUSE)
            except DiameterDecodeError:
                cause = None
            self._events.append(DisconnectRequested(cause))
            self._close("peer sent DPR")
            return
        if state is PeerState.CLOSING:
            self._reject(msg, ResultCode.DIAMETER_UNABLE_TO_DELIVER, "connection closing")
            return
        app = msg.application_id
        if app not in self.common_applications and ApplicationId.RELAY not in self.common_applications:
            self._reject(msg, ResultCode.DIAMETER_APPLICATION_UNSUPPORTED, f"application {app} not negotiated")
            return
        cmds = self._supported.get(app)
        if cmds is None or cmd not in cmds:
            self._reject(msg, ResultCode.DIAMETER_COMMAND_UNSUPPORTED, f"command {cmd} unsupported for application {app}")
            return
        dictionary = AVP_DICTIONARY
        for a in msg.avps:
            if a.flags & AVP_FLAG_MANDATORY and (a.code, a.vendor_id) not in dictionary:
                self._reject(msg, ResultCode.DIAMETER_AVP_UNSUPPORTED, f"unsupported mandatory AVP {a.name}", [a])
                return
        self._events.append(RequestReceived(msg))

    def _on_cer(self, cer: DiameterMessage, now: float) -> None:
        try:
            remote_apps = advertised_applications(cer)
            host, realm = cer.origin_host, cer.origin_realm
        except DiameterDecodeError as exc:
            self._emit(build_cea(cer, self.identity, ResultCode.DIAMETER_INVALID_AVP_VALUE, str(exc)))
            self._close(f"bad CER: {exc}")
            return
        if host is None or realm is None:
            self._emit(build_cea(cer, self.identity, ResultCode.DIAMETER_MISSING_AVP, "Origin-Host/Origin-Realm"))
            self._close("CER without Origin-Host/Origin-Realm")
            return
        common = self._intersect(remote_apps)
        if not common:
            self._emit(build_cea(cer, self.identity, ResultCode.DIAMETER_NO_COMMON_APPLICATION))
            self._events.append(CapabilitiesExchangeFailed(ResultCode.DIAMETER_NO_COMMON_APPLICATION))
            self._close("no common application")
            return
        self._emit(build_cea(cer, self.identity, ResultCode.DIAMETER_SUCCESS))
        self._open(host, realm, common, now)

    def _intersect(self, remote: frozenset[int]) -> frozenset[int]:
        local = self.identity.applications
        relay = int(ApplicationId.RELAY)
        if relay in remote:
            return local
        if relay in local:
            return remote
        return local & remote

    def _open(self, host: str, realm: str, common: frozenset[int], now: float) -> None:
        self.remote_host, self.remote_realm, self.common_applications = host, realm, common
        self.state = PeerState.OPEN
        self._deadline = None
        self._watchdog_at = now + self.watchdog_interval
        self._events.append(PeerOpened(host, realm, common))

    def _on_answer(self, msg: DiameterMessage, now: float) -> None:
        hbh = msg.hop_by_hop
        base = self._base_pending.pop(hbh, None)
        if base is not None:
            if base != msg.command_code:
                self._drop("answer command does not match request", msg)
                return
            if base == CommandCode.CAPABILITIES_EXCHANGE:
                self._on_cea(msg, now)
            elif base == CommandCode.DEVICE_WATCHDOG:
                if hbh == self._dwr_hbh:
                    self._dwr_hbh = None
                try:
                    rc = msg.result_code
                except DiameterDecodeError:
                    rc = None
                self._events.append(WatchdogAnswered(rc))
            elif base == CommandCode.DISCONNECT_PEER:
                self._close("DPA received")
            return
        entry = self._pending.get(hbh)
        if entry is None:
            self._drop(f"answer with unknown hop-by-hop id 0x{hbh:08x}", msg)
            return
        req = entry[1]
        if req.command_code != msg.command_code or req.end_to_end != msg.end_to_end:
            self._drop("answer does not match request (command/end-to-end)", msg)  # keep waiting
            return
        del self._pending[hbh]
        self._events.append(AnswerReceived(req, msg))

    def _on_cea(self, cea: DiameterMessage, now: float) -> None:
        if self.state is not PeerState.WAIT_CEA:
            self._drop(f"CEA in state {self.state.value}", cea)
            return
        try:
            rc = cea.result_code
            remote_apps = advertised_applications(cea)
            host, realm = cea.origin_host, cea.origin_realm
            err = cea.get_str(AvpCode.ERROR_MESSAGE)
        except DiameterDecodeError as exc:
            self._events.append(CapabilitiesExchangeFailed(ResultCode.DIAMETER_INVALID_AVP_VALUE, str(exc)))
            self._close(f"bad CEA: {exc}")
            return
        if rc != ResultCode.DIAMETER_SUCCESS or host is None or realm is None:
            code = rc if rc is not None else ResultCode.DIAMETER_MISSING_AVP
            self._events.append(CapabilitiesExchangeFailed(code, err))
            self._close(f"capabilities exchange failed ({code})")
            return
        common = self._intersect(remote_apps)
        if not common:
            self._events.append(CapabilitiesExchangeFailed(ResultCode.DIAMETER_NO_COMMON_APPLICATION, err))
            self._close("no common application")
            return
        self._open(host, realm, common, now)
