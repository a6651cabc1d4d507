"""Side-by-side diffs of policy and skill versions, as rows the admin UI's pages and the CLI's
``proposals show`` both show. Pure: fetching the versions to compare is the caller's part."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
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
        if version.approve:
            doc["approve"] = msgspec.to_builtins(version.approve)
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
                                "deny": doc.get("deny", []), "approve": doc.get("approve", [])}, PolicyVersionInfo)
    if event.get("type") == "skill.published":
        return msgspec.convert({**common, "actions": event.get("actions", [])}, SkillVersionInfo)
    return None


def proposed_versions(events: list[dict[str, Any]]) -> list[PolicyVersionInfo | SkillVersionInfo]:
    """The policy and skill versions a proposal's stored events would publish, in order."""
    return [v for v in map(proposed, events) if v is not None]


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


@dataclass(frozen=True)
class VersionDiff:
    """One proposed (or chosen) version against the version before it."""

    title: str
    """``policy NAME-vN`` or ``skill NAME-vN``."""
    left: str
    """The earlier version's label, or ``(none)`` for a new name."""
    right: str
    rows: list[Row]


def version_diff(new: PolicyVersionInfo | SkillVersionInfo,
                 versions: Sequence[PolicyVersionInfo | SkillVersionInfo]) -> VersionDiff:
    """``new`` against the newest of ``versions`` older than it; with none, every line is added."""
    old = next((v for v in reversed(versions) if v.version < new.version), None)
    kind = "policy" if isinstance(new, PolicyVersionInfo) else "skill"
    return VersionDiff(title=f"{kind} {new.label}", left=old.label if old else "(none)", right=new.label,
                       rows=side_by_side(document(old) if old else "", document(new)))
