"""ModelError: every problem found in a topology or scenario file, each pinned to file:line: field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem: where it is (file, 1-based line, dotted field path) and what is wrong."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        path = _printable(self.path)  # a key may hold a newline or a control character: one line always
        return f"{where}: {path}: {self.message}" if path else f"{where}: {self.message}"


def _printable(text: str) -> str:
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class ModelError(ValueError):
    """A topology or scenario file is invalid.

    ``str()`` is the first issue on one line, ``"<file>:<line>: <field.path>: <message>"``;
    ``errors`` holds every issue found (in file order), ``format_all()`` prints them one per line.
    """

    def __init__(self, errors: Iterable[Issue]):
        self.errors: list[Issue] = sorted(_dedupe(errors), key=lambda i: (i.file, i.line))
        if not self.errors:
            raise ValueError("ModelError needs at least one issue")
        super().__init__(str(self.errors[0]))

    def __str__(self) -> str:
        return str(self.errors[0])

    def format_all(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def _dedupe(errors: Iterable[Issue]) -> list[Issue]:
    seen: set[Issue] = set()
    out = []
    for e in errors:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
