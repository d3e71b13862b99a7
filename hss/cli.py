"""``s2c hss``: manage the HSS subscriber store (docs/hss.md).

    s2c hss [--db PATH] add --imsi IMSI --k HEX (--opc HEX | --op HEX) [--amf HEX] [--sqn N] [--apn APN]
                            [--home-prefix-len N] [--ipv4-hoa ADDR] [--static-hoa ADDR] [--replace]
    s2c hss [--db PATH] list [--json]
    s2c hss [--db PATH] show IMSI [--json]
    s2c hss [--db PATH] delete IMSI
    s2c hss [--db PATH] import FILE.yaml [--replace]

The database defaults to ``$S2C_HSS_DB`` or ``./var/hss.db``. K and OPc are never printed in full.
Bad input prints one line ``s2c hss: error`` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from typing import Any

from hss.store import DEFAULT_DB, StoreError, Subscriber, SubscriberStore


def default_db() -> str:
    return os.environ.get("S2C_HSS_DB") or DEFAULT_DB


def register(subparsers: Any) -> None:
    """Add ``hss`` and its sub-commands to the ``s2c`` parser."""
    p = subparsers.add_parser("hss", help="HSS subscriber store (add, list, show, delete, import)")
    p.add_argument("--db", default=None, help=f"SQLite file (default $S2C_HSS_DB or {DEFAULT_DB})")
    sub = p.add_subparsers(dest="hss_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    add = sub.add_parser("add", help="provision one subscriber")
    add.add_argument("--imsi", required=True)
    add.add_argument("--k", required=True, help="K, 32 hex digits")
    g = add.add_mutually_exclusive_group(required=True)
    g.add_argument("--opc", help="OPc, 32 hex digits")
    g.add_argument("--op", help="OP, 32 hex digits (OPc is derived and stored)")
    add.add_argument("--amf", default=None, help="AMF, 4 hex digits (default 8000)")
    add.add_argument("--sqn", default=None, help="initial SQN_HE (decimal or 0x-hex, default 0)")
    add.add_argument("--apn", default=None)
    add.add_argument("--home-prefix-len", default=None)
    add.add_argument("--ipv4-hoa", default=None)
    add.add_argument("--static-hoa", default=None)
    add.add_argument("--replace", action="store_true", help="overwrite an existing subscriber")
    add.set_defaults(func=_add)

    ls = sub.add_parser("list", help="list subscribers (secrets masked)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)

    show = sub.add_parser("show", help="show one subscriber (secrets masked)")
    show.add_argument("imsi")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)

    rm = sub.add_parser("delete", help="delete one subscriber")
    rm.add_argument("imsi")
    rm.set_defaults(func=_delete)

    imp = sub.add_parser("import", help="import subscribers from YAML (a list, or a scenario's subscribers:)")
    imp.add_argument("file")
    imp.add_argument("--replace", action="store_true", help="update existing subscribers (SQN never goes back)")
    imp.set_defaults(func=_import)


def _run(args: argparse.Namespace, action: Any) -> int:
    path = args.db or default_db()
    try:
        with SubscriberStore(path) as store:
            return int(action(store) or 0)
    except StoreError as exc:
        print(f"s2c hss: {exc}", file=sys.stderr)
    except (OSError, sqlite3.Error) as exc:
        print(f"s2c hss: {path}: {exc}", file=sys.stderr)
    return 1


def _add(args: argparse.Namespace) -> int:
    fields = {
        "imsi": args.imsi, "k": args.k, "opc": args.opc, "op": args.op, "amf": args.amf, "sqn": args.sqn,
        "apn": args.apn, "home_prefix_len": args.home_prefix_len, "ipv4_hoa": args.ipv4_hoa,
        "static_hoa": args.static_hoa,
    }
    fields = {k: v for k, v in fields.items() if v is not None}

    def act(store: SubscriberStore) -> int:
        s = store.upsert(fields) if args.replace else store.add(fields)
        print(f"added {s.imsi} (sqn {s.sqn:#014x})")
        return 0

    return _run(args, act)


def _line(s: Subscriber) -> str:
    extra = " ".join(f"{k}={v}" for k, v in (("apn", s.apn), ("prefix", s.home_prefix_len),
                                              ("ipv4_hoa", s.ipv4_hoa), ("static_hoa", s.static_hoa)) if v)
    return f"{s.imsi}  k={s.public()['k']}  amf={s.amf.hex()}  sqn={s.sqn:#014x}  {extra}".rstrip()


def _list(args: argparse.Namespace) -> int:
    def act(store: SubscriberStore) -> int:
        subs = store.list()
        if args.json:
            print(json.dumps([s.public() for s in subs], indent=2))
        else:
            for s in subs:
                print(_line(s))
            print(f"{len(subs)} subscriber(s)")
        return 0

    return _run(args, act)


def _show(args: argparse.Namespace) -> int:
    def act(store: SubscriberStore) -> int:
        pub = store.get(args.imsi).public()
        if args.json:
            print(json.dumps(pub, indent=2))
        else:
            for k, v in pub.items():
                print(f"{k:16} {'' if v is None else v}")
        return 0

    return _run(args, act)


def _delete(args: argparse.Namespace) -> int:
    def act(store: SubscriberStore) -> int:
        store.delete(args.imsi)
        print(f"deleted {args.imsi}")
        return 0

    return _run(args, act)


def _import(args: argparse.Namespace) -> int:
    def act(store: SubscriberStore) -> int:
        if not os.path.isfile(args.file):
            print(f"s2c hss: {args.file}: no such file", file=sys.stderr)
            return 1
        subs = store.import_yaml(args.file, replace=args.replace)
        print(f"imported {len(subs)} subscriber(s)")
        return 0

    return _run(args, act)
