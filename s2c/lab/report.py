"""Run results and their reports: live console progress, ``result.json`` and JUnit XML.

The runner fills a :class:`RunResult` step by step and hands each change to a :class:`Console`;
at the end :func:`write_reports` writes ``runs/<run-id>/result.json`` and ``junit.xml``.
Nothing here touches the network or the backend.
"""

from __future__ import annotations

import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"
STATUSES = (PASSED, FAILED, ERROR, SKIPPED)
RESULT_SCHEMA = 1


@dataclass
class StepResult:
    """The outcome of one scenario step."""

    index: int
    name: str
    kind: str
    status: str = SKIPPED
    started: float | None = None  # wall clock (s since the epoch)
    duration: float = 0.0  # seconds
    message: str = ""
    summary: str = ""  # key figures, one short line ("rtt avg 0.08 ms, 0% loss")
    details: dict[str, Any] = field(default_factory=dict)
    line: int | None = None  # line of the step in the scenario file
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == PASSED


@dataclass
class RunResult:
    """Everything a run produced; ``exit_code`` is 0 only if every step passed."""

    run_id: str
    scenario: str
    scenario_file: str | None
    backend: str
    run_dir: Path
    started: float = field(default_factory=time.time)
    ended: float | None = None
    steps: list[StepResult] = field(default_factory=list)
    nodes: dict[str, Any] = field(default_factory=dict)  # node -> final status (or {"error": ...})
    streams: dict[str, Any] = field(default_factory=dict)  # stream id -> final figures
    capabilities: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # paths relative to run_dir
    error: str | None = None  # setup/teardown problem that is not a step's fault
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted and bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for st in self.steps:
            out[st.status] = out.get(st.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RESULT_SCHEMA,
            "run_id": self.run_id,
            "scenario": self.scenario,
            "scenario_file": self.scenario_file,
            "backend": self.backend,
            "run_dir": str(self.run_dir),
            "started": _iso(self.started),
            "ended": _iso(self.ended) if self.ended else None,
            "duration": round((self.ended or time.time()) - self.started, 3),
            "ok": self.ok,
            "exit_code": self.exit_code,
            "interrupted": self.interrupted,
            "error": self.error,
            "warnings": list(self.warnings),
            "counts": self.counts(),
            "capabilities": self.capabilities,
            "steps": [_step_dict(s) for s in self.steps],
            "nodes": self.nodes,
            "streams": self.streams,
            "artifacts": list(self.artifacts),
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _step_dict(s: StepResult) -> dict[str, Any]:
    d = asdict(s)
    d["started"] = _iso(s.started)
    d["duration"] = round(s.duration, 6)
    return d


# -- files ----------------------------------------------------------------------------------------


def write_result_json(result: RunResult, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return obj.hex()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return str(obj)


def _xml_text(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (control characters from logs or payloads)."""
    return "".join(ch for ch in str(text) if ch in "\t\n\r" or ord(ch) >= 0x20 and ord(ch) not in (0xFFFE, 0xFFFF))


def junit_tree(result: RunResult) -> ET.ElementTree:
    """One <testsuite> named after the scenario, one <testcase> per step (JUnit/xUnit schema)."""
    counts = result.counts()
    total_time = sum(s.duration for s in result.steps)
    suites = ET.Element("testsuites", name="s2c", tests=str(len(result.steps)),
                        failures=str(counts[FAILED]), errors=str(counts[ERROR] + (1 if result.error else 0)),
                        skipped=str(counts[SKIPPED]), time=f"{total_time:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=_xml_text(result.scenario), tests=str(len(result.steps)),
                          failures=str(counts[FAILED]), errors=str(counts[ERROR] + (1 if result.error else 0)),
                          skipped=str(counts[SKIPPED]), time=f"{total_time:.3f}",
                          timestamp=_iso(result.started) or "", hostname=_xml_text(os.uname().nodename))
    props = ET.SubElement(suite, "properties")
    for key, value in (("run_id", result.run_id), ("backend", result.backend),
                       ("scenario_file", result.scenario_file or "")):
        ET.SubElement(props, "property", name=key, value=_xml_text(value))
    classname = f"s2c.{_xml_text(result.scenario)}"
    for s in result.steps:
        case = ET.SubElement(suite, "testcase", classname=classname,
                             name=_xml_text(f"[{s.index}] {s.name}"), time=f"{s.duration:.3f}")
        if s.line:
            case.set("line", str(s.line))
        if s.status == FAILED:
            el = ET.SubElement(case, "failure", message=_xml_text(s.message), type=s.kind)
            el.text = _xml_text(_detail_text(s))
        elif s.status == ERROR:
            el = ET.SubElement(case, "error", message=_xml_text(s.message), type=s.kind)
            el.text = _xml_text(_detail_text(s))
        elif s.status == SKIPPED:
            ET.SubElement(case, "skipped", message=_xml_text(s.message or "skipped"))
        if s.summary or s.details:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(_detail_text(s))
    if result.error:
        case = ET.SubElement(suite, "testcase", classname=classname, name="setup", time="0")
        el = ET.SubElement(case, "error", message=_xml_text(result.error), type="setup")
        el.text = _xml_text(result.error)
    ET.indent(suites)
    return ET.ElementTree(suites)


def _detail_text(s: StepResult) -> str:
    lines = []
    if s.summary:
        lines.append(s.summary)
    if s.message and s.status != PASSED:
        lines.append(s.message)
    if s.details:
        lines.append(json.dumps(s.details, indent=2, default=_json_default))
    return "\n".join(lines)


def write_junit(result: RunResult, path: Path) -> Path:
    path = Path(path)
    junit_tree(result).write(path, encoding="utf-8", xml_declaration=True)
    return path


def write_reports(result: RunResult) -> list[Path]:
    """Write result.json and junit.xml into the run dir; returns their paths."""
    run_dir = Path(result.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("result.json", "junit.xml"):
        if name not in result.artifacts:
            result.artifacts.append(name)
    junit = write_junit(result, run_dir / "junit.xml")
    res = write_result_json(result, run_dir / "result.json")
    return [res, junit]


def link_latest(run_dir: Path) -> Path | None:
    """Point ``<runs>/latest`` at this run (relative symlink, replaced atomically)."""
    run_dir = Path(run_dir)
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, latest)
        return latest
    except OSError:
        return None


# -- console --------------------------------------------------------------------------------------


def _fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


class Console:
    """Progress sink for a run; this base class prints nothing (tests, benchmarks)."""

    def run_started(self, result: RunResult) -> None: ...

    def phase(self, text: str) -> None: ...

    def step_started(self, step: StepResult) -> None: ...

    def step_finished(self, step: StepResult) -> None: ...

    def warn(self, text: str) -> None: ...

    def run_finished(self, result: RunResult) -> None: ...

    def close(self) -> None: ...


QuietConsole = Console

MARK = {PASSED: "✓", FAILED: "✗", ERROR: "!", SKIPPED: "-"}


def _step_title(step: StepResult) -> str:
    kind = "" if step.name.split(" ", 1)[0] == step.kind else f" ({step.kind})"
    return f"[{step.index}] {step.name}{kind}"


def _step_line(step: StepResult) -> str:
    parts = [f"{MARK.get(step.status, '?')} {_step_title(step)}"]
    if step.status != SKIPPED:
        parts.append(_fmt_duration(step.duration))
    if step.summary:
        parts.append(step.summary)
    if step.message and step.status != PASSED:
        parts.append(step.message)
    return "  ".join(parts)


def _final_line(result: RunResult) -> str:
    c = result.counts()
    verdict = "PASSED" if result.ok else ("INTERRUPTED" if result.interrupted else "FAILED")
    dur = (result.ended or time.time()) - result.started
    text = (f"{verdict}: {c[PASSED]} passed, {c[FAILED]} failed, {c[ERROR]} errors, {c[SKIPPED]} skipped "
            f"in {dur:.1f} s  ({result.run_dir})")
    if result.error:
        text += f"\n  error: {result.error}"
    return text


class PlainConsole(Console):
    """One plain line per event (CI logs, pipes)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def _print(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
        except (OSError, ValueError):
            pass

    def run_started(self, result: RunResult) -> None:
        self._print(f"s2c run {result.run_id}: scenario {result.scenario} on {result.backend}")

    def phase(self, text: str) -> None:
        self._print(f"  {text}")

    def step_started(self, step: StepResult) -> None:
        self._print(f"  > {_step_title(step)}")

    def step_finished(self, step: StepResult) -> None:
        self._print(f"  {_step_line(step)}")

    def warn(self, text: str) -> None:
        self._print(f"  warning: {text}")

    def run_finished(self, result: RunResult) -> None:
        self._print(_final_line(result))


class RichConsole(Console):
    """Live progress: a spinner on the running step, then ✓/✗ with duration and key figures."""

    def __init__(self, stream: TextIO | None = None):
        from rich.console import Console as RConsole

        self.console = RConsole(file=stream or sys.stdout, highlight=False)
        self._status = None

    def _stop_status(self) -> None:
        if self._status is not None:
            try:
                self._status.stop()
            finally:
                self._status = None

    def run_started(self, result: RunResult) -> None:
        self.console.print(f"[bold]s2c run[/] {result.run_id}: scenario [bold]{result.scenario}[/] "
                           f"on {result.backend}")

    def phase(self, text: str) -> None:
        self._stop_status()
        self._status = self.console.status(text, spinner="dots")
        self._status.start()

    def step_started(self, step: StepResult) -> None:
        self._stop_status()
        from rich.markup import escape

        self._status = self.console.status(escape(_step_title(step)), spinner="dots")
        self._status.start()

    def step_finished(self, step: StepResult) -> None:
        from rich.markup import escape

        self._stop_status()
        style = {PASSED: "green", FAILED: "red", ERROR: "red", SKIPPED: "dim"}.get(step.status, "")
        self.console.print(f"[{style}]{escape(_step_line(step))}[/]")

    def warn(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(f"[yellow]warning:[/] {escape(text)}")

    def run_finished(self, result: RunResult) -> None:
        from rich.markup import escape

        self._stop_status()
        style = "bold green" if result.ok else "bold red"
        self.console.print(f"[{style}]{escape(_final_line(result))}[/]")

    def close(self) -> None:
        self._stop_status()


def make_console(stream: TextIO | None = None, plain: bool | None = None) -> Console:
    """Rich live console on a TTY, plain lines otherwise (CI)."""
    stream = stream or sys.stdout
    if plain is None:
        try:
            plain = not stream.isatty()
        except (AttributeError, ValueError):
            plain = True
    if plain:
        return PlainConsole(stream)
    try:
        return RichConsole(stream)
    except ImportError:
        return PlainConsole(stream)
