"""tshark dissects a capture of the ``hss`` daemon's Diameter traffic with zero malformed packets.

Same approach as tests/integration/test_diameter_tcp.py: tcpdump on lo filtered to the daemon's
port, then ``tshark -d tcp.port==PORT,diameter``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from hss.client import CLIENT_IDENTITY, DiameterClient
from hss.testing import IMSI, IMSI2, REALM, HssLauncher, eap_over_s6b, identity_response, make_peer
from s2c.crypto import milenage, sqn as sqnmod
from s2c.diameter.messages import MultimediaAuthAnswer, build_mar

SWX, S6B = 16777265, 16777272


def _can_capture() -> bool:
    return os.geteuid() == 0 and shutil.which("tcpdump") is not None and shutil.which("tshark") is not None


@pytest.mark.skipif(not _can_capture(), reason="needs root, tcpdump and tshark")
def test_tshark_dissects_hss_traffic(tmp_path):
    launcher = HssLauncher(tmp_path)
    pcap = tmp_path / "hss.pcap"
    dump = None
    try:
        d = launcher.start()
        dump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-w", str(pcap), f"tcp port {d.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        assert dump.stderr is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = dump.stderr.readline()
            if "listening" in line or not line:
                break
        time.sleep(1.0)
        with DiameterClient("127.0.0.1", d.port) as c:
            c.cer()

            def mar(user, **kw):
                return c.request(build_mar(CLIENT_IDENTITY, session_id=f"pgw;t;{time.monotonic_ns()}",
                                           destination_realm=REALM, user_name=user, **kw))

            first = MultimediaAuthAnswer.from_message(mar(IMSI, number_auth_items=2)).items[0]
            mar("001019999999999")  # 5001
            rand = first.authenticate[:16]
            from hss.testing import K, OPC

            auts = milenage.build_auts(K, OPC, rand, sqnmod.sqn_to_bytes(sqnmod.join_sqn(900, 1)))
            mar(IMSI, resync_authorization=rand + auts)
            for method in ("aka", "aka'"):  # the daemon runs EAP-AKA: an AKA'-only peer Naks it
                peer, nai = make_peer(IMSI2, method=method)
                answers, _ = eap_over_s6b(c.request, peer, f"pgw;s6b;{method}", identity_response(nai))
                assert answers[-1].result_code == (2001 if method == "aka" else 4001)
            peer, nai = make_peer(IMSI, k=bytes(16))
            eap_over_s6b(c.request, peer, "pgw;s6b;bad", identity_response(nai))  # 4001
        time.sleep(0.5)
    finally:
        if dump is not None:
            dump.terminate()
            try:
                dump.wait(5)
            except subprocess.TimeoutExpired:
                dump.kill()
                dump.wait()
        launcher.close()
    decode = ["-d", f"tcp.port=={d.port},diameter"]
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *decode, "-Y", "diameter", "-T", "fields", "-E", "separator=|",
         "-e", "diameter.cmd.code", "-e", "diameter.applicationId", "-e", "diameter.flags.request",
         "-e", "diameter.Result-Code", "-e", "diameter.Experimental-Result-Code", "-e", "eap.code",
         "-e", "eap.type"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    cmds: dict[tuple[int, int, bool], int] = {}
    results: set[str] = set()
    eap_types: set[str] = set()
    for line in out.splitlines():
        codes, apps, reqs, rc, erc, _eap_code, eap_type = line.split("|")
        for c, a, r in zip(codes.split(","), apps.split(","), reqs.split(",")):
            key = (int(c), int(a), r in ("1", "True"))
            cmds[key] = cmds.get(key, 0) + 1
        results |= {x for x in (rc + "," + erc).split(",") if x}
        eap_types |= {x for x in eap_type.split(",") if x}
    assert cmds.get((257, 0, True)) == 1 and cmds.get((257, 0, False)) == 1
    assert cmds.get((303, SWX, True)) == 3 and cmds.get((303, SWX, False)) == 3
    assert cmds.get((268, S6B, True), 0) >= 5 and cmds[(268, S6B, True)] == cmds[(268, S6B, False)]
    assert cmds.get((282, 0, True)) == 1 and cmds.get((282, 0, False)) == 1
    assert {"2001", "1001", "4001", "5001"} <= results
    assert {"1", "23", "3"} <= eap_types  # Identity, EAP-AKA and Nak dissected inside EAP-Payload
    bad = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *decode, "-Y", "_ws.malformed || _ws.expert.severity == error"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert bad.strip() == "", bad
