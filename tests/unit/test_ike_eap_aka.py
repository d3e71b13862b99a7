"""IKEv2 with real EAP-AKA (RFC 4187, s2c.eap_aka) between IkeInitiator (UE with a software USIM)
and IkeResponder (PDN GW relaying to an in-memory AkaServer with MILENAGE vectors): the MSK from
EAP-AKA keys the final AUTH payloads (RFC 7296 §2.16, TS 33.402 §8.2.2)."""

from __future__ import annotations

import os

import pytest

from s2c.codec.eap import EapType
from s2c.crypto import milenage
from s2c.eap_aka.events import AuthenticationSucceeded, VectorRequired
from s2c.eap_aka.peer import AkaPeer
from s2c.eap_aka.server import AkaServer
from s2c.eap_aka.usim import Usim
from s2c.ike import events as ev
from s2c.ike.config import Identity
from s2c.ike.testkit import eap_gw_config, eap_ue_config, make_pair

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMSI = "001010123456789"
REALM = "nai.epc.mnc001.mcc001.3gppnetwork.org"


@pytest.mark.parametrize("method", [EapType.AKA, EapType.AKA_PRIME])
@pytest.mark.parametrize("hss_k", [K, bytes(16)], ids=["right-key", "wrong-key"])
def test_ikev2_eap_aka(method, hss_k):
    # permanent identity: "0"/"6" + IMSI for EAP-AKA / EAP-AKA' (RFC 4187 §4.1.1.6, RFC 5448 §3), used as IDi
    NAI = ("6" if method == EapType.AKA_PRIME else "0") + IMSI + "@" + REALM
    p = make_pair(eap_ue_config(local_id=Identity.rfc822(NAI)), eap_gw_config())
    peer = AkaPeer(Usim(K, OPC), IMSI, identity=NAI.encode(), methods=(method,),
                   network_name=b"WLAN" if method == EapType.AKA_PRIME else None)
    servers: dict[int, AkaServer] = {}
    server_msks: list[bytes] = []
    peer_msks: list[bytes] = []

    def server_out(core, sa_id, srv):
        for e in iter(srv.next_event, None):
            if isinstance(e, VectorRequired):
                assert e.imsi == IMSI
                srv.provide_vector(milenage.generate_vector(hss_k, OPC, os.urandom(16), (64).to_bytes(6, "big"),
                                                            b"\x80\x00"))
            elif isinstance(e, AuthenticationSucceeded):
                server_msks.append(e.msk)
        for m in iter(srv.next_message, None):
            now = p.clock.now
            if m[0] == 1:
                core.send_eap_request(sa_id, m, now)
            elif m[0] == 3:
                core.eap_success(sa_id, server_msks[-1], now, m)
            else:
                core.eap_failure(sa_id, now, m)

    def hook(core, e):
        now = p.clock.now
        if isinstance(e, ev.EapAuthenticationRequested):
            srv = servers[e.sa_id] = AkaServer(rng=os.urandom, method=method)
            srv.start(identity=e.peer_id_data)
            server_out(core, e.sa_id, srv)
        elif isinstance(e, ev.EapResponseReceived):
            srv = servers[e.sa_id]
            srv.receive(e.eap)
            server_out(core, e.sa_id, srv)
        elif isinstance(e, ev.EapRequestReceived):
            peer.receive(e.eap)
            for pe in iter(peer.next_event, None):
                if isinstance(pe, AuthenticationSucceeded):
                    peer_msks.append(pe.msk)
                    core.provide_eap_result(pe.msk, now)
            for m in iter(peer.next_message, None):
                core.send_eap_response(m, now)

    p.hooks.append(hook)
    p.ue.initiate(p.clock.now)
    p.pump()
    if hss_k == K:
        assert p.types("ue")[-3:] == ["IkeSaEstablished", "CpAssigned", "ChildSaEstablished"], p.types("ue")
        assert p.types("gw") == ["EapAuthenticationRequested", "EapResponseReceived", "IkeSaEstablished",
                                 "ChildSaEstablished"]
        assert server_msks == peer_msks and len(server_msks[0]) == 64
        assert p.ue_events[-3].eap and p.gw_events[2].remote_id == NAI
    else:
        # the USIM rejects the network (MAC-A mismatch): no IKE SA on either side
        assert "IkeSaEstablished" not in p.types("ue") and "IkeSaEstablished" not in p.types("gw")
        assert p.types("gw")[-1] == "AuthenticationFailed" and p.types("ue")[-1] == "AuthenticationFailed"
