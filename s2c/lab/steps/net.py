"""Network step runners: ping, link, move, impair, wait, expect."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from s2c.lab.steps import RunContext, StepError, StepOutcome, register_runner

_NOTHING = object()


def arg(step: Any, *names: str, default: Any = _NOTHING) -> Any:
    """The first of ``names`` present in the step's args (schemas name some fields two ways)."""
    args = getattr(step, "args", None) or {}
    for n in names:
        if n in args and args[n] is not None:
            return args[n]
    if default is _NOTHING:
        raise StepError(f"step {getattr(step, 'kind', '?')}: missing field {names[0]!r}")
    return default


def endpoint(step: Any) -> tuple[str, str]:
    """(node, iface) of the step's ``endpoint`` field ("node:iface")."""
    ep = str(arg(step, "endpoint"))
    node, sep, iface = ep.partition(":")
    if not sep or not iface:
        raise StepError(f"endpoint must be node:iface, not {ep!r}")
    return node, iface


def source_address(ctx: RunContext, src_node: str, src: Any, family: int | None) -> str | None:
    """The ``src`` field: None, a literal address, or "hoa" (the UE's home address, from its status)."""
    if src in (None, ""):
        return None
    if src != "hoa":
        return str(src)
    status = ctx.call(src_node, "status")
    hoa = status.get("hoa") if isinstance(status, dict) else None
    if isinstance(hoa, dict):
        for fam in ((family,) if family else (6, 4)):
            value = hoa.get(f"ipv{fam}")
            if value:
                return str(value).split("/")[0]
    elif isinstance(hoa, str) and hoa:
        return hoa.split("/")[0]
    raise StepError(f"{src_node} has no home address{' of IPv%d' % family if family else ''} "
                    f"(status.hoa = {hoa!r}); attach first")


def _family(value: Any) -> int | None:
    if value in (None, "", "any", "auto"):
        return None
    v = str(value).lower().lstrip("ipv")
    if v in ("4", "6"):
        return int(v)
    raise StepError(f"family must be 4 or 6, not {value!r}")


# -- ping -----------------------------------------------------------------------------------------

_TX = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)(?:/([\d.]+))? ms")


def parse_ping(text: str) -> dict[str, Any]:
    """transmitted/received/loss and rtt min/avg/max (ms, None if no reply) from iputils ping output."""
    out: dict[str, Any] = {"transmitted": 0, "received": 0, "loss_pct": 100.0,
                           "rtt_min": None, "rtt_avg": None, "rtt_max": None}
    m = _TX.search(text)
    if m:
        out["transmitted"], out["received"] = int(m.group(1)), int(m.group(2))
        if out["transmitted"]:
            out["loss_pct"] = round(100.0 * (1 - out["received"] / out["transmitted"]), 2)
    m = _RTT.search(text)
    if m:
        out["rtt_min"], out["rtt_avg"], out["rtt_max"] = (float(m.group(i)) for i in (1, 2, 3))
    return out


