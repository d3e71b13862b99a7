"""Report writers: result.json, JUnit XML (parsed back with xml.etree), console output."""

from __future__ import annotations

import io
import json
import time
import xml.etree.ElementTree as ET

from s2c.lab.report import (
    ERROR, FAILED, PASSED, SKIPPED, PlainConsole, RichConsole, RunResult, StepResult, link_latest, make_console,
    write_reports,
)


def _result(tmp_path, statuses=(PASSED, FAILED, ERROR, SKIPPED)) -> RunResult:
    res = RunResult(run_id="s2ct-rn-abc123", scenario="demo <&> \"q\"", scenario_file="x.yaml",
                    backend="netns", run_dir=tmp_path / "runs" / "s2ct-rn-abc123")
    for i, st in enumerate(statuses):
        res.steps.append(StepResult(index=i, name=f"step {i} <b>", kind="ping", status=st, started=time.time(),
                                    duration=0.25 * i, message=f"msg {i} \x01 with & and ]]>" if st != PASSED else "",
                                    summary="3/3 replies", details={"bytes": b"\x01", "n": i}, line=10 + i))
    res.ended = time.time()
    return res


def test_junit_is_well_formed_and_complete(tmp_path):
    res = _result(tmp_path)
    paths = write_reports(res)
    root = ET.parse(paths[1]).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite.get("name") == 'demo <&> "q"'
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("4", "1", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [f"[{i}] step {i} <b>" for i in range(4)]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    fail = cases[1].find("failure")
    assert fail is not None and fail.get("message").startswith("msg 1") and "\x01" not in fail.get("message")
    assert cases[2].find("error") is not None
    assert cases[3].find("skipped") is not None
    assert float(cases[2].get("time")) == 0.5
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["run_id"] == "s2ct-rn-abc123"


def test_result_json(tmp_path):
    res = _result(tmp_path)
    res.nodes = {"cn1": {"kind": "cn"}}
    res.capabilities = {"netem": False}
    write_reports(res)
    data = json.loads((res.run_dir / "result.json").read_text())
    assert data["run_id"] == "s2ct-rn-abc123" and data["ok"] is False and data["exit_code"] == 1
    assert data["counts"] == {"passed": 1, "failed": 1, "error": 1, "skipped": 1}
    assert data["steps"][1]["status"] == "failed" and data["steps"][1]["details"]["bytes"] == "01"
    assert data["steps"][0]["started"].endswith("+00:00")
    assert {"result.json", "junit.xml"} <= set(data["artifacts"])
    assert data["nodes"]["cn1"]["kind"] == "cn" and data["capabilities"] == {"netem": False}


def test_exit_code_rules(tmp_path):
    assert _result(tmp_path, (PASSED, PASSED)).exit_code == 0
    assert _result(tmp_path, (PASSED, SKIPPED)).exit_code == 1
    assert _result(tmp_path, ()).exit_code == 1  # no step is not a pass
    r = _result(tmp_path, (PASSED,))
    r.error = "setup failed"
    assert r.exit_code == 1
    r = _result(tmp_path, (PASSED,))
    r.interrupted = True
    assert r.exit_code == 130


def test_setup_error_becomes_an_error_testcase(tmp_path):
    res = _result(tmp_path, (SKIPPED,))
    res.error = "hss daemon exited"
    write_reports(res)
    root = ET.parse(res.run_dir / "junit.xml").getroot()
    setup = [c for c in root.iter("testcase") if c.get("name") == "setup"]
    assert setup and setup[0].find("error").get("message") == "hss daemon exited"


def test_latest_symlink(tmp_path):
    a = tmp_path / "runs" / "a"
    b = tmp_path / "runs" / "b"
    a.mkdir(parents=True)
    b.mkdir()
    link_latest(a)
    link_latest(b)
    assert (tmp_path / "runs" / "latest").resolve() == b.resolve()


def test_plain_console_lines(tmp_path):
    out = io.StringIO()
    con = make_console(out)  # a StringIO is not a TTY: plain lines
    assert isinstance(con, PlainConsole)
    res = _result(tmp_path)
    con.run_started(res)
    for s in res.steps:
        con.step_started(s)
        con.step_finished(s)
    con.run_finished(res)
    text = out.getvalue()
    assert "✓ [0] step 0 <b> (ping)" in text and "✗ [1]" in text
    assert "FAILED: 1 passed, 1 failed, 1 errors, 1 skipped" in text
    assert "\x1b[" not in text  # no terminal escapes in CI logs


def test_rich_console_does_not_crash_on_markup(tmp_path):
    out = io.StringIO()
    con = RichConsole(out)
    res = _result(tmp_path)
    res.steps[1].message = "[bold]not markup[/] ]]"
    con.run_started(res)
    for s in res.steps:
        con.step_started(s)
        con.step_finished(s)
    con.warn("[red]x")
    con.run_finished(res)
    con.close()
    assert "[bold]not markup[/]" in out.getvalue()
