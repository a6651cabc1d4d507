"""References to skill and policy versions: ``deploy-v2`` (pinned) or ``deploy`` (the latest)."""

from __future__ import annotations

import re

NAME_PATTERN = r"[a-z0-9](?:[a-z0-9_]|-(?!v\d+\Z))*"
"""A skill or policy name: it may not itself end in ``-vN``, which would read as a version."""
REF_RE = re.compile(rf"^(?P<name>{NAME_PATTERN})(?:-v(?P<version>[1-9]\d*))?\Z")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``deploy-v2`` into ``("deploy", 2)``; a bare ``deploy`` means the latest version."""
    m = REF_RE.match(ref)
    if not m:
        raise ValueError(
            f"{ref!r} is not a reference: use NAME (latest) or NAME-vN (pinned), "
            "NAME made of a-z, 0-9, '-' and '_'"
        )
    version = m.group("version")
    return m.group("name"), int(version) if version else None


def label(name: str, version: int) -> str:
    """The display form of a version, as recorded in decisions: ``no-prod-v1``."""
    return f"{name}-v{version}"