@register_runner("ping")
def run_ping(ctx: RunContext, step: Any) -> StepOutcome:
    source = str(arg(step, "from"))
    src_node, _, src_if = source.partition(":")
    target = str(arg(step, "to"))
    count = int(arg(step, "count", default=3))
    interval = float(arg(step, "interval", default=0.2))
    family = _family(arg(step, "family", default=None))
    max_loss = float(arg(step, "max_loss", default=0.0))
    ctx.node(src_node)
    src_addr = source_address(ctx, src_node, arg(step, "src", default=None), family)
    if src_addr and not family:
        family = 6 if ":" in src_addr else 4
    addrs = ctx.resolve(source, target, family)
    dst = addrs[0]
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", "-6" if ":" in dst else "-4"]
    if src_addr or src_if:
        argv += ["-I", src_addr or src_if]
    argv.append(dst)
    budget = count * interval + 3.0
    res = ctx.backend.exec(src_node, argv, timeout=max(min(budget, ctx.remaining(budget)), 2.0))
    stats = parse_ping(res.stdout or "")
    details = {"from": source, "to": target, "address": dst, "src": src_addr, "exit": res.returncode, **stats}
    if not stats["transmitted"] and res.returncode not in (0, 1):
        # ping itself failed (e.g. "connect: Network is unreachable"): no packet could be sent
        lines = (res.stderr or res.stdout or "").strip().splitlines()
        details["error"] = lines[-1] if lines else f"ping exited {res.returncode}"
    rtt = f", rtt avg {stats['rtt_avg']:.2f} ms" if stats["rtt_avg"] is not None else ""
    summary = f"{stats['received']}/{stats['transmitted'] or count} replies{rtt} ({dst})"
    if str(arg(step, "expect", default="success")) == "fail":
        # a negative test: passes only if no request got a reply
        if stats["received"] == 0:
            return StepOutcome.ok(summary + ", as expected", **details)
        return StepOutcome.fail(f"expected no reply from {target} ({dst}), got {stats['received']}/"
                                f"{stats['transmitted']}", summary, **details)
    if stats["received"] == 0:
        why = f": {details['error']}" if details.get("error") else ""
        return StepOutcome.fail(f"no reply from {target} ({dst}){why}", summary, **details)
    if stats["loss_pct"] > max_loss:
        return StepOutcome.fail(f"loss {stats['loss_pct']:g}% > max_loss {max_loss:g}% "
                                f"({stats['received']}/{stats['transmitted']} replies from {dst})", summary, **details)
    return StepOutcome.ok(summary, **details)


# -- link / move / impair -------------------------------------------------------------------------


@register_runner("link")
def run_link(ctx: RunContext, step: Any) -> StepOutcome:
    node, iface = endpoint(step)
    state = arg(step, "state")
    if isinstance(state, bool):
        up = state
    else:
        s = str(state).lower()
        if s not in ("up", "down"):
            raise StepError(f"link state must be up or down, not {state!r}")
        up = s == "up"
    ctx.node(node)
    t0 = time.monotonic()
    ctx.backend.set_link(node, iface, up)
    took = time.monotonic() - t0
    return StepOutcome.ok(f"{node}:{iface} {'up' if up else 'down'}", node=node, iface=iface,
                          state="up" if up else "down", took=round(took, 6))


@register_runner("move")
def run_move(ctx: RunContext, step: Any) -> StepOutcome:
    node, iface = str(arg(step, "ue")), str(arg(step, "radio"))
    network = str(arg(step, "to"))
    ctx.node(node)
    t0 = time.monotonic()
    before = None
    try:
        before = ctx.backend.addresses(node).get(iface)
    except Exception:  # noqa: BLE001 - informational only
        pass
    at = time.time()
    new = ctx.backend.move(node, iface, network)
    took = time.monotonic() - t0
    addrs = list(new.get("ipv4") or []) + list(new.get("ipv6") or [])
    return StepOutcome.ok(f"{node}:{iface} -> {network} {', '.join(addrs) or 'no address'} in {took * 1000:.0f} ms",
                          node=node, iface=iface, network=network, at=at, took=round(took, 6),
                          addresses=new, before=before)


@register_runner("impair")
def run_impair(ctx: RunContext, step: Any) -> StepOutcome:
    node, iface = endpoint(step)
    loss = arg(step, "loss", default=None)
    rate = arg(step, "rate", default=None)
    delay = arg(step, "delay", default=None)
    clear = bool(arg(step, "clear", default=False))
    if isinstance(loss, str):
        loss = float(loss.rstrip("%"))
    if isinstance(delay, str):
        delay = float(delay.rstrip("ms").strip())
    if loss is None and rate is None and delay is None and not clear:
        raise StepError("impair: give loss, rate, delay_ms or clear")
    ctx.node(node)
    ctx.backend.impair(node, iface, loss=loss, rate=rate, delay_ms=delay, clear=clear)
    parts = [f"{k} {v}" for k, v in (("loss", f"{loss}%" if loss is not None else None), ("rate", rate),
                                      ("delay", f"{delay} ms" if delay is not None else None)) if v is not None]
    return StepOutcome.ok(f"{node}:{iface} " + (", ".join(parts) if parts else "cleared"),
                          node=node, iface=iface, loss=loss, rate=rate, delay_ms=delay, clear=clear)


# -- wait -----------------------------------------------------------------------------------------


