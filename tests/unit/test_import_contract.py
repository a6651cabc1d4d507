"""What may import what (docs/architecture.md): a service never imports another service, the client SDK
never imports server code or a server dependency, and no package imports another package's private
module. Read from the source with ``ast``, so a violation fails here before it is ever run."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "claiim": "sdk/claiim",
    "claiim_core": "shared/claiim_core",
    "claiim_runtime": "services/common/claiim_runtime",
    "claiim_gate": "services/gate/claiim_gate",
    "claiim_chron": "services/chron/claiim_chron",
    "claiim_control": "services/control/claiim_control",
    "claiim_auth": "services/auth/claiim_auth",
    "claiim_admin": "services/admin/claiim_admin",
    "claiim_server": "services/server/claiim_server",
}
SERVICES = frozenset({"claiim_gate", "claiim_chron", "claiim_control", "claiim_auth", "claiim_admin"})
CLIENT = frozenset({"claiim", "claiim_core"})
CLIENT_DEPENDENCIES = frozenset({"nats", "msgspec"})
"""The third-party packages the client distribution installs (pyproject.toml)."""
CLIENT_OPTIONAL = frozenset({"opentelemetry"})
"""Imported by the client only when installed (its ``otel`` extra, claiim/_trace.py)."""
MAY_IMPORT = {
    "claiim": CLIENT,
    "claiim_core": frozenset({"claiim_core"}),
    "claiim_runtime": frozenset({"claiim_core", "claiim_runtime"}),
    **{service: frozenset({"claiim", "claiim_core", "claiim_runtime", service}) for service in SERVICES},
    "claiim_server": frozenset(PACKAGES),
}
"""Our packages each package may import: the composition root (claiim_server) wires everything."""


def imports(path: Path) -> list[str]:
    """Every absolute module name imported in ``path``, at any nesting level (``from a import b``
    gives ``a`` and ``a.b``: ``b`` may be a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return found


def modules(package: str) -> dict[str, Path]:
    base = ROOT / PACKAGES[package]
    found = {}
    for path in sorted(base.rglob("*.py")):
        parts = [package, *path.relative_to(base).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


ALL = {name: path for package in PACKAGES for name, path in modules(package).items()}


def violations(package: str) -> list[str]:
    found = []
    for name, path in modules(package).items():
        for imported in imports(path):
            top = imported.split(".")[0]
            if top not in PACKAGES or top == package:
                continue
            if top not in MAY_IMPORT[package]:
                found.append(f"{name} imports {imported}: {package} may not import {top}")
            if any(part.startswith("_") and not part.startswith("__") for part in imported.split(".")[1:]):
                found.append(f"{name} imports {imported}: a private module of {top}")
    return found


def client_closure() -> tuple[set[str], set[str]]:
    """The modules of ours that ``import claiim`` loads (following imports of our modules, from
    the package ``claiim``), and the top-level names of everything else they import."""
    seen: set[str] = set()
    outside: set[str] = set()
    todo = ["claiim"]
    while todo:
        name = todo.pop()
        if name in seen or name not in ALL:
            continue
        seen.add(name)
        for imported in imports(ALL[name]):
            if imported.split(".")[0] in PACKAGES:
                todo.append(imported)
            else:
                outside.add(imported.split(".")[0])
    return seen, outside


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_imports_only_what_it_may(package: str) -> None:
    assert violations(package) == []


def test_the_client_sdk_loads_no_server_code_and_no_server_dependency() -> None:
    loaded, outside = client_closure()
    assert {"claiim", "claiim._gate", "claiim._admin", "claiim.transport", "claiim_core.schemas"} <= loaded
    assert not {m.split(".")[0] for m in loaded} - CLIENT
    assert outside - set(sys.stdlib_module_names) == CLIENT_DEPENDENCIES | CLIENT_OPTIONAL


def test_the_checker_sees_a_service_importing_another_and_a_private_module(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above can fail: a gate module importing Chron, and one importing ``claiim._gate``."""
    fake = tmp_path / "claiim_gate"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from claiim_chron.store import ChronStore\n"
                                 "from claiim._gate import AsyncGate\n")
    monkeypatch.setitem(PACKAGES, "claiim_gate", str(fake))
    assert violations("claiim_gate") == [
        "claiim_gate.bad imports claiim._gate: a private module of claiim",
        "claiim_gate.bad imports claiim._gate.AsyncGate: a private module of claiim",
        "claiim_gate.bad imports claiim_chron.store: claiim_gate may not import claiim_chron",
        "claiim_gate.bad imports claiim_chron.store.ChronStore: claiim_gate may not import claiim_chron",
    ]


def cycles(package: str) -> list[list[str]]:
    """Import cycles among ``package``'s own modules (every import, at any level, TYPE_CHECKING included)."""
    graph = {name: {i for i in imports(path) if i in ALL and i != name and i.split(".")[0] == package}
             for name, path in modules(package).items()}
    found: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                if min(cycle) == cycle[0] and [*cycle, nxt] not in found:
                    found.append([*cycle, nxt])
            elif len(path) < 20:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


@pytest.mark.parametrize("package", ["claiim_core", "claiim"])
def test_the_client_packages_have_no_import_cycle(package: str) -> None:
    assert cycles(package) == []


def test_the_cli_loads_neither_the_mcp_sdk_nor_cel_until_a_command_needs_them() -> None:
    """Every `claiim` command starts by importing the CLI: the MCP SDK (0.8 s here) and the CEL library are
    imported by the commands that use them only."""
    import subprocess

    loaded = subprocess.run([sys.executable, "-c", "import sys, claiim_server.cli.main; "
                             "print(sorted(m for m in ('mcp', 'cel', 'uvicorn') if m in sys.modules))"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]"
