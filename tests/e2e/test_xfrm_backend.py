"""The kernel XFRM backend (s2c.dataplane.xfrm.KernelEspBackend) in throwaway namespaces (needs root).

On a kernel without ESP (this one): detection says no with a reason, ``start()`` refuses with it, the
policies the backend computes are installed over NETLINK_XFRM and read back with ``ip -d xfrm policy``
field by field, an SA install is refused with a typed error naming ESP, IKE passes the ESPINUDP
sockets through block-everything policies thanks to the per-socket bypass, iproute2's own NEWSA bytes
(captured with strace) are exactly what our codec encodes, and ``stop()`` leaves nothing behind.

On a kernel with ESP the ``esp`` tests run two backends across a veth: ping through the tunnel (raw
ESP and ESP-in-UDP, both suites, IPv4 and IPv6 inner), kernel counters in ``stats()``, transport-mode
Mobility Header both ways, make-before-break rekey and a MOBIKE peer move. They are skipped here with
the detection reason. Namespaces are ``s2cxf<hex>-a/-b``, always deleted.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import subprocess
import sys
import time

import pytest

from s2c.dataplane import xfrm_nl as nl
from s2c.dataplane.xfrm import _kernel_config, kernel_esp_available

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

ESP_OK, ESP_WHY = kernel_esp_available() if os.geteuid() == 0 else (False, "not root")
needs_esp = pytest.mark.skipif(not ESP_OK, reason=f"needs kernel ESP: {ESP_WHY}")
no_esp_here = pytest.mark.skipif(ESP_OK, reason="only meaningful where the kernel has no ESP")

A4, B4, A6, B6 = "198.51.100.1", "198.51.100.2", "2001:db8:5c2::1", "2001:db8:5c2::2"

# ---------------------------------------------------------------------------------------------- agent
# One KernelEspBackend in a namespace, driven over stdin/stdout with one JSON line per command.
AGENT = r'''
import json, sys, time, traceback
from types import SimpleNamespace as NS
from s2c.dataplane.xfrm import KernelEspBackend
from s2c.dataplane import xfrm_nl as nl
from s2c.esp.spd import Selector

b = None
seen = []

def keys(k):
    return NS(encr=k["encr"], encr_key=bytes.fromhex(k["key"]), salt=bytes.fromhex(k.get("salt", "")),
              integ=k.get("integ", 0), integ_key=bytes.fromhex(k.get("ikey", "")), icv_len=16)

def ev(d):
    ts = lambda t: NS(start_addr=t[0], end_addr=t[1], ip_protocol=t[2], start_port=t[3], end_port=t[4])
    return NS(spi_in=d["spi_in"], spi_out=d["spi_out"], keys_in=keys(d["keys_in"]), keys_out=keys(d["keys_out"]),
              mode=d["mode"], suite=NS(esn=d.get("esn", 0)), nat_t=d.get("nat_t", False),
              local_addr=tuple(d["local"]), remote_addr=tuple(d["remote"]),
              ts_local=[ts(t) for t in d["ts_local"]], ts_remote=[ts(t) for t in d["ts_remote"]])

def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x

try:
    for line in sys.stdin:
        cmd, a = json.loads(line)
        try:
            r = None
            if cmd == "new":
                b = KernelEspBackend(**a)
                b.set_ike_handler(lambda d, addr: seen.append(["ike", d.hex(), addr[0], addr[1]]))
                b.set_mh_handler(lambda nh, p, src, spi: seen.append(["mh", nh, p.hex(), src, spi]))
            elif cmd == "start":
                b.start(); r = b.device_kind
            elif cmd == "install":
                r = [s.spi for s in b.install_child_sa(ev(a["event"]), priority=a.get("priority", 0))]
            elif cmd == "rekey":
                r = [s.spi for s in b.rekey_child_sa(a["old_in"], a["old_out"], ev(a["event"]))]
            elif cmd == "install_policies":
                sas, pols = b.messages_for(ev(a["event"]), reqid=a.get("reqid", 1), priority=a.get("priority", 0))
                for m in pols:
                    b._add_policy_msg(0, m)
                r = [m.encode().hex() for m in pols]
            elif cmd == "dump_policies":
                r = [m.encode().hex() for m in b.list_policies()]
            elif cmd == "add_policy":
                b.add_policy(Selector(**{k: tuple(v) if isinstance(v, list) else v for k, v in a["sel"].items()}),
                             spi=a.get("spi"), action=a["action"], priority=a.get("priority", 0))
            elif cmd == "remove_policies":
                r = b.remove_policies(None)
            elif cmd == "poll":
                t_end = time.time() + a.get("timeout", 5.0)
                while time.time() < t_end and len(seen) < a["n"]:
                    b.poll_upcalls(); time.sleep(0.01)
                r, seen[:] = list(seen), []
            elif cmd == "send_ike":
                b.send_ike(bytes.fromhex(a["data"]), tuple(a["addr"]))
            elif cmd == "send_transport":
                r = b.send_transport(bytes.fromhex(a["data"]), a["nh"], a["src"], a["dst"])
            elif cmd == "update_peer":
                b.update_peer(a["spi"], a["addr"], a["port"], a.get("local"))
            elif cmd == "remove_sa":
                b.remove_sa(a["spi"])
            elif cmd == "stats":
                r = jsonable(b.stats())
            elif cmd == "events":
                r, b.events[:] = jsonable(b.events), []
            elif cmd == "stop":
                b.stop()
            print(json.dumps(["ok", r]), flush=True)
        except Exception as e:
            print(json.dumps(["err", type(e).__name__, str(e), getattr(e, "errno", None)]), flush=True)
finally:
    if b is not None:
        b.stop()
'''


class AgentError(Exception):
    def __init__(self, kind: str, text: str, err: int | None) -> None:
        super().__init__(f"{kind}: {text}")
        self.kind, self.text, self.errno = kind, text, err


class Agent:
    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", AGENT], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(
                                      os.path.dirname(os.path.abspath(__file__)))))

    def __call__(self, cmd: str, timeout: float = 20.0, **args):
        assert self.p.stdin and self.p.stdout
        self.p.stdin.write(json.dumps([cmd, args]) + "\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise TimeoutError(f"agent in {self.ns}: no answer to {cmd}")
        line = self.p.stdout.readline()
        if not line:
            raise AgentError("exited", f"agent in {self.ns} exited (rc {self.p.poll()})", None)
        reply = json.loads(line)
        if reply[0] != "ok":
            raise AgentError(*reply[1:])
        return reply[1]

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.close()  # type: ignore[union-attr]
                self.p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()


def sh(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=check)


@pytest.fixture
def lab():
    """Two namespaces joined by a veth (IPv4 and IPv6 documentation addresses); agents made on demand."""
    tag = f"s2cxf{secrets.token_hex(3)}"
    na, nb = f"{tag}-a", f"{tag}-b"
    agents: list[Agent] = []
    made: list[str] = []
    try:
        for ns in (na, nb):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
            sh(ns, "ip", "link", "set", "lo", "up")
        subprocess.run(["ip", "link", "add", f"{tag[:9]}a", "netns", na, "type", "veth", "peer", "name",
                        f"{tag[:9]}b", "netns", nb], check=True)
        for ns, dev, a4, a6 in ((na, f"{tag[:9]}a", A4, A6), (nb, f"{tag[:9]}b", B4, B6)):
            sh(ns, "ip", "link", "set", dev, "name", "wan0")
            sh(ns, "ip", "addr", "add", f"{a4}/24", "dev", "wan0")
            sh(ns, "ip", "addr", "add", f"{a6}/64", "dev", "wan0", "nodad")
            sh(ns, "ip", "link", "set", "wan0", "up")
            sh(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            # decapsulated inner packets re-enter on wan0 while the route back is via esp0 (TUN fallback)
            for conf in ("all", "default", "wan0"):
                sh(ns, "sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=0")

        class Lab:
            a, b = na, nb

            @staticmethod
            def agent(ns: str) -> Agent:
                ag = Agent(ns)
                agents.append(ag)
                return ag

        yield Lab
    finally:
        for ag in agents:
            ag.close()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# ---------------------------------------------------------------------------------------------- helpers


def gcm(k: int) -> dict:
    return {"encr": 20, "key": f"{k:02x}" * 16, "salt": f"{k + 1:02x}" * 4}


def cbc(k: int) -> dict:
    return {"encr": 12, "key": f"{k:02x}" * 16, "integ": 12, "ikey": f"{k + 1:02x}" * 32}


def ts(net: str, proto: int = 0, ports: tuple[int, int] = (0, 65535)) -> list:
    import ipaddress

    n = ipaddress.ip_network(net)
    return [str(n.network_address), str(n.broadcast_address), proto, ports[0], ports[1]]


def mirror(e: dict) -> dict:
    """The peer's view of a CHILD SA event."""
    return {**e, "spi_in": e["spi_out"], "spi_out": e["spi_in"], "keys_in": e["keys_out"], "keys_out": e["keys_in"],
            "local": e["remote"], "remote": e["local"], "ts_local": e["ts_remote"], "ts_remote": e["ts_local"]}


