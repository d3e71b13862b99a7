"""DataPlane driven the way the daemons drive it: inside asyncio (``attach``), SAs installed from
``s2c.ike.events.ChildSaEstablished`` (``install_child_sa``) and rekeyed make-before-break."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from s2c.dataplane.testbed import EspLab, nsx

pytest.importorskip("s2c.ike.events")

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

NODE = r'''
import asyncio, json, sys
from s2c.codec.ikev2 import EncrId, EsnId, IntegId, TrafficSelector
from s2c.crypto.ike_suites import EspKeys, EspSuite
from s2c.dataplane import DataPlane
from s2c.ike.events import ChildMode, ChildSaEstablished

cfg = json.loads(sys.argv[1])

def event(spis, keys):
    k = lambda h: EspKeys(encr=EncrId.ENCR_AES_GCM_16, encr_key=bytes.fromhex(h)[:16], salt=bytes.fromhex(h)[16:],
                          integ=IntegId.NONE, integ_key=b"", icv_len=16)
    ts_l = (TrafficSelector.from_network(cfg["inner_local"]),)
    ts_r = (TrafficSelector.from_network(cfg["inner_remote"]),)
    return ChildSaEstablished(
        sa_id=1, spi_in=spis[0], spi_out=spis[1], mode=ChildMode.TUNNEL, protocol="esp",
        ts_i=ts_l, ts_r=ts_r, ts_local=ts_l, ts_remote=ts_r,
        suite=EspSuite(encr=EncrId.ENCR_AES_GCM_16, key_bits=128, esn=EsnId.NO_ESN),
        keys_in=k(keys[0]), keys_out=k(keys[1]), nat_t=True,
        local_addr=(cfg["local"], 4500), remote_addr=(cfg["remote"], 4500))

async def main():
    loop = asyncio.get_running_loop()
    dp = DataPlane(tun_name="esp0", tun_addresses=[cfg["tun_addr"]], raw_esp=False, bind6=None)
    dp.start()
    dp.attach(loop)
    ike = []
    dp.set_ike_handler(lambda data, addr: ike.append(data.hex()))
    dp.install_child_sa(event(cfg["spis"], cfg["keys"]))
    done = asyncio.Event()
    def on_line():
        line = sys.stdin.readline().split()
        if not line or line[0] == "quit":
            done.set(); return
        if line[0] == "stats":
            print(json.dumps(dp.stats()), flush=True)
        elif line[0] == "rekey":
            dp.rekey_child_sa(cfg["spis"][0], cfg["spis"][1], event(cfg["new_spis"], cfg["new_keys"]))
            print("true", flush=True)
        elif line[0] == "ike":
            print(json.dumps(ike), flush=True)
        elif line[0] == "send_ike":
            dp.send_ike(bytes.fromhex(line[1]), (cfg["remote"], 4500)); print("true", flush=True)
    loop.add_reader(sys.stdin.fileno(), on_line)
    print("ready", flush=True)
    await done.wait()
    dp.stop()

asyncio.run(main())
'''


def test_asyncio_install_and_rekey_child_sa():
    lab = EspLab("s2ct-es" + uuid.uuid4().hex[:4])
    procs: dict[str, subprocess.Popen] = {}
    keys = [os.urandom(20).hex() for _ in range(4)]
    try:
        lab.build_network()
        for side, other in (("a", "b"), ("b", "a")):
            first = [0xA1000001, 0xB1000001] if side == "a" else [0xB1000001, 0xA1000001]
            new = [0xA2000002, 0xB2000002] if side == "a" else [0xB2000002, 0xA2000002]
            cfg = {
                "local": lab.outer[side], "remote": lab.outer[other], "tun_addr": f"{lab.inner[side]}/24",
                "inner_local": f"{lab.inner[side]}/32", "inner_remote": f"{lab.inner[other]}/32",
                "spis": first, "keys": keys[:2] if side == "a" else keys[1::-1],
                "new_spis": new, "new_keys": keys[2:] if side == "a" else keys[:1:-1],
            }
            procs[side] = subprocess.Popen(
                ["ip", "netns", "exec", lab.ns_a if side == "a" else lab.ns_b, sys.executable, "-c", NODE,
                 json.dumps(cfg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert procs[side].stdout.readline().strip() == "ready"

        def ask(side, line):
            procs[side].stdin.write(line + "\n")
            procs[side].stdin.flush()
            return json.loads(procs[side].stdout.readline())

        r = nsx(lab.ns_a, "ping", "-c", "3", "-i", "0.05", "-W", "2", lab.inner["b"], check=False)
        assert r.returncode == 0, r.stdout
        assert ask("a", "send_ike " + b"hello-from-a".hex()) is True
        assert ask("a", "rekey") is True and ask("b", "rekey") is True
        r = nsx(lab.ns_a, "ping", "-c", "3", "-i", "0.05", "-W", "2", lab.inner["b"], check=False)
        assert r.returncode == 0, r.stdout
        st_b = ask("b", "stats")
        assert ask("b", "ike") == [b"hello-from-a".hex()]
        assert set(st_b["sas"]) == {str(0xA2000002), str(0xB2000002)}  # old SPIs gone
        # B receives on its spi_in (0xB2...) and sends on its spi_out (0xA2...)
        assert st_b["sas"][str(0xB2000002)]["direction"] == "in"
        assert st_b["sas"][str(0xB2000002)]["packets_in"] >= 3
        assert st_b["sas"][str(0xA2000002)]["packets_out"] >= 3
    finally:
        for p in procs.values():
            try:
                p.stdin.write("quit\n")
                p.stdin.flush()
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
                p.wait()
        lab.close_network()


WORKER_DEATH = r'''
import os, signal, sys, time
from s2c.dataplane import DataPlane
from s2c.dataplane.plane import DataPlaneError
from s2c.esp.sa import EspSa
dp = DataPlane(tun_name="esp9", tun_addresses=["10.66.0.1/24"], raw_esp=False, bind6=None, workers=2)
dp.start()
try:
    assert dp.alive() and dp.stats()["alive"]
    os.kill(dp._procs[0].pid, signal.SIGKILL)
    dp._procs[0].wait()
    assert not dp.alive()
    sa = EspSa(spi=0x1234, direction="out", mode="tunnel", encr=20, encr_key=bytes(20), remote="192.0.2.2",
               udp_encap=True)
    t = time.monotonic()
    try:
        dp.add_sa(sa)
    except DataPlaneError as e:
        print("raised", "tx worker" in str(e), round(time.monotonic() - t, 1), e)
finally:
    dp.stop()
print("stopped", os.path.exists("/sys/class/net/esp9"))
'''


def test_worker_death_is_reported():
    ns = "s2ct-es" + uuid.uuid4().hex[:4] + "-w"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", WORKER_DEATH], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n")[0].startswith("raised True")
        assert float(r.stdout.split("\n")[0].split()[2]) < 2
        assert "stopped False" in r.stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


TUN_CHECK = r'''
import json, subprocess
from s2c.dataplane.tun import TunDevice
with TunDevice("mq0", mtu=1380, txqueuelen=4000, addresses=["10.55.0.1/24", "fd55::1/64"], queues=2) as t:
    link = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show", "mq0"], capture_output=True, text=True).stdout)[0]
    addrs = json.loads(subprocess.run(["ip", "-j", "addr", "show", "mq0"], capture_output=True, text=True).stdout)[0]
    print(json.dumps({"fds": len(t.fds), "mtu": link["mtu"], "txqlen": link.get("txqlen"),
                      "multi_queue": link.get("linkinfo", {}).get("info_data", {}).get("multi_queue"),
                      "up": "UP" in link["flags"],
                      "addrs": sorted(a["local"] for a in addrs["addr_info"] if a["scope"] == "global")}))
print(json.dumps(subprocess.run(["ip", "link", "show", "mq0"], capture_output=True).returncode))
'''


def test_tun_device_multiqueue_mtu_addresses():
    ns = "s2ct-es" + uuid.uuid4().hex[:4] + "-t"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", TUN_CHECK], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        info, gone = [json.loads(x) for x in r.stdout.split("\n") if x]
        assert info["fds"] == 2 and info["mtu"] == 1380 and info["txqlen"] == 4000 and info["up"]
        assert info["multi_queue"] is True
        assert info["addrs"] == ["10.55.0.1", "fd55::1"]
        assert gone != 0  # closing the last queue removed the interface
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
