"""The real ``hss`` daemon over loopback: Diameter base protocol, SWx MAR/MAA, robustness, SQN durability.

Each test starts ``python -m hss --config cfg.json`` as a subprocess on 127.0.0.1 with port 0 (the
bound port is read back over the control socket) and drives it with a Diameter client.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from hss.client import CLIENT_IDENTITY, DiameterClient
from s2c.codec.diameter import (
    FLAG_PROXIABLE,
    FLAG_REQUEST,
    ApplicationId,
    Avp,
    AvpCode,
    CommandCode,
    DiameterMessage,
    ResultCode,
    serialize_message,
)
from s2c.crypto import milenage, sqn as sqnmod
from s2c.diameter.messages import MultimediaAuthAnswer, advertised_applications, build_mar

from hss.testing import IMSI, IMSI2, K, OPC, REALM



def mar(user: str = IMSI, sid: str = "pgw;1;1", **kw) -> DiameterMessage:
    return build_mar(CLIENT_IDENTITY, session_id=sid, destination_realm=REALM, user_name=user, **kw)


def check_item(item, k=K, opc=OPC, amf=b"\x80\x00") -> int:
    """Verify one SIP-Auth-Data-Item against MILENAGE computed here; return its SQN."""
    rand, autn = item.authenticate[:16], item.authenticate[16:]
    chk = milenage.check_autn(k, opc, rand, autn)
    assert chk.mac_ok, "MAC-A does not verify with the subscriber's K/OPc"
    ref = milenage.generate_vector(k, opc, rand, chk.sqn, amf)
    assert item.authorization == ref.xres
    assert item.confidentiality_key == ref.ck and item.integrity_key == ref.ik
    assert autn == ref.autn
    return int.from_bytes(chk.sqn, "big")


def test_cer_cea_and_control(hss_daemon):
    d = hss_daemon()
    with DiameterClient("127.0.0.1", d.port) as c:
        cea = c.cer()
        assert cea.result_code == ResultCode.DIAMETER_SUCCESS
        assert cea.origin_host == "hss.epc.mnc001.mcc001.3gppnetwork.org"
        assert {ApplicationId.SWX_3GPP, ApplicationId.S6B_3GPP} <= advertised_applications(cea)
        st = d.ctl.call("status")
        assert st["subscribers"] == 2 and len(st["peers"]) == 1 and st["peers"][0]["state"] == "Open"
    subs = d.ctl.call("subscribers")
    assert [s["imsi"] for s in subs] == [IMSI, IMSI2]
    assert K.hex() not in str(subs) and OPC.hex() not in str(subs)
    counters = d.ctl.call("counters")
    for name in ("auth_ok", "auth_fail", "auth_resync", "auth_unknown", "malformed"):
        assert name in counters


def test_mar_vectors_match_milenage_and_sqn_increases(hss_daemon):
    d = hss_daemon()
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        sqns = []
        for i in range(3):
            ans = MultimediaAuthAnswer.from_message(c.request(mar(sid=f"pgw;1;{i}")))
            assert ans.result_code == ResultCode.DIAMETER_SUCCESS and len(ans.items) == 1
            sqns.append(check_item(ans.items[0]))
        ans = MultimediaAuthAnswer.from_message(c.request(mar(sid="pgw;1;9", number_auth_items=3)))
        assert [it.item_number for it in ans.items] == [1, 2, 3]
        sqns += [check_item(it) for it in ans.items]
        assert sqns == sorted(set(sqns)) and len(sqns) == 6
        assert [sqnmod.split_sqn(s)[0] for s in sqns] == list(range(1, 7))
        assert len({it.authenticate[:16] for it in ans.items}) == 3  # fresh RANDs


def test_unknown_imsi_and_bad_user_name(hss_daemon):
    d = hss_daemon()
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        for user in ("001019999999999", "not-an-imsi"):
            ans = c.request(mar(user=user))
            assert ans.experimental_result == (10415, 5001)
            assert ans.result_code is None
    assert d.ctl.call("counters")["auth_unknown"] == 2


def test_mar_resync_and_bad_auts(hss_daemon):
    d = hss_daemon()
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        first = MultimediaAuthAnswer.from_message(c.request(mar())).items[0]
        rand = first.authenticate[:16]
        sqn_ms = sqnmod.join_sqn(7000, 3)
        auts = milenage.build_auts(K, OPC, rand, sqnmod.sqn_to_bytes(sqn_ms))
        bad = bytearray(auts)
        bad[-1] ^= 0x55
        ans = c.request(mar(resync_authorization=rand + bytes(bad)))
        assert ans.result_code == ResultCode.DIAMETER_AUTHENTICATION_REJECTED
        after_bad = check_item(MultimediaAuthAnswer.from_message(c.request(mar())).items[0])
        assert sqnmod.split_sqn(after_bad)[0] == 2  # the bad AUTS moved nothing
        ans = MultimediaAuthAnswer.from_message(c.request(mar(resync_authorization=rand + auts)))
        assert ans.result_code == ResultCode.DIAMETER_SUCCESS
        s = check_item(ans.items[0])
        assert sqnmod.split_sqn(s)[0] == 7001
        # and a USIM that has seen SQN_MS accepts it
        usim = sqnmod.SqnWindow.starting_at(sqn_ms)
        assert usim.accept(s).ok
        ans = c.request(mar(resync_authorization=rand + auts[:10]))
        assert ans.result_code == ResultCode.DIAMETER_INVALID_AVP_VALUE
    counters = d.ctl.call("counters")
    assert counters["auth_resync"] == 1 and counters["auth_resync_fail"] == 2


def test_unknown_application_and_command(hss_daemon):
    d = hss_daemon()
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        base = [Avp.utf8(AvpCode.SESSION_ID, "pgw;9;9"), *CLIENT_IDENTITY.origin_avps(),
                Avp.utf8(AvpCode.DESTINATION_REALM, REALM)]
        ulr = DiameterMessage(316, ApplicationId.S6A_3GPP, FLAG_REQUEST | FLAG_PROXIABLE, avps=list(base))
        ans = c.request(ulr)
        assert ans.result_code == ResultCode.DIAMETER_APPLICATION_UNSUPPORTED and ans.is_error
        sar = DiameterMessage(CommandCode.SERVER_ASSIGNMENT, ApplicationId.SWX_3GPP, FLAG_REQUEST | FLAG_PROXIABLE,
                              avps=list(base))
        ans = c.request(sar)
        assert ans.result_code == ResultCode.DIAMETER_COMMAND_UNSUPPORTED and ans.is_error
        # the connection still works
        assert c.request(mar()).result_code == ResultCode.DIAMETER_SUCCESS


def test_silent_client_dropped_while_other_keeps_working(hss_daemon):
    d = hss_daemon(cer_timeout=1.0)
    silent = socket.create_connection(("127.0.0.1", d.port))
    silent.settimeout(5)
    try:
        with DiameterClient("127.0.0.1", d.port) as c:
            c.cer()
            t0 = time.monotonic()
            assert silent.recv(100) == b""  # closed by the daemon after cer_timeout
            assert 0.5 < time.monotonic() - t0 < 4.0
            assert c.request(mar()).result_code == ResultCode.DIAMETER_SUCCESS
    finally:
        silent.close()
    assert d.ctl.call("counters").get("peer_no_cer", 0) >= 1


def test_request_before_cer_is_refused(hss_daemon):
    d = hss_daemon(cer_timeout=1.0)
    with DiameterClient("127.0.0.1", d.port) as c:
        ans = c.request(mar())
        assert ans.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
        assert not ans.find(625, 10415)  # no key material before CER
    assert d.ctl.call("status")["subscribers"] == 2


def test_malformed_frames(hss_daemon):
    d = hss_daemon()
    db_before = d.sqn(IMSI)
    # 1. garbage that cannot be framed: connection closed, daemon alive
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        c.send_raw(b"\x02\x00\x00\x14" + bytes(16))
        with pytest.raises(ConnectionError):
            c.recv()
    # 2. a frame with a broken AVP inside: 5014 answer, the connection stays up
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        wire = bytearray(serialize_message(mar()))
        wire[20 + 5:20 + 8] = (999).to_bytes(3, "big")  # Session-Id AVP length overruns
        c.send_raw(bytes(wire))
        ans = c.recv()
        assert ans.result_code == ResultCode.DIAMETER_INVALID_AVP_LENGTH
        assert c.request(mar()).result_code == ResultCode.DIAMETER_SUCCESS
    # 3. truncated frame then hang up
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(serialize_message(mar())[:30])
    s.close()
    # 4. huge announced length
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        c.send_raw(b"\x01\xff\xff\xf0" + bytes(16))
        with pytest.raises(ConnectionError):
            c.recv()
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        assert c.request(mar()).result_code == ResultCode.DIAMETER_SUCCESS
    counters = d.ctl.call("counters")
    assert counters["malformed"] >= 3
    assert d.proc.poll() is None
    assert d.sqn(IMSI) > db_before  # only the successful MARs moved SQN_HE


@pytest.mark.parametrize("reserve", [1, 32])
def test_sqn_never_repeats_across_kill_9(hss_daemon, reserve):
    d = hss_daemon(sqn_reserve=reserve)
    seen: list[int] = []

    def take(port: int, n: int) -> None:
        with DiameterClient("127.0.0.1", port) as c:
            c.cer()
            for i in range(n):
                ans = MultimediaAuthAnswer.from_message(c.request(mar(sid=f"pgw;{len(seen)};{i}")))
                seen.append(check_item(ans.items[0]))

    take(d.port, 5)
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait(5)
    d2 = d.restart()
    take(d2.port, 5)
    os.kill(d2.proc.pid, signal.SIGKILL)
    d2.proc.wait(5)
    d3 = d2.restart()
    take(d3.port, 3)
    assert len(set(seen)) == len(seen) == 13
    assert seen == sorted(seen)


def test_clean_shutdown_sends_dpr(hss_daemon):
    d = hss_daemon()
    c = DiameterClient("127.0.0.1", d.port)
    c.cer()
    d.proc.send_signal(signal.SIGTERM)
    msg = c.recv()
    assert msg.is_request and msg.command_code == CommandCode.DISCONNECT_PEER
    c.close(dpr=False)
    assert d.proc.wait(10) == 0


def test_logs_never_contain_secrets(hss_daemon):
    d = hss_daemon()
    secrets = {K.hex(), OPC.hex()}
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        for it in MultimediaAuthAnswer.from_message(c.request(mar(number_auth_items=2))).items:
            secrets |= {it.confidentiality_key.hex(), it.integrity_key.hex()}
    d.stop()
    log = d.log_text().lower()
    assert "vector imsi=001010000000001" in log
    for s in secrets:
        assert s not in log


def test_mar_eap_aka_prime_returns_ck_ik_prime(hss_daemon):
    from s2c.crypto.aka_kdf import ck_ik_prime

    d = hss_daemon()
    with DiameterClient("127.0.0.1", d.port) as c:
        c.cer()
        ans = c.request(mar(scheme="EAP-AKA'"))
        assert ans.result_code == ResultCode.DIAMETER_MISSING_AVP  # ANID is required for AKA'
        ans = c.request(mar(scheme="Digest-AKAv1-MD5"))
        assert ans.experimental_result == (10415, 5006)
        item = MultimediaAuthAnswer.from_message(c.request(mar(scheme="EAP-AKA'", anid="WLAN"))).items[0]
        assert item.scheme == "EAP-AKA'"
        rand, autn = item.authenticate[:16], item.authenticate[16:]
        chk = milenage.check_autn(K, OPC, rand, autn)
        assert chk.mac_ok and item.authorization == chk.res
        assert (item.confidentiality_key, item.integrity_key) == ck_ik_prime(chk.ck, chk.ik, b"WLAN", autn[:6])


def test_peer_that_never_reads_is_dropped(hss_daemon):
    d = hss_daemon()
    c = DiameterClient("127.0.0.1", d.port)
    c.cer()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    wire = serialize_message(mar(user="001019999999999"))  # cheap requests, ~300-byte answers
    c.sock.settimeout(0.5)
    sent = 0
    try:
        for _ in range(200000):
            c.sock.sendall(wire * 50)
            sent += 50
    except (OSError, socket.timeout):
        pass  # the daemon closed us (or our send buffer filled up because it stopped reading)
    finally:
        c.sock.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not d.ctl.call("counters").get("peer_not_reading"):
        time.sleep(0.2)
    assert d.ctl.call("counters").get("peer_not_reading") == 1
    with DiameterClient("127.0.0.1", d.port) as other:
        other.cer()
        assert other.request(mar()).result_code == ResultCode.DIAMETER_SUCCESS


def test_ipv6_listener(hss_daemon):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    d = hss_daemon(diameter={"listen": ["::1"], "port": 0})
    listening = d.ctl.call("status")["listening"]
    assert listening[0].startswith("[::1]:")
    with DiameterClient("::1", int(listening[0].rsplit(":", 1)[1])) as c:
        assert c.cer().result_code == ResultCode.DIAMETER_SUCCESS
        assert c.request(mar()).result_code == ResultCode.DIAMETER_SUCCESS