def tunnel_event(outer6: bool = False, nat_t: bool = False, suite=gcm, spi: int = 0x1000, esn: int = 0) -> dict:
    la, ra = (A6, B6) if outer6 else (A4, B4)
    port = 4500 if nat_t else 500
    return {"spi_in": spi + 1, "spi_out": spi + 2, "keys_in": suite(0x11), "keys_out": suite(0x21), "mode": "tunnel",
            "nat_t": nat_t, "esn": esn, "local": [la, port], "remote": [ra, port],
            "ts_local": [ts("10.77.1.1/32"), ts("2001:db8:77:1::1/128")],
            "ts_remote": [ts("10.77.2.0/24"), ts("2001:db8:77:2::/64")]}


def mh_event(spi: int = 0x3000) -> dict:
    return {"spi_in": spi + 1, "spi_out": spi + 2, "keys_in": gcm(0x31), "keys_out": gcm(0x41), "mode": "transport",
            "nat_t": False, "local": [A6, 500], "remote": [B6, 500],
            "ts_local": [ts(f"{A6}/128", 135)], "ts_remote": [ts(f"{B6}/128", 135)]}


def parse_ip_xfrm_policy(text: str) -> list[dict]:
    """``ip -d xfrm policy show`` -> one dict per policy: selector words (indent 0), ``dir``/``priority``/
    ``action``/``if_id``/``socket`` (indent 1), templates (``tmpl src .. dst ..`` + indent-2 words)."""
    out: list[dict] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        level = len(line) - len(line.lstrip("\t"))
        words = line.split()
        if level == 0:
            out.append({"tmpls": []})
            target = out[-1]
        elif level == 1 and words[0] == "tmpl":
            out[-1]["tmpls"].append({})
            target, words = out[-1]["tmpls"][-1], words[1:]
        elif level == 1:
            target = out[-1]
        else:
            target = out[-1]["tmpls"][-1]
        for k, v in zip(words[::2], words[1::2]):
            target[k] = v
    return out


