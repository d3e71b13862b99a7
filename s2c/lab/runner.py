"""The scenario runner: build the lab, start node daemons, run the steps, report, always tear down.

``run_scenario(scenario)`` is the whole life of one run::

    run dir runs/<run-id>/ -> backend.build() -> node configs -> spawn daemons -> wait for control
    sockets -> steps in order (per-step timeout) -> final node status -> stop daemons -> teardown
    -> result.json + junit.xml + runs/latest

Teardown happens in ``finally``, also on SIGINT/SIGTERM (turned into KeyboardInterrupt in the main
thread; further signals during cleanup are ignored with a notice so a second Ctrl-C cannot skip it).
The runner talks to daemons only through their control sockets (docs/control.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from s2c.lab.backend import Backend, LabError, NodeProcess, get_backend
from s2c.lab.report import (
    ERROR, FAILED, PASSED, SKIPPED, Console, RunResult, StepResult, link_latest, write_reports,
)
from s2c.lab.steps import (
    STEP_MODULE_ERRORS, STEP_RUNNERS, RunContext, StepError, StepFailed, StepOutcome, StepTimeout, load_runners, register_runner,
)
from s2c.lab.steps.stream import final_check, stop_all_streams
from s2c.runtime.control import ControlClient, ControlError

__all__ = ["run_scenario", "RunResult", "RunContext", "register_runner", "STEP_RUNNERS", "StepOutcome",
           "StepFailed", "SOCKET_ROOT", "new_run_id", "node_configs"]

log = logging.getLogger("s2c.lab.run")

SOCKET_ROOT = Path("/run/s2c")
DAEMON_KINDS = ("ue", "pdngw", "hss", "cn")
DEFAULT_STEP_TIMEOUT = 30.0
DEFAULT_STARTUP_TIMEOUT = 15.0
DIAMETER_PORT = 3868
SUN_PATH_MAX = 107


def new_run_id(prefix: str = "s2c") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _setting(scenario: Any, name: str, default: Any) -> Any:
    settings = getattr(scenario, "settings", None)
    if settings is None:
        return default
    if isinstance(settings, dict):
        value = settings.get(name, default)
    else:
        value = getattr(settings, name, default)
    return default if value is None else value


def _kind(node: Any) -> str:
    kind = getattr(node, "kind", "")
    return getattr(kind, "value", kind)


# -- node configs ---------------------------------------------------------------------------------


def _hex(v: Any) -> Any:
    return v.hex() if isinstance(v, (bytes, bytearray)) else v


def _plain(obj: Any) -> Any:
    """Dataclass/mapping/sequence -> JSON-able (bytes as hex, addresses as str)."""
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return obj.hex()
    if hasattr(obj, "value") and not isinstance(obj, (int, float, str, bool)):
        return obj.value
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _seq(scenario: Any, name: str) -> list[Any]:
    value = getattr(scenario, name, None)
    if value is None:
        return []
    if isinstance(value, dict):
        return [dict(v, **({} if "name" in v else {"name": k})) if isinstance(v, dict) else v for k, v in value.items()]
    return list(value)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _addr_list(addrs: dict[str, dict[str, Any]], family: str) -> list[str]:
    out = []
    for info in addrs.values():
        for a in info.get(family) or ():
            ip = ipaddress.ip_interface(a).ip
            if not (ip.is_link_local or ip.is_loopback):
                out.append(str(ip))
    return out


def hss_subscriber(sub: Any) -> dict[str, Any]:
    """A scenario subscriber as the HSS store takes it (hss/store.py ``subscriber_from_mapping``).

    The model's ``ipv4_hoa`` is a flag (give the UE an IPv4 home address) while the store's is a
    static IPv4 HoA; a model ``static_hoa`` goes to the store's ``ipv4_hoa``/``static_hoa`` by family.
    """
    d = {k: v for k, v in _plain(sub).items() if v is not None}
    if isinstance(d.get("ipv4_hoa"), bool):
        d.pop("ipv4_hoa")
    hoa = d.pop("static_hoa", None)
    if hoa:
        d["ipv4_hoa" if ipaddress.ip_address(hoa).version == 4 else "static_hoa"] = hoa
    return d


def node_configs(scenario: Any, run_id: str, run_dir: Path, sockets: dict[str, str],
                 addresses: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The JSON config of every daemon node (docs/control.md). ``addresses``: backend.addresses per node."""
    topo = scenario.topology
    nodes = {n: node for n, node in topo.nodes.items() if _kind(node) in DAEMON_KINDS}
    subscribers = {str(_get(s, "imsi")): s for s in _seq(scenario, "subscribers")}
    ues = {str(_get(u, "node", _get(u, "name"))): u for u in _seq(scenario, "ues")}

    def peer(name: str) -> dict[str, Any]:
        a = addresses.get(name, {})
        return {"node": name, "kind": _kind(topo.nodes[name]), "ipv4": _addr_list(a, "ipv4"), "ipv6": _addr_list(a, "ipv6")}

    hss_nodes = [n for n, node in nodes.items() if _kind(node) == "hss"]
    pgw_nodes = [n for n, node in nodes.items() if _kind(node) == "pdngw"]

    def s2c_addresses(name: str) -> dict[str, list[str]]:
        """The PDN GW's S2c addresses: those of ``params.s2c_interface`` (e.g. ``core0``) when the
        topology names it, else every global address of the node."""
        a = addresses.get(name, {})
        iface = (_plain(getattr(topo.nodes[name], "params", None) or {})).get("s2c_interface")
        if iface and iface in a:
            a = {iface: a[iface]}
        return {"ipv4": _addr_list(a, "ipv4"), "ipv6": _addr_list(a, "ipv6")}

    settings = getattr(scenario, "settings", None)
    capture = bool(getattr(settings, "capture", True)) if settings is not None else True

    def run_paths() -> dict[str, str]:
        rd = Path(run_dir).resolve()
        return {"run_dir": str(rd), "pki": str(rd / "pki"), "keys": str(rd / "keys")}

    def esp_params() -> dict[str, Any]:
        # UDP GSO batches ESP-in-UDP datagrams, but a veth capture then shows one oversized frame
        # per batch: only runs without captures get it (docs/dataplane.md, "Batching")
        return {"udp_gso": not capture}
    out: dict[str, dict[str, Any]] = {}
    for name, node in nodes.items():
        kind = _kind(node)
        addrs = addresses.get(name, {})
        interfaces = {
            iface: {"network": info.get("network"), "up": info.get("up", True),
                    "addresses": list(info.get("ipv4") or ()) + list(info.get("ipv6") or ())}
            for iface, info in addrs.items() if iface != "lo"
        }
        params: dict[str, Any] = {}
        peers: dict[str, Any] = {}
        if kind == "hss":
            v4 = _addr_list(addrs, "ipv4")
            v6 = _addr_list(addrs, "ipv6")
            params["subscribers"] = [hss_subscriber(s) for s in subscribers.values()]
            params["db"] = str(Path(run_dir) / "var" / f"{name}.db")
            params["diameter"] = {"listen": (v4 + v6) or ["127.0.0.1"], "port": DIAMETER_PORT}
        elif kind == "pdngw":
            params["s2c"] = s2c_addresses(name)
            params.update(run_paths())
            params.update(esp_params())
            if hss_nodes:
                h = peer(hss_nodes[0])
                h["diameter"] = {"address": (h["ipv4"] or h["ipv6"] or ["127.0.0.1"])[0], "port": DIAMETER_PORT}
                peers["hss"] = h
        elif kind == "ue":
            ue = ues.get(name)
            if ue is not None:
                ue_d = _plain(ue)
                imsi = str(ue_d.get("imsi") or "")
                sub = subscribers.get(imsi)
                params.update({k: v for k, v in ue_d.items() if k not in ("node", "name")})
                if sub is not None:
                    for k, v in _plain(sub).items():
                        params.setdefault(k, v)
            params["radios"] = {iface: {"network": info.get("network"), "up": info.get("up", True)}
                                for iface, info in addrs.items() if iface != "lo"}
            params.update(run_paths())
            params.update(esp_params())
            if pgw_nodes:
                peers["pdngw"] = dict(peer(pgw_nodes[0]), **s2c_addresses(pgw_nodes[0]))
            if hss_nodes:
                peers["hss"] = peer(hss_nodes[0])
        elif kind == "cn":
            params["sink_port"] = 5001
            params["echo_port"] = 7
        # the node's own kind params from the topology win (passed verbatim)
        params.update(_plain(getattr(node, "params", None) or {}))
        out[name] = {
            "node": name, "kind": kind, "run_id": run_id, "control": sockets[name],
            "interfaces": interfaces, "peers": peers, "params": params,
        }
    return out