@register_runner("wait")
def run_wait(ctx: RunContext, step: Any) -> StepOutcome:
    seconds = arg(step, "seconds")
    seconds = float(str(seconds).rstrip("s")) if isinstance(seconds, str) else float(seconds)
    if seconds < 0 or not math.isfinite(seconds):
        raise StepError(f"wait: bad duration {seconds}")
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.2))
    return StepOutcome.ok(f"{seconds:g} s", seconds=seconds, slept=round(time.monotonic() - t0, 6))


# -- expect ---------------------------------------------------------------------------------------


def follow(value: Any, path: str) -> Any:
    """``a.b.0.c``: dict keys and list indexes; KeyError naming the missing part."""
    if not path:
        return value
    cur = value
    walked = []
    for part in str(path).split("."):
        walked.append(part)
        if isinstance(cur, dict):
            if part not in cur:
                raise KeyError(f"{'.'.join(walked)} not found (have: {', '.join(map(str, cur)) or 'nothing'})")
            cur = cur[part]
        elif isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                raise KeyError(f"{'.'.join(walked)}: no index {part} in a list of {len(cur)}") from None
        else:
            raise KeyError(f"{'.'.join(walked)}: cannot index into {type(cur).__name__} {cur!r}")
    return cur


def _num(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError("boolean is not a number")
    return float(v)


OPS = {
    "equals": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: _num(a) > _num(b),
    "ge": lambda a, b: _num(a) >= _num(b),
    "lt": lambda a, b: _num(a) < _num(b),
    "le": lambda a, b: _num(a) <= _num(b),
    "contains": lambda a, b: b in a,
}
MISSING = object()


@register_runner("expect")
def run_expect(ctx: RunContext, step: Any) -> StepOutcome:
    node = str(arg(step, "node"))
    cmd = str(arg(step, "query", default="status"))
    cmd_args = arg(step, "args", default={}) or {}
    path = str(arg(step, "path", default=""))
    within = arg(step, "within", default=None)
    interval = float(arg(step, "interval", default=0.5))
    args = getattr(step, "args", None) or {}
    comparisons = [(k, args[k]) for k in (*OPS, "exists") if k in args and (k == "exists" or args[k] is not None)]
    if not comparisons:
        raise StepError(f"expect: give one of {', '.join((*OPS, 'exists'))}")
    t0 = time.monotonic()
    end = t0 + float(within or 0.0)
    polls = 0
    actual: Any = MISSING
    while True:
        polls += 1
        try:
            reply = ctx.call(node, cmd, **cmd_args)
        except StepError as exc:
            if not within:
                raise
            reply, missing = MISSING, str(exc)  # not answerable yet (e.g. no such stream): keep polling
        if reply is not MISSING:
            try:
                actual = follow(reply, path)
                missing = ""
            except KeyError as exc:
                actual, missing = MISSING, str(exc.args[0] if exc.args else exc)
        else:
            actual = MISSING
        failed = []
        for name, expected in comparisons:
            if name == "exists":
                good = (actual is not MISSING) == bool(expected)
            elif actual is MISSING:
                good = False
            else:
                try:
                    good = bool(OPS[name](actual, expected))
                except (TypeError, ValueError):
                    good = False
            if not good:
                failed.append(f"{name} {expected!r}")
        shown = _short(actual) if actual is not MISSING else f"missing ({missing})"
        if not failed:
            took = time.monotonic() - t0
            summary = f"{path or '.'} = {shown}" + (f" after {took:.2f} s" if within else "")
            return StepOutcome.ok(summary, node=node, query=cmd, path=path,
                                  actual=None if actual is MISSING else actual, polls=polls, took=round(took, 6))
        problem = f"{node} {cmd} {path or '.'} = {shown}, expected {' and '.join(failed)}"
        limit = min(end, ctx.deadline) if ctx.deadline else end
        if not within or time.monotonic() + interval > limit:
            break
        time.sleep(interval)
    if within:
        problem += f" (still after {float(within):g} s, {polls} polls)"
    return StepOutcome.fail(problem, f"actual {shown}", node=node, query=cmd, path=path,
                            actual=None if actual is MISSING else actual, polls=polls)


def _short(v: Any, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[: n - 3] + "..."