def policy_from_ip(p: dict) -> tuple:
    """Comparable key of one parsed iproute2 policy."""
    return (p["src"], p["dst"], p.get("proto", "0"), p.get("sport", "0"), p.get("dport", "0"), p["dir"],
            int(p["priority"]), p.get("action", "allow"), p.get("if_id"),
            tuple((t.get("src"), t.get("dst"), t.get("proto"), int(t.get("reqid", 0)), t.get("mode"))
                  for t in p["tmpls"]))


PROTO_NAMES = {0: "0", 6: "tcp", 17: "udp", 135: "mobility-header", 58: "ipv6-icmp", 1: "icmp"}


def policy_from_msg(m: nl.XfrmPolicyMsg) -> tuple:
    s = m.info.sel
    dirs = {0: "in", 1: "out", 2: "fwd"}
    tm = []
    for t in m.tmpls:
        anyaddr = "::" if t.family == nl.AF_INET6 else "0.0.0.0"
        tm.append((t.saddr or anyaddr, t.id.daddr or anyaddr, {50: "esp"}[t.id.proto], t.reqid,
                   {0: "transport", 1: "tunnel"}[t.mode]))
    return (f"{s.saddr}/{s.prefixlen_s}", f"{s.daddr}/{s.prefixlen_d}", PROTO_NAMES.get(s.proto, str(s.proto)),
            str(s.sport) if s.sport_mask else "0", str(s.dport) if s.dport_mask else "0", dirs[m.info.dir],
            m.info.priority, {0: "allow", 1: "block"}[m.info.action],
            None if m.if_id is None else hex(m.if_id), tuple(tm))


def leftovers(ns: str) -> dict:
    return {"policies": sh(ns, "ip", "xfrm", "policy", "show").stdout.strip(),
            "states": sh(ns, "ip", "xfrm", "state", "show").stdout.strip(),
            "esp0": sh(ns, "ip", "link", "show", "esp0", check=False).returncode == 0,
            "udp4500": ":4500" in sh(ns, "ss", "-uanH").stdout}


NOTHING = {"policies": "", "states": "", "esp0": False, "udp4500": False}

