"""UDP stream steps: ``udp_stream`` starts a sender, ``stream_stop``/``stream_check`` measure it.

The sender is ``python -m s2c.lab.traffic send`` spawned in the source node's namespace; the sink is
a cn daemon, queried over its control socket (``stream`` command). Loss counts every sequence number
the sender used that the sink never saw (including ticks where no route existed), interruption is the
largest time between two consecutive arrivals at the sink.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from s2c.lab.steps import RunContext, StepError, StepOutcome, Stream, register_runner
from s2c.lab.steps.net import _family, arg, source_address
from s2c.lab.traffic import DEFAULT_PORT, MAX_ID, STARTED_MARK
from s2c.runtime.control import ControlError

THRESHOLDS = ("max_loss", "max_interruption", "min_interruption", "max_reordered", "min_received")


def _seconds(v: Any) -> float:
    if isinstance(v, str):
        s = v.strip().lower()
        if s.endswith("ms"):
            return float(s[:-2]) / 1000
        return float(s.rstrip("s"))
    return float(v)


def _sink_node(ctx: RunContext, target: str) -> str:
    """The cn node that receives a stream sent to ``target`` (a node name or one of its addresses)."""
    nodes = getattr(ctx.topology, "nodes", {}) or {}
    if target in nodes:
        return target
    for name, node in nodes.items():
        kind = getattr(node.kind, "value", node.kind)
        if kind == "cn" and target.strip("[]") in ctx.node_addresses(name):
            return name
    raise StepError(f"udp_stream: {target!r} is neither a node nor an address of a cn node")


@register_runner("udp_stream")
def run_udp_stream(ctx: RunContext, step: Any) -> StepOutcome:
    source = str(arg(step, "from"))
    src_node, _, src_if = source.partition(":")
    target = str(arg(step, "to"))
    name = str(arg(step, "name"))
    if len(name.encode()) > MAX_ID:
        raise StepError(f"udp_stream: name {name!r} longer than {MAX_ID} characters")
    if name in ctx.streams and ctx.streams[name].running():
        raise StepError(f"udp_stream: stream {name!r} is already running")
    rate = float(arg(step, "rate", default=100))
    size = int(arg(step, "size", default=200))
    until_stop = bool(arg(step, "until_stop", default=False))
    duration = 0.0 if until_stop else _seconds(arg(step, "duration", default=10))
    family = _family(arg(step, "family", default=None))
    ctx.node(src_node)
    sink = _sink_node(ctx, target.partition(":")[0] if not _is_addr(target) else target)
    port = int(arg(step, "port", default=DEFAULT_PORT))
    src_addr = source_address(ctx, src_node, arg(step, "src", default=None), family)
    if src_addr and not family:
        family = 6 if ":" in src_addr else 4
    dests = ctx.resolve(source, target, family)
    if sink in ctx.sockets:
        try:
            ctx.control(sink).call("reset", id=name, timeout=2.0)
        except ControlError:
            pass
    argv = [sys.executable, "-m", "s2c.lab.traffic", "send", "--id", name, "--to", ",".join(dests),
            "--port", str(port), "--rate", f"{rate:g}", "--size", str(size), "--duration", f"{duration:g}"]
    if src_addr:
        argv += ["--src", src_addr]
    if src_if:
        argv += ["--dev", src_if]
    started = time.time()
    proc = ctx.backend.spawn(src_node, argv, log_name=f"stream-{name}", env={"PYTHONUNBUFFERED": "1"})
    args = getattr(step, "args", None) or {}
    stream = Stream(name=name, source=source, sink=sink, destinations=dests, port=port, rate=rate, size=size,
                    duration=duration, process=proc, started=started,
                    stdout_path=Path(proc.log_path) if proc.log_path else ctx.run_dir / "logs" / f"stream-{name}.log",
                    args={k: args[k] for k in THRESHOLDS if args.get(k) is not None})
    ctx.streams[name] = stream
    details = {"stream": name, "from": source, "to": target, "sink": sink, "destinations": dests, "port": port,
               "rate": rate, "size": size, "duration": duration or None, "until_stop": until_stop, "pid": proc.pid}
    # return once the sender is sending, so the steps after this one see a running stream
    deadline = time.monotonic() + min(5.0, max(ctx.remaining(5.0) - 0.5, 0.5))
    while time.monotonic() < deadline:
        if f"{STARTED_MARK} {name}" in _read(stream.stdout_path):
            break
        if not proc.alive():
            if proc.returncode != 0:
                raise StepError(f"stream sender exited with {proc.returncode}: {_tail_text(stream.stdout_path)}")
            break
        time.sleep(0.01)
    else:
        raise StepError(f"stream sender did not start within 5 s: {_tail_text(stream.stdout_path)}")
    length = "until stopped" if until_stop else f"for {duration:g} s"
    return StepOutcome.ok(f"{name}: {source} -> {dests[0]}:{port} {rate:g} pps x {size} B {length}", **details)


def _is_addr(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _tail_text(path: Path, n: int = 5) -> str:
    try:
        return " | ".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _sender_summary(stream: Stream) -> dict[str, Any] | None:
    try:
        lines = Path(stream.stdout_path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("stream") == stream.name:
                return data
    return None


def _stop_sender(stream: Stream, stop: bool, wait_for: float) -> None:
    proc = stream.process
    if proc.alive() and stop:
        proc.signal(signal.SIGTERM)
    try:
        proc.wait(max(0.1, wait_for))
    except Exception:  # noqa: BLE001 - still alive: force it
        proc.terminate(1.0)


def measure(ctx: RunContext, stream: Stream) -> dict[str, Any]:
    """Combine the sender's summary (if it exited) and the sink's stats into the stream's figures."""
    sender = stream.summary
    sink: dict[str, Any] = {}
    if stream.sink in ctx.sockets:
        try:
            sink = ctx.control(stream.sink).call("stream", id=stream.name, timeout=3.0) or {}
        except ControlError as exc:
            sink = {"error": str(exc)}
    received = int(sink.get("received") or 0)
    finished = sender is not None
    packets = int(sender["packets"]) if finished else max(int(sink.get("max_seq", -1)) + 1, received)
    lost = max(0, packets - received) if finished else int(sink.get("lost") or 0)
    interval = 1.0 / stream.rate if stream.rate else 0.0
    max_gap = float(sink.get("max_gap") or 0.0)
    tail_gap = 0.0
    if finished and received and sender.get("ended"):
        # packets lost at the very end never close a gap at the sink: count the silence before the end
        tail_gap = max(0.0, float(sender["ended"]) - float(sink.get("last_at") or 0.0) - interval)
    elif finished and not received:
        tail_gap = float(sender.get("duration") or 0.0)
    interruption = max(max_gap, tail_gap)
    out = {
        "stream": stream.name,
        "finished": finished,
        "packets": packets,
        "sent": sender.get("sent") if finished else None,
        "send_errors": sender.get("send_errors") if finished else None,
        "received": received,
        "lost": lost,
        "loss_pct": round(100.0 * lost / packets, 3) if packets else (100.0 if finished else 0.0),
        "duplicates": int(sink.get("duplicates") or 0),
        "reordered": int(sink.get("reordered") or 0),
        "interruption": round(interruption, 6),
        "max_gap": round(max_gap, 6),
        "max_gap_at": sink.get("max_gap_at"),
        "delay_avg": sink.get("delay_avg"),
        "delay_max": sink.get("delay_max"),
        "sources": sink.get("sources") or {},
        "source_changes": sink.get("source_changes") or [],
        "sender": sender,
    }
    if "error" in sink:
        out["sink_error"] = sink["error"]
    return out


