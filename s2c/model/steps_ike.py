"""Step schemas of the IKEv2 attach (docs/ike.md): ``attach``, ``detach``, ``restart``.

``attach`` drives the UE daemon's ``attach`` command (IKEv2 + EAP-AKA to the PDN GW over one radio)
and checks the outcome; ``detach`` deletes the IKE SA; ``restart`` stops a node's daemon and starts
it again on the same configuration (e.g. the PDN GW, to see the UE's liveness check re-attach).
"""

from __future__ import annotations

from typing import Any

from .steps import FieldSpec, ScenarioState, StepSchema, register_step
from .topology import Topology

ATTACH_REASONS = (
    "AUTHENTICATION_FAILED", "TIMEOUT", "NO_ADDRESS", "NO_SUBSCRIPTION", "NO_TRUST_ANCHOR", "PEER_DEAD",
    "NO_PROPOSAL_CHOSEN", "TS_UNACCEPTABLE", "INTERNAL_ADDRESS_FAILURE", "EAP_PROTOCOL_ERROR",
)


def _check_attach(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    ue = args["ue"]
    if topo is not None:
        radio = args.get("radio")
        if radio is not None and (ue, radio) not in state.radios:
            radios = sorted(r for (u, r) in state.radios if u == ue)
            errs.append(("radio", f"'{ue}:{radio}' is not a radio of {ue} (radios: {', '.join(radios) or 'none'})"))
        if ue not in state.ues:
            errs.append(("ue", f"'{ue}' has no subscription in 'ues': it has no USIM to attach with"))
    if args.get("reason") and args.get("expect", "success") != "failure":
        errs.append(("reason", "'reason' only makes sense with 'expect: failure'"))
    for key in ("k", "opc"):
        v = args.get(key)
        if v is not None:
            try:
                if len(bytes.fromhex(str(v).replace(" ", "").removeprefix("0x"))) != 16:
                    raise ValueError
            except ValueError:
                errs.append((key, f"'{key}' must be 32 hex digits (16 bytes)"))
    return errs


def _check_detach(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    return []


register_step(StepSchema(
    kind="attach",
    doc="IKEv2 + EAP-AKA attach of a UE to the PDN GW over one radio (HoA by CP, ESP SAs); "
        "checks success, or failure with a reason.",
    fields=(
        FieldSpec("ue", "ue", required=True),
        FieldSpec("radio", "string", doc="the UE interface to attach over (default: the first with an address)"),
        FieldSpec("expect", "string", default="success", choices=("success", "failure")),
        FieldSpec("reason", "string", choices=ATTACH_REASONS,
                  doc="with expect: failure, the failure reason the UE must report"),
        FieldSpec("k", "string", doc="negative tests: a USIM key K other than the subscriber's (32 hex digits)"),
        FieldSpec("opc", "string", doc="negative tests: another OPc (32 hex digits)"),
        FieldSpec("max_ms", "number", min=0, doc="fail if the attach (IKE_SA_INIT to the last CHILD SA) took longer"),
    ),
    check=_check_attach,
    title="{ue}",
))

register_step(StepSchema(
    kind="detach",
    doc="Delete the UE's IKE SA (and so its CHILD SAs and Home Address).",
    fields=(FieldSpec("ue", "ue", required=True),),
    scalar="ue",
    check=_check_detach,
    title="{ue}",
))

register_step(StepSchema(
    kind="restart",
    doc="Stop a node's daemon (control 'stop', or SIGKILL with hard: true) and start it again.",
    fields=(
        FieldSpec("node", "daemon", required=True),
        FieldSpec("hard", "boolean", default=False, doc="kill -9 the daemon instead of a clean stop"),
        FieldSpec("down", "seconds", default=0.0, doc="seconds to stay down before starting again"),
    ),
    scalar="node",
    title="{node}",
))


def _check_handover(args: dict[str, Any], topo: Topology | None, state: ScenarioState) -> list[tuple[str, str]]:
    ue, radio = args["ue"], args["radio"]
    if topo is not None and (ue, radio) not in state.radios:
        radios = sorted(r for (u, r) in state.radios if u == ue)
        return [("radio", f"'{ue}:{radio}' is not a radio of {ue} (radios: {', '.join(radios) or 'none'})")]
    return []


register_step(StepSchema(
    kind="handover",
    doc="Move an attached UE's IKE and CHILD SAs to another radio with MOBIKE (RFC 4555), keeping the HoA.",
    fields=(
        FieldSpec("ue", "ue", required=True),
        FieldSpec("radio", "string", required=True, doc="the UE interface to continue on"),
    ),
    check=_check_handover,
    title="{ue} -> {radio}",
))
