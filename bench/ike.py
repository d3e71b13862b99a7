"""In-memory IKEv2 handshake rate: full IKE_SA_INIT + IKE_AUTH (with the first CHILD SA and CP)
between an IkeInitiator and an IkeResponder, per DH group, for PSK and for EAP (toy EAP method with a
fake MSK; the responder signs with an ECDSA P-256 certificate). Median of runs, handshakes/s.

Run: .venv/bin/python bench/ike.py [--runs 5] [--n 100] [--groups 19,31,14] [--auth psk,eap]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from s2c.codec.ikev2 import DhGroup
from s2c.ike import IkeProposal, IkeSaEstablished
from s2c.ike.testkit import FakeEap, eap_gw_config, eap_ue_config, gw_config, make_pair, ue_config


def one_handshake(group: int, auth: str, seed: int) -> None:
    prop = (IkeProposal(dh_groups=(DhGroup(group),)),)
    if auth == "eap":
        p = make_pair(eap_ue_config(ike_proposals=prop), eap_gw_config(ike_proposals=prop), seed=seed)
        FakeEap(p)
    else:
        p = make_pair(ue_config(ike_proposals=prop), gw_config(ike_proposals=prop), seed=seed)
    p.ue.rng = p.gw.rng = os.urandom  # real randomness: DH keys differ per handshake
    p.ue.sa.rng = os.urandom
    p.ue.initiate(p.clock.now)
    p.pump()
    if not (p.ue_events and any(isinstance(e, IkeSaEstablished) for e in p.ue_events)):
        raise RuntimeError(f"handshake failed: {p.types('ue')} / {p.types('gw')}")


def one_run(group: int, auth: str, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        one_handshake(group, auth, i)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--groups", default="19,31,14")
    ap.add_argument("--auth", default="psk,eap")
    a = ap.parse_args()
    one_handshake(19, "eap", 0)  # warm-up (certificates are generated once)
    for auth in a.auth.split(","):
        for g in (int(x) for x in a.groups.split(",")):
            rates = [one_run(g, auth, a.n) for _ in range(a.runs)]
            print(f"ike {auth:3s} group {g:2d} ({DhGroup(g).name}): handshakes/s median {statistics.median(rates):,.1f} "
                  f"(min {min(rates):,.1f}, max {max(rates):,.1f}, runs {a.runs} x {a.n})")


if __name__ == "__main__":
    main()
