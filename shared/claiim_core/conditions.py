"""Conditions on the request: a rule's ``when``, a CEL expression (https://cel.dev) over the facts of
one request, e.g. ``int(context.amount_cents) < 5000``.

The core only says what a condition sees and what its failure means; compiling and evaluating CEL
is the job of an implementation of :class:`Conditions` that the caller passes in
(``claiim_runtime.conditions.CelConditions``), so the core stays pure. The decision time is one of
the facts, given by the caller and never read from a clock here.

The variables: ``action``, ``target`` and ``agent`` and ``anchor`` (strings), ``context`` (a map
of strings to strings: ``has(context.ticket)`` tests for a key) and ``time`` (a timestamp).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

VARIABLES = ("action", "target", "context", "agent", "anchor", "time")


class ConditionError(ValueError):
    """A condition that does not compile, or whose evaluation failed or did not give a bool."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What a condition sees of one request."""

    action: str
    target: str
    context: Mapping[str, str]
    agent: str
    anchor: str
    time: datetime

    def variables(self) -> dict[str, object]:
        return {"action": self.action, "target": self.target, "context": dict(self.context), "agent": self.agent,
                "anchor": self.anchor, "time": self.time}


class Conditions(Protocol):
    def check(self, expression: str) -> None:
        """Raise :class:`ConditionError` unless ``expression`` compiles and uses only :data:`VARIABLES`."""

    def holds(self, expression: str, facts: Facts) -> bool:
        """Whether ``expression`` is true of ``facts``; :class:`ConditionError` when it cannot be evaluated
        or does not give a bool."""
