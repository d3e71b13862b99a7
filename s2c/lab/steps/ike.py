"""Step runners of the IKEv2 attach (docs/ike.md): ``attach``, ``detach``, ``restart``.

They drive the daemons only through their control sockets (``attach``/``detach``/``status``/``stop``)
and the backend's ``spawn`` (to start a daemon again on its own config file).
"""

from __future__ import annotations

import time
from typing import Any

from s2c.lab.steps import RunContext, StepError, StepOutcome, register_runner
from s2c.lab.steps.net import arg
from s2c.runtime.control import ControlError


def _attach_summary(res: dict[str, Any]) -> str:
    hoa = res.get("hoa") or {}
    parts = [f"HoA {hoa.get('ipv6') or '-'}" + (f" / {hoa['ipv4']}" if hoa.get("ipv4") else "")]
    if res.get("tunnel_sa_ms") is not None:
        parts.append(f"attach {res['tunnel_sa_ms']:.1f} ms (IKE_SA_INIT -> MH CHILD SA {res.get('child_sa_ms', 0):.1f} ms)")
    parts.append(f"CoA {res.get('coa')}" + (" behind NAT" if res.get("nat_detected") else ""))
    return ", ".join(parts)


@register_runner("attach")
def run_attach(ctx: RunContext, step: Any) -> StepOutcome:
    ue = str(arg(step, "ue"))
    radio = arg(step, "radio", default=None)
    expect = str(arg(step, "expect", default="success"))
    reason = arg(step, "reason", default=None)
    max_ms = arg(step, "max_ms", default=None)
    ctx.node(ue)
    budget = max(2.0, ctx.remaining(30.0) - 1.0)
    extra = {k: str(arg(step, k)) for k in ("k", "opc") if arg(step, k, default=None) is not None}
    args: dict[str, Any] = {"wait": budget - 0.5, **extra}
    if radio:
        args["radio"] = str(radio)
    try:
        res = ctx.control(ue).call("attach", timeout=budget + 0.5, **args)
    except ControlError as exc:
        raise StepError(f"{ue}: attach: {exc}") from None
    details = {"ue": ue, **(res or {})}
    attached = (res or {}).get("state") == "attached"
    if expect == "success":
        if not attached:
            return StepOutcome.fail(f"{ue} did not attach: {res.get('reason')} ({res.get('detail') or ''})",
                                    f"{res.get('reason')}", **details)
        if max_ms is not None and (res.get("tunnel_sa_ms") or 0) > float(max_ms):
            return StepOutcome.fail(f"attach took {res['tunnel_sa_ms']:.1f} ms > max_ms {float(max_ms):g}",
                                    _attach_summary(res), **details)
        return StepOutcome.ok(_attach_summary(res), **details)
    if attached:
        return StepOutcome.fail(f"{ue} attached although a failure was expected", _attach_summary(res), **details)
    got = res.get("reason")
    if reason and got != reason:
        return StepOutcome.fail(f"{ue} failed with {got}, expected {reason} ({res.get('detail') or ''})", str(got),
                                **details)
    st = ctx.call(ue, "status")
    if st.get("child_sas"):
        return StepOutcome.fail(f"{ue} reports {got} but still holds {st['child_sas']} CHILD SAs", str(got), **details)
    return StepOutcome.ok(f"failed as expected: {got} ({res.get('detail') or ''})", **details)


@register_runner("detach")
def run_detach(ctx: RunContext, step: Any) -> StepOutcome:
    ue = str(arg(step, "ue"))
    ctx.node(ue)
    res = ctx.call(ue, "detach")
    if (res or {}).get("state") != "detached":
        return StepOutcome.fail(f"{ue} is still {res.get('state')}", **(res or {}))
    took = res.get("detach_ms")
    return StepOutcome.ok(f"detached{' (IKE SA deleted)' if res.get('deleted') else ''}"
                          + (f" in {took:.1f} ms" if took is not None else ""), ue=ue, **res)


@register_runner("restart")
def run_restart(ctx: RunContext, step: Any) -> StepOutcome:
    node = str(arg(step, "node"))
    hard = bool(arg(step, "hard", default=False))
    down = float(arg(step, "down", default=0.0) or 0.0)
    ctx.node(node)
    proc = ctx.processes.get(node)
    if proc is None:
        raise StepError(f"{node} runs no daemon started by this run")
    t0 = time.monotonic()
    if hard:
        proc.signal(9)
    else:
        try:
            ctx.control(node).call("stop", timeout=2.0)
        except ControlError:
            pass
    try:
        proc.wait(max(0.5, min(5.0, ctx.remaining(5.0))))
    except Exception:  # noqa: BLE001 - did not stop: kill it
        proc.terminate(1.0)
    stopped = time.monotonic() - t0
    if down:
        time.sleep(min(down, max(0.0, ctx.remaining(down) - 2.0)))
    restarts = getattr(ctx, "_restarts", {})
    restarts[node] = restarts.get(node, 0) + 1
    ctx._restarts = restarts  # type: ignore[attr-defined]
    new = ctx.backend.spawn(node, list(proc.argv), log_name=f"{node}.restart{restarts[node]}",
                            env={"PYTHONUNBUFFERED": "1", "S2C_RUN_ID": ctx.run_id})
    ctx.processes[node] = new
    ctx._clients.pop(node, None)
    deadline = time.monotonic() + max(1.0, ctx.remaining(15.0) - 0.5)
    while True:
        if not new.alive():
            raise StepError(f"{node} exited with {new.returncode} after the restart (log {new.log_path})")
        try:
            ctx.control(node).call("status", timeout=1.0)
            break
        except ControlError:
            if time.monotonic() > deadline:
                raise StepError(f"{node} did not answer status after the restart") from None
            time.sleep(0.05)
    took = time.monotonic() - t0
    return StepOutcome.ok(f"{node} {'killed' if hard else 'stopped'} in {stopped * 1000:.0f} ms, "
                          f"up again after {took:.2f} s", node=node, hard=hard, stopped_s=round(stopped, 3),
                          took_s=round(took, 3), pid=new.pid)


@register_runner("handover")
def run_handover(ctx: RunContext, step: Any) -> StepOutcome:
    ue, radio = str(arg(step, "ue")), str(arg(step, "radio"))
    ctx.node(ue)
    t0 = time.monotonic()
    res = ctx.call(ue, "handover", radio=radio)
    if not res.get("moved"):
        return StepOutcome.fail(f"{ue} did not move to {radio}: {res}", **res)
    deadline = t0 + max(1.0, ctx.remaining(5.0) - 0.5)
    while True:  # the UPDATE_SA_ADDRESSES exchange is answered when the UE's IKE SA shows the new CoA
        sas = ctx.call(ue, "sas")
        if sas and str(sas[0].get("local", "")).startswith(str(res.get("coa"))):
            break
        if time.monotonic() > deadline:
            return StepOutcome.fail(f"{ue}: MOBIKE to {res.get('coa')} not confirmed", **res)
        time.sleep(0.05)
    took = time.monotonic() - t0
    return StepOutcome.ok(f"{ue} now on {radio} ({res.get('coa')} -> {res.get('pdngw')}) in {took * 1000:.0f} ms",
                          ue=ue, radio=radio, took_s=round(took, 4), **res)