def check(stats: dict[str, Any], thresholds: dict[str, Any]) -> list[str]:
    """Threshold violations as sentences (empty: all met). Loss in %, interruption in seconds."""
    problems = []
    if stats.get("sink_error"):
        problems.append(f"sink: {stats['sink_error']}")
    t = thresholds
    if t.get("max_loss") is not None and stats["loss_pct"] > float(t["max_loss"]):
        problems.append(f"loss {stats['loss_pct']:.1f}% > max_loss {float(t['max_loss']):g}%")
    if t.get("max_interruption") is not None and stats["interruption"] > _seconds(t["max_interruption"]):
        problems.append(f"interruption {stats['interruption']:.3f} s > max_interruption {_seconds(t['max_interruption']):g} s")
    if t.get("min_interruption") is not None and stats["interruption"] < _seconds(t["min_interruption"]):
        problems.append(f"interruption {stats['interruption']:.3f} s < min_interruption {_seconds(t['min_interruption']):g} s")
    if t.get("max_reordered") is not None and stats["reordered"] > int(t["max_reordered"]):
        problems.append(f"reordered {stats['reordered']} > max_reordered {int(t['max_reordered'])}")
    if t.get("min_received") is not None and stats["received"] < int(t["min_received"]):
        problems.append(f"received {stats['received']} < min_received {int(t['min_received'])}")
    return problems


