"""Run one ``DataPlane`` from a JSON description (tests, benchmarks, manual experiments).

    ip netns exec NS python -m s2c.dataplane.standalone '{"tun": "esp0", "addresses": [...], ...}'

JSON keys: ``tun``, ``addresses``, ``routes``, ``workers``, ``backend``, ``raw_esp``, ``sas`` (list of
``EspSa.to_config()`` dicts with hex ``encr_key``/``integ_key``), ``policies`` (list of
{"src", "dst", "proto", "spi"}). Prints ``ready`` then answers stdin lines: ``stats`` (one JSON line),
``events`` (JSON list of upcalls seen), ``mh <hex> <src> <dst>`` (send a transport-mode payload, nh 135),
``quit``.
"""

from __future__ import annotations

import json
import os
import select
import sys

from s2c.dataplane.plane import DataPlane
from s2c.esp.sa import EspSa
from s2c.esp.spd import Selector


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(argv[0])
    dp = DataPlane(
        tun_name=cfg.get("tun", "esp0"),
        tun_addresses=cfg.get("addresses", []),
        routes=cfg.get("routes", []),
        workers=cfg.get("workers", 2),
        backend=cfg.get("backend", "process"),
        raw_esp=cfg.get("raw_esp", True),
        cpus=tuple(cfg.get("cpus", ())),
        mtu=cfg.get("mtu"),
        nice=cfg.get("nice", 0),
        busy_poll_us=cfg.get("busy_poll_us", 0),
    )
    seen: list = []
    dp.set_ike_handler(lambda data, addr: seen.append(["ike", data.hex(), list(addr)]))
    dp.set_mh_handler(lambda nh, payload, src, spi: seen.append(["transport", nh, payload.hex(), src, spi]))
    dp.start()
    try:
        for c in cfg.get("sas", []):
            c = dict(c)
            c["encr_key"] = bytes.fromhex(c["encr_key"])
            c["integ_key"] = bytes.fromhex(c.get("integ_key", ""))
            in_sels = [Selector(s["src"], s["dst"], s.get("proto", 0)) for s in c.pop("in_selectors", [])]
            dp.add_sa(EspSa.from_config(c, rng=os.urandom), in_sels or None)
        for p in cfg.get("policies", []):
            dp.add_policy(Selector(p["src"], p["dst"], p.get("proto", 0)), spi=p.get("spi"),
                          action=p.get("action", "protect"))
        print("ready", flush=True)
        up = dp.upcall_fileno()
        while True:
            r, _, _ = select.select([sys.stdin, up], [], [])
            if up in r:
                dp.poll_upcalls()
            if sys.stdin in r:
                line = sys.stdin.readline()
                if not line or line.strip() == "quit":
                    break
                words = line.split()
                if words[0] == "stats":
                    print(json.dumps(dp.stats()), flush=True)
                elif words[0] == "events":
                    dp.poll_upcalls()
                    print(json.dumps(seen + [list(map(str, e)) for e in dp.events]), flush=True)
                elif words[0] == "mh":
                    ok = dp.send_transport(bytes.fromhex(words[1]), 135, words[2], words[3])
                    print(json.dumps(ok), flush=True)
                elif words[0] == "ike":
                    dp.send_ike(bytes.fromhex(words[1]), (words[2], int(words[3])))
                    print("true", flush=True)
    finally:
        dp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
