"""The control channel (s2c/runtime/control.py, docs/control.md): JSON lines over a Unix socket."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import pytest

from s2c.runtime.control import ControlClient, ControlError, ControlServer, acall


class Server:
    """A ControlServer running in its own event loop thread."""

    def __init__(self, path: Path, handlers):
        self.path = str(path)
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(self.path, handlers)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(5)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _boom(_args):
    raise RuntimeError("kaboom")


def _refuse(_args):
    raise ControlError("not now")


async def _slow(args):
    await asyncio.sleep(0.01)
    return {"echo": args}


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "n.sock", {
        "status": lambda a: {"node": "n1", "n": 1},
        "echo": lambda a: a,
        "boom": _boom,
        "refuse": _refuse,
        "slow": _slow,
        "bytes": lambda a: {"raw": b"\x01\xff", "set": {3, 1}},
    })
    yield srv
    srv.close()


def _raw(path: str, payload: bytes) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


def test_status_roundtrip(server):
    assert ControlClient(server.path).call("status") == {"node": "n1", "n": 1}


def test_args_are_passed(server):
    assert ControlClient(server.path).call("echo", a=1, b=[1, "x"]) == {"a": 1, "b": [1, "x"]}


def test_async_handler(server):
    assert ControlClient(server.path).call("slow", x=2) == {"echo": {"x": 2}}


def test_bad_json_gets_error_and_server_keeps_serving(server):
    replies = _raw(server.path, b"this is not json\n{\"id\": 5, \"cmd\": \"status\"}\n")
    assert replies[0]["ok"] is False and "bad request" in replies[0]["error"] and replies[0]["id"] is None
    assert replies[1] == {"id": 5, "ok": True, "result": {"node": "n1", "n": 1}}


@pytest.mark.parametrize("line", [b"[1, 2]\n", b"{\"cmd\": 5}\n", b"{\"id\": 1}\n", b"\"status\"\n"])
def test_malformed_requests(server, line):
    [reply] = _raw(server.path, line)
    assert reply["ok"] is False and "bad request" in reply["error"]


def test_args_must_be_an_object(server):
    [reply] = _raw(server.path, b'{"id": 2, "cmd": "echo", "args": [1]}\n')
    assert reply == {"id": 2, "ok": False, "error": "'args' must be an object"}


def test_unknown_command_lists_known(server):
    with pytest.raises(ControlError) as exc:
        ControlClient(server.path).call("stauts")
    assert "unknown command 'stauts'" in str(exc.value) and "status" in str(exc.value)


def test_handler_exception_is_ok_false_and_server_survives(server):
    client = ControlClient(server.path)
    with pytest.raises(ControlError, match="RuntimeError: kaboom"):
        client.call("boom")
    with pytest.raises(ControlError, match="^not now$"):
        client.call("refuse")
    assert client.call("status")["n"] == 1  # still serving


def test_several_requests_on_one_connection_keep_their_ids(server):
    lines = b"".join(json.dumps({"id": i, "cmd": "echo", "args": {"i": i}}).encode() + b"\n" for i in range(20))
    replies = _raw(server.path, lines)
    assert [r["id"] for r in replies] == list(range(20))
    assert all(r["result"] == {"i": r["id"]} for r in replies)


def test_non_json_values_are_encoded(server):
    assert ControlClient(server.path).call("bytes") == {"raw": "01ff", "set": [1, 3]}


def test_too_long_line_is_refused(server):
    payload = b'{"id": 1, "cmd": "echo", "args": {"x": "' + b"a" * (1 << 21) + b'"}}\n'
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(server.path)
        try:
            s.sendall(payload)  # the server answers and hangs up before reading it all
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    replies = [json.loads(line) for line in buf.splitlines()]
    assert replies and replies[0]["ok"] is False and "too long" in replies[0]["error"]
    assert ControlClient(server.path).call("status")["n"] == 1


def test_missing_socket_is_a_control_error(tmp_path):
    with pytest.raises(ControlError, match="control socket"):
        ControlClient(str(tmp_path / "nope.sock"), timeout=0.5).call("status")


def test_async_client(server):
    async def go():
        return await acall(server.path, "echo", k="v")

    assert asyncio.run(go()) == {"k": "v"}


# -- the node config files the runner writes (docs/control.md, "Node configuration file") ------------


def _default_configs(tmp_path):
    from pathlib import Path as P

    from s2c.lab.runner import node_configs
    from s2c.model.scenario import load_scenario

    repo = P(__file__).resolve().parents[2]
    scn = load_scenario(repo / "scenarios" / "default.yaml")
    addresses = {}
    for name, node in scn.topology.nodes.items():
        addresses[name] = {
            i.name: {"ipv4": [str(a) for a in i.ipv4], "ipv6": [str(a) for a in i.ipv6], "up": True, "network": None}
            for i in node.interfaces.values()
        }
    addresses["ue1"] = {"wlan0": {"ipv4": ["192.0.2.10/24"], "ipv6": [], "up": True, "network": "wlan-a"},
                        "wlan1": {"ipv4": [], "ipv6": ["2001:db8:b::10/64", "fe80::1/64"], "up": True,
                                  "network": "wlan-b"}}
    sockets = {n: f"/run/s2c/s2ct-rn-cfg/{n}.sock" for n in ("ue1", "pdngw", "hss", "cn1")}
    return scn, node_configs(scn, "s2ct-rn-cfg", tmp_path, sockets, addresses)


def test_node_configs_per_kind(tmp_path):
    from s2c.runtime.node import NodeConfig

    scn, cfgs = _default_configs(tmp_path)
    assert set(cfgs) == {"ue1", "pdngw", "hss", "cn1"}
    for name, cfg in cfgs.items():
        nc = NodeConfig.from_dict(json.loads(json.dumps(cfg)))  # JSON-able and loadable by the daemon base
        assert nc.node == name and nc.control.endswith(f"/{name}.sock") and nc.run_id == "s2ct-rn-cfg"
    ue = cfgs["ue1"]
    assert ue["params"]["imsi"] == "001010000000001" and ue["params"]["k"] == "465b5ce8b199b49faa5f0a2ee238a6bc"
    assert ue["params"]["opc"] == "cd63cb71954a9f4e48a5994e37a02baf" and ue["params"]["amf"] == "b9b9"
    assert ue["params"]["radios"] == {"wlan0": {"network": "wlan-a", "up": True},
                                      "wlan1": {"network": "wlan-b", "up": True}}
    assert "198.51.100.1" in ue["peers"]["pdngw"]["ipv4"]
    assert all(not a.startswith("fe80") for p in ue["peers"].values() for a in p["ipv6"])
    pgw = cfgs["pdngw"]
    assert "2001:db8:c::1" in pgw["params"]["s2c"]["ipv6"]
    assert pgw["peers"]["hss"]["diameter"] == {"address": "198.18.0.2", "port": 3868}
    hss = cfgs["hss"]
    assert hss["params"]["diameter"] == {"listen": ["198.18.0.2", "2001:db8:d::2"], "port": 3868}
    assert hss["params"]["db"] == str(tmp_path / "var" / "hss.db")
    assert cfgs["cn1"]["params"] == {"sink_port": 5001, "echo_port": 7}
    # the default scenario captures: no UDP GSO (a veth capture would show one frame per GSO batch)
    assert ue["params"]["udp_gso"] is False and pgw["params"]["udp_gso"] is False


def test_udp_gso_only_for_runs_without_captures(tmp_path):
    import dataclasses

    from s2c.lab.runner import node_configs

    scn, cfgs = _default_configs(tmp_path)
    quiet = dataclasses.replace(scn, settings=dataclasses.replace(scn.settings, capture=False))
    addresses = {n: {} for n in cfgs}
    out = node_configs(quiet, "s2ct-rn-cfg", tmp_path, {n: f"/tmp/{n}.sock" for n in cfgs}, addresses)
    assert out["ue1"]["params"]["udp_gso"] is True and out["pdngw"]["params"]["udp_gso"] is True
    assert "udp_gso" not in out["hss"]["params"] and "udp_gso" not in out["cn1"]["params"]


def test_hss_subscribers_are_accepted_by_the_hss_store(tmp_path):
    store = pytest.importorskip("hss.store")
    _scn, cfgs = _default_configs(tmp_path)
    subs = cfgs["hss"]["params"]["subscribers"]
    assert len(subs) == 1
    sub = store.subscriber_from_mapping(subs[0])
    assert sub.imsi == "001010000000001" and sub.k.hex() == "465b5ce8b199b49faa5f0a2ee238a6bc"
    assert sub.amf.hex() == "b9b9"