def _summary_line(stats: dict[str, Any]) -> str:
    return (f"{stats['stream']}: {stats['received']}/{stats['packets']} received, loss {stats['loss_pct']:.1f}%, "
            f"interruption {stats['interruption'] * 1000:.0f} ms, reordered {stats['reordered']}"
            + (f", {len(stats['sources'])} sources" if len(stats["sources"]) > 1 else ""))


def _finish(ctx: RunContext, stream: Stream, stop: bool, wait_for: float,
            thresholds: dict[str, Any] | None = None) -> StepOutcome:
    _stop_sender(stream, stop, min(wait_for, max(ctx.remaining(wait_for) - 1.0, 0.5)))
    if not stream.process.alive() and stream.summary is None:
        stream.summary = _sender_summary(stream)
        time.sleep(0.2)  # let in-flight datagrams reach the sink
    stats = measure(ctx, stream)
    stream.checked = True
    stream.figures = stats
    limits = {**stream.args, **{k: v for k, v in (thresholds or {}).items() if v is not None}}
    problems = check(stats, limits)
    if stream.summary is None and not stream.process.alive():
        problems.append(f"sender exited ({stream.process.returncode}) without a summary: {_tail_text(stream.stdout_path)}")
    stats["thresholds"] = limits
    if problems:
        return StepOutcome.fail("; ".join(problems), _summary_line(stats), **stats)
    return StepOutcome.ok(_summary_line(stats), **stats)


def _stream_of(ctx: RunContext, step: Any) -> Stream:
    name = arg(step, "name", default=None)
    if name is None:
        if len(ctx.streams) == 1:
            return next(iter(ctx.streams.values()))
        raise StepError(f"which stream? give id (running: {', '.join(ctx.streams) or 'none'})")
    stream = ctx.streams.get(str(name))
    if stream is None:
        raise StepError(f"no stream {name!r} (started: {', '.join(ctx.streams) or 'none'})")
    return stream


def _step_thresholds(step: Any) -> dict[str, Any]:
    args = getattr(step, "args", None) or {}
    return {k: args.get(k) for k in THRESHOLDS if args.get(k) is not None}


@register_runner("stream_stop")
def run_stream_stop(ctx: RunContext, step: Any) -> StepOutcome:
    stream = _stream_of(ctx, step)
    return _finish(ctx, stream, stop=True, wait_for=5.0, thresholds=_step_thresholds(step))


@register_runner("stream_check")
def run_stream_check(ctx: RunContext, step: Any) -> StepOutcome:
    """Check a stream's figures now; a finished (or ``stop: true``) stream gets its final figures."""
    stream = _stream_of(ctx, step)
    wait_end = bool(arg(step, "wait_end", default=True))
    if stream.running() and wait_end and stream.duration:
        left = stream.started + stream.duration - time.time()
        return _finish(ctx, stream, stop=False, wait_for=max(left, 0.0) + 3.0, thresholds=_step_thresholds(step))
    if not stream.running():
        return _finish(ctx, stream, stop=True, wait_for=5.0, thresholds=_step_thresholds(step))
    stats = measure(ctx, stream)
    limits = {**stream.args, **_step_thresholds(step)}
    problems = check(stats, limits)
    stats["thresholds"] = limits
    if problems:
        return StepOutcome.fail("; ".join(problems), _summary_line(stats), **stats)
    return StepOutcome.ok(_summary_line(stats), **stats)


def stop_all_streams(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """End every stream (teardown): stop senders, collect final figures of those never checked."""
    out = {}
    for name, stream in ctx.streams.items():
        if stream.running():
            _stop_sender(stream, True, 3.0)
        if stream.summary is None:
            stream.summary = _sender_summary(stream)
        if not stream.checked or (stream.figures is not None and not stream.figures.get("finished")):
            try:
                out[name] = measure(ctx, stream)
            except Exception as exc:  # noqa: BLE001 - teardown must go on
                out[name] = {"error": str(exc)}
        else:
            out[name] = stream.figures or {}
    return out


def final_check(ctx: RunContext, stream: Stream) -> StepOutcome:
    """Check a stream with thresholds that no step checked: wait for its end (end of run)."""
    wait_for = stream.duration + 5.0 if stream.duration else 0.5
    return _finish(ctx, stream, stop=not stream.duration, wait_for=wait_for)
