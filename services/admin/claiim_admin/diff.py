"""Side-by-side diffs of policy and skill versions, as rows a template can show. Pure."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import yaml
from claiim_core.schemas import PolicyVersionInfo, SkillVersionInfo


@dataclass(frozen=True)
class Row:
    kind: Literal["same", "changed", "removed", "added"]
    left: str
    right: str
    left_no: int | None
    right_no: int | None


def document(version: PolicyVersionInfo | SkillVersionInfo) -> str:
    """The version as the YAML an admin would write (the same shape ``claiim policy publish`` reads)."""
    doc: dict[str, Any]
    if isinstance(version, PolicyVersionInfo):
        doc = {"skill": version.skill, "description": version.description,
               "allow": msgspec.to_builtins(version.allow), "deny": msgspec.to_builtins(version.deny)}
    else:
        doc = {"description": version.description, "actions": list(version.actions)}
    if not doc["description"]:
        del doc["description"]
    return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True))


def proposed(event: dict[str, Any]) -> PolicyVersionInfo | SkillVersionInfo | None:
    """The version a stored ``policy.published`` or ``skill.published`` event would create, else None."""
    common = {"name": event.get("name", ""), "version": event.get("version", 0), "content_hash": "",
              "description": event.get("description", "")}
    common["label"] = f"{common['name']}-v{common['version']}"
    if event.get("type") == "policy.published":
        doc = event.get("document", {})
        return msgspec.convert({**common, "skill": doc.get("skill", ""), "allow": doc.get("allow", []),
                                "deny": doc.get("deny", [])}, PolicyVersionInfo)
    if event.get("type") == "skill.published":
        return msgspec.convert({**common, "actions": event.get("actions", [])}, SkillVersionInfo)
    return None


def side_by_side(old: str, new: str) -> list[Row]:
    """Every line of both texts, aligned: unchanged lines side by side, changes marked."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [Row("same", a[i], b[j], i + 1, j + 1) for i, j in zip(range(i1, i2), range(j1, j2), strict=True)]
            continue
        left, right = list(range(i1, i2)), list(range(j1, j2))
        for k in range(max(len(left), len(right))):
            i = left[k] if k < len(left) else None
            j = right[k] if k < len(right) else None
            kind: Literal["changed", "removed", "added"] = (
                "changed" if i is not None and j is not None else "removed" if i is not None else "added")
            rows.append(Row(kind, a[i] if i is not None else "", b[j] if j is not None else "",
                            None if i is None else i + 1, None if j is None else j + 1))
    return rows