# ---------------------------------------------------------------------------------------------- no ESP here


@no_esp_here
def test_detection_says_no_with_a_reason():
    ok, why = kernel_esp_available()
    assert ok is False
    cfg = _kernel_config()
    if cfg and cfg.get("CONFIG_INET_ESP", "n") == "n":
        assert "CONFIG_INET_ESP" in why
    assert "ESP state refused" in why


@no_esp_here
def test_start_refuses_with_the_reason_and_leaves_nothing(lab):
    ag = lab.agent(lab.a)
    ag("new", tun_addresses=["10.77.1.1/32"])
    with pytest.raises(AgentError) as ei:
        ag("start")
    assert ei.value.kind == "KernelEspUnavailable"
    assert ei.value.text.startswith("kernel ESP not available here: ") and "ESP state refused" in ei.value.text
    assert leftovers(lab.a) == NOTHING


@no_esp_here
def test_sa_install_is_refused_with_a_typed_error_naming_esp(lab):
    ag = lab.agent(lab.a)
    ag("new", check=False)
    assert ag("start") in ("tun", "xfrmi")
    for ev in (tunnel_event(), tunnel_event(outer6=True, nat_t=True, suite=cbc, esn=1), mh_event()):
        with pytest.raises(AgentError) as ei:
            ag("install", event=ev)
        e = ei.value
        assert e.kind == "XfrmKernelError", e
        assert "kernel refused XFRM_MSG_NEWSA" in e.text and "ESP SA spi" in e.text
        assert e.errno and e.errno > 0
    # nothing of the refused CHILD SAs is left: no state, no policy but the sockets' own bypass ones
    assert sh(lab.a, "ip", "xfrm", "state", "show").stdout.strip() == ""
    pols = parse_ip_xfrm_policy(sh(lab.a, "ip", "-d", "xfrm", "policy", "show").stdout)
    assert pols and all("socket" in p and not p["tmpls"] for p in pols), pols
    assert ag("stats")["sas"] == {}
    ag("stop")
    assert leftovers(lab.a) == NOTHING


@no_esp_here
@pytest.mark.parametrize("which", ["tunnel4", "tunnel6_natt", "transport_mh"])
def test_policies_read_back_with_iproute2(lab, which):
    ev = {"tunnel4": tunnel_event(), "tunnel6_natt": tunnel_event(outer6=True, nat_t=True),
          "transport_mh": mh_event()}[which]
    ag = lab.agent(lab.a)
    ag("new", check=False, tun_addresses=["10.77.1.1/32"])
    ag("start")
    sent = [nl.XfrmPolicyMsg.decode(bytes.fromhex(h)) for h in ag("install_policies", event=ev, reqid=7, priority=2)]
    tunnel = ev["mode"] == "tunnel"
    # tunnel: 2 families x (out, in, fwd); transport: out + in
    assert len(sent) == (6 if tunnel else 2)
    text = sh(lab.a, "ip", "-d", "xfrm", "policy", "show").stdout
    ours = [p for p in parse_ip_xfrm_policy(text) if p["tmpls"]]
    assert sorted(map(policy_from_ip, ours)) == sorted(map(policy_from_msg, sent)), text
    for m in sent:
        t = m.tmpls[0]
        assert t.reqid == 7 and t.id.proto == 50
        if tunnel:
            assert t.mode == nl.XfrmMode.XFRM_MODE_TUNNEL and t.saddr and t.id.daddr
            if m.info.dir == nl.XfrmPolicyDir.XFRM_POLICY_OUT:
                assert (t.saddr, t.id.daddr) == (ev["local"][0], ev["remote"][0])
            else:
                assert (t.saddr, t.id.daddr) == (ev["remote"][0], ev["local"][0])
        else:
            assert t.mode == nl.XfrmMode.XFRM_MODE_TRANSPORT and m.info.sel.proto == 135
    # the kernel's own dump, decoded by our codec, is what we sent (modulo kernel-kept fields)
    dumped = [nl.XfrmPolicyMsg.decode(bytes.fromhex(h)) for h in ag("dump_policies")]
    dumped = [m for m in dumped if m.tmpls]
    strip = lambda m: (m.info.sel, m.info.dir, m.info.priority, m.info.action, m.tmpls, m.if_id)  # noqa: E731
    assert sorted(map(strip, dumped), key=repr) == sorted(map(strip, sent), key=repr)
    ag("stop")
    assert leftovers(lab.a) == NOTHING


