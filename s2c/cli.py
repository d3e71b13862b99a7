"""The ``s2c`` command line.

Sub-commands live in their own modules; each module exposes ``register(subparsers)`` which adds its
parsers and sets ``func(args) -> int`` on them. Add a module here to add commands; nothing else needs
to change. Modules are imported lazily so a broken optional area never breaks ``s2c validate``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module path -> short description (shown when the module fails to import)
COMMAND_MODULES: dict[str, str] = {
    "s2c.lab.cli": "validate, run, clean, nodes",
    "hss.cli": "hss subscriber store",
    "s2c.pki": "pki init (local CA and PDN GW certificate)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2c", description="S2c (DSMIPv6/IKEv2/EAP-AKA) testbed")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # area not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `s2c ... | head`: the reader went away, not an error of ours
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
