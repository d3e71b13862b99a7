"""Line-aware YAML reading and the small typed-field helpers the model validators share.

``parse_yaml`` composes the YAML node graph with a ``yaml.SafeLoader`` subclass and converts it to
plain Python values, except that mappings become ``LMap`` (a dict remembering the line of each key)
and sequences become ``LList`` (a list remembering the line of each item), so every validation
error can name ``file:line``. Duplicate keys (which PyYAML silently accepts) are reported.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from .errors import Issue, suggest

MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"
MERGE_TAG = "tag:yaml.org,2002:merge"


class LMap(dict):
    """A YAML mapping: ``line`` of the mapping, ``key_lines[key]`` the line of each key."""

    line: int = 0

    def __init__(self, *a: Any, line: int = 0, **kw: Any):
        super().__init__(*a, **kw)
        self.line = line
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LList(list):
    """A YAML sequence: ``line`` of the sequence, ``item_lines[i]`` the line of item i."""

    line: int = 0

    def __init__(self, *a: Any, line: int = 0):
        super().__init__(*a)
        self.line = line
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class _Invalid:
    """Stands for a scalar that could not be constructed (already reported): no follow-on errors."""

    _instance: "_Invalid | None" = None

    def __new__(cls) -> "_Invalid":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<invalid>"

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return other is self


INVALID = _Invalid()


class _Loader(yaml.SafeLoader):
    """SafeLoader used only to compose nodes and construct scalars (tags resolved as SafeLoader does)."""


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


class Source:
    """One file being validated: its display name and the issues found in it so far."""

    def __init__(self, file: str, issues: list[Issue] | None = None):
        self.file = file
        self.issues: list[Issue] = [] if issues is None else issues

    def error(self, line: int, path: str, message: str) -> None:
        self.issues.append(Issue(self.file, line, path, message))

    # ---- reading -------------------------------------------------------------------------
    def parse(self, text: str) -> Any:
        """Parse YAML text; on a syntax error record it (with its line) and return None."""
        try:
            loader = _Loader(text)
            try:
                node = loader.get_single_node()
            finally:
                loader.dispose()
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, max(exc.position, 0)) + 1
            self.error(line, "", f"invalid character #x{exc.character:04x} ({exc.reason})"
                       if isinstance(exc.character, int) else f"invalid input: {exc.reason}")
            return None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 0
            what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
            self.error(line, "", f"YAML syntax error: {what}")
            return None
        except yaml.YAMLError as exc:
            self.error(0, "", f"YAML error: {exc}")
            return None
        except RecursionError:
            self.error(0, "", "YAML nesting too deep")
            return None
        if node is None:
            return None
        try:
            return _Converter(loader, self).convert(node, "", set())
        except RecursionError:
            self.error(node.start_mark.line + 1, "", "YAML nesting too deep")
            return None

    def read(self, path: str, line: int = 0, field: str = "", into: "Source | None" = None) -> Any:
        """Read and parse ``path``; a missing/unreadable file is reported at ``into``'s line/field."""
        target = into or self
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            target.error(line, field, f"no such file '{path}'")
            return None
        except OSError as exc:
            target.error(line, field, f"cannot read '{path}': {exc.strerror or exc}")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.error(0, "", f"not UTF-8 text (byte {exc.start})")
            return None
        return self.parse(text)

    # ---- typed field helpers ----------------------------------------------------------------
    def check_keys(self, m: LMap, path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> bool:
        """Report unknown keys (with a close-match suggestion) and missing required ones."""
        allowed = list(allowed)
        ok = True
        for key in m:
            if key not in allowed:
                ok = False
                hint = suggest(key, allowed) if isinstance(key, str) else ""
                if not hint:
                    hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
                self.error(m.line_of(key), join(path, key), f"unknown key{hint}")
        for key in required:
            if key not in m:
                ok = False
                self.error(m.line, join(path, key) if path else key, "required key missing")
        return ok

    def expect(self, value: Any, want: str, line: int, path: str) -> bool:
        """Check ``value`` has YAML type ``want`` (mapping, list, string, integer, number, boolean)."""
        if _is(value, want):
            return True
        if value is INVALID:
            return False
        self.error(line, path, f"expected {_article(want)}, got {type_name(value)}")
        return False

    def get(self, m: LMap, key: str, path: str, want: str, *, required: bool = False, default: Any = None,
            check: Callable[[Any], str | None] | None = None) -> Any:
        """``m[key]`` if present and of type ``want`` (and ``check`` returns no message), else ``default``."""
        p = join(path, key)
        if key not in m:
            if required:
                self.error(m.line, p, "required key missing")
            return default
        value = m[key]
        if not self.expect(value, want, m.line_of(key), p):
            return default
        if check is not None:
            msg = check(value)
            if msg:
                self.error(m.line_of(key), p, msg)
                return default
        if want == "number":
            value = float(value) if isinstance(value, float) else value
        return value

    def enum(self, m: LMap, key: str, path: str, choices: Iterable[str], *, required: bool = False,
             default: str | None = None) -> str | None:
        choices = list(choices)
        value = self.get(m, key, path, "string", required=required, default=None)
        if value is None:
            return default
        if value not in choices:
            self.error(m.line_of(key), join(path, key),
                       f"invalid value '{value}'{suggest(value, choices)} (expected one of: {', '.join(choices)})")
            return default
        return value

    def address_list(self, m: LMap, key: str, path: str, version: int) -> list[tuple[Any, int, str]]:
        """``key: [a/len, ...]`` (or one string) -> [(IPvNInterface, line, path)]."""
        if key not in m:
            return []
        value = m[key]
        p = join(path, key)
        if value is INVALID:
            return []
        if isinstance(value, str):
            items = [(value, m.line_of(key), p)]
        elif isinstance(value, LList):
            items = [(v, value.line_of(i), index(p, i)) for i, v in enumerate(value)]
        else:
            self.error(m.line_of(key), p, f"expected a list of addresses, got {type_name(value)}")
            return []
        out = []
        for v, line, ip in items:
            iface = self.interface_address(v, line, ip, version)
            if iface is not None:
                out.append((iface, line, ip))
        return out

    def interface_address(self, value: Any, line: int, path: str, version: int | None) -> Any:
        """'addr/len' -> IPv4Interface/IPv6Interface, or None (reported)."""
        if value is INVALID:
            return None
        if not isinstance(value, str):
            self.error(line, path, f"expected an address/prefix-length string, got {type_name(value)}")
            return None
        if "/" not in value:
            self.error(line, path, f"'{value}' needs a prefix length (e.g. '{value}/{24 if ':' not in value else 64}')")
            return None
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            self.error(line, path, f"invalid address '{value}'")
            return None
        if version is not None and iface.version != version:
            self.error(line, path, f"'{value}' is not an IPv{version} address")
            return None
        if iface.version == 4 and iface.network.prefixlen < 31 and iface.ip in (
                iface.network.network_address, iface.network.broadcast_address):
            kind = "network" if iface.ip == iface.network.network_address else "broadcast"
            self.error(line, path, f"'{value}' is the {kind} address of {iface.network}")
            return None
        return iface

    def address(self, value: Any, line: int, path: str, version: int | None = None) -> Any:
        """A bare address -> IPv4Address/IPv6Address, or None (reported)."""
        if value is INVALID:
            return None
        if not isinstance(value, str):
            self.error(line, path, f"expected an address string, got {type_name(value)}")
            return None
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            self.error(line, path, f"invalid address '{value}'")
            return None
        if version is not None and addr.version != version:
            self.error(line, path, f"'{value}' is not an IPv{version} address")
            return None
        return addr


class _Converter:
    def __init__(self, loader: _Loader, src: Source):
        self.loader = loader
        self.src = src
        self.memo: dict[int, Any] = {}

    def convert(self, node: yaml.Node, path: str, active: set[int]) -> Any:
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        line = node.start_mark.line + 1
        if key in active:
            self.src.error(line, path, "recursive YAML alias")
            return None
        if isinstance(node, yaml.ScalarNode):
            try:
                value = self.loader.construct_object(node, deep=True)
            except Exception as exc:  # noqa: BLE001 - any constructor failure is a user error
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                self.src.error(line, path, f"invalid value: {problem}")
                value = INVALID
            self.memo[key] = value
            return value
        active = active | {key}
        if isinstance(node, yaml.SequenceNode):
            if node.tag != SEQ_TAG:
                self.src.error(line, path, f"unsupported YAML tag '{node.tag}'")
            out = LList(line=line)
            for i, item in enumerate(node.value):
                out.append(self.convert(item, index(path, i), active))
                out.item_lines.append(item.start_mark.line + 1)
            self.memo[key] = out
            return out
        assert isinstance(node, yaml.MappingNode)
        if node.tag != MAP_TAG:
            self.src.error(line, path, f"unsupported YAML tag '{node.tag}'")
        own = [(k, v) for k, v in node.value if k.tag != MERGE_TAG]
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        if len(own) != len(node.value):
            try:
                self.loader.flatten_mapping(node)
                merged = [(k, v) for k, v in node.value[: len(node.value) - len(own)]]
            except yaml.YAMLError as exc:
                self.src.error(line, path, f"invalid merge key: {getattr(exc, 'problem', exc)}")
        out = LMap(line=line)
        for k_node, v_node, is_own in [(k, v, True) for k, v in own] + [(k, v, False) for k, v in merged]:
            k_line = k_node.start_mark.line + 1
            k = self.convert(k_node, path, active)
            try:
                hash(k)
            except TypeError:
                self.src.error(k_line, path, f"a {type_name(k)} cannot be a mapping key")
                continue
            if k in out:
                if is_own:
                    self.src.error(k_line, join(path, k),
                                   f"duplicate key '{k}' (first defined on line {out.key_lines[k]})")
                continue
            out[k] = self.convert(v_node, join(path, k), active)
            out.key_lines[k] = k_line
        self.memo[key] = out
        return out


def type_name(value: Any) -> str:
    if value is INVALID:
        return "an invalid value"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _article(want: str) -> str:
    return ("an " if want[0] in "aeiou" else "a ") + want


def _is(value: Any, want: str) -> bool:
    if want == "mapping":
        return isinstance(value, LMap)
    if want == "list":
        return isinstance(value, LList)
    if want == "string":
        return isinstance(value, str)
    if want == "boolean":
        return isinstance(value, bool)
    if want == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if want == "number":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if want == "any":
        return value is not INVALID
    raise ValueError(f"unknown type {want}")


def plain(value: Any) -> Any:
    """LMap/LList -> dict/list, recursively (for verbatim params)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