# -- signals --------------------------------------------------------------------------------------


class _Signals:
    """SIGINT/SIGTERM -> KeyboardInterrupt in the main thread; during cleanup they are only noted."""

    def __init__(self, console: Console):
        self.console = console
        self.previous: dict[int, Any] = {}
        self.cleaning = False
        self.received: list[int] = []
        self.active = threading.current_thread() is threading.main_thread()

    def _handler(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        if self.cleaning:
            with contextlib.suppress(Exception):
                self.console.warn(f"{signal.Signals(signum).name}: cleaning up, please wait")
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def __enter__(self) -> "_Signals":
        if self.active:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def cleanup_phase(self) -> None:
        self.cleaning = True

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            for sig, prev in self.previous.items():
                with contextlib.suppress(Exception):
                    signal.signal(sig, prev)


class _StepAlarm:
    """Raise StepTimeout in the main thread after ``seconds`` (SIGALRM); a no-op off the main thread."""

    def __init__(self, budget: float, grace: float = 0.5):
        self.budget = budget
        self.seconds = budget + grace
        self.active = threading.current_thread() is threading.main_thread() and budget > 0
        self.prev: Any = None

    def _fire(self, _signum: int, _frame: Any) -> None:
        raise StepTimeout(f"step timed out after {self.budget:g} s")

    def __enter__(self) -> "_StepAlarm":
        if self.active:
            self.prev = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.prev or signal.SIG_DFL)