NO_XFRMI = _kernel_config().get("CONFIG_XFRM_INTERFACE", "") == "n"


@pytest.mark.skipif(not NO_XFRMI, reason="only where the kernel has no XFRM interfaces")
def test_xfrm_interface_missing_here_falls_back_to_tun(lab):
    ag = lab.agent(lab.a)
    ag("new", check=False, interface="xfrmi")
    with pytest.raises(AgentError) as ei:
        ag("start")
    assert ei.value.kind == "XfrmBackendError" and "cannot create XFRM interface esp0" in ei.value.text
    assert leftovers(lab.a) == NOTHING
    ag("new", check=False, interface="auto", tun_addresses=["10.77.1.1/32", "2001:db8:77:1::1/128"],
       routes=["10.77.2.0/24"])
    assert ag("start") == "tun"
    link = sh(lab.a, "ip", "-d", "link", "show", "esp0").stdout
    assert "tun" in link and "UP" in link
    addrs = sh(lab.a, "ip", "addr", "show", "dev", "esp0").stdout
    assert "10.77.1.1/32" in addrs and "2001:db8:77:1::1/128" in addrs
    assert "10.77.2.0/24 dev esp0" in sh(lab.a, "ip", "route").stdout
    ag("stop")
    assert leftovers(lab.a) == NOTHING


KERNEL_ERRORS = r"""
import errno, json
from s2c.dataplane import xfrm_nl as nl
from s2c.dataplane.xfrm import XfrmSocket
T = nl.XfrmMsgType
x = XfrmSocket()
out = {}
def attempt(name, t, body):
    try:
        x.request(t, body, what=name)
        out[name] = None
    except nl.XfrmKernelError as e:
        out[name] = [e.errno, e.msg_type, e.ext_msg, str(e)]
attempt("delsa", T.XFRM_MSG_DELSA, nl.XfrmSaIdMsg(nl.XfrmUsersaId("192.0.2.2", 0x4242, nl.AF_INET)))
pol = nl.XfrmPolicyMsg(nl.XfrmUserpolicyInfo(sel=nl.XfrmSelector("10.2.0.0", "10.1.0.0", family=nl.AF_INET,
                       prefixlen_d=16, prefixlen_s=16), dir=1))
attempt("newpolicy", T.XFRM_MSG_NEWPOLICY, pol)
attempt("newpolicy_again", T.XFRM_MSG_NEWPOLICY, pol)
attempt("delpolicy", T.XFRM_MSG_DELPOLICY, nl.XfrmPolicyIdMsg(nl.XfrmUserpolicyId(pol.info.sel, 0, 1)))
attempt("delpolicy_again", T.XFRM_MSG_DELPOLICY, nl.XfrmPolicyIdMsg(nl.XfrmUserpolicyId(pol.info.sel, 0, 1)))
from s2c.esp.sa import EspSa
sa = EspSa(spi=0x1000, direction="out", mode="tunnel", encr=20, encr_key=bytes(20), local="192.0.2.1", remote="192.0.2.2")
attempt("newsa_gcm", T.XFRM_MSG_NEWSA, nl.sa_from_esp(sa))
print(json.dumps(out))
"""


@no_esp_here
def test_kernel_errors_decode_into_typed_errors(lab):
    """Real kernel replies through XfrmSocket: ESRCH, EEXIST, ENOENT and the ESP refusal with its
    extended-ACK text, each an XfrmKernelError naming the request."""
    import errno

    r = sh(lab.a, sys.executable, "-c", KERNEL_ERRORS)
    out = json.loads(r.stdout)
    assert out["delsa"][0] == errno.ESRCH and out["delsa"][1] == nl.XfrmMsgType.XFRM_MSG_DELSA
    assert out["newpolicy"] is None and out["newpolicy_again"][0] == errno.EEXIST
    assert out["delpolicy"] is None and out["delpolicy_again"][0] == errno.ENOENT
    e = out["newsa_gcm"]
    assert e[1] == nl.XfrmMsgType.XFRM_MSG_NEWSA and e[0] > 0 and "AEAD" in e[2]  # extended ACK from the kernel
    assert e[3].startswith("kernel refused XFRM_MSG_NEWSA (newsa_gcm)")


