"""Diameter client and server over loopback TCP; tcpdump + tshark check the bytes on the wire."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from s2c.codec.diameter import ApplicationId, CommandCode, DiameterMessage, ResultCode
from s2c.diameter.dispatch import Dispatcher
from s2c.diameter.messages import (
    DiameterEapAnswer,
    DiameterEapRequest,
    LocalIdentity,
    MultimediaAuthAnswer,
    MultimediaAuthRequest,
    SipAuthDataItem,
    apn_configuration,
    build_dea,
    build_der,
    build_maa,
    build_mar,
    build_sta,
    build_str,
    make_session_id,
)
from s2c.diameter.peer import DiameterPeer, PeerRole
from s2c.diameter.transport import (
    DiameterConnection,
    DiameterConnectionClosed,
    connect,
    serve,
)

S6B = int(ApplicationId.S6B_3GPP)
SWX = int(ApplicationId.SWX_3GPP)

SERVER = LocalIdentity("hss.example.org", "example.org", ("127.0.0.1",),
                       vendor_specific_application_ids=((10415, S6B), (10415, SWX)))
PGW = LocalIdentity("pgw.example.org", "example.org", ("127.0.0.1",), vendor_specific_application_ids=((10415, S6B),))
AAA = LocalIdentity("aaa.example.org", "example.org", ("127.0.0.1",), vendor_specific_application_ids=((10415, SWX),))
OTHER = LocalIdentity("x.example.org", "example.org", ("127.0.0.1",), auth_application_ids=(4,))


def eap(code: int, ident: int, typ: int | None = None, data: bytes = b"") -> bytes:
    """A well-formed EAP packet (RFC 3748 §4) so that tshark's EAP dissector is happy too."""
    body = b"" if typ is None else bytes([typ]) + data
    return bytes([code, ident]) + (4 + len(body)).to_bytes(2, "big") + body


def make_dispatcher() -> Dispatcher:
    d = Dispatcher()

    @d.register(S6B, CommandCode.DIAMETER_EAP)
    def on_der(msg: DiameterMessage, conn: DiameterConnection) -> DiameterMessage:
        der = DiameterEapRequest.from_message(msg)
        if der.eap_payload[0] == 2 and der.eap_payload[1] == 0:
            return build_dea(msg, SERVER, result_code=ResultCode.DIAMETER_MULTI_ROUND_AUTH,
                             eap_payload=eap(1, 1, 1, b""))  # EAP-Request/Identity
        return build_dea(msg, SERVER, result_code=ResultCode.DIAMETER_SUCCESS, eap_payload=eap(3, 1),
                         eap_master_session_key=bytes(range(64)), mobile_node_identifier=der.user_name,
                         apn_configurations=[apn_configuration(1, "internet", home_agent_address="2001:db8::1")])

    @d.register(S6B, CommandCode.SESSION_TERMINATION)
    def on_str(msg: DiameterMessage, conn: DiameterConnection) -> DiameterMessage:
        return build_sta(msg, SERVER)

    @d.register(SWX, CommandCode.MULTIMEDIA_AUTH)
    async def on_mar(msg: DiameterMessage, conn: DiameterConnection) -> DiameterMessage:
        mar = MultimediaAuthRequest.from_message(msg)
        await asyncio.sleep(0)  # async handlers work too
        item = SipAuthDataItem(mar.scheme, authenticate=bytes(range(32)), authorization=bytes(8),
                               confidentiality_key=b"C" * 16, integrity_key=b"I" * 16, item_number=1)
        return build_maa(msg, SERVER, items=[item], result_code=ResultCode.DIAMETER_SUCCESS)

    return d


async def start_server(port: int = 0, **kw: float) -> asyncio.Server:
    d = make_dispatcher()
    return await serve(
        "127.0.0.1", port,
        lambda now: DiameterPeer(PeerRole.RESPONDER, SERVER, now, supported_requests=d.supported_requests(), **kw),
        d,
    )


async def exchange(port: int) -> None:
    """CER/CEA, DER/DEA x2 (multi-round), 20 concurrent DERs, STR/STA, MAR/MAA, DPR/DPA."""
    async with await connect("127.0.0.1", port, PGW, rng=lambda n: os.urandom(n)) as pgw:
        assert pgw.peer.remote_host == "hss.example.org"
        a1 = await pgw.request(build_der(PGW, session_id=make_session_id("pgw.example.org", 1, 1),
                                         destination_realm="example.org", eap_payload=eap(2, 0, 1, b"0001010123456789@nai.epc"),
                                         user_name="0001010123456789@nai.epc", service_selection="internet"))
        assert a1.result_code == ResultCode.DIAMETER_MULTI_ROUND_AUTH
        a2 = await pgw.request(build_der(PGW, session_id=make_session_id("pgw.example.org", 1, 1),
                                         destination_realm="example.org", eap_payload=eap(2, 1, 1, b"0001010123456789@nai.epc"),
                                         user_name="0001010123456789@nai.epc"))
        dea = DiameterEapAnswer.from_message(a2)
        assert dea.is_success and dea.eap_master_session_key == bytes(range(64))
        assert dea.mobile_node_identifier == "0001010123456789@nai.epc"
        answers = await asyncio.gather(*[
            pgw.request(build_der(PGW, session_id=make_session_id("pgw.example.org", 2, i),
                                  destination_realm="example.org", eap_payload=eap(2, 0, 1, b"user%d" % i)))
            for i in range(20)
        ])
        assert [a.session_id for a in answers] == [f"pgw.example.org;2;{i}" for i in range(20)]
        sta = await pgw.request(build_str(PGW, session_id=make_session_id("pgw.example.org", 1, 1),
                                          destination_realm="example.org"))
        assert sta.result_code == ResultCode.DIAMETER_SUCCESS
    async with await connect("127.0.0.1", port, AAA) as aaa:
        maa = MultimediaAuthAnswer.from_message(await aaa.request(build_mar(
            AAA, session_id=make_session_id("aaa.example.org", 1, 1), destination_realm="example.org",
            user_name="0001010123456789@nai.epc", scheme="EAP-AKA'")))
        assert maa.is_success and maa.items[0].scheme == "EAP-AKA'" and maa.items[0].integrity_key == b"I" * 16