# -- the run --------------------------------------------------------------------------------------


_PROBE = """
import importlib, json, sys
bad = {}
for kind in sys.argv[1:]:
    try:
        importlib.import_module(kind + ".__main__")
    except Exception as exc:
        bad[kind] = (type(exc).__name__ + ": " + str(exc))[:200]
print(json.dumps(bad))
"""


class DaemonProbe:
    """Find which ``python -m <kind>`` cannot start (import error), in a child interpreter started
    before the lab is built (so it costs no wall time) - the runner never imports daemon code itself."""

    def __init__(self, kinds: list[str]):
        self.missing = {k: "no module" for k in kinds if importlib.util.find_spec(k) is None}
        rest = [k for k in kinds if k not in self.missing]
        self.proc: subprocess.Popen | None = None
        if rest:
            try:
                self.proc = subprocess.Popen([sys.executable, "-c", _PROBE, *rest], stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
            except OSError as exc:
                log.warning("daemon import probe failed: %s", exc)

    def result(self, timeout: float = 30.0) -> dict[str, str]:
        """kind -> why it cannot start, for broken kinds."""
        if self.proc is not None:
            try:
                out, _ = self.proc.communicate(timeout=timeout)
                self.missing.update(json.loads(out.strip().splitlines()[-1]))
            except (subprocess.SubprocessError, OSError, ValueError, IndexError) as exc:
                log.warning("daemon import probe failed: %s", exc)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                self.proc = None
        return self.missing

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def probe_daemons(kinds: list[str]) -> dict[str, str]:
    """kind -> why ``python -m <kind>`` cannot start (import error), for kinds whose package is broken."""
    return DaemonProbe(kinds).result()


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None:
        return ""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class Runner:
    """One run of one scenario (use :func:`run_scenario`)."""

    def __init__(self, scenario: Any, backend_name: str = "netns", run_dir: Path | str | None = None,
                 console: Console | None = None, run_id: str | None = None, capture: bool | None = None,
                 keep_going: bool | None = None, runs_root: Path | str = "runs", run_id_prefix: str = "s2c",
                 startup_timeout: float | None = None):
        self.scenario = scenario
        self.backend_name = backend_name
        self.run_id = run_id or new_run_id(run_id_prefix)
        self.run_dir = Path(run_dir) if run_dir else Path(runs_root) / self.run_id
        self.console = console or Console()
        self.capture = bool(_setting(scenario, "capture", True)) if capture is None else capture
        self.keep_going = bool(_setting(scenario, "continue_on_failure", False)) if keep_going is None else keep_going
        self.step_timeout = float(_setting(scenario, "step_timeout", DEFAULT_STEP_TIMEOUT))
        self.startup_timeout = float(startup_timeout or _setting(scenario, "startup_timeout", DEFAULT_STARTUP_TIMEOUT))
        self.socket_dir = SOCKET_ROOT / self.run_id
        self.backend: Backend | None = None
        self.processes: dict[str, NodeProcess] = {}
        self.sockets: dict[str, str] = {}
        self.ctx: RunContext | None = None
        self._probe: DaemonProbe | None = None
        name = getattr(scenario, "name", None) or getattr(getattr(scenario, "topology", None), "name", "scenario")
        src = getattr(scenario, "source", None) or getattr(scenario, "path", None) or getattr(scenario, "file", None)
        self.result = RunResult(run_id=self.run_id, scenario=str(name), scenario_file=str(src) if src else None,
                                backend=backend_name, run_dir=self.run_dir)

    # -- public -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        load_runners()
        result = self.result
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("logs", "config", "var"):
            (self.run_dir / sub).mkdir(exist_ok=True)
        file_handler = logging.FileHandler(self.run_dir / "logs" / "runner.log")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(file_handler)
        log.setLevel(logging.DEBUG)
        steps = list(getattr(self.scenario, "steps", ()) or ())
        result.steps = [
            StepResult(index=getattr(s, "index", i), name=str(getattr(s, "name", None) or getattr(s, "kind", "?")),
                       kind=str(getattr(s, "kind", "?")), line=getattr(s, "line", None),
                       args=_plain(dict(getattr(s, "args", {}) or {})))
            for i, s in enumerate(steps)
        ]
        self.console.run_started(result)
        for module, why in STEP_MODULE_ERRORS.items():
            msg = f"step module {module} failed to import ({why})"
            result.warnings.append(msg)
            self.console.warn(msg)
        signals = _Signals(self.console)
        try:
            with signals:
                try:
                    self._setup()
                    self._run_steps(steps)
                except KeyboardInterrupt as exc:
                    result.interrupted = True
                    result.error = f"interrupted ({exc or 'SIGINT'})"
                    self.console.warn(f"interrupted ({exc or 'SIGINT'}): cleaning up")
                except LabError as exc:
                    result.error = str(exc)
                except Exception as exc:  # noqa: BLE001 - a runner bug still tears down and reports
                    log.exception("run failed")
                    result.error = f"{type(exc).__name__}: {exc}"
                finally:
                    signals.cleanup_phase()
                    self._finish()
                    for res in result.steps:
                        if res.started is None and not res.message:
                            res.message = "not run: " + ("interrupted" if result.interrupted else "setup failed")
                    if signals.received and not result.interrupted:
                        result.interrupted = True
                        result.error = result.error or "interrupted during cleanup"
                    self._write()
        finally:
            log.removeHandler(file_handler)
            file_handler.close()
        self.console.run_finished(result)
        self.console.close()
        return result

    # -- setup --------------------------------------------------------------------------------
    def _setup(self) -> None:
        backend_cls = get_backend(self.backend_name)
        topo = self.scenario.topology
        self._probe = DaemonProbe(sorted({_kind(n) for n in topo.nodes.values() if _kind(n) in DAEMON_KINDS}))
        self.backend = backend_cls(self.run_id, self.run_dir, topo, capture=self.capture)
        self.console.phase(f"building {len(topo.nodes)} nodes, {len(topo.links)} links ({self.backend_name})")
        t0 = time.monotonic()
        self.backend.build()
        log.info("backend %s built in %.2f s", self.backend_name, time.monotonic() - t0)
        with contextlib.suppress(Exception):
            self.result.capabilities = dict(self.backend.capabilities())
        ipsec = {name: str((n.params or {}).get("dataplane") or "userspace") for name, n in topo.nodes.items()
                 if _kind(n) in ("ue", "pdngw")}
        if ipsec and "esp" in self.result.capabilities:
            # which ESP data plane the daemons run, and whether this kernel could do ESP itself
            esp = self.result.capabilities["esp"]
            kinds = sorted(set(ipsec.values()))
            self.console.phase("ESP data plane: " + ", ".join(
                f"{k} ({', '.join(sorted(n for n, v in ipsec.items() if v == k))})" for k in kinds)
                + ("; kernel ESP available (params dataplane: xfrm selects it)" if esp
                   else "; this kernel has no ESP, so the xfrm backend cannot run here"))
        self._start_daemons()
        self.ctx = RunContext(self.scenario, self.backend, self.run_id, self.run_dir, self.sockets, log,
                              self.processes, getattr(self.scenario, "settings", None))

    def _start_daemons(self) -> None:
        topo = self.scenario.topology
        daemon_nodes = [n for n, node in topo.nodes.items() if _kind(node) in DAEMON_KINDS]
        for n in daemon_nodes:
            path = str(self.socket_dir / f"{n}.sock")
            if len(path.encode()) > SUN_PATH_MAX:
                raise LabError(f"control socket path too long for sun_path: {path}")
            self.sockets[n] = path
        if not daemon_nodes:
            return
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        addresses = {n: self.backend.addresses(n) for n in daemon_nodes}
        configs = node_configs(self.scenario, self.run_id, self.run_dir, self.sockets, addresses)
        started = []
        broken = self._probe.result() if self._probe is not None else {}
        for n in daemon_nodes:
            kind = configs[n]["kind"]
            if kind in broken:
                msg = f"{n}: `python -m {kind}` is not importable ({broken[kind]}); node {n} runs without a daemon"
                self.result.warnings.append(msg)
                self.console.warn(msg)
                self.sockets.pop(n, None)
                continue
            cfg_path = self.run_dir / "config" / f"{n}.json"
            cfg_path.write_text(json.dumps(configs[n], indent=2) + "\n", encoding="utf-8")
            argv = [sys.executable, "-m", kind, "--config", str(cfg_path.resolve())]
            env = {"PYTHONUNBUFFERED": "1", "S2C_RUN_ID": self.run_id}
            self.processes[n] = self.backend.spawn(n, argv, log_name=n, env=env)
            started.append(n)
        self.console.phase(f"starting daemons: {', '.join(started)}")
        self._wait_ready(started)

    def _wait_ready(self, nodes: list[str]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = list(nodes)
        while pending:
            for n in list(pending):
                proc = self.processes[n]
                if not proc.alive():
                    raise LabError(f"{n} daemon exited with status {proc.returncode} before answering status; "
                                   f"log {proc.log_path}:\n{_tail(proc.log_path)}")
                try:
                    ControlClient(self.sockets[n], timeout=1.0).call("status")
                except (ControlError, ValueError):
                    continue
                pending.remove(n)
                log.info("%s ready", n)
            if not pending:
                break
            if time.monotonic() > deadline:
                n = pending[0]
                proc = self.processes[n]
                raise LabError(f"{n} daemon did not answer status on {self.sockets[n]} within "
                               f"{self.startup_timeout:g} s; log {proc.log_path}:\n{_tail(proc.log_path)}")
            time.sleep(0.05)

    # -- steps --------------------------------------------------------------------------------
    def _run_steps(self, steps: list[Any]) -> None:
        stop_reason = ""
        for step, res in zip(steps, self.result.steps):
            if stop_reason:
                res.status = SKIPPED
                res.message = stop_reason
                self.console.step_finished(res)
                continue
            self._run_step(step, res)
            if res.status != PASSED and not self.keep_going:
                stop_reason = f"skipped: step {res.index} ({res.name}) {res.status}"
        if not stop_reason:
            self._end_of_run_stream_checks()

    def _end_of_run_stream_checks(self) -> None:
        """Streams with thresholds that no step checked are checked once they end (extra results)."""
        assert self.ctx is not None
        pending = [s for s in self.ctx.streams.values() if not s.checked and s.args]
        for stream in pending:
            res = StepResult(index=len(self.result.steps), name=f"stream {stream.name} (end of run)",
                             kind="stream_check", args=dict(stream.args))
            self.result.steps.append(res)
            self.console.step_started(res)
            res.started = time.time()
            t0 = time.monotonic()
            self.ctx.deadline = t0 + stream.duration + 10.0
            try:
                outcome = final_check(self.ctx, stream)
                res.status, res.message, res.summary = outcome.status, outcome.message, outcome.summary
                res.details = _plain(outcome.details)
            except Exception as exc:  # noqa: BLE001
                res.status, res.message = ERROR, f"{type(exc).__name__}: {exc}"
            finally:
                self.ctx.deadline = None
            res.duration = time.monotonic() - t0
            self.console.step_finished(res)

    def _run_step(self, step: Any, res: StepResult) -> None:
        ctx = self.ctx
        assert ctx is not None
        runner = STEP_RUNNERS.get(res.kind)
        self.console.step_started(res)
        res.started = time.time()
        t0 = time.monotonic()
        timeout = self._budget(step)
        ctx.deadline = t0 + timeout
        log.info("step %d %s (%s) %s", res.index, res.name, res.kind, res.args)
        try:
            if runner is None:
                broken = "; ".join(f"{m}: {e}" for m, e in STEP_MODULE_ERRORS.items())
                raise StepError(f"no runner for step kind {res.kind!r} (known: {', '.join(sorted(STEP_RUNNERS))})"
                                + (f"; modules that failed to import: {broken}" if broken else ""))
            # runners honour ctx.deadline; the alarm (half a second later) is the backstop
            with _StepAlarm(timeout):
                outcome = runner(ctx, step)
            if not isinstance(outcome, StepOutcome):
                outcome = StepOutcome.ok(**({"result": outcome} if outcome is not None else {}))
            res.status = outcome.status if outcome.status in (PASSED, FAILED, ERROR) else ERROR
            res.message = outcome.message
            res.summary = outcome.summary
            res.details = _plain(outcome.details)
        except StepFailed as exc:
            res.status, res.message, res.details, res.summary = FAILED, str(exc), _plain(exc.details), exc.summary
        except StepTimeout as exc:
            res.status, res.message = ERROR, str(exc)
        except (StepError, LabError, ControlError) as exc:
            res.status, res.message = ERROR, str(exc)
        except KeyboardInterrupt:
            res.status, res.message = ERROR, "interrupted"
            res.duration = time.monotonic() - t0
            self.console.step_finished(res)
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("step %d crashed", res.index)
            res.status, res.message = ERROR, f"{type(exc).__name__}: {exc}"
        finally:
            ctx.deadline = None
        res.duration = time.monotonic() - t0
        log.info("step %d %s: %s %s %s", res.index, res.name, res.status, res.summary, res.message)
        self.console.step_finished(res)

    def _budget(self, step: Any) -> float:
        """Seconds step may take: its ``timeout``, else settings.step_timeout plus what it must wait."""
        args = getattr(step, "args", None) or {}
        explicit = args.get("timeout")
        if isinstance(explicit, (int, float)) and not isinstance(explicit, bool) and explicit > 0:
            return float(explicit)
        extra = 0.0
        kind = getattr(step, "kind", "")
        with contextlib.suppress(TypeError, ValueError):
            if kind == "wait":
                extra = float(args.get("seconds") or 0)
            elif kind == "ping":
                extra = int(args.get("count") or 3) * float(args.get("interval") or 0.2) + 2.0
            elif kind == "expect":
                extra = float(args.get("within") or 0)
            elif kind in ("stream_check", "stream_stop") and self.ctx is not None:
                st = self.ctx.streams.get(str(args.get("name")))
                if st is not None and st.duration:
                    extra = max(0.0, st.started + st.duration - time.time()) + 3.0
        return self.step_timeout + extra

    # -- teardown -----------------------------------------------------------------------------
    def _finish(self) -> None:
        """Stop streams, collect final status, stop daemons, tear the backend down. Never raises."""
        self.console.phase("tearing down")
        result = self.result
        if self._probe is not None:
            self._probe.close()
        if self.ctx is not None:
            try:
                finals = stop_all_streams(self.ctx)
                result.streams.update(finals)
            except Exception as exc:  # noqa: BLE001
                log.warning("stopping streams: %s", exc)
        for n, path in self.sockets.items():
            proc = self.processes.get(n)
            if proc is None or not proc.alive():
                result.nodes[n] = {"error": f"daemon not running (exit {proc.returncode if proc else None})"}
                continue
            try:
                result.nodes[n] = ControlClient(path, timeout=2.0).call("status")
            except (ControlError, ValueError) as exc:
                result.nodes[n] = {"error": str(exc)}
        for n, path in self.sockets.items():
            proc = self.processes.get(n)
            if proc is not None and proc.alive():
                with contextlib.suppress(ControlError, ValueError):
                    ControlClient(path, timeout=1.0).call("stop")
        deadline = time.monotonic() + 3.0
        for n, proc in self.processes.items():
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - still running: the backend kills it
                log.warning("%s did not stop on request; terminating", n)
                with contextlib.suppress(Exception):
                    proc.terminate(1.0)
        if self.backend is not None:
            try:
                self.backend.teardown()
            except Exception as exc:  # noqa: BLE001
                msg = f"teardown: {exc}"
                result.warnings.append(msg)
                log.exception("teardown failed")
            with contextlib.suppress(Exception):
                self._collect_captures()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        result.ended = time.time()

    def _collect_captures(self) -> None:
        assert self.backend is not None
        pcap_dir = self.run_dir / "pcap"
        for p in self.backend.captures():
            p = Path(p)
            if not p.exists():
                continue
            try:
                p.resolve().relative_to(self.run_dir.resolve())
            except ValueError:
                pcap_dir.mkdir(exist_ok=True)
                shutil.copy2(p, pcap_dir / p.name)

    def _write(self) -> None:
        result = self.result
        arts = []
        for sub in ("logs", "pcap", "config"):
            d = self.run_dir / sub
            if d.is_dir():
                arts.extend(str(p.relative_to(self.run_dir)) for p in sorted(d.rglob("*")) if p.is_file())
        result.artifacts = arts
        try:
            write_reports(result)
        except OSError as exc:
            self.console.warn(f"cannot write reports to {self.run_dir}: {exc}")
        link_latest(self.run_dir)


def run_scenario(scenario: Any, backend_name: str = "netns", run_dir: Path | str | None = None,
                 console: Console | None = None, **options: Any) -> RunResult:
    """Run one validated scenario; returns the result (``exit_code`` 0 only if every step passed).

    Options: ``run_id`` (else ``<run_id_prefix>-<6 hex>``), ``run_id_prefix`` ("s2c"), ``capture``
    (pcaps, default True), ``keep_going`` (default: scenario ``settings.continue_on_failure``),
    ``runs_root`` ("runs", used when ``run_dir`` is None), ``startup_timeout`` (s).
    """
    return Runner(scenario, backend_name, run_dir, console, **options).run()