@no_esp_here
def test_bypass_and_block_policies_read_back(lab):
    ag = lab.agent(lab.a)
    ag("new", check=False)
    ag("start")
    ag("add_policy", sel={"src": "2001:db8:9::/64", "dst": "2001:db8:7::/48", "proto": 6, "dport": [80, 80]},
       action="bypass", priority=3)
    ag("add_policy", sel={"src": "10.0.0.0/8", "dst": "10.1.0.0/16", "proto": 17, "sport": [1000, 1003]},
       action="discard")
    pols = parse_ip_xfrm_policy(sh(lab.a, "ip", "-d", "xfrm", "policy", "show").stdout)
    by_src = {p["src"]: p for p in pols if p.get("dir") == "out"}
    assert by_src["2001:db8:9::/64"]["dst"] == "2001:db8:7::/48" and by_src["2001:db8:9::/64"]["dport"] == "80"
    assert by_src["2001:db8:9::/64"]["proto"] == "tcp" and by_src["2001:db8:9::/64"].get("action", "allow") == "allow"
    assert by_src["10.0.0.0/8"]["action"] == "block" and by_src["10.0.0.0/8"]["sport"] == "1000"
    dumped = [nl.XfrmPolicyMsg.decode(bytes.fromhex(h)) for h in ag("dump_policies")]
    udp = [m for m in dumped if m.info.sel.proto == 17][0]
    assert (udp.info.sel.sport, udp.info.sel.sport_mask) == (1000, 0xFFFC)  # 1000-1003 as one port/mask block
    assert ag("remove_policies") == 2
    assert "10.0.0.0/8" not in sh(lab.a, "ip", "xfrm", "policy", "show").stdout
    ag("stop")
    assert leftovers(lab.a) == NOTHING


@pytest.mark.parametrize("fam", [4, 6])
def test_ike_passes_block_everything_policies_via_socket_bypass(lab, fam):
    """IKE on the ESPINUDP 4500 sockets (marker stripped on receive, added on send) while OUT policies
    block every packet: only the per-socket bypass lets it through; a plain socket is refused."""
    a, b = lab.agent(lab.a), lab.agent(lab.b)
    for ag in (a, b):
        ag("new", check=False)
        ag("start")
        # every UDP packet blocked (UDP only: IPv6 neighbour discovery must still work)
        ag("add_policy", sel={"src": "0.0.0.0/0", "dst": "0.0.0.0/0", "proto": 17}, action="discard")
        ag("add_policy", sel={"src": "::/0", "dst": "::/0", "proto": 17}, action="discard")
    dst = B4 if fam == 4 else B6
    plain = sh(lab.a, sys.executable, "-c", f"import socket; s=socket.socket(socket.AF_INET{'6' if fam == 6 else ''}, "
               f"socket.SOCK_DGRAM); s.sendto(b'x', ('{dst}', 4500))", check=False)
    assert plain.returncode != 0 and "Operation not permitted" in plain.stderr  # the block policy bites
    payload = secrets.token_bytes(40)
    a("send_ike", data=payload.hex(), addr=[dst, 4500])
    got = b("poll", n=1)
    assert got == [["ike", payload.hex(), A4 if fam == 4 else A6, 4500]]
    b("send_ike", data=payload[::-1].hex(), addr=[A4 if fam == 4 else A6, 4500])
    assert a("poll", n=1) == [["ike", payload[::-1].hex(), dst, 4500]]
    for ag, ns in ((a, lab.a), (b, lab.b)):
        ag("stop")
        assert leftovers(ns) == NOTHING


def _strace_newsa(args: list[str]) -> bytes:
    r = subprocess.run(["unshare", "--net", "strace", "-e", "trace=sendmsg", "-e", "write=3,4,5", "ip", "xfrm",
                        "state", "add", *args], capture_output=True, text=True, timeout=20)
    buf = bytearray()
    for line in r.stderr.splitlines():
        m = re.match(r"\s*\| [0-9a-f]{5}  (.{49})", line)
        if m:
            buf += bytes.fromhex(m.group(1).replace(" ", ""))
    return bytes(buf)