def test_loopback_exchange() -> None:
    async def main() -> None:
        server = await start_server()
        try:
            port = server.sockets[0].getsockname()[1]
            await exchange(port)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_no_common_application_refused() -> None:
    async def main() -> None:
        server = await start_server()
        try:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(DiameterConnectionClosed, match="5010"):
                await connect("127.0.0.1", port, OTHER, timeout=3.0)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_watchdog_over_tcp() -> None:
    """Short Tw: DWR/DWA keep the connection up; a silent server kills it."""

    async def main() -> None:
        server = await start_server(watchdog_interval=0.2)
        try:
            port = server.sockets[0].getsockname()[1]
            c = await connect("127.0.0.1", port, PGW, watchdog_interval=0.1)
            await asyncio.sleep(0.6)
            assert c.peer.is_open and not c.closed.is_set()
            await c.close()
        finally:
            server.close()
            await server.wait_closed()

        # a TCP server that accepts but never speaks Diameter
        async def mute(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await r.read(1 << 16)
            await asyncio.sleep(5)
            w.close()

        silent = await asyncio.start_server(mute, "127.0.0.1", 0)
        try:
            port = silent.sockets[0].getsockname()[1]
            with pytest.raises(DiameterConnectionClosed):
                await connect("127.0.0.1", port, PGW, cer_timeout=0.3, timeout=3.0)
        finally:
            silent.close()

    asyncio.run(main())


# ---- wire check with tcpdump + tshark --------------------------------------------------------


def _can_capture() -> bool:
    return os.geteuid() == 0 and shutil.which("tcpdump") is not None and shutil.which("tshark") is not None


@pytest.mark.skipif(not _can_capture(), reason="needs root, tcpdump and tshark")
def test_tshark_dissects_every_message() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="s2ct-dm-") as tmp:
        pcap = Path(tmp) / "diameter.pcap"
        dump = subprocess.Popen(
            ["tcpdump", "--immediate-mode", "-i", "lo", "-U", "-n", "-s", "0", "-w", str(pcap), f"tcp port {port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert dump.stderr is not None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # wait for "listening on lo"
                line = dump.stderr.readline()
                if "listening" in line or not line:
                    break
            time.sleep(1.0)  # "listening" is printed a moment before the socket sees packets

            async def main() -> None:
                server = await start_server(port)
                try:
                    await exchange(port)
                finally:
                    server.close()
                    await server.wait_closed()

            asyncio.run(main())
            time.sleep(0.5)
        finally:
            dump.terminate()
            try:
                dump.wait(5)
            except subprocess.TimeoutExpired:
                dump.kill()
                dump.wait()
        decode = ["-d", f"tcp.port=={port},diameter"]
        out = subprocess.run(
            ["tshark", "-n", "-r", str(pcap), *decode, "-Y", "diameter",
             "-T", "fields", "-E", "separator=|", "-e", "diameter.cmd.code", "-e", "diameter.applicationId",
             "-e", "diameter.flags.request", "-e", "diameter.Result-Code", "-e", "_ws.malformed"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        rows = []
        for line in out.splitlines():
            codes, apps, reqs, results, malformed = line.split("|")
            assert malformed == "", line
            # several Diameter PDUs may share a TCP segment: tshark joins them with ","
            for c, a, r in zip(codes.split(","), apps.split(","), reqs.split(",")):
                rows.append((int(c), int(a), r in ("1", "True")))
        counts: dict[tuple[int, int, bool], int] = {}
        for r in rows:
            counts[r] = counts.get(r, 0) + 1
        assert counts.get((257, 0, True)) == 2 and counts.get((257, 0, False)) == 2  # CER/CEA x2 connections
        assert counts.get((268, S6B, True)) == 22 and counts.get((268, S6B, False)) == 22  # DER/DEA
        assert counts.get((275, S6B, True)) == 1 and counts.get((275, S6B, False)) == 1  # STR/STA
        assert counts.get((303, SWX, True)) == 1 and counts.get((303, SWX, False)) == 1  # MAR/MAA
        assert counts.get((282, 0, True)) == 2 and counts.get((282, 0, False)) == 2  # DPR/DPA
        # no malformed packets and no expert warnings or errors at all
        bad = subprocess.run(
            ["tshark", "-n", "-r", str(pcap), *decode, "-Y", "_ws.malformed || _ws.expert.severity >= warning"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        assert bad.strip() == "", bad
