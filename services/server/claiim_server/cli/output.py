"""How the CLI prints: readable tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from claiim_core.diff import VersionDiff


def to_json(value: Any) -> str:
    """Indented JSON of msgspec structs, lists of them, or plain data."""
    return json.dumps(json.loads(msgspec.json.encode(value)), indent=1)


def cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v) for v in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return text if text else "-"


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when it was longer."""
    return text if len(text) <= width else text[:width - 1].rstrip() + "\u2026"


def table(rows: Sequence[Any], columns: Sequence[str], headers: Sequence[str] | None = None,
          clipped: Mapping[str, int] | None = None) -> str:
    """Rows (structs or mappings) as aligned columns under upper-case headers; a column named in ``clipped``
    is cut to that many characters (``--json`` has the whole value)."""
    heads = [h.upper() for h in (headers or columns)]
    limit = clipped or {}
    body = [[clip(cell(r[c] if isinstance(r, dict) else getattr(r, c)), limit.get(c, 10**6)) for c in columns]
            for r in rows]
    widths = [max(len(row[i]) for row in [heads, *body]) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [heads, *body]]
    return "\n".join(lines) if body else lines[0] + "\n(none)"


SDIFF_MARKS = {"same": " ", "changed": "|", "removed": "<", "added": ">"}
"""Between the two columns, as sdiff marks them."""


def side_by_side(diff: VersionDiff, width: int) -> str:
    """A version diff as two columns, the earlier version left, line numbers before each side, ``|``, ``<`` and
    ``>`` between them for a changed, removed and added line (the admin UI's proposal page, in text)."""
    half = max((width - 3) // 2, 24)
    text = half - 5

    def side(number: int | None, line: str) -> str:
        return f"{number or '':>4} {clip(line, text):<{text}}"

    lines = [f"{diff.title} against {diff.left}",
             f"{'':>4} {clip(diff.left, text):<{text}}   {'':>4} {diff.right} (proposed)"]
    lines += [f"{side(r.left_no, r.left)} {SDIFF_MARKS[r.kind]} {side(r.right_no, r.right)}".rstrip()
              for r in diff.rows]
    return "\n".join(lines)


def terminal_width() -> int:
    """The terminal's columns (120 when the output is not a terminal)."""
    return shutil.get_terminal_size((120, 24)).columns


def fields(value: Any, names: Sequence[str]) -> str:
    """One ``name  value`` line per field, names right-aligned."""
    width = max(len(n) for n in names)
    return "\n".join(f"{n:>{width}}  {cell(getattr(value, n))}" for n in names)