@pytest.mark.skipif(not shutil.which("strace") or not shutil.which("unshare"), reason="needs strace and unshare")
@pytest.mark.parametrize("case", ["gcm_tunnel_natt", "cbc_transport_esn", "cbc256_tunnel_in"])
def test_iproute2_newsa_bytes_equal_ours(case):
    """iproute2 encodes the same SA (its request captured with strace, whether the kernel takes it or
    not): our decoder reads it, and our encoder produces the same bytes."""
    from s2c.esp.sa import EspSa
    from s2c.esp.spd import Selector

    k16, k32 = "22" * 16, "33" * 32
    cases = {
        "gcm_tunnel_natt": (
            "src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 mode tunnel reqid 5 flag af-unspec aead "
            "rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128 encap espinudp 4500 4501 0.0.0.0",
            dict(spi=0x1000, direction="out", mode="tunnel", encr=20,
                 encr_key=bytes.fromhex("0102030405060708090a0b0c0d0e0f1011121314"), local="192.0.2.1",
                 remote="192.0.2.2", udp_encap=True, local_port=4500, remote_port=4501), 5, None),
        "cbc_transport_esn": (
            f"src 2001:db8::2 dst 2001:db8::1 proto esp spi 0x2000 mode transport reqid 6 replay-window 128 flag esn "
            f"enc cbc(aes) 0x{k16} auth-trunc hmac(sha256) 0x{k32} 128 sel src 2001:db8::2/128 dst 2001:db8::1/128 "
            f"proto 135",
            dict(spi=0x2000, direction="in", mode="transport", encr=12, encr_key=bytes.fromhex(k16), integ=12,
                 integ_key=bytes.fromhex(k32), local="2001:db8::1", remote="2001:db8::2", replay_window=128, esn=True),
            6, nl.selectors_from(Selector("2001:db8::2/128", "2001:db8::1/128", 135))[0]),
        "cbc256_tunnel_in": (
            f"src 198.51.100.2 dst 198.51.100.1 proto esp spi 0x3000 mode tunnel reqid 7 replay-window 32 flag "
            f"af-unspec enc cbc(aes) 0x{k16 * 2} auth-trunc hmac(sha256) 0x{k32} 128",
            dict(spi=0x3000, direction="in", mode="tunnel", encr=12, encr_key=bytes.fromhex(k16 * 2), integ=12,
                 integ_key=bytes.fromhex(k32), local="198.51.100.1", remote="198.51.100.2", replay_window=32), 7, None),
    }
    args, sa_kw, reqid, sel = cases[case]
    raw = _strace_newsa(args.split())
    [(h, theirs)] = nl.decode_msgs(raw)
    assert h.type == nl.XfrmMsgType.XFRM_MSG_NEWSA
    ours = nl.sa_from_esp(EspSa(**sa_kw), reqid=reqid, sel=sel)
    assert ours == theirs
    assert ours.encode() == raw[16:]


# ---------------------------------------------------------------------------------------------- real ESP


def _pair(lab, ev: dict, interface: str = "auto"):
    """Two started backends with ``ev`` installed on A and its mirror on B; inner addresses on esp0."""
    a, b = lab.agent(lab.a), lab.agent(lab.b)
    a("new", interface=interface, tun_addresses=["10.77.1.1/32", "2001:db8:77:1::1/128"],
      routes=["10.77.2.0/24", "2001:db8:77:2::/64"])
    b("new", interface=interface, tun_addresses=["10.77.2.1/24", "2001:db8:77:2::1/64"],
      routes=["10.77.1.1/32", "2001:db8:77:1::1/128"])
    a("start")
    b("start")
    a("install", event=ev)
    b("install", event=mirror(ev))
    return a, b


def _ping(ns: str, dst: str, src: str, n: int = 3) -> bool:
    r = sh(ns, "ping", "-c", str(n), "-i", "0.2", "-W", "2", "-I", src, dst, check=False)
    return r.returncode == 0


