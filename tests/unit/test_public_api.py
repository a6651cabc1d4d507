"""The SDK's public surface: ``claiim.__all__`` is exactly what the package exposes, and it is typed."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import claiim
import claiim_core
import pytest


def public_names() -> set[str]:
    """Classes and functions bound in the claiim namespace under names without a leading underscore."""
    return {
        name for name, value in vars(claiim).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }


def test_all_lists_exactly_the_public_names() -> None:
    """__all__ names every public class and function of the claiim module, and nothing else."""
    assert sorted(claiim.__all__) == sorted(public_names())
    assert len(claiim.__all__) == len(set(claiim.__all__))


def test_all_includes_the_documented_entry_points() -> None:
    """The clients and the errors an agent must handle are public."""
    assert {"Gate", "AsyncGate", "CheckResult", "GateUnavailableError", "ProtocolError", "ClaiimError"} <= set(
        claiim.__all__)


@pytest.mark.parametrize("name", claiim.__all__)
def test_each_public_name_is_importable(name: str) -> None:
    """``from claiim import NAME`` works for every name in __all__."""
    module = importlib.import_module("claiim")
    assert getattr(module, name) is getattr(claiim, name)
    namespace: dict[str, object] = {}
    exec(f"from claiim import {name}", namespace)
    assert namespace[name] is getattr(claiim, name)


def test_errors_share_one_base() -> None:
    """Every public error derives from ClaiimError, so callers can catch them together."""
    errors = [getattr(claiim, n) for n in claiim.__all__ if n.endswith("Error") and n != "ClaiimError"]
    assert errors
    assert all(issubclass(e, claiim.ClaiimError) for e in errors)


@pytest.mark.parametrize("package", [claiim, claiim_core])
def test_py_typed_exists(package: object) -> None:
    """The package ships a py.typed marker so type checkers use its annotations."""
    assert (Path(package.__file__).parent / "py.typed").is_file()  # type: ignore[attr-defined]
