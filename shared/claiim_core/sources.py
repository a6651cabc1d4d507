"""Where in a YAML file a problem is: map ``policies[0].allow[2]``-style paths to line numbers.

The admin API reports bundle problems by path (``policies[0] (no-prod).allow[2]: ...``, or
msgspec's ``... - at `$.policies[0].allow[2]```); the CLI turns them into ``FILE:LINE: ...``.
"""

from __future__ import annotations

import re

import yaml

_NAME = re.compile(r" \([^()]*\)(?=[.:\[]|$)")
_LEADING = re.compile(r"^([A-Za-z_]+(?:\[\d+\])?(?:\.[A-Za-z_]+(?:\[\d+\])?)*)")
_MSGSPEC = re.compile(r" - at `\$\.?([^`]*)`$")
_LAST_STEP = re.compile(r"(?:\.[A-Za-z_]+|\[\d+\])$")


def yaml_lines(text: str) -> dict[str, int]:
    """Each path in a YAML document (``a.b[0].c``) with the 1-based line where its value starts."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        lines[path] = int(node.start_mark.line) + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, f"{path}.{key.value}" if path else str(key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    if root is not None:
        walk(root, "")
    return lines


def problem_path(problem: str) -> str:
    """The path a problem message is about, or ``""``."""
    at = _MSGSPEC.search(problem)
    if at:
        return at.group(1)
    m = _LEADING.match(_NAME.sub("", problem))
    return m.group(1) if m else ""


def locate(problem: str, lines: dict[str, int], file: str) -> str:
    """``FILE:LINE: problem``, with the line of the longest known prefix of the problem's path."""
    path = problem_path(problem)
    while path not in lines and _LAST_STEP.search(path):
        path = _LAST_STEP.sub("", path)
    line = lines.get(path, 1)
    return f"{file}:{line}: {problem}"