@needs_esp
@pytest.mark.parametrize("outer6,nat_t,suite,interface", [
    (False, False, gcm, "auto"), (False, True, gcm, "auto"), (True, False, cbc, "auto"), (True, True, cbc, "tun"),
])
def test_ping_through_kernel_esp(lab, outer6, nat_t, suite, interface):
    ev = tunnel_event(outer6=outer6, nat_t=nat_t, suite=suite)
    a, b = _pair(lab, ev, interface)
    cap = subprocess.Popen(["ip", "netns", "exec", lab.b, "tcpdump", "-nni", "wan0", "-c", "200", "-w", "-"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) if shutil.which("tcpdump") else None
    time.sleep(0.5)  # tcpdump attached
    try:
        assert _ping(lab.a, "10.77.2.1", "10.77.1.1")
        assert _ping(lab.a, "2001:db8:77:2::1", "2001:db8:77:1::1")
    finally:
        if cap is not None:
            cap.terminate()
            pcap = cap.communicate(timeout=10)[0]
    sa = a("stats")["sas"]
    out, inn = sa[str(ev["spi_out"])], sa[str(ev["spi_in"])]
    assert out["packets_out"] >= 6 and inn["packets_in"] >= 6 and out["bytes_out"] > 0
    assert inn["auth_failures"] == 0 and inn["replay_drops"] == 0
    if cap is not None:
        # the wire carries ESP (proto 50) or ESP-in-UDP 4500, never a plain ICMP echo
        txt = subprocess.run(["tcpdump", "-nnr", "-"], input=pcap, capture_output=True).stdout.decode()
        assert "ICMP echo" not in txt and "ICMP6, echo" not in txt
        assert ("UDP-encap" in txt or ".4500 >" in txt) if nat_t else "ESP(spi=" in txt
    for ag, ns in ((a, lab.a), (b, lab.b)):
        ag("stop")
        assert leftovers(ns) == NOTHING


@needs_esp
def test_transport_mode_mobility_header_both_ways(lab):
    ev = mh_event()
    a, b = lab.agent(lab.a), lab.agent(lab.b)
    for ag, e in ((a, ev), (b, mirror(ev))):
        ag("new")
        ag("start")
        ag("install", event=e, priority=10)
    mh = bytes([59, 1, 5, 0, 0, 0]) + bytes(10)  # a Binding Update-shaped MH (RFC 6275 §6.1.7); checksum by the kernel
    assert a("send_transport", data=mh.hex(), nh=135, src=A6, dst=B6) is True
    got = b("poll", n=1)
    assert got and got[0][0] == "mh" and got[0][1] == 135 and got[0][3] == A6 and got[0][4] == ev["spi_out"]
    assert bytes.fromhex(got[0][2])[:4] == mh[:4]
    assert b("send_transport", data=mh.hex(), nh=135, src=B6, dst=A6) is True
    assert a("poll", n=1)[0][3] == B6
    assert a("send_transport", data=mh.hex(), nh=135, src=A6, dst="2001:db8:5c2::99") is False
    assert a("stats")["sas"][str(ev["spi_out"])]["packets_out"] >= 1
    for ag, ns in ((a, lab.a), (b, lab.b)):
        ag("stop")
        assert leftovers(ns) == NOTHING


@needs_esp
def test_rekey_make_before_break_and_remove(lab):
    ev = tunnel_event()
    a, b = _pair(lab, ev)
    assert _ping(lab.a, "10.77.2.1", "10.77.1.1")
    new = {**tunnel_event(spi=0x5000), "keys_in": gcm(0x51), "keys_out": gcm(0x61)}
    assert a("rekey", old_in=ev["spi_in"], old_out=ev["spi_out"], event=new) == [new["spi_out"], new["spi_in"]]
    assert b("rekey", old_in=ev["spi_out"], old_out=ev["spi_in"], event=mirror(new)) == [new["spi_in"], new["spi_out"]]
    assert _ping(lab.a, "10.77.2.1", "10.77.1.1")
    sas = a("stats")["sas"]
    assert set(sas) == {str(new["spi_in"]), str(new["spi_out"])} and sas[str(new["spi_out"])]["packets_out"] >= 3
    for spi in (new["spi_out"], new["spi_in"]):
        a("remove_sa", spi=spi)
    assert sh(lab.a, "ip", "xfrm", "state", "show").stdout.strip() == ""
    assert "tmpl" not in sh(lab.a, "ip", "xfrm", "policy", "show").stdout
    assert not _ping(lab.a, "10.77.2.1", "10.77.1.1", n=1)


@needs_esp
def test_mobike_update_peer_keeps_the_tunnel(lab):
    ev = tunnel_event(nat_t=True)
    a, b = _pair(lab, ev)
    assert _ping(lab.a, "10.77.2.1", "10.77.1.1")
    sh(lab.a, "ip", "addr", "add", "198.51.100.11/24", "dev", "wan0")
    for spi in (ev["spi_out"], ev["spi_in"]):
        a("update_peer", spi=spi, addr=B4, port=4500, local="198.51.100.11")
    for spi in (ev["spi_in"], ev["spi_out"]):
        b("update_peer", spi=spi, addr="198.51.100.11", port=4500)
    assert _ping(lab.a, "10.77.2.1", "10.77.1.1")
    assert "198.51.100.11" in sh(lab.a, "ip", "xfrm", "state", "show").stdout
    seq = a("stats")["sas"][str(ev["spi_out"])].get("seq", 0)
    assert seq >= 6  # the sequence number carried over the re-install (3 pings before, 3 after)
