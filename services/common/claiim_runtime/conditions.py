"""Conditions evaluated with CEL (the ``common-expression-language`` package: the Rust CEL
interpreter, compiled once per expression and kept). See :mod:`claiim_core.conditions` for what a
condition sees; this is the implementation the gate, the control service and the CLI pass to the
core."""

from __future__ import annotations

import re
from typing import Any

import cel
from claiim_core.conditions import VARIABLES, ConditionError, Facts

MAX_PROGRAMS = 4096
_WHERE = re.compile(r"<input>:(\d+):(\d+): ")


class CelConditions:
    """Compiles each expression once (at most :data:`MAX_PROGRAMS` kept) and evaluates it, handing it
    only the variables it uses (converting the others into CEL values would cost more than the
    evaluation itself)."""

    def __init__(self) -> None:
        self._programs: dict[str, tuple[Any, tuple[str, ...]]] = {}

    def _program(self, expression: str) -> tuple[Any, tuple[str, ...]]:
        found = self._programs.get(expression)
        if found is not None:
            return found
        try:
            program = cel.compile(expression)
        except (ValueError, RuntimeError) as e:
            raise ConditionError(_compile_error(str(e))) from None
        used = tuple(program.variables())
        unknown = sorted(set(used) - set(VARIABLES))
        if unknown:
            raise ConditionError(f"unknown variable {', '.join(unknown)} (a condition sees {', '.join(VARIABLES)})")
        if len(self._programs) >= MAX_PROGRAMS:
            self._programs.pop(next(iter(self._programs)))
        self._programs[expression] = program, used
        return program, used

    def check(self, expression: str) -> None:
        self._program(expression)

    def holds(self, expression: str, facts: Facts) -> bool:
        program, used = self._program(expression)
        variables = facts.variables()
        try:
            result = program.execute({name: variables[name] for name in used})
        except KeyError as e:
            raise ConditionError(f"no {e.args[0]!r} in the request (has(context.{e.args[0]}) tests for it)") from None
        except Exception as e:  # the interpreter's errors: a bad conversion, division by zero, a type mismatch
            raise ConditionError(f"{type(e).__name__}: {e}") from None
        if not isinstance(result, bool):
            raise ConditionError(f"the condition gave {type(result).__name__} {result!r}, not true or false")
        return result


def _compile_error(message: str) -> str:
    """The parser's message with the place as ``line L, column C of the condition``, without its echo
    of the expression."""
    first = message.split("\n", 1)[0]
    found = _WHERE.search(first)
    if found is None:
        return first
    line, column = found.groups()
    return f"line {line}, column {column} of the condition: {first[found.end():]}"
