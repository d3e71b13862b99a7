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
    """(node, iface) from ``node`` + ``iface``, or an ``endpoint``/``link`` field "node:iface"."""
    ep = arg(step, "endpoint", "link", "radio", default=None)
    if isinstance(ep, str) and ":" in ep:
        node, iface = ep.split(":", 1)
        return node, iface
    node = arg(step, "node", "ue")
    iface = arg(step, "iface", "interface", "radio")
    return str(node), str(iface)


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
    src = str(arg(step, "from", "source", "node"))
    target = arg(step, "to", "target", "dst")
    count = int(arg(step, "count", default=3))
    interval = float(arg(step, "interval", default=0.2))
    family = _family(arg(step, "family", default=None))
    expect = str(arg(step, "expect", default="success")).lower()
    expect_fail = expect in ("fail", "failure", "no-reply", "unreachable", "loss", "false")
    max_loss = arg(step, "max_loss", "loss_max", default=None)
    ctx.node(src)
    addrs = ctx.resolve(src, target, family)
    dst = addrs[0]
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", "-6" if ":" in dst else "-4", dst]
    budget = count * interval + 3.0
    res = ctx.backend.exec(src, argv, timeout=min(max(budget, 2.0), max(ctx.remaining(budget), 1.0)))
    stats = parse_ping(res.stdout or "")
    details = {"from": src, "to": str(target), "address": dst, "exit": res.returncode, **stats}
    if not stats["transmitted"] and res.returncode not in (0, 1):
        # ping itself failed (e.g. "Network is unreachable"): no packet could be sent
        details["error"] = (res.stderr or res.stdout or "").strip().splitlines()[-1:] or [""]
        details["error"] = details["error"][0]
    summary = (f"{stats['received']}/{stats['transmitted'] or count} replies"
               + (f", rtt avg {stats['rtt_avg']:.2f} ms" if stats["rtt_avg"] is not None else "")
               + f" ({dst})")
    if expect_fail:
        if stats["received"] == 0:
            return StepOutcome.ok(summary, **details)
        return StepOutcome.fail(f"expected no reply from {target} ({dst}), got {stats['received']}", summary, **details)
    if stats["received"] == 0:
        why = f": {details['error']}" if details.get("error") else ""
        return StepOutcome.fail(f"no reply from {target} ({dst}){why}", summary, **details)
    limit = float(max_loss) if max_loss is not None else None
    if limit is not None and stats["loss_pct"] > limit:
        return StepOutcome.fail(f"loss {stats['loss_pct']}% > max_loss {limit}%", summary, **details)
    if limit is None and stats["received"] < (stats["transmitted"] or count):
        return StepOutcome.fail(f"{stats['received']}/{stats['transmitted']} replies from {target} ({dst})",
                                summary, **details)
    return StepOutcome.ok(summary, **details)


# -- link / move / impair -------------------------------------------------------------------------


@register_runner("link")
def run_link(ctx: RunContext, step: Any) -> StepOutcome:
    node, iface = endpoint(step)
    state = arg(step, "state", "up", default=None)
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
    node, iface = endpoint(step)
    network = str(arg(step, "to", "network"))
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
    delay = arg(step, "delay_ms", "delay", default=None)
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
    seconds = arg(step, "seconds", "duration", "for", "wait", default=0)
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
    "equals": lambda a, b: a == b or (not isinstance(a, bool) and isinstance(a, (int, float))
                                      and isinstance(b, (int, float)) and _num(a) == _num(b)),
    "not_equals": lambda a, b: a != b,
    "gt": lambda a, b: _num(a) > _num(b),
    "ge": lambda a, b: _num(a) >= _num(b),
    "lt": lambda a, b: _num(a) < _num(b),
    "le": lambda a, b: _num(a) <= _num(b),
    "contains": lambda a, b: b in a,
    "in": lambda a, b: a in b,
    "exists": lambda a, b: True,
    "truthy": lambda a, b: bool(a),
}
OP_ALIASES = {"eq": "equals", "==": "equals", "equal": "equals", "ne": "not_equals", "!=": "not_equals",
              ">": "gt", ">=": "ge", "<": "lt", "<=": "le", "min": "ge", "max": "le", "at_least": "ge",
              "at_most": "le", "is": "equals"}


def _comparisons(step: Any) -> list[tuple[str, Any]]:
    args = getattr(step, "args", None) or {}
    out = []
    op = args.get("op")
    if op is not None:
        name = OP_ALIASES.get(str(op), str(op))
        if name not in OPS:
            raise StepError(f"expect: unknown op {op!r} (known: {', '.join(OPS)})")
        out.append((name, args.get("value")))
    for key, value in args.items():
        name = OP_ALIASES.get(key, key)
        if name in OPS and key not in ("op",) and (key != "value"):
            out.append((name, value))
    if not out:
        out.append(("equals", args["value"]) if "value" in args else ("exists", None))
    return out


@register_runner("expect")
def run_expect(ctx: RunContext, step: Any) -> StepOutcome:
    node = str(arg(step, "node"))
    cmd = str(arg(step, "command", "cmd", default="status"))
    cmd_args = arg(step, "args", default={}) or {}
    path = str(arg(step, "path", "field", default=""))
    within = arg(step, "within", default=None)
    within = float(str(within).rstrip("s")) if within is not None else None
    comparisons = _comparisons(step)
    t0 = time.monotonic()
    end = t0 + (within or 0.0)
    polls = 0
    while True:
        polls += 1
        actual: Any = None
        problem = ""
        try:
            reply = ctx.call(node, cmd, **cmd_args)
            actual = follow(reply, path)
            failed = []
            for name, expected in comparisons:
                try:
                    good = OPS[name](actual, expected)
                except (TypeError, ValueError):
                    good = False
                if not good:
                    failed.append(f"{name} {expected!r}")
            if not failed:
                took = time.monotonic() - t0
                summary = f"{node} {cmd} {path or '.'} = {_short(actual)}" + (f" after {took:.2f} s" if within else "")
                return StepOutcome.ok(summary, node=node, command=cmd, path=path, actual=actual,
                                      polls=polls, took=round(took, 6))
            problem = f"{node} {cmd} {path or '.'} = {_short(actual)}, expected {' and '.join(failed)}"
        except KeyError as exc:
            problem = f"{node} {cmd}: {exc.args[0] if exc.args else exc}"
        if within is None or time.monotonic() + 0.1 > min(end, (ctx.deadline or end + 1)):
            break
        time.sleep(0.1)
    if within:
        problem += f" (still after {within:g} s, {polls} polls)"
    return StepOutcome.fail(problem, f"actual {_short(actual)}", node=node, command=cmd, path=path,
                            actual=actual, polls=polls)


def _short(v: Any, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[: n - 3] + "..."
