"""How the CLI prints: readable tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec


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


def table(rows: Sequence[Any], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """Rows (structs or mappings) as aligned columns under upper-case headers."""
    heads = [h.upper() for h in (headers or columns)]
    body = [[cell(r[c] if isinstance(r, dict) else getattr(r, c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in [heads, *body]) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [heads, *body]]
    return "\n".join(lines) if body else lines[0] + "\n(none)"


def fields(value: Any, names: Sequence[str]) -> str:
    """One ``name  value`` line per field, names right-aligned."""
    width = max(len(n) for n in names)
    return "\n".join(f"{n:>{width}}  {cell(getattr(value, n))}" for n in names)
